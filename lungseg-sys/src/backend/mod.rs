//! Where a model's predictions run, chosen once at open: the CPU engine, or an accelerator
//! (the CUDA engine) that passed the probe, the kernel compile and the one-patch
//! [`self_check`], with the CPU engine kept beside it.
//!
//! Faults: a device error during a prediction (e.g. a faulted CUDA context, which stays faulted
//! for the life of the context) fails that call with a `Device` error, and every later call of
//! the model runs on its CPU engine; [`Backend::report`] then names the CPU and the fault.
//! Falling back, rather than refusing, keeps a scanner's queue moving, and the self-check at
//! open bounds how far the CPU's results may differ from the device's.

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod self_check;

use std::sync::OnceLock;

use crate::cpu::CpuEngine;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Network;
use crate::predict::route::Accelerator;
use crate::predict::{Route, Target};

/// Which device a model is asked to run on. The Rust default is the CPU, whose results are
/// bit-reproducible on any machine running the same kernel; the C ABI's default is AUTO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// The GPU when one is usable (probe, kernel compile) and passes the one-patch self-check
    /// against the CPU at open, else the CPU with a note ([`DeviceReport::note`]).
    Auto,
    #[default]
    Cpu,
    /// The GPU under the same conditions as AUTO, or a `Device` error at open saying why not.
    Cuda,
}

/// Where a model runs now, for `lungseg_model_get_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReport {
    /// [`Device::Cpu`] or [`Device::Cuda`].
    pub device: Device,
    /// The device's name; on the CPU, empty (the host names its CPU).
    pub name: String,
    /// Why the model does not run on a GPU although it might have: AUTO found none usable (the
    /// reason), or the GPU faulted during a prediction. `None` otherwise.
    pub note: Option<String>,
}

/// Opens the accelerator at an index: `Err` says why there is none to use.
pub(crate) type Opener<'a> =
    dyn Fn(&Network, u32) -> std::result::Result<Box<dyn Accelerator>, String> + 'a;

/// The engines of one model.
pub(crate) enum Backend {
    /// The CPU; `note` is why AUTO did not choose a GPU.
    Cpu {
        engine: CpuEngine,
        note: Option<String>,
    },
    Accel(Accelerated),
}

/// A device with the CPU engine its calls fall back to after a fault.
pub(crate) struct Accelerated {
    device: Box<dyn Accelerator>,
    cpu: CpuEngine,
    /// Set by the first device fault; from then on calls run on `cpu`.
    fault: OnceLock<String>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.report();
        f.debug_struct("Backend")
            .field("device", &r.device)
            .field("name", &r.name)
            .field("cpu", self.cpu())
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Chooses the engines for `device`. `cpu` is the model's CPU engine; `opener` opens the
    /// accelerator ([`open_accelerator`] outside tests).
    pub(crate) fn open(
        network: &Network,
        cpu: CpuEngine,
        device: Device,
        index: u32,
        opener: &Opener<'_>,
    ) -> Result<Backend> {
        let accel = match device {
            Device::Cpu => {
                return Ok(Backend::Cpu {
                    engine: cpu,
                    note: None,
                })
            }
            Device::Auto | Device::Cuda => opener(network, index)
                .and_then(|dev| self_check::run(network, &cpu, &*dev).map(|()| dev)),
        };
        match (accel, device) {
            (Ok(dev), _) => Ok(Backend::Accel(Accelerated {
                device: dev,
                cpu,
                fault: OnceLock::new(),
            })),
            (Err(why), Device::Cuda) => Err(Error::device(format!(
                "CUDA device {index} was requested but cannot be used: {why}"
            ))),
            (Err(why), _) => Ok(Backend::Cpu {
                engine: cpu,
                note: Some(format!("AUTO chose the CPU: CUDA device {index}: {why}")),
            }),
        }
    }

    /// The CPU engine (the one predictions run on, or the fallback beside a device).
    pub(crate) fn cpu(&self) -> &CpuEngine {
        match self {
            Backend::Cpu { engine, .. } => engine,
            Backend::Accel(a) => &a.cpu,
        }
    }

    pub(crate) fn report(&self) -> DeviceReport {
        match self {
            Backend::Cpu { note, .. } => DeviceReport {
                device: Device::Cpu,
                name: String::new(),
                note: note.clone(),
            },
            Backend::Accel(a) => match a.fault.get() {
                Some(fault) => DeviceReport {
                    device: Device::Cpu,
                    name: String::new(),
                    note: Some(fault.clone()),
                },
                None => DeviceReport {
                    device: Device::Cuda,
                    name: a.device.name().to_string(),
                    note: None,
                },
            },
        }
    }

    /// Runs one call `f` on the engine in use. A `Device` error from the accelerator marks it
    /// faulted (this call fails, later calls run on the CPU engine).
    pub(crate) fn run<R>(
        &self,
        network: &Network,
        f: impl FnOnce(Target<'_>) -> Result<R>,
    ) -> Result<R> {
        let on = |route| Target { network, route };
        let a = match self {
            Backend::Cpu { engine, .. } => return f(on(Route::Cpu(engine))),
            Backend::Accel(a) => a,
        };
        if a.fault.get().is_some() {
            return f(on(Route::Cpu(&a.cpu)));
        }
        match f(on(Route::Device(&*a.device))) {
            Err(e) if e.kind == ErrorKind::Device => {
                let why = format!(
                    "{} faulted during a prediction: {}",
                    a.device.name(),
                    e.message
                );
                let _ = a
                    .fault
                    .set(format!("{why}; predictions run on the CPU since"));
                Err(Error::device(format!(
                    "{why}; this model's later predictions run on the CPU"
                )))
            }
            r => r,
        }
    }
}

/// The CUDA engine at `index` as an accelerator, or why there is none.
pub(crate) fn open_accelerator(
    network: &Network,
    index: u32,
) -> std::result::Result<Box<dyn Accelerator>, String> {
    #[cfg(feature = "cuda")]
    {
        cuda::open(network, index)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (network, index);
        Err("this build has no CUDA backend (built without the `cuda` feature)".into())
    }
}

#[cfg(test)]
mod tests;
