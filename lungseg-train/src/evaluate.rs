//! `evaluate`: MC dropout through the shipped engine (`lungseg::mc`, not the training framework)
//! on every patch of a split, streamed into [`EvalAccumulator`]; then `report.json`,
//! `report.md`, PNG figures, and a few patches as `.mhd` volumes for 3D Slicer.
//!
//! Only per-patch summaries are kept during the pass. The few patches shown in panels and
//! written for Slicer (largest nodules, most uncertain patches) are re-run afterwards: the
//! dropout seed is a function of (seed, patch id), so the re-run reproduces the same maps.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lungseg::geometry::{Geometry, IDENTITY};
use lungseg::mc::{self, McOptions, PatchSummary, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::volume::{PixelData, Volume};
use serde::Serialize;

use crate::calibrate::{patch_seed, split_for_model};
use crate::dataset::{Patch, PatchDataset, PatchRecord};
use crate::metrics::{EvalAccumulator, EvalConfig, PatchInput};
use crate::report::{self, figures, FigureRef, Report};

/// The quality bar's Dice is stated for nodules at least this large.
pub const MIN_DIAMETER_MM: f64 = 5.0;

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
        }
    }
}

/// Dice and IoU over nodule patches whose annotated diameter is ≥ `min_diameter_mm`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizedDice {
    pub min_diameter_mm: f64,
    pub n: usize,
    pub mean_dice: Option<f64>,
    pub mean_iou: Option<f64>,
}

/// What `evaluate` wrote.
#[derive(Clone, Debug)]
pub struct EvaluateOutput {
    pub report: Report,
    pub dice_large_nodules: SizedDice,
    pub report_json: PathBuf,
    pub report_md: PathBuf,
    /// `.mhd` files written for 3D Slicer.
    pub volumes: Vec<PathBuf>,
    pub seconds: f64,
}

struct Maps {
    mean: Vec<f32>,
    variance: Vec<f32>,
    entropy: Vec<f32>,
    mutual_info: Vec<f32>,
}

fn run_patch(
    model: &Model,
    rec: &PatchRecord,
    patch: &Patch,
    samples: u32,
    seed: u64,
) -> Result<(PatchSummary, Maps)> {
    let n = patch.hu.len();
    let mut m = Maps {
        mean: vec![0.0; n],
        variance: vec![0.0; n],
        entropy: vec![0.0; n],
        mutual_info: vec![0.0; n],
    };
    let opts = McOptions {
        n_samples: samples,
        seed: patch_seed(seed, &rec.id),
        threads: 0,
        review_threshold: None,
        review_score: None,
    };
    let s = mc::predict_uncertainty(
        model,
        &patch.hu,
        &opts,
        UncertaintyMaps {
            mean: Some(&mut m.mean),
            variance: Some(&mut m.variance),
            entropy: Some(&mut m.entropy),
            mutual_info: Some(&mut m.mutual_info),
        },
    )
    .with_context(|| format!("patch {}", rec.id))?;
    Ok((s, m))
}

/// Runs the evaluation; `on_patch(done, total)` after each patch of the main pass.
pub fn evaluate(
    model_path: &Path,
    dataset: &Path,
    opts: &EvaluateOptions,
    mut on_patch: impl FnMut(usize, usize),
) -> Result<EvaluateOutput> {
    let t0 = Instant::now();
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(dataset)?;
    let idx = split_for_model(&model, &ds, &opts.split)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut notes = Vec::new();
    let cfg_spacing = model.config().spacing_mm;
    if let Some(r) = idx.iter().map(|&i| &ds.records[i]).find(|r| {
        r.spacing_mm
            .is_some_and(|s| s.iter().zip(cfg_spacing).any(|(a, b)| (a - b).abs() > 1e-6))
    }) {
        notes.push(format!(
            "warning: patch {} has spacing {:?} mm, the model expects {:?} mm",
            r.id, r.spacing_mm, cfg_spacing
        ));
    }

    let mut acc = EvalAccumulator::new(opts.eval.clone()).map_err(anyhow::Error::msg)?;
    let mut scores = Vec::with_capacity(idx.len());
    for (done, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (s, m) = run_patch(&model, rec, &patch, opts.samples, opts.seed)?;
        acc.add_patch(&PatchInput {
            id: &rec.id,
            dims: rec.shape,
            gt: &patch.mask,
            prob: &m.mean,
            entropy: &m.entropy,
            mutual_info: &m.mutual_info,
            variance: &m.variance,
            score: s.uncertainty_score,
            needs_review: s.needs_review,
        })
        .map_err(anyhow::Error::msg)?;
        scores.push(s.uncertainty_score);
        on_patch(done + 1, idx.len());
    }
    let metrics = acc.finish().map_err(anyhow::Error::msg)?;
    let pass_seconds = t0.elapsed().as_secs_f64();

    let dice_large = sized_dice(&ds, &idx, &metrics.patches, MIN_DIAMETER_MM);
    let mut figs = Vec::new();
    let mut fig =
        |r: std::result::Result<(), figures::FigureError>, title: &str, file: &str| match r {
            Ok(()) => figs.push(FigureRef {
                title: title.into(),
                path: file.into(),
            }),
            Err(e) => notes.push(format!("figure {file} not written: {e}")),
        };
    let out = &opts.out;
    fig(
        figures::reliability_diagram(
            &out.join("reliability.png"),
            &metrics.calibration_roi,
            "Reliability (ROI)",
        ),
        "Reliability diagram (region of interest)",
        "reliability.png",
    );
    if let Some(rc) = &metrics.referral {
        fig(
            figures::referral_curve(&out.join("referral.png"), rc),
            "Referral curve",
            "referral.png",
        );
    }
    fig(
        figures::uncertainty_histograms(
            &out.join("uncertainty_histograms.png"),
            &metrics.histograms_roi,
            "Uncertainty on correct vs incorrect voxels (ROI)",
        ),
        "Uncertainty histograms",
        "uncertainty_histograms.png",
    );
    let csv = opts.training_metrics.clone().or_else(|| {
        let p = model_path.with_file_name("metrics.csv");
        p.is_file().then_some(p)
    });
    if let Some(csv) = csv {
        fig(
            figures::training_curves_from_csv(&csv, &out.join("training_curves.png")),
            "Training curves",
            "training_curves.png",
        );
    }

    // Shown patches: the largest nodules, then the most uncertain ones.
    let mut shown: Vec<(usize, &str)> = Vec::new();
    let mut by_size: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| ds.records[i].label == 1)
        .collect();
    by_size.sort_by(|&a, &b| {
        let d = |i: usize| ds.records[i].diameter_mm.unwrap_or(0.0);
        d(b).total_cmp(&d(a)).then(a.cmp(&b))
    });
    shown.extend(
        by_size
            .into_iter()
            .take(opts.samples_shown)
            .map(|i| (i, "largest nodule")),
    );
    let mut by_score: Vec<usize> = (0..idx.len()).collect();
    by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for k in by_score.into_iter().take(opts.samples_shown) {
        if !shown.iter().any(|s| s.0 == idx[k]) {
            shown.push((idx[k], "most uncertain"));
        }
    }
    let slicer = out.join("slicer");
    let mut volumes = Vec::new();
    for (i, why) in shown {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (s, m) = run_patch(&model, rec, &patch, opts.samples, opts.seed)?;
        let title = format!(
            "{} ({why}{}, score {:.3}{})",
            rec.id,
            rec.diameter_mm
                .map_or(String::new(), |d| format!(", {d:.1} mm")),
            s.uncertainty_score,
            if s.needs_review { ", needs review" } else { "" }
        );
        let file = format!("panel_{}.png", rec.id);
        fig(
            figures::sample_panel(
                &out.join(&file),
                &figures::PanelInput {
                    title: &title,
                    dims: rec.shape,
                    ct: &patch.hu,
                    gt: &patch.mask,
                    prob: &m.mean,
                    uncertainty: &m.entropy,
                    unc_max: 1.0,
                    high_unc: 0.5,
                    fg_threshold: opts.eval.fg_threshold,
                    ct_window: (-1000.0, 400.0),
                    centre: None,
                },
            ),
            &title,
            &file,
        );
        volumes.extend(write_slicer_volumes(&slicer, rec, &patch, &m)?);
    }

    let n = metrics.n_patches;
    let review = model.review();
    notes.push(format!(
        "Dice on nodule patches with diameter >= {MIN_DIAMETER_MM} mm: {} (IoU {}, {} patches)",
        fmt_opt(dice_large.mean_dice),
        fmt_opt(dice_large.mean_iou),
        dice_large.n
    ));
    notes.push(format!(
        "MC dropout through lungseg {} ({} samples, seed {}), {n} patches in {pass_seconds:.1} s",
        lungseg::VERSION,
        opts.samples,
        opts.seed
    ));
    if !volumes.is_empty() {
        notes.push(format!(
            "{} patches written as .mhd (HU, ground truth, mean probability, entropy, mutual information) in slicer/",
            volumes.len() / 5
        ));
    }
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
        metrics,
        dice_nodules_ge_5mm: dice_large.mean_dice,
        figures: figs,
        notes,
    };
    let report_json = out.join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&report::to_json_string(&report)?)?;
    json["dice_nodules_ge_5mm"] = serde_json::to_value(&dice_large)?;
    json["evaluation"] = serde_json::json!({
        "split": opts.split,
        "seed": opts.seed,
        "patches": n,
        "seconds": pass_seconds,
        "patches_per_second": n as f64 / pass_seconds.max(1e-9),
        "slicer_volumes": volumes.iter().map(|p| p.strip_prefix(out).unwrap_or(p).display().to_string()).collect::<Vec<_>>(),
    });
    std::fs::write(&report_json, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", report_json.display()))?;
    let report_md = out.join("report.md");
    let mut md = report::render_markdown(&report);
    let _ = writeln!(
        md,
        "\n## Dice on nodules ≥ {MIN_DIAMETER_MM} mm\n\n| patches | mean Dice | mean IoU |\n|---|---|---|\n| {} | {} | {} |",
        dice_large.n,
        fmt_opt(dice_large.mean_dice),
        fmt_opt(dice_large.mean_iou)
    );
    std::fs::write(&report_md, md)
        .with_context(|| format!("cannot write {}", report_md.display()))?;
    Ok(EvaluateOutput {
        report,
        dice_large_nodules: dice_large,
        report_json,
        report_md,
        volumes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

/// Mean Dice/IoU over the positive patches with `diameter_mm >= min`.
fn sized_dice(
    ds: &PatchDataset,
    idx: &[usize],
    patches: &[crate::metrics::PatchRecord],
    min: f64,
) -> SizedDice {
    let sel: Vec<_> = idx
        .iter()
        .zip(patches)
        .filter(|(&i, _)| {
            let r = &ds.records[i];
            r.label == 1 && r.diameter_mm.is_some_and(|d| d >= min)
        })
        .map(|(_, p)| p.overlap)
        .collect();
    let mean = |f: fn(&crate::metrics::OverlapScores) -> f64| {
        (!sel.is_empty()).then(|| sel.iter().map(f).sum::<f64>() / sel.len() as f64)
    };
    SizedDice {
        min_diameter_mm: min,
        n: sel.len(),
        mean_dice: mean(|o| o.dice),
        mean_iou: mean(|o| o.iou),
    }
}

/// Writes `<id>_{hu,gt,prob,entropy,mi}.mhd` with the patch's world geometry (identity
/// direction, origin = centre − size/2 · spacing, the `lungseg::patch` grid convention), so
/// they overlay the original scan in 3D Slicer.
fn write_slicer_volumes(
    dir: &Path,
    rec: &PatchRecord,
    patch: &Patch,
    m: &Maps,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let [d, h, w] = rec.shape;
    let spacing = rec.spacing_mm.unwrap_or([1.0; 3]);
    let dims = [w, h, d];
    let c = rec.center_world.unwrap_or([0.0; 3]);
    let origin: [f64; 3] = std::array::from_fn(|a| c[a] - (dims[a] / 2) as f64 * spacing[a]);
    let geometry = Geometry::new(dims, spacing, origin, IDENTITY)?;
    let items: [(&str, PixelData); 5] = [
        ("hu", PixelData::F32(patch.hu.clone())),
        ("gt", PixelData::U8(patch.mask.clone())),
        ("prob", PixelData::F32(m.mean.clone())),
        ("entropy", PixelData::F32(m.entropy.clone())),
        ("mi", PixelData::F32(m.mutual_info.clone())),
    ];
    let mut out = Vec::new();
    for (name, data) in items {
        let path = dir.join(format!("{}_{name}.mhd", rec.id));
        let vol = Volume::new(geometry, data)?;
        lungseg::mhd::write(&path, &vol, &Default::default())?;
        out.push(path);
    }
    Ok(out)
}
