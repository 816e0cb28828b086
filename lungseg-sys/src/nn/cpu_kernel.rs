//! Which instruction set the CPU kernels run on, chosen once per model when it is opened.
//!
//! The 3³ convolutions (direct and Winograd) and the transposed convolution are one generic
//! source each, compiled several times: for AVX-512, for AVX2 + FMA, for aarch64 NEON, and for the build target's baseline
//! (the portable kernel, for every other CPU). [`select`] is the one place that picks among
//! them: an explicit request (`lungseg_model_options.cpu_kernel`) wins, else the
//! [`ENV`] environment variable, else the fastest kernel this CPU runs (detected once per
//! process). A request this CPU cannot run, or an unknown variable value, is an error at open,
//! never a silent fallback.
//!
//! The FMA kernels (AVX-512, AVX2, NEON) accumulate every output in the same order with one
//! rounding per multiply-add, so they give bit-identical results; the portable kernel rounds
//! the product and the sum separately and may differ from them in the last bits.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::sync::OnceLock;

/// The environment variable that picks the kernel when the model options leave it to AUTO.
pub const ENV: &str = "LUNGSEG_CPU_KERNEL";

/// A compiled variant of the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuKernel {
    /// 16-lane `zmm` FMA (x86-64 with AVX512F).
    Avx512,
    /// 8-lane `ymm` FMA (x86-64 with AVX2 and FMA).
    Avx2,
    /// 4-lane `q` FMA (aarch64).
    Neon,
    /// The build target's baseline instructions (SSE2 on x86-64), no FMA.
    Portable,
}

impl CpuKernel {
    /// Every kernel, fastest first.
    pub const ALL: [CpuKernel; 4] = [
        CpuKernel::Avx512,
        CpuKernel::Avx2,
        CpuKernel::Neon,
        CpuKernel::Portable,
    ];

    /// The name [`ENV`] uses.
    pub const fn name(self) -> &'static str {
        match self {
            CpuKernel::Avx512 => "avx512",
            CpuKernel::Avx2 => "avx2",
            CpuKernel::Neon => "neon",
            CpuKernel::Portable => "portable",
        }
    }

    /// The kernel called `name` (exact, lower case).
    pub fn from_name(name: &str) -> Option<CpuKernel> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU runs the kernel (runtime detection; std caches the CPUID answers).
    #[inline]
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            // Its layers of at most 8 output channels run on AVX-512VL ymm code (nn::conv3).
            CpuKernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            CpuKernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            CpuKernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            CpuKernel::Portable => true,
            // The other architecture's kernels.
            _ => false,
        }
    }

    /// The fastest kernel this CPU runs, detected once per process.
    pub fn best() -> CpuKernel {
        static BEST: OnceLock<CpuKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            Self::ALL
                .into_iter()
                .find(|k| k.supported())
                .unwrap_or(CpuKernel::Portable)
        })
    }

    /// The kernels this CPU runs, fastest first (tests and benchmarks run each).
    pub fn available() -> impl Iterator<Item = CpuKernel> {
        Self::ALL.into_iter().filter(|k| k.supported())
    }

    /// `self` if this CPU runs it, else a `Device` error naming what it lacks.
    pub fn check(self) -> Result<CpuKernel> {
        if self.supported() {
            return Ok(self);
        }
        let runs: Vec<&str> = Self::available().map(CpuKernel::name).collect();
        Err(Error::device(format!(
            "the {} CPU kernel cannot run on this CPU ({}); it runs: {}",
            self.name(),
            self.needs(),
            runs.join(", ")
        )))
    }

    /// What the kernel needs, for messages.
    const fn needs(self) -> &'static str {
        match self {
            CpuKernel::Avx512 => "needs x86-64 with AVX512F",
            CpuKernel::Avx2 => "needs x86-64 with AVX2 and FMA",
            CpuKernel::Neon => "needs aarch64 with NEON",
            CpuKernel::Portable => "runs everywhere",
        }
    }
}

/// The kernel a model runs on: `requested` (None = AUTO) if given, else the value of the
/// [`ENV`] variable if set and not empty, else [`CpuKernel::best`]. Called when a model opens.
pub fn select(requested: Option<CpuKernel>) -> Result<CpuKernel> {
    match requested {
        Some(k) => k.check(),
        None => resolve_env(std::env::var_os(ENV).as_deref()),
    }
}

/// [`select`] for AUTO, given the variable's value.
fn resolve_env(value: Option<&OsStr>) -> Result<CpuKernel> {
    let Some(raw) = value.filter(|v| !v.is_empty()) else {
        return Ok(CpuKernel::best());
    };
    let name = raw.to_string_lossy();
    if name == "auto" {
        return Ok(CpuKernel::best());
    }
    let Some(k) = CpuKernel::from_name(&name) else {
        let names: Vec<&str> = CpuKernel::ALL.iter().map(|k| k.name()).collect();
        return Err(Error::invalid(format!(
            "{ENV}={name:?} is not a CPU kernel (auto, {})",
            names.join(", ")
        )));
    };
    k.check().map_err(|e| e.context(format!("{ENV}={name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn names_round_trip_and_portable_always_runs() {
        for k in CpuKernel::ALL {
            assert_eq!(CpuKernel::from_name(k.name()), Some(k));
        }
        assert_eq!(CpuKernel::from_name("AVX2"), None);
        assert!(CpuKernel::Portable.supported());
        assert!(CpuKernel::best().supported());
        assert_eq!(CpuKernel::available().next(), Some(CpuKernel::best()));
        // x86-64 and aarch64 never share a kernel besides the portable one.
        assert!(!(CpuKernel::Neon.supported() && CpuKernel::Avx2.supported()));
    }

    #[test]
    fn the_variable_is_read_only_for_auto_and_checked() {
        let var = |s: &str| resolve_env(Some(OsStr::new(s)));
        assert_eq!(resolve_env(None).unwrap(), CpuKernel::best());
        assert_eq!(var("").unwrap(), CpuKernel::best());
        assert_eq!(var("auto").unwrap(), CpuKernel::best());
        assert_eq!(var("portable").unwrap(), CpuKernel::Portable);
        let e = var("avx3").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("LUNGSEG_CPU_KERNEL=\"avx3\"") && e.message.contains("neon"),
            "{e}"
        );
        for k in CpuKernel::ALL {
            match var(k.name()) {
                Ok(got) => assert!(got == k && k.supported()),
                Err(e) => {
                    assert!(!k.supported());
                    assert_eq!(e.kind, ErrorKind::Device);
                    assert!(e.message.contains("cannot run on this CPU"), "{e}");
                    assert!(e.message.starts_with("LUNGSEG_CPU_KERNEL="), "{e}");
                }
            }
            assert_eq!(select(Some(k)).is_ok(), k.supported());
        }
    }
}
