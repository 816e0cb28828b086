//! Lung disease that is not a nodule, so that a model learns to leave it alone: centrilobular
//! emphysema and paraseptal bullae (air below the parenchyma), consolidation (soft-tissue
//! density with air bronchograms, because the airways are painted after it), and basal
//! subpleural fibrosis (reticulation over ground glass). None of it is labelled.

use super::anatomy::{Anatomy, AIR};
use super::canvas::{soft_edge, Canvas, Mode, Stroke};
use super::shape::{Margin, Shape};
use super::texture::ValueNoise;
use rand::RngExt;

/// One scan's distractors.
pub struct Distractors {
    holes: Vec<([f64; 3], f64, f32)>,
    consolidations: Vec<(Shape, f32)>,
    fibrosis: Option<Fibrosis>,
}

struct Fibrosis {
    /// Depth (mm) from the rib cage over which the lung is fibrotic, and the top z.
    depth: f64,
    top: f64,
    pattern: ValueNoise,
    origin: [f64; 3],
}

/// Emphysema in 35 % of scans, consolidation in 15 %, fibrosis in 15 %.
pub fn draw(rng: &mut impl rand::Rng, anatomy: &Anatomy) -> Distractors {
    let f = anatomy.lung_frame();
    let (lo, hi) = anatomy.lung_box();
    let height = f.z_apex - f.z_base;
    let mut holes = Vec::new();
    if rng.random_bool(0.35) {
        // Centrilobular: small holes, upper-lobe predominant (−950 HU and below is the usual
        // emphysema threshold).
        for _ in 0..rng.random_range(30..200) {
            let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
            if p[2] > f.z_base + 0.4 * height && anatomy.is_lung(p) {
                holes.push((
                    p,
                    rng.random_range(1.5..5.0),
                    rng.random_range(-1000.0..-960.0),
                ));
            }
        }
        // Paraseptal bullae along the pleura.
        for _ in 0..rng.random_range(0..4) {
            let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
            let cav = ((p[0] / f.ca).powi(2) + (p[1] / f.cb).powi(2)).sqrt();
            if cav > 0.8 && anatomy.is_lung(p) {
                holes.push((p, rng.random_range(6.0..20.0), AIR));
            }
        }
    }
    let mut consolidations = Vec::new();
    if rng.random_bool(0.15) {
        for _ in 0..200 {
            let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
            if anatomy.is_lung(p) {
                let r = rng.random_range(12.0..35.0);
                consolidations.push((
                    Shape::random(rng, p, r, Margin::Irregular, None),
                    rng.random_range(-80.0..40.0),
                ));
                break;
            }
        }
    }
    let fibrosis = rng.random_bool(0.15).then(|| {
        let depth = rng.random_range(8.0..20.0);
        let extent = [2.0 * f.ca + 10.0, 2.0 * f.cb + 10.0, height + 10.0];
        Fibrosis {
            depth,
            top: f.z_base + height * rng.random_range(0.3..0.6),
            pattern: ValueNoise::new(rng, extent, 2.5),
            origin: [-f.ca - 5.0, -f.cb - 5.0, f.z_base - 5.0],
        }
    });
    Distractors {
        holes,
        consolidations,
        fibrosis,
    }
}

impl Distractors {
    pub fn paint(&self, anatomy: &Anatomy, canvas: &mut Canvas) {
        let edge = canvas.edge_mm();
        for &(c, r, hu) in &self.holes {
            let stroke = Stroke {
                lo: c.map(|v| v - r - edge),
                hi: c.map(|v| v + r + edge),
                lung_only: true,
                mode: Mode::Darken,
            };
            canvas.paint(stroke, |p| {
                let d: f64 = (0..3).map(|i| (p[i] - c[i]).powi(2)).sum::<f64>().sqrt();
                (soft_edge(r - d, edge), hu)
            });
        }
        for (shape, hu) in &self.consolidations {
            let r = shape.extent() + edge;
            let stroke = Stroke {
                lo: shape.center.map(|v| v - r),
                hi: shape.center.map(|v| v + r),
                lung_only: true,
                mode: Mode::Brighten,
            };
            // A wide soft edge: consolidation fades into ground glass at its border.
            canvas.paint(stroke, |p| (soft_edge(shape.inside_mm(p), 4.0), *hu));
        }
        if let Some(fb) = &self.fibrosis {
            self.paint_fibrosis(fb, anatomy, canvas);
        }
    }

    fn paint_fibrosis(&self, fb: &Fibrosis, anatomy: &Anatomy, canvas: &mut Canvas) {
        let f = anatomy.lung_frame();
        let mean_r = 0.5 * (f.ca + f.cb);
        let stroke = Stroke {
            lo: [-f.ca, -f.cb, f.z_base],
            hi: [f.ca, f.cb, fb.top],
            lung_only: true,
            mode: Mode::Brighten,
        };
        canvas.paint(stroke, |p| {
            let cav = ((p[0] / f.ca).powi(2) + (p[1] / f.cb).powi(2)).sqrt();
            let depth = (1.0 - cav) * mean_r;
            // Posterior-basal predominance.
            let posterior = (p[1] / f.cb).clamp(-1.0, 1.0) * 0.5 + 0.5;
            let reach = fb.depth * (0.4 + 0.6 * posterior);
            if depth > reach {
                return (0.0, 0.0);
            }
            let q = std::array::from_fn(|i| p[i] - fb.origin[i]);
            let v = fb.pattern.at(q);
            // Reticulation: thin walls where the noise crosses zero, over ground glass.
            let wall = (1.0 - (v.abs() / 0.25)).max(0.0);
            let fade = (1.0 - depth / reach).clamp(0.0, 1.0) as f32;
            let hu = -700.0 + 550.0 * wall;
            (fade.min(1.0) * 0.9, hu)
        });
    }
}
