//! Inference on a [`Model`]: the deterministic forward pass ([`predict`]) and Monte-Carlo
//! dropout sampling with per-voxel uncertainty maps and a patch summary
//! ([`predict_uncertainty`]), on the backend the model chose at open. The computation is in
//! `crate::predict`; these entry points pick the engine and handle a device fault
//! (`crate::backend`).
//!
//! Patches are HU values at the model's patch size, z-major with x fastest (PyTorch's
//! `[D, H, W]`); normalisation with the model's HU window happens inside. On the CPU, results
//! are bit-identical for any `threads` and a pure function of (model, patch, seed, n_samples).

pub mod point;

pub use crate::predict::control;
pub use crate::predict::{
    entropy_bits, max_pool_threads, resolve_threads, review_choice, volume_disagreement,
    voxel_stats, Flip, LogLevel, McOptions, PatchSummary, Progress, ReviewScores, RunControl,
    SampleId, StructureMeasures, UncertaintyMaps, VoxelStats, MAX_IDLE_WORKSPACES, MAX_SAMPLES,
    MAX_THREADS, VOLUME_DISAGREEMENT_SMOOTH,
};

use crate::error::Result;
use crate::model::Model;
use crate::predict;

/// Deterministic forward pass (dropout off): writes the foreground probability of every voxel
/// into `prob` (`patch_voxels` long, z-major).
///
/// Non-finite numbers are never a result: a patch holding NaN or ±infinity is refused up
/// front (`InvalidArgument`, naming the voxel: a broken upstream, not an HU value to clip),
/// and a non-finite network output (finite weights whose activations overflow f32) is a
/// `Format` error. On the CPU, allocation-free after the first call on a model (see
/// [`MAX_IDLE_WORKSPACES`]).
pub fn predict(model: &Model, patch_hu: &[f32], prob: &mut [f32], threads: usize) -> Result<()> {
    model
        .backend()
        .run(model, |t| predict::predict(t, patch_hu, prob, threads))
}

/// Monte-Carlo dropout: `n_samples` forward passes with Philox dropout masks keyed by `seed`,
/// per-voxel maps into the caller's buffers, and the patch summary. With p = 0 the mean map
/// equals [`predict`] exactly. Non-finite inputs and outputs are errors as in [`predict`]
/// (every sample's output is checked), so a summary never reads NaN as "certain".
pub fn predict_uncertainty(
    model: &Model,
    patch_hu: &[f32],
    opts: &McOptions,
    maps: UncertaintyMaps<'_>,
) -> Result<PatchSummary> {
    predict_uncertainty_with(model, patch_hu, opts, maps, &mut RunControl::default())
}

/// [`predict_uncertainty`] under the host's control: cancelled between samples and (on the
/// CPU) between the levels of each pass (`Cancelled`, nothing written), progress after every
/// sample, and a log line per call (see [`control`]). On a device running its samples in batch
/// chunks, cancellation and progress happen per chunk.
pub fn predict_uncertainty_with(
    model: &Model,
    patch_hu: &[f32],
    opts: &McOptions,
    maps: UncertaintyMaps<'_>,
    ctl: &mut RunControl<'_>,
) -> Result<PatchSummary> {
    model.backend().run(model, |t| {
        predict::predict_uncertainty_with(t, patch_hu, opts, maps, ctl)
    })
}

/// The probability map of one MC sample: what sample `id.sample` of a [`predict_uncertainty`]
/// call with `id.seed` and `id.n_samples` folds in (the same dropout masks and test-time flip,
/// bit for bit on the same engine). For checking the MC reduction against per-sample maps and
/// for inspecting single samples.
pub fn predict_sample(
    model: &Model,
    patch_hu: &[f32],
    id: SampleId,
    prob: &mut [f32],
    threads: usize,
) -> Result<()> {
    model.backend().run(model, |t| {
        predict::predict_sample(t, patch_hu, id, prob, threads)
    })
}
