//! The one-command demo: synthetic LUNA16-like CT → `prepare` → `train` (a small config) →
//! `export` → review-threshold calibration on the validation split → `evaluate` through
//! lungseg-sys on held-out scans generated with another seed. Everything lands in one folder.

use crate::calibrate::{calibrate, set_review, CalibrateOptions};
use crate::evaluate::{evaluate, EvaluateOptions};
use crate::export::{export, ExportDtype, ExportOptions, Review};
use crate::metrics::Interval;
use crate::model::{DropoutKind, DropoutSpec, UNetConfig};
use crate::prepare::{prepare, PrepareConfig, SplitRule};
use crate::report::Report;
use crate::synth::{self, SynthConfig};
use crate::train::augment::AugmentConfig;
use crate::train::{train, TrainOptions};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The demo's knobs; `Default` fits the 10-minute budget on a 2-core machine.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub out: PathBuf,
    /// Scans for training and validation (split by scan, 80/20).
    pub scans: usize,
    /// Held-out test scans, generated with `seed + 1`.
    pub test_scans: usize,
    pub seed: u64,
    /// Cubic patch edge in voxels at 1 mm.
    pub patch: usize,
    pub channels: Vec<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (Adam, cosine to `lr / 30`).
    pub lr: f64,
    /// Channel-dropout p: 0.1 learns faster than the library default 0.2 within the demo's
    /// budget while still giving MC dropout something to sample.
    pub dropout: f64,
    /// Augment the training patches (default augmentation of `train`).
    pub augment: bool,
    pub positives_per_nodule: usize,
    pub mc_samples: u32,
    pub refer_fraction: f64,
    pub synth: SynthConfig,
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            out: PathBuf::from("runs/demo"),
            scans: 24,
            test_scans: 16,
            seed: 7,
            patch: 32,
            channels: vec![8, 16, 32, 64],
            epochs: 16,
            batch_size: 8,
            lr: 3e-3,
            dropout: 0.1,
            augment: false,
            positives_per_nodule: 4,
            mc_samples: 20,
            refer_fraction: 0.1,
            synth: SynthConfig::default(),
            progress: true,
        }
    }
}

/// Where the demo put things.
#[derive(Debug)]
pub struct DemoOutput {
    pub model: PathBuf,
    pub report_md: PathBuf,
    pub report_json: PathBuf,
    /// The review score chosen on the validation split, and its threshold.
    pub review_score: String,
    pub review_threshold: f32,
    pub best_val_dice: f64,
    pub seconds: f64,
}

fn step(name: &str, t0: Instant) {
    eprintln!("[{:>5.0}s] {name}", t0.elapsed().as_secs_f64());
}

/// Runs the whole pipeline; `out` is wiped of earlier demo outputs first.
pub fn run(o: &DemoOptions) -> Result<DemoOutput> {
    let t0 = Instant::now();
    let dirs = Folders::under(&o.out);
    dirs.clear()?;
    step(
        &format!(
            "synthesising {} + {} LUNA16-like scans",
            o.scans, o.test_scans
        ),
        t0,
    );
    synth::write_dataset(&dirs.luna, &o.synth, o.scans, o.seed, None, |_| {})?;
    synth::write_dataset(
        &dirs.luna_test,
        &o.synth,
        o.test_scans,
        o.seed + 1,
        None,
        |_| {},
    )?;

    step(
        "preparing patches (HU at 1 mm, painted lesion labels, split by scan)",
        t0,
    );
    prepare_patches(o, &dirs)?;

    step(
        &format!(
            "training a {:?} U-Net for {} epochs (Burn, CPU)",
            o.channels, o.epochs
        ),
        t0,
    );
    let summary = train(&train_options(o, &dirs))?;

    step("exporting the best checkpoint to safetensors", t0);
    export(&ExportOptions {
        run: dirs.run.clone(),
        checkpoint: None,
        out: dirs.model.clone(),
        dtype: ExportDtype::F32,
        review: Review::default(),
        test_time_flips: 1,
        max_scan_spacing_mm: o.synth.max_spacing_mm(),
    })?;

    step(
        &format!(
            "calibrating the review threshold (refer {:.0}% of validation patches)",
            o.refer_fraction * 100.0
        ),
        t0,
    );
    let (review_score, review_threshold) = calibrate_review(o, &dirs)?;

    step(
        &format!(
            "evaluating on held-out scans through lungseg-sys (MC-{})",
            o.mc_samples
        ),
        t0,
    );
    let ev = evaluate(
        &dirs.model,
        &dirs.patches_test,
        &EvaluateOptions {
            split: "test".into(),
            samples: o.mc_samples,
            seed: o.seed,
            out: dirs.report.clone(),
            training_metrics: Some(dirs.run.join("metrics.csv")),
            ..EvaluateOptions::default()
        },
        |_, _| {},
    )?;
    step("done", t0);
    Ok(DemoOutput {
        model: dirs.model,
        report_md: ev.report_md,
        report_json: ev.report_json,
        review_score,
        review_threshold,
        best_val_dice: summary.best_val_dice,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The demo's folders and files under `--out`.
struct Folders {
    luna: PathBuf,
    luna_test: PathBuf,
    patches: PathBuf,
    patches_test: PathBuf,
    run: PathBuf,
    report: PathBuf,
    model: PathBuf,
}

impl Folders {
    fn under(out: &Path) -> Self {
        Folders {
            luna: out.join("luna"),
            luna_test: out.join("luna-test"),
            patches: out.join("patches"),
            patches_test: out.join("patches-test"),
            run: out.join("run"),
            report: out.join("report"),
            model: out.join("model.safetensors"),
        }
    }

    /// Removes what an earlier demo left in the folders (the model file is overwritten).
    fn clear(&self) -> Result<()> {
        for p in [
            &self.luna,
            &self.luna_test,
            &self.patches,
            &self.patches_test,
            &self.run,
            &self.report,
        ] {
            if p.exists() {
                std::fs::remove_dir_all(p)
                    .with_context(|| format!("cannot clear {}", p.display()))?;
            }
        }
        Ok(())
    }
}

/// Training/validation patches from the training scans, test patches (one positive per
/// nodule) from the test scans.
fn prepare_patches(o: &DemoOptions, dirs: &Folders) -> Result<()> {
    let mut pc = PrepareConfig {
        patch_size: [o.patch; 3],
        spacing_mm: [1.0; 3],
        jitter_mm: (o.patch as f64 / 8.0).max(1.0),
        positives_per_nodule: o.positives_per_nodule,
        neg_ratio: 1.0,
        split: SplitRule::Fractions([0.8, 0.2, 0.0]),
        seed: o.seed,
        label_masks: Some(dirs.luna.join("seg-nodules")),
        ..PrepareConfig::default()
    };
    let s = prepare(&dirs.luna, &dirs.patches, &pc, |_| {})?;
    eprintln!(
        "         train/val: {} positives, {} negatives",
        s.positives(),
        s.negatives()
    );
    pc.split = SplitRule::Fractions([0.0, 0.0, 1.0]);
    pc.positives_per_nodule = 1;
    pc.label_masks = Some(dirs.luna_test.join("seg-nodules"));
    let s = prepare(&dirs.luna_test, &dirs.patches_test, &pc, |_| {})?;
    eprintln!(
        "         test: {} positives, {} negatives",
        s.positives(),
        s.negatives()
    );
    Ok(())
}

fn train_options(o: &DemoOptions, dirs: &Folders) -> TrainOptions {
    TrainOptions {
        data: dirs.patches.clone(),
        out: dirs.run.clone(),
        config: UNetConfig {
            channels: o.channels.clone(),
            dropout: DropoutSpec {
                p: o.dropout,
                levels: None,
                kind: DropoutKind::Channel,
            },
            ..UNetConfig::default()
        },
        // Off by default: measured on the demo data (12 epochs), augmentation only slows a
        // run this short (validation Dice 0.53 vs 0.61 at epoch 9).
        augment: o.augment.then(AugmentConfig::default),
        epochs: o.epochs,
        batch_size: o.batch_size,
        lr: o.lr,
        min_lr: o.lr / 30.0,
        patience: 0,
        checkpoint_every: o.epochs,
        seed: o.seed,
        progress: o.progress,
        ..TrainOptions::default()
    }
}

/// Chooses the review score and its threshold on the validation split only, and writes them
/// into the model file.
fn calibrate_review(o: &DemoOptions, dirs: &Folders) -> Result<(String, f32)> {
    let cal = calibrate(
        &dirs.model,
        &dirs.patches,
        &CalibrateOptions {
            split: "val".into(),
            refer_fraction: o.refer_fraction,
            samples: o.mc_samples,
            seed: o.seed,
            choose_score: true,
            ..CalibrateOptions::default()
        },
        || {},
    )?;
    let score = lungseg::model::ReviewScore::from_name(&cal.score)
        .with_context(|| format!("calibration chose an unknown score {}", cal.score))?;
    set_review(&dirs.model, score, cal.threshold)?;
    Ok((cal.score, cal.threshold))
}

/// The headline numbers of a `report.json` for the terminal.
pub fn headline(report_json: &Path) -> Result<String> {
    let text = std::fs::read_to_string(report_json)
        .with_context(|| format!("cannot read {}", report_json.display()))?;
    let r: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a lungseg report", report_json.display()))?;
    let h = &r.metrics.headline;
    let ci = |v: Option<Interval>, scale: f64| {
        v.map_or("n/a".to_string(), |i| {
            format!(
                "{:.3} [{:.3}, {:.3}]",
                i.estimate * scale,
                i.lo * scale,
                i.hi * scale
            )
        })
    };
    Ok(format!(
        "mean Dice, {} nodule patches: {} (95 % CI by scan)\n\
         false-positive volume on {} negatives: {} mm³\n\
         ECE (ROI): {}\n\
         review flag: {} of {} bad patches caught, {} of patches referred",
        h.n_nodule_patches,
        ci(h.dice_nodules, 1.0),
        h.n_negative_patches,
        ci(h.fp_volume_negatives_mm3, 1.0),
        ci(h.ece_roi, 1.0),
        ci(h.flag_catch_rate, 1.0),
        h.n_bad,
        ci(h.flag_referred_fraction, 1.0),
    ))
}
