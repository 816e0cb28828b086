//! Checkpoints in a run folder: `checkpoints/epoch-NNNN/` every k epochs (model, optimiser,
//! state; what `--resume` continues from) and `best/` (model and state of the best validation
//! Dice; what `export` reads). Weights are Burn records (burnpack files).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::model::{UNet, UNetConfig};

pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIM_FILE: &str = "optim.bpk";
pub const STATE_FILE: &str = "state.json";

/// Everything besides the weights that a resumed run needs to continue as if uninterrupted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Last completed epoch (1-based).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    pub best_val_dice: f64,
    /// Validation loss of the best epoch: breaks ties in Dice (e.g. several epochs at 0 early
    /// on), so that the best checkpoint is not simply the first. Absent in older checkpoints.
    #[serde(default = "infinity")]
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub epochs_since_best: usize,
    pub seed: u64,
    pub config: UNetConfig,
}

fn infinity() -> f64 {
    f64::INFINITY
}

pub fn checkpoint_dir(run: &Path, epoch: usize) -> PathBuf {
    run.join("checkpoints").join(format!("epoch-{epoch:04}"))
}

pub fn best_dir(run: &Path) -> PathBuf {
    run.join("best")
}

/// Writes model (+ optimiser when given) and state into `dir`, replacing what was there.
pub fn save(
    dir: &Path,
    model: &UNet,
    optim: Option<&ModuleOptimizer>,
    state: &TrainState,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    model
        .clone()
        .save_file(dir.join(MODEL_FILE))
        .map_err(|e| anyhow::anyhow!("cannot save {}: {e:?}", dir.join(MODEL_FILE).display()))?;
    if let Some(optim) = optim {
        optim.save(dir.join(OPTIM_FILE)).map_err(|e| {
            anyhow::anyhow!("cannot save {}: {e:?}", dir.join(OPTIM_FILE).display())
        })?;
    }
    // State last: a folder with a state file is complete.
    fs::write(dir.join(STATE_FILE), serde_json::to_string_pretty(state)?)?;
    Ok(())
}

pub fn load_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a training state", path.display()))
}

/// Builds the network of `state.config` on `device` and loads the weights of `dir`.
pub fn load_model(dir: &Path, config: &UNetConfig, device: &Device) -> Result<UNet> {
    let path = dir.join(MODEL_FILE);
    config
        .init(device)
        .try_load_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e:?}", path.display()))
}

pub fn load_optim(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join(OPTIM_FILE);
    optim
        .load(&path)
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e:?}", path.display()))
}

/// The complete checkpoint with the highest epoch, if any.
pub fn latest(run: &Path) -> Result<Option<(usize, PathBuf)>> {
    let root = run.join("checkpoints");
    if !root.exists() {
        return Ok(None);
    }
    let mut best = None;
    for entry in fs::read_dir(&root).with_context(|| format!("cannot list {}", root.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(epoch) = name
            .to_str()
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let complete =
            entry.path().join(STATE_FILE).exists() && entry.path().join(OPTIM_FILE).exists();
        if complete && best.as_ref().is_none_or(|(e, _)| epoch > *e) {
            best = Some((epoch, entry.path()));
        }
    }
    Ok(best)
}
