//! The `train` command: a hand-written Burn loop (Dice + BCE, Adam with warmup + cosine,
//! augmentation, early stopping, checkpoints, resume, metrics files).
//!
//! Hand-written rather than Burn's `Learner` so that the seed fixes data order, augmentation
//! and dropout masks, and a resumed run replays the same streams.

pub mod args;
pub mod augment;
pub mod backend;
mod batch;
pub mod checkpoint;
mod epoch;
pub mod loss;
pub mod metrics;
pub mod parallel;
pub mod prefetch;
pub mod rng;
mod start;
mod validate;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use backend::{Backend, DeviceSpec};
pub use batch::{load_batch, Batch};
pub use start::with_prior_bias;
pub use validate::{evaluate, is_better, Validation};

use crate::dataset::PatchDataset;
use crate::model::{UNet, UNetConfig};
use augment::AugmentConfig;
use batch::check_crop;
use checkpoint::TrainState;
use epoch::{train_epoch, EpochRun, EpochTrain};
use loss::DiceLoss;
use metrics::{EpochMetrics, MetricsLog};
use parallel::DataParallel;
use rng::Rng;
use start::start_or_resume;

/// Everything `train` needs. `Default` is the documented long run on the default config.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Dataset folder (`manifest.jsonl`).
    pub data: PathBuf,
    /// Run folder: checkpoints, best model, metrics.
    pub out: PathBuf,
    pub config: UNetConfig,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (after warmup).
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup from 0 over this many epochs.
    pub warmup_epochs: usize,
    /// L2 weight decay added to the gradient (Adam, not AdamW); 0 disables.
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation Dice; 0 never stops early.
    pub patience: usize,
    /// Write a resumable checkpoint every this many epochs (and after the last).
    pub checkpoint_every: usize,
    pub seed: u64,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    /// Start a fresh run from this exported model's weights (fine-tuning; its config must be
    /// the run's) instead of a random initialisation. Ignored when resuming (the checkpoint
    /// holds the weights).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// `None` trains on the raw patches.
    #[serde(default)]
    pub augment: Option<AugmentConfig>,
    /// Start the head's bias at `logit(fg_prior)` (Lin et al., "Focal loss", 2017); `0` keeps
    /// Burn's initialisation. Nodules fill ~1% of a patch: from a bias near 0 (p ≈ 0.5
    /// everywhere) Adam spends hundreds of steps, ~lr per step, only pushing the logits down to
    /// the background level, and a short run ends with no voxel above 0.5.
    #[serde(default)]
    pub fg_prior: f64,
    /// Cap on batches per epoch (smoke tests, the demo); `None` uses every training patch.
    pub max_batches: Option<usize>,
    pub backend: Backend,
    /// The (first) device; `None` is the backend's default (see [`DeviceSpec`]).
    #[serde(default)]
    pub device: Option<DeviceSpec>,
    /// Devices to split each batch over (data parallel, see [`parallel`]); 1 trains on one.
    #[serde(default = "one")]
    pub devices: usize,
    /// Batches read and augmented ahead on a loader thread (see [`prefetch`]); 0 reads each
    /// batch on the training thread when it is needed.
    #[serde(default = "two")]
    pub prefetch: usize,
    /// Draw progress bars (they also hide themselves when stderr is not a terminal).
    pub progress: bool,
    /// The loss's soft Dice term: pooled over the batch, per patch, or per patch with negative
    /// patches charged for their predicted volume ([`DiceLoss`]). The validation loss is
    /// always the pooled one, so runs stay comparable.
    #[serde(default)]
    pub dice: DiceLoss,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            data: PathBuf::from("data/patches"),
            out: PathBuf::from("runs/train"),
            config: UNetConfig::default(),
            epochs: 60,
            batch_size: 2,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_epochs: 1,
            weight_decay: 0.0,
            patience: 10,
            checkpoint_every: 5,
            seed: 0,
            resume: false,
            init: None,
            augment: Some(AugmentConfig::default()),
            fg_prior: 0.01,
            max_batches: None,
            backend: Backend::Flex,
            device: None,
            devices: 1,
            prefetch: 2,
            progress: true,
            dice: DiceLoss::Pooled,
        }
    }
}

fn one() -> usize {
    1
}

fn two() -> usize {
    2
}

/// What a finished run reports (also written to `<out>/summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_dice: f64,
    pub stopped_early: bool,
    pub final_train_loss: f64,
    pub seconds: f64,
}

/// Learning rate at optimiser step `step` of `total`: linear warmup, then cosine to `min_lr`.
pub fn learning_rate(step: u64, total: u64, warmup: u64, lr: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f64 / span as f64).min(1.0);
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Stream ids for [`Rng::derive`].
const STREAM_SHUFFLE: u64 = 1;
const STREAM_AUGMENT: u64 = 2;
const STREAM_DROPOUT: u64 = 3;
/// Data parallel: shard `i` of step `s` draws its dropout masks from `(seed, s, this + i)`.
const STREAM_SHARD_DROPOUT: u64 = 1000;

/// Runs (or resumes) training as `opts` says; returns the summary also written to
/// `<out>/summary.json`.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    check_options(opts)?;
    let (data, train_idx, val_idx) = open_splits(&opts.data)?;
    fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;

    let devices = opts.backend.devices(opts.device, opts.devices)?;
    let device = devices[0].clone();
    let ad = device.clone().autodiff();
    let dp = data_parallel(opts, &devices)?;
    let (mut model, mut optim, mut state) = start_or_resume(opts, &data, &train_idx, &ad)?;
    let config = state.config.clone();
    check_patches(&data, &train_idx, &config, opts.augment.as_ref())?;
    write_run_files(opts, &config)?;
    let log = MetricsLog::open(&opts.out, state.epoch)?;

    let batches_per_epoch = {
        let n = train_idx.len().div_ceil(opts.batch_size);
        opts.max_batches.map_or(n, |m| n.min(m.max(1)))
    };
    let run = EpochRun {
        opts,
        data: &data,
        config: &config,
        ad: &ad,
        dp: dp.as_ref(),
        total_steps: (opts.epochs * batches_per_epoch) as u64,
        warmup_steps: (opts.warmup_epochs * batches_per_epoch) as u64,
        batches_per_epoch,
    };
    let mut stopped_early = false;
    let mut final_train_loss = f64::NAN;
    let mut epoch_seconds = Vec::new();
    for epoch in state.epoch + 1..=opts.epochs {
        let t0 = Instant::now();
        let mut order = train_idx.clone();
        Rng::derive(opts.seed, epoch as u64, STREAM_SHUFFLE).shuffle(&mut order);
        ad.seed(Rng::derive(opts.seed, epoch as u64, STREAM_DROPOUT).next_u64());
        let sums;
        (model, sums) = train_epoch(&run, epoch, model, &mut optim, &mut state, &order)?;
        let train_seconds = t0.elapsed().as_secs_f64();
        let val = evaluate(&model, &data, &val_idx, &config, opts.batch_size, &device)?;
        let m = epoch_metrics(epoch, &sums, val, t0.elapsed().as_secs_f64(), train_seconds);
        final_train_loss = m.train_loss;
        log.append(&m)?;
        epoch_seconds.push(m.seconds);
        let improved;
        (improved, stopped_early) = end_epoch(opts, &mut state, val, &model, &optim)?;
        let mean_epoch = epoch_seconds.iter().sum::<f64>() / epoch_seconds.len() as f64;
        let eta = (epoch < opts.epochs && !stopped_early)
            .then(|| mean_epoch * (opts.epochs - epoch) as f64);
        print_epoch(opts, &m, sums.data_wait, improved, eta);
        if stopped_early {
            eprintln!(
                "early stop: no better validation Dice for {} epochs",
                opts.patience
            );
            break;
        }
    }

    let summary = TrainSummary {
        epochs_run: state.epoch,
        best_epoch: state.best_epoch,
        best_val_dice: state.best_val_dice,
        stopped_early,
        final_train_loss,
        seconds: started.elapsed().as_secs_f64(),
    };
    fs::write(
        opts.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

fn check_options(opts: &TrainOptions) -> Result<()> {
    ensure!(opts.batch_size >= 1, "--batch-size must be ≥ 1");
    ensure!(opts.epochs >= 1, "--epochs must be ≥ 1");
    ensure!(opts.checkpoint_every >= 1, "--checkpoint-every must be ≥ 1");
    ensure!(
        opts.lr > 0.0 && opts.min_lr >= 0.0,
        "learning rates must be positive"
    );
    Ok(())
}

/// The dataset and its training and validation patches (both must exist).
fn open_splits(path: &Path) -> Result<(PatchDataset, Vec<usize>, Vec<usize>)> {
    let data = PatchDataset::open(path)?;
    let train_idx = data.split("train");
    let val_idx = data.split("val");
    ensure!(
        !train_idx.is_empty(),
        "{}: no patches with split 'train'",
        path.display()
    );
    ensure!(
        !val_idx.is_empty(),
        "{}: no patches with split 'val' (needed for early stopping)",
        path.display()
    );
    Ok((data, train_idx, val_idx))
}

/// The data-parallel replicas when there is more than one device.
fn data_parallel(opts: &TrainOptions, devices: &[Device]) -> Result<Option<DataParallel>> {
    if devices.len() < 2 {
        return Ok(None);
    }
    if opts.backend.is_cpu(opts.device) {
        eprintln!(
            "note: the {} replicas share the one CPU device's cores (tests the \
             data-parallel path, no speed-up)",
            devices.len()
        );
    }
    if opts.batch_size < devices.len() {
        eprintln!(
            "note: batch size {} < {} devices: some devices idle every step",
            opts.batch_size,
            devices.len()
        );
    }
    let replicas = devices.iter().map(|d| d.clone().autodiff()).collect();
    Ok(Some(DataParallel::new(replicas)?.with_dice(opts.dice)))
}

/// The data's patches must be the model's, and the training crop must fit them.
fn check_patches(
    data: &PatchDataset,
    train_idx: &[usize],
    config: &UNetConfig,
    augment: Option<&AugmentConfig>,
) -> Result<()> {
    let patch = data.records[train_idx[0]].shape;
    ensure!(
        [patch[2], patch[1], patch[0]] == config.patch_size,
        "the data's patches are {patch:?} (z, y, x) but the model's patch_size is {:?} (x, y, z)",
        config.patch_size
    );
    check_crop(augment, config)
}

/// `config.json` and `options.json` in the run folder.
fn write_run_files(opts: &TrainOptions, config: &UNetConfig) -> Result<()> {
    fs::write(opts.out.join("config.json"), serde_json::to_string(config)?)?;
    fs::write(
        opts.out.join("options.json"),
        serde_json::to_string_pretty(opts)?,
    )?;
    Ok(())
}

fn epoch_metrics(
    epoch: usize,
    sums: &EpochTrain,
    val: Validation,
    seconds: f64,
    train_seconds: f64,
) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: sums.loss_sum / sums.seen as f64,
        train_bce: sums.bce_sum / sums.seen as f64,
        train_dice: sums.overlap.dice(),
        val_loss: val.loss,
        val_dice: val.dice,
        val_dice_pooled: val.dice_pooled,
        lr: sums.lr,
        seconds,
        patches_per_s: sums.seen as f64 / train_seconds,
    }
}

/// Records the finished epoch in `state`, saves the best model and the checkpoints; returns
/// whether the epoch was the best so far and whether early stopping ends the run.
fn end_epoch(
    opts: &TrainOptions,
    state: &mut TrainState,
    val: Validation,
    model: &UNet,
    optim: &ModuleOptimizer,
) -> Result<(bool, bool)> {
    let epoch = state.epoch + 1;
    state.epoch = epoch;
    let improved = is_better(val, state.best_val_dice, state.best_val_loss);
    if improved {
        state.best_val_dice = val.dice;
        state.best_val_loss = val.loss;
        state.best_epoch = epoch;
        state.epochs_since_best = 0;
        checkpoint::save(&checkpoint::best_dir(&opts.out), model, None, state)?;
    } else {
        state.epochs_since_best += 1;
    }
    let stopped_early = opts.patience > 0 && state.epochs_since_best >= opts.patience;
    if epoch.is_multiple_of(opts.checkpoint_every) || epoch == opts.epochs || stopped_early {
        checkpoint::save(
            &checkpoint::checkpoint_dir(&opts.out, epoch),
            model,
            Some(optim),
            state,
        )?;
    }
    Ok((improved, stopped_early))
}

fn print_epoch(
    opts: &TrainOptions,
    m: &EpochMetrics,
    data_wait: f64,
    best: bool,
    eta: Option<f64>,
) {
    eprintln!(
        "epoch {:>3}/{}: loss {:.4} (bce {:.4}) dice train {:.3} val {:.3} (pooled {:.3}) lr {:.2e} {:.1}s (data wait {:.2}s){}{}",
        m.epoch,
        opts.epochs,
        m.train_loss,
        m.train_bce,
        m.train_dice,
        m.val_dice,
        m.val_dice_pooled,
        m.lr,
        m.seconds,
        data_wait,
        if best { " *best*" } else { "" },
        eta.map_or(String::new(), |s| format!(" | ETA {s:.0}s")),
    );
}

/// The run folder's model config (`config.json`).
pub fn read_config(run: &Path) -> Result<UNetConfig> {
    let path = run.join("config.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a model config", path.display()))
}
