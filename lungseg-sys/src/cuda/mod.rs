//! NVIDIA GPU backend (feature `cuda`, `docs/cuda.md`): fp16 storage, fp32 accumulation, our own
//! kernels (no cuDNN/cuBLAS), compiled by NVRTC at model open with an on-disk cache.
//!
//! - [`probe`]: is a usable GPU there? Checks that libcuda and libnvrtc can be loaded *before*
//!   touching cudarc (its dynamic loaders panic on a missing library), then the device.
//! - [`compile`]: NVRTC compilation of [`KERNELS`] (cubin for the device's `sm_XX`), the
//!   ptxas report (registers, spills), the cache and the prebuilt-binary fallback.
//! - [`reference`]: a CPU reference for every kernel (f32 with fp16 rounding where the kernel
//!   rounds); the GPU tests compare against these, and CPU tests check them against `nn`.
//! - [`plan`]: the network as launches over buffers, and its CPU execution through the
//!   references; [`weights`]: the weights in the kernels' layouts and the model requirements;
//!   [`launch`]: each kernel's grid, shared memory and arguments, shared with the emulator.
//! - [`memory`]: the model's device memory and the MC chunk size within the budget.
//! - [`engine`]: weights and workspace on the device, the MC batch, the launches.

pub mod compile;
#[cfg(feature = "cuda-emu")]
pub mod emu;
pub mod engine;
pub mod launch;
pub mod memory;
pub mod params;
pub mod plan;
pub mod probe;
pub mod reference;
pub mod weights;

pub use probe::{probe, Probe};

/// Prepended to every kernel source: Philox, fp16 helpers, the mma, ldmatrix and cp.async
/// wrappers, the shared-tile swizzle and the m16n8k16 fragment loaders.
pub const COMMON_CUH: &str = include_str!("kernels/common.cuh");

/// One `.cu` file and the `extern "C"` kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    pub name: &'static str,
    pub source: &'static str,
    pub functions: &'static [&'static str],
    /// Compile-time constants (`-DNAME=VALUE`), e.g. tile shapes; their owner is the launch
    /// code that sizes the grid and shared memory to match.
    pub defines: &'static [(&'static str, u32)],
    /// The layout of the kernels' parameter structs ([`params`]) as more constants, which the
    /// source checks its C structs against.
    pub layout: &'static [(&'static str, u32)],
}

impl KernelSource {
    /// The full translation unit NVRTC compiles: `common.cuh` then the kernel file.
    pub fn full_source(&self) -> String {
        format!(
            "{COMMON_CUH}\n#line 1 \"{}.cu\"\n{}",
            self.name, self.source
        )
    }

    /// [`Self::defines`] and [`Self::layout`]: every compile-time constant.
    pub fn all_defines(&self) -> impl Iterator<Item = &(&'static str, u32)> {
        self.defines.iter().chain(self.layout)
    }

    /// [`Self::all_defines`] as compiler options.
    pub fn define_options(&self) -> Vec<String> {
        self.all_defines()
            .map(|(k, v)| format!("-D{k}={v}"))
            .collect()
    }
}

/// Every kernel file of the backend; `scripts/nvrtc-check.sh` compiles each of them.
pub const KERNELS: &[KernelSource] = &[
    KernelSource {
        name: "conv_first",
        source: include_str!("kernels/conv_first.cu"),
        functions: &["ls_conv_first"],
        defines: &[],
        layout: params::FIRST_LAYOUT,
    },
    KernelSource {
        name: "conv3",
        source: include_str!("kernels/conv3.cu"),
        functions: &["ls_conv3"],
        defines: launch::CONV3_DEFINES,
        layout: params::CONV3_LAYOUT,
    },
    KernelSource {
        name: "conv3_narrow",
        source: include_str!("kernels/conv3.cu"),
        functions: &["ls_conv3_narrow"],
        defines: launch::CONV3_NARROW_DEFINES,
        layout: params::CONV3_LAYOUT,
    },
    KernelSource {
        name: "dropout",
        source: include_str!("kernels/dropout.cu"),
        functions: &["ls_dropout_expand"],
        defines: &[],
        layout: params::EXPAND_LAYOUT,
    },
    KernelSource {
        name: "pool",
        source: include_str!("kernels/pool.cu"),
        functions: &["ls_maxpool2"],
        defines: &[],
        layout: params::POOL_LAYOUT,
    },
    KernelSource {
        name: "upconv",
        source: include_str!("kernels/upconv.cu"),
        functions: &["ls_upconv2"],
        defines: launch::UPCONV_DEFINES,
        layout: params::UP_LAYOUT,
    },
    KernelSource {
        name: "head",
        source: include_str!("kernels/head.cu"),
        functions: &["ls_head_accumulate", "ls_head_finalize"],
        defines: launch::HEAD_DEFINES,
        layout: params::HEAD_LAYOUT,
    },
];

/// Architectures CI compiles for (A100, H100/H200).
pub const CHECK_ARCHS: &[u32] = &[80, 90];
