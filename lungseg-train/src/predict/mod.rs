//! `lungseg-train predict`: the command-line predictor. MC-dropout predictions at candidate
//! points of one scan through lungseg-sys, as a host would run them: per-point results
//! (summary, review flag, volume, diameter, structure measures) in `predictions.json`, the maps
//! around each point, and the maps merged back onto the scan's own grid. The probability map
//! is the model's calibrated probability (`lungseg::probability_map`) when its file has a
//! map, the MC mean otherwise.
//!
//! Inputs: a MetaImage scan (`.mhd`/`.mha`), a NIfTI file (`.nii`/`.nii.gz`) or a folder of one
//! DICOM CT series; points from a CSV with LUNA16's columns and/or `--point x,y,z` (world mm,
//! LPS).

pub mod nifti;
mod outputs;
mod points;
mod seg;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lungseg::intended_use::IntendedUse;
use lungseg::mc::point::{MaskSource, Point, Scan};
use lungseg::mc::{self, McOptions, RunControl, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::patch::{self, PatchSpec};
use lungseg::scan_map::{Merge, ScanMap};
use lungseg::second_look::SecondLook;
use lungseg::volume::Volume;

pub use outputs::{PointResult, Predictions};

/// The default model's place in the repository (`models/README.md` says what it is).
pub const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/lungseg-default.safetensors"
);

/// File format of the written volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// MetaImage (`.mhd` + `.zraw`), as LUNA16 and SimpleITK write it.
    Mhd,
    /// NIfTI-1 (`.nii.gz`), with qform and sform from the scan's LPS geometry.
    Nifti,
}

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The scan: MetaImage (.mhd/.mha), NIfTI (.nii/.nii.gz), or a folder of DICOM files (its
    /// one CT series, or the one --seriesuid names).
    #[arg(long)]
    pub scan: PathBuf,
    /// Points: a CSV with LUNA16's columns (seriesuid,coordX,coordY,coordZ; others ignored).
    /// Rows of other scans are skipped; the scan's seriesuid is its file name without the
    /// extension unless --seriesuid names it (for a DICOM folder: its SeriesInstanceUID).
    #[arg(long)]
    pub candidates: Option<PathBuf>,
    #[arg(long)]
    pub seriesuid: Option<String>,
    /// A world point "x,y,z" in mm (LPS); may be repeated.
    #[arg(long = "point", value_parser = points::parse_point, allow_hyphen_values = true)]
    pub points: Vec<[f64; 3]>,
    /// The model file; default: the shipped default model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// MC-dropout samples per point.
    #[arg(long, default_value_t = 20)]
    pub samples: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads per prediction (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value_t = Format::Mhd)]
    pub format: Format,
    /// Skip the per-point maps (the scan-grid maps and the JSON are always written).
    #[arg(long)]
    pub no_patch_maps: bool,
    /// Also write `segmentation.dcm`: a DICOM SEG on the source series (--scan a DICOM folder),
    /// one segment per point with its review flag and uncertainty in the description.
    #[arg(long)]
    pub dicom_seg: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the predictor; returns what `predictions.json` holds.
pub fn run(args: &PredictArgs) -> Result<Predictions> {
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let model = open_model(&model_path, args.model.is_none())?;
    let volume = open_scan(&args.scan, args.seriesuid.as_deref())?;
    let uid = match (&args.seriesuid, args.scan.is_dir()) {
        (Some(uid), _) => uid.clone(),
        (None, false) => scan_uid(&args.scan),
        (None, true) if args.candidates.is_some() => bail!(
            "{} is a DICOM folder: name its series with --seriesuid (the SeriesInstanceUID \
             the candidates CSV uses)",
            args.scan.display()
        ),
        (None, true) => String::new(),
    };
    let targets = points::gather(args.candidates.as_deref(), &uid, &args.points)?;
    if args.dicom_seg && !args.scan.is_dir() {
        bail!("--dicom-seg needs --scan to be a DICOM series folder");
    }
    let mut seg_masks = match args.dicom_seg {
        true => Some(seg::SegMasks::new(&volume, targets.len())?),
        false => None,
    };
    std::fs::create_dir_all(args.out.join("points"))
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let opts = McOptions {
        n_samples: args.samples,
        seed: args.seed,
        threads: args.threads,
        ..McOptions::default()
    };
    let (score, threshold) = mc::review_choice(&model, &opts)?;
    let calibrated = model.config().probability_map.is_some();
    let writer = outputs::Writer::new(&args.out, args.format, &volume);
    let mut maps = ScanMaps::new(&volume, calibrated);
    let mut results = Vec::with_capacity(targets.len());
    let bar = progress_bar(args.quiet, targets.len() as u64 * u64::from(args.samples));
    let mut tick = |p: mc::Progress| bar.set_position(p.done);
    let mut ctl = RunControl::default().with_progress(&mut tick);
    ctl.expect(targets.len() as u64 * u64::from(args.samples));
    let spec = model_patch(&model);
    let mut work = PatchWork::new(spec.len());
    for (i, t) in targets.iter().enumerate() {
        let r = predict_point(&model, &volume, &spec, t.world, &opts, &mut work, &mut ctl)
            .with_context(|| format!("point {i} ({})", t.origin))?;
        let files = if args.no_patch_maps {
            Default::default()
        } else {
            writer.patch_maps(i, &spec, t.world, &work, calibrated)?
        };
        maps.add(&spec, t.world, &work)?;
        if let Some(m) = seg_masks.as_mut() {
            m.add(&spec, t.world, &work)?;
        }
        let mut result = PointResult::new(i, t, &volume, r.0, threshold, files);
        result.patch_reaches_outside = work.reaches_outside;
        result.mask_source = r.1;
        results.push(result);
    }
    bar.finish_and_clear();
    let scan_files = writer.scan_maps(&maps)?;
    let dicom_seg = match &seg_masks {
        Some(m) => {
            let path = args.out.join("segmentation.dcm");
            m.write(&args.scan, args.seriesuid.as_deref(), &results, &path)?;
            Some("segmentation.dcm".to_string())
        }
        None => None,
    };
    let p = Predictions {
        scan: args.scan.display().to_string(),
        seriesuid: uid,
        model: model_path.display().to_string(),
        n_samples: args.samples,
        seed: args.seed,
        review_score: score.name().to_string(),
        review_threshold: threshold,
        probability_map: calibrated,
        max_scan_spacing_mm: model.config().max_scan_spacing_mm,
        scan_resolution_mm: volume.resolution_mm(),
        scan_admitted: IntendedUse::of(model.config()).admits(volume.resolution_mm()),
        scan_maps: scan_files,
        dicom_seg,
        points: results,
    };
    outputs::write_json(&args.out.join("predictions.json"), &p)?;
    Ok(p)
}

fn open_model(path: &Path, is_default: bool) -> Result<Model> {
    if is_default && !path.is_file() {
        bail!(
            "no default model at {}: this checkout ships none yet; pass --model <file> (e.g. \
             the demo's runs/demo/model.safetensors)",
            path.display()
        );
    }
    Model::open(path).with_context(|| format!("model {}", path.display()))
}

fn open_scan(path: &Path, series_uid: Option<&str>) -> Result<Volume> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let v = if path.is_dir() {
        let opts = lungseg::volume::dicom::DicomOptions {
            series_uid: series_uid.map(str::to_string),
            ..Default::default()
        };
        lungseg::volume::dicom::read_series(path, &opts)?
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        nifti::read(path)?
    } else {
        lungseg::mhd::read(path, &Default::default())?
    };
    v.require_scalar()?;
    Ok(v)
}

/// The seriesuid LUNA16 gives a scan: its file name without `.mhd`/`.mha`/`.nii(.gz)`.
fn scan_uid(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    [".nii.gz", ".nii", ".mhd", ".mha"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext).map(str::to_string))
        .unwrap_or(name)
}

/// The model's patch: its size and spacing, air outside the scan (as the C ABI cuts it).
fn model_patch(model: &Model) -> PatchSpec {
    let c = model.config();
    PatchSpec {
        size: c.patch_size,
        spacing_mm: c.spacing_mm,
        outside_hu: -1000.0,
    }
}

/// One point's patch and maps, reused from point to point.
pub(crate) struct PatchWork {
    pub(crate) hu: Vec<f32>,
    pub(crate) mean: Vec<f32>,
    /// The mean through the model's probability map (a copy of the mean without one).
    pub(crate) probability: Vec<f32>,
    pub(crate) entropy: Vec<f32>,
    pub(crate) mutual_info: Vec<f32>,
    /// The final mask, 0/1, as the summary counts it (`lungseg::mc::point`: the model's mask,
    /// joined with its second look where that runs).
    pub(crate) mask: Vec<f32>,
    pub(crate) reaches_outside: bool,
}

impl PatchWork {
    fn new(n: usize) -> Self {
        PatchWork {
            hu: vec![0.0; n],
            mean: vec![0.0; n],
            probability: vec![0.0; n],
            entropy: vec![0.0; n],
            mutual_info: vec![0.0; n],
            mask: vec![0.0; n],
            reaches_outside: false,
        }
    }

    /// Keeps `mask` (0/1 bytes) as the patch's final mask.
    fn set_mask(&mut self, mask: &[u8]) {
        for (m, &b) in self.mask.iter_mut().zip(mask) {
            *m = f32::from(b);
        }
    }
}

/// One point through the library as `lungseg_predict_uncertainty_at` with a final mask runs
/// it: MC dropout on the model's patch, the second look where the model has one and the scan
/// is thin enough, the intended-use flag.
fn predict_point(
    model: &Model,
    volume: &Volume,
    spec: &PatchSpec,
    world: [f64; 3],
    opts: &McOptions,
    work: &mut PatchWork,
    ctl: &mut RunControl<'_>,
) -> Result<(mc::PatchSummary, MaskSource)> {
    patch::extract_hu(volume, world, spec, &mut work.hu)?;
    work.reaches_outside = patch::reaches_outside(volume, world, spec);
    let second_spec = SecondLook::patch_spec(spec);
    let mut second_patch = |hu: &mut [f32]| patch::extract_hu(volume, world, &second_spec, hu);
    let point = Point {
        patch_hu: &work.hu,
        scan: Some(Scan {
            resolution_mm: volume.resolution_mm(),
            second_patch: &mut second_patch,
        }),
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut work.mean),
        variance: None,
        entropy: Some(&mut work.entropy),
        mutual_info: Some(&mut work.mutual_info),
    };
    let mut mask = vec![0u8; work.hu.len()];
    let (mut summary, source) = mc::point::predict_point(model, point, opts, maps, &mut mask, ctl)?;
    IntendedUse::of(model.config()).apply(volume.resolution_mm(), &mut summary);
    work.set_mask(&mask);
    lungseg::probability_map::calibrated_probability(
        model.config(),
        &work.mean,
        &mut work.probability,
    )?;
    Ok((summary, source))
}

/// The maps merged onto the scan's grid: probability (calibrated when the model has a map)
/// and mutual information as weighted means where patches overlap, the mask as their maximum,
/// and the MC mean apart when the probability is calibrated.
pub(crate) struct ScanMaps {
    pub(crate) probability: ScanMap,
    pub(crate) mean: Option<ScanMap>,
    pub(crate) mutual_info: ScanMap,
    pub(crate) mask: ScanMap,
}

impl ScanMaps {
    fn new(volume: &Volume, calibrated: bool) -> Self {
        let g = volume.geometry;
        ScanMaps {
            probability: ScanMap::new(g, Merge::Mean),
            mean: calibrated.then(|| ScanMap::new(g, Merge::Mean)),
            mutual_info: ScanMap::new(g, Merge::Mean),
            mask: ScanMap::new(g, Merge::Max),
        }
    }

    fn add(&mut self, spec: &PatchSpec, world: [f64; 3], w: &PatchWork) -> Result<()> {
        self.probability.add(spec, world, &w.probability, 1.0)?;
        if let Some(mean) = self.mean.as_mut() {
            mean.add(spec, world, &w.mean, 1.0)?;
        }
        self.mutual_info.add(spec, world, &w.mutual_info, 1.0)?;
        self.mask.add(spec, world, &w.mask, 1.0)?;
        Ok(())
    }
}

fn progress_bar(quiet: bool, total: u64) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} MC passes ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("predict");
    bar
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::PredictArgs,
    }

    /// LPS coordinates are often negative: `--point -21.5,...` is a value, not a flag.
    #[test]
    fn a_negative_point_is_a_value_not_a_flag() {
        let c = Cli::try_parse_from([
            "predict",
            "--scan",
            "s.mhd",
            "--out",
            "o",
            "--point",
            "-21.5,-120,-611",
        ])
        .unwrap();
        assert_eq!(c.args.points, vec![[-21.5, -120.0, -611.0]]);
    }
}
