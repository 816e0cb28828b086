//! A run's start: a fresh model (or `--init` weights) and optimiser, or the newest checkpoint.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::Device;

use super::checkpoint::{self, TrainState};
use super::TrainOptions;
use crate::dataset::PatchDataset;
use crate::model::{UNet, UNetConfig};

fn optimizer(opts: &TrainOptions) -> ModuleOptimizer {
    let mut cfg = AdamConfig::new().with_epsilon(1e-8);
    if opts.weight_decay > 0.0 {
        cfg = cfg.with_weight_decay(Some(WeightDecayConfig::new(opts.weight_decay as f32)));
    }
    cfg.init()
}

/// A fresh model and state, or the newest checkpoint's model, optimiser and state.
pub(super) fn start_or_resume(
    opts: &TrainOptions,
    data: &PatchDataset,
    train_idx: &[usize],
    ad: &Device,
) -> Result<(UNet, ModuleOptimizer, TrainState)> {
    let optim = optimizer(opts);
    match checkpoint::latest(&opts.out)? {
        Some((epoch, dir)) if opts.resume => {
            let state = checkpoint::load_state(&dir)?;
            let wanted = UNetConfig {
                patch_size: state.config.patch_size,
                spacing_mm: state.config.spacing_mm,
                ..opts.config.clone()
            };
            if wanted != state.config {
                eprintln!(
                    "note: resuming with the checkpoint's model config, not the command line's"
                );
            }
            let model = checkpoint::load_model(&dir, &state.config, ad)?;
            let optim = checkpoint::load_optim(&dir, optim)?;
            eprintln!("resuming from {} (epoch {epoch})", dir.display());
            Ok((model, optim, state))
        }
        None if opts.resume => bail!(
            "--resume: no checkpoint in {}",
            opts.out.join("checkpoints").display()
        ),
        _ => {
            // The patch geometry comes from the data; the config stores it (x, y, z).
            let first = &data.records[train_idx[0]];
            let mut config = opts.config.clone();
            config.patch_size = [first.shape[2], first.shape[1], first.shape[0]];
            if let Some(s) = first.spacing_mm {
                config.spacing_mm = s;
            }
            config.validate()?;
            ad.seed(opts.seed);
            let state = TrainState {
                epoch: 0,
                step: 0,
                best_val_dice: -1.0,
                best_val_loss: f64::INFINITY,
                best_epoch: 0,
                epochs_since_best: 0,
                seed: opts.seed,
                config,
            };
            let model = match &opts.init {
                Some(path) => init_from(path, &state.config, ad)?,
                None => with_prior_bias(state.config.init(ad), opts.fg_prior)?,
            };
            Ok((model, optim, state))
        }
    }
}

/// The weights of the exported model at `path`, whose network must be `config`'s
/// (architecture, HU window, and the data's patch geometry): fine-tuning must not silently
/// change the network it continues. Dropout may differ (it has no weights): the run's applies.
fn init_from(path: &Path, config: &UNetConfig, ad: &Device) -> Result<UNet> {
    let bytes =
        std::fs::read(path).with_context(|| format!("--init: cannot read {}", path.display()))?;
    let (model, file_config) = crate::import::from_safetensors(&bytes, ad)
        .with_context(|| format!("--init: {}", path.display()))?;
    let same_network = UNetConfig {
        dropout: config.dropout.clone(),
        ..file_config.clone()
    } == *config;
    ensure!(
        same_network,
        "--init: {} holds a different network or data geometry than this run:\n  file: {}\n  run:  {}",
        path.display(),
        serde_json::to_string(&file_config)?,
        serde_json::to_string(config)?
    );
    Ok(model.with_dropout(&config.dropout))
}

/// Sets the head's bias to `logit(prior)` (see [`TrainOptions::fg_prior`]); `prior = 0` leaves
/// the model as it is.
pub fn with_prior_bias(mut model: UNet, prior: f64) -> Result<UNet> {
    if prior == 0.0 {
        return Ok(model);
    }
    ensure!(
        prior > 0.0 && prior < 1.0,
        "--fg-prior {prior} must be in (0, 1), or 0 to keep the default initialisation"
    );
    let logit = (prior / (1.0 - prior)).ln();
    model.head.bias = model.head.bias.map(|b| {
        b.map(|t| {
            let grad = t.is_require_grad();
            t.zeros_like()
                .add_scalar(logit)
                .detach()
                .set_require_grad(grad)
        })
    });
    Ok(model)
}
