//! Pulmonary vessels: arterial trees grown from each hilum and venous trees from the lower
//! hilum (towards the left atrium), branching and thinning towards the periphery (Murray-like
//! radius ratios). A vessel seen end-on is a bright blob: the classic nodule look-alike that
//! the false candidates point at. The same growth makes the bronchial tree (`airways`).

use super::anatomy::Anatomy;
use super::canvas::{soft_edge, Canvas, Mode, Stroke};
use rand::RngExt;

const MAX_SEGMENTS: usize = 20_000;

/// A tapered tube from `a` (radius `r0`) to `b` (radius `r1`), anatomy frame.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub a: [f64; 3],
    pub b: [f64; 3],
    pub r0: f64,
    pub r1: f64,
}

impl Segment {
    /// Distance from `p` to the axis and the position `t` ∈ [0, 1] of the nearest axis point.
    pub fn distance(&self, p: [f64; 3]) -> (f64, f64) {
        let ab = sub(self.b, self.a);
        let ap = sub(p, self.a);
        let t = (dot(ap, ab) / dot(ab, ab).max(1e-12)).clamp(0.0, 1.0);
        let q: [f64; 3] = std::array::from_fn(|i| self.a[i] + t * ab[i] - p[i]);
        (dot(q, q).sqrt(), t)
    }

    pub fn radius_at(&self, t: f64) -> f64 {
        self.r0 + (self.r1 - self.r0) * t
    }

    pub fn point_at(&self, t: f64) -> [f64; 3] {
        std::array::from_fn(|i| self.a[i] + t * (self.b[i] - self.a[i]))
    }

    /// Bounding box of the tube widened by `pad` mm.
    pub fn bounds(&self, pad: f64) -> ([f64; 3], [f64; 3]) {
        let pad = pad + self.r0.max(self.r1);
        (
            std::array::from_fn(|i| self.a[i].min(self.b[i]) - pad),
            std::array::from_fn(|i| self.a[i].max(self.b[i]) + pad),
        )
    }

    /// Paints the tube into the lungs at `hu`; tubes thinner than a voxel are fainter, as
    /// partial volume makes them on CT.
    pub fn paint(&self, canvas: &mut Canvas, hu: f32) {
        let edge = canvas.edge_mm();
        let (lo, hi) = self.bounds(edge);
        let stroke = Stroke {
            lo,
            hi,
            lung_only: true,
            mode: Mode::Brighten,
        };
        canvas.paint(stroke, |p| {
            let (d, t) = self.distance(p);
            let r = self.radius_at(t);
            (
                soft_edge(r - d, edge) * (2.0 * r / edge).min(1.0) as f32,
                hu,
            )
        });
    }
}

/// Where a tree starts and how it grows.
#[derive(Debug, Clone, Copy)]
pub struct TreeSpec {
    pub root: [f64; 3],
    pub dir: [f64; 3],
    pub radius: f64,
    /// Branches stop below this radius (mm).
    pub min_radius: f64,
    pub max_depth: u32,
    /// Point the tree grows away from (its hilum).
    pub away_from: [f64; 3],
}

/// Grows one tree: each segment 5–9 radii long, then two children on opposite sides, the
/// thinner one bending more; growth stops outside the lung.
pub fn grow_tree(
    rng: &mut impl rand::Rng,
    anatomy: &Anatomy,
    spec: &TreeSpec,
    out: &mut Vec<Segment>,
) {
    let mut stack = vec![(spec.root, spec.dir, spec.radius, 0u32)];
    while let Some((start, dir, r, depth)) = stack.pop() {
        if out.len() >= MAX_SEGMENTS {
            break;
        }
        let len = (r * rng.random_range(5.0..9.0f64)).max(3.0);
        let end: [f64; 3] = std::array::from_fn(|i| start[i] + len * dir[i]);
        let r_end = r * rng.random_range(0.9..0.98);
        out.push(Segment {
            a: start,
            b: end,
            r0: r,
            r1: r_end,
        });
        if depth >= spec.max_depth || (depth >= 2 && !anatomy.is_lung(end)) {
            continue;
        }
        let axis = perpendicular(rng, dir);
        let outward = normalize(sub(end, spec.away_from));
        for (scale, angle) in [
            (rng.random_range(0.78..0.9), rng.random_range(0.2..0.5)),
            (rng.random_range(0.62..0.8), -rng.random_range(0.45..0.9f64)),
        ] {
            let child_r = r_end * scale;
            if child_r < spec.min_radius {
                continue;
            }
            let (s, c) = angle.sin_cos();
            let d: [f64; 3] = std::array::from_fn(|i| c * dir[i] + s * axis[i] + 0.25 * outward[i]);
            stack.push((end, normalize(d), child_r, depth + 1));
        }
    }
}

/// One scan's vessels: arteries and veins, each with its blood HU.
pub struct Vessels {
    pub arteries: Vec<Segment>,
    pub veins: Vec<Segment>,
}

impl Vessels {
    pub fn all(&self) -> impl Iterator<Item = &Segment> {
        self.arteries.iter().chain(&self.veins)
    }

    pub fn paint(&self, canvas: &mut Canvas, anatomy: &Anatomy) {
        // With contrast the arteries fill first; veins lag (by timing) at 60–80 % of it.
        let blood = anatomy.blood();
        let venous = super::anatomy::BLOOD + 0.7 * (blood - super::anatomy::BLOOD);
        for s in &self.arteries {
            s.paint(canvas, blood);
        }
        for s in &self.veins {
            s.paint(canvas, venous);
        }
    }
}

/// Grows 5–8 arterial trees per lung from its hilum and 3–5 venous trees from below it.
pub fn grow(rng: &mut impl rand::Rng, anatomy: &Anatomy) -> Vessels {
    let mut arteries = Vec::new();
    let mut veins = Vec::new();
    for side in [-1.0, 1.0] {
        let hilum = anatomy.hilum(side);
        let below = [hilum[0], hilum[1] + 8.0, hilum[2] - 25.0];
        for (origin, count, out, r) in [
            (hilum, rng.random_range(5..=8), &mut arteries, (2.5, 4.5)),
            (below, rng.random_range(3..=5), &mut veins, (2.5, 4.0)),
        ] {
            for k in 0..count {
                // Fan out: up, lateral, down, front and back.
                let elev = -1.0 + 2.0 * (k as f64 + rng.random_range(0.2..0.8)) / count as f64;
                let dir = normalize([
                    side * rng.random_range(0.5..1.0),
                    rng.random_range(-0.6..0.6),
                    elev * 1.2,
                ]);
                let spec = TreeSpec {
                    root: origin,
                    dir,
                    radius: rng.random_range(r.0..r.1),
                    min_radius: 0.3,
                    max_depth: 12,
                    away_from: origin,
                };
                grow_tree(rng, anatomy, &spec, out);
            }
        }
    }
    Vessels { arteries, veins }
}

pub fn perpendicular(rng: &mut impl rand::Rng, d: [f64; 3]) -> [f64; 3] {
    loop {
        let v = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        let p = sub(v, scale(d, dot(v, d)));
        if dot(p, p) > 1e-4 {
            return normalize(p);
        }
    }
}

pub fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    a.map(|v| v * s)
}
pub fn normalize(a: [f64; 3]) -> [f64; 3] {
    scale(a, 1.0 / dot(a, a).sqrt().max(1e-12))
}
