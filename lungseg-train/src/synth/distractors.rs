//! Lung disease that is not a nodule, so that a model learns to leave it alone: centrilobular
//! emphysema and paraseptal bullae (air below the parenchyma), segmental consolidation
//! (soft-tissue density with air bronchograms, because the airways are painted after it), and
//! basal subpleural fibrosis (reticulation over ground glass). None of it is labelled.

use super::anatomy::{Anatomy, AIR};
use super::canvas::{soft_edge, Canvas, Mode, Stroke};
use super::texture::ValueNoise;
use super::vessels::{dot, normalize, sub};
use rand::RngExt;

/// One scan's distractors.
pub struct Distractors {
    holes: Vec<([f64; 3], f64, f32)>,
    consolidations: Vec<Consolidation>,
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
        if let Some(c) = (0..200).find_map(|_| Consolidation::draw(rng, anatomy)) {
            consolidations.push(c);
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
    /// The consolidated segments (anatomy frame).
    pub fn consolidations(&self) -> &[Consolidation] {
        &self.consolidations
    }

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
        for c in &self.consolidations {
            let (lo, hi) = c.bounds();
            let stroke = Stroke {
                lo,
                hi,
                lung_only: true,
                mode: Mode::Brighten,
            };
            canvas.paint(stroke, |p| c.coverage(p));
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

/// Airspace consolidation of one lung segment, as pneumonia fills it: a [`Wedge`] from the
/// hilum out to the pleura with a wobbling margin that fades into ground glass, at −80…+40 HU
/// and patchy. It is pleural-based and wedge-shaped, apex towards the hilum (Fleischner
/// Society glossary, Hansell et al., Radiology 246:697, 2008), unlike a nodule or mass: a
/// generator that draws consolidation as a soft-tissue ball draws an unlabelled mass.
#[derive(Debug, Clone)]
pub struct Consolidation {
    pub wedge: Wedge,
    hu: f32,
    /// Margin wobble and patchiness, over the wedge's box from `origin`.
    margin: ValueNoise,
    patches: ValueNoise,
    origin: [f64; 3],
}

/// The lung within a cone whose apex is the hilum (where a segment's bronchus and artery
/// enter) and whose axis runs through a lung point, from `near` mm along the axis out past the
/// pleura at `reach`, where the lung mask clips it.
#[derive(Debug, Clone, Copy)]
pub struct Wedge {
    pub apex: [f64; 3],
    pub axis: [f64; 3],
    pub half_angle: f64,
    pub near: f64,
    pub reach: f64,
}

/// How far (mm per unit of noise) the consolidation's margin wanders from the cone.
const MARGIN_WOBBLE_MM: f64 = 5.0;
/// Width (mm) over which consolidation fades into ground glass at its margin.
const CONSOLIDATION_EDGE_MM: f64 = 4.0;

impl Wedge {
    /// Position along the axis from the apex, and distance from the axis (mm).
    pub fn along_radial(&self, q: [f64; 3]) -> (f64, f64) {
        let v = sub(q, self.apex);
        let along = dot(v, self.axis);
        (along, (dot(v, v) - along * along).max(0.0).sqrt())
    }

    /// Signed distance (mm, > 0 inside) to the nearer of the cone's mantle and the inner cap.
    pub fn inside_mm(&self, q: [f64; 3]) -> f64 {
        let (along, radial) = self.along_radial(q);
        let mantle = (along * self.half_angle.tan() - radial) * self.half_angle.cos();
        mantle.min(along - self.near)
    }

    /// The point on the axis halfway through the wedge's depth.
    pub fn middle(&self) -> [f64; 3] {
        let t = 0.5 * (self.near + self.reach);
        std::array::from_fn(|i| self.apex[i] + t * self.axis[i])
    }

    /// A box holding the wedge from its inner cap to 10 mm past the pleura, padded by `pad`.
    pub fn bounds(&self, pad: f64) -> ([f64; 3], [f64; 3]) {
        let far = self.reach + 10.0;
        let pad = far * self.half_angle.tan() + pad;
        let ends = [self.near, far]
            .map(|t| -> [f64; 3] { std::array::from_fn(|i| self.apex[i] + t * self.axis[i]) });
        let lo = std::array::from_fn(|i| ends[0][i].min(ends[1][i]) - pad);
        let hi = std::array::from_fn(|i| ends[0][i].max(ends[1][i]) + pad);
        (lo, hi)
    }
}

impl Consolidation {
    /// A consolidated segment through a random lung point; `None` if the point is not lung or
    /// the march to the pleura fails.
    pub fn draw(rng: &mut impl rand::Rng, anatomy: &Anatomy) -> Option<Self> {
        let (lo, hi) = anatomy.lung_box();
        let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
        if !anatomy.is_lung(p) {
            return None;
        }
        let apex = anatomy.hilum(if p[0] >= 0.0 { 1.0 } else { -1.0 });
        let to_p = sub(p, apex);
        let axis = normalize(to_p);
        let reach = dot(to_p, axis) + anatomy.lung_depth_along(p, axis)?;
        // Segments reach 25–60 mm in from the pleura and subtend 24–56° at the hilum.
        let depth = rng.random_range(25.0..60.0_f64).min(0.8 * reach);
        let wedge = Wedge {
            apex,
            axis,
            half_angle: rng.random_range(12.0..28.0_f64).to_radians(),
            near: reach - depth,
            reach,
        };
        let (lo, hi) = wedge.bounds(Self::PAD_MM);
        let extent = std::array::from_fn(|i| hi[i] - lo[i]);
        Some(Consolidation {
            wedge,
            hu: rng.random_range(-80.0..40.0),
            margin: ValueNoise::new(rng, extent, 8.0),
            patches: ValueNoise::new(rng, extent, 10.0),
            origin: lo,
        })
    }

    /// Room around the cone for the margin's wobble (3 units of noise) and its soft edge.
    const PAD_MM: f64 = 3.0 * MARGIN_WOBBLE_MM + CONSOLIDATION_EDGE_MM;

    /// Signed distance (mm, > 0 inside) to the wobbling surface, before the lung clips it.
    pub fn inside_mm(&self, q: [f64; 3]) -> f64 {
        // Clamped to the 3 units `PAD_MM` leaves room for: the lattice's Gaussian values pass 3
        // now and then, and the box would cut the margin off there.
        let units = f64::from(self.margin.at(sub(q, self.origin))).clamp(-3.0, 3.0);
        let wobble = MARGIN_WOBBLE_MM * units;
        self.wedge.inside_mm(q) + wobble
    }

    /// Coverage and target HU at a point: consolidation inside, fading into ground glass over
    /// the margin, and patchy (up to a fifth of the density lost in places), as lobular
    /// filling is.
    fn coverage(&self, q: [f64; 3]) -> (f32, f32) {
        let edge = soft_edge(self.inside_mm(q), CONSOLIDATION_EDGE_MM);
        if edge == 0.0 {
            return (0.0, 0.0);
        }
        // The positive lobe only, and mild: value noise's lattice shows as squares at larger
        // amplitudes, and `abs()` would draw ridges along its zero set.
        let patchy = (self.patches.at(sub(q, self.origin)).max(0.0) * 0.15).min(0.2);
        (edge * (1.0 - patchy), self.hu)
    }

    /// The box painting must cover.
    pub fn bounds(&self) -> ([f64; 3], [f64; 3]) {
        self.wedge.bounds(Self::PAD_MM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The lung points of a wedge (inside its surface), on a 2 mm grid of its box.
    fn painted(c: &Consolidation, a: &Anatomy) -> Vec<[f64; 3]> {
        let (lo, hi) = c.bounds();
        let n = |i: usize| ((hi[i] - lo[i]) / 2.0) as usize;
        let mut pts = Vec::new();
        for k in 0..n(2) {
            for j in 0..n(1) {
                for i in 0..n(0) {
                    let q = [
                        lo[0] + 2.0 * i as f64,
                        lo[1] + 2.0 * j as f64,
                        lo[2] + 2.0 * k as f64,
                    ];
                    if a.is_lung(q) && c.inside_mm(q) > 0.0 {
                        pts.push(q);
                    }
                }
            }
        }
        pts
    }

    /// What tells consolidation from a mass: it meets the pleura over a broad base, widens
    /// towards it, and never reaches back to the hilum.
    #[test]
    fn consolidations_are_pleural_based_wedges_pointing_at_the_hilum() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut checked, mut widening) = (0, 0);
        for _ in 0..30 {
            let a = Anatomy::random(&mut rng, 340.0, 260.0, false);
            let Some(c) = (0..200).find_map(|_| Consolidation::draw(&mut rng, &a)) else {
                continue;
            };
            let pts = painted(&c, &a);
            assert!(pts.len() > 100, "a wedge of {} points", pts.len());
            let (near, reach) = (c.wedge.near, c.wedge.reach);
            // Broad pleural base: many of its points have non-lung within 3 mm.
            let on_pleura = pts
                .iter()
                .filter(|q| {
                    (0..6).any(|k| {
                        let mut r = **q;
                        r[k / 2] += if k % 2 == 0 { 3.0 } else { -3.0 };
                        !a.is_lung(r)
                    })
                })
                .count();
            assert!(
                on_pleura * 20 >= pts.len(),
                "{on_pleura} of {} on the pleura",
                pts.len()
            );
            // Nothing nearer the hilum than the inner cap allows (margin wobble ≤ 3 units).
            let min_along = pts
                .iter()
                .map(|q| c.wedge.along_radial(*q).0)
                .fold(f64::INFINITY, f64::min);
            assert!(
                min_along > near - 3.0 * MARGIN_WOBBLE_MM,
                "{min_along} vs near {near}"
            );
            // Wider in the outer half of its span than in the inner half (the margin's
            // wobble can undo it in a shallow wedge, so this is counted, not asserted each time).
            let mid = 0.5 * (near + reach);
            let width = |outer: bool| {
                pts.iter()
                    .map(|q| c.wedge.along_radial(*q))
                    .filter(|(along, _)| (*along >= mid) == outer)
                    .map(|(_, radial)| radial)
                    .fold(0.0, f64::max)
            };
            widening += usize::from(width(true) > width(false));
            checked += 1;
        }
        eprintln!("{widening} of {checked} wedges wider in their outer half");
        assert!(
            widening * 10 >= checked * 7,
            "{widening} of {checked} widen outwards"
        );
        assert!(checked >= 25, "only {checked} wedges drawn");
    }
}
