//! How much device memory one model takes, and how many MC samples a batch chunk holds: the
//! GPU-memory budget checked at open. Pure arithmetic over the [`Plan`] and the weights, so it
//! is tested without a GPU; the engine feeds it the device's free memory.

use super::plan::Plan;
use super::weights::GpuWeights;

/// Most device memory one open model may hold: weights and workspace together.
pub const DEVICE_BUDGET: usize = 1 << 30;
/// Left free on the device beyond what the model allocates: the context's own use (module
/// code, launch resources, the driver's heaps) and other processes' growth.
pub const FREE_RESERVE: usize = 128 << 20;
/// Most samples one chunk runs: beyond this the batch is long enough to keep the GPU busy.
pub const MAX_CHUNK: usize = 32;

/// The device memory of one model, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Weights and biases as uploaded.
    pub weights: usize,
    /// Workspace that does not grow with the chunk (the shared first-layer output, the head's
    /// state and maps, the patch).
    pub fixed: usize,
    /// Workspace per sample of a chunk.
    pub per_sample: usize,
}

impl Footprint {
    pub fn of(plan: &Plan, weights: &GpuWeights) -> Footprint {
        let one = plan.workspace_bytes(1);
        let per_sample = plan.workspace_bytes(2) - one;
        Footprint {
            weights: weights.device_bytes(),
            fixed: one - per_sample,
            per_sample,
        }
    }

    /// Bytes with a chunk of `chunk` samples; `None` on overflow.
    pub fn total(&self, chunk: usize) -> Option<usize> {
        self.per_sample
            .checked_mul(chunk)?
            .checked_add(self.fixed)?
            .checked_add(self.weights)
    }

    /// The chunk size for a device with `free` bytes free: as many samples as fit both
    /// [`DEVICE_BUDGET`] and `free` less [`FREE_RESERVE`], at most [`MAX_CHUNK`]; or why not
    /// even one sample fits.
    pub fn chunk(&self, free: usize) -> Result<usize, String> {
        let limit = DEVICE_BUDGET.min(free.saturating_sub(FREE_RESERVE));
        let base = self.fixed.saturating_add(self.weights);
        let fits = limit.saturating_sub(base) / self.per_sample.max(1);
        if base > limit || fits == 0 {
            let mib = |b: usize| b.div_ceil(1 << 20);
            return Err(format!(
                "the model needs {} MiB of GPU memory for one MC sample ({} MiB weights, {} MiB \
                 workspace); {} MiB may be used ({} MiB free on the device less {} MiB kept \
                 free, at most {} MiB per model)",
                mib(self.total(1).unwrap_or(usize::MAX)),
                mib(self.weights),
                mib(self.fixed.saturating_add(self.per_sample)),
                mib(limit),
                mib(free),
                mib(FREE_RESERVE),
                mib(DEVICE_BUDGET)
            ));
        }
        Ok(fits.min(MAX_CHUNK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn fp(weights: usize, fixed: usize, per_sample: usize) -> Footprint {
        Footprint {
            weights,
            fixed,
            per_sample,
        }
    }

    #[test]
    fn the_chunk_fills_the_budget_or_the_free_memory_whichever_is_less() {
        let f = fp(10 * MIB, 50 * MIB, 30 * MIB);
        // Budget 1024 MiB: (1024 - 60) / 30 = 32.
        assert_eq!(f.chunk(80 << 30), Ok(32));
        // 500 MiB free: 372 usable, (372 - 60) / 30 = 10.
        assert_eq!(f.chunk(500 * MIB), Ok(10));
        assert!(f.total(10).unwrap() <= 500 * MIB - FREE_RESERVE);
        assert!(f.total(11).unwrap() > 500 * MIB - FREE_RESERVE);
        // Capped at MAX_CHUNK when samples are small.
        assert_eq!(fp(0, 0, MIB).chunk(80 << 30), Ok(MAX_CHUNK));
    }

    #[test]
    fn a_model_that_does_not_fit_one_sample_is_refused_with_the_sizes() {
        let f = fp(10 * MIB, 50 * MIB, 30 * MIB);
        // 200 MiB free: 72 usable, 60 fixed, one sample needs 30.
        let e = f.chunk(200 * MIB).unwrap_err();
        assert!(
            e.contains("needs 90 MiB") && e.contains("72 MiB may be used"),
            "{e}"
        );
        assert!(f.chunk(0).is_err());
        // Larger than the budget on any device.
        let huge = fp(0, 2 << 30, MIB);
        assert!(huge
            .chunk(usize::MAX)
            .unwrap_err()
            .contains("1024 MiB per model"));
        // Sizes near the address space do not overflow.
        assert!(fp(usize::MAX, usize::MAX, usize::MAX)
            .chunk(usize::MAX)
            .is_err());
    }

    /// The default network at 64³ keeps within the 1 GiB goal with a useful chunk.
    #[test]
    fn the_default_network_runs_chunks_within_one_gib() {
        let bytes = crate::test_common::synth_model_bytes(r#"{"channels":[16,32,64,128,256]}"#);
        let m = crate::model::Model::from_bytes(&bytes).unwrap();
        let f = Footprint::of(&Plan::new(&m), &GpuWeights::new(&m));
        let chunk = f.chunk(80 << 30).unwrap();
        assert!(chunk >= 4, "{f:?}: chunk {chunk}");
        assert!(f.total(chunk).unwrap() <= DEVICE_BUDGET);
    }
}
