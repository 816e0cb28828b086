//! Synthetic LUNA16-like chest CT, so that every demo and test runs without downloads.
//!
//! A dataset is laid out exactly like LUNA16: `subsetN/<seriesuid>.mhd` + `.raw` (MET_SHORT,
//! written by `lungseg::mhd::write` in SimpleITK's key order), `annotations.csv`
//! (`seriesuid,coordX,coordY,coordZ,diameter_mm`, world mm) and `candidates.csv`
//! (`seriesuid,coordX,coordY,coordZ,class`). `synth_truth.csv` adds what LUNA16 does not say
//! (nodule type, HU, juxtapleural). Everything is a pure function of (config, seed, scan index):
//! each scan has its own ChaCha8 streams, so scan 3 is the same whether 5 or 500 are generated.
//!
//! Defaults (see [`SynthConfig`]): 256×256 in-plane at 0.6–0.9 mm (a 15–23 cm field of view: a
//! small chest, anatomy scaled to it, nodules and vessels in true mm), 160 mm in z at 1.0–2.5 mm
//! (64–160 slices), Gaussian noise σ = 20 HU, a quarter of the scans with LUNA16's flipped
//! direction `-1 0 0 0 -1 0 0 0 1` (origin moved so the anatomy stays where it is in world mm).

mod anatomy;
mod canvas;
mod nodule;
mod texture;
mod vessels;

pub use nodule::{Nodule, NoduleKind};

use anatomy::Anatomy;
use canvas::Canvas;
use lungseg::geometry::{Geometry, IDENTITY};
use lungseg::volume::{PixelData, Volume};
use lungseg::{Error, Result};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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
    pub noise_hu: f64,
}

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
        if !(0.0..=1.0).contains(&self.flip_fraction) || !(0.0..=500.0).contains(&self.noise_hu) {
            return Err(Error::invalid(
                "flip_fraction must be in [0, 1] and noise_hu in [0, 500]",
            ));
        }
        Ok(())
    }
}

/// A nodule as annotated: world mm, like LUNA16's `annotations.csv`, plus the synthetic truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Annotation {
    pub world: [f64; 3],
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
    pub flipped: bool,
    pub annotations: Vec<Annotation>,
    pub candidates: Vec<Candidate>,
}

/// Per-scan random streams, one per purpose, so that tuning one part leaves the others alone.
fn stream(seed: u64, index: u64, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index * 16 + purpose);
    rng
}

/// A scan's identity and geometry: the cheap first draws, before any voxel is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPlan {
    pub seriesuid: String,
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub flipped: bool,
    /// World position of voxel (0, 0, 0) of the unflipped grid.
    pub origin_unflipped: [f64; 3],
    /// World position of the anatomy frame's origin (body axis in x/y, lowest slice in z).
    pub body: [f64; 3],
}

impl ScanPlan {
    /// Draws the plan of scan `index` (deterministic in config, seed and index).
    pub fn draw(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = stream(seed, index, 0);
        let seriesuid = format!(
            "{UID_PREFIX}{}{}",
            rng.random_range(1..=9u8),
            (0..29)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect::<String>()
        );
        let sxy = rng.random_range(cfg.spacing_xy_mm.0..=cfg.spacing_xy_mm.1);
        let sz = rng.random_range(cfg.spacing_z_mm.0..=cfg.spacing_z_mm.1);
        let nz = ((cfg.z_extent_mm / sz).round() as usize).max(2);
        // A uniform draw (not `random_bool`, which may skip the RNG at p = 0 or 1) keeps the
        // later draws, and so the anatomy, independent of the flip fraction.
        let flipped = rng.random::<f64>() < cfg.flip_fraction;
        let half = (cfg.dims_xy - 1) as f64 * sxy / 2.0;
        let origin_unflipped = [
            -half + rng.random_range(-15.0..15.0),
            -half + rng.random_range(-15.0..15.0),
            rng.random_range(-400.0..-100.0),
        ];
        let fov = cfg.dims_xy as f64 * sxy;
        let body = [
            origin_unflipped[0] + half + rng.random_range(-0.03..0.03) * fov,
            origin_unflipped[1] + half + rng.random_range(-0.03..0.03) * fov,
            origin_unflipped[2],
        ];
        Ok(ScanPlan {
            seriesuid,
            dims: [cfg.dims_xy, cfg.dims_xy, nz],
            spacing: [sxy, sxy, sz],
            flipped,
            origin_unflipped,
            body,
        })
    }

    /// The stored geometry: flipped scans run x and y backwards from the far corner, so every
    /// world point keeps its anatomy.
    pub fn geometry(&self) -> Result<Geometry> {
        let (origin, direction) = if self.flipped {
            let o = self.origin_unflipped;
            let far = |a: usize| o[a] + (self.dims[a] - 1) as f64 * self.spacing[a];
            ([far(0), far(1), o[2]], FLIPPED)
        } else {
            (self.origin_unflipped, IDENTITY)
        };
        Geometry::new(self.dims, self.spacing, origin, direction)
    }

    fn to_world(&self, p: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| p[i] + self.body[i])
    }
}

/// Generates scan `index` of the dataset with this seed (deterministic).
pub fn generate_scan(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Scan> {
    let plan = ScanPlan::draw(cfg, seed, index)?;
    let (dims, spacing) = (plan.dims, plan.spacing);
    let fov = dims[0] as f64 * spacing[0];
    let height = (dims[2] - 1) as f64 * spacing[2];
    let anatomy = Anatomy::random(&mut stream(seed, index, 1), fov, height);
    let start = std::array::from_fn(|i| plan.origin_unflipped[i] - plan.body[i]);
    let mut canvas = render(&anatomy, dims, spacing, start);
    let segments = vessels::grow(&mut stream(seed, index, 2), &anatomy);
    for s in &segments {
        s.paint(&mut canvas);
    }
    let nodules = nodule::place(
        &mut stream(seed, index, 3),
        &anatomy,
        &segments,
        cfg.max_nodules,
    );
    for n in &nodules {
        n.paint(&mut canvas);
    }
    let data = quantize(
        &canvas,
        cfg.noise_hu,
        &mut stream(seed, index, 4),
        plan.flipped,
    );
    let volume = Volume::new(plan.geometry()?, PixelData::I16(data))?;
    let annotations = nodules
        .iter()
        .map(|n| Annotation {
            world: plan.to_world(n.center),
            nodule: *n,
        })
        .collect();
    let candidates = candidates(&mut stream(seed, index, 5), &anatomy, &segments, &nodules)
        .into_iter()
        .map(|c| Candidate {
            world: plan.to_world(c.world),
            class: c.class,
        })
        .collect();
    Ok(Scan {
        seriesuid: plan.seriesuid,
        volume,
        flipped: plan.flipped,
        annotations,
        candidates,
    })
}

/// Draws the analytic anatomy on the unflipped grid.
fn render(anatomy: &Anatomy, dims: [usize; 3], spacing: [f64; 3], start: [f64; 3]) -> Canvas {
    let n = dims.iter().product();
    let mut c = Canvas {
        dims,
        spacing,
        start,
        hu: Vec::with_capacity(n),
        lung: Vec::with_capacity(n),
    };
    for k in 0..dims[2] {
        let z = c.coord(2, k);
        for j in 0..dims[1] {
            let y = c.coord(1, j);
            for i in 0..dims[0] {
                let (hu, lung) = anatomy.tissue([c.coord(0, i), y, z]);
                c.hu.push(hu);
                c.lung.push(lung);
            }
        }
    }
    c
}

/// Adds noise, rounds to int16 in CT's range, and stores flipped scans with x and y reversed
/// (reversing a whole slice buffer reverses both).
fn quantize(canvas: &Canvas, noise_hu: f64, rng: &mut ChaCha8Rng, flipped: bool) -> Vec<i16> {
    let sigma = noise_hu as f32;
    let mut out: Vec<i16> = canvas
        .hu
        .iter()
        .map(|&v| {
            (v + sigma * rng.sample::<f32, _>(StandardNormal))
                .round()
                .clamp(-1024.0, 3071.0) as i16
        })
        .collect();
    if flipped {
        let slice = canvas.dims[0] * canvas.dims[1];
        for s in out.chunks_exact_mut(slice) {
            s.reverse();
        }
    }
    out
}

/// LUNA16-style candidates (anatomy frame): 1–3 jittered hits per nodule, and false ones on
/// vessels (most), in parenchyma and at the lung edge, all well away from every nodule.
fn candidates(
    rng: &mut ChaCha8Rng,
    anatomy: &Anatomy,
    segments: &[vessels::Segment],
    nodules: &[Nodule],
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for n in nodules {
        for _ in 0..rng.random_range(1..=3) {
            let j = 0.25 * n.diameter_mm;
            let p = std::array::from_fn(|i| n.center[i] + rng.random_range(-j..=j) / 3f64.sqrt());
            out.push(Candidate { world: p, class: 1 });
        }
    }
    let far_from_nodules = |p: [f64; 3]| {
        nodules.iter().all(|n| {
            let d = vessels::sub(p, n.center);
            vessels::dot(d, d).sqrt() > n.diameter_mm / 2.0 + 5.0
        })
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
    out
}

/// What [`write_dataset`] produced.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    pub root: PathBuf,
    /// `(seriesuid, .mhd path, nodule count)` per scan, in generation order.
    pub scans: Vec<(String, PathBuf, usize)>,
    pub nodules: usize,
    pub candidates: usize,
}

/// Writes `scans` scans into `root` in LUNA16's layout; `subset_size` scans per `subsetN`
/// folder (`None`: all in `subset0`). `on_scan(i)` is called after each scan is written.
pub fn write_dataset(
    root: &Path,
    cfg: &SynthConfig,
    scans: usize,
    seed: u64,
    subset_size: Option<usize>,
    mut on_scan: impl FnMut(usize),
) -> Result<DatasetSummary> {
    cfg.validate()?;
    if subset_size == Some(0) {
        return Err(Error::invalid("subset size must be at least 1"));
    }
    let mut annotations = String::from("seriesuid,coordX,coordY,coordZ,diameter_mm\n");
    let mut candidates = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    let mut truth =
        String::from("seriesuid,coordX,coordY,coordZ,diameter_mm,kind,hu,juxtapleural,flipped\n");
    let mut summary = DatasetSummary {
        root: root.to_path_buf(),
        scans: Vec::new(),
        nodules: 0,
        candidates: 0,
    };
    for i in 0..scans {
        let scan = generate_scan(cfg, seed, i as u64)?;
        let dir = root.join(format!("subset{}", subset_size.map_or(0, |k| i / k)));
        std::fs::create_dir_all(&dir).map_err(|e| Error::from_io(dir.display(), e))?;
        let path = dir.join(format!("{}.mhd", scan.seriesuid));
        lungseg::mhd::write(
            &path,
            &scan.volume,
            &lungseg::mhd::WriteOptions { compress: false },
        )
        .map_err(|e| e.context(path.display()))?;
        let uid = &scan.seriesuid;
        for a in &scan.annotations {
            let [x, y, z] = a.world;
            let n = &a.nodule;
            let _ = writeln!(annotations, "{uid},{x},{y},{z},{}", n.diameter_mm);
            let _ = writeln!(
                truth,
                "{uid},{x},{y},{z},{},{},{},{},{}",
                n.diameter_mm,
                n.kind.name(),
                n.hu,
                n.juxtapleural,
                scan.flipped
            );
        }
        for c in &scan.candidates {
            let [x, y, z] = c.world;
            let _ = writeln!(candidates, "{uid},{x},{y},{z},{}", c.class);
        }
        summary.nodules += scan.annotations.len();
        summary.candidates += scan.candidates.len();
        summary
            .scans
            .push((scan.seriesuid, path, scan.annotations.len()));
        on_scan(i);
    }
    for (name, text) in [
        ("annotations.csv", annotations),
        ("candidates.csv", candidates),
        ("synth_truth.csv", truth),
    ] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::from_io(p.display(), e))?;
    }
    Ok(summary)
}

/// Reads LUNA16's `annotations.csv` back: `(seriesuid, world mm, diameter mm)` per row.
pub fn read_annotations(path: &Path) -> Result<Vec<(String, [f64; 3], f64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::from_io(path.display(), e))?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || {
            Error::format(format!(
                "{}:{}: expected seriesuid,coordX,coordY,coordZ,diameter_mm",
                path.display(),
                n + 1
            ))
        };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(bad());
        }
        let num = |s: &str| s.trim().parse::<f64>().map_err(|_| bad());
        out.push((
            f[0].to_string(),
            [num(f[1])?, num(f[2])?, num(f[3])?],
            num(f[4])?,
        ));
    }
    Ok(out)
}
