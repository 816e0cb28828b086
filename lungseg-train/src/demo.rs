//! Provisional demo (the real one comes with training): synthesise a few scans, open one with
//! the library's own reader, cut a 64³ 1 mm patch around its first annotated nodule and report.

use crate::synth::{self, SynthConfig};
use lungseg::patch::{self, PatchSpec};
use lungseg::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// What the demo found, printed as a short summary.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub data_dir: PathBuf,
    pub scans: usize,
    pub nodules: usize,
    pub candidates: usize,
    pub mhd: PathBuf,
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
    pub direction: [f64; 9],
    pub nodule_world: [f64; 3],
    pub nodule_voxel: [f64; 3],
    pub diameter_mm: f64,
    pub hu_min: f32,
    pub hu_mean: f32,
    pub hu_max: f32,
    pub hu_center: f32,
    pub mask_voxels: usize,
    pub mask_expected: f64,
}

/// Runs the demo into `out/data` with `scans` scans (at least one nodule is guaranteed by
/// generating more scans until one has a nodule, up to a bound).
pub fn run(out: &Path, scans: usize, seed: u64, cfg: &SynthConfig) -> Result<DemoReport> {
    let data_dir = out.join("data");
    let summary = synth::write_dataset(&data_dir, cfg, scans.max(1), seed, None, |_| {})?;
    let annotations = synth::read_annotations(&data_dir.join("annotations.csv"))?;
    let (uid, nodule_world, diameter_mm) = annotations.first().cloned().ok_or_else(|| {
        Error::invalid(format!(
            "none of the {scans} scans has a nodule; try more scans or another seed"
        ))
    })?;
    let mhd = summary
        .scans
        .iter()
        .find(|s| s.0 == uid)
        .map(|s| s.1.clone())
        .expect("annotated scan was written");
    let volume = lungseg::mhd::read(&mhd, &Default::default())?;
    let g = &volume.geometry;
    let spec = PatchSpec::default();
    let hu = patch::extract_patch(&volume, nodule_world, &spec)?;
    let mut mask = vec![0u8; spec.len()];
    let mask_voxels =
        patch::sphere_mask(&spec, nodule_world, nodule_world, diameter_mm, &mut mask)?;
    let (hu_min, hu_max) = hu
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let s = spec.size;
    Ok(DemoReport {
        data_dir,
        scans: summary.scans.len(),
        nodules: summary.nodules,
        candidates: summary.candidates,
        dims: g.dims,
        spacing: g.spacing,
        origin: g.origin,
        direction: g.direction_row_major(),
        nodule_voxel: g.world_to_index(nodule_world),
        nodule_world,
        diameter_mm,
        hu_min,
        hu_mean: (hu.iter().map(|&v| v as f64).sum::<f64>() / hu.len() as f64) as f32,
        hu_max,
        hu_center: hu[(s[2] / 2 * s[1] + s[1] / 2) * s[0] + s[0] / 2],
        mask_voxels,
        mask_expected: 4.0 / 3.0 * std::f64::consts::PI * (diameter_mm / 2.0).powi(3)
            / spec.spacing_mm.iter().product::<f64>(),
        mhd,
    })
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v3 = |v: [f64; 3]| format!("({:.2}, {:.2}, {:.2})", v[0], v[1], v[2]);
        writeln!(
            f,
            "synthetic LUNA16-like data: {} scans, {} nodules, {} candidates in {}",
            self.scans,
            self.nodules,
            self.candidates,
            self.data_dir.display()
        )?;
        writeln!(f, "scan        {}", self.mhd.display())?;
        writeln!(
            f,
            "  dims      {} x {} x {}",
            self.dims[0], self.dims[1], self.dims[2]
        )?;
        writeln!(f, "  spacing   {} mm", v3(self.spacing))?;
        writeln!(f, "  origin    {} mm", v3(self.origin))?;
        let d = self.direction.map(|v| v + 0.0); // no -0
        writeln!(f, "  direction {:?}", d)?;
        writeln!(
            f,
            "nodule      world {} mm, voxel {}, diameter {:.1} mm",
            v3(self.nodule_world),
            v3(self.nodule_voxel),
            self.diameter_mm
        )?;
        writeln!(
            f,
            "patch 64³ @ 1 mm: HU min {:.0} / mean {:.0} / max {:.0}, centre {:.0}",
            self.hu_min, self.hu_mean, self.hu_max, self.hu_center
        )?;
        write!(
            f,
            "sphere mask: {} voxels (4/3·π·r³ = {:.0})",
            self.mask_voxels, self.mask_expected
        )
    }
}
