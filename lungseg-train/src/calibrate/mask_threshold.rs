//! The model's mask threshold (`config.mask_threshold`) chosen on calibration patches, and
//! with it, when candidates are given, the test-time flips of its MC samples
//! (`config.test_time_flips`: how many mirrored orientations the samples cycle through).
//!
//! The threshold the network was trained for (0.5: BCE + soft Dice) is not the one that
//! segments its MC mean best: averaging dropout samples spreads a small nodule's probability
//! over its border, so a 0.5 cut can shrink or lose it. One MC pass over the split gives each
//! patch's mean map (the probabilities do not depend on the threshold; one pass per flips
//! candidate, since the flips do change them); every (flips, threshold) pair is then judged on
//! those maps by the evaluation's own overlap and bad-patch definitions:
//!
//! - objective: mean Dice over the nodule patches (the headline of the evaluation);
//! - constraint ([`NegativeCost::within`]): no more bad negative patches (false-positive
//!   volume above `EvalConfig::bad_fp_mm3`) and no larger mean false-positive volume over the
//!   negative patches than at the model's current flips and threshold, so a lower cut cannot
//!   buy Dice with false alarms the review flag would then have to catch — or, with
//!   `max_bad_negatives` / `max_mean_fp_mm3`, than those numbers (e.g. the shipped model's, when the model is a candidate to replace it: its own
//!   current setting is then no reference);
//! - ties (mean Dice within [`DICE_TIE`]) go to the model's current flips, then to the
//!   threshold nearest the current one, then to fewer flips (fewer reruns of the shared
//!   encoder, larger batches on a GPU).
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
use crate::metrics::{Confusion, EvalConfig, NegativeCost, PatchClass};
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
    /// Candidate `test_time_flips` (1, 2, 4, 8); the model's own is always judged, so empty
    /// keeps it.
    pub flips: Vec<u32>,
    /// The constraint's bound on bad negatives; `None`: the count at the model's current
    /// setting.
    pub max_bad_negatives: Option<usize>,
    /// The constraint's bound on the mean false-positive volume over the negative patches,
    /// mm³; `None`: the mean at the model's current setting.
    pub max_mean_fp_mm3: Option<f64>,
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
            flips: Vec::new(),
            max_bad_negatives: None,
            max_mean_fp_mm3: None,
            eval: EvalConfig::default(),
        }
    }
}

/// One candidate (flips, threshold) judged on the split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdRow {
    pub test_time_flips: u32,
    pub threshold: f32,
    /// Mean Dice over the nodule patches.
    pub mean_dice: f64,
    /// Negative patches whose false-positive volume exceeds the bad-patch limit.
    pub bad_negatives: usize,
    /// Mean false-positive volume over the negative patches, mm³.
    pub mean_fp_mm3: f64,
}

impl ThresholdRow {
    pub fn negative_cost(&self) -> NegativeCost {
        NegativeCost {
            bad: self.bad_negatives,
            mean_fp_mm3: self.mean_fp_mm3,
        }
    }
}

/// The result, recorded in the model's provenance when written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskThresholdChoice {
    pub previous: f32,
    pub chosen: f32,
    pub previous_flips: u32,
    pub chosen_flips: u32,
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
    flips: u32,
    candidates: Vec<f32>,
    bad_fp_mm3: f64,
    dice_sum: Vec<f64>,
    /// Per candidate, each negative patch's (false-positive volume in mm³, bad).
    negative: Vec<Vec<(f64, bool)>>,
    nodules: usize,
    negatives: usize,
}

impl Tally {
    fn new(flips: u32, candidates: &[f32], bad_fp_mm3: f64) -> Self {
        let n = candidates.len();
        Tally {
            flips,
            candidates: candidates.to_vec(),
            bad_fp_mm3,
            dice_sum: vec![0.0; n],
            negative: vec![Vec::new(); n],
            nodules: 0,
            negatives: 0,
        }
    }

    /// One nodule or negative patch ([`PatchClass::Partial`] ones are in no statistic).
    fn add(&mut self, class: PatchClass, gt: &[u8], mean: &[f32], voxel_mm3: f64) -> Result<()> {
        let nodule = class == PatchClass::Nodule;
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
                let bad = is_bad(class, c.dice(), fp, 0.0, self.bad_fp_mm3);
                self.negative[k].push((fp, bad));
            }
        }
        Ok(())
    }

    fn rows(&self) -> Vec<ThresholdRow> {
        (0..self.candidates.len())
            .map(|k| {
                let cost = NegativeCost::of_patches(self.negative[k].iter().copied());
                ThresholdRow {
                    test_time_flips: self.flips,
                    threshold: self.candidates[k],
                    mean_dice: if self.nodules > 0 {
                        self.dice_sum[k] / self.nodules as f64
                    } else {
                        0.0
                    },
                    bad_negatives: cost.bad,
                    mean_fp_mm3: cost.mean_fp_mm3,
                }
            })
            .collect()
    }
}

/// The rule of the module doc on the judged candidates; `current` is the row of the model's
/// flips and threshold (the constraint's reference). The chosen (flips, threshold); `None`
/// when no row satisfies the constraint.
pub fn choose(rows: &[ThresholdRow], current: &ThresholdRow) -> Option<(u32, f32)> {
    choose_within(rows, current, current.negative_cost())
}

/// [`choose`] with the constraint `bound` instead of the current row's costs (`current`
/// still breaks ties).
pub fn choose_within(
    rows: &[ThresholdRow],
    current: &ThresholdRow,
    bound: NegativeCost,
) -> Option<(u32, f32)> {
    let allowed: Vec<&ThresholdRow> = rows
        .iter()
        .filter(|r| r.negative_cost().within(&bound))
        .collect();
    let best = allowed
        .iter()
        .map(|r| r.mean_dice)
        .fold(f64::NEG_INFINITY, f64::max);
    allowed
        .iter()
        .filter(|r| r.mean_dice >= best - DICE_TIE)
        .min_by(|a, b| {
            let key = |r: &ThresholdRow| {
                (
                    r.test_time_flips != current.test_time_flips,
                    (r.threshold - current.threshold).abs(),
                    r.test_time_flips,
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.cmp(&kb.2))
        })
        .map(|r| (r.test_time_flips, r.threshold))
}

/// One MC pass over `split` of `dataset` per flips candidate and the choice among
/// `opts.flips` × `opts.candidates` (the model's current flips and threshold are always judged
/// too); `on_patch` after each patch.
pub fn choose_mask_threshold(
    model_path: &Path,
    dataset: &Path,
    opts: &MaskThresholdOptions,
    on_patch: impl FnMut(),
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
    let previous_flips = model.config().test_time_flips;
    let candidates = with_current(&opts.candidates, previous, f32::total_cmp);
    let flips = with_current(&opts.flips, previous_flips, u32::cmp);
    let mut variants = Vec::with_capacity(flips.len());
    for &f in &flips {
        let m = if f == previous_flips {
            Model::open(model_path)?
        } else {
            with_flips(model_path, f).with_context(|| format!("test_time_flips {f}"))?
        };
        variants.push((m, Tally::new(f, &candidates, opts.eval.bad_fp_mm3)));
    }
    let spacing = model.config().spacing_mm;
    tally_patches(&ds, &idx, spacing, opts, &mut variants, on_patch)?;
    let (nodules, negatives) = (variants[0].1.nodules, variants[0].1.negatives);
    ensure!(nodules > 0, "split '{}' has no nodule patches", opts.split);
    let rows: Vec<ThresholdRow> = variants.iter().flat_map(|(_, t)| t.rows()).collect();
    let current = rows
        .iter()
        .find(|r| r.threshold == previous && r.test_time_flips == previous_flips)
        .expect("the current setting is a candidate");
    let bound = NegativeCost {
        bad: opts.max_bad_negatives.unwrap_or(current.bad_negatives),
        mean_fp_mm3: opts.max_mean_fp_mm3.unwrap_or(current.mean_fp_mm3),
    };
    let (chosen_flips, chosen) = choose_within(&rows, current, bound).with_context(|| {
        format!(
            "no candidate has at most {} bad negative patches and a mean false-positive \
             volume of at most {} mm³",
            bound.bad, bound.mean_fp_mm3
        )
    })?;
    Ok(MaskThresholdChoice {
        previous,
        chosen,
        previous_flips,
        chosen_flips,
        nodule_patches: nodules,
        negative_patches: negatives,
        bad_fp_mm3: opts.eval.bad_fp_mm3,
        data: dataset.display().to_string(),
        split: opts.split.clone(),
        samples: opts.samples,
        seed: opts.seed,
        rows,
    })
}

/// The candidates with the model's current value among them, sorted, each once.
fn with_current<T: Copy + PartialEq>(
    candidates: &[T],
    current: T,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let mut all = candidates.to_vec();
    all.push(current);
    all.sort_by(order);
    all.dedup();
    all
}

/// Every nodule and negative patch of `idx` through every variant (partial patches are
/// skipped: `metrics::PatchClass`).
fn tally_patches(
    ds: &PatchDataset,
    idx: &[usize],
    spacing: [f64; 3],
    opts: &MaskThresholdOptions,
    variants: &mut [(Model, Tally)],
    mut on_patch: impl FnMut(),
) -> Result<()> {
    for &i in idx {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let [sx, sy, sz] = rec.spacing_mm.unwrap_or(spacing);
        let class = PatchClass::of(rec.label == 1, foreground_voxels(&patch.mask));
        if class != PatchClass::Partial {
            for (m, tally) in variants.iter_mut() {
                let mean = mc_mean(m, &patch.hu, opts.samples, patch_seed(opts.seed, &rec.id))
                    .with_context(|| format!("patch {}", rec.id))?;
                tally.add(class, &patch.mask, &mean, sx * sy * sz)?;
            }
        }
        on_patch();
    }
    Ok(())
}

/// The MC mean map of one patch: `samples` samples with `seed` (a patch's seed is
/// [`crate::evaluate::score::patch_seed`]), the model's flips.
pub fn mc_mean(model: &Model, hu: &[f32], samples: u32, seed: u64) -> Result<Vec<f32>> {
    let mut mean = vec![0.0f32; hu.len()];
    let mc_opts = McOptions {
        n_samples: samples,
        seed,
        threads: 0,
        review_threshold: None,
        review_score: None,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..UncertaintyMaps::default()
    };
    mc::predict_uncertainty(model, hu, &mc_opts, maps)?;
    Ok(mean)
}

/// Writes `choice.chosen` and `choice.chosen_flips` as the model file's
/// `config.mask_threshold` and `config.test_time_flips` (with the `format_version` they need)
/// and records the choice in the provenance; every tensor is kept byte for byte. The file is
/// replaced after the result loads with the new settings.
pub fn write_mask_threshold(path: &Path, choice: &MaskThresholdChoice) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    set_mask_threshold(&mut file, choice.chosen).with_context(|| path.display().to_string())?;
    set_test_time_flips(&mut file, choice.chosen_flips)
        .with_context(|| path.display().to_string())?;
    let mut provenance = file.json_object("provenance")?;
    provenance.insert(PROVENANCE_KEY.into(), serde_json::to_value(choice)?);
    file.set_json_object("provenance", provenance);
    let (bytes, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    let cfg = model.config();
    ensure!(
        (cfg.mask_threshold, cfg.test_time_flips) == (choice.chosen, choice.chosen_flips),
        "rewritten model reads mask threshold {} and {} flips instead of {} and {}",
        cfg.mask_threshold,
        cfg.test_time_flips,
        choice.chosen,
        choice.chosen_flips
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
    set_config_key(file, "mask_threshold", serde_json::json!(t))
}

/// Sets `config.test_time_flips` of `file` to `flips` (1, 2, 4 or 8) and its `format_version`
/// to what the new config needs.
pub fn set_test_time_flips(file: &mut ModelFile, flips: u32) -> Result<()> {
    set_config_key(file, "test_time_flips", serde_json::json!(flips))
}

/// Sets one `config` key and the `format_version` the resulting config needs; the config is
/// checked by the library's own parser.
fn set_config_key(file: &mut ModelFile, key: &str, value: serde_json::Value) -> Result<()> {
    let mut config = file.json_object("config")?;
    config.insert(key.into(), value);
    let new = ModelConfig::from_json(&serde_json::Value::Object(config.clone()).to_string())?;
    file.set_json_object("config", config);
    file.metadata.insert(
        "format_version".into(),
        lungseg::model::required_format_version(&new).into(),
    );
    Ok(())
}

/// `path`'s model with `config.test_time_flips` = `flips`, in memory.
fn with_flips(path: &Path, flips: u32) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    set_test_time_flips(&mut file, flips)?;
    Ok(file.to_bytes()?.1)
}

fn foreground_voxels(mask: &[u8]) -> u64 {
    mask.iter().filter(|&&v| v != 0).count() as u64
}
