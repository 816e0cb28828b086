//! Calibration of an exported model on held-out patches, written into the model file: the
//! review threshold (here), chosen so that a given fraction of cases is referred to a
//! radiologist, and the probabilities themselves ([`probability`]: temperature or Platt
//! scaling of the MC samples, folded into the head).
//!
//! Scores come from the shipped engine (`lungseg::mc`), not from the training framework, so
//! the threshold is calibrated on exactly the numbers device software will compare with it.

pub mod mask_distance;
pub mod mask_threshold;
pub mod platt;
pub mod probability;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::{Model, ReviewScore};

use crate::dataset::PatchDataset;
pub use crate::evaluate::score::{patch_seed, split_for_model};
use crate::evaluate::score::{score_patches, ScoreRun};
use crate::metrics::review_scores::best_score;
use crate::metrics::{threshold_for_refer_fraction, EvalConfig, EvalMetrics, ScoreEvaluation};
use crate::model_file::{replace_file, ModelFile};

/// MC-dropout review scores (`PatchSummary::uncertainty_score`) of every patch of `split`.
pub fn score_split(
    model: &Model,
    ds: &PatchDataset,
    split: &str,
    samples: u32,
    seed: u64,
    mut on_patch: impl FnMut(),
) -> Result<Vec<f32>> {
    let idx = split_for_model(model, ds, split)?;
    idx.iter()
        .map(|&i| {
            let p = ds.load(i)?;
            let opts = McOptions {
                n_samples: samples,
                seed: patch_seed(seed, &ds.records[i].id),
                threads: 0,
                review_threshold: None,
                review_score: None,
            };
            let s = mc::predict_uncertainty(model, &p.hu, &opts, UncertaintyMaps::default())
                .with_context(|| format!("patch {}", ds.records[i].id))?;
            on_patch();
            Ok(s.uncertainty_score)
        })
        .collect()
}

/// Result of a calibration run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Name of the review score the threshold belongs to.
    pub score: String,
    pub threshold: f32,
    pub patches: usize,
    /// Patches with `score > threshold` (ties are never split, so this may be below the target).
    pub referred: usize,
    pub refer_fraction_requested: f64,
    /// With `choose_score`: every candidate judged as a bad-patch detector on this split.
    pub candidates: Vec<ScoreEvaluation>,
}

/// What to calibrate on.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    pub split: String,
    pub refer_fraction: f64,
    pub samples: u32,
    pub seed: u64,
    /// Also choose the review score: the engine score that catches the most bad patches of
    /// this split at `eval.refer_budget` (validation data only; never the test split).
    pub choose_score: bool,
    /// Bad-patch definition and budget used when choosing.
    pub eval: EvalConfig,
    /// Take the patches' scores from this `evaluate` report (its folder or `report.json`)
    /// instead of an MC pass of its own: the report must be of the same model
    /// (`scoring_fingerprint`), split, samples, seed and evaluation settings, so the choice
    /// is the one the pass would make.
    pub from_report: Option<PathBuf>,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            split: "val".into(),
            refer_fraction: 0.1,
            samples: 20,
            seed: 0,
            choose_score: false,
            eval: EvalConfig::default(),
            from_report: None,
        }
    }
}

/// Scores the split and picks the threshold (and, if asked, the score); `on_patch` is called
/// after each patch.
pub fn calibrate(
    model_path: &Path,
    dataset: &Path,
    opts: &CalibrateOptions,
    mut on_patch: impl FnMut(),
) -> Result<Calibration> {
    let f = opts.refer_fraction;
    ensure!(
        (0.0..=1.0).contains(&f),
        "refer fraction {f} must be in [0, 1]"
    );
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(dataset)?;
    let (score, scores, candidates) = if let Some(dir) = &opts.from_report {
        let metrics = report_metrics(model_path, &model, &ds, dir, opts)?;
        match opts.choose_score {
            true => choose_from(metrics)?,
            false => {
                let values = score_values(&metrics, model.review().score.name());
                (model.review().score, values, Vec::new())
            }
        }
    } else if opts.choose_score {
        choose_score(&model, &ds, opts, &mut on_patch)?
    } else {
        let s = score_split(&model, &ds, &opts.split, opts.samples, opts.seed, on_patch)?;
        (model.review().score, s, Vec::new())
    };
    let threshold =
        threshold_for_refer_fraction(&scores, f)?.context("no scores to calibrate on")?;
    Ok(Calibration {
        score: score.name().to_string(),
        threshold,
        patches: scores.len(),
        referred: scores.iter().filter(|&&s| s > threshold).count(),
        refer_fraction_requested: f,
        candidates,
    })
}

/// One pass of the split through [`score_patches`]; the engine score with the best catch
/// rate ([`best_score`]; the deterministic baselines are reported, never chosen), its
/// values per patch, and every candidate's record.
fn choose_score(
    model: &Model,
    ds: &PatchDataset,
    opts: &CalibrateOptions,
    on_patch: &mut impl FnMut(),
) -> Result<(ReviewScore, Vec<f32>, Vec<ScoreEvaluation>)> {
    let idx = split_for_model(model, ds, &opts.split)?;
    let eval = opts.eval.for_model(model);
    let run = ScoreRun {
        samples: opts.samples,
        seed: opts.seed,
        eval: &eval,
        second_look: None,
    };
    let scored = score_patches(model, ds, &idx, run, |_, _| on_patch())?;
    choose_from(scored.metrics)
}

/// The choice of [`choose_score`] from a scoring pass's metrics.
fn choose_from(metrics: EvalMetrics) -> Result<(ReviewScore, Vec<f32>, Vec<ScoreEvaluation>)> {
    let selectable: Vec<ScoreEvaluation> = metrics
        .review_scores
        .iter()
        .filter(|e| ReviewScore::from_name(&e.name).is_some())
        .cloned()
        .collect();
    let best = best_score(&selectable).context("no candidate review score")?;
    let score = ReviewScore::from_name(&best.name).expect("filtered to engine scores");
    let values = score_values(&metrics, &best.name);
    Ok((score, values, metrics.review_scores))
}

/// The score `name` of every patch of a scoring pass, in patch order.
fn score_values(metrics: &EvalMetrics, name: &str) -> Vec<f32> {
    metrics.patches.iter().map(|p| p.scores[name]).collect()
}

/// The metrics of the `evaluate` report in `dir`, refused unless it scored this model file on
/// the patches of `ds`'s split with the samples, seed and evaluation settings of `opts`.
fn report_metrics(
    model_path: &Path,
    model: &Model,
    ds: &PatchDataset,
    dir: &Path,
    opts: &CalibrateOptions,
) -> Result<EvalMetrics> {
    let r = crate::report::compare::read_report(dir)?;
    let fingerprint = ModelFile::read(model_path)?.scoring_fingerprint()?;
    let run = &r.evaluation;
    let what = dir.display();
    ensure!(
        run.scored_model.as_deref() == Some(fingerprint.as_str()),
        "{what} scored another model (or one without a fingerprint): its weights or mask \
         settings differ from {}",
        model_path.display()
    );
    ensure!(
        (run.split.as_str(), r.mc_samples, run.seed)
            == (opts.split.as_str(), opts.samples, opts.seed),
        "{what} scored split {:?} with {} samples and seed {}, not {:?}, {} and {}",
        run.split,
        r.mc_samples,
        run.seed,
        opts.split,
        opts.samples,
        opts.seed
    );
    ensure!(
        r.metrics.config == opts.eval.for_model(model),
        "{what} used other evaluation settings (bad-patch definition, budget)"
    );
    let ids = split_for_model(model, ds, &opts.split)?
        .into_iter()
        .map(|i| ds.records[i].id.as_str());
    ensure!(
        r.metrics.patches.iter().map(|p| p.id.as_str()).eq(ids),
        "{what} scored other patches than the {} split of {}",
        opts.split,
        ds.root().display()
    );
    Ok(r.metrics)
}

/// The review threshold above which `refer_fraction` of the `split` patches of `dataset` are
/// referred, under `model_path`'s review score, with `samples` MC samples. For export and the demo.
pub fn calibrate_review_threshold(
    model_path: impl AsRef<Path>,
    dataset: impl AsRef<Path>,
    split: &str,
    refer_fraction: f64,
    samples: u32,
    seed: u64,
) -> Result<f32> {
    let opts = CalibrateOptions {
        split: split.into(),
        refer_fraction,
        samples,
        seed,
        ..CalibrateOptions::default()
    };
    Ok(calibrate(model_path.as_ref(), dataset.as_ref(), &opts, || {})?.threshold)
}

/// Rewrites the `review` metadata of a model file with `score` and `threshold` (see
/// [`set_review_threshold`] for what is kept and how the file is replaced).
pub fn set_review(model_path: impl AsRef<Path>, score: ReviewScore, threshold: f32) -> Result<()> {
    rewrite_review(model_path.as_ref(), Some(score), threshold)
}

/// Rewrites the `review` metadata of a model file in place with `threshold`, keeping the score
/// name, every other review key, all other metadata and every tensor byte for byte. Writes a
/// temporary file next to it, checks that lungseg loads it, then renames it over the original.
pub fn set_review_threshold(model_path: impl AsRef<Path>, threshold: f32) -> Result<()> {
    rewrite_review(model_path.as_ref(), None, threshold)
}

fn rewrite_review(path: &Path, score: Option<ReviewScore>, threshold: f32) -> Result<()> {
    ensure!(
        threshold.is_finite(),
        "review threshold {threshold} is not finite"
    );
    let mut file = ModelFile::read(path)?;
    let mut review = file
        .json_object("review")
        .with_context(|| path.display().to_string())?;
    match score {
        Some(s) => {
            review.insert("score".into(), s.name().into());
        }
        None => {
            review
                .entry("score")
                .or_insert_with(|| lungseg::model::ReviewConfig::default().score.name().into());
        }
    }
    review.insert("threshold".into(), serde_json::json!(threshold));
    file.set_json_object("review", review);
    let (out, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    ensure!(
        model.review().threshold == threshold && score.is_none_or(|s| model.review().score == s),
        "rewritten model reads review {:?} instead of {score:?} / {threshold}",
        model.review()
    );
    replace_file(path, &out)
}
