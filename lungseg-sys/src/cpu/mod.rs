//! The CPU backend: the kernel chosen at open, the workspace sizing and the pool of scratch
//! workspaces of one model, and the forward pass ([`forward`]) over them with the [`crate::nn`]
//! kernels. The weights are the network's own (the CPU kernels read its layout as it is).

mod forward;
mod workspace;

use std::sync::Mutex;

pub(crate) use forward::{forward, prologue, SampleDrop};
pub(crate) use workspace::{Workspace, WorkspaceSize};

use crate::error::{Error, Result};
use crate::model::{ModelConfig, Net, Network};
use crate::nn::cpu_kernel::CpuKernel;

/// Idle workspaces a model keeps for reuse; more concurrent calls allocate their own, freed on
/// return. Two keep a caller and an overlapping second call allocation-free.
pub const MAX_IDLE_WORKSPACES: usize = 2;

/// What one CPU pass reads: the network and the kernel that runs it.
#[derive(Clone, Copy)]
pub(crate) struct Pass<'a> {
    pub network: &'a Network,
    pub kernel: CpuKernel,
}

impl Pass<'_> {
    pub(crate) fn config(&self) -> &ModelConfig {
        self.network.config()
    }

    pub(crate) fn weights(&self) -> &Net {
        &self.network.net
    }

    pub(crate) fn kernel(&self) -> CpuKernel {
        self.kernel
    }
}

/// The CPU engine of one model: its kernel, its workspace size and its idle workspaces. Calls
/// run concurrently, each on a workspace of its own.
pub(crate) struct CpuEngine {
    kernel: CpuKernel,
    size: WorkspaceSize,
    idle: Mutex<Vec<Workspace>>,
}

impl std::fmt::Debug for CpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuEngine")
            .field("kernel", &self.kernel)
            .field("workspace_bytes", &self.size.bytes())
            .finish_non_exhaustive()
    }
}

/// The workspace `config` needs, refused (`Limit`) above `limit` bytes: checked from the config
/// alone, before the model's tensors are read.
pub(crate) fn workspace_within(config: &ModelConfig, limit: u64) -> Result<WorkspaceSize> {
    let too_big = |what: String| {
        Error::limit(format!(
            "config (patch_size {:?}, channels {:?}) needs {what} of scratch workspace per \
             prediction, more than the limit of {limit} bytes (max_workspace_bytes)",
            config.patch_size, config.channels
        ))
    };
    let size = WorkspaceSize::of(config).ok_or_else(|| too_big("an overflowing size".into()))?;
    if size.bytes() > limit {
        return Err(too_big(format!("{} bytes", size.bytes())));
    }
    Ok(size)
}

impl CpuEngine {
    /// The engine for `network` with workspaces of `size` (from [`workspace_within`] on its
    /// config). No workspace is allocated until the first call.
    pub(crate) fn new(network: &Network, kernel: CpuKernel, size: WorkspaceSize) -> Result<Self> {
        if network.net.max_weight_len() > size.weight_capacity() {
            return Err(Error::format(
                "internal: the workspace sizing disagrees with the loaded weights",
            ));
        }
        Ok(CpuEngine {
            kernel,
            size,
            idle: Mutex::new(Vec::with_capacity(MAX_IDLE_WORKSPACES)),
        })
    }

    pub(crate) fn kernel(&self) -> CpuKernel {
        self.kernel
    }

    /// Scratch bytes one call holds.
    pub(crate) fn workspace_bytes(&self) -> u64 {
        self.size.bytes()
    }

    /// A pass of `network` on this engine's kernel.
    pub(crate) fn pass<'a>(&self, network: &'a Network) -> Pass<'a> {
        Pass {
            network,
            kernel: self.kernel,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Workspace>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A workspace for one call: an idle one, else a new one; back to the pool on drop.
    pub(crate) fn lease(&self) -> Result<Lease<'_>> {
        let cached = self.idle().pop();
        let ws = match cached {
            Some(ws) => ws,
            None => Workspace::new(&self.size)?,
        };
        Ok(Lease {
            engine: self,
            ws: Some(ws),
        })
    }
}

/// One call's workspace, returned to its engine's pool (up to [`MAX_IDLE_WORKSPACES`]) on drop.
pub(crate) struct Lease<'e> {
    engine: &'e CpuEngine,
    ws: Option<Workspace>,
}

impl Lease<'_> {
    pub(crate) fn ws(&mut self) -> &mut Workspace {
        self.ws.as_mut().expect("leased")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(ws) = self.ws.take() else { return };
        let mut idle = self.engine.idle();
        if idle.len() < MAX_IDLE_WORKSPACES {
            idle.push(ws);
            return;
        }
        drop(idle);
        drop(ws);
    }
}
