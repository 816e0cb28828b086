//! Per-epoch metrics, appended to `metrics.csv` and `metrics.jsonl` in the run folder.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One epoch's numbers. Dice values are hard Dice (p > 0.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training loss (BCE + Dice loss) over the epoch's batches; `loss` in the files, the
    /// column name `evaluate`'s training-curve figure reads.
    #[serde(rename = "loss")]
    pub train_loss: f64,
    pub train_bce: f64,
    /// Training Dice pooled over the epoch (augmented data, dropout on).
    pub train_dice: f64,
    pub val_loss: f64,
    /// Mean per-patch Dice over validation patches with a non-empty mask: what early stopping
    /// and the best checkpoint use.
    pub val_dice: f64,
    /// Validation Dice pooled over all validation voxels.
    pub val_dice_pooled: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub seconds: f64,
    /// Training patches per second (forward + backward + optimiser step + data).
    pub patches_per_s: f64,
}

const CSV_HEADER: &str =
    "epoch,loss,train_bce,train_dice,val_loss,val_dice,val_dice_pooled,lr,seconds,patches_per_s";

/// Writes both files; on resume it first drops rows after the checkpoint's epoch so that the
/// files never hold an epoch twice.
pub struct MetricsLog {
    csv: PathBuf,
    jsonl: PathBuf,
}

impl MetricsLog {
    /// Opens the log in `dir`, keeping only the rows with `epoch <= keep_until`.
    pub fn open(dir: &Path, keep_until: usize) -> Result<Self> {
        let log = MetricsLog {
            csv: dir.join("metrics.csv"),
            jsonl: dir.join("metrics.jsonl"),
        };
        let kept: Vec<EpochMetrics> = log
            .read()?
            .into_iter()
            .filter(|m| m.epoch <= keep_until)
            .collect();
        let mut csv = String::from(CSV_HEADER);
        csv.push('\n');
        let mut jsonl = String::new();
        for m in &kept {
            csv.push_str(&csv_row(m));
            jsonl.push_str(&serde_json::to_string(m)?);
            jsonl.push('\n');
        }
        fs::write(&log.csv, csv).with_context(|| format!("cannot write {}", log.csv.display()))?;
        fs::write(&log.jsonl, jsonl)
            .with_context(|| format!("cannot write {}", log.jsonl.display()))?;
        Ok(log)
    }

    /// All rows of `metrics.jsonl` (empty if the file does not exist).
    pub fn read(&self) -> Result<Vec<EpochMetrics>> {
        read_jsonl(&self.jsonl)
    }

    pub fn append(&self, m: &EpochMetrics) -> Result<()> {
        append(&self.csv, &csv_row(m))?;
        append(&self.jsonl, &(serde_json::to_string(m)? + "\n"))
    }
}

/// Reads a `metrics.jsonl` file.
pub fn read_jsonl(path: &Path) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

fn csv_row(m: &EpochMetrics) -> String {
    format!(
        "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.2},{:.3}\n",
        m.epoch,
        m.train_loss,
        m.train_bce,
        m.train_dice,
        m.val_loss,
        m.val_dice,
        m.val_dice_pooled,
        m.lr,
        m.seconds,
        m.patches_per_s
    )
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
