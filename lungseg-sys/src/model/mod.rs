//! The model file (`docs/model-format.md`): a safetensors U-Net with JSON metadata, loaded
//! into an immutable [`Model`] whose weights are BN-folded and laid out for the [`crate::nn`]
//! kernels.

pub mod config;
mod load;

use std::path::Path;

pub use config::{Dropout, DropoutKind, ModelConfig, Norm, ReviewConfig, ReviewScore};
pub use load::{FORMAT, FORMAT_VERSION};

use crate::error::Result;
use crate::mc::{WorkspacePool, WorkspaceSize};
use crate::nn::cpu_kernel::{self, CpuKernel};

/// Largest model file accepted by [`Model::open`] (the default network is ~22 MB in F32).
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Default of [`ModelOptions::max_workspace_bytes`]: 2 GiB, about 14× the default network's
/// ~150 MB at a 64³ patch.
pub const DEFAULT_MAX_WORKSPACE_BYTES: u64 = 2 << 30;

/// Limits and choices applied when a model is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// Most bytes of scratch memory one prediction may need ([`Model::workspace_bytes`]);
    /// a model needing more is refused at open (`Limit`). 0 = [`DEFAULT_MAX_WORKSPACE_BYTES`].
    pub max_workspace_bytes: u64,
    /// The CPU kernel to run; `None` = the `LUNGSEG_CPU_KERNEL` variable, else the fastest
    /// ([`cpu_kernel::select`]). One this CPU cannot run is refused at open (`Device`).
    pub cpu_kernel: Option<CpuKernel>,
}

impl ModelOptions {
    fn workspace_limit(&self) -> u64 {
        match self.max_workspace_bytes {
            0 => DEFAULT_MAX_WORKSPACE_BYTES,
            n => n,
        }
    }
}

/// A loaded network. Immutable after load except for an internal pool of scratch
/// workspaces, so one `Model` can serve many threads at once (`Send + Sync`): each concurrent
/// call holds one workspace of [`Model::workspace_bytes`].
pub struct Model {
    config: ModelConfig,
    review: ReviewConfig,
    provenance: String,
    parameter_count: usize,
    pub(crate) net: Net,
    pub(crate) workspace: WorkspaceSize,
    pub(crate) workspaces: WorkspacePool,
    kernel: CpuKernel,
}

// One model serves many threads: keep it Send + Sync.
const _: fn() = || {
    fn check<T: Send + Sync>() {}
    check::<Model>();
};

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("review", &self.review)
            .field("parameter_count", &self.parameter_count)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Parses a model file held in memory. Never panics, whatever the bytes: every failure
    /// is a `Format` (corrupt, truncated, wrong shapes, missing/extra tensors) or
    /// `Unsupported` (unknown format version, dtype, architecture option) error.
    /// Default [`ModelOptions`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        Self::from_bytes_with(bytes, &ModelOptions::default())
    }

    /// [`Model::from_bytes`] with explicit limits; a model whose workspace exceeds
    /// `opts.max_workspace_bytes` is a `Limit` error, checked before any tensor is read.
    pub fn from_bytes_with(bytes: &[u8], opts: &ModelOptions) -> Result<Model> {
        let kernel = cpu_kernel::select(opts.cpu_kernel)?;
        let l = load::load(bytes, opts.workspace_limit())?;
        Ok(Model {
            config: l.config,
            review: l.review,
            provenance: l.provenance,
            parameter_count: l.parameter_count,
            net: l.net,
            workspace: l.workspace,
            workspaces: WorkspacePool::new(),
            kernel,
        })
    }

    /// Reads and parses a model file with default [`ModelOptions`].
    pub fn open(path: &Path) -> Result<Model> {
        Self::open_with(path, &ModelOptions::default())
    }

    /// Reads and parses a model file: regular files only (a FIFO or device is refused without
    /// blocking), at most [`MAX_FILE_BYTES`].
    pub fn open_with(path: &Path, opts: &ModelOptions) -> Result<Model> {
        let bytes = crate::fsio::read_bounded(path, MAX_FILE_BYTES, "model file")?;
        Model::from_bytes_with(&bytes, opts).map_err(|e| e.context(path.display()))
    }

    /// Architecture and input specification.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Which patch score flags a case for review, and its threshold.
    pub fn review(&self) -> &ReviewConfig {
        &self.review
    }

    /// The raw `provenance` JSON of the file (`{}` when absent).
    pub fn provenance(&self) -> &str {
        &self.provenance
    }

    /// Scratch bytes one prediction holds while it runs (one workspace per concurrent call;
    /// up to [`crate::mc::MAX_IDLE_WORKSPACES`] stay allocated between calls).
    pub fn workspace_bytes(&self) -> u64 {
        self.workspace.bytes()
    }

    /// The CPU kernel predictions run on, fixed at open.
    pub fn kernel(&self) -> CpuKernel {
        self.kernel
    }

    /// Learnable parameters as PyTorch counts them (conv/BN weights and biases; running
    /// statistics excluded).
    pub fn parameter_count(&self) -> usize {
        self.parameter_count
    }
}

/// 3³ convolution with BN folded in. `w` is `[27][cin][pad16(cout)]` (tap `9kz + 3ky + kx`),
/// `bias` is `[pad16(cout)]`; padding lanes are zero.
pub(crate) struct Conv3 {
    pub cout: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Transposed conv k2 s2: `w` is `[cin][8][pad16(cout)]`, `bias` `[pad16(cout)]`.
pub(crate) struct UpConv {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
}

/// 1×1×1 conv to one logit.
pub(crate) struct Head {
    pub w: Vec<f32>,
    pub bias: f32,
}

pub(crate) struct Block {
    pub conv1: Conv3,
    pub conv2: Conv3,
}

/// `enc[l]` for every level (the last is the bottleneck); `up[l]`/`dec[l]` produce level `l`.
pub(crate) struct Net {
    pub enc: Vec<Block>,
    pub up: Vec<UpConv>,
    pub dec: Vec<Block>,
    pub head: Head,
}

impl Net {
    /// Floats of the largest weight tensor (what one sample's dropout-scaled copy may need).
    pub(crate) fn max_weight_len(&self) -> usize {
        self.enc
            .iter()
            .chain(&self.dec)
            .flat_map(|b| [b.conv1.w.len(), b.conv2.w.len()])
            .chain(self.up.iter().map(|u| u.w.len()))
            .chain([self.head.w.len()])
            .max()
            .unwrap_or(0)
    }
}
