//! What `predict` writes: `predictions.json`, `points/<i>_<map>` on each patch's grid and
//! `scan_<map>` on the scan's grid, as MetaImage or NIfTI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lungseg::mc::point::MaskSource;
use lungseg::mc::PatchSummary;
use lungseg::mhd::WriteOptions;
use lungseg::patch::PatchSpec;
use lungseg::volume::{PixelData, Volume};
use serde::Serialize;

use super::points::Target;
use super::{Format, PatchWork, ScanMaps};

/// `predictions.json`.
#[derive(Debug, Serialize)]
pub struct Predictions {
    pub scan: String,
    pub seriesuid: String,
    pub model: String,
    pub n_samples: u32,
    pub seed: u64,
    /// The score compared with the threshold, and the threshold.
    pub review_score: String,
    pub review_threshold: f32,
    /// The model has a probability map: `probability` maps are its calibrated probabilities
    /// (`lungseg_calibrated_probability`) and `mean` maps the MC mean; without one the
    /// scan's `probability` is the MC mean.
    pub probability_map: bool,
    /// The coarsest scan spacing the model is meant for (mm; 0: any), the scan's resolution
    /// judged against it (mm per axis x, y, z: its spacing, along z its slice thickness where
    /// the scan states a coarser one; `Volume::resolution_mm`) and whether the scan is within
    /// it; outside it every point needs review (`lungseg::intended_use`).
    pub max_scan_spacing_mm: f64,
    pub scan_resolution_mm: [f64; 3],
    pub scan_admitted: bool,
    /// Map name → file, on the scan's grid.
    pub scan_maps: BTreeMap<String, String>,
    /// The DICOM SEG file (`--dicom-seg`).
    pub dicom_seg: Option<String>,
    pub points: Vec<PointResult>,
}

/// One point's result: where, and the engine's patch summary (its field names).
#[derive(Debug, Serialize)]
pub struct PointResult {
    pub index: usize,
    /// Where the point came from: `file.csv line N` or `--point`.
    pub origin: String,
    pub world_mm: [f64; 3],
    /// The point as a continuous voxel index of the scan.
    pub voxel: [f64; 3],
    /// Part of the patch lies outside the scan (filled with -1000 HU there).
    pub patch_reaches_outside: bool,
    pub review_threshold: f32,
    /// How the final mask (`foreground_voxels`, `volume_mm3`, the mask maps) was made: the
    /// model's mask, or joined with its second look (`lungseg::mc::point::MaskSource`).
    pub mask_source: MaskSource,
    #[serde(flatten)]
    pub summary: PatchSummary,
    /// Map name → file, on the patch's grid.
    pub maps: BTreeMap<String, String>,
}

impl PointResult {
    pub(super) fn new(
        index: usize,
        t: &Target,
        volume: &Volume,
        summary: PatchSummary,
        threshold: f32,
        maps: BTreeMap<String, String>,
    ) -> Self {
        PointResult {
            index,
            origin: t.origin.clone(),
            world_mm: t.world,
            voxel: volume.geometry.world_to_index(t.world),
            patch_reaches_outside: false,
            review_threshold: threshold,
            mask_source: MaskSource::ModelMask,
            summary,
            maps,
        }
    }
}

/// Writes volumes into the output folder in one format.
pub(super) struct Writer<'a> {
    out: &'a Path,
    format: Format,
    scan: &'a Volume,
}

impl<'a> Writer<'a> {
    pub(super) fn new(out: &'a Path, format: Format, scan: &'a Volume) -> Self {
        Writer { out, format, scan }
    }

    fn path(&self, stem: &str) -> PathBuf {
        let ext = match self.format {
            Format::Mhd => "mhd",
            Format::Nifti => "nii.gz",
        };
        self.out.join(format!("{stem}.{ext}"))
    }

    fn write(&self, stem: &str, v: &Volume) -> Result<String> {
        let path = self.path(stem);
        match self.format {
            Format::Mhd => lungseg::mhd::write(&path, v, &WriteOptions { compress: true })?,
            Format::Nifti => super::nifti::write(&path, v)?,
        }
        let rel = path.strip_prefix(self.out).unwrap_or(&path);
        Ok(rel.display().to_string())
    }

    /// `points/<i>_{mean,entropy,mutual_info,mask}` on the patch's grid, and
    /// `points/<i>_probability` when the model's probability map calibrates the mean.
    pub(super) fn patch_maps(
        &self,
        i: usize,
        spec: &PatchSpec,
        world: [f64; 3],
        w: &PatchWork,
        calibrated: bool,
    ) -> Result<BTreeMap<String, String>> {
        let g = spec.geometry(world)?;
        let mask: Vec<u8> = w.mask.iter().map(|&m| u8::from(m > 0.0)).collect();
        let mut items = vec![
            ("mean", PixelData::F32(w.mean.clone())),
            ("entropy", PixelData::F32(w.entropy.clone())),
            ("mutual_info", PixelData::F32(w.mutual_info.clone())),
            ("mask", PixelData::U8(mask)),
        ];
        if calibrated {
            items.push(("probability", PixelData::F32(w.probability.clone())));
        }
        let mut files = BTreeMap::new();
        for (name, data) in items {
            let file = self.write(&format!("points/{i}_{name}"), &Volume::new(g, data)?)?;
            files.insert(name.to_string(), file);
        }
        Ok(files)
    }

    /// `scan_{probability,mutual_info,mask}` on the scan's grid (0 where no patch reaches), and
    /// `scan_mean` when the probability is calibrated.
    pub(super) fn scan_maps(&self, maps: &ScanMaps) -> Result<BTreeMap<String, String>> {
        let g = self.scan.geometry;
        let n = g.voxel_count();
        let mut files = BTreeMap::new();
        let mut items = vec![
            ("probability", &maps.probability),
            ("mutual_info", &maps.mutual_info),
            ("mask", &maps.mask),
        ];
        if let Some(mean) = &maps.mean {
            items.push(("mean", mean));
        }
        for (name, map) in items {
            let mut values = lungseg::error::try_vec::<f32>(n, "scan map")?;
            map.read(&mut values)?;
            let data = if name == "mask" {
                PixelData::U8(values.iter().map(|&v| u8::from(v >= 0.5)).collect())
            } else {
                PixelData::F32(values)
            };
            let file = self.write(&format!("scan_{name}"), &Volume::new(g, data)?)?;
            files.insert(name.to_string(), file);
        }
        Ok(files)
    }
}

pub(super) fn write_json(path: &Path, p: &Predictions) -> Result<()> {
    let text = serde_json::to_string_pretty(p)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
