//! Probability calibration of a model file: the MC samples of held-out patches through the
//! shipped engine, a [`Platt`] map fitted on their ROI voxels, and the map folded into the
//! 1×1×1 head so that device software gets calibrated samples with no engine change.
//!
//! The voxels are those the evaluation reports ECE on ([`roi_mask`]): the whole-patch
//! numbers are dominated by easy background that any map leaves at p ≈ 0.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::mc;
use lungseg::model::Model;
use safetensors::Dtype;

use super::platt::{fit, logit, MapKind, Platt, PlattFit, SampleLogits};
use crate::dataset::PatchDataset;
use crate::evaluate::score::{patch_seed, split_for_model};
use crate::metrics::{
    predicted_mask, roi_mask, CalibrationAccumulator, CalibrationSummary, EvalConfig,
};
use crate::model_file::{replace_file, ModelFile, RawTensor};

/// What to fit on.
#[derive(Clone, Debug)]
pub struct ProbabilityOptions {
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub kind: MapKind,
    pub region: FitRegion,
    /// ROI and ECE bins (as in the evaluation).
    pub eval: EvalConfig,
}

impl Default for ProbabilityOptions {
    fn default() -> Self {
        ProbabilityOptions {
            split: "val".into(),
            samples: 20,
            seed: 0,
            kind: MapKind::Temperature,
            region: FitRegion::Patch,
            eval: EvalConfig::default(),
        }
    }
}

/// The voxels whose likelihood the fit maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitRegion {
    /// The ROI only: where the ROI ECE is measured, but a map that fits there alone moves the
    /// confidently right background too.
    Roi,
    /// The whole patch: the ROI and every [`OUTSIDE_STRIDE`]-th voxel outside it, weighted by
    /// the stride.
    Patch,
}

impl FitRegion {
    pub fn from_name(name: &str) -> Option<FitRegion> {
        match name {
            "roi" => Some(FitRegion::Roi),
            "patch" => Some(FitRegion::Patch),
            _ => None,
        }
    }
}

/// The provenance key the fit is recorded under; its presence marks a calibrated model.
pub const PROVENANCE_KEY: &str = "probability_calibration";

/// A fitted calibration and how it changed the calibration voxels.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProbabilityCalibration {
    /// The map family (`σ(a·z + b)` per sample, folded into the head); `kind` says which
    /// parameters were free.
    pub method: &'static str,
    pub region: FitRegion,
    #[serde(flatten)]
    pub fit: PlattFit,
    pub data: String,
    pub split: String,
    pub seed: u64,
    pub samples: u32,
    pub patches: usize,
    pub roi_voxels: usize,
    /// Samples whose logit is beyond the probe's range (clamped; see [`PROBE_SCALE`]).
    pub saturated_samples: usize,
    pub ece_roi_before: f64,
    pub ece_roi_after: f64,
    /// Whole-patch ECE and Brier, estimated from the ROI voxels and every
    /// [`OUTSIDE_STRIDE`]-th voxel outside it (weighted by the stride): a map fitted on the ROI
    /// also moves the easy background, where the network is right and confident.
    pub ece_patch_before: f64,
    pub ece_patch_after: f64,
    pub brier_patch_before: f64,
    pub brier_patch_after: f64,
}

/// Voxels outside the ROI kept for the whole-patch estimate: every 67th (by index). A prime:
/// with a power-of-two stride, a power-of-two patch would be sampled on one face only
/// (`v % 64 == 0` is `x == 0` in a 64³ patch).
pub const OUTSIDE_STRIDE: usize = 67;

/// What one pass over the split collects.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    /// Every ROI voxel (the fit's data).
    pub roi: SampleLogits,
    /// Every [`OUTSIDE_STRIDE`]-th voxel outside the ROI, each of weight [`OUTSIDE_STRIDE`].
    pub outside: SampleLogits,
    pub patches: usize,
    /// Samples whose logit is beyond the probe's range (clamped; see [`PROBE_SCALE`]).
    pub saturated: usize,
}

/// The head of the probe model computes `σ(z / PROBE_SCALE)`: the engine writes f32
/// probabilities, which round to exactly 1 from `z ≈ 16.6` on, while the head's logits of an
/// over-confident network reach far beyond (13 % of the default model's ROI samples). The
/// probe's probabilities stay inside f32's resolution up to `|z| ≈ 16.6 · PROBE_SCALE`, and
/// their logits times the scale are the network's (the dropout masks do not depend on the
/// head, and `σ(z / s) ≥ 0.5` exactly when `σ(z) ≥ 0.5`).
pub const PROBE_SCALE: f64 = 16.0;

/// The model of `file` with `z ↦ a·z + b` folded into its head, written in F32 so that the
/// product is not rounded to the file's half precision.
pub fn scale_head(file: &mut ModelFile, map: Platt) -> Result<()> {
    let Platt { a, b } = map;
    let w = file
        .tensor("head.weight")
        .context("model has no head.weight")?
        .clone();
    let scaled: Vec<f32> = w
        .to_f32()?
        .iter()
        .map(|&x| (a * f64::from(x)) as f32)
        .collect();
    let bias = match file.tensor("head.bias") {
        Some(t) => {
            let v = t.to_f32()?;
            ensure!(
                v.len() == 1,
                "head.bias holds {} values, expected 1",
                v.len()
            );
            v[0]
        }
        None => 0.0,
    };
    let new_bias = (a * f64::from(bias) + b) as f32;
    file.set_tensor(
        "head.weight",
        RawTensor::from_f32(Dtype::F32, w.shape, &scaled)?,
    );
    file.set_tensor(
        "head.bias",
        RawTensor::from_f32(Dtype::F32, vec![1], &[new_bias])?,
    );
    Ok(())
}

/// The probe of `file` (see [`PROBE_SCALE`]).
pub fn logit_probe(file: &ModelFile) -> Result<Model> {
    let mut probe = file.clone();
    scale_head(
        &mut probe,
        Platt {
            a: 1.0 / PROBE_SCALE,
            b: 0.0,
        },
    )?;
    Ok(probe.to_bytes()?.1)
}

/// The network's logit from a probe probability.
fn probe_logit(p: f32) -> f32 {
    (PROBE_SCALE * f64::from(logit(p))) as f32
}

fn sigmoid(z: f32) -> f32 {
    (1.0 / (1.0 + (-f64::from(z)).exp())) as f32
}

/// The MC sample logits of the split's patches ([`Collected`]), from the `probe` model
/// ([`logit_probe`]) with the dropout masks of `predict_uncertainty` under the evaluation's
/// per-patch seed; `on_patch` after each.
pub fn collect_logits(
    probe: &Model,
    ds: &PatchDataset,
    opts: &ProbabilityOptions,
    mut on_patch: impl FnMut(),
) -> Result<Collected> {
    ensure!(opts.samples > 0, "probability calibration needs MC samples");
    let idx = split_for_model(probe, ds, &opts.split)?;
    let s = opts.samples as usize;
    let mut out = Collected {
        roi: SampleLogits::new(s),
        outside: SampleLogits {
            weight: OUTSIDE_STRIDE as f64,
            ..SampleLogits::new(s)
        },
        patches: idx.len(),
        saturated: 0,
    };
    // The probe keeps the model's config, so its mask threshold is the model's.
    let eval = opts.eval.for_model(probe);
    for &i in &idx {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let n = patch.hu.len();
        let seed = patch_seed(opts.seed, &rec.id);
        let mut z = vec![0f32; n * s];
        for (k, zk) in z.chunks_exact_mut(n).enumerate() {
            let id = mc::SampleId {
                seed,
                sample: k as u32,
                n_samples: s as u32,
            };
            mc::predict_sample(probe, &patch.hu, id, zk, 0)
                .with_context(|| format!("patch {}", rec.id))?;
            out.saturated += zk.iter().filter(|&&p| p <= 0.0 || p >= 1.0).count();
            zk.iter_mut().for_each(|p| *p = probe_logit(*p));
        }
        let mean: Vec<f32> = (0..n)
            .map(|v| (0..s).map(|k| sigmoid(z[k * n + v])).sum::<f32>() / s as f32)
            .collect();
        let mut det = vec![0f32; n];
        mc::predict(probe, &patch.hu, &mut det, 0).with_context(|| format!("patch {}", rec.id))?;
        det.iter_mut().for_each(|p| *p = sigmoid(probe_logit(*p)));
        let grid = rec.grid(probe.config().spacing_mm);
        let pred = predicted_mask(&mean, grid, &eval).map_err(anyhow::Error::msg)?;
        let roi =
            roi_mask(&patch.mask, &pred, &det, rec.shape, &eval).map_err(anyhow::Error::msg)?;
        for v in 0..n {
            let dst = if roi[v] != 0 {
                &mut out.roi
            } else if v % OUTSIDE_STRIDE == 0 {
                &mut out.outside
            } else {
                continue;
            };
            dst.push(patch.mask[v] != 0, (0..s).map(|k| z[k * n + v]));
        }
        on_patch();
    }
    Ok(out)
}

/// The calibrated MC means of `sets` (each voxel counted `weight` times, a whole number) in
/// one calibration accumulator.
fn accumulate(sets: &[&SampleLogits], map: Platt, bins: usize) -> Result<CalibrationSummary> {
    let mut acc = CalibrationAccumulator::new(bins).map_err(anyhow::Error::msg)?;
    for data in sets {
        let n = data.weight.round() as u64;
        for (z, &y) in data.logits.chunks_exact(data.samples).zip(&data.labels) {
            acc.add_n(map.mean_prob(z) as f32, y != 0, n);
        }
    }
    Ok(acc.summary())
}

/// ECE of the calibrated MC mean over the collected voxels.
pub fn ece(data: &SampleLogits, map: Platt, bins: usize) -> Result<f64> {
    accumulate(&[data], map, bins)?
        .ece
        .context("no voxels to calibrate on")
}

/// Whole-patch (ECE, Brier) of the calibrated MC mean, estimated from `c`.
pub fn patch_calibration(c: &Collected, map: Platt, bins: usize) -> Result<(f64, f64)> {
    let s = accumulate(&[&c.roi, &c.outside], map, bins)?;
    Ok((
        s.ece.context("no voxels to calibrate on")?,
        s.brier.context("no voxels to calibrate on")?,
    ))
}

/// Collects the split through the probe of the model file at `model_path`, fits the map and
/// states its effect; the file is not changed.
pub fn fit_probability(
    model_path: &Path,
    dataset: &Path,
    opts: &ProbabilityOptions,
    on_patch: impl FnMut(),
) -> Result<ProbabilityCalibration> {
    let file = ModelFile::read(model_path)?;
    let probe = logit_probe(&file).with_context(|| model_path.display().to_string())?;
    let ds = PatchDataset::open(dataset)?;
    let c = collect_logits(&probe, &ds, opts, on_patch)?;
    let data = &c.roi;
    let fit = match opts.region {
        FitRegion::Roi => fit(&[data], opts.kind)?,
        FitRegion::Patch => fit(&[data, &c.outside], opts.kind)?,
    };
    let bins = opts.eval.calibration_bins;
    let (ece_patch_before, brier_patch_before) = patch_calibration(&c, Platt::IDENTITY, bins)?;
    let (ece_patch_after, brier_patch_after) = patch_calibration(&c, fit.map, bins)?;
    Ok(ProbabilityCalibration {
        method: "platt_per_sample_head",
        region: opts.region,
        ece_roi_before: ece(data, Platt::IDENTITY, bins)?,
        ece_roi_after: ece(data, fit.map, bins)?,
        ece_patch_before,
        ece_patch_after,
        brier_patch_before,
        brier_patch_after,
        fit,
        data: dataset.display().to_string(),
        split: opts.split.clone(),
        seed: opts.seed,
        samples: opts.samples,
        patches: c.patches,
        roi_voxels: data.voxels(),
        saturated_samples: c.saturated,
    })
}

/// Folds `cal`'s map into the head of the model file `file`, moves the mask threshold with it
/// ([`keep_boundary`]) and records the fit in the provenance. Refuses a model that is
/// calibrated already (fit on the plain export).
pub fn apply(file: &mut ModelFile, cal: &ProbabilityCalibration) -> Result<()> {
    let mut provenance = file.json_object("provenance")?;
    if provenance.contains_key(PROVENANCE_KEY) {
        bail!("the model is probability-calibrated already; calibrate the uncalibrated export");
    }
    scale_head(file, cal.fit.map)?;
    keep_boundary(file, cal.fit.map)?;
    provenance.insert(PROVENANCE_KEY.into(), serde_json::to_value(cal)?);
    file.set_json_object("provenance", provenance);
    Ok(())
}

/// Sets the file's `config.mask_threshold` to the image of its threshold under `map`, and its
/// `format_version` to what that needs: each sample's mask `σ(a·z + b) ≥ map(t)` is
/// `σ(z) ≥ t` (the map is increasing), so calibration changes the probabilities and not the
/// segmentation the network was trained and evaluated for (a map with `b < 0` would otherwise
/// shrink every mask; the final mask, a mean of mapped samples, moves only slightly).
pub fn keep_boundary(file: &mut ModelFile, map: Platt) -> Result<()> {
    ensure!(
        map.a > 0.0 && map.a.is_finite() && map.b.is_finite(),
        "calibration map a = {}, b = {} is not increasing",
        map.a,
        map.b
    );
    let config_json = file.metadata.get("config").map_or("{}", String::as_str);
    let old = lungseg::model::ModelConfig::from_json(config_json)?;
    let t = map.map_probability(f64::from(old.mask_threshold));
    ensure!(
        t > 0.0 && t < 1.0 && (t as f32) > 0.0 && (t as f32) < 1.0,
        "the mapped mask threshold {t} is not a probability inside (0, 1)"
    );
    super::mask_threshold::set_mask_threshold(file, t as f32)
}

/// How much a map may worsen the whole-patch ECE (absolute) before [`check_whole_patch`]
/// refuses it: the subsample's estimate is good to ~0.001 on 100 patches of 64³.
pub const WHOLE_PATCH_ECE_SLACK: f64 = 0.005;

/// Refuses a map that improves the region it was fitted on but worsens the whole patch (a map
/// fitted on the ROI lifts the confidently right background: every voxel then looks
/// uncertain). `force` writes it anyway.
pub fn check_whole_patch(cal: &ProbabilityCalibration, force: bool) -> Result<()> {
    let worse_ece = cal.ece_patch_after > cal.ece_patch_before + WHOLE_PATCH_ECE_SLACK;
    let worse_brier = cal.brier_patch_after > cal.brier_patch_before;
    if force || !(worse_ece || worse_brier) {
        return Ok(());
    }
    bail!(
        "the map worsens the whole patch (ECE {:.4} -> {:.4}, Brier {:.4} -> {:.4}): not \
         written (fit on --region patch, or force it)",
        cal.ece_patch_before,
        cal.ece_patch_after,
        cal.brier_patch_before,
        cal.brier_patch_after
    )
}

/// [`apply`] to the file at `path`, replaced in place after the result loads.
pub fn write_calibration(path: &Path, cal: &ProbabilityCalibration) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    apply(&mut file, cal).with_context(|| path.display().to_string())?;
    let (bytes, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    replace_file(path, &bytes)?;
    Ok(model)
}
