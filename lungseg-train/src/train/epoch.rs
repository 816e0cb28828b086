//! One epoch of optimiser steps, on one device or split over several.

use std::time::Instant;

use anyhow::Result;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};

use super::batch::{load_batch, Batch};
use super::checkpoint::TrainState;
use super::loss::DiceLoss;
use super::parallel::{self, DataParallel, ShardOutput};
use super::rng::Rng;
use super::validate::confusion;
use super::{learning_rate, prefetch, TrainOptions, STREAM_AUGMENT, STREAM_SHARD_DROPOUT};
use crate::dataset::PatchDataset;
use crate::metrics::Confusion;
use crate::model::{UNet, UNetConfig};

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

/// Sums over one epoch's training batches.
#[derive(Default)]
pub(super) struct EpochTrain {
    pub(super) loss_sum: f64,
    pub(super) bce_sum: f64,
    pub(super) seen: usize,
    pub(super) overlap: Confusion,
    pub(super) lr: f64,
    /// Seconds the training thread waited for batches.
    pub(super) data_wait: f64,
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
pub(super) struct EpochRun<'a> {
    pub(super) opts: &'a TrainOptions,
    pub(super) data: &'a PatchDataset,
    pub(super) config: &'a UNetConfig,
    pub(super) ad: &'a Device,
    pub(super) dp: Option<&'a DataParallel>,
    pub(super) total_steps: u64,
    pub(super) warmup_steps: u64,
    pub(super) batches_per_epoch: usize,
}

/// The optimiser steps of `epoch` over the patches `order`, batches read ahead by the loader
/// thread ([`prefetch`]); returns the model and the epoch's sums.
pub(super) fn train_epoch(
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
