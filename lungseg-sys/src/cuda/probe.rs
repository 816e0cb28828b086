//! Is a usable NVIDIA GPU present? Answered once per process, without panicking.
//!
//! cudarc's `dynamic-loading` loaders panic on first use of a missing library, so the library
//! checks (`is_culib_present`) come first; only then is the driver initialised and asked for a
//! device and its compute capability.

use std::sync::OnceLock;

/// Minimum compute capability: `mma.sync.m16n8k16` with f32 accumulation needs sm_80.
pub const MIN_COMPUTE: (i32, i32) = (8, 0);

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The device can run the backend.
    Usable(GpuInfo),
    /// Why not, for the `LUNGSEG_DEVICE` message ("no libcuda ...", "no CUDA device ...").
    Unusable(String),
}

/// A CUDA device as the driver describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    pub name: String,
    /// Compute capability (major, minor).
    pub compute: (i32, i32),
    /// `cuDriverGetVersion`, e.g. 12080.
    pub driver_version: i32,
    /// Whether libnvrtc loads (else kernels must come from the cache or prebuilt binaries).
    pub nvrtc: bool,
}

impl Probe {
    pub fn is_usable(&self) -> bool {
        matches!(self, Probe::Usable(_))
    }
}

/// Whether libcuda (the driver library) can be loaded.
pub fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen the candidate names; no symbol is used.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether libnvrtc can be loaded.
pub fn libnvrtc_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The cached answer for device 0 in this process.
pub fn probe() -> &'static Probe {
    static P: OnceLock<Probe> = OnceLock::new();
    P.get_or_init(|| probe_uncached(0))
}

/// The answer for CUDA device `index` (0: [`probe`]'s cached one); an index the driver does not
/// have is `Unusable`, naming how many it has.
pub fn probe_device(index: u32) -> Probe {
    match index {
        0 => probe().clone(),
        i => probe_uncached(i),
    }
}

fn probe_uncached(index: u32) -> Probe {
    if !libcuda_present() {
        return Probe::Unusable(
            "no libcuda: the NVIDIA driver library (libcuda.so.1) is not installed or not on \
             the loader path, so there is no usable GPU"
                .into(),
        );
    }
    let nvrtc = libnvrtc_present();
    match std::panic::catch_unwind(|| device_info(nvrtc, index)) {
        Ok(Ok(info)) => {
            if !nvrtc && !super::compile::prebuilt_available(info.compute) {
                return Probe::Unusable(format!(
                    "no libnvrtc: {} was found but libnvrtc.so.12 (NVRTC, to compile the \
                     kernels) is not loadable and no prebuilt kernels are in \
                     $LUNGSEG_CUDA_PREBUILT for sm_{}{}",
                    info.name, info.compute.0, info.compute.1
                ));
            }
            Probe::Usable(info)
        }
        Ok(Err(why)) => Probe::Unusable(why),
        Err(_) => Probe::Unusable("the CUDA driver panicked while being probed".into()),
    }
}

fn device_info(nvrtc: bool, index: u32) -> Result<GpuInfo, String> {
    use cudarc::driver::{result, sys};
    result::init().map_err(|e| format!("cuInit failed ({e:?}): the driver cannot start"))?;
    let n = result::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e:?}"))?;
    if n < 1 {
        return Err("no CUDA device: libcuda loads but the driver reports no GPU".into());
    }
    if i64::from(index) >= i64::from(n) {
        return Err(format!(
            "no CUDA device {index}: the driver reports {n} GPU(s), numbered from 0"
        ));
    }
    let ordinal = index as i32;
    let dev = result::device::get(ordinal)
        .map_err(|e| format!("cuDeviceGet({ordinal}) failed: {e:?}"))?;
    let attr = |a| unsafe { result::device::get_attribute(dev, a) };
    let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(|e| format!("compute capability query failed: {e:?}"))?;
    let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        .map_err(|e| format!("compute capability query failed: {e:?}"))?;
    let name = result::device::get_name(dev).unwrap_or_else(|_| "NVIDIA GPU".into());
    let mut driver_version = 0i32;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| format!("cuDriverGetVersion failed: {e:?}"))?;
    if (major, minor) < MIN_COMPUTE {
        return Err(format!(
            "{name} has compute capability {major}.{minor}; the CUDA backend needs 8.0 or newer \
             (tensor-core mma.sync m16n8k16)"
        ));
    }
    Ok(GpuInfo {
        name,
        compute: (major, minor),
        driver_version,
        nvrtc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_stable_and_explains_itself() {
        let a = probe();
        let b = probe();
        assert_eq!(a, b);
        if let Probe::Unusable(why) = a {
            assert!(why.starts_with("no ") || why.contains("CUDA"), "{why}");
        }
    }
}
