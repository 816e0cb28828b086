//! The prediction core: the deterministic forward pass ([`predict`]) and Monte-Carlo dropout
//! sampling with per-voxel uncertainty maps and a patch summary ([`predict_uncertainty`]), of
//! one [`Network`] on one [`Route`] (the CPU engine or an accelerator). The public entry points
//! taking a `Model` are in [`crate::mc`].
//!
//! Patches are HU values at the model's patch size, z-major with x fastest (PyTorch's
//! `[D, H, W]`); normalisation with the model's HU window happens inside. On the CPU, results
//! are bit-identical for any `threads` and a pure function of (model, patch, seed, n_samples).
//! Every route's samples go through the same reduction ([`crate::stats`]) and summary, so the
//! result structure is the same whatever runs the passes.

pub mod control;
pub mod flips;
pub mod route;

pub use crate::stats::masks::StructureMeasures;
pub use crate::stats::{entropy_bits, voxel_stats, VoxelStats, MAX_SAMPLES};
pub use control::{LogLevel, Progress, RunControl};
pub use flips::Flip;
pub(crate) use route::Route;

use crate::cpu::{forward, prologue, SampleDrop, Workspace};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Network, ReviewScore};
use crate::stats::Stats;

/// Most threads one call may ask for.
pub const MAX_THREADS: usize = 1024;

/// Options of [`crate::mc::predict_uncertainty`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct McOptions {
    /// Number of MC samples, 1..=1024.
    pub n_samples: u32,
    /// Philox key of the dropout masks.
    pub seed: u64,
    /// Threads each layer's work is split over, 0..=1024 (at most the core count are used);
    /// 0 = the core count. They are the calling thread and helpers of one process-wide pool of
    /// at most cores − 1 threads ([`max_pool_threads`]) shared by all callers: while another
    /// call uses the pool, a call runs its work on its own thread. Results do not depend on it.
    pub threads: usize,
    /// Overrides the model's review threshold.
    pub review_threshold: Option<f32>,
    /// The score compared with the threshold; `None` = the model's
    /// ([`crate::model::ReviewConfig`]). Another score than the model's needs
    /// `review_threshold`: the model's threshold belongs to its own score.
    pub review_score: Option<ReviewScore>,
}

impl Default for McOptions {
    fn default() -> Self {
        McOptions {
            n_samples: 20,
            seed: 0,
            threads: 0,
            review_threshold: None,
            review_score: None,
        }
    }
}

/// Caller-owned per-voxel output maps (each `patch_voxels` long, z-major); `None` = not wanted.
#[derive(Debug, Default)]
pub struct UncertaintyMaps<'a> {
    /// Mean probability across samples.
    pub mean: Option<&'a mut [f32]>,
    /// Population variance of the probability across samples.
    pub variance: Option<&'a mut [f32]>,
    /// Predictive entropy `H(mean)` in bits.
    pub entropy: Option<&'a mut [f32]>,
    /// Mutual information (BALD) `H(mean) − mean_s H(p_s)` in bits.
    pub mutual_info: Option<&'a mut [f32]>,
}

/// Patch-level results of [`crate::mc::predict_uncertainty`] (serialised with these field names
/// by hosts that report them, e.g. `lungseg-train predict`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PatchSummary {
    /// Voxels of the final mask (`crate::mask::final_mask`): mean probability ≥ the model's
    /// mask threshold (`config.mask_threshold`, 0.5 unless the model names another) or in the
    /// lesion at the point (`config.point_mask_threshold`, `config.point_radius_mm`), in
    /// 26-connected components of at least `config.min_component_mm3` or near the patch
    /// centre (`config.min_component_spare_radius_mm`).
    pub foreground_voxels: u64,
    /// `foreground_voxels` × voxel volume at the model's spacing.
    pub volume_mm3: f64,
    /// Diameter of the sphere with that volume.
    pub equivalent_diameter_mm: f64,
    /// Mean of the mean probability over the voxels any sample calls foreground (p ≥ the
    /// mask threshold); 0 when there are none (likewise the next two).
    pub mean_probability: f32,
    /// Mean predictive entropy (bits) over those voxels.
    pub mean_entropy: f32,
    /// Mean mutual information (bits) over those voxels.
    pub mean_mutual_info: f32,
    /// The selected review score ([`McOptions::review_score`], else the model's) for this patch.
    pub uncertainty_score: f32,
    /// Which score `uncertainty_score` is.
    pub review_score: ReviewScore,
    /// `uncertainty_score > threshold` (the caller's override or the model's), or the scan is
    /// outside the model's intended use.
    pub needs_review: bool,
    /// The patch's scan is coarser than the model is meant for
    /// ([`crate::intended_use::IntendedUse`]): `needs_review` whatever the score. Set only by
    /// calls that know the scan (a point of a volume, or a patch whose caller states the
    /// scan's resolution); false otherwise.
    pub outside_intended_use: bool,
    pub n_samples: u32,
    /// Structure-wise agreement of the sample masks (Roy et al. 2019).
    pub structure: StructureMeasures,
    /// Every review score of this patch, selected or not (for choosing one on validation data).
    pub scores: ReviewScores,
}

/// The value of every [`ReviewScore`] for one patch; higher means less sure.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ReviewScores {
    pub mean_mutual_info: f32,
    pub mean_entropy: f32,
    pub mean_variance: f32,
    pub volume_disagreement: f32,
    /// Mean predictive entropy over the final mask ([`ReviewScore::MaskMeanEntropy`]).
    pub mask_mean_entropy: f32,
    pub structure: StructureMeasures,
}

impl ReviewScores {
    /// The one definition of each score.
    pub fn get(&self, score: ReviewScore) -> f32 {
        match score {
            ReviewScore::MeanMutualInfo => self.mean_mutual_info,
            ReviewScore::MeanEntropy => self.mean_entropy,
            ReviewScore::MeanVariance => self.mean_variance,
            ReviewScore::VolumeDisagreement => self.volume_disagreement,
            ReviewScore::DiceDisagreement => 1.0 - self.structure.dice_agreement,
            ReviewScore::IouDisagreement => 1.0 - self.structure.iou,
            ReviewScore::VolumeCv => self.structure.volume_cv,
            ReviewScore::MaskMeanEntropy => self.mask_mean_entropy,
        }
    }
}

pub use crate::cpu::MAX_IDLE_WORKSPACES;

/// The share count a call uses: `threads`, or the core count (read once per process) for 0.
pub fn resolve_threads(threads: usize) -> Result<usize> {
    match threads {
        0 => Ok(crate::nn::available_cores()),
        t if t > MAX_THREADS => Err(Error::invalid(format!(
            "threads = {t} exceeds {MAX_THREADS}"
        ))),
        t => Ok(t),
    }
}

/// Most helper threads the library runs in one process, whatever the number of calling
/// threads and models: the core count minus one (see [`McOptions::threads`]).
pub fn max_pool_threads() -> usize {
    crate::nn::max_helpers()
}

fn check_patch(network: &Network, patch_hu: &[f32]) -> Result<()> {
    let n = network.config().patch_voxels();
    if patch_hu.len() != n {
        return Err(Error::invalid(format!(
            "patch has {} voxels, the model expects {n} ({:?} x,y,z)",
            patch_hu.len(),
            network.config().patch_size
        )));
    }
    if let Some(i) = patch_hu.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "patch voxel {i} is {} (NaN/Inf not allowed)",
            patch_hu[i]
        )));
    }
    Ok(())
}

/// A network and the route its passes take: what one prediction runs on.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub network: &'a Network,
    pub route: Route<'a>,
}

/// Deterministic forward pass (dropout off): writes the foreground probability of every voxel
/// into `prob` (`patch_voxels` long, z-major).
///
/// Non-finite numbers are never a result: a patch holding NaN or ±infinity is refused up
/// front (`InvalidArgument`, naming the voxel: a broken upstream, not an HU value to clip),
/// and a non-finite network output (finite weights whose activations overflow f32) is a
/// `Format` error. Allocation-free after the first call on a model (see [`MAX_IDLE_WORKSPACES`]).
pub(crate) fn predict(
    t: Target<'_>,
    patch_hu: &[f32],
    prob: &mut [f32],
    threads: usize,
) -> Result<()> {
    single_pass(t, patch_hu, None, prob, threads)
}

/// `prob` is as long as the patch.
fn check_prob(prob: &[f32], patch_hu: &[f32]) -> Result<()> {
    if prob.len() != patch_hu.len() {
        return Err(Error::invalid(format!(
            "prob has {} elements, expected {}",
            prob.len(),
            patch_hu.len()
        )));
    }
    Ok(())
}

/// One forward pass, with the dropout masks of `drop` (none: deterministic), into `prob`.
fn single_pass(
    t: Target<'_>,
    patch_hu: &[f32],
    drop: Option<SampleDrop>,
    prob: &mut [f32],
    threads: usize,
) -> Result<()> {
    check_patch(t.network, patch_hu)?;
    check_prob(prob, patch_hu)?;
    let threads = resolve_threads(threads)?;
    match t.route {
        Route::Cpu(cpu) => {
            let mut lease = cpu.lease()?;
            let ws = lease.ws();
            let pass = cpu.pass(t.network);
            prologue(&pass, ws, patch_hu, threads);
            forward(&pass, ws, drop, threads, &|| false)?;
            prob.copy_from_slice(&ws.prob);
            Ok(())
        }
        Route::Device(dev) => route::device_pass(dev, patch_hu, drop, prob),
    }
}

/// [`prologue`] of `patch_hu` mirrored by `flip`, through the workspace's flip buffer.
fn flipped_prologue(
    pass: &crate::cpu::Pass<'_>,
    ws: &mut Workspace,
    patch_hu: &[f32],
    flip: Flip,
    threads: usize,
) {
    if flip.is_none() {
        prologue(pass, ws, patch_hu, threads);
        return;
    }
    // Taken out so that the prologue can borrow the workspace; no allocation.
    let mut input = std::mem::take(&mut ws.flip_in);
    flip.apply(pass.config().patch_size, patch_hu, &mut input);
    prologue(pass, ws, &input, threads);
    ws.flip_in = input;
}

/// Monte-Carlo dropout: `n_samples` forward passes with Philox dropout masks keyed by `seed`,
/// per-voxel maps into the caller's buffers, and the patch summary. With p = 0 the mean map
/// equals [`predict`] exactly. Non-finite inputs and outputs are errors as in [`predict`]
/// (every sample's output is checked), so a summary never reads NaN as "certain".
pub(crate) fn predict_uncertainty(
    t: Target<'_>,
    patch_hu: &[f32],
    opts: &McOptions,
    maps: UncertaintyMaps<'_>,
) -> Result<PatchSummary> {
    predict_uncertainty_with(t, patch_hu, opts, maps, &mut RunControl::default())
}

/// [`predict_uncertainty`] under the host's control: cancelled between samples and (on the
/// CPU) between the levels of each pass (`Cancelled`, nothing written), progress after every
/// sample, and a log line per call (see [`control`]). On a device running its samples in batch
/// chunks, cancellation and progress happen per chunk.
pub(crate) fn predict_uncertainty_with(
    t: Target<'_>,
    patch_hu: &[f32],
    opts: &McOptions,
    mut maps: UncertaintyMaps<'_>,
    ctl: &mut RunControl<'_>,
) -> Result<PatchSummary> {
    let review = check_mc_call(t.network, patch_hu, opts, &maps)?;
    let call = McCall {
        patch_hu,
        opts,
        threads: resolve_threads(opts.threads)?,
    };
    let started = std::time::Instant::now();
    ctl.log(LogLevel::Debug, || {
        format!(
            "MC dropout: {} samples, seed {}, {} threads, {}",
            opts.n_samples,
            opts.seed,
            call.threads,
            t.route.describe()
        )
    });
    let summary = match t.route {
        Route::Cpu(cpu) => {
            let mut lease = cpu.lease()?;
            let ws = lease.ws();
            samples_on_cpu(cpu, t.network, &call, ws, ctl)?;
            summarise(t.network, &mut ws.stats, review, &mut maps)?
        }
        Route::Device(dev) => {
            let mut stats = samples_on_device(dev, t.network, &call, ctl)?;
            summarise(t.network, &mut stats, review, &mut maps)?
        }
    };
    ctl.log(LogLevel::Info, || {
        format!(
            "MC dropout: {} samples in {:.3} s; {} = {:.4}, needs_review = {}",
            opts.n_samples,
            started.elapsed().as_secs_f64(),
            summary.review_score.name(),
            summary.uncertainty_score,
            summary.needs_review
        )
    });
    Ok(summary)
}

/// One MC call's input and how it runs.
struct McCall<'a> {
    patch_hu: &'a [f32],
    opts: &'a McOptions,
    threads: usize,
}

/// Checks a call before any work: the patch, the sample count, the review choice and the
/// size of every map the caller passed; returns the review score and threshold.
fn check_mc_call(
    network: &Network,
    patch_hu: &[f32],
    opts: &McOptions,
    maps: &UncertaintyMaps<'_>,
) -> Result<(ReviewScore, f32)> {
    check_patch(network, patch_hu)?;
    let n = patch_hu.len();
    if opts.n_samples == 0 || opts.n_samples > MAX_SAMPLES {
        return Err(Error::invalid(format!(
            "n_samples = {} must be in 1..={MAX_SAMPLES}",
            opts.n_samples
        )));
    }
    let review = review_choice(network, opts)?;
    for (name, m) in [
        ("mean", &maps.mean),
        ("variance", &maps.variance),
        ("entropy", &maps.entropy),
        ("mutual_info", &maps.mutual_info),
    ] {
        if let Some(m) = m {
            if m.len() != n {
                return Err(Error::invalid(format!(
                    "{name} map has {} elements, expected {n}",
                    m.len()
                )));
            }
        }
    }
    Ok(review)
}

/// The samples on the CPU engine, reduced into the workspace's statistics.
fn samples_on_cpu(
    cpu: &crate::cpu::CpuEngine,
    network: &Network,
    call: &McCall<'_>,
    ws: &mut Workspace,
    ctl: &mut RunControl<'_>,
) -> Result<()> {
    let (opts, threads) = (call.opts, call.threads);
    let pass = cpu.pass(network);
    let cfg = network.config();
    ws.stats.reset(cfg.mask_threshold);
    // The shared part of the network runs again only when the flip changes.
    let mut oriented = None;
    run_samples(opts, ctl, |drop, stop| {
        let flip = Flip::of_sample(drop.sample, opts.n_samples, cfg.test_time_flips);
        if oriented != Some(flip) {
            flipped_prologue(&pass, ws, call.patch_hu, flip, threads);
            oriented = Some(flip);
        }
        forward(&pass, ws, Some(drop), threads, stop)?;
        let Workspace {
            prob,
            flip_out,
            stats,
            ..
        } = &mut *ws;
        if flip.is_none() {
            stats.add(prob);
        } else {
            flip.apply(cfg.patch_size, prob, flip_out);
            stats.add(flip_out);
        }
        Ok(())
    })
}

/// The samples on an accelerator: the device reduces them (its sums and per-sample masks, or
/// the host's reduction of its passes); the summary is the CPU's code (docs/cuda.md,
/// "Computed on the device and on the host").
fn samples_on_device(
    dev: &dyn route::Accelerator,
    network: &Network,
    call: &McCall<'_>,
    ctl: &mut RunControl<'_>,
) -> Result<Stats> {
    let opts = call.opts;
    let cfg = network.config();
    let mut stats = Stats::new(call.patch_hu.len(), opts.n_samples as usize)?;
    stats.reset(cfg.mask_threshold);
    let job = route::McJob {
        patch_hu: call.patch_hu,
        seed: opts.seed,
        n_samples: opts.n_samples,
        flips: cfg.test_time_flips,
        patch_size: cfg.patch_size,
    };
    ctl.begin_call(u64::from(opts.n_samples));
    let mut hook = HostHook { ctl, done: 0 };
    match route::device_mc(dev, job, &mut hook, &mut stats) {
        Err(e) if e.kind == ErrorKind::Cancelled => {
            let done = hook.done;
            Err(cancelled(ctl, done, opts.n_samples))
        }
        r => r.map(|()| stats),
    }
}

/// Runs `sample_pass` for every MC sample in order, asking the host's cancel check before each
/// (and handing it to the pass) and reporting progress after each.
fn run_samples(
    opts: &McOptions,
    ctl: &mut RunControl<'_>,
    mut sample_pass: impl FnMut(SampleDrop, &dyn Fn() -> bool) -> Result<()>,
) -> Result<()> {
    ctl.begin_call(u64::from(opts.n_samples));
    let cancel = ctl.cancel_check();
    let stop = || cancel.is_some_and(|c| c());
    for sample in 0..opts.n_samples {
        let drop = SampleDrop {
            seed: opts.seed,
            sample,
        };
        let pass = if stop() {
            Err(Error::cancelled(""))
        } else {
            sample_pass(drop, &stop)
        };
        match pass {
            Err(e) if e.kind == ErrorKind::Cancelled => {
                return Err(cancelled(ctl, sample, opts.n_samples))
            }
            r => r?,
        }
        ctl.pass_done();
    }
    Ok(())
}

/// The host's cancel check and progress report between the sample groups of a device
/// ([`route::SampleHook`]): cancellation is asked before each group, progress reported after
/// each (once per group, counting its samples).
struct HostHook<'c, 'a> {
    ctl: &'c mut RunControl<'a>,
    /// Samples folded in so far.
    done: u32,
}

impl route::SampleHook for HostHook<'_, '_> {
    fn before(&mut self, _first: u32) -> Result<()> {
        match self.ctl.cancel_check() {
            Some(c) if c() => Err(Error::cancelled("")),
            _ => Ok(()),
        }
    }

    fn done(&mut self, count: u32) {
        self.done += count;
        self.ctl.passes_done(u64::from(count));
    }
}

fn cancelled(ctl: &RunControl<'_>, sample: u32, n: u32) -> Error {
    let e = Error::cancelled(format!(
        "cancelled by the host after {sample} of {n} MC samples; no result written"
    ));
    ctl.log(LogLevel::Info, || e.message.clone());
    e
}

/// The score and threshold a call compares: the caller's, else the model's. A score other than
/// the model's without a caller threshold is refused: a threshold is calibrated for one score,
/// and comparing another score with it would flag (or clear) patches at random.
pub fn review_choice(network: &Network, opts: &McOptions) -> Result<(ReviewScore, f32)> {
    if let Some(t) = opts.review_threshold.filter(|t| !t.is_finite()) {
        return Err(Error::invalid(format!(
            "review_threshold = {t} is not finite"
        )));
    }
    let own = network.review();
    let score = opts.review_score.unwrap_or(own.score);
    match opts.review_threshold {
        Some(t) => Ok((score, t)),
        None if score == own.score => Ok((score, own.threshold)),
        None => Err(Error::invalid(format!(
            "review_score {} is not the model's ({}): its threshold {} does not apply; set \
             a review_threshold for {}",
            score.name(),
            own.score.name(),
            own.threshold,
            score.name()
        ))),
    }
}

/// One sample of an MC call: which call (its seed and sample count) and which sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleId {
    pub seed: u64,
    /// `0..n_samples`.
    pub sample: u32,
    /// The call's sample count: with test-time flips, which flip a sample gets depends on it.
    pub n_samples: u32,
}

/// The probability map of one MC sample: what sample `id.sample` of a [`predict_uncertainty`]
/// call with `id.seed` and `id.n_samples` folds in (the same dropout masks and test-time flip,
/// bit for bit). For checking the MC reduction against per-sample maps and for inspecting
/// single samples.
pub(crate) fn predict_sample(
    t: Target<'_>,
    patch_hu: &[f32],
    id: SampleId,
    prob: &mut [f32],
    threads: usize,
) -> Result<()> {
    if id.n_samples == 0 || id.n_samples > MAX_SAMPLES || id.sample >= id.n_samples {
        return Err(Error::invalid(format!(
            "sample {} of {} is not a sample of an MC call (1..={MAX_SAMPLES} samples)",
            id.sample, id.n_samples
        )));
    }
    let drop = Some(SampleDrop {
        seed: id.seed,
        sample: id.sample,
    });
    let cfg = t.network.config();
    let flip = Flip::of_sample(id.sample, id.n_samples, cfg.test_time_flips);
    if flip.is_none() {
        return single_pass(t, patch_hu, drop, prob, threads);
    }
    check_patch(t.network, patch_hu)?;
    check_prob(prob, patch_hu)?;
    let mut input = crate::error::try_vec::<f32>(patch_hu.len(), "flipped patch")?;
    flip.apply(cfg.patch_size, patch_hu, &mut input);
    let mut out = crate::error::try_vec::<f32>(patch_hu.len(), "flipped probabilities")?;
    single_pass(t, &input, drop, &mut out, threads)?;
    flip.apply(cfg.patch_size, &out, prob);
    Ok(())
}

/// Voxels added to the volume in [`volume_disagreement`]'s denominator: keeps the score finite
/// and small for empty patches with faint probability mass.
pub const VOLUME_DISAGREEMENT_SMOOTH: f64 = 10.0;

/// [`ReviewScore::VolumeDisagreement`]: `|Σ mean − V| / (V + 10)`.
pub fn volume_disagreement(sum_mean: f64, foreground_voxels: u64) -> f32 {
    let v = foreground_voxels as f64;
    ((sum_mean - v).abs() / (v + VOLUME_DISAGREEMENT_SMOOTH)) as f32
}

/// Fills the caller's maps, builds the final mask (`crate::mask`) and the patch summary.
fn summarise(
    network: &Network,
    stats: &mut Stats,
    (review_score, threshold): (ReviewScore, f32),
    maps: &mut UncertaintyMaps<'_>,
) -> Result<PatchSummary> {
    let cfg = network.config();
    let mut region = 0u64;
    let (mut sp, mut sh, mut smi, mut svar) = (0f64, 0f64, 0f64, 0f64);
    let mut expected_volume = 0f64;
    for i in 0..cfg.patch_voxels() {
        let v = stats.voxel(i);
        let put = |m: &mut Option<&mut [f32]>, x: f32| {
            if let Some(m) = m {
                m[i] = x;
            }
        };
        put(&mut maps.mean, v.mean);
        put(&mut maps.variance, v.variance);
        put(&mut maps.entropy, v.entropy);
        put(&mut maps.mutual_info, v.mutual_info);
        expected_volume += f64::from(v.mean);
        if v.any_foreground {
            region += 1;
            sp += f64::from(v.mean);
            sh += f64::from(v.entropy);
            smi += f64::from(v.mutual_info);
            svar += f64::from(v.variance);
        }
    }
    let (fg, mask_entropy) = stats.finish_mask(cfg)?;
    let avg = |s: f64| {
        if region > 0 {
            (s / region as f64) as f32
        } else {
            0.0
        }
    };
    let (volume, diameter) = mask_size(cfg, fg);
    let structure = stats.structure();
    let scores = ReviewScores {
        mean_mutual_info: avg(smi),
        mean_entropy: avg(sh),
        mean_variance: avg(svar),
        volume_disagreement: volume_disagreement(expected_volume, fg),
        mask_mean_entropy: if fg > 0 {
            (mask_entropy / fg as f64) as f32
        } else {
            0.0
        },
        structure,
    };
    let score = scores.get(review_score);
    Ok(PatchSummary {
        foreground_voxels: fg,
        volume_mm3: volume,
        equivalent_diameter_mm: diameter,
        mean_probability: avg(sp),
        mean_entropy: avg(sh),
        mean_mutual_info: avg(smi),
        uncertainty_score: score,
        review_score,
        needs_review: score > threshold,
        outside_intended_use: false,
        n_samples: stats.samples(),
        structure,
        scores,
    })
}

/// The volume (mm³) of a mask of `voxels` voxels at the model's spacing, and the diameter of
/// the sphere of that volume: the summary's `volume_mm3` and `equivalent_diameter_mm`.
pub(crate) fn mask_size(cfg: &crate::model::ModelConfig, voxels: u64) -> (f64, f64) {
    let [sx, sy, sz] = cfg.spacing_mm;
    let volume = voxels as f64 * sx * sy * sz;
    (volume, (6.0 * volume / std::f64::consts::PI).cbrt())
}
