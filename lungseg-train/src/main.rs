//! `lungseg-train`: the command line of the training harness (synth, prepare, mine-negatives,
//! train, export, calibrate, evaluate, compare-reports, pool-reports, predict, demo).

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lungseg_train::{calibrate, demo, evaluate, prepare, synth};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "Training harness for lungseg")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the U-Net (Burn) on a prepared patch dataset.
    Train(lungseg_train::train::args::TrainArgs),
    /// Export a checkpoint to the safetensors model format lungseg loads.
    Export(lungseg_train::export::ExportArgs),
    /// Write a synthetic LUNA16-like dataset (subsetN/*.mhd+.raw, annotations.csv, candidates.csv,
    /// seg-nodules/*.mhd labels, synth_truth.csv).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 10)]
        scans: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scans per subsetN folder (default: all in subset0).
        #[arg(long)]
        subset_size: Option<usize>,
        #[command(flatten)]
        shape: Shape,
    },
    /// Draw the figures of docs/synth.md (synth-slices.png, synth-nodules.png) from generated
    /// scans.
    SynthFigures {
        #[arg(long, default_value = "docs/figures")]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// LUNA16 folder (subset*/*.mhd, annotations.csv, candidates[_V2].csv,
    /// annotations_excluded.csv) -> patch dataset; --lidc-xml for outline labels.
    Prepare(PrepareArgs),
    /// Calibrate a model's review threshold on a split (MC dropout through lungseg).
    Calibrate(CalibrateArgs),
    /// Fit temperature (or Platt) scaling of the MC samples on a split's ROI voxels and fold it
    /// into the model's head (run before `calibrate`: the review scores change with it).
    CalibrateProbability(CalibrateProbabilityArgs),
    /// Choose the model's mask threshold on a (validation) split: the candidate with the best
    /// mean Dice over nodule patches that adds no bad negative patch (run before `calibrate`:
    /// the structure-wise review scores depend on it).
    CalibrateMaskThreshold(CalibrateMaskThresholdArgs),
    /// Evaluate a model on a split: report.json, report.md, figures, .mhd volumes.
    Evaluate(EvaluateArgs),
    /// Compare a candidate's evaluation report with a baseline's on the same patches: the
    /// paired Dice difference with its by-scan bootstrap interval.
    CompareReports(lungseg_train::report::compare::CompareArgs),
    /// One model's evaluation reports on several sets of scans (fresh seeds) pooled into one
    /// headline: mean Dice, false positives, the flag and each review score, by-scan intervals.
    PoolReports(lungseg_train::report::pool::PoolArgs),
    /// A model's network with more channels per level that computes the same function
    /// (Net2WiderNet): the start of a wider network's fine-tuning (`train --init`).
    Widen(lungseg_train::widen::WidenArgs),
    /// The weighted mean of the weights of model files of one network (a model soup, or a
    /// model and its fine-tuned descendant): a candidate to calibrate and judge like a trained one.
    Average(lungseg_train::average::AverageArgs),
    /// Write the coarsest scan spacing a model file is meant for into it (patches of coarser
    /// scans are flagged for review), with the reason in its provenance.
    SetIntendedUse(lungseg_train::intended_use::SetIntendedUseArgs),
    /// Writes a model's second look at half its spacing (`config.second_look`), chosen and
    /// tested elsewhere, with that basis in the provenance.
    SetSecondLook(lungseg_train::second_look::SetSecondLookArgs),
    /// Hard-negative mining: a pool dataset with many negatives -> a dataset whose training
    /// negatives are partly those a model paints the most false positives on.
    MineNegatives(lungseg_train::prepare::mine::MineArgs),
    /// Predict at candidate points of one scan (MetaImage or NIfTI): predictions.json with each
    /// point's summary and review flag, maps around each point, maps on the scan's grid.
    Predict(lungseg_train::predict::PredictArgs),
    /// The whole pipeline on synthetic CT in one command: synth → prepare → train → export →
    /// calibrate → evaluate (through lungseg-sys). Prints where the report is.
    Demo {
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Training + validation scans (test scans come from another seed).
        #[arg(long, default_value_t = 24)]
        scans: usize,
        #[arg(long, default_value_t = 16)]
        test_scans: usize,
        #[arg(long, default_value_t = 16)]
        epochs: usize,
        /// Channels per U-Net level, shallowest first.
        #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
        channels: Vec<usize>,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Peak learning rate (cosine decay to a thirtieth of it).
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        /// Channel-dropout probability (also what MC dropout samples).
        #[arg(long, default_value_t = 0.1)]
        dropout: f64,
        /// Train with augmentation (flips, axial 90° turns, intensity); off in the 10-minute
        /// demo, where it only slows learning.
        #[arg(long)]
        augment: bool,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// MC-dropout samples per patch for calibration and evaluation.
        #[arg(long, default_value_t = 20)]
        samples: u32,
        #[command(flatten)]
        shape: Shape,
    },
}

#[derive(Args)]
struct PrepareArgs {
    /// LUNA16 folder.
    #[arg(long)]
    luna: PathBuf,
    /// Dataset folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Patch size in voxels: N (a cube) or X,Y,Z; must match the model's patch_size.
    #[arg(long, default_value = "64", value_parser = parse_triple::<usize>)]
    patch_size: [usize; 3],
    /// Voxel spacing in mm: S or X,Y,Z; must match the model's spacing_mm.
    #[arg(long, default_value = "1", value_parser = parse_triple::<f64>)]
    spacing_mm: [f64; 3],
    /// Largest random shift (mm, per axis) of positive patch centres.
    #[arg(long, default_value_t = 8.0)]
    jitter_mm: f64,
    #[arg(long, default_value_t = 1)]
    positives_per_nodule: usize,
    /// D:K: nodules whose annotated diameter is below D mm get K positives instead of
    /// --positives-per-nodule (negatives follow the positives through --neg-ratio).
    #[arg(long)]
    small_nodule_positives: Option<prepare::SmallNodulePositives>,
    /// Negatives per positive (over the dataset).
    #[arg(long, default_value_t = 2.0)]
    neg_ratio: f64,
    /// Share of negatives from class-0 candidates (rest: random lung points).
    #[arg(long, default_value_t = 0.5)]
    candidate_fraction: f64,
    /// Share of negatives on the lung's border with chest wall, diaphragm and mediastinum
    /// (taken first; --candidate-fraction splits the rest).
    #[arg(long, default_value_t = 0.0)]
    border_fraction: f64,
    /// train,val,test fractions of scans.
    #[arg(long, default_value = "0.7,0.15,0.15")]
    split: String,
    /// Split by LUNA16 subset folds instead (default train=0-6,val=7,test=8-9).
    #[arg(long, num_args = 0..=1, default_missing_value = "train=0-6,val=7,test=8-9")]
    split_by_subset: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first N scans (by seriesuid).
    #[arg(long)]
    max_scans: Option<usize>,
    /// Folder of LIDC-IDRI reader XML files (searched recursively): nodule labels from the
    /// radiologists' 50 % consensus outlines instead of spheres (docs/prepare-evaluate.md).
    #[arg(long)]
    lidc_xml: Option<PathBuf>,
    /// Folder of label volumes <seriesuid>.mhd on the scans' grids, value = the annotation's
    /// row among its scan's rows + 1 (synth writes them to seg-nodules/): nodule labels are
    /// these shapes instead of spheres.
    #[arg(long, conflicts_with = "lidc_xml")]
    label_masks: Option<PathBuf>,
    /// Largest distance of an outline's imageZposition from its slice, as a fraction of the
    /// slice spacing.
    #[arg(long, default_value_t = prepare::lidc::slices::DEFAULT_Z_TOLERANCE)]
    lidc_z_tolerance: f64,
}

/// The model, the patch split it runs MC dropout on, and the MC draw: what every calibration
/// command reads.
#[derive(Args)]
struct McSplitArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "val")]
    split: String,
    #[arg(long, default_value_t = 20)]
    samples: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl McSplitArgs {
    /// A progress bar over the split's patches.
    fn progress(&self) -> anyhow::Result<ProgressBar> {
        let n = lungseg_train::dataset::PatchDataset::open(&self.data)?
            .split(&self.split)
            .len();
        Ok(bar(n as u64, "patches"))
    }
}

#[derive(Args)]
struct CalibrateArgs {
    #[command(flatten)]
    on: McSplitArgs,
    #[arg(long, default_value_t = 0.1)]
    refer_fraction: f64,
    /// Also choose the review score: the engine score that catches the most bad patches of
    /// this (validation) split when 15 % are referred.
    #[arg(long)]
    choose_score: bool,
    /// The patches' scores from this `evaluate` report (folder or report.json) of the same
    /// model file, split, --samples and --seed, instead of an MC pass (refused otherwise).
    #[arg(long)]
    from_report: Option<PathBuf>,
    /// Write the threshold (and a chosen score) into the model file's review metadata.
    #[arg(long)]
    write: bool,
}

#[derive(Args)]
struct CalibrateProbabilityArgs {
    #[command(flatten)]
    on: McSplitArgs,
    /// `temperature` (scale every sample's logit) or `platt` (scale and shift): either way
    /// `--write` moves the model's mask threshold with the map, so each sample's mask stays.
    /// `mask-distance`: one isotonic map of the MC mean per distance band from the final mask
    /// (`config.probability_map`, fitted on every voxel; masks, samples and scores unchanged).
    #[arg(long, default_value = "temperature")]
    map: String,
    /// Voxels the fit sees: `patch` (the ROI and a weighted subsample of the rest) or `roi`
    /// (`temperature` and `platt` only).
    #[arg(long, default_value = "patch")]
    region: String,
    /// Write the calibrated head (and the fit, under provenance) into the model file; refused
    /// when the map worsens the whole-patch ECE or Brier, unless --force.
    #[arg(long)]
    write: bool,
    #[arg(long, requires = "write")]
    force: bool,
    /// `mask-distance` on a model that carries a map already: fit anyway (the fit reads the
    /// MC mean, which the map does not touch) and let --write replace the map, keeping the
    /// old one under `provenance.probability_map_replaced`.
    #[arg(long)]
    replace: bool,
}

#[derive(Args)]
struct CalibrateMaskThresholdArgs {
    #[command(flatten)]
    on: McSplitArgs,
    /// Candidate thresholds (default 0.10, 0.15, …, 0.90); the model's own is always judged.
    #[arg(long, value_delimiter = ',')]
    candidates: Option<Vec<f32>>,
    /// Candidate test-time flips of the MC samples (1, 2, 4, 8), judged with every threshold;
    /// the model's own is always judged (default: only it).
    #[arg(long, value_delimiter = ',')]
    test_time_flips: Vec<u32>,
    /// Candidate minimum mask components in mm³ (`config.min_component_mm3`: smaller
    /// 26-connected components are dropped), judged with every threshold; the model's own is
    /// always judged (default: only it).
    #[arg(long, value_delimiter = ',')]
    min_components_mm3: Vec<f64>,
    /// Candidate spare radii in mm (`config.min_component_spare_radius_mm`: a component
    /// below the minimum is kept when it comes closer than this to the patch centre), judged
    /// with every non-zero minimum; the model's own is always judged (default: only it).
    #[arg(long, value_delimiter = ',')]
    spare_radii_mm: Vec<f64>,
    /// Candidate lower thresholds of the lesion at the requested point
    /// (`config.point_mask_threshold`: the 26-connected components of the mean at or above it
    /// that come closer than the point radius to the patch centre join the mask), each judged
    /// with every point radius and every mask threshold above it; none and the model's own
    /// are always judged (default: only they). Needs `--point-radii-mm`.
    #[arg(long, value_delimiter = ',', requires = "point_radii_mm")]
    point_thresholds: Vec<f32>,
    /// Candidate point radii in mm (`config.point_radius_mm`, > 0) of the point rules.
    #[arg(long, value_delimiter = ',', requires = "point_thresholds")]
    point_radii_mm: Vec<f64>,
    /// Allow at most this many bad negative patches (default: as many as at the model's
    /// current setting), e.g. the shipped model's count when this model is to replace it.
    #[arg(long)]
    max_bad_negatives: Option<usize>,
    /// Allow at most this mean false-positive volume over the negative patches, mm³
    /// (default: the mean at the model's current setting).
    #[arg(long)]
    max_mean_fp_mm3: Option<f64>,
    /// Write the chosen threshold and flips (and the table, under provenance) into the model
    /// file.
    #[arg(long)]
    write: bool,
}

#[derive(Args)]
struct EvaluateArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, default_value_t = 20)]
    samples: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default: report/ next to the model).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Training metrics.csv for the training curves (default: metrics.csv next to the model).
    #[arg(long)]
    training_metrics: Option<PathBuf>,
    /// `prepare` output of the same scans at half the model's spacing: the scored masks then
    /// include the model's second look (`config.second_look`) where it applies.
    #[arg(long)]
    second_look_patches: Option<PathBuf>,
}

/// `N` (all axes) or `X,Y,Z`.
fn parse_triple<T: std::str::FromStr + Copy>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<T>()
                .map_err(|_| format!("'{x}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match v[..] {
        [n] => Ok([n; 3]),
        [x, y, z] => Ok([x, y, z]),
        _ => Err(format!("'{s}': expected N or X,Y,Z")),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}, {{elapsed}} (eta {{eta}})"
        ))
        .expect("valid template"),
    )
}

fn run_prepare(a: PrepareArgs) -> anyhow::Result<()> {
    let split = match &a.split_by_subset {
        Some(folds) => prepare::SplitRule::parse_subsets(folds)?,
        None => prepare::SplitRule::parse_fractions(&a.split)?,
    };
    let cfg = prepare::PrepareConfig {
        patch_size: a.patch_size,
        spacing_mm: a.spacing_mm,
        jitter_mm: a.jitter_mm,
        positives_per_nodule: a.positives_per_nodule,
        small_nodule_positives: a.small_nodule_positives,
        neg_ratio: a.neg_ratio,
        candidate_fraction: a.candidate_fraction,
        border_fraction: a.border_fraction,
        split,
        seed: a.seed,
        max_scans: a.max_scans,
        lidc_xml: a.lidc_xml,
        label_masks: a.label_masks,
        lidc_z_tolerance: a.lidc_z_tolerance,
    };
    let pb = bar(0, "scans");
    let summary = prepare::prepare(&a.luna, &a.out, &cfg, |e| match e {
        prepare::Event::Start { scans } => pb.set_length(scans as u64),
        prepare::Event::ScanDone { .. } => pb.inc(1),
        prepare::Event::Warning(w) => pb.suspend(|| eprintln!("warning: {w}")),
    });
    pb.finish_and_clear();
    let summary = summary?;
    println!("{summary}");
    println!("report: {}", a.out.join(prepare::REPORT).display());
    Ok(())
}

fn run_calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    let pb = a.on.progress()?;
    let opts = calibrate::CalibrateOptions {
        split: a.on.split.clone(),
        refer_fraction: a.refer_fraction,
        samples: a.on.samples,
        seed: a.on.seed,
        choose_score: a.choose_score,
        from_report: a.from_report.clone(),
        ..Default::default()
    };
    let c = calibrate::calibrate(&a.on.model, &a.on.data, &opts, || pb.inc(1));
    pb.finish_and_clear();
    let c = c?;
    for e in &c.candidates {
        println!(
            "  {:<24} AUROC {}  bad caught at {:.0} % referred: {}",
            e.name,
            e.auroc.map_or("n/a".into(), |v| format!("{v:.3}")),
            e.budget * 100.0,
            e.catch_rate.map_or("n/a".into(), |i| format!(
                "{:.3} [{:.3}, {:.3}]",
                i.estimate, i.lo, i.hi
            ))
        );
    }
    println!(
        "review threshold {} ({}): refers {} of {} {} patches ({:.1}%, asked {:.1}%)",
        c.threshold,
        c.score,
        c.referred,
        c.patches,
        a.on.split,
        100.0 * c.referred as f64 / c.patches.max(1) as f64,
        100.0 * c.refer_fraction_requested
    );
    if a.write {
        let score = lungseg::model::ReviewScore::from_name(&c.score)
            .ok_or_else(|| anyhow::anyhow!("unknown review score {}", c.score))?;
        calibrate::set_review(&a.on.model, score, c.threshold)?;
        println!(
            "wrote review score and threshold into {}",
            a.on.model.display()
        );
    }
    Ok(())
}

fn run_calibrate_mask_threshold(a: CalibrateMaskThresholdArgs) -> anyhow::Result<()> {
    use lungseg_train::calibrate::mask_threshold as mt;
    let opts = mt::MaskThresholdOptions {
        split: a.on.split.clone(),
        samples: a.on.samples,
        seed: a.on.seed,
        candidates: a.candidates.unwrap_or_else(mt::default_candidates),
        flips: a.test_time_flips.clone(),
        min_components_mm3: a.min_components_mm3.clone(),
        spare_radii_mm: a.spare_radii_mm.clone(),
        point_thresholds: a.point_thresholds.clone(),
        point_radii_mm: a.point_radii_mm.clone(),
        max_bad_negatives: a.max_bad_negatives,
        max_mean_fp_mm3: a.max_mean_fp_mm3,
        ..Default::default()
    };
    let pb = a.on.progress()?;
    let c = mt::choose_mask_threshold(&a.on.model, &a.on.data, &opts, || pb.inc(1));
    pb.finish_and_clear();
    let c = c?;
    println!(
        "{} nodule and {} negative {} patches; bad negative: FP volume > {} mm³",
        c.nodule_patches, c.negative_patches, a.on.split, c.bad_fp_mm3
    );
    println!(
        "flips  threshold  point t  point mm  min mm³  spare mm  mean Dice  bad negatives  mean FP mm³"
    );
    for r in &c.rows {
        let mark = match (c.chosen_setting().is(r), c.previous_setting().is(r)) {
            (true, true) => "  chosen, current",
            (true, false) => "  chosen",
            (false, true) => "  current",
            _ => "",
        };
        println!(
            "{:>5}  {:>9.3}  {:>7.3}  {:>8}  {:>7}  {:>8}  {:>9.4}  {:>13}  {:>11.1}{mark}",
            r.test_time_flips,
            r.threshold,
            r.point_mask_threshold,
            r.point_radius_mm,
            r.min_component_mm3,
            r.min_component_spare_radius_mm,
            r.mean_dice,
            r.bad_negatives,
            r.mean_fp_mm3
        );
    }
    if a.write {
        mt::write_mask_threshold(&a.on.model, &c)?;
        println!(
            "wrote mask threshold {}, test-time flips {}, point rule {} within {} mm, minimum \
             component {} mm³ and spare radius {} mm into {}",
            c.chosen,
            c.chosen_flips,
            c.chosen_point_mask_threshold,
            c.chosen_point_radius_mm,
            c.chosen_min_component_mm3,
            c.chosen_min_component_spare_radius_mm,
            a.on.model.display()
        );
    }
    Ok(())
}

fn run_calibrate_probability(a: CalibrateProbabilityArgs) -> anyhow::Result<()> {
    use lungseg_train::calibrate::probability;
    if a.map == "mask-distance" {
        return run_mask_distance(a);
    }
    anyhow::ensure!(!a.replace, "--replace is for --map mask-distance");
    let kind = lungseg_train::calibrate::platt::MapKind::from_name(&a.map)
        .ok_or_else(|| anyhow::anyhow!("--map {}: expected 'platt' or 'temperature'", a.map))?;
    let region = probability::FitRegion::from_name(&a.region)
        .ok_or_else(|| anyhow::anyhow!("--region {}: expected 'patch' or 'roi'", a.region))?;
    let opts = probability::ProbabilityOptions {
        split: a.on.split.clone(),
        samples: a.on.samples,
        seed: a.on.seed,
        kind,
        region,
        ..Default::default()
    };
    let pb = a.on.progress()?;
    let c = probability::fit_probability(&a.on.model, &a.on.data, &opts, || pb.inc(1));
    pb.finish_and_clear();
    let c = c?;
    println!(
        "{:?} map a = {:.4}, b = {:.4} ({} iterations; fitted on the {:?}) on {} ROI voxels of \
         {} {} patches ({} samples beyond the probe's range)",
        c.fit.kind,
        c.fit.map.a,
        c.fit.map.b,
        c.fit.iterations,
        c.region,
        c.roi_voxels,
        c.patches,
        a.on.split,
        c.saturated_samples
    );
    println!(
        "NLL {:.4} -> {:.4}; ECE (ROI) {:.4} -> {:.4}; whole patch (estimate): ECE {:.4} -> \
         {:.4}, Brier {:.4} -> {:.4}",
        c.fit.nll_before,
        c.fit.nll_after,
        c.ece_roi_before,
        c.ece_roi_after,
        c.ece_patch_before,
        c.ece_patch_after,
        c.brier_patch_before,
        c.brier_patch_after
    );
    if a.write {
        probability::check_whole_patch(&c, a.force)?;
        probability::write_calibration(&a.on.model, &c)?;
        println!("wrote the calibrated head into {}", a.on.model.display());
    }
    Ok(())
}

fn run_mask_distance(a: CalibrateProbabilityArgs) -> anyhow::Result<()> {
    use lungseg_train::calibrate::mask_distance::{self, MaskDistanceOptions};
    let opts = MaskDistanceOptions {
        split: a.on.split.clone(),
        samples: a.on.samples,
        seed: a.on.seed,
        eval: Default::default(),
        replace: a.replace,
    };
    let pb = a.on.progress()?;
    let f = mask_distance::fit_mask_distance(&a.on.model, &a.on.data, &opts, || pb.inc(1));
    pb.finish_and_clear();
    let f = f?;
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!(
        "probability map by distance from the mask ({} bands, {} knots) on {} {} patches \
         (in-sample): ECE (ROI) {} -> {}; whole patch {} -> {}",
        f.map.bands(),
        f.map.knots.len(),
        f.patches,
        a.on.split,
        show(f.ece_roi_before),
        show(f.ece_roi_after),
        show(f.ece_patch_before),
        show(f.ece_patch_after)
    );
    if a.write {
        mask_distance::write_mask_distance(&a.on.model, &f)?;
        println!("wrote config.probability_map into {}", a.on.model.display());
    }
    Ok(())
}

fn run_evaluate(a: EvaluateArgs) -> anyhow::Result<()> {
    let out = a.out.unwrap_or_else(|| a.model.with_file_name("report"));
    let opts = evaluate::EvaluateOptions {
        split: a.split,
        samples: a.samples,
        seed: a.seed,
        out,
        training_metrics: a.training_metrics,
        second_look_patches: a.second_look_patches,
        ..Default::default()
    };
    let pb = bar(0, "patches");
    let r = evaluate::evaluate(&a.model, &a.data, &opts, |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    });
    pb.finish_and_clear();
    let r = r?;
    let o = &r.report.metrics.overlap;
    let h = &r.report.metrics.headline;
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    println!(
        "{} patches: pooled Dice {:.3} / IoU {:.3}; mean Dice on nodule patches {} (>= {} mm: {}); ECE (ROI) {}",
        r.report.metrics.n_patches,
        o.pooled.dice,
        o.pooled.iou,
        f(h.dice_nodules.map(|i| i.estimate)),
        h.min_diameter_mm,
        f(h.dice_nodules_sized.map(|i| i.estimate)),
        f(r.report.metrics.calibration_roi.ece)
    );
    println!("report: {} ({:.1} s)", r.report_md.display(), r.seconds);
    Ok(())
}

/// Scan size knobs (defaults: see `lungseg_train::synth`).
#[derive(Args)]
struct Shape {
    /// In-plane voxels per axis.
    #[arg(long, default_value_t = synth::SynthConfig::default().dims_xy)]
    dims_xy: usize,
    /// Scan length along z in mm.
    #[arg(long, default_value_t = synth::SynthConfig::default().z_extent_mm)]
    z_mm: f64,
    /// Range "lo,hi" (mm) the slice spacing is drawn from; the slice thickness follows it
    /// (0.6–2× the spacing, within 0.6–5 mm). Default: the generator's (LUNA16's ≤ 2.5 mm).
    #[arg(long, value_parser = parse_range_mm)]
    spacing_z_mm: Option<(f64, f64)>,
}

impl Shape {
    fn config(&self) -> synth::SynthConfig {
        let d = synth::SynthConfig::default();
        synth::SynthConfig {
            dims_xy: self.dims_xy,
            z_extent_mm: self.z_mm,
            spacing_z_mm: self.spacing_z_mm.unwrap_or(d.spacing_z_mm),
            ..d
        }
    }
}

/// "lo,hi": two numbers; the generator checks the range itself.
fn parse_range_mm(s: &str) -> Result<(f64, f64), String> {
    match s.split(',').map(str::trim).collect::<Vec<_>>()[..] {
        [lo, hi] => Ok((
            lo.parse().map_err(|e| format!("{lo}: {e}"))?,
            hi.parse().map_err(|e| format!("{hi}: {e}"))?,
        )),
        _ => Err(format!("{s}: expected \"lo,hi\" in mm")),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Synth {
            out,
            scans,
            seed,
            subset_size,
            shape,
        } => {
            let bar = ProgressBar::new(scans as u64).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} scans, {elapsed} (eta {eta})")
                    .expect("valid template"),
            );
            let r = synth::write_dataset(&out, &shape.config(), scans, seed, subset_size, |_| {
                bar.inc(1)
            });
            bar.finish_and_clear();
            r.map_err(anyhow::Error::from).map(|s| {
                println!(
                    "wrote {} scans ({} nodules, {} candidates) to {}",
                    s.scans.len(),
                    s.nodules,
                    s.candidates,
                    s.root.display()
                )
            })
        }
        Command::Demo {
            out,
            scans,
            test_scans,
            epochs,
            channels,
            batch_size,
            lr,
            dropout,
            augment,
            seed,
            samples,
            shape,
        } => run_demo(demo::DemoOptions {
            out,
            scans,
            test_scans,
            epochs,
            channels,
            batch_size,
            lr,
            dropout,
            augment,
            seed,
            mc_samples: samples,
            synth: shape.config(),
            ..demo::DemoOptions::default()
        }),
        Command::SynthFigures { out, seed } => {
            synth::figure::write_figures(&out, &synth::SynthConfig::default(), seed)
                .map_err(anyhow::Error::from)
                .map(|()| {
                    println!(
                        "wrote {}/synth-slices.png and synth-nodules.png",
                        out.display()
                    )
                })
        }
        Command::Prepare(a) => run_prepare(a),
        Command::Calibrate(a) => run_calibrate(a),
        Command::CalibrateProbability(a) => run_calibrate_probability(a),
        Command::CalibrateMaskThreshold(a) => run_calibrate_mask_threshold(a),
        Command::Evaluate(a) => run_evaluate(a),
        Command::CompareReports(a) => a.run(),
        Command::PoolReports(a) => a.run(),
        Command::MineNegatives(a) => a.run(),
        Command::Widen(a) => a.run(),
        Command::Average(a) => a.run(),
        Command::SetIntendedUse(a) => a.run(),
        Command::SetSecondLook(a) => a.run(),
        Command::Predict(a) => run_predict(&a),
        Command::Train(a) => a.run(),
        Command::Export(a) => a.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(o: demo::DemoOptions) -> anyhow::Result<()> {
    let r = demo::run(&o)?;
    println!("demo finished in {:.0} s", r.seconds);
    println!("model:            {}", r.model.display());
    println!(
        "best val Dice:    {:.3} (Burn, deterministic)",
        r.best_val_dice
    );
    println!(
        "review rule:      {} > {:.5} (chosen on validation; refers {:.0}% of its patches)",
        r.review_score,
        r.review_threshold,
        o.refer_fraction * 100.0
    );
    println!("report:           {}", r.report_md.display());
    println!("                  {}", r.report_json.display());
    println!("\n{}", demo::headline(&r.report_json)?);
    Ok(())
}

fn run_predict(a: &lungseg_train::predict::PredictArgs) -> anyhow::Result<()> {
    let p = lungseg_train::predict::run(a)?;
    let flagged = p.points.iter().filter(|r| r.summary.needs_review).count();
    if !p.scan_admitted {
        println!(
            "the scan ({:.2} x {:.2} x {:.2} mm: voxel spacing, or slice thickness where stated) \
             is coarser than the {} mm the model is meant for: every point needs review",
            p.scan_resolution_mm[0],
            p.scan_resolution_mm[1],
            p.scan_resolution_mm[2],
            p.max_scan_spacing_mm
        );
    }
    println!(
        "{} points of {}: {flagged} need review ({} > {}); results in {}",
        p.points.len(),
        p.seriesuid,
        p.review_score,
        p.review_threshold,
        a.out.join("predictions.json").display()
    );
    Ok(())
}
