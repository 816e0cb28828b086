//! Where patches are cut in one scan, and their labels.
//!
//! - Positives: `per_nodule(diameter)` patches around each annotation, the centre moved by a
//!   uniform jitter of up to `jitter_mm` per axis (capped so the nodule centre stays well inside
//!   the patch), so the network does not learn "the nodule is always in the middle".
//! - Negatives: class-0 candidates at least [`NEG_CLEARANCE_MM`] beyond every [`Keepout`]
//!   (the nodules, LUNA16's excluded findings, LIDC findings no annotation took) — LUNA16's
//!   hard negatives: vessels, scars — random lung points (see [`lung_point`]) and, when asked
//!   for, points on the lung's border with thick tissue (see [`border_point`]): the chest wall,
//!   the diaphragm dome, the heart and mediastinum, whose round cross-sections and
//!   partial-volume crescents a network calls nodules unless it has been shown them.
//! - Labels: the union of the balls of every annotation of the scan without an outline,
//!   rasterised in world mm by `lungseg::patch::sphere_mask` (so direction and anisotropic
//!   spacing are honoured), and of the LIDC consensus masks of the others (`lidc::label`), for
//!   positives and negatives alike: a negative that happens to touch a nodule says so.

use anyhow::Result;
use lungseg::patch::{self, PatchSpec};
use lungseg::volume::Volume;
use rand::seq::SliceRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::lidc::label::paint_patch;
use super::lidc::ScanNodule;
use super::luna::{Annotation, Candidate};
use lungseg::geometry::Geometry;

/// A negative must be this far (mm) beyond a nodule's surface.
pub const NEG_CLEARANCE_MM: f64 = 10.0;
/// Lung parenchyma window for random negatives (HU): aerated lung is about −850 HU; outside air
/// (−1000) and soft tissue are excluded.
pub const LUNG_HU: (f32, f32) = (-950.0, -700.0);
/// "Tissue" when walking from a candidate lung voxel to the scan border (HU).
pub const BODY_HU: f32 = -300.0;
/// Random voxels tried per lung point wanted before giving up.
const LUNG_TRIES: usize = 400;
/// Longest walk (mm) from a lung point to the border of [`border_point`].
pub const BORDER_WALK_MM: usize = 80;
/// Tissue along the walk counts as the border only after this many mm of it: vessels (a few mm
/// across) are crossed, chest wall, diaphragm and mediastinum are not.
pub const BORDER_TISSUE_MM: usize = 6;
/// ... and only where a 5 mm cube centred 3 mm beyond the border is at least this share tissue:
/// a walk that runs along a vessel finds a long run of tissue but no wall.
const BORDER_WALL_SHARE: f64 = 0.9;

/// Why a patch was cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// Around annotation `index` (of the scan's annotations) with its diameter.
    Nodule { index: usize, diameter_mm: f64 },
    /// At a class-0 candidate.
    Candidate,
    /// At a random lung point.
    Lung,
    /// On the lung's border ([`border_point`]).
    Border,
}

impl Source {
    /// Letter used in patch ids: `p` positive, `c` candidate, `r` random lung.
    pub fn tag(&self) -> char {
        match self {
            Source::Nodule { .. } => 'p',
            Source::Candidate => 'c',
            Source::Lung => 'r',
            Source::Border => 'b',
        }
    }
}

/// A patch to cut: its centre (world mm) and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Site {
    pub center: [f64; 3],
    pub source: Source,
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// A place negatives keep [`NEG_CLEARANCE_MM`] away from: within `radius_mm` of `world`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keepout {
    pub world: [f64; 3],
    pub radius_mm: f64,
}

impl Keepout {
    /// A nodule or finding of `diameter_mm` (0 for a point).
    pub fn of(a: &Annotation) -> Keepout {
        Keepout {
            world: a.world,
            radius_mm: a.diameter_mm.max(0.0) / 2.0,
        }
    }
}

fn clear_of(p: [f64; 3], keep: &[Keepout]) -> bool {
    keep.iter()
        .all(|k| dist(p, k.world) > k.radius_mm + NEG_CLEARANCE_MM)
}

/// Jittered positive centres for every annotation, `per_nodule(diameter_mm)` of each.
pub fn positives(
    ann: &[&Annotation],
    per_nodule: impl Fn(f64) -> usize,
    jitter_mm: f64,
    spec: &PatchSpec,
    rng: &mut ChaCha8Rng,
) -> Vec<Site> {
    let mut out = Vec::new();
    for (index, a) in ann.iter().enumerate() {
        // Keep the nodule centre at least 2 voxels inside the patch on every axis.
        let cap: [f64; 3] = std::array::from_fn(|k| {
            let half = (spec.size[k] / 2) as f64 * spec.spacing_mm[k];
            jitter_mm.min(half - 2.0 * spec.spacing_mm[k]).max(0.0)
        });
        for _ in 0..per_nodule(a.diameter_mm) {
            let center = std::array::from_fn(|k| {
                let j = if cap[k] > 0.0 {
                    rng.random_range(-cap[k]..=cap[k])
                } else {
                    0.0
                };
                a.world[k] + j
            });
            out.push(Site {
                center,
                source: Source::Nodule {
                    index,
                    diameter_mm: a.diameter_mm,
                },
            });
        }
    }
    out
}

/// `n` negative centres: about `candidate_fraction` of them from class-0 candidates clear of
/// every keepout, the rest random lung points; either kind fills in when the other runs out.
/// Returns fewer than `n` only when neither is available.
pub fn negatives(
    volume: &Volume,
    keep: &[Keepout],
    candidates: &[&Candidate],
    n: usize,
    candidate_fraction: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Site> {
    let mut pool: Vec<[f64; 3]> = candidates
        .iter()
        .filter(|c| c.class == 0 && clear_of(c.world, keep))
        .map(|c| c.world)
        .collect();
    pool.shuffle(rng);
    let want_cand = ((n as f64 * candidate_fraction).round() as usize).min(n);
    let mut out: Vec<Site> = pool
        .iter()
        .take(want_cand)
        .map(|&center| Site {
            center,
            source: Source::Candidate,
        })
        .collect();
    let mut tries = 0;
    while out.len() < n && tries < LUNG_TRIES * n {
        tries += 1;
        if let Some(center) = lung_point(volume, rng) {
            if clear_of(center, keep) {
                out.push(Site {
                    center,
                    source: Source::Lung,
                });
            }
        }
    }
    // Not enough lung found (e.g. a phantom or a cropped scan): more candidates.
    let used = out.iter().filter(|s| s.source == Source::Candidate).count();
    for &center in pool.iter().skip(used).take(n - out.len()) {
        out.push(Site {
            center,
            source: Source::Candidate,
        });
    }
    out
}

/// `n` negative centres on the lung's border ([`border_point`]) clear of every keepout; fewer
/// when the scan has no such border (a phantom, a crop inside the lung).
pub fn border_negatives(
    volume: &Volume,
    keep: &[Keepout],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Site> {
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n && tries < LUNG_TRIES * n {
        tries += 1;
        if let Some(center) = border_point(volume, rng).filter(|&c| clear_of(c, keep)) {
            out.push(Site {
                center,
                source: Source::Border,
            });
        }
    }
    out
}

/// A point where the lung meets thick tissue: from a random lung point ([`lung_point`]) along
/// a random direction (uniform on the sphere, 1 mm steps in world mm, nearest voxel) to the
/// first of [`BORDER_TISSUE_MM`] consecutive mm above [`BODY_HU`]. `None` when the walk leaves
/// the scan, finds no such run within [`BORDER_WALK_MM`], or the run is no wall (see
/// [`BORDER_WALL_SHARE`]: a walk along a vessel, or one grazing a curved wall).
pub fn border_point(volume: &Volume, rng: &mut ChaCha8Rng) -> Option<[f64; 3]> {
    let start = lung_point(volume, rng)?;
    let z: f64 = rng.random_range(-1.0..=1.0);
    let phi: f64 = rng.random_range(0.0..std::f64::consts::TAU);
    let r = (1.0 - z * z).sqrt();
    let dir = [r * phi.cos(), r * phi.sin(), z];
    let at = |mm: usize| -> [f64; 3] { std::array::from_fn(|i| start[i] + dir[i] * mm as f64) };
    let mut run_start = None;
    for mm in 1..=BORDER_WALK_MM {
        if tissue_at(volume, at(mm))? {
            let first = *run_start.get_or_insert(mm);
            if mm + 1 - first >= BORDER_TISSUE_MM {
                let wall = tissue_share_around(volume, at(first + 3)) >= BORDER_WALL_SHARE;
                return wall.then(|| at(first));
            }
        } else {
            run_start = None;
        }
    }
    None
}

/// Whether the voxel nearest `p` (world mm) is above [`BODY_HU`]; `None` outside the scan.
fn tissue_at(volume: &Volume, p: [f64; 3]) -> Option<bool> {
    let dims = volume.geometry.dims;
    let idx = volume.geometry.world_to_index(p).map(f64::round);
    if !(0..3).all(|a| idx[a] >= 0.0 && idx[a] < dims[a] as f64) {
        return None;
    }
    let [i, j, k] = idx.map(|x| x as usize);
    Some(volume.value(i, j, k) > BODY_HU)
}

/// Share of tissue ([`tissue_at`]) on a 5 × 5 × 5 grid of 1 mm steps around `p`; points outside
/// the scan count as not tissue.
fn tissue_share_around(volume: &Volume, p: [f64; 3]) -> f64 {
    let steps = -2..=2i32;
    let mut tissue = 0usize;
    for dz in steps.clone() {
        for dy in steps.clone() {
            for dx in steps.clone() {
                let q = [
                    p[0] + f64::from(dx),
                    p[1] + f64::from(dy),
                    p[2] + f64::from(dz),
                ];
                tissue += usize::from(tissue_at(volume, q) == Some(true));
            }
        }
    }
    tissue as f64 / 125.0
}

/// One random voxel, accepted as lung when its HU is in [`LUNG_HU`] and it is enclosed by the
/// body: walking along its row (x) and its column (y) to the scan border finds tissue
/// (> [`BODY_HU`]) on both sides. Outside air, the trachea and bowel gas (≈ −1000 HU) fail the
/// HU test; air around the patient fails the enclosure test. A cheap heuristic, not a lung
/// segmentation: it only has to make negatives look like the lung the positives sit in.
pub fn lung_point(volume: &Volume, rng: &mut ChaCha8Rng) -> Option<[f64; 3]> {
    let [nx, ny, nz] = volume.geometry.dims;
    let (i, j, k) = (
        rng.random_range(0..nx),
        rng.random_range(0..ny),
        rng.random_range(0..nz),
    );
    let v = volume.value(i, j, k);
    if !(LUNG_HU.0..=LUNG_HU.1).contains(&v) {
        return None;
    }
    let tissue = |x: usize, y: usize| volume.value(x, y, k) > BODY_HU;
    let enclosed = (0..i).any(|x| tissue(x, j))
        && (i + 1..nx).any(|x| tissue(x, j))
        && (0..j).any(|y| tissue(i, y))
        && (j + 1..ny).any(|y| tissue(i, y));
    enclosed.then(|| {
        volume
            .geometry
            .index_to_world([i as f64, j as f64, k as f64])
    })
}

/// Nodules with consensus masks on a scan grid (`prepare --lidc-xml`).
#[derive(Clone, Copy)]
pub struct Outlines<'a> {
    pub geometry: &'a Geometry,
    pub nodules: &'a [ScanNodule],
}

/// The label of a patch at `center`: the union of the balls of `spheres` and of `outlines`.
pub fn label_mask(
    spec: &PatchSpec,
    center: [f64; 3],
    spheres: &[&Annotation],
    outlines: Option<Outlines<'_>>,
) -> Result<Vec<u8>> {
    let n = spec.len();
    let mut mask = vec![0u8; n];
    let mut ball = vec![0u8; n];
    let half_diag = spec
        .size
        .iter()
        .zip(spec.spacing_mm)
        .map(|(&s, sp)| (s as f64 * sp / 2.0 + sp).powi(2))
        .sum::<f64>()
        .sqrt();
    for a in spheres {
        if dist(center, a.world) > half_diag + a.diameter_mm / 2.0 {
            continue;
        }
        if patch::sphere_mask(spec, center, a.world, a.diameter_mm, &mut ball)? > 0 {
            for (m, b) in mask.iter_mut().zip(&ball) {
                *m |= *b;
            }
        }
    }
    if let Some(o) = outlines {
        let near: Vec<_> = o
            .nodules
            .iter()
            .filter(|n| dist(center, n.center_world) <= half_diag + n.radius_mm)
            .map(|n| &n.mask)
            .collect();
        paint_patch(spec, center, o.geometry, &near, &mut mask)?;
    }
    Ok(mask)
}
