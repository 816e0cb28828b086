//! The probability map by distance from the final mask (`config.probability_map`,
//! `lungseg::probability_map`): one isotonic map of the MC mean per distance band, fitted on
//! every voxel of held-out patches.
//!
//! Why every voxel and not the ROI: the engine applies the map to every voxel of a patch and
//! cannot know the ROI (it is drawn around the ground truth); fitted on the ROI alone, the far
//! bands would learn that missed lesions are nodule and paint it over the background
//! (`scripts/band_calibration_study.py`: whole-patch ECE 0.14). The bands are the study's:
//! inside the mask, 1, 2, 3, 4–6 and ≥ 7 voxels from it.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use lungseg::model::Model;
use lungseg::probability_map::ProbabilityMap;
use serde::Serialize;

use super::mask_threshold::set_config_key;
use crate::dataset::PatchDataset;
use crate::evaluate::score::{run_patch, split_for_model};
use crate::metrics::{predicted_mask, roi_mask, CalibrationAccumulator, EvalConfig};
use crate::model_file::{replace_file, ModelFile};

/// Upper Chebyshev distance (voxels) of each band but the last.
pub const BAND_MAX_VOXELS: [u32; 5] = [0, 1, 2, 3, 6];
/// Probability bins of the fit; the map's knots are their centres.
pub const FINE_BINS: usize = 100;
/// The provenance key the fit is recorded under.
pub const PROVENANCE_KEY: &str = "probability_map";

/// Voxel count, foreground count and summed mean probability per (band, probability bin).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BandHistogram {
    pub band_max_voxels: Vec<u32>,
    /// `[band][bin]`.
    pub voxels: Vec<Vec<u64>>,
    pub foreground: Vec<Vec<u64>>,
    pub sum_p: Vec<Vec<f64>>,
}

impl BandHistogram {
    pub fn new(band_max_voxels: &[u32]) -> BandHistogram {
        let bands = band_max_voxels.len() + 1;
        BandHistogram {
            band_max_voxels: band_max_voxels.to_vec(),
            voxels: vec![vec![0; FINE_BINS]; bands],
            foreground: vec![vec![0; FINE_BINS]; bands],
            sum_p: vec![vec![0.0; FINE_BINS]; bands],
        }
    }

    /// Counts one voxel of mean `p` in `band`, foreground or not.
    pub fn add(&mut self, band: usize, p: f32, foreground: bool) {
        let b = Self::bin(p);
        self.voxels[band][b] += 1;
        self.foreground[band][b] += u64::from(foreground);
        self.sum_p[band][b] += f64::from(p);
    }

    /// ECE (`bins` equal-width bins) of these voxels with each bin's voxels at its mean
    /// probability mapped by `map` (the identity when `None`): the ECE of the mapped voxels up
    /// to how far the map bends inside a 0.01-wide bin.
    pub fn ece(&self, map: Option<&ProbabilityMap>, bins: usize) -> Result<Option<f64>> {
        let mut acc = CalibrationAccumulator::new(bins).map_err(anyhow::Error::msg)?;
        self.add_mapped(&mut acc, map);
        Ok(acc.summary().ece)
    }

    /// Adds these voxels to `acc`, each bin's voxels at its mean probability mapped by `map`
    /// (the identity when `None`); several histograms, each under its own map, can then be
    /// judged together.
    pub fn add_mapped(&self, acc: &mut CalibrationAccumulator, map: Option<&ProbabilityMap>) {
        for band in 0..self.voxels.len() {
            for b in 0..FINE_BINS {
                let n = self.voxels[band][b];
                if n == 0 {
                    continue;
                }
                let p = (self.sum_p[band][b] / n as f64) as f32;
                let p = map.map_or(p, |m| m.map(band, p));
                let pos = self.foreground[band][b];
                acc.add_n(p, true, pos);
                acc.add_n(p, false, n - pos);
            }
        }
    }

    /// The fine bin of probability `p`.
    pub fn bin(p: f32) -> usize {
        ((f64::from(p) * FINE_BINS as f64) as usize).min(FINE_BINS - 1)
    }

    /// Each voxel's band from `mask` (the final mask of `mean`): the engine's
    /// (`lungseg::probability_map::bands`).
    pub fn bands(&self, mask: &[u8], dims_zyx: [usize; 3]) -> Result<Vec<usize>> {
        let b = lungseg::probability_map::bands(&self.band_max_voxels, mask, dims_zyx)?;
        Ok(b.into_iter().map(usize::from).collect())
    }

    /// One isotonic map per band through the bins' centres: the observed foreground frequency
    /// of the non-empty bins made non-decreasing (pool adjacent violators, weighted by voxel
    /// count), empty bins interpolated between their neighbours.
    pub fn fit(&self) -> Result<ProbabilityMap> {
        let knots: Vec<f32> = (0..FINE_BINS)
            .map(|k| ((k as f64 + 0.5) / FINE_BINS as f64) as f32)
            .collect();
        let values = (0..self.voxels.len())
            .map(|band| self.fit_band(band, &knots))
            .collect();
        let map = ProbabilityMap {
            band_max_voxels: self.band_max_voxels.clone(),
            knots,
            values,
        };
        map.check()?;
        Ok(map)
    }

    fn fit_band(&self, band: usize, knots: &[f32]) -> Vec<f32> {
        let (n, pos) = (&self.voxels[band], &self.foreground[band]);
        let filled: Vec<usize> = (0..FINE_BINS).filter(|&k| n[k] > 0).collect();
        if filled.is_empty() {
            return knots.to_vec();
        }
        let y: Vec<f64> = filled
            .iter()
            .map(|&k| pos[k] as f64 / n[k] as f64)
            .collect();
        let w: Vec<f64> = filled.iter().map(|&k| n[k] as f64).collect();
        let fitted = isotonic(&y, &w);
        (0..FINE_BINS)
            .map(|k| {
                let i = filled.partition_point(|&f| f < k);
                let v = if i < filled.len() && filled[i] == k {
                    fitted[i]
                } else if i == 0 {
                    fitted[0]
                } else if i == filled.len() {
                    fitted[i - 1]
                } else {
                    let (a, b) = (filled[i - 1] as f64, filled[i] as f64);
                    let t = (k as f64 - a) / (b - a);
                    fitted[i - 1] + t * (fitted[i] - fitted[i - 1])
                };
                v.clamp(0.0, 1.0) as f32
            })
            .collect()
    }
}

/// The whole patch's and the ROI's histograms, filled together (one band pass per patch).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegionHistograms {
    pub whole: BandHistogram,
    pub roi: BandHistogram,
}

impl RegionHistograms {
    pub fn new(band_max_voxels: &[u32]) -> RegionHistograms {
        RegionHistograms {
            whole: BandHistogram::new(band_max_voxels),
            roi: BandHistogram::new(band_max_voxels),
        }
    }

    /// Adds every voxel of one patch (`dims_zyx`): its mean, final mask `pred`, ground truth
    /// and ROI (`metrics::roi_mask`).
    pub fn add_patch(
        &mut self,
        mean: &[f32],
        pred: &[u8],
        gt: &[u8],
        roi: &[u8],
        dims_zyx: [usize; 3],
    ) -> Result<()> {
        ensure!(
            pred.len() == gt.len(),
            "mask and ground truth differ in length"
        );
        let bands = self.whole.bands(pred, dims_zyx)?;
        self.add_voxels(&bands, mean, gt, roi)
    }

    /// Adds every voxel `v` of one patch to histogram band `bands[v]` (a study's own banding;
    /// [`Self::add_patch`] uses the engine's).
    pub fn add_voxels(
        &mut self,
        bands: &[usize],
        mean: &[f32],
        gt: &[u8],
        roi: &[u8],
    ) -> Result<()> {
        ensure!(
            mean.len() == gt.len() && bands.len() == gt.len() && roi.len() == gt.len(),
            "mean, bands, ground truth and ROI differ in length"
        );
        for (v, &band) in bands.iter().enumerate() {
            let (p, y) = (mean[v], gt[v] != 0);
            self.whole.add(band, p, y);
            if roi[v] != 0 {
                self.roi.add(band, p, y);
            }
        }
        Ok(())
    }
}

/// The weighted least-squares non-decreasing fit of `y` (pool adjacent violators).
pub fn isotonic(y: &[f64], w: &[f64]) -> Vec<f64> {
    // (value, weight, length) of each pooled block.
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(y.len());
    for (&yi, &wi) in y.iter().zip(w) {
        blocks.push((yi, wi, 1));
        while blocks.len() > 1 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (v2, w2, l2) = blocks.pop().expect("two blocks");
            let (v1, w1, l1) = blocks.pop().expect("two blocks");
            let ww = w1 + w2;
            let v = if ww > 0.0 {
                (v1 * w1 + v2 * w2) / ww
            } else {
                v1
            };
            blocks.push((v, ww, l1 + l2));
        }
    }
    blocks
        .into_iter()
        .flat_map(|(v, _, l)| std::iter::repeat_n(v, l))
        .collect()
}

/// What to fit on.
#[derive(Clone, Debug)]
pub struct MaskDistanceOptions {
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    /// ROI and ECE bins (as in the evaluation).
    pub eval: EvalConfig,
    /// Fit a model that carries a map already, to replace it (a site refitting the map on
    /// its own scans, or on scans of a newer generator). The fit reads the MC mean, which the
    /// map does not touch, so it is the fit of the model without its map.
    pub replace: bool,
}

/// A fitted map and its effect on the voxels it was fitted on (in-sample: a fresh split
/// tells what new scans see).
#[derive(Clone, Debug, Serialize)]
pub struct MaskDistanceFit {
    #[serde(skip)]
    pub map: ProbabilityMap,
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub patches: usize,
    pub ece_roi_before: Option<f64>,
    pub ece_roi_after: Option<f64>,
    pub ece_patch_before: Option<f64>,
    pub ece_patch_after: Option<f64>,
}

/// Runs MC dropout on every patch of the split as `evaluate` does and fits the map. The ECE
/// before is the evaluation's; after, [`BandHistogram::ece`] of the same voxels (nothing per
/// voxel is kept).
pub fn fit_mask_distance(
    model_path: &Path,
    data: &Path,
    opts: &MaskDistanceOptions,
    mut on_patch: impl FnMut(),
) -> Result<MaskDistanceFit> {
    let model = Model::open(model_path).with_context(|| model_path.display().to_string())?;
    ensure!(
        opts.replace || model.config().probability_map.is_none(),
        "{} has a probability map already: fit the model without one, or replace its map",
        model_path.display()
    );
    let ds = PatchDataset::open(data)?;
    let idx = split_for_model(&model, &ds, &opts.split)?;
    let eval = opts.eval.for_model(&model);
    // The ROI's and the whole patch's voxels by (band, bin), the latter fitted, both kept to
    // judge the fitted map.
    let mut hist = RegionHistograms::new(&BAND_MAX_VOXELS);
    let (mut roi_before, mut all_before) = (
        CalibrationAccumulator::new(eval.calibration_bins).map_err(anyhow::Error::msg)?,
        CalibrationAccumulator::new(eval.calibration_bins).map_err(anyhow::Error::msg)?,
    );
    for &i in &idx {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (_, m) = run_patch(&model, rec, &patch, opts.samples, opts.seed)?;
        let grid = rec.grid(model.config().spacing_mm);
        let pred = predicted_mask(&m.mean, grid, &eval).map_err(anyhow::Error::msg)?;
        let roi =
            roi_mask(&patch.mask, &pred, &m.det, rec.shape, &eval).map_err(anyhow::Error::msg)?;
        roi_before
            .add_patch(&patch.mask, &m.mean, Some(&roi))
            .map_err(anyhow::Error::msg)?;
        all_before
            .add_patch(&patch.mask, &m.mean, None)
            .map_err(anyhow::Error::msg)?;
        hist.add_patch(&m.mean, &pred, &patch.mask, &roi, rec.shape)?;
        on_patch();
    }
    let map = hist.whole.fit()?;
    Ok(MaskDistanceFit {
        split: opts.split.clone(),
        samples: opts.samples,
        seed: opts.seed,
        patches: idx.len(),
        ece_roi_before: roi_before.summary().ece,
        ece_roi_after: hist.roi.ece(Some(&map), eval.calibration_bins)?,
        ece_patch_before: all_before.summary().ece,
        ece_patch_after: hist.whole.ece(Some(&map), eval.calibration_bins)?,
        map,
    })
}

/// Where `write_mask_distance` keeps the fits of the maps it replaced, oldest first.
pub const REPLACED_PROVENANCE_KEY: &str = "probability_map_replaced";

/// Writes the fitted map as the model file's `config.probability_map` and the fit under
/// `provenance.probability_map`; every tensor is kept byte for byte. A map the file carries
/// already is replaced, its fit appended to `provenance.probability_map_replaced`, so the
/// file tells which map it shipped with before.
pub fn write_mask_distance(path: &Path, fit: &MaskDistanceFit) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    keep_replaced_fit(&mut file)?;
    set_config_key(
        &mut file,
        "probability_map",
        serde_json::to_value(&fit.map)?,
    )
    .with_context(|| path.display().to_string())?;
    let mut provenance = file.json_object("provenance")?;
    provenance.insert(PROVENANCE_KEY.into(), serde_json::to_value(fit)?);
    file.set_json_object("provenance", provenance);
    let (bytes, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    ensure!(
        model.config().probability_map.as_ref() == Some(&fit.map),
        "rewritten model reads another probability map"
    );
    replace_file(path, &bytes)?;
    Ok(model)
}

/// Moves the provenance of the file's current map, if it has one, to the end of
/// [`REPLACED_PROVENANCE_KEY`], with the map itself (the provenance holds only the fit).
fn keep_replaced_fit(file: &mut ModelFile) -> Result<()> {
    let Some(old_map) = file.json_object("config")?.remove("probability_map") else {
        return Ok(());
    };
    let mut provenance = file.json_object("provenance")?;
    let mut old = match provenance.remove(PROVENANCE_KEY) {
        Some(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    old.insert("map".into(), old_map);
    let list = provenance
        .entry(REPLACED_PROVENANCE_KEY)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let serde_json::Value::Array(list) = list else {
        anyhow::bail!("provenance.{REPLACED_PROVENANCE_KEY} is not a list");
    };
    list.push(serde_json::Value::Object(old));
    file.set_json_object("provenance", provenance);
    Ok(())
}
