//! Models and predictions through the C ABI: open a model file, run the deterministic pass or
//! Monte-Carlo dropout on a 64³ HU patch, get maps, a summary and the needs-review flag.

use super::point_mask::{MaskArgs, MaskOut};
use super::run::{log_failure, lungseg_run_options, Hooks};
use super::versioned::{arg_versioned_out, OutArg, VersionedOut};
use super::volume::lungseg_volume;
use super::{
    arg_mut, arg_options, arg_out, arg_ref, arg_slice, arg_slice_mut, frozen_output, guard,
    lungseg_cpu_kernel, lungseg_device, lungseg_review_score, lungseg_status, path_arg, versioned,
};
use crate::error::{Error, Result};
use crate::intended_use::IntendedUse;
use crate::mc::point::{Point, Scan};
use crate::mc::{self, McOptions, PatchSummary, UncertaintyMaps};
use crate::model::{Device, Model, ModelOptions, ReviewScore};
use crate::patch::{self, PatchSpec};
use crate::second_look::SecondLook;

/// A loaded model. Thread-safe: one handle may serve predictions from many threads at once.
///
/// Concurrency model:
/// - Threads: the library runs one process-wide pool of at most (cores - 1) helper threads
///   (named `lungseg-N`), shared by every model and calling thread and started on first need.
///   A prediction splits each layer into fixed shares run by the calling thread and the pool;
///   while another call uses the pool, a call runs all its shares on its own thread.
///   Results are bit-identical whatever the thread count or the load.
/// - Memory: each prediction running at the same time holds one scratch workspace of the
///   model's size (about 150 MB for the default network at 64³, checked against
///   `max_workspace_bytes` at open); up to 2 stay allocated per model between calls, more
///   are freed when their call returns. After the first call, CPU predictions do not allocate
///   (on a GPU, each MC call allocates its host-side statistics).
/// - GPU: a model opened on a GPU serialises its predictions on one stream; a GPU error during
///   a prediction is `LUNGSEG_DEVICE` for that call, and the model's later predictions run on
///   the CPU (see `lungseg_model_options`).
/// - fork(): a child process may predict with handles opened before the fork (the pool is
///   re-created in the child), provided no other thread of the parent was inside a lungseg
///   call at the moment of the fork.
pub struct lungseg_model {
    pub(crate) inner: Model,
    pub(crate) threads: usize,
}

/// Options for `lungseg_model_open` (NULL = defaults: AUTO device, GPU 0, all cores, 2 GiB
/// workspace limit, AUTO CPU kernel). See `lungseg_model` for threads and memory.
///
/// Devices: CPU runs on the CPU. CUDA runs on GPU `device_index` or fails at open with
/// `LUNGSEG_DEVICE` saying why (no driver, no such device, a model the GPU kernels do not
/// support, a kernel compile failure, or a failed self-check: one MC prediction of a synthetic
/// patch on GPU and CPU must agree within 1e-2 max / 1e-3 mean probability and in its review
/// decision). AUTO takes the GPU when all of that passes, else the CPU;
/// `lungseg_model_get_device_note` says why. A GPU error during a prediction fails that call
/// with `LUNGSEG_DEVICE`, and the model's later predictions run on the CPU
/// (`lungseg_model_get_info` then names the CPU, the note the fault).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_model_options {
    /// `sizeof(lungseg_model_options)`.
    pub struct_size: u32,
    /// A `lungseg_device` value.
    pub device: u32,
    /// Threads one prediction splits each layer over (at most the core count are used);
    /// 0 = the core count, resolved once at open. Results do not depend on it.
    pub threads: u32,
    /// Most scratch bytes one prediction may need; a model needing more (e.g. a huge
    /// `patch_size`) is refused with `LUNGSEG_LIMIT`. 0 = 2 GiB.
    pub max_workspace_bytes: u64,
    /// A `lungseg_cpu_kernel` value: the instruction set CPU predictions run on. 0 = AUTO:
    /// the `LUNGSEG_CPU_KERNEL` environment variable if set, else the fastest this CPU runs.
    /// An explicit value here wins over the variable.
    pub cpu_kernel: u32,
    /// Ignored: the tail padding of the layout before `device_index`, which its callers may
    /// leave uninitialised.
    pub reserved0: u32,
    /// The CUDA device ordinal AUTO and CUDA use (0 = the first GPU). A `struct_size` that ends
    /// before it means 0. An index with no device is `LUNGSEG_DEVICE` for CUDA and the CPU for
    /// AUTO.
    pub device_index: u32,
}
versioned!(lungseg_model_options, v1 = 12, v1_last = threads);

/// What a model expects and where it runs (an output struct, frozen at its published layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_model_info {
    /// Patch size in voxels: x, y, z. Inputs hold size[0] * size[1] * size[2] floats.
    pub patch_size: [u32; 3],
    /// Patch spacing in mm the model was trained at.
    pub spacing_mm: [f64; 3],
    /// HU window mapped to [0, 1] before the network.
    pub hu_window: [f32; 2],
    /// U-Net levels and channels per level (first `levels` entries used).
    pub levels: u32,
    pub channels: [u32; 8],
    /// MC dropout probability and kind (a `lungseg_dropout_kind` value).
    pub dropout_p: f32,
    pub dropout_kind: u32,
    /// The patch uncertainty score above which `needs_review` is set.
    pub review_threshold: f32,
    pub parameter_count: u64,
    /// The device predictions actually run on now (`lungseg_device`: CPU or CUDA): CPU when
    /// AUTO found no usable GPU or the GPU faulted (`lungseg_model_get_device_note` says why).
    pub device: u32,
    /// NUL-terminated device name, e.g. the CPU or GPU model. On the CPU it names the kernel
    /// first, as `CPU (<kernel>): <CPU model>` with the `LUNGSEG_CPU_KERNEL` name of
    /// `lungseg_model_get_cpu_kernel`'s value, e.g. `CPU (avx2): ...`; on a GPU it is
    /// `CUDA <index>: <GPU model>`. A long name is cut to fit.
    pub device_name: [libc::c_char; 64],
}
frozen_output!(lungseg_model_info, size = 176);

/// Options for one MC-dropout prediction (NULL = 20 samples, seed 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_mc_options {
    /// `sizeof(lungseg_mc_options)`.
    pub struct_size: u32,
    /// Monte-Carlo samples, 1..=1024 (0 = 20).
    pub n_samples: u32,
    /// Seed of the dropout masks: the same seed gives bit-identical maps on any thread count.
    pub seed: u64,
    /// Non-zero: use `review_threshold` instead of the model's.
    pub override_review_threshold: u32,
    pub review_threshold: f32,
    /// NULL, or where to write the structure-wise measures of the samples (its `struct_size`
    /// set by the caller; below its V1 size is `LUNGSEG_INVALID_ARGUMENT`). Written only when
    /// the prediction succeeds; must not overlap the other buffers of the call.
    pub structure_measures: *mut lungseg_structure_measures,
    /// A `lungseg_review_score`: the score in `summary.uncertainty_score` that is compared with
    /// the threshold. 0 = the model's. Another score than the model's needs
    /// `override_review_threshold` (`LUNGSEG_INVALID_ARGUMENT` otherwise): the model's
    /// threshold is calibrated for its own score.
    pub review_score: u32,
    /// NULL, or the host's hooks into the call: cancel flag, progress and log callbacks
    /// (`lungseg_run_options`).
    pub run: *const lungseg_run_options,
    /// V4: the resolution of the scan the patch comes from, mm per axis (x, y, z): its voxel
    /// spacing, along z its slice thickness where that is coarser. All 0 = not stated; else
    /// each finite and > 0. A patch passed from memory (`lungseg_predict_uncertainty`) then
    /// gets `needs_review` when the model is not meant for such a scan, as a point of a volume
    /// does (`lungseg_model_admits_volume`); the point and batch calls judge their volume's own
    /// resolution and this one, and flag if either is too coarse.
    pub scan_resolution_mm: [f64; 3],
    /// V5: NULL, or `final_mask_len` bytes that receive the call's final mask, 0/1 on the
    /// model's patch grid (z-major, x fastest); in a batch one mask per point, point i's at
    /// offset i × the patch's voxel count. Point calls (`lungseg_predict_uncertainty_at`, the
    /// batch) then also run the model's second look (`lungseg_model_get_second_look`) where
    /// it applies, and `summary.foreground_voxels`, `volume_mm3` and `equivalent_diameter_mm`
    /// describe this mask; the maps, the other measures and the review score stay the
    /// model's patch's. Without a second look (or with a patch from memory) the mask is
    /// `lungseg_final_mask` of the mean. Must not overlap the call's other buffers.
    pub final_mask: *mut u8,
    /// V5: the length of `final_mask`: the patch's voxel count (a batch: times `n_points`).
    pub final_mask_len: usize,
    /// V5: NULL, or where each mask's `lungseg_mask_source` goes (a batch: `n_points` of them);
    /// needs `final_mask`.
    pub mask_source: *mut u32,
}
versioned!(lungseg_mc_options, v1 = 24, v1_last = review_threshold);

/// Structure-wise agreement of the MC samples (Roy et al. 2019, "Bayesian QuickNAT"), over the
/// sample masks M_s = {p_s >= t} and the final mask F = {mean >= t}, t the model's mask
/// threshold (`lungseg_model_get_mask_threshold`). A growable output
/// struct: the caller sets `struct_size` to `sizeof(lungseg_structure_measures)`; the library
/// writes min(struct_size, its sizeof) bytes and sets `struct_size` to that number.
///
/// Empty masks: Dice(M_s, F) is 1 when both are empty, 0 when one is; `iou` is 1 when every
/// sample is empty, 0 when samples are foreground but none in all; `volume_cv` is 0 when every
/// sample is empty. So (1, 1, 0) means the samples agree (all empty, or all identical); a patch
/// whose final mask is empty while some samples see a structure is never "sure".
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_structure_measures {
    /// `sizeof(lungseg_structure_measures)`; on return, the bytes written.
    pub struct_size: u32,
    /// The `lungseg_review_score` that `summary.uncertainty_score` is (never MODEL_DEFAULT).
    pub review_score: u32,
    /// Mean over samples of Dice(M_s, F) = 2|M_s & F| / (|M_s| + |F|), in [0, 1].
    pub dice_agreement: f32,
    /// |intersection of all M_s| / |union of all M_s|, in [0, 1].
    pub iou: f32,
    /// Coefficient of variation of the sample volumes |M_s|: population std / mean.
    pub volume_cv: f32,
    /// Samples whose mask is empty.
    pub empty_samples: u32,
    /// Voxels every sample calls foreground, and voxels some sample does.
    pub intersection_voxels: u64,
    pub union_voxels: u64,
    /// Mean and population standard deviation of |M_s| over samples, in voxels.
    pub sample_voxels_mean: f64,
    pub sample_voxels_std: f64,
}
versioned!(
    lungseg_structure_measures,
    v1 = 56,
    v1_last = sample_voxels_std
);

/// Per-patch summary of an MC prediction. Frozen: it sits inside `lungseg_uncertainty`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lungseg_patch_summary {
    /// Voxels of the final mask: mean probability >= the model's mask threshold, in
    /// components of at least its minimum volume or near the patch centre
    /// (`lungseg_final_mask` gives the mask).
    pub foreground_voxels: u64,
    /// Their volume in mm³ and the diameter of a sphere of that volume.
    pub volume_mm3: f64,
    pub equivalent_diameter_mm: f64,
    /// Means over the voxels any sample calls foreground (0 when there are none).
    pub mean_probability: f32,
    pub mean_entropy: f32,
    pub mean_mutual_info: f32,
    /// The score compared with the review threshold.
    pub uncertainty_score: f32,
    pub review_threshold: f32,
    pub n_samples: u32,
    /// The prediction is doubtful: send it to a radiologist.
    /// An empty mask (`foreground_voxels` 0) is seldom flagged (`MASK_MEAN_ENTROPY` is 0 on it);
    /// at a point marked as a nodule, treat it as not segmented (docs/c-abi.md, "An empty mask").
    pub needs_review: bool,
}
const _: () = assert!(std::mem::size_of::<lungseg_patch_summary>() == 56);

/// Caller-owned outputs of `lungseg_predict_uncertainty` (frozen at its published layout).
/// Any map may be NULL; non-NULL maps hold `len` floats (the model's patch voxel count). The
/// caller sets the maps and `len`; the library fills `summary`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_uncertainty {
    /// Mean probability over samples.
    pub mean: *mut f32,
    /// Population variance of the probability over samples.
    pub variance: *mut f32,
    /// Predictive entropy of the mean, in bits.
    pub entropy: *mut f32,
    /// Mutual information (BALD) between prediction and weights, in bits.
    pub mutual_info: *mut f32,
    pub len: usize,
    pub summary: lungseg_patch_summary,
}
// Only the maps and `len` are read from the caller: `summary` holds a `bool`, which a caller's
// uninitialised bytes must never become.
frozen_output!(
    lungseg_uncertainty,
    size = 96,
    input_end = std::mem::offset_of!(lungseg_uncertainty, summary)
);

/// `lungseg_model_info.device_name` of a CPU model: the kernel, then the CPU's brand.
fn cpu_device_name(kernel: crate::nn::cpu_kernel::CpuKernel) -> String {
    match cpu_brand() {
        Some(brand) => format!("CPU ({}): {brand}", kernel.name()),
        None => format!("CPU ({})", kernel.name()),
    }
}

/// The CPU's brand string (x86 CPUID).
fn cpu_brand() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86-64 CPU.
        let max = __cpuid(0x8000_0000).eax;
        if max >= 0x8000_0004 {
            let mut bytes = Vec::with_capacity(48);
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                let r = __cpuid(leaf);
                for w in [r.eax, r.ebx, r.ecx, r.edx] {
                    bytes.extend_from_slice(&w.to_le_bytes());
                }
            }
            let s = String::from_utf8_lossy(&bytes)
                .trim_matches(char::from(0))
                .trim()
                .to_string();
            if !s.is_empty() {
                return Some(s);
            }
        }
    }
    None
}

fn cpu_kernel_from(raw: u32) -> Result<Option<crate::nn::cpu_kernel::CpuKernel>> {
    lungseg_cpu_kernel::try_from(raw)
        .map(Option::from)
        .map_err(|e| Error::from(e).context("options.cpu_kernel"))
}

fn device_from(raw: u32) -> Result<lungseg_device> {
    lungseg_device::try_from(raw).map_err(|e| Error::from(e).context("options.device"))
}

fn device_of(d: lungseg_device) -> Device {
    match d {
        lungseg_device::LUNGSEG_DEVICE_AUTO => Device::Auto,
        lungseg_device::LUNGSEG_DEVICE_CPU => Device::Cpu,
        lungseg_device::LUNGSEG_DEVICE_CUDA => Device::Cuda,
    }
}

fn device_to_c(d: Device) -> lungseg_device {
    match d {
        Device::Auto => lungseg_device::LUNGSEG_DEVICE_AUTO,
        Device::Cpu => lungseg_device::LUNGSEG_DEVICE_CPU,
        Device::Cuda => lungseg_device::LUNGSEG_DEVICE_CUDA,
    }
}

fn mc_options_from(model: &lungseg_model, opts: Option<lungseg_mc_options>) -> Result<McOptions> {
    let mut o = McOptions {
        threads: model.threads,
        ..McOptions::default()
    };
    if let Some(c) = opts {
        if c.n_samples != 0 {
            o.n_samples = c.n_samples;
        }
        o.seed = c.seed;
        o.review_score = review_score_from(c.review_score)?;
        if c.override_review_threshold != 0 {
            if !c.review_threshold.is_finite() {
                return Err(Error::invalid(format!(
                    "review_threshold {} is not finite",
                    c.review_threshold
                )));
            }
            o.review_threshold = Some(c.review_threshold);
        }
    }
    Ok(o)
}

/// `lungseg_mc_options.review_score`: `None` for the model's.
fn review_score_from(raw: u32) -> Result<Option<ReviewScore>> {
    use lungseg_review_score as abi;
    let v = lungseg_review_score::try_from(raw)
        .map_err(|e| Error::from(e).context("opts.review_score"))?;
    Ok(match v {
        abi::LUNGSEG_REVIEW_MODEL_DEFAULT => None,
        abi::LUNGSEG_REVIEW_MEAN_MUTUAL_INFO => Some(ReviewScore::MeanMutualInfo),
        abi::LUNGSEG_REVIEW_MEAN_ENTROPY => Some(ReviewScore::MeanEntropy),
        abi::LUNGSEG_REVIEW_MEAN_VARIANCE => Some(ReviewScore::MeanVariance),
        abi::LUNGSEG_REVIEW_VOLUME_DISAGREEMENT => Some(ReviewScore::VolumeDisagreement),
        abi::LUNGSEG_REVIEW_DICE_DISAGREEMENT => Some(ReviewScore::DiceDisagreement),
        abi::LUNGSEG_REVIEW_IOU_DISAGREEMENT => Some(ReviewScore::IouDisagreement),
        abi::LUNGSEG_REVIEW_VOLUME_CV => Some(ReviewScore::VolumeCv),
        abi::LUNGSEG_REVIEW_MASK_MEAN_ENTROPY => Some(ReviewScore::MaskMeanEntropy),
    })
}

fn measures_to_c(s: &PatchSummary) -> lungseg_structure_measures {
    let m = &s.structure;
    lungseg_structure_measures {
        struct_size: std::mem::size_of::<lungseg_structure_measures>() as u32,
        review_score: s.review_score as u32,
        dice_agreement: m.dice_agreement,
        iou: m.iou,
        volume_cv: m.volume_cv,
        empty_samples: m.empty_samples,
        intersection_voxels: m.intersection_voxels,
        union_voxels: m.union_voxels,
        sample_voxels_mean: m.sample_voxels_mean,
        sample_voxels_std: m.sample_voxels_std,
    }
}

fn summary_to_c(s: &PatchSummary, threshold: f32) -> lungseg_patch_summary {
    lungseg_patch_summary {
        foreground_voxels: s.foreground_voxels,
        volume_mm3: s.volume_mm3,
        equivalent_diameter_mm: s.equivalent_diameter_mm,
        mean_probability: s.mean_probability,
        mean_entropy: s.mean_entropy,
        mean_mutual_info: s.mean_mutual_info,
        uncertainty_score: s.uncertainty_score,
        review_threshold: threshold,
        n_samples: s.n_samples,
        needs_review: s.needs_review,
    }
}

/// Opens a model file (safetensors, `docs/model-format.md`). `options` NULL = defaults.
/// On failure `*out` is NULL and the message names the problem (tensor, shapes, metadata key).
/// Weights that are not finite after BatchNorm folding are `LUNGSEG_FORMAT`; a model whose
/// prediction workspace exceeds `max_workspace_bytes` is `LUNGSEG_LIMIT`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_open(
    path: *const libc::c_char,
    options: *const lungseg_model_options,
    out: *mut *mut lungseg_model,
) -> lungseg_status {
    guard(|| {
        let out = arg_mut(out, "out")?;
        *out = std::ptr::null_mut();
        let path = path_arg(path, "path")?;
        let opts = arg_options(options, "options")?.unwrap_or_default();
        let device = device_of(device_from(opts.device)?);
        if opts.threads as usize > mc::MAX_THREADS {
            return Err(Error::invalid(format!(
                "threads = {} exceeds {}",
                opts.threads,
                mc::MAX_THREADS
            )));
        }
        let threads = mc::resolve_threads(opts.threads as usize)?;
        let limits = ModelOptions {
            max_workspace_bytes: opts.max_workspace_bytes,
            cpu_kernel: cpu_kernel_from(opts.cpu_kernel)?,
            device,
            device_index: opts.device_index,
        };
        let model = Model::open_with(&path, &limits)?;
        *out = Box::into_raw(Box::new(lungseg_model {
            inner: model,
            threads,
        }));
        Ok(())
    })
}

/// Frees a model. NULL is a no-op. No prediction may be running on it.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_free(model: *mut lungseg_model) {
    if !model.is_null() {
        // Dropping touches only the model's own memory (and its device context): a panic
        // there leaves nothing half-updated that the caller could observe.
        let _ =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

/// Describes what a model expects and where it runs.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_info(
    model: *const lungseg_model,
    out: *mut lungseg_model_info,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_out(out, "out")?;
        let c = m.inner.config();
        let mut channels = [0u32; 8];
        for (d, s) in channels.iter_mut().zip(&c.channels) {
            *d = *s as u32;
        }
        let report = m.inner.device();
        let device_name = match report.device {
            Device::Cuda => report.name,
            _ => cpu_device_name(m.inner.kernel()),
        };
        let mut name = [0 as libc::c_char; 64];
        for (d, b) in name.iter_mut().zip(device_name.bytes().take(63)) {
            *d = b as libc::c_char;
        }
        out.write(lungseg_model_info {
            patch_size: c.patch_size.map(|v| v as u32),
            spacing_mm: c.spacing_mm,
            hu_window: [c.hu_window.0, c.hu_window.1],
            levels: c.channels.len() as u32,
            channels,
            dropout_p: c.dropout.p,
            dropout_kind: c.dropout.kind as u32,
            review_threshold: m.inner.review().threshold,
            parameter_count: m.inner.parameter_count() as u64,
            device: device_to_c(report.device) as u32,
            device_name: name,
        });
        Ok(())
    })
}

/// Why `model` does not run on a GPU although it might: the reason AUTO chose the CPU at open
/// (no driver, no device at `device_index`, an unsupported model, a compile or self-check
/// failure, or a build without CUDA), or the GPU fault after which it runs on the CPU. Copied
/// as `lungseg_last_error` copies (NUL-terminated, cut to `buf_len - 1` bytes); returns the
/// note's full length, 0 when there is none (the CPU was asked for, or the GPU is in use) or
/// `model` is NULL.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_device_note(
    model: *const lungseg_model,
    buf: *mut libc::c_char,
    buf_len: usize,
) -> usize {
    // Reads the model only: nothing is left half-updated by a panic.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(m) = model.as_ref() else { return 0 };
        let note = m.inner.device().note.unwrap_or_default();
        super::error::copy_c_string(&note, buf, buf_len)
    }))
    .unwrap_or(0)
}

/// The CPU kernel `model`'s predictions run on, chosen at open: a `lungseg_cpu_kernel` value
/// other than AUTO, written to `*out`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_cpu_kernel(
    model: *const lungseg_model,
    out: *mut u32,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = lungseg_cpu_kernel::from(m.inner.kernel()) as u32;
        Ok(())
    })
}

/// The probability at or above which `model` calls a voxel foreground (`config.mask_threshold`
/// of the model file; 0.5 unless the file names another), written to `*out`: the final mask is
/// {mean >= t} without its components below `lungseg_model_get_min_component_mm3`
/// (`lungseg_final_mask`), each MC sample's mask {p_s >= t}, and `foreground_voxels` and the
/// volume use it. A model whose probabilities are calibrated keeps its
/// trained boundary this way; software that thresholds the probability maps itself must use
/// this value, not 0.5.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_mask_threshold(
    model: *const lungseg_model,
    out: *mut f32,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().mask_threshold;
        Ok(())
    })
}

/// How many mirrored orientations `model`'s MC samples cycle through (`config.test_time_flips`
/// of the model file: 1, 2, 4 or 8; 1 unless the file names another), written to `*out`. Sample
/// s of n sees the patch mirrored by flip floor(s * flips / n) (bit 0 mirrors x, bit 1 y, bit 2
/// z) and its probabilities are mirrored back before they are averaged, so the uncertainty
/// covers the orientation as well as the dropout masks; the deterministic pass never flips.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_test_time_flips(
    model: *const lungseg_model,
    out: *mut u32,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().test_time_flips;
        Ok(())
    })
}

/// The smallest mask component `model` keeps, in mm³ (`config.min_component_mm3` of the model
/// file; 0 unless the file names another), written to `*out`: the final mask drops its
/// 26-connected components of smaller volume. Software that builds the mask from the mean map
/// itself should call `lungseg_final_mask`, which applies it.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_min_component_mm3(
    model: *const lungseg_model,
    out: *mut f64,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().min_component_mm3;
        Ok(())
    })
}

/// The radius around the patch centre within which `model` keeps small mask components, in
/// mm (`config.min_component_spare_radius_mm` of the model file; 0 unless the file names
/// another), written to `*out`: a component below the minimum volume
/// (`lungseg_model_get_min_component_mm3`) is kept when one of its voxels is closer than this
/// to the centre voxel (index size / 2 on each axis, the point `lungseg_predict_uncertainty_at`
/// was asked about), distances between voxel centres at the model's spacing.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_min_component_spare_radius_mm(
    model: *const lungseg_model,
    out: *mut f64,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().min_component_spare_radius_mm;
        Ok(())
    })
}

/// The lower threshold of the lesion at the requested point (`config.point_mask_threshold` of
/// the model file; 0 unless the file names another), written to `*out`: the final mask adds
/// the 26-connected components of `mean >= ` this that come closer than
/// `lungseg_model_get_point_radius_mm` to the patch centre. It adds nothing when the radius
/// is 0 or this is not below the mask threshold.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_point_mask_threshold(
    model: *const lungseg_model,
    out: *mut f32,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().point_mask_threshold;
        Ok(())
    })
}

/// The radius around the patch centre of the lesion at the requested point, in mm
/// (`config.point_radius_mm` of the model file; 0 unless the file names another: the final
/// mask adds no point components), written to `*out`; see
/// `lungseg_model_get_point_mask_threshold`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_point_radius_mm(
    model: *const lungseg_model,
    out: *mut f64,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().point_radius_mm;
        Ok(())
    })
}

/// The coarsest voxel spacing, in mm along any axis, of the scans `model` is meant for
/// (`config.max_scan_spacing_mm` of the model file; 0 unless the file names one: any scan),
/// written to `*out`. The range the model was trained and tested on: on coarser scans (e.g.
/// 5 mm slices for a model trained on 1–2.5 mm) its masks degrade while its uncertainty need
/// not grow, so every patch predicted at a point of such a scan sets `needs_review`
/// (`lungseg_model_admits_volume`).
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_max_scan_spacing_mm(
    model: *const lungseg_model,
    out: *mut f64,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = m.inner.config().max_scan_spacing_mm;
        Ok(())
    })
}

/// Whether `volume` is a scan `model` is meant for, written to `*out`: no voxel spacing, and no
/// slice thickness where the volume states one (`lungseg_volume_get_slice_thickness`),
/// coarser than `lungseg_model_get_max_scan_spacing_mm` (by more than 0.001 mm, header
/// rounding), or the model names no limit. When false, `lungseg_predict_uncertainty_at` and
/// the batch set `needs_review` on every patch of it whatever the score; a host that cuts
/// patches itself and calls `lungseg_predict_uncertainty` checks the scan here, once, or
/// states its resolution in `lungseg_mc_options.scan_resolution_mm`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_admits_volume(
    model: *const lungseg_model,
    volume: *const lungseg_volume,
    out: *mut bool,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let v = &arg_ref(volume, "volume")?.inner;
        let out = arg_mut(out, "out")?;
        *out = IntendedUse::of(m.inner.config()).admits(v.resolution_mm());
        Ok(())
    })
}

/// The final mask of a mean probability map, as `summary.foreground_voxels` counts it: voxel i
/// is 1 when `mean[i] >= ` the mask threshold (`lungseg_model_get_mask_threshold`), or when it
/// lies in a 26-connected component of `mean >= lungseg_model_get_point_mask_threshold` that
/// comes closer than `lungseg_model_get_point_radius_mm` to the patch centre; then the
/// 26-connected components of that mask below `lungseg_model_get_min_component_mm3` mm³ that
/// come no closer than `lungseg_model_get_min_component_spare_radius_mm` to the centre are
/// cleared.
/// `mean` and `mask` hold `len` elements, the model's patch voxel count (z-major, x fastest),
/// and must not overlap; `*foreground_voxels` (may be NULL) gets the mask's voxel count.
#[no_mangle]
pub unsafe extern "C" fn lungseg_final_mask(
    model: *const lungseg_model,
    mean: *const f32,
    len: usize,
    mask: *mut u8,
    foreground_voxels: *mut u64,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let src = arg_slice(mean, len, "mean")?;
        let dst = arg_slice_mut(mask, len, "mask")?;
        let (a, b) = (src.as_ptr() as usize, dst.as_ptr() as usize);
        if a < b + len && b < a + len * std::mem::size_of::<f32>() {
            return Err(Error::invalid("mean and mask overlap"));
        }
        let count = crate::mask::final_mask(m.inner.config(), src, dst)?;
        if let Some(out) = foreground_voxels.as_mut() {
            *out = count;
        }
        Ok(())
    })
}

/// Whether `model`'s file carries a probability map (`config.probability_map`): `*out` = 1 if
/// so, else 0. Without one, `lungseg_calibrated_probability` returns the mean unchanged.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_has_probability_map(
    model: *const lungseg_model,
    out: *mut u8,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_mut(out, "out")?;
        *out = u8::from(m.inner.config().probability_map.is_some());
        Ok(())
    })
}

/// Calibrated foreground probabilities of a mean map: `out[i]` is `mean[i]` through the
/// model's probability map for voxel i's distance from the final mask of that mean (the mask
/// `lungseg_final_mask` gives; Chebyshev distance in voxels, one monotone map of the mean per
/// distance band; `config.probability_map` of the model file), or `mean[i]` itself when the
/// model has none (`lungseg_model_has_probability_map`). The MC mean says how often the
/// dropout samples call a voxel nodule; this says how often such a voxel is nodule, as
/// measured on the model's calibration scans. Masks and scores stay those of the mean. `mean`
/// and `out` hold `len` elements, the model's patch voxel count (z-major, x fastest), and must
/// not overlap.
#[no_mangle]
pub unsafe extern "C" fn lungseg_calibrated_probability(
    model: *const lungseg_model,
    mean: *const f32,
    len: usize,
    out: *mut f32,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        disjoint(&[region("mean", mean, len), region("out", out, len)])?;
        let src = arg_slice(mean, len, "mean")?;
        let dst = arg_slice_mut(out, len, "out")?;
        crate::probability_map::calibrated_probability(m.inner.config(), src, dst)
    })
}

/// Deterministic prediction (dropout off): `prob[i]` = foreground probability of voxel i.
/// `patch_hu` holds HU at the model's patch size and spacing (`len` = its voxel count).
/// `prob` must not overlap `patch_hu` (`LUNGSEG_INVALID_ARGUMENT`). A patch with NaN or
/// infinite HU is `LUNGSEG_INVALID_ARGUMENT`; a non-finite network output `LUNGSEG_FORMAT`; a
/// GPU error `LUNGSEG_DEVICE` (later calls run on the CPU).
#[no_mangle]
pub unsafe extern "C" fn lungseg_predict(
    model: *const lungseg_model,
    patch_hu: *const f32,
    len: usize,
    prob: *mut f32,
    prob_len: usize,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        disjoint(&[
            region("patch_hu", patch_hu, len),
            region("prob", prob, prob_len),
        ])?;
        let hu = arg_slice(patch_hu, len, "patch_hu")?;
        let prob = arg_slice_mut(prob, prob_len, "prob")?;
        if prob_len != len {
            return Err(Error::invalid(format!(
                "prob_len {prob_len} differs from len {len}"
            )));
        }
        mc::predict(&m.inner, hu, prob, m.threads)
    })
}

unsafe fn maps_from<'a>(
    out: &'a mut lungseg_uncertainty,
    voxels: usize,
) -> Result<UncertaintyMaps<'a>> {
    let any = [out.mean, out.variance, out.entropy, out.mutual_info]
        .iter()
        .any(|p| !p.is_null());
    if any && out.len != voxels {
        return Err(Error::invalid(format!(
            "out->len is {}, the model's patch has {voxels} voxels",
            out.len
        )));
    }
    let map = |p: *mut f32, name: &str| -> Result<Option<&'a mut [f32]>> {
        if p.is_null() {
            Ok(None)
        } else {
            arg_slice_mut(p, voxels, name).map(Some)
        }
    };
    let maps = UncertaintyMaps {
        mean: map(out.mean, "out->mean")?,
        variance: map(out.variance, "out->variance")?,
        entropy: map(out.entropy, "out->entropy")?,
        mutual_info: map(out.mutual_info, "out->mutual_info")?,
    };
    Ok(maps)
}

/// A named byte range of a caller's buffer (`None`: a NULL, unused buffer).
pub(super) type Region = Option<(&'static str, usize, usize)>;

/// The range of `len` elements at `p`, from the raw pointer: checked before any reference to
/// the memory exists (lengths too large for the address space are refused later).
pub(super) fn region<T>(name: &'static str, p: *const T, len: usize) -> Region {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    (!p.is_null()).then_some((name, p as usize, bytes))
}

/// Refuses buffers that overlap: an output written while an input is read, or two outputs,
/// sharing memory would be undefined behaviour. Pairwise, without allocating.
pub(super) fn disjoint(regions: &[Region]) -> Result<()> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if let (Some((na, a0, al)), Some((nb, b0, bl))) = (a, b) {
                if *al > 0
                    && *bl > 0
                    && *a0 < b0.saturating_add(*bl)
                    && *b0 < a0.saturating_add(*al)
                {
                    return Err(Error::invalid(format!("{na} and {nb} overlap")));
                }
            }
        }
    }
    Ok(())
}

/// A checked `lungseg_mc_options`: the engine's options, the threshold the summary reports,
/// the structure-measures pointer and the host's hooks.
pub(super) struct McCall {
    pub(super) opts: McOptions,
    pub(super) threshold: f32,
    pub(super) measures: *mut lungseg_structure_measures,
    pub(super) hooks: Hooks,
    /// `opts->scan_resolution_mm`, when stated.
    pub(super) scan_resolution: Option<[f64; 3]>,
    /// `opts->final_mask` and `opts->mask_source`.
    pub(super) masks: MaskArgs,
}

impl McCall {
    pub(super) unsafe fn from_c(
        m: &lungseg_model,
        opts: *const lungseg_mc_options,
    ) -> Result<Self> {
        let c_opts = arg_options(opts, "opts")?;
        let o = mc_options_from(m, c_opts)?;
        let (_, threshold) = mc::review_choice(&m.inner, &o)?;
        let c = c_opts.unwrap_or_default();
        Ok(McCall {
            opts: o,
            threshold,
            measures: c.structure_measures,
            hooks: Hooks::from_c(c.run, "opts->run")?,
            scan_resolution: scan_resolution_from(c.scan_resolution_mm)?,
            masks: MaskArgs::from_c(&c)?,
        })
    }

    /// The resolution the call judges the scan by: the caller's and `volume`'s (a volume's
    /// own), axis by axis the coarser; `None` when neither is known.
    pub(super) fn resolution_with(&self, volume: Option<[f64; 3]>) -> Option<[f64; 3]> {
        match (self.scan_resolution, volume) {
            (Some(a), Some(b)) => Some(std::array::from_fn(|i| a[i].max(b[i]))),
            (a, b) => a.or(b),
        }
    }
}

/// `lungseg_mc_options.scan_resolution_mm`: all 0 is not stated.
fn scan_resolution_from(r: [f64; 3]) -> Result<Option<[f64; 3]>> {
    if r == [0.0; 3] {
        return Ok(None);
    }
    if r.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return Err(Error::invalid(format!(
            "opts.scan_resolution_mm {r:?} must be all 0 (not stated) or each finite and > 0"
        )));
    }
    Ok(Some(r))
}

/// Where one patch's results go.
pub(super) struct PatchOut<'a> {
    pub(super) out: OutArg<lungseg_uncertainty>,
    pub(super) measures: Option<VersionedOut<lungseg_structure_measures>>,
    /// More caller buffers the maps must not overlap (a batch's arrays).
    pub(super) extra: &'a [Region],
    /// The resolution of the scan the patch was cut from (`Volume::resolution_mm`), when the
    /// call knows it: the summary is flagged when the model is not meant for such a scan
    /// (`crate::intended_use`).
    pub(super) scan_resolution: Option<[f64; 3]>,
    /// The point's final mask, when the caller wants it.
    pub(super) mask: Option<MaskOut<'a>>,
}

/// One patch through MC dropout into `dst`, with the call's hooks; `point.scan` is the patch's
/// scan for a second look (`None`: a patch from memory).
pub(super) fn mc_patch(
    m: &lungseg_model,
    point: Point<'_>,
    call: &McCall,
    dst: PatchOut<'_>,
    ctl: &mut mc::RunControl<'_>,
) -> Result<()> {
    let PatchOut {
        out,
        measures,
        extra,
        scan_resolution,
        mut mask,
    } = dst;
    let hu = point.patch_hu;
    let mask_regions = mask.as_ref().map_or([None, None], MaskOut::regions);
    let voxels = m.inner.config().patch_voxels();
    let mut result = out.inputs();
    let measures_bytes = measures.as_ref().map(VersionedOut::bytes);
    let own = [
        region("patch_hu", hu.as_ptr(), hu.len()),
        region("out", out.as_ptr(), 1),
        region("out->mean", result.mean, result.len),
        region("out->variance", result.variance, result.len),
        region("out->entropy", result.entropy, result.len),
        region("out->mutual_info", result.mutual_info, result.len),
        measures_bytes.and_then(|(p, n)| region("opts->structure_measures", p, n)),
        mask_regions[0],
        mask_regions[1],
    ];
    disjoint(&own)?;
    // The maps (own[2..6]) against the batch's arrays; the point's own `out`, measures and
    // mask elements lie inside those arrays by design.
    for r in extra {
        for o in &own[2..6] {
            disjoint(&[*r, *o])?;
        }
    }
    let mut summary = {
        let maps = unsafe { maps_from(&mut result, voxels)? };
        match mask.as_mut() {
            None => mc::predict_uncertainty_with(&m.inner, hu, &call.opts, maps, ctl)?,
            Some(dst) => {
                let (summary, source) =
                    mc::point::predict_point(&m.inner, point, &call.opts, maps, dst.mask, ctl)?;
                dst.write_source(source);
                summary
            }
        }
    };
    if let Some(resolution) = scan_resolution {
        IntendedUse::of(m.inner.config()).apply(resolution, &mut summary);
    }
    result.summary = summary_to_c(&summary, call.threshold);
    out.write(result);
    if let Some(w) = measures {
        w.write(measures_to_c(&summary));
    }
    Ok(())
}

fn run_mc(
    m: &lungseg_model,
    hu: &[f32],
    opts: *const lungseg_mc_options,
    out: OutArg<lungseg_uncertainty>,
) -> Result<()> {
    let call = unsafe { McCall::from_c(m, opts)? };
    call.masks.check(1, m.inner.config().patch_voxels())?;
    let dst = PatchOut {
        out,
        measures: unsafe { arg_versioned_out(call.measures, "opts->structure_measures")? },
        extra: &[],
        scan_resolution: call.scan_resolution,
        mask: unsafe { call.masks.point(0, m.inner.config().patch_voxels())? },
    };
    let point = Point {
        patch_hu: hu,
        scan: None,
    };
    call.hooks.control(|ctl| {
        warn_intended_use(m, call.scan_resolution, ctl);
        let r = mc_patch(m, point, &call, dst, ctl);
        log_failure(ctl, r)
    })
}

/// Monte-Carlo dropout prediction on one HU patch: per-voxel maps into the caller's buffers
/// (any may be NULL) and the patch summary with `needs_review`. `opts` NULL = 20 samples,
/// seed 0. The same seed gives bit-identical results on any thread count. Maps must not
/// overlap each other, `patch_hu` or `*out` (`LUNGSEG_INVALID_ARGUMENT`). Non-finite input
/// HU is `LUNGSEG_INVALID_ARGUMENT`; a non-finite network output in any sample is
/// `LUNGSEG_FORMAT`, never a summary; a GPU error `LUNGSEG_DEVICE` (later calls run on the CPU).
/// On a GPU, results agree with the CPU's within the open-time self-check's bounds, not bit for
/// bit. A model with test-time flips (`lungseg_model_get_test_time_flips`) runs each sample on
/// the mirrored patch and mirrors its probabilities back.
#[no_mangle]
pub unsafe extern "C" fn lungseg_predict_uncertainty(
    model: *const lungseg_model,
    patch_hu: *const f32,
    len: usize,
    opts: *const lungseg_mc_options,
    out: *mut lungseg_uncertainty,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let hu = arg_slice(patch_hu, len, "patch_hu")?;
        run_mc(m, hu, opts, arg_out(out, "out")?)
    })
}

/// Cuts the model's patch (size, spacing) around a world point of `volume` and runs
/// `lungseg_predict_uncertainty` on it. A patch reaching outside the scan is filled with
/// -1000 HU there (and logged at WARN). A volume the model is not meant for
/// (`lungseg_model_admits_volume` false: coarser than `lungseg_model_get_max_scan_spacing_mm`)
/// sets `needs_review` whatever the score (and logs at WARN).
#[no_mangle]
pub unsafe extern "C" fn lungseg_predict_uncertainty_at(
    model: *const lungseg_model,
    volume: *const lungseg_volume,
    center_world: *const f64,
    opts: *const lungseg_mc_options,
    out: *mut lungseg_uncertainty,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let v = &arg_ref(volume, "volume")?.inner;
        let c = super::volume::world_arg(center_world, "center_world")?;
        let out = arg_out(out, "out")?;
        let call = McCall::from_c(m, opts)?;
        call.masks.check(1, m.inner.config().patch_voxels())?;
        let dst = PatchOut {
            out,
            measures: arg_versioned_out(call.measures, "opts->structure_measures")?,
            extra: &[],
            scan_resolution: None,
            mask: call.masks.point(0, m.inner.config().patch_voxels())?,
        };
        call.hooks.control(|ctl| {
            warn_intended_use(m, call.resolution_with(Some(v.resolution_mm())), ctl);
            let r = mc_at(m, v, c, &call, dst, ctl);
            log_failure(ctl, r)
        })
    })
}

/// Logs at WARN, once per call, that a scan of `resolution` is outside the model's intended
/// use (nothing when the resolution is not known).
pub(super) fn warn_intended_use(
    m: &lungseg_model,
    resolution: Option<[f64; 3]>,
    ctl: &mc::RunControl<'_>,
) {
    let intended = IntendedUse::of(m.inner.config());
    if let Some(r) = resolution.filter(|&r| !intended.admits(r)) {
        ctl.log(mc::LogLevel::Warn, || intended.describe(r));
    }
}

/// The model's patch around world point `c` of `v` through [`mc_patch`], flagged when `v` is
/// outside the model's intended use.
pub(super) fn mc_at(
    m: &lungseg_model,
    v: &crate::volume::Volume,
    c: [f64; 3],
    call: &McCall,
    dst: PatchOut<'_>,
    ctl: &mut mc::RunControl<'_>,
) -> Result<()> {
    let resolution_mm = call.resolution_with(Some(v.resolution_mm()));
    let dst = PatchOut {
        scan_resolution: resolution_mm,
        ..dst
    };
    let spec = patch_spec(m);
    let second_spec = SecondLook::patch_spec(&spec);
    let mut second_patch = |hu: &mut [f32]| patch::extract_hu(v, c, &second_spec, hu);
    with_patch_buffer(spec.len(), |hu| {
        patch::extract_hu(v, c, &spec, hu)?;
        if ctl.logs(mc::LogLevel::Warn) && patch::reaches_outside(v, c, &spec) {
            ctl.log(mc::LogLevel::Warn, || {
                format!(
                    "the patch around ({:.1}, {:.1}, {:.1}) mm reaches outside the scan; filled \
                     with {} HU there",
                    c[0], c[1], c[2], spec.outside_hu
                )
            });
        }
        let point = Point {
            patch_hu: hu,
            scan: resolution_mm.map(|resolution_mm| Scan {
                resolution_mm,
                second_patch: &mut second_patch,
            }),
        };
        mc_patch(m, point, call, dst, ctl)
    })
}

/// The model's patch: its size and spacing, air outside the scan.
fn patch_spec(m: &lungseg_model) -> PatchSpec {
    let cfg = m.inner.config();
    PatchSpec {
        size: cfg.patch_size,
        spacing_mm: cfg.spacing_mm,
        outside_hu: -1000.0,
    }
}

/// Runs `f` on this thread's patch buffer of `n` floats: no heap allocation per call after
/// the first.
fn with_patch_buffer(n: usize, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    PATCH_BUFFER.with(|buf| {
        let mut hu = buf
            .try_borrow_mut()
            .map_err(|_| Error::invalid("re-entrant call"))?;
        if hu.len() != n {
            hu.clear();
            hu.try_reserve_exact(n)
                .map_err(|_| Error::oom(format!("cannot allocate a patch of {n} voxels")))?;
            hu.resize(n, 0.0);
        }
        f(&mut hu)
    })
}

thread_local! {
    static PATCH_BUFFER: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
