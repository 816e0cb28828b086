//! Where a prediction's forward passes run: the model's CPU engine, or an accelerator (the
//! CUDA engine, or a stand-in in tests) behind [`Accelerator`].

use crate::cpu::{CpuEngine, SampleDrop};
use crate::error::{Error, Result};

/// A device that runs whole forward passes. Every error it returns is a device failure
/// (`Device`): the caller has checked the patch and buffers, so anything else going wrong is
/// the device's.
pub(crate) trait Accelerator: Send + Sync {
    /// The device as `lungseg_model_get_info` names it, e.g. `CUDA 0: NVIDIA H200`.
    fn name(&self) -> &str;

    /// One forward pass of `patch_hu` (the model's patch size, finite) with the dropout masks
    /// of `drop` (none: deterministic), its probabilities into `prob` (as long as the patch).
    fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()>;
}

/// The engine one call's passes run on.
#[derive(Clone, Copy)]
pub(crate) enum Route<'a> {
    Cpu(&'a CpuEngine),
    Device(&'a dyn Accelerator),
}

impl Route<'_> {
    /// For log lines: `CPU kernel avx2`, or the device's name.
    pub(crate) fn describe(&self) -> String {
        match self {
            Route::Cpu(cpu) => format!("CPU kernel {}", cpu.kernel().name()),
            Route::Device(dev) => dev.name().to_string(),
        }
    }
}

/// One pass on `dev`, its output checked as the CPU's is: a non-finite probability is a
/// `Format` error (finite weights whose activations overflow), never a result.
pub(crate) fn device_pass(
    dev: &dyn Accelerator,
    patch_hu: &[f32],
    drop: Option<SampleDrop>,
    prob: &mut [f32],
) -> Result<()> {
    dev.pass(patch_hu, drop, prob)?;
    match prob.iter().position(|p| !p.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::format(format!(
            "the network output at voxel {i} is {} on {}: the weights overflow on this patch",
            prob[i],
            dev.name()
        ))),
    }
}
