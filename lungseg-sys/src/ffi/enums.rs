//! The enums a C caller passes or reads in `uint32_t` fields. Values are ABI and never change;
//! the library's own enums (`DropoutKind`, `ElementType`) take their discriminants from here.
//! Fields hold them as `uint32_t` because a C caller may store any value there, and an
//! out-of-range Rust enum is undefined behaviour.

use super::abi_enum::abi_enum;

/// Where inference runs (`lungseg_model_options.device`, `lungseg_model_info.device`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_device {
    /// The GPU when one is usable, else the CPU.
    LUNGSEG_DEVICE_AUTO = 0,
    LUNGSEG_DEVICE_CPU = 1,
    /// An NVIDIA GPU (builds with the `cuda` feature); `LUNGSEG_DEVICE` status when unusable.
    LUNGSEG_DEVICE_CUDA = 2,
}
abi_enum!(lungseg_device {
    LUNGSEG_DEVICE_AUTO,
    LUNGSEG_DEVICE_CPU,
    LUNGSEG_DEVICE_CUDA,
});

/// The instruction set the CPU kernels of a model run on (`lungseg_model_options.cpu_kernel`,
/// `lungseg_model_get_cpu_kernel`). Precedence: an explicit value in the options wins over the
/// `LUNGSEG_CPU_KERNEL` environment variable (`avx512`, `avx2`, `neon`, `portable` or `auto`),
/// which is read only for AUTO; an unknown variable value is `LUNGSEG_INVALID_ARGUMENT`, and
/// a kernel this CPU cannot run, asked for either way, is `LUNGSEG_DEVICE`, both at open.
/// The FMA kernels (AVX512, AVX2, NEON) give bit-identical results; PORTABLE may differ from
/// them in the last bits (within the parity tolerances).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_cpu_kernel {
    /// The environment variable if set, else the fastest kernel this CPU runs.
    LUNGSEG_CPU_KERNEL_AUTO = 0,
    /// The build target's baseline instructions (SSE2 on x86-64, no FMA): every CPU.
    LUNGSEG_CPU_KERNEL_PORTABLE = 1,
    /// x86-64 with AVX2 and FMA (8 lanes).
    LUNGSEG_CPU_KERNEL_AVX2 = 2,
    /// x86-64 with AVX512F (16 lanes).
    LUNGSEG_CPU_KERNEL_AVX512 = 3,
    /// aarch64 NEON (4 lanes).
    LUNGSEG_CPU_KERNEL_NEON = 4,
}
abi_enum!(lungseg_cpu_kernel {
    LUNGSEG_CPU_KERNEL_AUTO,
    LUNGSEG_CPU_KERNEL_PORTABLE,
    LUNGSEG_CPU_KERNEL_AVX2,
    LUNGSEG_CPU_KERNEL_AVX512,
    LUNGSEG_CPU_KERNEL_NEON,
});

/// Which units MC dropout zeroes (`lungseg_model_info.dropout_kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_dropout_kind {
    /// Whole channels per sample (PyTorch `Dropout3d`).
    LUNGSEG_DROPOUT_CHANNEL = 0,
    /// Single activations (PyTorch `Dropout`).
    LUNGSEG_DROPOUT_ELEMENT = 1,
}
abi_enum!(lungseg_dropout_kind {
    LUNGSEG_DROPOUT_CHANNEL,
    LUNGSEG_DROPOUT_ELEMENT,
});

/// The on-disk MetaIO element type of a volume (`lungseg_volume_info.element_type`): MetaIO's
/// own `MET_ValueEnumType` codes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_element_type {
    LUNGSEG_MET_CHAR = 2,
    LUNGSEG_MET_UCHAR = 3,
    LUNGSEG_MET_SHORT = 4,
    LUNGSEG_MET_USHORT = 5,
    LUNGSEG_MET_INT = 6,
    LUNGSEG_MET_UINT = 7,
    /// 4 bytes, as MetaIO writes it (not the C `long`).
    LUNGSEG_MET_LONG = 8,
    LUNGSEG_MET_ULONG = 9,
    LUNGSEG_MET_LONG_LONG = 10,
    LUNGSEG_MET_ULONG_LONG = 11,
    LUNGSEG_MET_FLOAT = 12,
    LUNGSEG_MET_DOUBLE = 13,
}
abi_enum!(lungseg_element_type {
    LUNGSEG_MET_CHAR,
    LUNGSEG_MET_UCHAR,
    LUNGSEG_MET_SHORT,
    LUNGSEG_MET_USHORT,
    LUNGSEG_MET_INT,
    LUNGSEG_MET_UINT,
    LUNGSEG_MET_LONG,
    LUNGSEG_MET_ULONG,
    LUNGSEG_MET_LONG_LONG,
    LUNGSEG_MET_ULONG_LONG,
    LUNGSEG_MET_FLOAT,
    LUNGSEG_MET_DOUBLE,
});

/// The sample type of pixels a host passes (`lungseg_volume_desc.pixel_type`). 0 is no type,
/// so a zeroed description is refused rather than read as some default.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_pixel_type {
    LUNGSEG_PIXEL_INT16 = 1,
    LUNGSEG_PIXEL_UINT16 = 2,
    LUNGSEG_PIXEL_INT32 = 3,
    LUNGSEG_PIXEL_FLOAT32 = 4,
}
abi_enum!(lungseg_pixel_type {
    LUNGSEG_PIXEL_INT16,
    LUNGSEG_PIXEL_UINT16,
    LUNGSEG_PIXEL_INT32,
    LUNGSEG_PIXEL_FLOAT32,
});

/// How `lungseg_scan_map` resamples and merges patches. 0 is no kind.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_scan_map_kind {
    /// Maps (probability, uncertainty): trilinear, weighted mean where patches overlap.
    LUNGSEG_SCAN_MAP_MEAN = 1,
    /// Masks (0/1): nearest neighbour, maximum where patches overlap.
    LUNGSEG_SCAN_MAP_MAX = 2,
}
abi_enum!(lungseg_scan_map_kind {
    LUNGSEG_SCAN_MAP_MEAN,
    LUNGSEG_SCAN_MAP_MAX,
});

/// The patch score compared with the review threshold (`lungseg_mc_options.review_score`,
/// `lungseg_structure_measures.review_score`). Every score grows with the uncertainty. A score
/// other than the model's needs the caller's threshold (`override_review_threshold`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_review_score {
    /// The score the model file names (`review.score`), with its threshold.
    LUNGSEG_REVIEW_MODEL_DEFAULT = 0,
    /// Mean mutual information (bits) over the voxels any sample calls foreground.
    LUNGSEG_REVIEW_MEAN_MUTUAL_INFO = 1,
    /// Mean predictive entropy (bits) over those voxels.
    LUNGSEG_REVIEW_MEAN_ENTROPY = 2,
    /// Mean variance of the probability over those voxels.
    LUNGSEG_REVIEW_MEAN_VARIANCE = 3,
    /// |sum of mean probability - V| / (V + 10), V = voxels with mean >= the model's
    /// mask threshold (`lungseg_model_get_mask_threshold`).
    LUNGSEG_REVIEW_VOLUME_DISAGREEMENT = 4,
    /// 1 - `lungseg_structure_measures.dice_agreement`.
    LUNGSEG_REVIEW_DICE_DISAGREEMENT = 5,
    /// 1 - `lungseg_structure_measures.iou`.
    LUNGSEG_REVIEW_IOU_DISAGREEMENT = 6,
    /// `lungseg_structure_measures.volume_cv`.
    LUNGSEG_REVIEW_VOLUME_CV = 7,
    /// Mean predictive entropy (bits) over the final mask (mean >= the model's mask
    /// threshold): how sure the model is of the voxels it returns; 0 for an empty mask.
    LUNGSEG_REVIEW_MASK_MEAN_ENTROPY = 8,
}
abi_enum!(lungseg_review_score {
    LUNGSEG_REVIEW_MODEL_DEFAULT,
    LUNGSEG_REVIEW_MEAN_MUTUAL_INFO,
    LUNGSEG_REVIEW_MEAN_ENTROPY,
    LUNGSEG_REVIEW_MEAN_VARIANCE,
    LUNGSEG_REVIEW_VOLUME_DISAGREEMENT,
    LUNGSEG_REVIEW_DICE_DISAGREEMENT,
    LUNGSEG_REVIEW_IOU_DISAGREEMENT,
    LUNGSEG_REVIEW_VOLUME_CV,
    LUNGSEG_REVIEW_MASK_MEAN_ENTROPY,
});

/// How much a log message matters (`lungseg_run_options.log_level`, the `level` argument of
/// `lungseg_log_fn`). 0 is no level: `log_level` 0 means INFO.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_log_level {
    /// The call failed; the message is also `lungseg_last_error()`.
    LUNGSEG_LOG_ERROR = 1,
    /// The call goes on, but its result deserves a look (e.g. a patch reaching outside the scan).
    LUNGSEG_LOG_WARN = 2,
    /// One line per call: what ran and how long it took.
    LUNGSEG_LOG_INFO = 3,
    /// Per-call settings (samples, seed, threads, CPU kernel).
    LUNGSEG_LOG_DEBUG = 4,
}
abi_enum!(lungseg_log_level {
    LUNGSEG_LOG_ERROR,
    LUNGSEG_LOG_WARN,
    LUNGSEG_LOG_INFO,
    LUNGSEG_LOG_DEBUG,
});

impl From<lungseg_log_level> for crate::mc::control::LogLevel {
    fn from(l: lungseg_log_level) -> Self {
        use crate::mc::control::LogLevel as L;
        match l {
            lungseg_log_level::LUNGSEG_LOG_ERROR => L::Error,
            lungseg_log_level::LUNGSEG_LOG_WARN => L::Warn,
            lungseg_log_level::LUNGSEG_LOG_INFO => L::Info,
            lungseg_log_level::LUNGSEG_LOG_DEBUG => L::Debug,
        }
    }
}

impl From<lungseg_scan_map_kind> for crate::scan_map::Merge {
    fn from(k: lungseg_scan_map_kind) -> Self {
        match k {
            lungseg_scan_map_kind::LUNGSEG_SCAN_MAP_MEAN => Self::Mean,
            lungseg_scan_map_kind::LUNGSEG_SCAN_MAP_MAX => Self::Max,
        }
    }
}

/// AUTO is `None`: [`crate::nn::cpu_kernel::select`] decides.
impl From<lungseg_cpu_kernel> for Option<crate::nn::cpu_kernel::CpuKernel> {
    fn from(k: lungseg_cpu_kernel) -> Self {
        use crate::nn::cpu_kernel::CpuKernel as K;
        match k {
            lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_AUTO => None,
            lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_PORTABLE => Some(K::Portable),
            lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_AVX2 => Some(K::Avx2),
            lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_AVX512 => Some(K::Avx512),
            lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_NEON => Some(K::Neon),
        }
    }
}

impl From<crate::nn::cpu_kernel::CpuKernel> for lungseg_cpu_kernel {
    fn from(k: crate::nn::cpu_kernel::CpuKernel) -> Self {
        use crate::nn::cpu_kernel::CpuKernel as K;
        match k {
            K::Portable => Self::LUNGSEG_CPU_KERNEL_PORTABLE,
            K::Avx2 => Self::LUNGSEG_CPU_KERNEL_AVX2,
            K::Avx512 => Self::LUNGSEG_CPU_KERNEL_AVX512,
            K::Neon => Self::LUNGSEG_CPU_KERNEL_NEON,
        }
    }
}

impl From<lungseg_pixel_type> for crate::volume::ElementType {
    fn from(t: lungseg_pixel_type) -> Self {
        use crate::volume::ElementType as E;
        match t {
            lungseg_pixel_type::LUNGSEG_PIXEL_INT16 => E::Short,
            lungseg_pixel_type::LUNGSEG_PIXEL_UINT16 => E::UShort,
            lungseg_pixel_type::LUNGSEG_PIXEL_INT32 => E::Int,
            lungseg_pixel_type::LUNGSEG_PIXEL_FLOAT32 => E::Float,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lungseg_status;
    use super::*;
    use std::collections::HashSet;
    use std::ffi::CStr;

    /// Every value of one ABI enum converts back to itself from its integer, its names are
    /// unique, and the C name is the Rust name.
    fn round_trips<T>(all: &[T], name: fn(T) -> &'static str, c_name: fn(T) -> *const libc::c_char)
    where
        T: Copy + PartialEq + std::fmt::Debug + TryFrom<u32>,
        u32: From<T>,
    {
        let mut names = HashSet::new();
        let mut values = HashSet::new();
        for &v in all {
            let raw = u32::from(v);
            assert_eq!(T::try_from(raw).ok(), Some(v));
            assert!(names.insert(name(v)), "duplicate name {}", name(v));
            assert!(values.insert(raw), "duplicate value {raw}");
            let c = unsafe { CStr::from_ptr(c_name(v)) };
            assert_eq!(c.to_str().unwrap(), name(v));
            assert!(name(v).starts_with("LUNGSEG_"));
        }
        let max = values.iter().max().copied().unwrap_or(0);
        for raw in [max + 1, u32::MAX] {
            assert!(T::try_from(raw).is_err(), "{raw} accepted");
        }
    }

    macro_rules! as_u32 {
        ($($t:ty),+) => { $(impl From<$t> for u32 { fn from(v: $t) -> u32 { v as u32 } })+ };
    }
    as_u32!(
        lungseg_status,
        lungseg_device,
        lungseg_dropout_kind,
        lungseg_log_level,
        lungseg_element_type,
        lungseg_pixel_type,
        lungseg_scan_map_kind,
        lungseg_cpu_kernel
    );

    #[test]
    fn every_abi_enum_round_trips_with_unique_names() {
        round_trips(
            lungseg_status::ALL,
            lungseg_status::name,
            lungseg_status::c_name,
        );
        round_trips(
            lungseg_device::ALL,
            lungseg_device::name,
            lungseg_device::c_name,
        );
        round_trips(
            lungseg_dropout_kind::ALL,
            lungseg_dropout_kind::name,
            lungseg_dropout_kind::c_name,
        );
        round_trips(
            lungseg_element_type::ALL,
            lungseg_element_type::name,
            lungseg_element_type::c_name,
        );
        round_trips(
            lungseg_pixel_type::ALL,
            lungseg_pixel_type::name,
            lungseg_pixel_type::c_name,
        );
        assert!(lungseg_pixel_type::try_from(0).is_err());
        round_trips(
            lungseg_scan_map_kind::ALL,
            lungseg_scan_map_kind::name,
            lungseg_scan_map_kind::c_name,
        );
        assert!(lungseg_scan_map_kind::try_from(0).is_err());
        round_trips(
            lungseg_cpu_kernel::ALL,
            lungseg_cpu_kernel::name,
            lungseg_cpu_kernel::c_name,
        );
        round_trips(
            lungseg_log_level::ALL,
            lungseg_log_level::name,
            lungseg_log_level::c_name,
        );
        assert!(lungseg_log_level::try_from(0).is_err());
        assert_eq!(lungseg_status::ALL.len(), 10);
        assert_eq!(lungseg_element_type::ALL.len(), 12);
    }

    #[test]
    fn an_unknown_value_names_the_enum_and_its_values() {
        let e = crate::error::Error::from(lungseg_device::try_from(7).unwrap_err());
        assert_eq!(
            e.message,
            "7 is not a lungseg_device (LUNGSEG_DEVICE_AUTO = 0, LUNGSEG_DEVICE_CPU = 1, \
             LUNGSEG_DEVICE_CUDA = 2)"
        );
    }

    /// The library's own enums carry the ABI values as discriminants: every variant converts.
    #[test]
    fn library_enums_map_onto_abi_values() {
        use crate::model::DropoutKind;
        use crate::volume::ElementType;
        for k in [DropoutKind::Channel, DropoutKind::Element] {
            let abi = lungseg_dropout_kind::try_from(k as u32).unwrap();
            assert_eq!(
                abi.name().trim_start_matches("LUNGSEG_DROPOUT_"),
                format!("{k:?}").to_uppercase()
            );
        }
        for t in ElementType::ALL {
            let abi = lungseg_element_type::try_from(t as u32).unwrap();
            assert_eq!(abi.name().trim_start_matches("LUNGSEG_"), t.met_name());
        }
        assert_eq!(ElementType::ALL.len(), lungseg_element_type::ALL.len());
        use crate::nn::cpu_kernel::CpuKernel;
        for k in CpuKernel::ALL {
            let abi = lungseg_cpu_kernel::from(k);
            assert_eq!(Option::<CpuKernel>::from(abi), Some(k));
            assert_eq!(
                abi.name().trim_start_matches("LUNGSEG_CPU_KERNEL_"),
                k.name().to_uppercase()
            );
        }
        let auto = lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_AUTO;
        assert_eq!(Option::<CpuKernel>::from(auto), None);
        assert_eq!(CpuKernel::ALL.len() + 1, lungseg_cpu_kernel::ALL.len());
    }

    as_u32!(lungseg_review_score);

    /// The review scores round-trip, and each library score is the ABI value of its name.
    #[test]
    fn review_scores_round_trip_and_match_the_library_names() {
        round_trips(
            lungseg_review_score::ALL,
            lungseg_review_score::name,
            lungseg_review_score::c_name,
        );
        use crate::model::ReviewScore;
        for s in ReviewScore::ALL {
            let abi = lungseg_review_score::try_from(s as u32).unwrap();
            assert_eq!(
                abi.name().trim_start_matches("LUNGSEG_REVIEW_"),
                s.name().to_uppercase()
            );
        }
        assert_eq!(ReviewScore::ALL.len() + 1, lungseg_review_score::ALL.len());
    }
}

/// How a point's final mask was made (`lungseg_mc_options.mask_source`). 0 is not written.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_mask_source {
    /// The model's mask of the mean (`lungseg_final_mask`): the model has no second look.
    LUNGSEG_MASK_MODEL = 1,
    /// The model's mask: a patch passed from memory has no scan to look at again.
    LUNGSEG_MASK_NO_SCAN = 2,
    /// The model's mask: the scan is coarser than the second look's limit
    /// (`lungseg_model_get_second_look`).
    LUNGSEG_MASK_SCAN_TOO_COARSE = 3,
    /// The second look applies, but the mean reaches its support nowhere the second look
    /// covers: the mean cut at the second look's first threshold; no second pass ran.
    LUNGSEG_MASK_FIRST_LOOK_ONLY = 4,
    /// The mean cut at the second look's first threshold, joined with the supported
    /// components of the second look's mean.
    LUNGSEG_MASK_JOINED = 5,
}
abi_enum!(lungseg_mask_source {
    LUNGSEG_MASK_MODEL,
    LUNGSEG_MASK_NO_SCAN,
    LUNGSEG_MASK_SCAN_TOO_COARSE,
    LUNGSEG_MASK_FIRST_LOOK_ONLY,
    LUNGSEG_MASK_JOINED,
});
