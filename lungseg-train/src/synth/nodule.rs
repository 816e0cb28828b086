//! Nodules: solid, part-solid and ground-glass balls with soft edges, 3–30 mm (skewed small,
//! like LUNA16's), some touching the pleura. Placed clear of the thick vessels so that the
//! annotated diameter is what a reader would measure.

use super::anatomy::Anatomy;
use super::canvas::{soft_edge, Canvas, EDGE_MM};
use super::vessels::{dot, normalize, sub, Segment};
use rand::RngExt;
use rand_distr::{Distribution, LogNormal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoduleKind {
    Solid,
    PartSolid,
    GroundGlass,
}

impl NoduleKind {
    pub fn name(self) -> &'static str {
        match self {
            NoduleKind::Solid => "solid",
            NoduleKind::PartSolid => "part-solid",
            NoduleKind::GroundGlass => "ground-glass",
        }
    }
}

/// A nodule in the anatomy frame (the scan converts `center` to world mm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nodule {
    pub center: [f64; 3],
    /// Diameter at the 50 % edge, the annotated size.
    pub diameter_mm: f64,
    pub kind: NoduleKind,
    /// HU of the (outer) nodule tissue.
    pub hu: f32,
    /// Part-solid nodules: a solid core (offset from the centre, diameter, HU).
    pub core: Option<([f64; 3], f64, f32)>,
    pub juxtapleural: bool,
}

impl Nodule {
    pub fn paint(&self, canvas: &mut Canvas) {
        ball(canvas, self.center, self.diameter_mm / 2.0, self.hu);
        if let Some((offset, d, hu)) = self.core {
            let c = std::array::from_fn(|i| self.center[i] + offset[i]);
            ball(canvas, c, d / 2.0, hu);
        }
    }
}

fn ball(canvas: &mut Canvas, c: [f64; 3], r: f64, hu: f32) {
    let pad = r + EDGE_MM;
    let (lo, hi) = (c.map(|v| v - pad), c.map(|v| v + pad));
    canvas.brighten(lo, hi, false, hu, |p| {
        let d = sub(p, c);
        soft_edge(r - dot(d, d).sqrt())
    });
}

/// Draws 0–3 nodules (25 % / 40 % / 20 % / 15 %), up to `max` of them.
pub fn place(
    rng: &mut impl rand::Rng,
    anatomy: &Anatomy,
    vessels: &[Segment],
    max: usize,
) -> Vec<Nodule> {
    let u: f64 = rng.random();
    let wanted = [0.25, 0.65, 0.85, 1.0]
        .iter()
        .position(|&p| u < p)
        .unwrap_or(3)
        .min(max);
    let sizes = LogNormal::new(6.5f64.ln(), 0.55).expect("valid log-normal");
    let mut out: Vec<Nodule> = Vec::new();
    for _ in 0..wanted {
        for _attempt in 0..400 {
            let kind = match rng.random_range(0..20) {
                0..=10 => NoduleKind::Solid,
                11..=14 => NoduleKind::PartSolid,
                _ => NoduleKind::GroundGlass,
            };
            // Subsolid nodules are rarely tiny; everything stays within LUNA16's 3–30 mm.
            let min = if kind == NoduleKind::Solid { 3.0 } else { 5.0 };
            let d = sizes.sample(rng);
            if !(min..=30.0).contains(&d) {
                continue; // redraw rather than clamp: no pile-up at the limits
            }
            let juxta = rng.random_bool(0.3);
            let Some(center) = position(rng, anatomy, d / 2.0, juxta) else {
                continue;
            };
            let clear_of_others = out.iter().all(|n| {
                let v = sub(n.center, center);
                dot(v, v).sqrt() > (n.diameter_mm + d) / 2.0 + 6.0
            });
            // Thick vessels (≥ 1 mm radius) keep 2 mm away; thinner ones may touch.
            let clear_of_vessels = vessels.iter().filter(|s| s.r0 >= 1.0).all(|s| {
                let (dist, t) = s.distance(center);
                dist > s.radius_at(t) + d / 2.0 + 2.0
            });
            if !(clear_of_others && clear_of_vessels) {
                continue;
            }
            out.push(nodule(rng, center, d, kind, juxta));
            break;
        }
    }
    out
}

fn nodule(
    rng: &mut impl rand::Rng,
    center: [f64; 3],
    d: f64,
    kind: NoduleKind,
    juxtapleural: bool,
) -> Nodule {
    let (hu, core) = match kind {
        NoduleKind::Solid => (rng.random_range(0.0..60.0f32), None),
        NoduleKind::GroundGlass => (rng.random_range(-600.0..-300.0), None),
        NoduleKind::PartSolid => {
            let core_d = d * rng.random_range(0.3..0.6);
            let room = (d - core_d) / 2.0 * 0.5;
            let offset = [
                rng.random_range(-room..=room),
                rng.random_range(-room..=room),
                rng.random_range(-room..=room),
            ];
            let core_hu = rng.random_range(0.0..60.0);
            (
                rng.random_range(-600.0..-350.0),
                Some((offset, core_d, core_hu)),
            )
        }
    };
    Nodule {
        center,
        diameter_mm: d,
        kind,
        hu,
        core,
        juxtapleural,
    }
}

/// A centre inside a lung: at least 2 mm of lung around the ball, or (juxtapleural) pushed
/// out to the lung edge so that about a fifth of its diameter sinks into the wall.
fn position(
    rng: &mut impl rand::Rng,
    anatomy: &Anatomy,
    r: f64,
    juxtapleural: bool,
) -> Option<[f64; 3]> {
    let (lo, hi) = anatomy.lung_box();
    let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
    if !anatomy.is_lung(p) {
        return None;
    }
    let center = if juxtapleural {
        // March outwards (in-plane, away from the midline) to the first non-lung point.
        let dir = normalize([
            p[0].signum() * rng.random_range(0.3..1.0),
            rng.random_range(-1.0..1.0),
            0.0,
        ]);
        let mut t = 0.0;
        while anatomy.is_lung(std::array::from_fn(|i| p[i] + (t + 0.5) * dir[i])) {
            t += 0.5;
            if t > 400.0 {
                return None;
            }
        }
        let back = t - 0.6 * r;
        if back < 0.0 {
            return None;
        }
        std::array::from_fn(|i| p[i] + back * dir[i])
    } else {
        p
    };
    // The ball (all but the wall side of a juxtapleural one) must sit in lung.
    let reach = if juxtapleural { 0.3 * r } else { r + 2.0 };
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let dirs = [
        [1.0, 0.0, 0.0],
        [-1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, -1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 0.0, -1.0],
        [s, s, 0.0],
        [s, -s, 0.0],
        [-s, s, 0.0],
        [-s, -s, 0.0],
    ];
    let inside = dirs
        .iter()
        .filter(|d| anatomy.is_lung(std::array::from_fn(|i| center[i] + reach * d[i])))
        .count();
    let needed = if juxtapleural {
        dirs.len() - 3
    } else {
        dirs.len()
    };
    (inside >= needed && anatomy.is_lung(center)).then_some(center)
}
