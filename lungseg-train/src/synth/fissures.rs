//! Interlobar fissures: an oblique fissure in each lung (posterior-superior to
//! anterior-inferior) and the right lung's horizontal fissure, anterior to the oblique one.
//! Two visceral pleural layers (~0.2 mm each) are far thinner than a voxel, so they appear by
//! partial volume: a faint line on thin slices, nearly gone on thick ones.

use super::anatomy::Anatomy;
use super::canvas::{slab, Canvas, Mode, Stroke};
use rand::RngExt;

/// Pleura at soft-tissue density.
const PLEURA_HU: f32 = 30.0;

/// A fissure sheet: `z = z0 + slope·(y − y0) + bend·(|x| − x0)²` within its lung.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fissure {
    /// −1: right lung (patient right is −x in LPS), +1: left.
    pub side: f64,
    pub z0: f64,
    pub y0: f64,
    pub x0: f64,
    pub slope: f64,
    pub bend: f64,
    pub width_mm: f64,
    /// The horizontal fissure exists only anterior to this oblique fissure.
    pub anterior_of: Option<usize>,
}

impl Fissure {
    fn height(&self, x: f64, y: f64) -> f64 {
        self.z0 + self.slope * (y - self.y0) + self.bend * (x.abs() - self.x0).powi(2)
    }

    /// Approximate signed distance (mm) from the sheet (positive above it).
    pub fn distance(&self, p: [f64; 3]) -> f64 {
        (p[2] - self.height(p[0], p[1])) / (1.0 + self.slope * self.slope).sqrt()
    }

    /// Unit normal of the sheet (pointing up).
    pub fn normal(&self) -> [f64; 3] {
        let n = (1.0 + self.slope * self.slope).sqrt();
        [0.0, -self.slope / n, 1.0 / n]
    }

    /// Whether `p` is on this fissure's side and extent (the point is assumed in lung).
    pub fn covers(&self, p: [f64; 3], all: &[Fissure]) -> bool {
        if p[0].signum() != self.side {
            return false;
        }
        match self.anterior_of {
            // Anterior (y smaller) than the oblique sheet at this height: above it in z.
            Some(i) => all[i].distance(p) > 0.0,
            None => true,
        }
    }
}

/// Draws the fissures of a chest.
pub fn draw(rng: &mut impl rand::Rng, anatomy: &Anatomy) -> Vec<Fissure> {
    let f = anatomy.lung_frame();
    let height = f.z_apex - f.z_base;
    let mut out = Vec::new();
    for side in [-1.0, 1.0] {
        out.push(Fissure {
            side,
            z0: f.z_base + height * rng.random_range(0.4..0.55),
            y0: f.lung_y,
            x0: f.lung_x,
            // Rises towards the back: 35–55° from the axial plane.
            slope: rng.random_range(35f64..55.0).to_radians().tan(),
            bend: rng.random_range(-0.004..0.004),
            width_mm: rng.random_range(0.3..0.6),
            anterior_of: None,
        });
    }
    // Right horizontal (minor) fissure, at about the fourth anterior rib.
    out.push(Fissure {
        side: -1.0,
        z0: f.z_base + height * rng.random_range(0.55..0.7),
        y0: f.lung_y,
        x0: f.lung_x,
        slope: rng.random_range(-0.1..0.1),
        bend: rng.random_range(-0.003..0.003),
        width_mm: rng.random_range(0.3..0.6),
        anterior_of: Some(0),
    });
    out
}

/// Paints the fissures into the lungs.
pub fn paint(fissures: &[Fissure], anatomy: &Anatomy, canvas: &mut Canvas) {
    let (lo, hi) = anatomy.lung_box();
    let edge = canvas.edge_mm();
    for f in fissures {
        let (xlo, xhi) = if f.side < 0.0 {
            (lo[0], 0.0)
        } else {
            (0.0, hi[0])
        };
        let stroke = Stroke {
            lo: [xlo, lo[1], lo[2]],
            hi: [xhi, hi[1], hi[2]],
            lung_only: true,
            mode: Mode::Brighten,
        };
        canvas.paint(stroke, |p| {
            let d = f.distance(p);
            if d.abs() > edge + f.width_mm || !f.covers(p, fissures) {
                return (0.0, 0.0);
            }
            (slab(d, f.width_mm, edge), PLEURA_HU)
        });
    }
}
