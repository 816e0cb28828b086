//! Backend and device choice (`--backend`, `--device`), the batch loader thread (`--prefetch`),
//! and seeded reproducibility + exact resume on each backend this build has.

use crate::common;

use std::path::Path;

use burn::tensor::Device;
use lungseg_train::export::named_tensors;
use lungseg_train::train::prefetch::prefetched;
use lungseg_train::train::{checkpoint, read_config, train, Backend, DeviceSpec, TrainOptions};

#[test]
fn device_specs_parse_and_bad_ones_say_why() {
    assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
    assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
    assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
    assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
    assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps:0", ""] {
        let err = bad.parse::<DeviceSpec>().unwrap_err();
        assert!(
            err.contains("cuda:N") || err.contains("index"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn flex_refuses_a_cuda_device_and_missing_backends_name_their_feature() {
    let _rng = common::rng_lock();
    let err = Backend::Flex
        .device(Some(DeviceSpec::Cuda(0)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--backend tch"), "{err}");
    assert!(Backend::Flex.device(Some(DeviceSpec::Cpu)).is_ok());
    assert!(Backend::Flex.devices(None, 0).is_err(), "zero devices");
    assert!(Backend::available().contains(&Backend::Flex));
    if !cfg!(feature = "tch") {
        let err = Backend::Tch.device(None).unwrap_err().to_string();
        assert!(err.contains("--features tch"), "{err}");
    }
    if !cfg!(feature = "wgpu") {
        let err = Backend::Wgpu.device(None).unwrap_err().to_string();
        assert!(err.contains("--features wgpu"), "{err}");
    }
}

#[test]
fn prefetched_items_arrive_in_order_at_every_depth() {
    for depth in [0, 1, 3] {
        let got = prefetched(depth, 0..100u32, |items| items.collect::<Vec<_>>()).unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "depth {depth}");
    }
}

/// A consumer that stops early (an error in the step) ends the loader instead of leaving it
/// blocked on a full channel, and the loader stays at most `depth` + 2 items ahead.
#[test]
fn an_early_return_stops_the_loader() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let produced = AtomicUsize::new(0);
    let items = (0..).inspect(|_| {
        produced.fetch_add(1, Ordering::SeqCst);
    });
    let first = prefetched(2, items, |items| items.take(5).collect::<Vec<u64>>()).unwrap();
    assert_eq!(first, [0, 1, 2, 3, 4]);
    let n = produced.load(Ordering::SeqCst);
    assert!((5..=5 + 2 + 2).contains(&n), "loader produced {n} items");
}

fn tiny_options(data: &Path, out: &Path, backend: Backend) -> TrainOptions {
    TrainOptions {
        backend,
        ..common::tiny_train_options(data, out, 5)
    }
}

/// The weights of the epoch-`epoch` checkpoint of run `out`, read on flex (checkpoints are
/// backend-independent files). Weights, not files: a model file also stores parameter ids.
fn weights(out: &Path, epoch: usize) -> Vec<(String, Vec<f32>)> {
    let config = read_config(out).unwrap();
    let dir = checkpoint::checkpoint_dir(out, epoch);
    let model = checkpoint::load_model(&dir, &config, &Device::flex()).unwrap();
    named_tensors(&model)
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect()
}

/// Two seeded runs give bit-identical weights, and a run resumed from the epoch-2 checkpoint
/// ends bit-identical to the uninterrupted one.
fn reproducible_and_resumes_exactly(
    backend: Backend,
    options: impl Fn(TrainOptions) -> TrainOptions,
) {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 6, 2, 4);
    let run = |name: &str| {
        let out = tmp.path().join(name);
        train(&options(tiny_options(&data, &out, backend))).unwrap();
        out
    };
    let (a, b) = (run("a"), run("b"));
    let straight = weights(&a, 3);
    assert!(
        straight == weights(&b, 3),
        "{backend:?}: two seeded runs differ"
    );

    std::fs::remove_dir_all(checkpoint::checkpoint_dir(&a, 3)).unwrap();
    train(&TrainOptions {
        resume: true,
        ..options(tiny_options(&data, &a, backend))
    })
    .unwrap();
    assert!(
        weights(&a, 3) == straight,
        "{backend:?}: the resumed run ends elsewhere than the uninterrupted one"
    );
}

#[test]
fn flex_runs_are_reproducible_and_resume_exactly() {
    reproducible_and_resumes_exactly(Backend::Flex, |o| o);
}

/// The loader thread reads the same batches in the same order: same weights as reading on the
/// training thread.
#[test]
fn prefetching_does_not_change_the_run() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 6, 2, 9);
    let run = |name: &str, prefetch: usize| {
        let out = tmp.path().join(name);
        train(&TrainOptions {
            prefetch,
            epochs: 2,
            ..tiny_options(&data, &out, Backend::Flex)
        })
        .unwrap();
        weights(&out, 2)
    };
    assert!(run("serial", 0) == run("ahead", 3));
}

#[cfg(feature = "tch")]
mod tch {
    use super::*;

    #[test]
    fn libtorch_cpu_runs_are_reproducible_and_resume_exactly() {
        reproducible_and_resumes_exactly(Backend::Tch, |o| TrainOptions {
            device: Some(DeviceSpec::Cpu),
            ..o
        });
    }

    /// One CUDA device past the last is refused with the count LibTorch sees (on a machine
    /// without CUDA: any CUDA device).
    #[test]
    fn a_missing_cuda_device_is_a_clear_error() {
        let count = usize::try_from(::tch::Cuda::device_count()).unwrap();
        let err = Backend::Tch
            .devices(Some(DeviceSpec::Cuda(count)), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("LibTorch sees {count}")), "{err}");
        let err = Backend::Tch
            .devices(Some(DeviceSpec::Cuda(usize::MAX)), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CUDA devices"), "{err}");
    }

    /// A short data-parallel run on two CPU replicas of LibTorch trains (the `--devices N`
    /// path that CUDA devices take).
    #[test]
    fn libtorch_data_parallel_runs() {
        let _rng = common::rng_lock();
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        common::write_dataset(&data, 16, 6, 2, 2);
        let out = tmp.path().join("run");
        let s = train(&TrainOptions {
            devices: 2,
            epochs: 1,
            batch_size: 4,
            ..tiny_options(&data, &out, Backend::Tch)
        })
        .unwrap();
        assert!(s.final_train_loss.is_finite());
    }
}
