//! The `export` command: a trained Burn model → the safetensors file lungseg-sys loads
//! (`docs/model-format.md`).
//!
//! Written with the `safetensors` crate from the module's own tensors rather than through
//! Burn's store adapters: the names, dtypes and metadata are then exactly what the format
//! says, with nothing Burn-specific to rename or drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::{UNet, UNetConfig};
use crate::model_file::RawTensor;
use crate::train::checkpoint;

pub use lungseg::model::FORMAT;

/// Metadata value of `format_version`: the oldest version whose readers understand the
/// config (lungseg-sys's [`lungseg::model::required_format_version`]), so that older readers
/// keep opening every file they can read correctly.
pub fn format_version(config: &UNetConfig) -> Result<&'static str> {
    let cfg = lungseg::model::ModelConfig::from_json(&serde_json::to_string(config)?)?;
    Ok(lungseg::model::required_format_version(&cfg))
}
/// Patch score new model files carry. Not lungseg-sys's default for files without a `review`
/// entry (`mean_mutual_info`): on three synthetic-data models it ranked bad patches better on 5
/// of 6 splits (docs/training.md, "Patch-level referral").
pub const DEFAULT_REVIEW_SCORE: &str = "volume_disagreement";
/// Review threshold used until `calibrate` sets one on the validation set: a placeholder on
/// `volume_disagreement`'s scale (calibrated values were 0.8–6 on synthetic data).
pub const DEFAULT_REVIEW_THRESHOLD: f64 = 1.0;

/// Storage type of the exported tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    F32,
    /// Convolution weights and biases in F16; BatchNorm tensors stay F32 (they are folded in
    /// f64 at load, and running variances lose too much in F16).
    F16,
}

/// The `review` metadata JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// `mean_mutual_info`, `mean_entropy`, `mean_variance` or `volume_disagreement`.
    pub score: String,
    pub threshold: f64,
}

impl Default for Review {
    fn default() -> Self {
        Review {
            score: DEFAULT_REVIEW_SCORE.into(),
            threshold: DEFAULT_REVIEW_THRESHOLD,
        }
    }
}

/// One tensor under its PyTorch state_dict name, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The PyTorch state_dict name of the tensor at module path `path`: the path joined with dots,
/// with BatchNorm's `gamma`/`beta` renamed `weight`/`bias`.
pub fn pytorch_name(path: &[String]) -> String {
    let is_bn = path.len() >= 2 && path[path.len() - 2].starts_with("bn");
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if let Some(last) = parts.last_mut() {
        match *last {
            "gamma" if is_bn => *last = "weight",
            "beta" if is_bn => *last = "bias",
            _ => {}
        }
    }
    parts.join(".")
}

/// Every tensor of `model` (weights and BatchNorm running statistics) under its PyTorch name:
/// the module path, with BatchNorm's `gamma`/`beta` renamed `weight`/`bias`.
pub fn named_tensors(model: &UNet) -> Vec<NamedTensor> {
    struct Collect {
        path: Vec<String>,
        out: Vec<NamedTensor>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("f32 tensor data");
            self.out.push(NamedTensor {
                name: pytorch_name(&self.path),
                shape,
                data,
            });
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.valid().visit(&mut c);
    c.out
}

fn is_batch_norm(name: &str) -> bool {
    name.split('.')
        .rev()
        .nth(1)
        .is_some_and(|m| m.starts_with("bn"))
}

/// Serialises `model` in the lungseg-unet3d format to bytes.
pub fn to_safetensors(
    model: &UNet,
    config: &UNetConfig,
    review: &Review,
    provenance: &serde_json::Value,
    dtype: ExportDtype,
) -> Result<Vec<u8>> {
    let raws: Vec<(String, RawTensor)> = named_tensors(model)
        .into_iter()
        .map(|t| {
            let half = dtype == ExportDtype::F16 && !is_batch_norm(&t.name);
            let dtype = if half { Dtype::F16 } else { Dtype::F32 };
            Ok((t.name, RawTensor::from_f32(dtype, t.shape, &t.data)?))
        })
        .collect::<Result<_>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            "format_version".to_string(),
            format_version(config)?.to_string(),
        ),
        ("config".to_string(), serde_json::to_string(config)?),
        ("review".to_string(), serde_json::to_string(review)?),
        ("provenance".to_string(), serde_json::to_string(provenance)?),
    ]);
    safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(metadata))
        .map_err(|e| anyhow!("safetensors serialisation failed: {e}"))
}

/// Options of the `export` command.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Run folder written by `train`.
    pub run: PathBuf,
    /// Checkpoint folder to export; default `<run>/best`.
    pub checkpoint: Option<PathBuf>,
    pub out: PathBuf,
    pub dtype: ExportDtype,
    pub review: Review,
    /// `config.test_time_flips` of the file (1, 2, 4 or 8; 1 is the format's default): a model
    /// whose flips are to be chosen among candidates that exclude 1 is exported with one of
    /// them, so that the choice does not pay an MC pass for a setting nobody asked about.
    pub test_time_flips: u32,
    /// `config.max_scan_spacing_mm` of the file (0: any scan): the coarsest scan spacing the
    /// training data held (`crate::intended_use`).
    pub max_scan_spacing_mm: f64,
}

/// Loads the run's checkpoint and writes the model file; returns the provenance written.
pub fn export(opts: &ExportOptions) -> Result<serde_json::Value> {
    let dir = opts
        .checkpoint
        .clone()
        .unwrap_or_else(|| checkpoint::best_dir(&opts.run));
    let state = checkpoint::load_state(&dir)
        .with_context(|| format!("{} is not a checkpoint (run `train` first?)", dir.display()))?;
    let device = burn::tensor::Device::flex();
    let model = checkpoint::load_model(&dir, &state.config, &device)?;
    let options = read_json(&opts.run.join("options.json"));
    let summary = read_json(&opts.run.join("summary.json"));
    let provenance = json!({
        "trainer": format!("lungseg-train {} (Burn 0.22)", env!("CARGO_PKG_VERSION")),
        "data": options.get("data"),
        "epochs": summary.get("epochs_run").cloned().unwrap_or(json!(state.epoch)),
        "epochs_planned": options.get("epochs"),
        "stopped_early": summary.get("stopped_early"),
        "best_epoch": state.best_epoch,
        "best_val_dice": state.best_val_dice,
        "batch_size": options.get("batch_size"),
        "lr": options.get("lr"),
        "fg_prior": options.get("fg_prior"),
        "init": options.get("init"),
        "init_provenance": options.get("init").and_then(|p| p.as_str()).and_then(init_provenance),
        "seed": state.seed,
        "checkpoint": dir.display().to_string(),
        "parameters": model.num_learnable_params(),
        "date": utc_now(),
        "git_commit": git_commit(),
    });
    let mut bytes = to_safetensors(&model, &state.config, &opts.review, &provenance, opts.dtype)?;
    if opts.test_time_flips != 1 || opts.max_scan_spacing_mm != 0.0 {
        let mut file = crate::model_file::ModelFile::parse(&bytes)?;
        crate::calibrate::mask_threshold::set_test_time_flips(&mut file, opts.test_time_flips)?;
        crate::intended_use::set_max_scan_spacing(&mut file, opts.max_scan_spacing_mm)?;
        bytes = file.to_bytes()?.0;
    }
    if let Some(parent) = opts.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // A temporary file and a rename: an interrupted export leaves no half model behind.
    crate::model_file::replace_file(&opts.out, &bytes)?;
    Ok(provenance)
}

/// The provenance of the model a fine-tuned run started from (`train --init`), so that the
/// chain of runs stays in the file; `None` when that file is gone or has none.
fn init_provenance(path: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    let text = meta.metadata().as_ref()?.get("provenance")?.clone();
    serde_json::from_str(&text).ok()
}

/// A JSON file of the run folder, or `null` when it is missing or unreadable (provenance is
/// best-effort: a checkpoint copied without its run folder still exports).
fn read_json(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// `git rev-parse HEAD` of the working directory, if git and a repository are there.
pub fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate for one timestamp).
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Formats Unix seconds as ISO 8601 UTC (Howard Hinnant's civil-from-days).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads the metadata of an exported file (for tests and `export`'s summary line).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| anyhow!("{e}"))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Write the model file lungseg-sys loads (safetensors, docs/model-format.md).
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Run folder written by `train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Checkpoint folder to export instead of `<run>/best`.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Output file.
    #[arg(long, default_value = "model.safetensors")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Patch score compared with the threshold: mean_mutual_info, mean_entropy, mean_variance or
    /// volume_disagreement.
    #[arg(long, default_value = DEFAULT_REVIEW_SCORE)]
    pub review_score: String,
    /// Review threshold (until `evaluate` calibrates one on the validation set).
    #[arg(long, default_value_t = DEFAULT_REVIEW_THRESHOLD)]
    pub review_threshold: f64,
    /// Test-time flips of the MC samples written into the file (1, 2, 4 or 8).
    #[arg(long, default_value_t = 1)]
    pub test_time_flips: u32,
    /// The coarsest voxel spacing (mm, any axis) of the scans the model is meant for, written
    /// into the file (0: any): the training scans' range. Patches of coarser scans are
    /// flagged for review.
    #[arg(long, default_value_t = 0.0)]
    pub max_scan_spacing_mm: f64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
}

impl ExportArgs {
    pub fn run(&self) -> Result<()> {
        anyhow::ensure!(
            lungseg::model::ReviewScore::from_name(&self.review_score).is_some(),
            "--review-score '{}' (expected one of {})",
            self.review_score,
            lungseg::model::ReviewScore::names()
        );
        anyhow::ensure!(
            self.review_threshold.is_finite(),
            "--review-threshold must be finite"
        );
        let opts = ExportOptions {
            run: self.run.clone(),
            checkpoint: self.checkpoint.clone(),
            out: self.out.clone(),
            dtype: match self.dtype {
                DtypeArg::F32 => ExportDtype::F32,
                DtypeArg::F16 => ExportDtype::F16,
            },
            review: Review {
                score: self.review_score.clone(),
                threshold: self.review_threshold,
            },
            test_time_flips: self.test_time_flips,
            max_scan_spacing_mm: self.max_scan_spacing_mm,
        };
        let prov = export(&opts)?;
        println!(
            "wrote {} ({:?}, {} parameters, best validation Dice {})",
            opts.out.display(),
            opts.dtype,
            prov["parameters"],
            prov["best_val_dice"]
        );
        Ok(())
    }
}
