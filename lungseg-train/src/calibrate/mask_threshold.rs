//! The model's mask threshold (`config.mask_threshold`) chosen on calibration patches.
//!
//! The threshold the network was trained for (0.5: BCE + soft Dice) is not the one that
//! segments its MC mean best: averaging dropout samples spreads a small nodule's probability
//! over its border, so a 0.5 cut can shrink or lose it. One MC pass over the split gives each
//! patch's mean map (the probabilities do not depend on the threshold); every candidate is then
//! judged on those maps by the evaluation's own overlap and bad-patch definitions:
//!
//! - objective: mean Dice over the nodule patches (the headline of the evaluation);
//! - constraint: no more bad negative patches (false-positive volume above
//!   `EvalConfig::bad_fp_mm3`) than at the model's current threshold, so a lower cut cannot buy
//!   Dice with false alarms the review flag would then have to catch;
//! - ties (mean Dice within [`DICE_TIE`]) go to the candidate nearest the current threshold.
//!
//! Validation data only: the calibration scans, never the test split.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::{Model, ModelConfig};
use serde::Serialize;

use crate::dataset::PatchDataset;
use crate::evaluate::score::{patch_seed, split_for_model};
use crate::metrics::review_scores::is_bad;
use crate::metrics::{Confusion, EvalConfig};
use crate::model_file::{replace_file, ModelFile};

/// Mean-Dice differences below this count as ties.
pub const DICE_TIE: f64 = 0.002;

/// Provenance key of the recorded choice.
pub const PROVENANCE_KEY: &str = "mask_threshold_choice";

/// The candidates tried by default: 0.10, 0.15, …, 0.90.
pub fn default_candidates() -> Vec<f32> {
    (2..=18).map(|k| k as f32 * 0.05).collect()
}

/// What to choose on.
#[derive(Clone, Debug)]
pub struct MaskThresholdOptions {
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub candidates: Vec<f32>,
    /// Bad-patch definition (`bad_fp_mm3`); its `fg_threshold` is ignored.
    pub eval: EvalConfig,
}

impl Default for MaskThresholdOptions {
    fn default() -> Self {
        MaskThresholdOptions {
            split: "val".into(),
            samples: 20,
            seed: 0,
            candidates: default_candidates(),
            eval: EvalConfig::default(),
        }
    }
}

/// One candidate threshold judged on the split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdRow {
    pub threshold: f32,
    /// Mean Dice over the nodule patches.
    pub mean_dice: f64,
    /// Negative patches whose false-positive volume exceeds the bad-patch limit.
    pub bad_negatives: usize,
    /// Mean false-positive volume over the negative patches, mm³.
    pub mean_fp_mm3: f64,
}

/// The result, recorded in the model's provenance when written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskThresholdChoice {
    pub previous: f32,
    pub chosen: f32,
    pub nodule_patches: usize,
    pub negative_patches: usize,
    pub bad_fp_mm3: f64,
    pub data: String,
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub rows: Vec<ThresholdRow>,
}

/// Per-patch overlap of every candidate, accumulated over the split.
struct Tally {
    candidates: Vec<f32>,
    bad_fp_mm3: f64,
    dice_sum: Vec<f64>,
    fp_sum: Vec<f64>,
    bad_neg: Vec<usize>,
    nodules: usize,
    negatives: usize,
}

impl Tally {
    fn new(candidates: &[f32], bad_fp_mm3: f64) -> Self {
        let n = candidates.len();
        Tally {
            candidates: candidates.to_vec(),
            bad_fp_mm3,
            dice_sum: vec![0.0; n],
            fp_sum: vec![0.0; n],
            bad_neg: vec![0; n],
            nodules: 0,
            negatives: 0,
        }
    }

    fn add(&mut self, gt: &[u8], mean: &[f32], voxel_mm3: f64) -> Result<()> {
        let nodule = gt.iter().any(|&g| g != 0);
        if nodule {
            self.nodules += 1;
        } else {
            self.negatives += 1;
        }
        for (k, &t) in self.candidates.iter().enumerate() {
            let c = Confusion::from_probs(gt, mean, t).map_err(anyhow::Error::msg)?;
            if nodule {
                self.dice_sum[k] += c.dice();
            } else {
                let fp = c.fp as f64 * voxel_mm3;
                self.fp_sum[k] += fp;
                self.bad_neg[k] += usize::from(is_bad(false, c.dice(), fp, 0.0, self.bad_fp_mm3));
            }
        }
        Ok(())
    }

    fn rows(&self) -> Vec<ThresholdRow> {
        let mean = |s: f64, n: usize| if n > 0 { s / n as f64 } else { 0.0 };
        (0..self.candidates.len())
            .map(|k| ThresholdRow {
                threshold: self.candidates[k],
                mean_dice: mean(self.dice_sum[k], self.nodules),
                bad_negatives: self.bad_neg[k],
                mean_fp_mm3: mean(self.fp_sum[k], self.negatives),
            })
            .collect()
    }
}

/// The rule of the module doc on the judged candidates; `current` is the row of the model's
/// threshold (the constraint's reference). `None` when no row satisfies the constraint.
pub fn choose(rows: &[ThresholdRow], current: &ThresholdRow) -> Option<f32> {
    let allowed: Vec<&ThresholdRow> = rows
        .iter()
        .filter(|r| r.bad_negatives <= current.bad_negatives)
        .collect();
    let best = allowed
        .iter()
        .map(|r| r.mean_dice)
        .fold(f64::NEG_INFINITY, f64::max);
    allowed
        .iter()
        .filter(|r| r.mean_dice >= best - DICE_TIE)
        .min_by(|a, b| {
            let da = (a.threshold - current.threshold).abs();
            let db = (b.threshold - current.threshold).abs();
            da.total_cmp(&db)
        })
        .map(|r| r.threshold)
}

/// One MC pass over `split` of `dataset` and the choice among `opts.candidates` (the model's
/// current threshold is always judged too); `on_patch` after each patch.
pub fn choose_mask_threshold(
    model_path: &Path,
    dataset: &Path,
    opts: &MaskThresholdOptions,
    mut on_patch: impl FnMut(),
) -> Result<MaskThresholdChoice> {
    for &t in &opts.candidates {
        ensure!(
            t > 0.0 && t < 1.0,
            "candidate mask threshold {t} is not in (0, 1)"
        );
    }
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(dataset)?;
    let idx = split_for_model(&model, &ds, &opts.split)?;
    let previous = model.config().mask_threshold;
    let mut candidates = opts.candidates.clone();
    if !candidates.contains(&previous) {
        candidates.push(previous);
    }
    candidates.sort_by(f32::total_cmp);
    let mut tally = Tally::new(&candidates, opts.eval.bad_fp_mm3);
    let spacing = model.config().spacing_mm;
    for &i in &idx {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let mut mean = vec![0.0f32; patch.hu.len()];
        let mc_opts = McOptions {
            n_samples: opts.samples,
            seed: patch_seed(opts.seed, &rec.id),
            threads: 0,
            review_threshold: None,
            review_score: None,
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            ..UncertaintyMaps::default()
        };
        mc::predict_uncertainty(&model, &patch.hu, &mc_opts, maps)
            .with_context(|| format!("patch {}", rec.id))?;
        let [sx, sy, sz] = rec.spacing_mm.unwrap_or(spacing);
        tally.add(&patch.mask, &mean, sx * sy * sz)?;
        on_patch();
    }
    ensure!(
        tally.nodules > 0,
        "split '{}' has no nodule patches",
        opts.split
    );
    let rows = tally.rows();
    let current = rows
        .iter()
        .find(|r| r.threshold == previous)
        .expect("the current threshold is a candidate");
    let chosen = choose(&rows, current).expect("the current threshold satisfies the constraint");
    Ok(MaskThresholdChoice {
        previous,
        chosen,
        nodule_patches: tally.nodules,
        negative_patches: tally.negatives,
        bad_fp_mm3: opts.eval.bad_fp_mm3,
        data: dataset.display().to_string(),
        split: opts.split.clone(),
        samples: opts.samples,
        seed: opts.seed,
        rows,
    })
}

/// Writes `choice.chosen` as the model file's `config.mask_threshold` (with the
/// `format_version` it needs) and records the choice in the provenance; every tensor is kept
/// byte for byte. The file is replaced after the result loads with the new threshold.
pub fn write_mask_threshold(path: &Path, choice: &MaskThresholdChoice) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    set_mask_threshold(&mut file, choice.chosen).with_context(|| path.display().to_string())?;
    let mut provenance = file.json_object("provenance")?;
    provenance.insert(PROVENANCE_KEY.into(), serde_json::to_value(choice)?);
    file.set_json_object("provenance", provenance);
    let (bytes, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    ensure!(
        model.config().mask_threshold == choice.chosen,
        "rewritten model reads mask threshold {} instead of {}",
        model.config().mask_threshold,
        choice.chosen
    );
    replace_file(path, &bytes)?;
    Ok(model)
}

/// Sets `config.mask_threshold` of `file` to `t` and its `format_version` to what the new
/// config needs (`lungseg::model::required_format_version`).
pub fn set_mask_threshold(file: &mut ModelFile, t: f32) -> Result<()> {
    ensure!(
        t > 0.0 && t < 1.0,
        "mask threshold {t} is not a probability inside (0, 1)"
    );
    let config_json = file.metadata.get("config").map_or("{}", String::as_str);
    let old = ModelConfig::from_json(config_json)?;
    let mut config = file.json_object("config")?;
    config.insert("mask_threshold".into(), serde_json::json!(t));
    file.set_json_object("config", config);
    let new = ModelConfig {
        mask_threshold: t,
        ..old
    };
    file.metadata.insert(
        "format_version".into(),
        lungseg::model::required_format_version(&new).into(),
    );
    Ok(())
}
