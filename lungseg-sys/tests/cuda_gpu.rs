//! GPU tests (run by `scripts/gpu-check.sh run`, which sets `LUNGSEG_GPU_TESTS=1`). Without the
//! variable they return at once (CI has no GPU); with it, a missing GPU is a failure, never a
//! silent skip. The kernel cases are the emulator's (`cuda_cases`, run in CI by
//! `scripts/cuda-emu.sh`): the same launches from the engine's launchers, resolved by the
//! engine's own `launch_resolved`, on NaN-poisoned outputs against the CPU references. Then the
//! whole network against the CPU engine with identical masks, and repeated runs for
//! bit-identity.
#![cfg(feature = "cuda")]

mod common;
mod cuda_cases;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use cuda_cases::{self as cases, KernelDevice, Rng};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr};
use lungseg::cuda::engine::{launch_resolved, CudaEngine};
use lungseg::cuda::launch::Launch;
use lungseg::cuda::probe::GpuInfo;
use lungseg::cuda::{compile, probe, Probe, KERNELS};

/// `None` when GPU tests are not requested; panics when requested but no GPU is usable.
fn gpu() -> Option<(Arc<CudaContext>, Arc<CudaStream>, GpuInfo)> {
    if std::env::var("LUNGSEG_GPU_TESTS").ok().as_deref() != Some("1") {
        eprintln!("GPU test skipped: LUNGSEG_GPU_TESTS is not 1");
        return None;
    }
    let info = match probe() {
        Probe::Usable(i) => i.clone(),
        Probe::Unusable(why) => panic!("LUNGSEG_GPU_TESTS=1 but no usable GPU: {why}"),
    };
    let ctx = CudaContext::new(0).unwrap();
    let st = ctx.default_stream();
    Some((ctx, st, info))
}

/// The GPU as a [`KernelDevice`]: every network kernel compiled as the engine loads them (NVRTC
/// through the cache, or the prebuilt cubins), buffers as device allocations, each launch
/// synchronised so that a fault names its kernel.
struct Gpu {
    st: Arc<CudaStream>,
    funcs: HashMap<&'static str, CudaFunction>,
    bufs: Vec<CudaSlice<u8>>,
}

fn gpu_device() -> Option<Gpu> {
    let (ctx, st, info) = gpu()?;
    let mut funcs = HashMap::new();
    for k in KERNELS {
        let cubin = compile::cubin_for(k, info.compute, info.driver_version, info.nvrtc)
            .unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let m = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .unwrap();
        for f in k.functions {
            funcs.insert(*f, m.load_function(f).unwrap());
        }
    }
    Some(Gpu {
        st,
        funcs,
        bufs: Vec::new(),
    })
}

impl KernelDevice for Gpu {
    type Buf = usize;

    fn upload(&mut self, bytes: &[u8]) -> usize {
        self.bufs.push(self.st.clone_htod(bytes).unwrap());
        self.bufs.len() - 1
    }

    fn poisoned(&mut self, len: usize) -> usize {
        self.upload(&vec![0xFF; len])
    }

    fn launch(&mut self, launch: &Launch<usize>) {
        let f = self
            .funcs
            .get(launch.func)
            .unwrap_or_else(|| panic!("no kernel {}", launch.func));
        let (st, bufs) = (&self.st, &self.bufs);
        launch_resolved(st, f, launch, |i| Ok(bufs[i].device_ptr(st)))
            .unwrap_or_else(|e| panic!("{}: {e}", launch.func));
        st.synchronize()
            .unwrap_or_else(|e| panic!("{}: {e:?}", launch.func));
    }

    fn read(&mut self, buf: usize) -> Vec<u8> {
        self.st.clone_dtoh(&self.bufs[buf]).unwrap()
    }
}

#[test]
fn conv_first_kernel_matches_reference() {
    let Some(mut gpu) = gpu_device() else { return };
    cases::conv_first(&mut gpu);
}

#[test]
fn dropout_expand_kernel_matches_reference() {
    let Some(mut gpu) = gpu_device() else { return };
    cases::dropout_expand(&mut gpu);
}

#[test]
fn conv3_kernel_matches_reference() {
    let Some(mut gpu) = gpu_device() else { return };
    let mut rng = Rng(13);
    for case in cases::CONV3_SMALL_AND_ODD {
        cases::conv3(&mut gpu, &mut rng, case);
    }
    // Sizes the emulator is too slow for: a 64-channel decoder input at 20³, two samples.
    cases::conv3(&mut gpu, &mut rng, (16, 16, 32, 2, [16, 16, 16], false, 2));
    cases::conv3(&mut gpu, &mut rng, (32, 32, 32, 2, [20, 20, 20], false, 1));
}

#[test]
fn pool_and_upconv_kernels_match_references() {
    let Some(mut gpu) = gpu_device() else { return };
    cases::maxpool(&mut gpu);
    cases::upconv(&mut gpu);
}

#[test]
fn head_kernels_match_reference_with_and_without_masks() {
    let Some(mut gpu) = gpu_device() else { return };
    cases::head(&mut gpu, true);
    cases::head(&mut gpu, false);
}

/// Default architecture, formula weights, a 64³ patch: GPU engine vs CPU engine, same masks.
#[test]
fn network_matches_cpu_engine_and_repeats_bit_identically() {
    network_matches_cpu_engine(r#"{"channels":[16,32,64,128,256]}"#);
}

/// The shipped default model's architecture: 8 channels at level 0 (stored as 16 zero-padded
/// channels on the device), dropout in levels 2–4 only.
#[test]
fn shipped_architecture_matches_cpu_engine() {
    network_matches_cpu_engine(
        r#"{"channels":[8,16,32,64,128],"dropout":{"p":0.2,"kind":"channel","levels":[2,3,4]}}"#,
    );
}

/// The 64³ fixture patch. The GPU machine has a copy of the fixtures in $LUNGSEG_FIXTURES
/// (scripts/gpu-check.sh).
fn default_input() -> Vec<f32> {
    let dir = std::env::var("LUNGSEG_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").into());
    std::fs::read(format!("{dir}/default.input.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The shipped architecture with 4 test-time flips, through the backend as device software
/// opens it: the chunks cut at each flip, the patch uploaded mirrored, the head reading each
/// sample mirrored back. The CPU engine's MC mean within the self-check's bounds.
#[test]
fn flipping_model_matches_cpu_engine_through_the_backend() {
    let Some(_) = gpu() else { return };
    let cfg = r#"{"channels":[8,16,32,64,128],"dropout":{"p":0.2,"kind":"channel","levels":[2,3,4]},"test_time_flips":4}"#;
    let bytes = synth_model_bytes(cfg);
    let cpu = lungseg::model::Model::from_bytes(&bytes).unwrap();
    let opts = lungseg::model::ModelOptions {
        device: lungseg::model::Device::Cuda,
        ..Default::default()
    };
    let gpu_model = lungseg::model::Model::from_bytes_with(&bytes, &opts).unwrap();
    assert_eq!(gpu_model.device().device, lungseg::model::Device::Cuda);
    let input = default_input();
    let mean_of = |m: &lungseg::model::Model| {
        let mut mean = vec![0f32; input.len()];
        let o = lungseg::mc::McOptions {
            n_samples: 20,
            seed: 5,
            threads: 0,
            review_threshold: None,
            review_score: None,
        };
        let maps = lungseg::mc::UncertaintyMaps {
            mean: Some(&mut mean),
            ..Default::default()
        };
        let s = lungseg::mc::predict_uncertainty(m, &input, &o, maps).unwrap();
        (mean, s.needs_review)
    };
    let (got, got_review) = mean_of(&gpu_model);
    let (want, want_review) = mean_of(&cpu);
    let max = max_abs_diff(&got, &want);
    eprintln!("4 flips: probability max abs {max:.2e}");
    assert!(max <= 1e-2, "max {max}");
    assert_eq!(got_review, want_review);
}

fn network_matches_cpu_engine(cfg: &str) {
    let Some(_) = gpu() else { return };
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    let input = default_input();
    let eng = CudaEngine::new(&m, 0).unwrap();
    eprintln!("device {}, chunk {}", eng.device_name, eng.chunk());
    let n_samples = 6;
    let seed = 0xC0FFEE;
    for (dropout, n) in [(false, 1u32), (true, n_samples)] {
        let got = eng.run(&input, seed, n, dropout).unwrap();
        let again = eng.run(&input, seed, n, dropout).unwrap();
        assert!(
            got.mean
                .iter()
                .zip(&again.mean)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && got
                    .mutual_info
                    .iter()
                    .zip(&again.mutual_info)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "repeated runs differ"
        );
        let v = input.len();
        let (mut a, mut b, mut c, mut d) = (vec![0.0; v], vec![0.0; v], vec![0.0; v], vec![0.0; v]);
        let summary = if dropout {
            Some(
                lungseg::mc::predict_uncertainty(
                    &m,
                    &input,
                    &lungseg::mc::McOptions {
                        n_samples: n,
                        seed,
                        threads: 0,
                        review_threshold: None,
                        review_score: None,
                    },
                    lungseg::mc::UncertaintyMaps {
                        mean: Some(&mut a),
                        variance: Some(&mut b),
                        entropy: Some(&mut c),
                        mutual_info: Some(&mut d),
                    },
                )
                .unwrap(),
            )
        } else {
            lungseg::mc::predict(&m, &input, &mut a, 0).unwrap();
            None
        };
        let max = max_abs_diff(&got.mean, &a);
        let mean = got
            .mean
            .iter()
            .zip(&a)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>()
            / v as f64;
        eprintln!("dropout={dropout}: probability max abs {max:.2e}, mean abs {mean:.2e}");
        assert!(max <= 1e-2 && mean <= 1e-3, "max {max} mean {mean}");
        if let Some(s) = summary {
            let region = got.sums[1];
            let avg = |x: f64| {
                if region > 0.0 {
                    (x / region) as f32
                } else {
                    0.0
                }
            };
            let score = match m.review().score {
                lungseg::model::ReviewScore::MeanMutualInfo => avg(got.sums[4]),
                lungseg::model::ReviewScore::MeanEntropy => avg(got.sums[3]),
                lungseg::model::ReviewScore::MeanVariance => avg(got.sums[5]),
                // Not a kernel sum: from the GPU's mean map on the host.
                lungseg::model::ReviewScore::VolumeDisagreement => {
                    lungseg::mc::volume_disagreement(
                        got.mean.iter().map(|&p| f64::from(p)).sum(),
                        got.mean.iter().filter(|&&p| p >= 0.5).count() as u64,
                    )
                }
                lungseg::model::ReviewScore::MaskMeanEntropy => {
                    let fg: Vec<f32> = got.mean.iter().copied().filter(|&p| p >= 0.5).collect();
                    let h: f64 = fg
                        .iter()
                        .map(|&p| f64::from(lungseg::mc::entropy_bits(p)))
                        .sum();
                    if fg.is_empty() {
                        0.0
                    } else {
                        (h / fg.len() as f64) as f32
                    }
                }
                // The structure scores need the sample masks of `run_mc`: the MC call through
                // the backend (cuda_device.rs) compares those; this synthetic model names none.
                other @ (lungseg::model::ReviewScore::DiceDisagreement
                | lungseg::model::ReviewScore::IouDisagreement
                | lungseg::model::ReviewScore::VolumeCv) => panic!(
                    "{} is compared through the backend in cuda_device.rs",
                    other.name()
                ),
            };
            eprintln!(
                "score gpu {score} cpu {} (threshold {})",
                s.uncertainty_score,
                m.review().threshold
            );
            assert_eq!(
                score > m.review().threshold,
                s.needs_review,
                "needs-review differs"
            );
        }
    }
}
