//! Nodules and masses: solid, part-solid and ground-glass (Fleischner 2017 / Lung-RADS types),
//! 3–50 mm, with smooth, lobulated, irregular or spiculated margins, some calcified (benign
//! patterns) or cavitary; placed free in the lung, against the pleura, against a vessel, or on
//! a fissure. HU ranges and their sources: `docs/synth.md`.

use super::anatomy::Anatomy;
use super::canvas::{soft_edge, Canvas, Mode, Stroke};
use super::fissures::Fissure;
use super::shape::{random_unit, Margin, Shape};
use super::texture::ValueNoise;
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

    /// HU range of the nodule's own (outer) tissue, texture included, before blur and noise.
    pub fn hu_range(self) -> (f32, f32) {
        match self {
            NoduleKind::Solid => SOLID_HU,
            NoduleKind::PartSolid | NoduleKind::GroundGlass => GGN_HU,
        }
    }
}

/// Solid soft tissue of a nodule (unenhanced).
pub const SOLID_HU: (f32, f32) = (-40.0, 90.0);
/// Ground-glass attenuation: raised above the lung without hiding the vessels in it.
pub const GGN_HU: (f32, f32) = (-800.0, -300.0);
/// Calcium: above 200 HU is calcified (benign patterns), up to dense cortical-bone-like.
pub const CALCIUM_HU: (f32, f32) = (200.0, 1000.0);

/// Where the nodule sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Isolated,
    /// Touching the pleura (part of it sunk into the wall behind it).
    Juxtapleural(Pleura),
    /// Touching a vessel of about its own density.
    Juxtavascular,
    /// On a fissure, flattened along it.
    Perifissural,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Isolated => "isolated",
            Placement::Juxtapleural(Pleura::CostalOrMediastinal) => "juxtapleural",
            Placement::Juxtapleural(Pleura::Diaphragmatic) => "juxtapleural-diaphragmatic",
            Placement::Juxtavascular => "juxtavascular",
            Placement::Perifissural => "perifissural",
        }
    }
}

/// The pleura a juxtapleural nodule touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pleura {
    /// The rib cage or the mediastinum: reached marching sideways from a lung point.
    CostalOrMediastinal,
    /// The diaphragm dome under a lower lobe: reached marching down.
    Diaphragmatic,
}

/// Share of juxtapleural nodules on the diaphragmatic pleura, about that surface's share of
/// each lung's pleura (the rest is costal and mediastinal).
const DIAPHRAGMATIC_SHARE: f64 = 0.2;

/// Something inside a nodule: a solid component, calcium, or an air cavity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inclusion {
    pub center: [f64; 3],
    pub radius: f64,
    pub hu: f32,
}

/// A nodule in the anatomy frame (the scan converts positions to world mm).
#[derive(Debug, Clone)]
pub struct Nodule {
    /// Centre of the drawn shape.
    pub center: [f64; 3],
    /// Equivalent diameter of the label (what `annotations.csv` gives); the drawn nominal
    /// diameter until the scan is labelled.
    pub diameter_mm: f64,
    /// Diameter the shape was drawn at (2 × base radius).
    pub nominal_diameter_mm: f64,
    pub kind: NoduleKind,
    /// Mean HU of the (outer) nodule tissue.
    pub hu: f32,
    pub margin: Margin,
    pub placement: Placement,
    pub calcified: bool,
    pub cavitary: bool,
    pub shape: Shape,
    pub spicules: Vec<Segment>,
    pub inclusions: Vec<Inclusion>,
    texture: ValueNoise,
    texture_origin: [f64; 3],
    texture_hu: f32,
}

impl PartialEq for Nodule {
    fn eq(&self, o: &Self) -> bool {
        self.center == o.center
            && self.diameter_mm == o.diameter_mm
            && self.kind == o.kind
            && self.hu == o.hu
            && self.shape == o.shape
    }
}

impl Nodule {
    pub fn juxtapleural(&self) -> bool {
        matches!(self.placement, Placement::Juxtapleural(_))
    }

    /// Radius (mm) around the centre that holds the nodule and its spicules.
    pub fn extent(&self) -> f64 {
        let spicule = self
            .spicules
            .iter()
            .map(|s| {
                let d = sub(s.b, self.center);
                dot(d, d).sqrt() + s.r1
            })
            .fold(0.0, f64::max);
        self.shape.extent().max(spicule)
    }

    /// Fraction of a voxel of width `edge` at `p` that the lesion occupies (cavity included:
    /// readers outline a cavitary nodule by its outer wall).
    pub fn coverage(&self, p: [f64; 3], edge: f64) -> f32 {
        let body = soft_edge(self.shape.inside_mm(p), edge);
        if body >= 1.0 {
            return body;
        }
        self.spicules.iter().fold(body, |c, s| {
            let (d, t) = s.distance(p);
            let r = s.radius_at(t);
            c.max(soft_edge(r - d, edge) * (2.0 * r / edge).min(1.0) as f32)
        })
    }

    /// HU range of this nodule's own tissue: its kind's, or calcium for a diffusely
    /// calcified one.
    pub fn hu_range(&self) -> (f32, f32) {
        if self.hu > SOLID_HU.1 {
            CALCIUM_HU
        } else {
            self.kind.hu_range()
        }
    }

    /// HU of the nodule's own tissue at `p` (texture included, within [`Self::hu_range`]).
    pub fn tissue_hu(&self, p: [f64; 3]) -> f32 {
        let (lo, hi) = self.hu_range();
        let o = self.texture_origin;
        let t = self.texture.at(std::array::from_fn(|i| p[i] - o[i]));
        (self.hu + self.texture_hu * t).clamp(lo, hi)
    }

    pub fn paint(&self, canvas: &mut Canvas) {
        let edge = canvas.edge_mm();
        let pad = self.extent() + edge;
        let (lo, hi) = (self.center.map(|v| v - pad), self.center.map(|v| v + pad));
        let stroke = Stroke {
            lo,
            hi,
            lung_only: false,
            mode: Mode::Brighten,
        };
        canvas.paint(stroke, |p| {
            let c = self.coverage(p, edge);
            if c <= 0.0 {
                return (0.0, 0.0);
            }
            (c, self.tissue_hu(p))
        });
        for inc in &self.inclusions {
            let mode = if inc.hu < self.hu {
                Mode::Darken
            } else {
                Mode::Brighten
            };
            let r = inc.radius + edge;
            let stroke = Stroke {
                lo: inc.center.map(|v| v - r),
                hi: inc.center.map(|v| v + r),
                lung_only: false,
                mode,
            };
            canvas.paint(stroke, |p| {
                let d = sub(p, inc.center);
                let c = soft_edge(inc.radius - dot(d, d).sqrt(), edge)
                    * soft_edge(self.shape.inside_mm(p), edge);
                (c, inc.hu)
            });
        }
    }
}

/// What the nodules must keep clear of or may lean on.
pub struct Surroundings<'a> {
    pub anatomy: &'a Anatomy,
    pub vessels: &'a [Segment],
    pub airways: &'a [Segment],
    pub fissures: &'a [Fissure],
}

/// Draws 0–3 nodules (25 % / 40 % / 20 % / 15 %), up to `max` of them; `min_mm` is the
/// smallest diameter drawn (a nodule much thinner than the slice would leave no label).
///
/// Kind and size are drawn once per nodule and kept while a place is searched for: redrawing
/// them on every failed placement would favour whatever fits easily, and the scans would hold
/// almost no large nodules or masses (they did: 6 % above 20 mm instead of ~25 %). Only a size
/// that finds no place in [`TRIES_PER_SIZE`] tries shrinks, by 10 %.
pub fn place(rng: &mut impl rand::Rng, env: &Surroundings, max: usize, min_mm: f64) -> Vec<Nodule> {
    let u: f64 = rng.random();
    let wanted = [0.25, 0.65, 0.85, 1.0]
        .iter()
        .position(|&p| u < p)
        .unwrap_or(3)
        .min(max);
    let mut out: Vec<Nodule> = Vec::new();
    for _ in 0..wanted {
        let Some((kind, mut d)) = draw_kind_and_size(rng, min_mm) else {
            continue;
        };
        for attempt_no in 0..PLACEMENT_TRIES {
            if attempt_no > 0 && attempt_no % TRIES_PER_SIZE == 0 {
                d = (0.9 * d).max(min_size(kind, min_mm));
            }
            let Some(n) = attempt(rng, env, kind, d, min_mm) else {
                continue;
            };
            let clear_of_others = out.iter().all(|o| {
                let v = sub(o.center, n.center);
                dot(v, v).sqrt() > o.extent() + n.extent() + 8.0
            });
            if clear_of_others {
                out.push(n);
                break;
            }
        }
    }
    out
}

/// Placement tries per nodule, and per size before the size shrinks.
const PLACEMENT_TRIES: usize = 600;
const TRIES_PER_SIZE: usize = 60;

/// A nodule's kind and diameter; `None` when no diameter in range came in a few draws.
fn draw_kind_and_size(rng: &mut impl rand::Rng, min_mm: f64) -> Option<(NoduleKind, f64)> {
    let kind = draw_kind(rng);
    (0..64)
        .find_map(|_| draw_diameter(rng, kind, min_mm))
        .map(|d| (kind, d))
}

fn draw_kind(rng: &mut impl rand::Rng) -> NoduleKind {
    match rng.random_range(0..20) {
        0..=10 => NoduleKind::Solid,
        11..=14 => NoduleKind::PartSolid,
        _ => NoduleKind::GroundGlass,
    }
}

/// Diameter (mm): mostly LUNA16-like small nodules, with a tail of large nodules and masses
/// (> 30 mm) that real models tend to miss.
fn draw_diameter(rng: &mut impl rand::Rng, kind: NoduleKind, min_mm: f64) -> Option<f64> {
    let d = match rng.random_range(0..20) {
        0..=10 => LogNormal::new(7f64.ln(), 0.5).expect("valid").sample(rng),
        11..=16 => rng.random_range(10.0..30.0),
        _ => rng.random_range(20.0..50.0),
    };
    // Redraw rather than clamp: no pile-up at the limits.
    (min_size(kind, min_mm)..=50.0).contains(&d).then_some(d)
}

/// The smallest diameter (mm) of a kind: a part-solid nodule needs room for its solid part.
fn min_size(kind: NoduleKind, min_mm: f64) -> f64 {
    match kind {
        NoduleKind::Solid => 3.0f64,
        NoduleKind::PartSolid => 6.0,
        NoduleKind::GroundGlass => 5.0,
    }
    .max(min_mm)
}

fn attempt(
    rng: &mut impl rand::Rng,
    env: &Surroundings,
    kind: NoduleKind,
    d: f64,
    min_mm: f64,
) -> Option<Nodule> {
    let placement = match rng.random_range(0..20) {
        0..=7 => Placement::Isolated,
        8..=12 => Placement::Juxtapleural(if rng.random_bool(DIAPHRAGMATIC_SHARE) {
            Pleura::Diaphragmatic
        } else {
            Pleura::CostalOrMediastinal
        }),
        13..=16 => Placement::Juxtavascular,
        _ => Placement::Perifissural,
    };
    let mut d = d;
    if placement == Placement::Perifissural {
        // Perifissural nodules are small, solid, lentiform.
        d = d.clamp(min_mm.max(3.0), 12.0);
    }
    let kind = if placement == Placement::Perifissural {
        NoduleKind::Solid
    } else {
        kind
    };
    let r = d / 2.0;
    let (center, flatten) = position(rng, env, r, placement)?;
    let margin = match (placement, rng.random_range(0..10)) {
        (Placement::Perifissural, _) => Margin::Smooth,
        (_, 0..=2) => Margin::Smooth,
        (_, 3..=5) => Margin::Lobulated,
        (_, 6..=7) => Margin::Irregular,
        _ => Margin::Spiculated,
    };
    let shape = Shape::random(rng, center, r, margin, flatten);
    let n = build(rng, kind, shape, margin, placement, d);
    fits(&n, env).then_some(n)
}

/// The nodule's tissue, texture, spicules and inclusions (random draws in this order: tissue
/// HU, inclusions, spicules, texture; a seed's scans depend on it).
fn build(
    rng: &mut impl rand::Rng,
    kind: NoduleKind,
    shape: Shape,
    margin: Margin,
    placement: Placement,
    d: f64,
) -> Nodule {
    let center = shape.center;
    let (hu, texture_hu) = match kind {
        NoduleKind::Solid => (rng.random_range(15.0..55.0f32), 12.0),
        NoduleKind::GroundGlass => (rng.random_range(-720.0..-380.0), 55.0),
        NoduleKind::PartSolid => (rng.random_range(-680.0..-400.0), 50.0),
    };
    let inside = Inside::draw(rng, kind, center, d, hu);
    let spicules = if margin == Margin::Spiculated {
        spicules(rng, &shape, d / 2.0)
    } else {
        Vec::new()
    };
    let mut n = Nodule {
        center,
        diameter_mm: d,
        nominal_diameter_mm: d,
        kind,
        hu: inside.hu,
        margin,
        placement,
        calcified: inside.calcified,
        cavitary: inside.cavitary,
        shape,
        spicules,
        inclusions: inside.inclusions,
        texture: ValueNoise::new(rng, [1.0; 3], 1.5),
        texture_origin: center,
        texture_hu,
    };
    let half = n.extent() + 2.0;
    n.texture = ValueNoise::new(rng, [2.0 * half; 3], 1.5);
    n.texture_origin = center.map(|c| c - half);
    if n.hu > SOLID_HU.1 {
        // Diffuse calcification: mottled calcium.
        n.texture_hu = 40.0;
    }
    n
}

/// What lies inside a nodule: solid components of a part-solid one, calcium (diffuse, central
/// nidus or popcorn) or a cavity in some solid ones.
struct Inside {
    /// The tissue HU, raised for diffuse calcification.
    hu: f32,
    inclusions: Vec<Inclusion>,
    calcified: bool,
    cavitary: bool,
}

impl Inside {
    fn draw(rng: &mut impl rand::Rng, kind: NoduleKind, center: [f64; 3], d: f64, hu: f32) -> Self {
        let r = d / 2.0;
        let mut inside = Inside {
            hu,
            inclusions: Vec::new(),
            calcified: false,
            cavitary: false,
        };
        match kind {
            NoduleKind::PartSolid => {
                // Solid component(s): 25–70 % of the diameter, off-centre.
                for _ in 0..rng.random_range(1..=3) {
                    let cr = r * rng.random_range(0.25..0.6);
                    let (u, t) = (random_unit(rng), rng.random_range(0.0..0.7));
                    let off = u.map(|v| v * (r - cr) * t);
                    inside.inclusions.push(Inclusion {
                        center: std::array::from_fn(|i| center[i] + off[i]),
                        radius: cr,
                        hu: rng.random_range(0.0..50.0),
                    });
                }
            }
            NoduleKind::Solid if rng.random_bool(0.12) => {
                inside.calcified = true;
                inside.calcify(rng, center, r);
            }
            NoduleKind::Solid if d >= 10.0 && rng.random_bool(0.1) => {
                inside.cavitary = true;
                let wall = r * rng.random_range(0.25..0.5);
                let (u, t) = (random_unit(rng), rng.random_range(0.0..0.6));
                let off = u.map(|v| v * wall * t);
                inside.inclusions.push(Inclusion {
                    center: std::array::from_fn(|i| center[i] + off[i]),
                    radius: r - wall,
                    hu: rng.random_range(-1000.0..-950.0),
                });
            }
            _ => {}
        }
        inside
    }

    /// One of the three calcification patterns.
    fn calcify(&mut self, rng: &mut impl rand::Rng, center: [f64; 3], r: f64) {
        match rng.random_range(0..3) {
            // Diffuse: the whole nodule is calcium-dense.
            0 => self.hu = rng.random_range(250.0..600.0),
            // Central nidus.
            1 => self.inclusions.push(Inclusion {
                center,
                radius: r * rng.random_range(0.3..0.55),
                hu: rng.random_range(CALCIUM_HU.0 + 100.0..CALCIUM_HU.1),
            }),
            // Popcorn: scattered chunks.
            _ => {
                for _ in 0..rng.random_range(3..=6) {
                    let (u, t) = (random_unit(rng), rng.random_range(0.0..0.6));
                    let off = u.map(|v| v * r * t);
                    self.inclusions.push(Inclusion {
                        center: std::array::from_fn(|i| center[i] + off[i]),
                        radius: r * rng.random_range(0.12..0.3),
                        hu: rng.random_range(400.0..CALCIUM_HU.1),
                    });
                }
            }
        }
    }
}

/// 6–18 spicules from the surface of `shape` outwards, each up to 20 mm.
fn spicules(rng: &mut impl rand::Rng, shape: &Shape, r: f64) -> Vec<Segment> {
    (0..rng.random_range(6..=18))
        .map(|_| {
            let u = random_unit(rng);
            let a = shape.surface_towards(u);
            let len = (r * rng.random_range(0.4..1.2)).min(20.0);
            let wobble = random_unit(rng);
            let dir = normalize(std::array::from_fn(|i| u[i] + 0.3 * wobble[i]));
            Segment {
                a: std::array::from_fn(|i| a[i] - 0.5 * u[i]),
                b: std::array::from_fn(|i| a[i] + len * dir[i]),
                r0: rng.random_range(0.4..0.9),
                r1: 0.15,
            }
        })
        .collect()
}

/// A direction to squash a shape along, and the factor.
type Flatten = ([f64; 3], f64);

/// A centre for this placement, and for perifissural nodules the fissure normal to flatten
/// along.
fn position(
    rng: &mut impl rand::Rng,
    env: &Surroundings,
    r: f64,
    placement: Placement,
) -> Option<([f64; 3], Option<Flatten>)> {
    let a = env.anatomy;
    let (lo, hi) = a.lung_box();
    let p: [f64; 3] = std::array::from_fn(|i| rng.random_range(lo[i]..hi[i]));
    if !a.is_lung(p) {
        return None;
    }
    match placement {
        Placement::Isolated => Some((p, None)),
        Placement::Juxtapleural(pleura) => {
            // March to the first non-lung point, then sink the nodule 10–40 % of its radius
            // into the wall.
            let dir = wall_direction(rng, p, pleura);
            let t = a.lung_depth_along(p, dir)?;
            // Marching down can meet the heart or the rib cage first: that is another pleura.
            let wall = std::array::from_fn(|i| p[i] + (t + 0.5) * dir[i]);
            if pleura == Pleura::Diaphragmatic && !a.under_dome(wall) {
                return None;
            }
            let back = t - r * rng.random_range(0.6..0.9);
            (back >= 0.0).then(|| (std::array::from_fn(|i| p[i] + back * dir[i]), None))
        }
        Placement::Juxtavascular => {
            let thick: Vec<&Segment> = env.vessels.iter().filter(|s| s.r0 >= 1.0).collect();
            if thick.is_empty() {
                return None;
            }
            let s = thick[rng.random_range(0..thick.len())];
            let t = rng.random_range(0.2..0.8);
            let axis = normalize(sub(s.b, s.a));
            let side = super::vessels::perpendicular(rng, axis);
            let dist = s.radius_at(t) + r * rng.random_range(0.75..1.0);
            let q = s.point_at(t);
            Some((std::array::from_fn(|i| q[i] + dist * side[i]), None))
        }
        Placement::Perifissural => {
            let candidates: Vec<&Fissure> = env
                .fissures
                .iter()
                .filter(|f| f.covers(p, env.fissures))
                .collect();
            let f = *candidates.first()?;
            let d = f.distance(p);
            let n = f.normal();
            let off = rng.random_range(-0.2..0.2) * r;
            let c = std::array::from_fn(|i| p[i] - (d - off) * n[i]);
            Some((c, Some((n, rng.random_range(0.5..0.75)))))
        }
    }
}

/// Where to march from the lung point `p` to meet `pleura`: sideways, mostly towards the rib
/// cage on the point's own side (else across to the mediastinum), or down to the dome.
fn wall_direction(rng: &mut impl rand::Rng, p: [f64; 3], pleura: Pleura) -> [f64; 3] {
    match pleura {
        Pleura::CostalOrMediastinal => {
            let side = if rng.random_bool(0.8) {
                p[0].signum()
            } else {
                -p[0].signum()
            };
            normalize([
                side * rng.random_range(0.3..1.0),
                rng.random_range(-1.0..1.0),
                rng.random_range(-0.3..0.3),
            ])
        }
        Pleura::Diaphragmatic => normalize([
            rng.random_range(-0.35..0.35),
            rng.random_range(-0.35..0.35),
            -1.0,
        ]),
    }
}

/// Extent (mm) above which a nodule counts as a mass for placement (~24 mm across).
const MASS_RADIUS_MM: f64 = 12.0;

/// The nodule sits in lung (all but the wall side of a juxtapleural one), keeps out of the
/// airways, and (unless juxtavascular) keeps 1 mm from the thick vessels.
fn fits(n: &Nodule, env: &Surroundings) -> bool {
    let a = env.anatomy;
    let c = n.center;
    if !a.is_lung(c) {
        return false;
    }
    let r = n.shape.extent();
    let juxta = n.juxtapleural();
    // Masses (> 24 mm) may abut the wall or mediastinum on a side, as real ones do.
    let (reach, needed) = if juxta {
        (0.3 * r, 18)
    } else if r > MASS_RADIUS_MM {
        (0.75 * r, 20)
    } else {
        (r + 2.0, 26)
    };
    let inside = (0..26)
        .filter(|&k| {
            let u = fibonacci_dir(k, 26);
            a.is_lung(std::array::from_fn(|i| c[i] + reach * u[i]))
        })
        .count();
    if inside < needed {
        return false;
    }
    let clear = |segs: &[Segment], margin: f64| {
        segs.iter().all(|s| {
            let (dist, t) = s.distance(c);
            dist > s.radius_at(t) + r + margin
        })
    };
    let airways_ok = clear(env.airways, 1.0);
    let thick: Vec<Segment> = env
        .vessels
        .iter()
        .filter(|s| s.r0 >= 1.0)
        .copied()
        .collect();
    // Masses encase the vessels they grow around (they are painted over them); smaller
    // nodules keep clear unless placed against one.
    let vessels_ok =
        n.placement == Placement::Juxtavascular || r > MASS_RADIUS_MM || clear(&thick, 1.0);
    airways_ok && vessels_ok
}

/// `n` roughly even directions on the sphere.
fn fibonacci_dir(k: usize, n: usize) -> [f64; 3] {
    let z = 1.0 - 2.0 * (k as f64 + 0.5) / n as f64;
    let r = (1.0 - z * z).sqrt();
    let phi = k as f64 * std::f64::consts::PI * (3.0 - 5f64.sqrt());
    [r * phi.cos(), r * phi.sin(), z]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Share of juxtapleural centres (radius 6 mm) with a point under the diaphragm dome
    /// within 1.2 radii, over 300 placements in an adult-sized chest.
    fn share_on_the_dome(pleura: Pleura) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let a = Anatomy::random(&mut rng, 340.0, 220.0, false);
        let env = Surroundings {
            anatomy: &a,
            vessels: &[],
            airways: &[],
            fissures: &[],
        };
        let r = 6.0;
        let mut on_dome = 0;
        let mut placed = 0;
        for _ in 0..100_000 {
            if placed == 300 {
                break;
            }
            let Some((c, _)) = position(&mut rng, &env, r, Placement::Juxtapleural(pleura)) else {
                continue;
            };
            placed += 1;
            let touches = (0..26).any(|k| {
                let u = fibonacci_dir(k, 26);
                a.under_dome(std::array::from_fn(|i| c[i] + 1.2 * r * u[i]))
            });
            on_dome += usize::from(touches);
        }
        assert_eq!(
            placed, 300,
            "{pleura:?}: too few placements in 100000 tries"
        );
        on_dome as f64 / placed as f64
    }

    #[test]
    fn diaphragmatic_nodules_sit_on_the_dome_and_the_others_rarely_do() {
        let dome = share_on_the_dome(Pleura::Diaphragmatic);
        let side = share_on_the_dome(Pleura::CostalOrMediastinal);
        assert!(dome > 0.95, "diaphragmatic: {dome}");
        assert!(side < 0.25, "costal or mediastinal: {side}");
    }

    #[test]
    fn fibonacci_directions_are_unit_and_spread() {
        let dirs: Vec<_> = (0..26).map(|k| fibonacci_dir(k, 26)).collect();
        for d in &dirs {
            assert!((dot(*d, *d) - 1.0).abs() < 1e-9);
        }
        let mean: [f64; 3] = std::array::from_fn(|i| dirs.iter().map(|d| d[i]).sum::<f64>() / 26.0);
        assert!(dot(mean, mean).sqrt() < 0.1, "{mean:?}");
    }
}
