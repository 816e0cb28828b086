//! Which Burn backend trains and on which devices: `flex` (pure-Rust CPU, no install), `tch`
//! (LibTorch: PyTorch's own CPU and CUDA kernels; cargo feature `tch`) and `wgpu` (Vulkan,
//! Metal or DX12; cargo feature `wgpu`).
//!
//! `tch` is there for speed: LibTorch runs oneDNN's direct 3-D convolutions on the CPU and
//! cuDNN on NVIDIA GPUs, where flex runs im2col + GEMM (BENCHMARKS.md has the figures).

use std::fmt;
use std::str::FromStr;

use anyhow::{ensure, Result};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Where tensors live. `Tch` and `Wgpu` exist with their cargo features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (rayon + gemm).
    Flex,
    /// LibTorch through `burn-tch`: CPU, or CUDA devices.
    Tch,
    /// A GPU through wgpu (Vulkan, Metal or DX12).
    Wgpu,
}

/// The `--device` of a run: the CPU, or the CUDA device with this index (tch only). A run
/// without one uses the backend's default: the CPU for flex and tch, wgpu's choice of GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("cpu") {
            return Ok(DeviceSpec::Cpu);
        }
        let index = match s.split_once(':') {
            Some((kind, i)) if kind.eq_ignore_ascii_case("cuda") => i,
            None if s.eq_ignore_ascii_case("cuda") => "0",
            _ => return Err(format!("'{s}': expected cpu, cuda or cuda:N")),
        };
        index
            .parse()
            .map(DeviceSpec::Cuda)
            .map_err(|_| format!("'{s}': '{index}' is not a device index"))
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(not(feature = "wgpu"))]
const NO_WGPU: &str = "this build has no GPU backend: rebuild with `--features wgpu`";
#[cfg(not(feature = "tch"))]
const NO_TCH: &str = "this build has no LibTorch backend: rebuild with `--features tch` \
                      (needs PyTorch's libtorch; docs/training.md says how)";

impl Backend {
    /// The plain (non-autodiff) device `spec` (`None`: the backend's default).
    pub fn device(self, spec: Option<DeviceSpec>) -> Result<Device> {
        Ok(self.devices(spec, 1)?.remove(0))
    }

    /// `n` plain devices for data-parallel training, the main one first: CUDA devices
    /// `i..i + n` for `cuda:i` (tch), the GPUs `0..n` for wgpu; on the CPU `n` replicas of the
    /// one CPU device (same cores, so no speed-up: for testing the data-parallel path).
    pub fn devices(self, spec: Option<DeviceSpec>, n: usize) -> Result<Vec<Device>> {
        ensure!(n >= 1, "--devices must be ≥ 1");
        match self {
            Backend::Flex => {
                if let Some(s @ DeviceSpec::Cuda(_)) = spec {
                    anyhow::bail!(
                        "--backend flex runs on the CPU only, not {s} (use --backend tch)"
                    );
                }
                Ok(vec![Device::flex(); n])
            }
            Backend::Tch => tch_devices(spec.unwrap_or(DeviceSpec::Cpu), n),
            Backend::Wgpu => wgpu_devices(spec, n),
        }
    }

    /// Whether `spec` on this backend is one CPU device, so that data parallelism over it
    /// only shares the same cores.
    pub fn is_cpu(self, spec: Option<DeviceSpec>) -> bool {
        match self {
            Backend::Flex => true,
            Backend::Tch => spec.is_none_or(|s| s == DeviceSpec::Cpu),
            Backend::Wgpu => false,
        }
    }

    /// The backends this build offers.
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Backend::Flex];
        if cfg!(feature = "tch") {
            v.push(Backend::Tch);
        }
        if cfg!(feature = "wgpu") {
            v.push(Backend::Wgpu);
        }
        v
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream; it is still the fastest backend here
fn tch_devices(spec: DeviceSpec, n: usize) -> Result<Vec<Device>> {
    match spec {
        DeviceSpec::Cpu => Ok(vec![Device::libtorch(); n]),
        DeviceSpec::Cuda(first) => {
            let count = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
            let last = first.checked_add(n).unwrap_or(usize::MAX);
            ensure!(
                last <= count,
                "cuda:{first} with --devices {n} needs CUDA devices {first}..{last}, but LibTorch \
                 sees {count} (is this libtorch a CUDA build, and is a driver installed?)"
            );
            Ok((first..last).map(Device::libtorch_cuda).collect())
        }
    }
}

#[cfg(not(feature = "tch"))]
fn tch_devices(_spec: DeviceSpec, _n: usize) -> Result<Vec<Device>> {
    anyhow::bail!(NO_TCH)
}

#[cfg(feature = "wgpu")]
fn wgpu_devices(spec: Option<DeviceSpec>, n: usize) -> Result<Vec<Device>> {
    use burn::tensor::DeviceKind;
    if let Some(s) = spec {
        anyhow::bail!("--backend wgpu picks its GPUs itself; --device {s} is for --backend tch");
    }
    if n == 1 {
        return Ok(vec![Device::wgpu(DeviceKind::DefaultDevice)]);
    }
    Ok((0..n)
        .map(|i| Device::wgpu(DeviceKind::DiscreteGpu(i)))
        .collect())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_devices(_spec: Option<DeviceSpec>, _n: usize) -> Result<Vec<Device>> {
    anyhow::bail!(NO_WGPU)
}
