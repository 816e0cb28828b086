//! The CUDA engine as an [`Accelerator`]. One MC sample per device run: the engine's head
//! reduces a run's samples into maps and sums, while the summary also needs each sample's mask
//! (structure-wise measures), so the host folds every sample's probability map (the mean map
//! of a one-sample run) through the same reduction as the CPU (docs/cuda.md, "Computed on the
//! host").

use crate::cpu::SampleDrop;
use crate::cuda::engine::CudaEngine;
use crate::cuda::probe::{probe_device, Probe};
use crate::cuda::weights::unsupported_reason;
use crate::error::{Error, Result};
use crate::model::Network;
use crate::predict::route::Accelerator;

/// The CUDA engine on device `index` for `network`, or why not: every reason known before
/// compiling (the machine's and the model's), else the engine's own failure.
pub(super) fn open(
    network: &Network,
    index: u32,
) -> std::result::Result<Box<dyn Accelerator>, String> {
    let mut why = Vec::new();
    if let Probe::Unusable(w) = probe_device(index) {
        why.push(w);
    }
    if let Some(w) = unsupported_reason(network) {
        why.push(format!("model not supported by the CUDA backend: {w}"));
    }
    if !why.is_empty() {
        return Err(why.join("; "));
    }
    CudaEngine::new(network, index)
        .map(|e| Box::new(e) as Box<dyn Accelerator>)
        .map_err(|e| e.message)
}

impl Accelerator for CudaEngine {
    fn name(&self) -> &str {
        &self.device_name
    }

    fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()> {
        let r = match drop {
            None => self.run(patch_hu, 0, 1, false)?,
            Some(d) => self.run_from(patch_hu, d.seed, d.sample, 1, true)?,
        };
        one_sample_map(r.mean, prob)
    }
}

/// Copies a one-sample run's mean map (that sample's probabilities) into `prob`.
pub(crate) fn one_sample_map(mean: Vec<f32>, prob: &mut [f32]) -> Result<()> {
    if mean.len() != prob.len() {
        return Err(Error::device(format!(
            "the device returned {} probabilities for a patch of {}",
            mean.len(),
            prob.len()
        )));
    }
    prob.copy_from_slice(&mean);
    Ok(())
}
