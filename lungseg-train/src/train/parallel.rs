//! Data-parallel training steps over several devices, as Burn's `Learner` does it
//! (`MultiDevicesTrainStep` + `GradientsAccumulator`), inside our own seeded loop.
//!
//! Each step splits the batch into one contiguous shard per device. A worker thread per device
//! forks the model onto its device, computes Dice + BCE on its shard and backpropagates; the main
//! thread moves the gradients to the first device, sums them and takes one optimiser step there.
//! Each shard's loss is scaled by `shard / batch` before `backward`, so the sum is the
//! batch-size-weighted mean of the shard gradients. BatchNorm statistics and the pooled soft Dice
//! are per shard, as in PyTorch's DDP without `SyncBatchNorm`: with BatchNorm, k devices with a
//! batch of n train like one device with k batches of n/k, not like one batch of n.
//!
//! Workers are persistent threads because BatchNorm's `RunningState` keeps one running value per
//! thread and merges them (averaging) when a thread updates again or the model goes to `valid()`.
//!
//! Determinism: Burn's random source is process-global (flex and cubecl alike), so concurrent
//! forwards would draw dropout masks in thread-timing order. Each worker seeds from
//! `(seed, step, shard)` and runs its forward while holding [`FORWARD`]; the backward passes
//! run concurrently. On flex (one CPU device) the replicas share the cores, so more devices
//! bring no speed there; the path exists for several GPUs (`--backend wgpu`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, ensure, Result};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;

use super::loss::{dice_bce_with, DiceLoss};
use super::Batch;
use crate::model::UNet;

/// Held by a worker from seeding the random source to the end of its forward pass.
static FORWARD: Mutex<()> = Mutex::new(());

/// What one shard's forward and backward give.
pub struct ShardOutput {
    /// Gradients of `weight ×` the shard's loss, on the shard's device.
    pub grads: GradientsParams,
    /// The shard's unscaled loss terms.
    pub loss: f64,
    pub bce: f64,
    /// Logits, `[n, 1, D, H, W]` flattened.
    pub logits: Vec<f32>,
    pub n: usize,
}

/// Forward and backward of `model` forked onto `device` (its own autodiff graph, as each worker
/// needs) on `shard`. With `seed`, the random source is seeded and the forward runs under
/// [`FORWARD`], so dropout masks depend only on the seed.
pub fn shard_step(
    model: &UNet,
    device: &Device,
    shard: &Batch,
    weight: f64,
    seed: Option<u64>,
    dice: DiceLoss,
) -> Result<ShardOutput> {
    forward_backward(
        &model.clone().fork(device),
        device,
        shard,
        weight,
        seed,
        dice,
    )
}

/// [`shard_step`] without the fork: `model` must live on `device` already. The single-device
/// loop uses it directly (a fork, even onto the same device, changes the last bits of the run).
pub fn forward_backward(
    model: &UNet,
    device: &Device,
    shard: &Batch,
    weight: f64,
    seed: Option<u64>,
    dice: DiceLoss,
) -> Result<ShardOutput> {
    let (x, y) = shard.tensors(device);
    let (logits, loss) = {
        let _guard = seed.map(|_| FORWARD.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(s) = seed {
            device.seed(s);
        }
        let logits = model.forward(x);
        let loss = dice_bce_with(logits.clone(), y, dice);
        (logits, loss)
    };
    let grads =
        GradientsParams::from_grads(loss.total.clone().mul_scalar(weight).backward(), model);
    let l = f64::from(loss.total.into_scalar::<f32>());
    ensure!(l.is_finite(), "training diverged: loss = {l}");
    let logits = logits
        .detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(ShardOutput {
        grads,
        loss: l,
        bce: f64::from(loss.bce.into_scalar::<f32>()),
        logits,
        n: shard.shape[0],
    })
}

/// The sizes of `k` contiguous shards of `n` patches, as even as possible, larger ones first.
pub fn shard_sizes(n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n).max(1);
    (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
}

/// One step's result: the summed gradients on the main device and the shards in order.
pub struct StepOutput {
    pub grads: GradientsParams,
    pub shards: Vec<ShardOutput>,
}

struct Job {
    model: UNet,
    shard: Batch,
    weight: f64,
    seed: u64,
    dice: DiceLoss,
}

type Reply = (usize, std::result::Result<ShardOutput, String>);

/// One persistent worker thread per device.
pub struct DataParallel {
    devices: Vec<Device>,
    /// The loss's Dice term on every shard ([`DataParallel::with_dice`]; pooled by default).
    dice: DiceLoss,
    senders: Vec<Sender<Job>>,
    replies: Receiver<Reply>,
    threads: Vec<JoinHandle<()>>,
}

impl DataParallel {
    /// Starts one worker per device; the first device is the main one (optimiser, validation).
    pub fn new(devices: Vec<Device>) -> Result<Self> {
        ensure!(!devices.is_empty(), "data-parallel training needs a device");
        let (reply_tx, replies) = channel::<Reply>();
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for (id, device) in devices.iter().enumerate() {
            let (tx, rx) = channel::<Job>();
            let device = device.clone();
            let reply_tx = reply_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("lungseg-train-device-{id}"))
                .spawn(move || {
                    for job in rx {
                        let out = catch_unwind(AssertUnwindSafe(|| {
                            shard_step(
                                &job.model,
                                &device,
                                &job.shard,
                                job.weight,
                                Some(job.seed),
                                job.dice,
                            )
                        }));
                        let out = match out {
                            Ok(Ok(o)) => Ok(o),
                            Ok(Err(e)) => Err(format!("{e:#}")),
                            Err(p) => Err(panic_text(p.as_ref())),
                        };
                        if reply_tx.send((id, out)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| anyhow!("cannot start a training worker thread: {e}"))?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(DataParallel {
            devices,
            dice: DiceLoss::default(),
            senders,
            replies,
            threads,
        })
    }

    /// Shards compute their loss with `dice` (each shard's own per-patch mean for
    /// [`DiceLoss::PerPatch`], weighted by its share of the batch).
    pub fn with_dice(mut self, dice: DiceLoss) -> Self {
        self.dice = dice;
        self
    }

    /// Forward and backward of `batch` split over the devices (shard `i` seeded by `seed(i)`);
    /// gradients summed on the first device.
    pub fn step(
        &self,
        model: &UNet,
        batch: &Batch,
        seed: impl Fn(usize) -> u64,
    ) -> Result<StepOutput> {
        let n = batch.shape[0];
        let sizes = shard_sizes(n, self.devices.len());
        let mut start = 0;
        for (i, &size) in sizes.iter().enumerate() {
            let job = Job {
                model: model.clone(),
                shard: batch.slice(start, start + size),
                weight: size as f64 / n as f64,
                seed: seed(i),
                dice: self.dice,
            };
            start += size;
            self.senders[i]
                .send(job)
                .map_err(|_| anyhow!("training worker on device {i} has stopped"))?;
        }
        let mut shards: Vec<Option<ShardOutput>> = (0..sizes.len()).map(|_| None).collect();
        let mut failures = Vec::new();
        for _ in 0..sizes.len() {
            let (id, out) = self
                .replies
                .recv()
                .map_err(|_| anyhow!("training workers stopped"))?;
            match out {
                Ok(o) => shards[id] = Some(o),
                Err(e) => failures.push(format!("device {id} ({:?}): {e}", self.devices[id])),
            }
        }
        if !failures.is_empty() {
            bail!("data-parallel step failed on {}", failures.join("; "));
        }
        let main = &self.devices[0];
        let mut acc = GradientsAccumulator::<UNet>::new();
        let mut shards: Vec<ShardOutput> = shards.into_iter().map(|s| s.expect("reply")).collect();
        for s in &mut shards {
            let grads = std::mem::take(&mut s.grads);
            acc.accumulate(model, grads.to_device(main, model));
        }
        Ok(StepOutput {
            grads: acc.grads(),
            shards,
        })
    }
}

impl Drop for DataParallel {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic in a training worker".into())
}
