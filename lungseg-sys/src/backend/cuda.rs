//! The CUDA engine as an [`Accelerator`]. An MC call runs in batch chunks: the head kernel
//! folds every sample into per-voxel running statistics and writes each sample's foreground
//! mask; the host records the masks after each chunk and loads the statistics at the end into
//! the CPU's reduction ([`Stats`]), whose summary code then runs unchanged (docs/cuda.md,
//! "Computed on the device and on the host"). Single passes (`predict`, `predict_sample`) are
//! one-sample runs whose mean map is that sample's probabilities.

use crate::cpu::SampleDrop;
use crate::cuda::engine::CudaEngine;
use crate::cuda::launch::head_mask_words;
use crate::cuda::plan::{ChunkHook, McState};
use crate::cuda::probe::{probe_device, Probe};
use crate::cuda::weights::unsupported_reason;
use crate::error::{try_vec, Error, Result};
use crate::model::Network;
use crate::predict::route::{Accelerator, McJob, SampleHook};
use crate::stats::Stats;

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

    /// Chunks of at most [`CudaEngine::chunk`] samples per device run, cut where the model's
    /// test-time flip changes; cancellation is asked before each chunk and progress reported
    /// after each.
    fn mc(&self, job: McJob<'_>, hook: &mut dyn SampleHook, stats: &mut Stats) -> Result<()> {
        mc_in_chunks(job, hook, stats, |fold| {
            self.run_mc(job.patch_hu, job.seed, job.n_samples, fold)
        })
    }
}

/// [`Accelerator::mc`] on a device that runs `job` in chunks (`run`: the engine's, or the
/// emulator's in tests): each chunk's masks go into `stats` as they come, the final running
/// statistics at the end.
pub(crate) fn mc_in_chunks(
    job: McJob<'_>,
    hook: &mut dyn SampleHook,
    stats: &mut Stats,
    run: impl FnOnce(&mut dyn ChunkHook) -> Result<McState>,
) -> Result<()> {
    let mut fold = MaskFold {
        hook,
        stats: &mut *stats,
        row: try_vec(head_mask_words(job.patch_hu.len()) / 2, "a sample mask row")?,
    };
    let state = run(&mut fold)?;
    stats.load_state(&state.mean, &state.m2, &state.sum_h, state.n)
}

/// The host's side of a chunked run: the host's hook between chunks, and every chunk's masks
/// recorded in the statistics.
struct MaskFold<'a> {
    hook: &'a mut dyn SampleHook,
    stats: &'a mut Stats,
    /// One mask row as u64 words.
    row: Vec<u64>,
}

impl ChunkHook for MaskFold<'_> {
    fn before(&mut self, first: u32, _count: u32) -> Result<()> {
        self.hook.before(first)
    }

    fn masks(&mut self, rows: &[u32]) -> Result<()> {
        let words = 2 * self.row.len();
        if words == 0 || !rows.len().is_multiple_of(words) {
            return Err(Error::device(format!(
                "the device returned {} mask words, not rows of {words}",
                rows.len()
            )));
        }
        for r in rows.chunks_exact(words) {
            // Word pairs (low, high) are the little-endian u64 words of the host's masks.
            for (w, pair) in self.row.iter_mut().zip(r.chunks_exact(2)) {
                *w = u64::from(pair[0]) | u64::from(pair[1]) << 32;
            }
            self.stats.record_mask_bits(&self.row)?;
        }
        self.hook.done((rows.len() / words) as u32);
        Ok(())
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
