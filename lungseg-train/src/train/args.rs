//! Command-line arguments of `train` (clap derive), mapped onto [`TrainOptions`].

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::augment::AugmentConfig;
use super::loss::DiceLoss;
use super::{train, Backend, DeviceSpec, TrainOptions};
use crate::model::{DropoutKind, UNetConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    Flex,
    Tch,
    Wgpu,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DropoutKindArg {
    Channel,
    Element,
}

/// Train the U-Net on a patch dataset (see docs/dataset-format.md).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder with manifest.jsonl.
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder (checkpoints, best model, metrics.csv/jsonl).
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2)]
    pub batch_size: usize,
    /// Peak learning rate (Adam), reached after the warmup.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    #[arg(long, default_value_t = 1e-5)]
    pub min_lr: f64,
    #[arg(long, default_value_t = 1)]
    pub warmup_epochs: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Epochs without a better validation Dice before stopping (0: never).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Resumable checkpoint every k epochs (and after the last).
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: usize,
    /// Fixes initialisation, data order, augmentation and dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Start from an exported model's weights (fine-tuning) instead of a random
    /// initialisation; its config must match this run's. A resumed run ignores it.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Train on the raw patches.
    #[arg(long)]
    pub no_augment: bool,
    /// Train on random N³ crops of the patches ((N/patch)³ of the compute per step; validation
    /// and the exported model keep the whole patch). N must be a multiple of 2^(levels-1).
    #[arg(long, conflicts_with = "no_augment")]
    pub crop: Option<usize>,
    /// Foreground prior the head's bias starts at (logit of it); 0 keeps Burn's initialisation.
    #[arg(long, default_value_t = 0.01)]
    pub fg_prior: f64,
    /// At most this many batches per epoch.
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Channels per U-Net level, shallowest first.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub channels: Vec<usize>,
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    #[arg(long, value_enum, default_value = "channel")]
    pub dropout_kind: DropoutKindArg,
    /// U-Net levels (0 = full resolution) whose blocks apply dropout, e.g. `2,3,4`; default:
    /// every level. Levels without dropout are deterministic in every MC sample.
    #[arg(long, value_delimiter = ',')]
    pub dropout_levels: Option<Vec<usize>>,
    /// HU window lo,hi of the input normalisation.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "-1000,400"
    )]
    pub hu_window: Vec<f64>,
    /// `flex` (pure-Rust CPU, no install), `tch` (LibTorch CPU or CUDA, ~3× faster on the CPU;
    /// needs the `tch` cargo feature) or `wgpu` (GPU; needs the `wgpu` cargo feature).
    #[arg(long, value_enum, default_value = "flex")]
    pub backend: BackendArg,
    /// `cpu` or `cuda:N` (tch). Default: the CPU for flex and tch, wgpu's choice of GPU.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Split every batch over this many devices (data parallel): CUDA devices N.. after
    /// `--device cuda:N`, GPUs 0..n with wgpu. On the CPU the replicas share the cores: no
    /// speed-up, for testing the path.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Batches read and augmented ahead on a loader thread; 0 reads them on the training thread.
    #[arg(long, default_value_t = 2)]
    pub prefetch: usize,
    /// No progress bars (per-epoch lines are still printed).
    #[arg(long)]
    pub no_progress: bool,
    /// The soft Dice term of the loss: `pooled` over the batch, or `per-patch` (the mean over
    /// the patches with foreground, so a small nodule weighs as much as a mass), or
    /// `per-patch-fp` (per-patch, and patches without foreground charged for their soft
    /// predicted volume).
    #[arg(long, value_enum, default_value_t = DiceLoss::Pooled)]
    pub dice: DiceLoss,
}

impl TrainArgs {
    pub fn options(&self) -> Result<TrainOptions> {
        anyhow::ensure!(
            self.hu_window.len() == 2,
            "--hu-window takes two values: lo,hi"
        );
        let mut config = UNetConfig {
            channels: self.channels.clone(),
            ..UNetConfig::default()
        };
        config.dropout.p = self.dropout;
        config.dropout.kind = match self.dropout_kind {
            DropoutKindArg::Channel => DropoutKind::Channel,
            DropoutKindArg::Element => DropoutKind::Element,
        };
        config.dropout.levels = self.dropout_levels.clone();
        config.hu_window = [self.hu_window[0], self.hu_window[1]];
        Ok(TrainOptions {
            data: self.data.clone(),
            out: self.out.clone(),
            config,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup_epochs: self.warmup_epochs,
            weight_decay: self.weight_decay,
            patience: self.patience,
            checkpoint_every: self.checkpoint_every,
            seed: self.seed,
            resume: self.resume,
            init: self.init.clone(),
            augment: (!self.no_augment).then(|| AugmentConfig {
                crop: self.crop,
                ..AugmentConfig::default()
            }),
            fg_prior: self.fg_prior,
            max_batches: self.max_batches,
            backend: match self.backend {
                BackendArg::Flex => Backend::Flex,
                BackendArg::Tch => Backend::Tch,
                BackendArg::Wgpu => Backend::Wgpu,
            },
            device: self.device,
            devices: self.devices,
            prefetch: self.prefetch,
            progress: !self.no_progress,
            dice: self.dice,
        })
    }

    pub fn run(&self) -> Result<()> {
        let opts = self.options()?;
        let s = train(&opts)?;
        println!(
            "trained {} epochs in {:.0}s; best validation Dice {:.4} at epoch {}{}; run folder {}",
            s.epochs_run,
            s.seconds,
            s.best_val_dice,
            s.best_epoch,
            if s.stopped_early {
                " (stopped early)"
            } else {
                ""
            },
            opts.out.display()
        );
        Ok(())
    }
}
