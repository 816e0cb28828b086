//! Synthetic LUNA16-like chest CT, so that every demo and test runs without downloads, made
//! realistic enough that a model trained on it meets real CT: see `docs/synth.md` for every
//! feature, the HU and acquisition physics it follows, and a comparison with real scans.
//!
//! A dataset is laid out exactly like LUNA16: `subsetN/<seriesuid>.mhd` + `.raw` (MET_SHORT,
//! written by `lungseg::mhd::write` in SimpleITK's key order), `annotations.csv`
//! (`seriesuid,coordX,coordY,coordZ,diameter_mm`, world mm: the centroid and equivalent
//! diameter of each painted lesion) and `candidates.csv` (`seriesuid,coordX,coordY,coordZ,class`).
//! What LUNA16 does not give is added beside it: `seg-nodules/<seriesuid>.mhd` (the painted
//! lesion labels on the scan's grid, value = row of the scan's annotations + 1) and
//! `synth_truth.csv` (type, margin, placement, protocol). Everything is a pure function of
//! (config, seed, scan index): each scan has its own ChaCha8 streams, so scan 3 is the same
//! whether 5 or 500 are generated.
//!
//! A scan is made in two steps: the object (true HU on a render grid with the scan's in-plane
//! spacing and ≤ 1 mm steps in z: anatomy, airways, fissures, vessels, distractors, nodules),
//! then the acquisition (slice-sensitivity profile, kernel blur, correlated noise at the
//! protocol's dose, circular field of view with padding, int16, flipped storage).

mod acquisition;
mod airways;
mod anatomy;
mod canvas;
mod dataset;
mod distractors;
pub mod figure;
mod fissures;
mod nodule;
mod plan;
mod shape;
mod texture;
mod vessels;

pub use dataset::{write_dataset, DatasetSummary};
pub use nodule::{Inclusion, Nodule, NoduleKind, Placement, CALCIUM_HU, GGN_HU, SOLID_HU};
pub use plan::{Acquisition, Dose, Kernel, ScanPlan};
pub use shape::Margin;

use acquisition::{Block, Psf, Store, ZSampling};
use anatomy::Anatomy;
use canvas::Canvas;
use lungseg::volume::{PixelData, Volume};
use lungseg::{Error, Result};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// LUNA16's series UID root (LIDC-IDRI via TCIA).
pub const UID_PREFIX: &str = "1.3.6.1.4.1.14519.5.2.1.6279.6001.";
/// LUNA16's flipped direction matrix.
pub const FLIPPED: [[f64; 3]; 3] = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];

/// What to generate; every range is sampled per scan.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// In-plane voxels (x = y).
    pub dims_xy: usize,
    /// Scan length in z (mm); the slice count follows from the drawn slice spacing.
    pub z_extent_mm: f64,
    pub spacing_xy_mm: (f64, f64),
    pub spacing_z_mm: (f64, f64),
    /// Share of scans stored with the flipped direction matrix.
    pub flip_fraction: f64,
    /// At most this many nodules per scan (0–3 drawn).
    pub max_nodules: usize,
    /// Noise scale: 20 is each drawn protocol's nominal noise (dose, kernel, thickness:
    /// [`Acquisition::noise_sigma`]), 0 none, 40 twice as much.
    pub noise_hu: f64,
}

/// Widest slice spacing the generator draws (mm).
pub const MAX_SPACING_Z_MM: f64 = 5.0;

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            dims_xy: 256,
            z_extent_mm: 160.0,
            spacing_xy_mm: (0.6, 0.9),
            spacing_z_mm: (1.0, 2.5),
            flip_fraction: 0.25,
            max_nodules: 3,
            noise_hu: 20.0,
        }
    }
}

impl SynthConfig {
    /// The coarsest voxel spacing (mm, any axis) of the scans this config draws: a model
    /// trained on them is meant for scans up to it (`lungseg::intended_use`).
    pub fn max_spacing_mm(&self) -> f64 {
        self.spacing_xy_mm.1.max(self.spacing_z_mm.1)
    }

    fn validate(&self) -> Result<()> {
        let range_ok =
            |(lo, hi): (f64, f64)| lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi;
        if !(16..=1024).contains(&self.dims_xy) {
            return Err(Error::invalid(format!(
                "dims_xy {} must be within 16..=1024",
                self.dims_xy
            )));
        }
        if !(self.z_extent_mm.is_finite() && (10.0..=1000.0).contains(&self.z_extent_mm)) {
            return Err(Error::invalid(format!(
                "z extent {} mm must be within 10..=1000",
                self.z_extent_mm
            )));
        }
        if !range_ok(self.spacing_xy_mm) || !range_ok(self.spacing_z_mm) {
            return Err(Error::invalid(
                "spacing ranges must be finite, positive and ordered",
            ));
        }
        // Clinical CT reconstructs slices 0.5–5 mm apart; the slice profile stops at 5 mm.
        if self.spacing_z_mm.0 < 0.3 || self.spacing_z_mm.1 > MAX_SPACING_Z_MM {
            return Err(Error::invalid(format!(
                "slice spacing range {:?} mm must lie within 0.3..={MAX_SPACING_Z_MM}",
                self.spacing_z_mm
            )));
        }
        if !(0.0..=1.0).contains(&self.flip_fraction) || !(0.0..=500.0).contains(&self.noise_hu) {
            return Err(Error::invalid(
                "flip_fraction must be in [0, 1] and noise_hu in [0, 500]",
            ));
        }
        Ok(())
    }
}

/// A nodule as annotated: world mm, like LUNA16's `annotations.csv` (centroid and equivalent
/// diameter of its label), plus the synthetic truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub world: [f64; 3],
    /// Value of this nodule's voxels in [`Scan::labels`].
    pub label: u8,
    /// Labelled voxels.
    pub voxels: usize,
    pub nodule: Nodule,
}

/// A `candidates.csv` row: class 1 near a nodule, class 0 elsewhere (mostly on vessels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub world: [f64; 3],
    pub class: u8,
}

/// One generated scan and its ground truth.
#[derive(Debug, Clone)]
pub struct Scan {
    pub seriesuid: String,
    pub volume: Volume,
    /// Lesion labels (u8) on the scan's grid and geometry: 0 background, `a.label` for
    /// annotation `a`.
    pub labels: Volume,
    pub flipped: bool,
    pub acquisition: Acquisition,
    pub annotations: Vec<Annotation>,
    pub candidates: Vec<Candidate>,
}

/// Per-scan random streams, one per purpose, so that tuning one part leaves the others alone.
fn stream(seed: u64, index: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index * 16 + purpose);
    rng
}

/// Everything drawn for a scan's object, before any voxel is painted.
struct Scene {
    anatomy: Anatomy,
    fissures: Vec<fissures::Fissure>,
    vessels: vessels::Vessels,
    airways: airways::Airways,
    distractors: distractors::Distractors,
    nodules: Vec<Nodule>,
}

impl Scene {
    fn draw(cfg: &SynthConfig, plan: &ScanPlan, seed: u64, index: u64) -> Self {
        let (dims, spacing) = (plan.dims, plan.spacing);
        let acq = plan.acquisition;
        let fov = dims[0] as f64 * spacing[0];
        let height = (dims[2] - 1) as f64 * spacing[2];
        let anatomy = Anatomy::random(&mut stream(seed, index, 1), fov, height, acq.contrast);
        let mut rng = stream(seed, index, 2);
        let fissures = fissures::draw(&mut rng, &anatomy);
        let vessels = vessels::grow(&mut rng, &anatomy);
        let airways = airways::grow(&mut rng, &anatomy, height);
        let distractors = distractors::draw(&mut stream(seed, index, 6), &anatomy);
        let all_vessels: Vec<vessels::Segment> = vessels.all().copied().collect();
        let env = nodule::Surroundings {
            anatomy: &anatomy,
            vessels: &all_vessels,
            airways: airways.trees(),
            fissures: &fissures,
        };
        // A nodule much thinner than the slice would leave no label.
        let nodules = nodule::place(
            &mut stream(seed, index, 3),
            &env,
            cfg.max_nodules,
            0.75 * acq.thickness_mm,
        );
        Scene {
            anatomy,
            fissures,
            vessels,
            airways,
            distractors,
            nodules,
        }
    }
}

/// The scanned object before acquisition: true HU on the render grid and what is in it.
struct Object {
    plan: ScanPlan,
    scene: Scene,
    z: ZSampling,
    canvas: Canvas,
}

/// The object of a scan with its render grid exposed, for tests of what was painted before
/// the scanner saw it.
pub struct Painted {
    pub plan: ScanPlan,
    /// Render grid (anatomy frame: world = anatomy + `plan.body`), x fastest.
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub start: [f64; 3],
    /// True HU, and the same without the nodules painted.
    pub hu: Vec<f32>,
    pub without_nodules: Vec<f32>,
    pub lung: Vec<bool>,
    pub nodules: Vec<Nodule>,
    /// Width (mm) of the anti-aliased edge the nodules were painted with.
    pub edge_mm: f64,
    anatomy: Anatomy,
}

impl Painted {
    /// Anatomy-frame position of a render voxel.
    pub fn point(&self, idx: [usize; 3]) -> [f64; 3] {
        std::array::from_fn(|a| self.start[a] + idx[a] as f64 * self.spacing[a])
    }

    /// Whether an anatomy-frame point is inside the skin / in a lung.
    pub fn in_body(&self, p: [f64; 3]) -> bool {
        self.anatomy.in_body(p)
    }

    pub fn is_lung(&self, p: [f64; 3]) -> bool {
        self.anatomy.is_lung(p)
    }
}

/// Paints the scene on the render grid (nodules last, so `without` can keep the HU before
/// them).
fn build_object(plan: ScanPlan, scene: Scene, without: Option<&mut Vec<f32>>) -> Object {
    let (dims, spacing) = (plan.dims, plan.spacing);
    let z = ZSampling::new(spacing[2], plan.acquisition.thickness_mm);
    let nz = z.render_slices(dims[2]);
    let start = plan.start();
    let render_start = [start[0], start[1], start[2] - z.margin as f64 * z.step_mm];
    let mut canvas = render(
        &scene.anatomy,
        [dims[0], dims[1], nz],
        [spacing[0], spacing[1], z.step_mm],
        render_start,
    );
    scene.distractors.paint(&scene.anatomy, &mut canvas);
    fissures::paint(&scene.fissures, &scene.anatomy, &mut canvas);
    scene.airways.paint(&mut canvas);
    scene.vessels.paint(&mut canvas, &scene.anatomy);
    if let Some(w) = without {
        *w = canvas.hu.clone();
    }
    for n in &scene.nodules {
        n.paint(&mut canvas);
    }
    Object {
        plan,
        scene,
        z,
        canvas,
    }
}

/// The nodules drawn for scan `index` (their nominal sizes: nothing is painted or labelled).
pub fn draw_nodules(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Vec<Nodule>> {
    let plan = ScanPlan::draw(cfg, seed, index)?;
    Ok(Scene::draw(cfg, &plan, seed, index).nodules)
}

/// World points (mm) halfway through the consolidated segments of scan `index` (for figures).
pub fn consolidation_points(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Vec<[f64; 3]>> {
    let plan = ScanPlan::draw(cfg, seed, index)?;
    let scene = Scene::draw(cfg, &plan, seed, index);
    let middles = scene.distractors.consolidations().iter().map(|c| {
        let m = c.wedge.middle();
        std::array::from_fn(|i| m[i] + plan.body[i])
    });
    Ok(middles.collect())
}

/// The painted object of scan `index`, before acquisition (for tests and figures).
pub fn painted(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Painted> {
    let plan = ScanPlan::draw(cfg, seed, index)?;
    let scene = Scene::draw(cfg, &plan, seed, index);
    let mut without = Vec::new();
    let o = build_object(plan, scene, Some(&mut without));
    let edge_mm = o.canvas.edge_mm();
    Ok(Painted {
        plan: o.plan,
        dims: o.canvas.dims,
        spacing: o.canvas.spacing,
        start: o.canvas.start,
        hu: o.canvas.hu,
        without_nodules: without,
        lung: o.canvas.lung,
        nodules: o.scene.nodules,
        edge_mm,
        anatomy: o.scene.anatomy,
    })
}

/// Generates scan `index` of the dataset with this seed (deterministic).
pub fn generate_scan(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Scan> {
    let plan = ScanPlan::draw(cfg, seed, index)?;
    let scene = Scene::draw(cfg, &plan, seed, index);
    acquire(build_object(plan, scene, None), seed, index)
}

/// Scans the object: profile, PSF, noise, field of view, int16, labels, annotations.
fn acquire(mut o: Object, seed: u64, index: u64) -> Result<Scan> {
    let plan = o.plan.clone();
    let acq = plan.acquisition;
    let nz = plan.dims[2];
    let psf = Psf::new(acq.kernel, plan.spacing[0]);
    let mut acquired = o.z.apply(
        &Block {
            dims: o.canvas.dims,
            data: std::mem::take(&mut o.canvas.hu),
        },
        0,
        0,
        nz,
    );
    psf.apply(&mut acquired, true);
    let store = Store {
        acquisition: acq,
        pixel_mm: plan.spacing[0],
        noise_seed: stream(seed, index, 4).random(),
        flipped: plan.flipped,
    };
    let data = store.quantize(&acquired);
    drop(acquired);
    let geometry = plan.geometry()?;
    let volume = Volume::new(geometry, PixelData::I16(data))?;
    let (mut labels, annotations) = label(&o, &psf);
    if plan.flipped {
        for s in labels.chunks_exact_mut(plan.dims[0] * plan.dims[1]) {
            s.reverse();
        }
    }
    let labels = Volume::new(geometry, PixelData::U8(labels))?;
    let all: Vec<vessels::Segment> = o.scene.vessels.all().copied().collect();
    let candidates = candidates(
        &mut stream(seed, index, 5),
        &o.scene.anatomy,
        &all,
        &o.scene.nodules,
        &annotations,
        &plan,
    );
    Ok(Scan {
        seriesuid: plan.seriesuid.clone(),
        volume,
        labels,
        flipped: plan.flipped,
        acquisition: acq,
        annotations,
        candidates,
    })
}

/// The label rule: a voxel belongs to a lesion when the lesion's occupancy, seen through the
/// same slice profile and in-plane PSF as the HU (without the sharp kernel's overshoot), is at
/// least one half. Returns the unflipped label grid and the annotations of the lesions that
/// left at least one voxel (ids in order, from 1).
fn label(o: &Object, psf: &Psf) -> (Vec<u8>, Vec<Annotation>) {
    let plan = &o.plan;
    let [nx, ny, nz] = plan.dims;
    let c = &o.canvas;
    let edge = c.edge_mm();
    let mut labels = vec![0u8; nx * ny * nz];
    let mut out = Vec::new();
    let blur_mm = 3.0 * 1.1 + edge;
    for n in &o.scene.nodules {
        let id = out.len() as u8 + 1;
        let reach = n.extent() + blur_mm;
        // Acquired slices the lesion can reach through the profile, and the render slices
        // they need.
        let zr = reach + o.z.margin as f64 * o.z.step_mm;
        let k_of = |z: f64| (z - plan.start()[2]) / plan.spacing[2];
        let k0 = k_of(n.center[2] - zr).floor().max(0.0) as usize;
        let k1 = (k_of(n.center[2] + zr).ceil() as usize + 1).min(nz);
        let i_of = |a: usize, v: f64| (v - c.start[a]) / c.spacing[a];
        let x0 = i_of(0, n.center[0] - reach).floor().max(0.0) as usize;
        let x1 = (i_of(0, n.center[0] + reach).ceil() as usize + 1).min(nx);
        let y0 = i_of(1, n.center[1] - reach).floor().max(0.0) as usize;
        let y1 = (i_of(1, n.center[1] + reach).ceil() as usize + 1).min(ny);
        if k0 >= k1 || x0 >= x1 || y0 >= y1 {
            continue;
        }
        let (f0, f1) = o.z.render_range(k0, k1);
        let nf = f1 - f0;
        let (bx, by) = (x1 - x0, y1 - y0);
        let mut occ = Vec::with_capacity(bx * by * nf);
        for f in f0..f0 + nf {
            let z = c.coord(2, f);
            for j in y0..y1 {
                let y = c.coord(1, j);
                for i in x0..x1 {
                    occ.push(n.coverage([c.coord(0, i), y, z], edge));
                }
            }
        }
        let mut seen = o.z.apply(
            &Block {
                dims: [bx, by, nf],
                data: occ,
            },
            f0,
            k0,
            k1 - k0,
        );
        psf.apply(&mut seen, false);
        let (mut count, mut sum) = (0usize, [0f64; 3]);
        for (l, v) in seen.data.iter().enumerate() {
            if *v < 0.5 {
                continue;
            }
            let (i, j, k) = (l % bx + x0, (l / bx) % by + y0, l / (bx * by) + k0);
            let idx = (k * ny + j) * nx + i;
            if labels[idx] != 0 {
                continue;
            }
            labels[idx] = id;
            count += 1;
            let p = [
                c.coord(0, i),
                c.coord(1, j),
                plan.start()[2] + k as f64 * plan.spacing[2],
            ];
            for a in 0..3 {
                sum[a] += p[a];
            }
        }
        if count == 0 {
            continue;
        }
        let voxel_mm3: f64 = plan.spacing.iter().product();
        let mut nodule = n.clone();
        nodule.diameter_mm = (6.0 * count as f64 * voxel_mm3 / std::f64::consts::PI).cbrt();
        out.push(Annotation {
            world: plan.to_world(sum.map(|s| s / count as f64)),
            label: id,
            voxels: count,
            nodule,
        });
    }
    (labels, out)
}

/// Renders the analytic anatomy on the render grid, slices spread over the machine's cores
/// (each voxel is a pure function of its position, so the result is the same on any machine).
fn render(anatomy: &Anatomy, dims: [usize; 3], spacing: [f64; 3], start: [f64; 3]) -> Canvas {
    let n: usize = dims.iter().product();
    let mut c = Canvas::with_capacity(dims, spacing, start);
    c.hu.resize(n, 0.0);
    c.lung.resize(n, false);
    let plane = dims[0] * dims[1];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = dims[2].div_ceil(threads).max(1) * plane;
    let coord = |a: usize, i: usize| start[a] + i as f64 * spacing[a];
    std::thread::scope(|s| {
        for (t, (hu, lung)) in c.hu.chunks_mut(per).zip(c.lung.chunks_mut(per)).enumerate() {
            s.spawn(move || {
                for (l, (h, g)) in hu.iter_mut().zip(lung.iter_mut()).enumerate() {
                    let idx = t * per + l;
                    let (i, j, k) = (idx % dims[0], (idx / dims[0]) % dims[1], idx / plane);
                    let (v, is_lung) = anatomy.tissue([coord(0, i), coord(1, j), coord(2, k)]);
                    *h = v;
                    *g = is_lung;
                }
            });
        }
    });
    c
}

/// LUNA16-style candidates (anatomy frame): 1–3 jittered hits per nodule, and false ones on
/// vessels (most), in parenchyma and at the lung edge, all well away from every nodule.
fn candidates(
    rng: &mut ChaCha8Rng,
    anatomy: &Anatomy,
    segments: &[vessels::Segment],
    nodules: &[Nodule],
    annotations: &[Annotation],
    plan: &ScanPlan,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let centroid =
        |a: &Annotation| -> [f64; 3] { std::array::from_fn(|i| a.world[i] - plan.body[i]) };
    for a in annotations {
        let c = centroid(a);
        for _ in 0..rng.random_range(1..=3) {
            let j = 0.25 * a.nodule.diameter_mm;
            let p = std::array::from_fn(|i| c[i] + rng.random_range(-j..=j) / 3f64.sqrt());
            out.push(Candidate { world: p, class: 1 });
        }
    }
    // Clear of every drawn lesion (labelled or not) and of every label's sphere.
    let far_from_nodules = |p: [f64; 3]| {
        let dist = |q: [f64; 3]| {
            let d = vessels::sub(p, q);
            vessels::dot(d, d).sqrt()
        };
        nodules.iter().all(|n| dist(n.center) > n.extent() + 5.0)
            && annotations
                .iter()
                .all(|a| dist(centroid(a)) > a.nodule.diameter_mm / 2.0 + 5.0)
    };
    let (lo, hi) = anatomy.lung_box();
    let wanted = rng.random_range(40..80);
    let mut tries = 0;
    while out.len() < nodules.len() * 3 + wanted && tries < 20_000 {
        tries += 1;
        let p: [f64; 3] = match rng.random_range(0..10) {
            // Vessels, preferring branch points (segment ends) and thicker ones.
            0..=6 if !segments.is_empty() => {
                let s = &segments[rng.random_range(0..segments.len())];
                if s.r0 < 0.8 && rng.random_bool(0.6) {
                    continue;
                }
                s.point_at(if rng.random_bool(0.5) {
                    1.0
                } else {
                    rng.random()
                })
            }
            _ => std::array::from_fn(|i| rng.random_range(lo[i]..hi[i])),
        };
        if anatomy.is_lung(p) && far_from_nodules(p) {
            out.push(Candidate { world: p, class: 0 });
        }
    }
    out.shuffle(rng);
    for c in &mut out {
        c.world = plan.to_world(c.world);
    }
    out
}
