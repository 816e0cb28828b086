//! The backend's choices and its fault state machine, with stand-in accelerators: a CPU twin
//! (the CPU engine behind the `Accelerator` seam, optionally biased or failing after some
//! passes), so every path runs without a GPU.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::cpu::SampleDrop;
use crate::mc::{self, McOptions, UncertaintyMaps};
use crate::model::{Model, ModelOptions};

const MODEL: &[u8] = include_bytes!("../../tests/fixtures/small_f16_element.safetensors");

/// Runs passes on a CPU-only copy of the model: the CPU's results, through the device route.
struct Twin {
    cpu: Model,
    /// Added to every probability (a device that disagrees).
    bias: f32,
    /// Passes after which every pass fails with a `Device` error (a faulted context).
    fail_after: usize,
    /// A pass returning NaN (the weights overflowing on the device).
    nan: bool,
    passes: Arc<AtomicUsize>,
}

fn sample_id(seed: u64, sample: u32, n_samples: u32) -> mc::SampleId {
    mc::SampleId {
        seed,
        sample,
        n_samples,
    }
}

/// Without test-time flips (the twin's models), any call length names the sample's dropout
/// masks alone.
fn unflipped(d: SampleDrop) -> mc::SampleId {
    sample_id(d.seed, d.sample, d.sample + 1)
}

impl Accelerator for Twin {
    fn name(&self) -> &str {
        "twin GPU"
    }

    fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()> {
        if self.passes.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
            return Err(Error::device("CUDA_ERROR_ILLEGAL_ADDRESS (injected)"));
        }
        match drop {
            None => mc::predict(&self.cpu, patch_hu, prob, 1)?,
            // An accelerator's pass never flips (`mc_by_passes` mirrors around it): the
            // sample as the last of a call of its own length is one without a flip here.
            Some(d) => {
                assert_eq!(self.cpu.config().test_time_flips, 1);
                mc::predict_sample(&self.cpu, patch_hu, unflipped(d), prob, 1)?
            }
        }
        for p in prob.iter_mut() {
            *p = if self.nan { f32::NAN } else { *p + self.bias };
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct TwinSpec {
    bias: f32,
    fail_after: usize,
    nan: bool,
}

const EXACT: TwinSpec = TwinSpec {
    bias: 0.0,
    fail_after: usize::MAX,
    nan: false,
};

fn opts(device: Device) -> ModelOptions {
    ModelOptions {
        device,
        device_index: 3,
        ..ModelOptions::default()
    }
}

/// Opens the model on `device` with a twin of `spec` as its accelerator; the twin's pass count.
fn open_twin(device: Device, spec: TwinSpec) -> (Result<Model>, Arc<AtomicUsize>) {
    open_twin_of(MODEL, device, spec)
}

/// [`open_twin`] for the model file `bytes`; the twin runs [`MODEL`]'s passes.
fn open_twin_of(bytes: &[u8], device: Device, spec: TwinSpec) -> (Result<Model>, Arc<AtomicUsize>) {
    let passes = Arc::new(AtomicUsize::new(0));
    let count = passes.clone();
    let opener =
        move |_: &Network, index: u32| -> std::result::Result<Box<dyn Accelerator>, String> {
            assert_eq!(index, 3, "the caller's device index reaches the opener");
            Ok(Box::new(Twin {
                cpu: Model::from_bytes(MODEL).unwrap(),
                bias: spec.bias,
                fail_after: spec.fail_after,
                nan: spec.nan,
                passes: count.clone(),
            }))
        };
    (Model::from_bytes_on(bytes, &opts(device), &opener), passes)
}

/// [`MODEL`] with `config.test_time_flips` = `flips` (and the format version it needs).
fn with_flips(flips: u32) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(MODEL).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(MODEL).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    cfg["test_time_flips"] = flips.into();
    meta.insert("config".into(), cfg.to_string());
    meta.insert("format_version".into(), crate::model::FORMAT_VERSION.into());
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

/// A flipping model on a device that reduces on the host: each pass runs on the mirrored
/// patch and is mirrored back, so the result is the CPU's flipping MC, bit for bit.
#[test]
fn a_flipping_model_on_a_device_mirrors_around_each_pass() {
    let bytes = with_flips(8);
    let cpu = Model::from_bytes(&bytes).unwrap();
    assert_eq!(cpu.config().test_time_flips, 8);
    let (m, passes) = open_twin_of(&bytes, Device::Cuda, EXACT);
    let m = m.unwrap();
    let at_open = passes.load(Ordering::SeqCst);
    let (mean, s) = mc_mean(&m).unwrap();
    let (want_mean, want) = mc_mean(&cpu).unwrap();
    assert_eq!(passes.load(Ordering::SeqCst), at_open + 3);
    assert_eq!((s, &mean), (want, &want_mean));
    let (plain_mean, _) = mc_mean(&Model::from_bytes(MODEL).unwrap()).unwrap();
    assert_ne!(
        mean, plain_mean,
        "the flips changed nothing: the test proves little"
    );
}

fn no_gpu(_: &Network, _: u32) -> std::result::Result<Box<dyn Accelerator>, String> {
    Err("no libcuda here".into())
}

fn patch(m: &Model) -> Vec<f32> {
    self_check::synthetic_patch(m.config()).unwrap()
}

fn mc_mean(m: &Model) -> Result<(Vec<f32>, crate::mc::PatchSummary)> {
    let hu = patch(m);
    let mut mean = vec![0f32; hu.len()];
    let o = McOptions {
        n_samples: 3,
        seed: 11,
        threads: 1,
        ..McOptions::default()
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..UncertaintyMaps::default()
    };
    let s = mc::predict_uncertainty(m, &hu, &o, maps)?;
    Ok((mean, s))
}

#[test]
fn the_cpu_asked_for_never_opens_a_device() {
    let opener = |_: &Network, _: u32| -> std::result::Result<Box<dyn Accelerator>, String> {
        panic!("the CPU was asked for")
    };
    let m = Model::from_bytes_on(MODEL, &opts(Device::Cpu), &opener).unwrap();
    let r = m.device();
    assert_eq!((r.device, r.note), (Device::Cpu, None));
}

#[test]
fn auto_without_a_device_runs_on_the_cpu_and_says_why() {
    let m = Model::from_bytes_on(MODEL, &opts(Device::Auto), &no_gpu).unwrap();
    let r = m.device();
    assert_eq!(r.device, Device::Cpu);
    let note = r.note.unwrap();
    assert!(
        note.contains("AUTO chose the CPU") && note.contains("CUDA device 3"),
        "{note}"
    );
    assert!(note.contains("no libcuda here"), "{note}");
    mc_mean(&m).unwrap();
}

#[test]
fn cuda_without_a_device_fails_at_open_saying_why() {
    let e = Model::from_bytes_on(MODEL, &opts(Device::Cuda), &no_gpu).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(
        e.message.contains("CUDA device 3") && e.message.contains("no libcuda here"),
        "{e}"
    );
}

#[test]
fn a_device_that_passes_the_self_check_runs_every_prediction() {
    let cpu = Model::from_bytes(MODEL).unwrap();
    for device in [Device::Auto, Device::Cuda] {
        let (m, passes) = open_twin(device, EXACT);
        let m = m.unwrap();
        let r = m.device();
        assert_eq!(
            (r.device, r.name.as_str(), r.note),
            (Device::Cuda, "twin GPU", None)
        );
        let at_open = passes.load(Ordering::SeqCst);
        assert_eq!(
            at_open, 2,
            "the self-check's MC prediction ran on the device"
        );
        // The MC summary and maps: the CPU's, bit for bit (the twin's passes are the CPU's
        // and the host reduction is the CPU's), every sample run on the device.
        let (mean, s) = mc_mean(&m).unwrap();
        let (want_mean, want) = mc_mean(&cpu).unwrap();
        assert_eq!(passes.load(Ordering::SeqCst), at_open + 3);
        assert_eq!(s, want);
        assert_eq!(mean, want_mean);
        // The deterministic pass and one sample.
        let hu = patch(&m);
        let (mut got, mut exp) = (vec![0f32; hu.len()], vec![0f32; hu.len()]);
        mc::predict(&m, &hu, &mut got, 1).unwrap();
        mc::predict(&cpu, &hu, &mut exp, 1).unwrap();
        assert_eq!(got, exp);
        mc::predict_sample(&m, &hu, sample_id(5, 2, 3), &mut got, 1).unwrap();
        mc::predict_sample(&cpu, &hu, sample_id(5, 2, 3), &mut exp, 1).unwrap();
        assert_eq!(got, exp);
        assert_eq!(passes.load(Ordering::SeqCst), at_open + 5);
    }
}

#[test]
fn a_device_that_fails_the_self_check_is_not_used() {
    let biased = TwinSpec {
        bias: 0.02,
        ..EXACT
    };
    let (m, _) = open_twin(Device::Auto, biased);
    let r = m.unwrap().device();
    assert_eq!(r.device, Device::Cpu);
    let note = r.note.unwrap();
    assert!(
        note.contains("self-check on twin GPU") && note.contains("differs"),
        "{note}"
    );
    let e = open_twin(Device::Cuda, biased).0.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(e.message.contains("self-check"), "{e}");
    // A device failing during the check is refused the same way.
    let failing = TwinSpec {
        fail_after: 1,
        ..EXACT
    };
    let e = open_twin(Device::Cuda, failing).0.unwrap_err();
    assert!(e.message.contains("ILLEGAL_ADDRESS"), "{e}");
}

#[test]
fn a_device_fault_fails_the_call_and_later_calls_run_on_the_cpu() {
    let cpu = Model::from_bytes(MODEL).unwrap();
    // The self-check takes 2 passes; the 4th pass faults (the second sample of the next call).
    let (m, passes) = open_twin(
        Device::Auto,
        TwinSpec {
            fail_after: 3,
            ..EXACT
        },
    );
    let m = m.unwrap();
    assert_eq!(m.device().device, Device::Cuda);
    let e = mc_mean(&m).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(
        e.message.contains("faulted") && e.message.contains("run on the CPU"),
        "{e}"
    );
    let r = m.device();
    assert_eq!(r.device, Device::Cpu);
    assert!(r.note.unwrap().contains("ILLEGAL_ADDRESS"));
    let after = passes.load(Ordering::SeqCst);
    // Later calls: the CPU's results, and the device is not asked again.
    assert_eq!(mc_mean(&m).unwrap(), mc_mean(&cpu).unwrap());
    let hu = patch(&m);
    let mut prob = vec![0f32; hu.len()];
    mc::predict(&m, &hu, &mut prob, 1).unwrap();
    assert_eq!(passes.load(Ordering::SeqCst), after);
}

#[test]
fn errors_that_are_not_the_device_s_do_not_count_as_faults() {
    // The self-check's CPU side is fine, the device returns NaN: refused at open (Format from
    // the device pass is a self-check failure, not a usable device).
    let nan = TwinSpec { nan: true, ..EXACT };
    let (m, _) = open_twin(Device::Auto, nan);
    assert_eq!(m.unwrap().device().device, Device::Cpu);
    // A bad argument on a healthy device fails the call only.
    let (m, _) = open_twin(Device::Auto, EXACT);
    let m = m.unwrap();
    let mut prob = vec![0f32; 3];
    let e = mc::predict(&m, &[0.0; 3], &mut prob, 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(m.device().device, Device::Cuda);
}

/// The CUDA plan's CPU reference (`cuda::plan::run_reference_from`: the kernels' arithmetic,
/// fp16 storage and masks included) as the accelerator: what a GPU computes, through the
/// same one-sample runs the CUDA engine serves `pass` with.
#[cfg(feature = "cuda")]
mod plan_reference {
    use super::*;
    use crate::cuda::plan::run_reference_from;

    use crate::test_common as common;

    struct PlanReference(Model);

    impl Accelerator for PlanReference {
        fn name(&self) -> &str {
            "CUDA plan reference"
        }

        fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()> {
            let key = drop.map_or((0, 0), |d| (d.seed, d.sample));
            let r = run_reference_from(&self.0, patch_hu, key, 1, 1, drop.is_some());
            super::super::cuda::one_sample_map(r.mean, prob)
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_gpu_plan_passes_the_self_check_and_serves_every_call() {
        for cfg in [
            r#"{"channels":[16,32],"patch_size":[12,10,8],"dropout":{"p":0.25,"kind":"channel"}}"#,
            r#"{"channels":[16,32],"patch_size":[8,8,8],"dropout":{"p":0.3,"kind":"element"}}"#,
        ] {
            let bytes = common::synth_model_bytes(cfg);
            let opener =
                |_: &Network, _: u32| -> std::result::Result<Box<dyn Accelerator>, String> {
                    Ok(Box::new(PlanReference(Model::from_bytes(&bytes).unwrap())))
                };
            let m = Model::from_bytes_on(&bytes, &opts(Device::Cuda), &opener).unwrap();
            assert_eq!(m.device().device, Device::Cuda, "{cfg}");
            let cpu = Model::from_bytes(&bytes).unwrap();
            let (mean, s) = mc_mean(&m).unwrap();
            let (want_mean, want) = mc_mean(&cpu).unwrap();
            assert!(max_diff(&mean, &want_mean) <= 1e-2, "{cfg}");
            assert_eq!(
                (s.n_samples, s.needs_review),
                (want.n_samples, want.needs_review)
            );
            // Each sample's masks are the CPU's for that sample: a run of one sample from
            // `sample` keys its masks by `sample`, not by its place in the run.
            let hu = patch(&m);
            let (mut got, mut exp) = (vec![0f32; hu.len()], vec![0f32; hu.len()]);
            for sample in [0, 1, 5] {
                mc::predict_sample(&m, &hu, sample_id(9, sample, 6), &mut got, 1).unwrap();
                mc::predict_sample(&cpu, &hu, sample_id(9, sample, 6), &mut exp, 1).unwrap();
                assert!(max_diff(&got, &exp) <= 1e-2, "{cfg} sample {sample}");
            }
            mc::predict(&m, &hu, &mut got, 1).unwrap();
            mc::predict(&cpu, &hu, &mut exp, 1).unwrap();
            assert!(max_diff(&got, &exp) <= 1e-2, "{cfg}");
        }
    }
}

/// A device whose chunked reduction comes back holding a non-finite sum at one voxel (a NaN
/// probability folded in on the device): the call fails with `Format`, naming the voxel, and
/// never returns the statistics as a result.
#[test]
fn a_device_reduction_that_is_not_finite_is_a_format_error() {
    use crate::predict::route::{device_mc, McJob, SampleHook};
    use crate::stats::Stats;

    struct NanState {
        /// Which of mean, m2, sum_h holds the NaN.
        which: usize,
    }
    impl Accelerator for NanState {
        fn name(&self) -> &str {
            "NaN GPU"
        }
        fn pass(&self, _: &[f32], _: Option<SampleDrop>, _: &mut [f32]) -> Result<()> {
            unreachable!("the reduction runs on the device")
        }
        fn mc(&self, job: McJob<'_>, hook: &mut dyn SampleHook, stats: &mut Stats) -> Result<()> {
            let v = job.patch_hu.len();
            hook.before(0)?;
            for _ in 0..job.n_samples {
                stats.record_mask_bits(&vec![0u64; v.div_ceil(64)])?;
            }
            hook.done(job.n_samples);
            let mut state = [vec![0.25f32; v], vec![0.0; v], vec![1.0; v]];
            state[self.which][70] = f32::NAN;
            stats.load_state(&state[0], &state[1], &state[2], job.n_samples)
        }
    }
    struct Quiet;
    impl SampleHook for Quiet {
        fn before(&mut self, _: u32) -> Result<()> {
            Ok(())
        }
        fn done(&mut self, _: u32) {}
    }
    let hu = vec![0f32; 100];
    for which in 0..3 {
        let mut stats = Stats::new(hu.len(), 2).unwrap();
        let job = McJob {
            patch_hu: &hu,
            seed: 1,
            n_samples: 2,
            flips: 1,
            patch_size: [100, 1, 1],
        };
        let e = device_mc(&NanState { which }, job, &mut Quiet, &mut stats).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format, "{e}");
        assert!(
            e.message.contains("voxel 70") && e.message.contains("NaN GPU"),
            "{e}"
        );
    }
}
