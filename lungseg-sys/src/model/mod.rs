//! The model file (`docs/model-format.md`): a safetensors U-Net with JSON metadata, loaded
//! into an immutable [`Network`] (config and BN-folded weights), and the [`Model`] a caller
//! holds: that network and the backend chosen for it at open (`crate::backend`).

pub mod config;
pub mod dropout;
mod load;
mod network;

use std::path::Path;

pub use config::{
    Dropout, DropoutKind, ModelConfig, Norm, ReviewConfig, ReviewScore, DEFAULT_MASK_THRESHOLD,
};
pub use dropout::LevelSet;
pub use load::{
    required_format_version, FORMAT, FORMAT_VERSION, FORMAT_VERSION_V1, FORMAT_VERSION_V2,
    FORMAT_VERSION_V3, FORMAT_VERSION_V4, FORMAT_VERSION_V5, FORMAT_VERSION_V6, FORMAT_VERSION_V7,
};
pub use network::Network;
#[cfg(feature = "cuda")]
pub(crate) use network::UpConv;
pub(crate) use network::{Conv3, Net};

use crate::backend::{Backend, Opener};
pub use crate::backend::{Device, DeviceReport};
use crate::cpu::{self, CpuEngine};
use crate::error::Result;
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
    /// Where predictions run ([`Device::Cpu`] by default; its docs say how each is chosen).
    pub device: Device,
    /// The GPU to use when `device` is not the CPU (a CUDA device ordinal); one that does not
    /// exist is a `Device` error for [`Device::Cuda`] and the CPU with a note for AUTO.
    pub device_index: u32,
}

impl ModelOptions {
    fn workspace_limit(&self) -> u64 {
        match self.max_workspace_bytes {
            0 => DEFAULT_MAX_WORKSPACE_BYTES,
            n => n,
        }
    }
}

/// A loaded network and the engines its predictions run on. Immutable after open except for
/// the CPU engine's pool of scratch workspaces (and a device's fault flag), so one `Model` can
/// serve many threads at once (`Send + Sync`): each concurrent CPU call holds one workspace of
/// [`Model::workspace_bytes`]. Dereferences to its [`Network`] (config, review, provenance).
pub struct Model {
    network: Network,
    backend: Backend,
}

// One model serves many threads: keep it Send + Sync.
const _: fn() = || {
    fn check<T: Send + Sync>() {}
    check::<Model>();
};

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("network", &self.network)
            .field("backend", &self.backend)
            .finish()
    }
}

impl std::ops::Deref for Model {
    type Target = Network;

    fn deref(&self) -> &Network {
        &self.network
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

    /// [`Model::from_bytes`] with explicit limits and device; a model whose workspace exceeds
    /// `opts.max_workspace_bytes` is a `Limit` error, checked before any tensor is read.
    pub fn from_bytes_with(bytes: &[u8], opts: &ModelOptions) -> Result<Model> {
        Self::from_bytes_on(bytes, opts, &crate::backend::open_accelerator)
    }

    /// [`Model::from_bytes_with`] with the accelerator from `opener`.
    pub(crate) fn from_bytes_on(
        bytes: &[u8],
        opts: &ModelOptions,
        opener: &Opener<'_>,
    ) -> Result<Model> {
        let kernel = cpu_kernel::select(opts.cpu_kernel)?;
        let mut size = None;
        let network = load::load(bytes, &mut |cfg| {
            size = Some(cpu::workspace_within(cfg, opts.workspace_limit())?);
            Ok(())
        })?;
        let size = size.expect("load checks the config first");
        let cpu = CpuEngine::new(&network, kernel, size)?;
        let backend = Backend::open(&network, cpu, opts.device, opts.device_index, opener)?;
        Ok(Model { network, backend })
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

    /// The immutable network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Scratch bytes one CPU prediction holds while it runs (one workspace per concurrent
    /// call; up to [`crate::mc::MAX_IDLE_WORKSPACES`] stay allocated between calls).
    pub fn workspace_bytes(&self) -> u64 {
        self.backend.cpu().workspace_bytes()
    }

    /// The CPU kernel CPU predictions run on (also after a device fault), fixed at open.
    pub fn kernel(&self) -> CpuKernel {
        self.backend.cpu().kernel()
    }

    /// The device predictions run on now, and why not a GPU where that applies.
    pub fn device(&self) -> DeviceReport {
        self.backend.report()
    }
}
