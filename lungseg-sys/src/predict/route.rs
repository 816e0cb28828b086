//! Where a prediction's forward passes run: the model's CPU engine, or an accelerator (the
//! CUDA engine, or a stand-in in tests) behind [`Accelerator`].

use super::flips::Flip;
use crate::cpu::{CpuEngine, SampleDrop};
use crate::error::{try_vec, Error, Result};
use crate::stats::Stats;

/// A device that runs whole forward passes. Every error it returns is a device failure
/// (`Device`): the caller has checked the patch and buffers, so anything else going wrong is
/// the device's.
pub(crate) trait Accelerator: Send + Sync {
    /// The device as `lungseg_model_get_info` names it, e.g. `CUDA 0: NVIDIA H200`.
    fn name(&self) -> &str;

    /// One forward pass of `patch_hu` (the model's patch size, finite) with the dropout masks
    /// of `drop` (none: deterministic), its probabilities into `prob` (as long as the patch).
    fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()>;

    /// Samples `0..job.n_samples` of the MC call `job`, reduced into `stats` (fresh, sized for
    /// the patch and the samples): the per-voxel sums and every sample's mask, in sample order.
    /// `hook` is asked before each group of samples the device runs at once (its error, e.g.
    /// `Cancelled`, stops the call) and told after each how many it folded in. This default is
    /// [`mc_by_passes`]; a device that reduces on its own overrides it (the CUDA engine: one
    /// group per batch chunk).
    fn mc(&self, job: McJob<'_>, hook: &mut dyn SampleHook, stats: &mut Stats) -> Result<()> {
        mc_by_passes(self, job, hook, stats)
    }
}

/// [`Accelerator::mc`] as one [`Accelerator::pass`] per sample (a group of one, its output
/// checked as [`device_pass`] does), each on the patch mirrored by the sample's test-time flip
/// and mirrored back (`crate::predict::flips`), folded in with [`Stats::add`].
pub(crate) fn mc_by_passes<A: Accelerator + ?Sized>(
    dev: &A,
    job: McJob<'_>,
    hook: &mut dyn SampleHook,
    stats: &mut Stats,
) -> Result<()> {
    let n = job.patch_hu.len();
    let mut prob = try_vec::<f32>(n, "sample probabilities")?;
    let flipping = job.flips > 1;
    let mut input = try_vec::<f32>(if flipping { n } else { 0 }, "flipped patch")?;
    let mut back = try_vec::<f32>(if flipping { n } else { 0 }, "flipped probabilities")?;
    for sample in 0..job.n_samples {
        hook.before(sample)?;
        let drop = SampleDrop {
            seed: job.seed,
            sample,
        };
        let flip = Flip::of_sample(sample, job.n_samples, job.flips);
        if flip.is_none() {
            dev.pass(job.patch_hu, Some(drop), &mut prob)?;
            finite_output(&prob, dev.name())?;
            stats.add(&prob);
        } else {
            flip.apply(job.patch_size, job.patch_hu, &mut input);
            dev.pass(&input, Some(drop), &mut prob)?;
            finite_output(&prob, dev.name())?;
            flip.apply(job.patch_size, &prob, &mut back);
            stats.add(&back);
        }
        hook.done(1);
    }
    Ok(())
}

/// One MC call as a device runs it.
#[derive(Clone, Copy)]
pub(crate) struct McJob<'a> {
    /// The model's patch size, finite.
    pub patch_hu: &'a [f32],
    pub seed: u64,
    /// 1..=[`crate::stats::MAX_SAMPLES`].
    pub n_samples: u32,
    /// The model's `test_time_flips` (1, 2, 4 or 8).
    pub flips: u32,
    /// The model's patch size (x, y, z), which the flips mirror.
    pub patch_size: [usize; 3],
}

/// The host's say between the groups of samples of [`Accelerator::mc`].
pub(crate) trait SampleHook {
    /// Before the group that starts at sample `first`: an error stops the call.
    fn before(&mut self, first: u32) -> Result<()>;
    /// `count` more samples are folded into the statistics.
    fn done(&mut self, count: u32);
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
    finite_output(prob, dev.name())
}

/// [`Accelerator::mc`] on `dev`, its reduction checked as [`device_pass`] checks a pass: sums
/// that are not finite (a NaN probability folded in on the device) are a `Format` error.
pub(crate) fn device_mc(
    dev: &dyn Accelerator,
    job: McJob<'_>,
    hook: &mut dyn SampleHook,
    stats: &mut Stats,
) -> Result<()> {
    dev.mc(job, hook, stats)?;
    match stats.first_non_finite() {
        None => Ok(()),
        Some(i) => Err(Error::format(format!(
            "the MC statistics at voxel {i} are not finite on {}: the weights overflow on this \
             patch",
            dev.name()
        ))),
    }
}

/// A non-finite probability of `device`'s output is a `Format` error.
fn finite_output(prob: &[f32], device: &str) -> Result<()> {
    match prob.iter().position(|p| !p.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::format(format!(
            "the network output at voxel {i} is {} on {device}: the weights overflow on this patch",
            prob[i]
        ))),
    }
}
