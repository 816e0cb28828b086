//! The `train` command: a hand-written Burn loop (Dice + BCE, Adam with warmup + cosine,
//! augmentation, early stopping, checkpoints, resume, metrics files).
//!
//! Hand-written rather than Burn's `Learner` so that the seed fixes data order, augmentation
//! and dropout masks, and a resumed run replays the same streams.

pub mod args;
pub mod augment;
pub mod backend;
pub mod checkpoint;
pub mod loss;
pub mod metrics;
pub mod parallel;
pub mod prefetch;
pub mod rng;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
pub use backend::{Backend, DeviceSpec};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::dataset::PatchDataset;
use crate::metrics::{Confusion, PatchClass};
use crate::model::{UNet, UNetConfig};
use augment::{augment, augmented_shape, AugmentConfig};
use checkpoint::TrainState;
use loss::{dice_bce, DiceLoss};
use metrics::{EpochMetrics, MetricsLog};
use parallel::{DataParallel, ShardOutput};
use rng::Rng;

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

/// A batch as host arrays: normalised images and 0/1 masks, `[B, 1, D, H, W]`.
pub struct Batch {
    pub shape: [usize; 5],
    pub image: Vec<f32>,
    pub mask: Vec<f32>,
}

impl Batch {
    /// Patches `start..end` of the batch.
    pub fn slice(&self, start: usize, end: usize) -> Batch {
        let per: usize = self.shape[1..].iter().product();
        let mut shape = self.shape;
        shape[0] = end - start;
        Batch {
            shape,
            image: self.image[start * per..end * per].to_vec(),
            mask: self.mask[start * per..end * per].to_vec(),
        }
    }

    pub fn tensors(&self, device: &Device) -> (Tensor<5>, Tensor<5>) {
        let x = Tensor::from_data(TensorData::new(self.image.clone(), self.shape), device);
        let y = Tensor::from_data(TensorData::new(self.mask.clone(), self.shape), device);
        (x, y)
    }
}

/// A training crop must fit the patch and halve evenly at every pooling of the U-Net.
fn check_crop(aug: Option<&AugmentConfig>, config: &UNetConfig) -> Result<()> {
    let Some(edge) = aug.and_then(|a| a.crop) else {
        return Ok(());
    };
    let step = 1usize << (config.channels.len() - 1);
    ensure!(
        edge > 0 && edge.is_multiple_of(step),
        "--crop {edge} must be a positive multiple of {step} (2^(levels-1) for {} levels)",
        config.channels.len()
    );
    ensure!(
        config.patch_size.iter().all(|&n| edge <= n),
        "--crop {edge} is larger than the patches {:?}",
        config.patch_size
    );
    Ok(())
}

/// Reads, normalises and (optionally) augments the patches `idx` into one batch.
pub fn load_batch(
    data: &PatchDataset,
    idx: &[usize],
    config: &UNetConfig,
    aug: Option<(&AugmentConfig, &mut Rng)>,
) -> Result<Batch> {
    let shape = data.records[idx[0]].shape;
    let mut image = Vec::with_capacity(idx.len() * shape.iter().product::<usize>());
    let mut mask = Vec::with_capacity(image.capacity());
    let mut aug = aug;
    let out_shape = aug
        .as_ref()
        .map_or(shape, |(cfg, _)| augmented_shape(cfg, shape));
    for &i in idx {
        let p = data.load(i)?;
        ensure!(
            p.shape == shape,
            "patch {} has shape {:?}, the batch {:?}",
            data.records[i].id,
            p.shape,
            shape
        );
        let img: Vec<f32> = p.hu.iter().map(|&h| config.normalize_hu(h)).collect();
        let (img, m) = match aug.as_mut() {
            Some((cfg, rng)) => augment(&img, &p.mask, shape, cfg, rng),
            None => (img, p.mask),
        };
        image.extend_from_slice(&img);
        mask.extend(m.iter().map(|&v| f32::from(v)));
    }
    Ok(Batch {
        shape: [idx.len(), 1, out_shape[0], out_shape[1], out_shape[2]],
        image,
        mask,
    })
}

/// Validation numbers (eval mode: running BN statistics, no dropout, no augmentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    pub loss: f64,
    /// Mean hard Dice over the nodule patches ([`PatchClass::Nodule`]; pooled Dice if there are
    /// none).
    pub dice: f64,
    /// Hard Dice pooled over all voxels.
    pub dice_pooled: f64,
}

/// Runs `model` in eval mode over the patches `idx`.
pub fn evaluate(
    model: &UNet,
    data: &PatchDataset,
    idx: &[usize],
    config: &UNetConfig,
    batch_size: usize,
    device: &Device,
) -> Result<Validation> {
    let model = model.valid();
    let (mut loss_sum, mut n) = (0.0, 0usize);
    let (mut dice_sum, mut positives) = (0.0, 0usize);
    let mut pooled = Confusion::default();
    for chunk in idx.chunks(batch_size.max(1)) {
        let batch = load_batch(data, chunk, config, None)?;
        let (x, y) = batch.tensors(device);
        let logits = model.forward(x);
        let loss = dice_bce(logits.clone(), y).total.into_scalar::<f32>();
        loss_sum += f64::from(loss) * chunk.len() as f64;
        n += chunk.len();
        let logits = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let per = logits.len() / chunk.len();
        for ((l, t), &i) in logits.chunks(per).zip(batch.mask.chunks(per)).zip(chunk) {
            let o = confusion(t, l);
            pooled.add(&o);
            if PatchClass::of(data.records[i].label == 1, o.gt_voxels()) == PatchClass::Nodule {
                dice_sum += o.dice();
                positives += 1;
            }
        }
    }
    Ok(Validation {
        loss: loss_sum / n.max(1) as f64,
        dice: if positives > 0 {
            dice_sum / positives as f64
        } else {
            pooled.dice()
        },
        dice_pooled: pooled.dice(),
    })
}

/// Voxel counts of one patch's logits against its mask (the metrics layer's definition).
fn confusion(mask: &[f32], logits: &[f32]) -> Confusion {
    Confusion::from_logits(mask, logits).expect("logits and masks of one batch have equal sizes")
}

fn optimizer(opts: &TrainOptions) -> ModuleOptimizer {
    let mut cfg = AdamConfig::new().with_epsilon(1e-8);
    if opts.weight_decay > 0.0 {
        cfg = cfg.with_weight_decay(Some(WeightDecayConfig::new(opts.weight_decay as f32)));
    }
    cfg.init()
}

fn progress_bar(len: usize, prefix: String, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64).with_prefix(prefix);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// A fresh model and state, or the newest checkpoint's model, optimiser and state.
fn start_or_resume(
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

/// Whether validation `v` beats the best so far: a higher Dice, or the same Dice with a lower loss.
pub fn is_better(v: Validation, best_dice: f64, best_loss: f64) -> bool {
    v.dice > best_dice || (v.dice == best_dice && v.loss < best_loss)
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

/// Sums over one epoch's training batches.
#[derive(Default)]
struct EpochTrain {
    loss_sum: f64,
    bce_sum: f64,
    seen: usize,
    overlap: Confusion,
    lr: f64,
    /// Seconds the training thread waited for batches.
    data_wait: f64,
}

impl EpochTrain {
    /// Adds the loss and overlap of `shards`, the consecutive parts of `batch`.
    fn add(&mut self, batch: &Batch, shards: &[ShardOutput]) {
        let per: usize = batch.shape[1..].iter().product();
        let mut start = 0;
        for s in shards {
            self.loss_sum += s.loss * s.n as f64;
            self.bce_sum += s.bce * s.n as f64;
            self.seen += s.n;
            let mask = &batch.mask[start * per..(start + s.n) * per];
            self.overlap.add(&confusion(mask, &s.logits));
            start += s.n;
        }
    }
}

/// One optimiser step on `batch` on one device (the backend's random source as seeded per
/// epoch); adds its loss and overlap to `sums`.
fn train_step(
    model: UNet,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    lr: f64,
    ad: &Device,
    sums: &mut EpochTrain,
    dice: DiceLoss,
) -> Result<UNet> {
    let mut out = parallel::forward_backward(&model, ad, batch, 1.0, None, dice)?;
    let grads = std::mem::take(&mut out.grads);
    sums.add(batch, std::slice::from_ref(&out));
    Ok(optim.step(lr, model, grads))
}

/// [`train_step`] with the batch split over `dp`'s devices; shard `i` seeds its dropout masks
/// from `(seed, step, STREAM_SHARD_DROPOUT + i)`.
fn train_step_parallel(
    model: UNet,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    lr: f64,
    dp: &DataParallel,
    seed: (u64, u64),
    sums: &mut EpochTrain,
) -> Result<UNet> {
    let (seed, step) = seed;
    let out = dp.step(&model, batch, |i| {
        Rng::derive(seed, step, STREAM_SHARD_DROPOUT + i as u64).next_u64()
    })?;
    sums.add(batch, &out.shards);
    Ok(optim.step(lr, model, out.grads))
}

/// What every epoch of a run shares.
struct EpochRun<'a> {
    opts: &'a TrainOptions,
    data: &'a PatchDataset,
    config: &'a UNetConfig,
    ad: &'a Device,
    dp: Option<&'a DataParallel>,
    total_steps: u64,
    warmup_steps: u64,
    batches_per_epoch: usize,
}

/// The optimiser steps of `epoch` over the patches `order`, batches read ahead by the loader
/// thread ([`prefetch`]); returns the model and the epoch's sums.
fn train_epoch(
    run: &EpochRun,
    epoch: usize,
    model: UNet,
    optim: &mut ModuleOptimizer,
    state: &mut TrainState,
    order: &[usize],
) -> Result<(UNet, EpochTrain)> {
    let opts = run.opts;
    let (data, config) = (run.data, run.config);
    let mut aug_rng = Rng::derive(opts.seed, epoch as u64, STREAM_AUGMENT);
    let aug_rng = &mut aug_rng;
    let batches = order
        .chunks(opts.batch_size)
        .take(run.batches_per_epoch)
        .map(move |chunk| {
            let aug = opts.augment.as_ref().map(|a| (a, &mut *aug_rng));
            load_batch(data, chunk, config, aug)
        });
    let mut sums = EpochTrain::default();
    let bar = progress_bar(
        run.batches_per_epoch,
        format!("epoch {epoch}/{}", opts.epochs),
        opts.progress,
    );
    let model = prefetch::prefetched(opts.prefetch, batches, |batches| {
        let mut model = model;
        loop {
            let wait = Instant::now();
            let Some(batch) = batches.next() else {
                break;
            };
            sums.data_wait += wait.elapsed().as_secs_f64();
            let batch = batch?;
            sums.lr = learning_rate(
                state.step,
                run.total_steps,
                run.warmup_steps,
                opts.lr,
                opts.min_lr,
            );
            model = match run.dp {
                None => train_step(
                    model,
                    optim,
                    &batch,
                    sums.lr,
                    run.ad,
                    &mut sums,
                    run.opts.dice,
                )?,
                Some(dp) => train_step_parallel(
                    model,
                    optim,
                    &batch,
                    sums.lr,
                    dp,
                    (opts.seed, state.step),
                    &mut sums,
                )?,
            };
            state.step += 1;
            bar.set_message(format!("loss {:.4}", sums.loss_sum / sums.seen as f64));
            bar.inc(1);
        }
        Ok::<_, anyhow::Error>(model)
    })??;
    bar.finish_and_clear();
    Ok((model, sums))
}

/// Runs (or resumes) training as `opts` says; returns the summary also written to
/// `<out>/summary.json`.
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    let started = Instant::now();
    ensure!(opts.batch_size >= 1, "--batch-size must be ≥ 1");
    ensure!(opts.epochs >= 1, "--epochs must be ≥ 1");
    ensure!(opts.checkpoint_every >= 1, "--checkpoint-every must be ≥ 1");
    ensure!(
        opts.lr > 0.0 && opts.min_lr >= 0.0,
        "learning rates must be positive"
    );
    let data = PatchDataset::open(&opts.data)?;
    let train_idx = data.split("train");
    let val_idx = data.split("val");
    ensure!(
        !train_idx.is_empty(),
        "{}: no patches with split 'train'",
        opts.data.display()
    );
    ensure!(
        !val_idx.is_empty(),
        "{}: no patches with split 'val' (needed for early stopping)",
        opts.data.display()
    );
    fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;

    let devices = opts.backend.devices(opts.device, opts.devices)?;
    let device = devices[0].clone();
    let ad = device.clone().autodiff();
    let dp = if devices.len() > 1 {
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
        Some(
            DataParallel::new(devices.iter().map(|d| d.clone().autodiff()).collect())?
                .with_dice(opts.dice),
        )
    } else {
        None
    };

    let (mut model, mut optim, mut state) = start_or_resume(opts, &data, &train_idx, &ad)?;
    let config = state.config.clone();
    let patch = data.records[train_idx[0]].shape;
    ensure!(
        [patch[2], patch[1], patch[0]] == config.patch_size,
        "the data's patches are {patch:?} (z, y, x) but the model's patch_size is {:?} (x, y, z)",
        config.patch_size
    );
    check_crop(opts.augment.as_ref(), &config)?;
    fs::write(
        opts.out.join("config.json"),
        serde_json::to_string(&config)?,
    )?;
    fs::write(
        opts.out.join("options.json"),
        serde_json::to_string_pretty(opts)?,
    )?;
    let log = MetricsLog::open(&opts.out, state.epoch)?;

    let batches_per_epoch = {
        let n = train_idx.len().div_ceil(opts.batch_size);
        opts.max_batches.map_or(n, |m| n.min(m.max(1)))
    };
    let total_steps = (opts.epochs * batches_per_epoch) as u64;
    let warmup_steps = (opts.warmup_epochs * batches_per_epoch) as u64;
    let run = EpochRun {
        opts,
        data: &data,
        config: &config,
        ad: &ad,
        dp: dp.as_ref(),
        total_steps,
        warmup_steps,
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
        let m = EpochMetrics {
            epoch,
            train_loss: sums.loss_sum / sums.seen as f64,
            train_bce: sums.bce_sum / sums.seen as f64,
            train_dice: sums.overlap.dice(),
            val_loss: val.loss,
            val_dice: val.dice,
            val_dice_pooled: val.dice_pooled,
            lr: sums.lr,
            seconds: t0.elapsed().as_secs_f64(),
            patches_per_s: sums.seen as f64 / train_seconds,
        };
        final_train_loss = m.train_loss;
        log.append(&m)?;
        epoch_seconds.push(m.seconds);

        state.epoch = epoch;
        let improved = is_better(val, state.best_val_dice, state.best_val_loss);
        if improved {
            state.best_val_dice = val.dice;
            state.best_val_loss = val.loss;
            state.best_epoch = epoch;
            state.epochs_since_best = 0;
            checkpoint::save(&checkpoint::best_dir(&opts.out), &model, None, &state)?;
        } else {
            state.epochs_since_best += 1;
        }
        stopped_early = opts.patience > 0 && state.epochs_since_best >= opts.patience;
        if epoch % opts.checkpoint_every == 0 || epoch == opts.epochs || stopped_early {
            checkpoint::save(
                &checkpoint::checkpoint_dir(&opts.out, epoch),
                &model,
                Some(&optim),
                &state,
            )?;
        }
        let mean_epoch = epoch_seconds.iter().sum::<f64>() / epoch_seconds.len() as f64;
        eprintln!(
            "epoch {epoch:>3}/{}: loss {:.4} (bce {:.4}) dice train {:.3} val {:.3} (pooled {:.3}) lr {:.2e} {:.1}s (data wait {:.2}s){}{}",
            opts.epochs,
            m.train_loss,
            m.train_bce,
            m.train_dice,
            m.val_dice,
            m.val_dice_pooled,
            m.lr,
            m.seconds,
            sums.data_wait,
            if improved { " *best*" } else { "" },
            if epoch < opts.epochs && !stopped_early {
                format!(" | ETA {:.0}s", mean_epoch * (opts.epochs - epoch) as f64)
            } else {
                String::new()
            },
        );
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

/// The run folder's model config (`config.json`).
pub fn read_config(run: &Path) -> Result<UNetConfig> {
    let path = run.join("config.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a model config", path.display()))
}
