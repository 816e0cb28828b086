//! Pulmonary vessels: trees grown from each hilum, branching and thinning towards the
//! periphery. A vessel seen end-on is a bright blob: the classic nodule look-alike that the
//! false candidates point at.

use super::anatomy::Anatomy;
use super::canvas::{soft_edge, Canvas, EDGE_MM};
use rand::RngExt;

/// Blood without contrast.
pub const VESSEL_HU: f32 = 40.0;
const MIN_RADIUS_MM: f64 = 0.3;
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

    /// Paints the tube into the lungs; tubes thinner than the blur are fainter, as on CT.
    pub fn paint(&self, canvas: &mut Canvas) {
        let pad = self.r0.max(self.r1) + EDGE_MM;
        let lo = std::array::from_fn(|i| self.a[i].min(self.b[i]) - pad);
        let hi = std::array::from_fn(|i| self.a[i].max(self.b[i]) + pad);
        canvas.brighten(lo, hi, true, VESSEL_HU, |p| {
            let (d, t) = self.distance(p);
            let r = self.radius_at(t);
            soft_edge(r - d) * (2.0 * r / EDGE_MM).min(1.0) as f32
        });
    }
}

/// Grows 6–9 trees per lung from its hilum.
pub fn grow(rng: &mut impl rand::Rng, anatomy: &Anatomy) -> Vec<Segment> {
    let mut out = Vec::new();
    for side in [-1.0, 1.0] {
        let hilum = anatomy.hilum(side);
        let roots = rng.random_range(6..=9);
        let mut stack = Vec::new();
        for r in 0..roots {
            // Fan out: up, lateral, down, front and back.
            let elev = -1.0 + 2.0 * (r as f64 + rng.random_range(0.2..0.8)) / roots as f64;
            let dir = normalize([
                side * rng.random_range(0.5..1.0),
                rng.random_range(-0.6..0.6),
                elev * 1.2,
            ]);
            stack.push((hilum, dir, rng.random_range(2.8..4.5), 0u32));
        }
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
            if depth >= 12 || (depth >= 2 && !anatomy.is_lung(end)) {
                continue;
            }
            // Two children on opposite sides of the parent, the thinner one bending more.
            let axis = perpendicular(rng, dir);
            let outward = normalize(sub(end, hilum));
            for (scale, angle) in [
                (rng.random_range(0.78..0.9), rng.random_range(0.2..0.5)),
                (rng.random_range(0.62..0.8), -rng.random_range(0.45..0.9f64)),
            ] {
                let child_r = r_end * scale;
                if child_r < MIN_RADIUS_MM {
                    continue;
                }
                let (s, c) = angle.sin_cos();
                let d: [f64; 3] =
                    std::array::from_fn(|i| c * dir[i] + s * axis[i] + 0.25 * outward[i]);
                stack.push((end, normalize(d), child_r, depth + 1));
            }
        }
    }
    out
}

fn perpendicular(rng: &mut impl rand::Rng, d: [f64; 3]) -> [f64; 3] {
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
