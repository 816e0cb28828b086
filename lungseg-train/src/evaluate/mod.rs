//! `evaluate`: MC dropout through the shipped engine (`lungseg::mc`, not the training framework)
//! on every patch of a split, then `report.json`, `report.md`, PNG figures, and a few patches
//! as `.mhd` volumes for 3D Slicer.
//!
//! Three stages: [`score`] (the engine over the split, streamed into the metrics; only
//! per-patch summaries are kept), [`shown`] (figures; the few patches shown are re-run, the
//! dropout seed being a function of (seed, patch id)), and writing the typed [`Report`] once.

pub mod score;
pub mod second_look;
pub mod shown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lungseg::mc::point::MaskSource;
use lungseg::model::Model;

use crate::dataset::PatchDataset;
use crate::metrics::EvalConfig;
use crate::report::{self, EvaluationRun, Report};

/// What to evaluate and where to write it.
#[derive(Clone, Debug)]
pub struct EvaluateOptions {
    pub split: String,
    /// MC-dropout samples per patch.
    pub samples: u32,
    pub seed: u64,
    pub out: PathBuf,
    /// `metrics.csv` of the training run; default: `metrics.csv` next to the model, if any.
    pub training_metrics: Option<PathBuf>,
    /// Patches shown (panels + `.mhd`) per selection: the N largest nodules, the N most uncertain.
    pub samples_shown: usize,
    pub eval: EvalConfig,
    /// A `prepare` output of the same scans at half the model's spacing: the final masks
    /// then include the model's second look (`config.second_look`) where it applies.
    pub second_look_patches: Option<PathBuf>,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            split: "test".into(),
            samples: 20,
            seed: 0,
            out: PathBuf::from("report"),
            training_metrics: None,
            samples_shown: 3,
            eval: EvalConfig::default(),
            second_look_patches: None,
        }
    }
}

/// What `evaluate` wrote.
#[derive(Clone, Debug)]
pub struct EvaluateOutput {
    pub report: Report,
    pub report_json: PathBuf,
    pub report_md: PathBuf,
    /// `.mhd` files written for 3D Slicer.
    pub volumes: Vec<PathBuf>,
    pub seconds: f64,
}

/// Runs the evaluation; `on_patch(done, total)` after each patch of the scoring pass.
pub fn evaluate(
    model_path: &Path,
    dataset: &Path,
    opts: &EvaluateOptions,
    on_patch: impl FnMut(usize, usize),
) -> Result<EvaluateOutput> {
    let t0 = Instant::now();
    let model = Model::open(model_path)?;
    let scored_model = crate::model_file::ModelFile::read(model_path)?.scoring_fingerprint()?;
    let ds = PatchDataset::open(dataset)?;
    let idx = score::split_for_model(&model, &ds, &opts.split)?;
    let eval = opts.eval.for_model(&model);
    let out = &opts.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut notes: Vec<String> = spacing_warning(&model, &ds, &idx).into_iter().collect();
    notes.extend(intended_use_note(&model, &ds, &idx));

    let second_look = opts
        .second_look_patches
        .as_deref()
        .map(|d| score::SecondLookPatches::open(d, model.config().spacing_mm))
        .transpose()?;
    let run = score::ScoreRun {
        samples: opts.samples,
        seed: opts.seed,
        eval: &eval,
        second_look: second_look.as_ref(),
    };
    let scored = score::score_patches(&model, &ds, &idx, run, on_patch)?;
    notes.extend(mask_source_note(&scored.mask_sources));
    let pass_seconds = t0.elapsed().as_secs_f64();

    let csv = opts.training_metrics.clone().or_else(|| {
        let p = model_path.with_file_name("metrics.csv");
        p.is_file().then_some(p)
    });
    let mut figs = shown::metric_figures(out, &scored.metrics, csv.as_deref());
    let chosen = shown::choose_shown(&ds, &idx, &scored.scores, opts.samples_shown);
    let run = shown::ShowRun {
        ds: &ds,
        out,
        samples: opts.samples,
        seed: opts.seed,
        eval: &eval,
        second_look: second_look.as_ref(),
    };
    let volumes = shown::show_patches(&model, &run, &chosen, &mut figs)?;
    notes.extend(figs.notes);
    notes.push(format!(
        "MC dropout through lungseg {} ({} samples, seed {}), {} patches in {pass_seconds:.1} s",
        lungseg::VERSION,
        opts.samples,
        opts.seed,
        idx.len()
    ));

    let review = model.review();
    let report = Report {
        title: "lungseg evaluation".into(),
        model: format!(
            "{} (provenance {})",
            model_path.display(),
            model.provenance()
        ),
        dataset: format!("{} split of {}", opts.split, ds.root().display()),
        mc_samples: opts.samples,
        review_score: review.score.name().into(),
        review_threshold: review.threshold,
        metrics: scored.metrics,
        evaluation: EvaluationRun {
            split: opts.split.clone(),
            seed: opts.seed,
            patches: idx.len(),
            seconds: pass_seconds,
            patches_per_second: idx.len() as f64 / pass_seconds.max(1e-9),
            slicer_volumes: volumes
                .iter()
                .map(|p| p.strip_prefix(out).unwrap_or(p).display().to_string())
                .collect(),
            scored_model: Some(scored_model),
        },
        figures: figs.list,
        notes,
    };
    let (report_json, report_md) = (out.join("report.json"), out.join("report.md"));
    report::write_json(&report, &report_json)
        .with_context(|| format!("cannot write {}", report_json.display()))?;
    report::write_markdown(&report, &report_md)
        .with_context(|| format!("cannot write {}", report_md.display()))?;
    Ok(EvaluateOutput {
        report,
        report_json,
        report_md,
        volumes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// How the scored masks were made, when any came from a second look's decision.
fn mask_source_note(sources: &BTreeMap<MaskSource, usize>) -> Option<String> {
    if sources.keys().all(|&s| s == MaskSource::ModelMask) {
        return None;
    }
    let parts: Vec<String> = sources
        .iter()
        .map(|(s, n)| format!("{n} {}", s.name()))
        .collect();
    Some(format!("final masks: {}", parts.join(", ")))
}

/// How many patches come from scans outside the model's intended use (flagged whatever their
/// score, `score::run_patch`), when any do.
fn intended_use_note(model: &Model, ds: &PatchDataset, idx: &[usize]) -> Option<String> {
    let intended = lungseg::intended_use::IntendedUse::of(model.config());
    let outside = idx
        .iter()
        .filter(|&&i| {
            ds.records[i]
                .scan_spacing_mm
                .is_some_and(|s| !intended.admits(s))
        })
        .count();
    (outside > 0).then(|| {
        format!(
            "{outside} of {} patches come from scans coarser than the {} mm the model is meant \
             for (config.max_scan_spacing_mm): flagged for review whatever their score",
            idx.len(),
            intended.max_spacing_mm
        )
    })
}

/// A warning when a patch was resampled to another spacing than the model's.
fn spacing_warning(model: &Model, ds: &PatchDataset, idx: &[usize]) -> Option<String> {
    let cfg_spacing = model.config().spacing_mm;
    let r = idx.iter().map(|&i| &ds.records[i]).find(|r| {
        r.spacing_mm
            .is_some_and(|s| s.iter().zip(cfg_spacing).any(|(a, b)| (a - b).abs() > 1e-6))
    })?;
    Some(format!(
        "warning: patch {} has spacing {:?} mm, the model expects {:?} mm",
        r.id, r.spacing_mm, cfg_spacing
    ))
}
