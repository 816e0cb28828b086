//! Device selection with the `cuda` feature on a machine without a usable GPU (CI, this
//! machine): the probe says what is missing, CUDA is a `LUNGSEG_DEVICE` error with that
//! message, AUTO falls back to the CPU and predicts. On a GPU machine (`LUNGSEG_GPU_TESTS=1`)
//! these no-GPU expectations are skipped; `cuda_gpu.rs` covers that case.
#![cfg(feature = "cuda")]

use lungseg::cuda::{probe, Probe};
use lungseg::ffi::lungseg_status::*;
use lungseg::ffi::*;
use std::ffi::{CStr, CString};
use std::ptr::null_mut;

fn gpu_run() -> bool {
    std::env::var("LUNGSEG_GPU_TESTS").is_ok_and(|v| v == "1")
}

fn open(device: u32) -> (lungseg_status, *mut lungseg_model, String) {
    let path = CString::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/small_f16_element.safetensors"
    ))
    .unwrap();
    let opts = lungseg_model_options {
        struct_size: std::mem::size_of::<lungseg_model_options>() as u32,
        device,
        threads: 1,
        ..Default::default()
    };
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(path.as_ptr(), &opts, &mut m) };
    let mut buf = vec![0 as libc::c_char; 2048];
    unsafe { lungseg_last_error(buf.as_mut_ptr(), buf.len()) };
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    (st, m, msg)
}

#[test]
fn without_a_gpu_cuda_is_a_device_error_and_auto_is_the_cpu() {
    if gpu_run() {
        return;
    }
    let why = match probe() {
        Probe::Unusable(why) => why.clone(),
        Probe::Usable(info) => panic!(
            "a usable GPU ({}) but LUNGSEG_GPU_TESTS is not 1",
            info.name
        ),
    };
    if !lungseg::cuda::probe::libcuda_present() {
        assert!(why.starts_with("no libcuda"), "{why}");
    }

    let (st, m, msg) = open(lungseg_device::LUNGSEG_DEVICE_CUDA as u32);
    assert_eq!(st, LUNGSEG_DEVICE, "{msg}");
    assert!(m.is_null());
    assert!(
        msg.contains("CUDA device 0 was requested") && msg.contains(&why),
        "{msg}"
    );

    let (st, m, msg) = open(lungseg_device::LUNGSEG_DEVICE_AUTO as u32);
    assert_eq!(st, LUNGSEG_OK, "{msg}");
    let mut info = lungseg_model_info::default();
    assert_eq!(unsafe { lungseg_model_get_info(m, &mut info) }, LUNGSEG_OK);
    assert_eq!(info.device, lungseg_device::LUNGSEG_DEVICE_CPU as u32);
    let mut note = vec![0 as libc::c_char; 2048];
    unsafe { lungseg_model_get_device_note(m, note.as_mut_ptr(), note.len()) };
    let note = unsafe { CStr::from_ptr(note.as_ptr()) }.to_string_lossy();
    assert!(
        note.starts_with("AUTO chose the CPU: CUDA device 0: ") && note.contains(&why),
        "{note}"
    );
    let n = info.patch_size.iter().product::<u32>() as usize;
    let input = vec![-500.0f32; n];
    let mut prob = vec![0.0f32; n];
    let st = unsafe { lungseg_predict(m, input.as_ptr(), n, prob.as_mut_ptr(), n) };
    assert_eq!(st, LUNGSEG_OK);
    assert!(prob.iter().all(|p| (0.0..=1.0).contains(p)));
    unsafe { lungseg_model_free(m) };

    let (st, m, _) = open(lungseg_device::LUNGSEG_DEVICE_CPU as u32);
    assert_eq!(st, LUNGSEG_OK);
    unsafe { lungseg_model_free(m) };
}

#[test]
fn engine_refuses_cleanly_without_a_gpu() {
    if gpu_run() {
        return;
    }
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/small_f16_element.safetensors"
    ))
    .unwrap();
    let m = lungseg::model::Model::from_bytes(&bytes).unwrap();
    let e = lungseg::cuda::engine::CudaEngine::new(&m, 0)
        .err()
        .expect("no GPU here");
    assert_eq!(e.kind, lungseg::ErrorKind::Device);
}

/// On a GPU machine (`scripts/gpu-check.sh run`): AUTO and CUDA open on the GPU through the C
/// ABI (probe, compile and self-check pass), name it, predict through it within the
/// self-check's bounds of a CPU model, and a device index with no GPU is refused for CUDA and
/// the CPU for AUTO.
#[test]
fn on_a_gpu_auto_and_cuda_run_on_it_through_the_c_abi() {
    if !gpu_run() {
        return;
    }
    let info_of = |m: *mut lungseg_model| {
        let mut info = lungseg_model_info::default();
        assert_eq!(unsafe { lungseg_model_get_info(m, &mut info) }, LUNGSEG_OK);
        info
    };
    let mc = |m: *mut lungseg_model, n: usize| {
        let input: Vec<f32> = (0..n).map(|i| -900.0 + (i % 97) as f32 * 12.0).collect();
        let mut mean = vec![0.0f32; n];
        let mut out = lungseg_uncertainty {
            mean: mean.as_mut_ptr(),
            variance: null_mut(),
            entropy: null_mut(),
            mutual_info: null_mut(),
            len: n,
            summary: Default::default(),
        };
        let opts = lungseg_mc_options {
            struct_size: std::mem::size_of::<lungseg_mc_options>() as u32,
            n_samples: 8,
            seed: 7,
            ..Default::default()
        };
        let st = unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &opts, &mut out) };
        assert_eq!(st, LUNGSEG_OK);
        (mean, out.summary.needs_review)
    };
    let (st, cpu, msg) = open(lungseg_device::LUNGSEG_DEVICE_CPU as u32);
    assert_eq!(st, LUNGSEG_OK, "{msg}");
    let n = info_of(cpu).patch_size.iter().product::<u32>() as usize;
    let (want, want_review) = mc(cpu, n);
    for device in [
        lungseg_device::LUNGSEG_DEVICE_AUTO,
        lungseg_device::LUNGSEG_DEVICE_CUDA,
    ] {
        let (st, m, msg) = open(device as u32);
        assert_eq!(st, LUNGSEG_OK, "{device:?}: {msg}");
        let info = info_of(m);
        assert_eq!(
            info.device,
            lungseg_device::LUNGSEG_DEVICE_CUDA as u32,
            "{device:?}"
        );
        let name = unsafe { CStr::from_ptr(info.device_name.as_ptr()) }.to_string_lossy();
        assert!(name.starts_with("CUDA 0: "), "{name}");
        let (got, review) = mc(m, n);
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max <= 1e-2, "{device:?}: max |Δp| {max}");
        assert_eq!(review, want_review, "{device:?}: review decision");
        unsafe { lungseg_model_free(m) };
    }
    unsafe { lungseg_model_free(cpu) };

    let path = CString::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/small_f16_element.safetensors"
    ))
    .unwrap();
    for (device, want) in [
        (lungseg_device::LUNGSEG_DEVICE_CUDA, LUNGSEG_DEVICE),
        (lungseg_device::LUNGSEG_DEVICE_AUTO, LUNGSEG_OK),
    ] {
        let opts = lungseg_model_options {
            struct_size: std::mem::size_of::<lungseg_model_options>() as u32,
            device: device as u32,
            device_index: 4096,
            ..Default::default()
        };
        let mut m = null_mut();
        let st = unsafe { lungseg_model_open(path.as_ptr(), &opts, &mut m) };
        assert_eq!(st, want, "{device:?} at device 4096");
        if st == LUNGSEG_OK {
            assert_eq!(info_of(m).device, lungseg_device::LUNGSEG_DEVICE_CPU as u32);
            unsafe { lungseg_model_free(m) };
        }
    }
}
