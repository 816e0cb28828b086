//! The C ABI for models, called as C would: results equal the Rust engine's, bad input gets
//! its status and a message, and one handle serves many threads.

mod ffi_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(fixture(name))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const MODEL: &str = "small_f16_element.safetensors";

fn open(opts: Option<&lungseg_model_options>) -> *mut lungseg_model {
    let p = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st =
        unsafe { lungseg_model_open(p.as_ptr(), opts.map_or(null(), |o| o as *const _), &mut m) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    m
}

fn maps(n: usize) -> [Vec<f32>; 4] {
    [
        vec![f32::NAN; n],
        vec![f32::NAN; n],
        vec![f32::NAN; n],
        vec![f32::NAN; n],
    ]
}

#[test]
fn info_and_results_match_the_rust_engine() {
    let m = open(None);
    let rust = Model::open(&fixture(MODEL)).unwrap();
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    let c = rust.config();
    assert_eq!(info.patch_size.map(|v| v as usize), c.patch_size);
    assert_eq!(info.levels as usize, c.channels.len());
    assert_eq!(info.parameter_count as usize, rust.parameter_count());
    assert_eq!(info.review_threshold, rust.review().threshold);
    assert_eq!(
        info.device,
        lungseg_device::LUNGSEG_DEVICE_CPU as u32,
        "AUTO falls back to the CPU"
    );
    let name = unsafe { CStr::from_ptr(info.device_name.as_ptr()) }
        .to_str()
        .unwrap();
    assert!(name.starts_with("CPU"), "{name}");

    let input = read_f32("small_f16_element.input.f32");
    let n = input.len();
    let mut prob = vec![0f32; n];
    assert_eq!(
        unsafe { lungseg_predict(m, input.as_ptr(), n, prob.as_mut_ptr(), n) },
        lungseg_status::LUNGSEG_OK
    );
    let mut want = vec![0f32; n];
    mc::predict(&rust, &input, &mut want, 1).unwrap();
    assert_eq!(prob, want);

    let [mut mean, mut var, mut ent, mut mi] = maps(n);
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        variance: var.as_mut_ptr(),
        entropy: ent.as_mut_ptr(),
        mutual_info: mi.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let opts = lungseg_mc_options {
        struct_size: std::mem::size_of::<lungseg_mc_options>() as u32,
        n_samples: 8,
        seed: 42,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let [mut m2, mut v2, mut e2, mut i2] = maps(n);
    let s = mc::predict_uncertainty(
        &rust,
        &input,
        &McOptions {
            n_samples: 8,
            seed: 42,
            threads: 1,
            review_threshold: None,
            review_score: None,
        },
        UncertaintyMaps {
            mean: Some(&mut m2),
            variance: Some(&mut v2),
            entropy: Some(&mut e2),
            mutual_info: Some(&mut i2),
        },
    )
    .unwrap();
    assert_eq!(
        (mean, var, ent, mi),
        (m2, v2, e2, i2),
        "bit-identical to the Rust API on another thread count"
    );
    assert_eq!(out.summary.foreground_voxels, s.foreground_voxels);
    assert_eq!(out.summary.uncertainty_score, s.uncertainty_score);
    assert_eq!(out.summary.needs_review, s.needs_review);
    assert_eq!(out.summary.n_samples, 8);
    assert_eq!(out.summary.review_threshold, rust.review().threshold);

    // Maps may be NULL; an override threshold of -1 always asks for review.
    let mut only = lungseg_uncertainty {
        mean: null_mut(),
        variance: null_mut(),
        entropy: null_mut(),
        mutual_info: null_mut(),
        len: 0,
        ..Default::default()
    };
    let o2 = lungseg_mc_options {
        override_review_threshold: 1,
        review_threshold: -1.0,
        ..opts
    };
    assert_eq!(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &o2, &mut only) },
        lungseg_status::LUNGSEG_OK
    );
    assert!(only.summary.needs_review);
    assert_eq!(only.summary.review_threshold, -1.0);
    // NULL options = 20 samples, seed 0.
    assert_eq!(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, null(), &mut only) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(only.summary.n_samples, 20);
    unsafe { lungseg_model_free(m) };
    unsafe { lungseg_model_free(null_mut()) };
}

#[test]
fn one_handle_many_threads() {
    let m = open(None) as usize;
    let input = read_f32("small_f16_element.input.f32");
    let n = input.len();
    let run = |seed: u64| {
        let mut mean = vec![0f32; n];
        let mut out = lungseg_uncertainty {
            mean: mean.as_mut_ptr(),
            variance: null_mut(),
            entropy: null_mut(),
            mutual_info: null_mut(),
            len: n,
            ..Default::default()
        };
        let opts = lungseg_mc_options {
            struct_size: std::mem::size_of::<lungseg_mc_options>() as u32,
            n_samples: 4,
            seed,
            ..Default::default()
        };
        let st = unsafe {
            lungseg_predict_uncertainty(m as *mut lungseg_model, input.as_ptr(), n, &opts, &mut out)
        };
        assert_eq!(st, lungseg_status::LUNGSEG_OK);
        mean
    };
    let want: Vec<Vec<f32>> = (0..4).map(run).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| s.spawn(move || (t % 4, run(t as u64 % 4))))
            .collect();
        for h in hs {
            let (i, got) = h.join().unwrap();
            assert_eq!(got, want[i]);
        }
    });
    unsafe { lungseg_model_free(m as *mut lungseg_model) };
}

#[test]
fn bad_model_files_and_options() {
    use lungseg_status::*;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi_model");
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = std::ptr::dangling_mut::<lungseg_model>();
    let open_path = |p: &Path, o: *const lungseg_model_options, m: &mut *mut lungseg_model| {
        let c = CString::new(p.to_str().unwrap()).unwrap();
        unsafe { lungseg_model_open(c.as_ptr(), o, m) }
    };
    expect(
        open_path(&dir.join("none.safetensors"), null(), &mut m),
        LUNGSEG_IO,
        "none.safetensors",
    );
    assert!(m.is_null());
    let bytes = std::fs::read(fixture(MODEL)).unwrap();
    let trunc = dir.join("truncated.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    expect(open_path(&trunc, null(), &mut m), LUNGSEG_FORMAT, "");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"this is not a model").unwrap();
    expect(open_path(&junk, null(), &mut m), LUNGSEG_FORMAT, "");
    expect(
        unsafe { lungseg_model_open(null(), null(), &mut m) },
        LUNGSEG_INVALID_ARGUMENT,
        "path is NULL",
    );
    expect(
        {
            let c = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
            unsafe { lungseg_model_open(c.as_ptr(), null(), null_mut()) }
        },
        LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    let sz = std::mem::size_of::<lungseg_model_options>() as u32;
    let cuda = lungseg_model_options {
        struct_size: sz,
        device: 2,
        threads: 0,
        ..Default::default()
    };
    expect(
        open_path(&fixture(MODEL), &cuda, &mut m),
        LUNGSEG_DEVICE,
        "CUDA",
    );
    let weird = lungseg_model_options {
        struct_size: sz,
        device: 7,
        threads: 0,
        ..Default::default()
    };
    expect(
        open_path(&fixture(MODEL), &weird, &mut m),
        LUNGSEG_INVALID_ARGUMENT,
        "options.device: 7 is not a lungseg_device",
    );
    let small = lungseg_model_options {
        struct_size: 3,
        device: 0,
        threads: 0,
        ..Default::default()
    };
    expect(
        open_path(&fixture(MODEL), &small, &mut m),
        LUNGSEG_INVALID_ARGUMENT,
        "struct_size",
    );
    let threads = lungseg_model_options {
        struct_size: sz,
        device: 1,
        threads: 100_000,
        ..Default::default()
    };
    expect(
        open_path(&fixture(MODEL), &threads, &mut m),
        LUNGSEG_INVALID_ARGUMENT,
        "threads",
    );

    let m = open(None);
    let input = read_f32("small_f16_element.input.f32");
    let n = input.len();
    let mut prob = vec![0f32; n];
    expect(
        unsafe { lungseg_predict(null_mut(), input.as_ptr(), n, prob.as_mut_ptr(), n) },
        LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    expect(
        unsafe { lungseg_predict(m, input.as_ptr(), n - 1, prob.as_mut_ptr(), n - 1) },
        LUNGSEG_INVALID_ARGUMENT,
        "expects",
    );
    expect(
        unsafe { lungseg_predict(m, input.as_ptr(), n, prob.as_mut_ptr(), n - 1) },
        LUNGSEG_INVALID_ARGUMENT,
        "prob_len",
    );
    let mut nan = input.clone();
    nan[17] = f32::NAN;
    expect(
        unsafe { lungseg_predict(m, nan.as_ptr(), n, prob.as_mut_ptr(), n) },
        LUNGSEG_INVALID_ARGUMENT,
        "voxel 17",
    );
    let mut out = lungseg_uncertainty {
        mean: prob.as_mut_ptr(),
        variance: null_mut(),
        entropy: null_mut(),
        mutual_info: null_mut(),
        len: n,
        ..Default::default()
    };
    let sz = std::mem::size_of::<lungseg_mc_options>() as u32;
    for (samples, needle) in [(2000u32, "1024"), (0, "")] {
        let o = lungseg_mc_options {
            struct_size: sz,
            n_samples: samples,
            ..Default::default()
        };
        let st = unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &o, &mut out) };
        if samples == 0 {
            assert_eq!(st, LUNGSEG_OK, "0 samples means the default 20");
        } else {
            expect(st, LUNGSEG_INVALID_ARGUMENT, needle);
        }
    }
    let o = lungseg_mc_options {
        struct_size: 1,
        ..Default::default()
    };
    expect(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &o, &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "struct_size",
    );
    let o = lungseg_mc_options {
        struct_size: sz,
        override_review_threshold: 1,
        review_threshold: f32::NAN,
        ..Default::default()
    };
    expect(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &o, &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "review_threshold",
    );
    out.len = 5;
    expect(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, null(), &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "out->len",
    );
    out.len = n;
    out.variance = prob.as_mut_ptr();
    expect(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, null(), &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "overlap",
    );
    expect(
        unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, null(), null_mut()) },
        LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    let w = [0.0f64; 3];
    expect(
        unsafe { lungseg_predict_uncertainty_at(m, null(), w.as_ptr(), null(), &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "volume is NULL",
    );
    unsafe { lungseg_model_free(m) };
}

/// A FIFO or device as the model path is refused at once: a FIFO without a writer would block
/// the open forever, `/dev/zero` would be read until memory runs out.
#[cfg(unix)]
#[test]
fn fifo_and_device_model_paths_are_refused_without_blocking() {
    use std::os::unix::ffi::OsStrExt;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi_model_fifo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("model.fifo");
    let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut m = null_mut();
        let st = unsafe { lungseg_model_open(c.as_ptr(), null(), &mut m) };
        let _ = tx.send((st, last_error(), m.is_null()));
    });
    let (st, msg, null_out) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("lungseg_model_open hung on a FIFO");
    assert_eq!(st, lungseg_status::LUNGSEG_IO, "{msg}");
    assert!(
        msg.contains("not a regular file") && msg.contains("FIFO"),
        "{msg}"
    );
    assert!(null_out);
}

/// `options.cpu_kernel`: each kernel this CPU runs is used and reported (getter and
/// `device_name`), with the Rust engine's results on that kernel; one it cannot run is
/// `LUNGSEG_DEVICE`; an unknown value is refused; a caller from before the field gets AUTO.
#[test]
fn cpu_kernel_option_is_used_and_reported() {
    use lungseg::model::ModelOptions;
    use lungseg::nn::cpu_kernel::CpuKernel;
    let input = read_f32("small_f16_element.input.f32");
    let n = input.len();
    for k in CpuKernel::ALL {
        let opts = lungseg_model_options {
            cpu_kernel: lungseg_cpu_kernel::from(k) as u32,
            ..Default::default()
        };
        let p = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
        let mut m = null_mut();
        let st = unsafe { lungseg_model_open(p.as_ptr(), &opts, &mut m) };
        if !k.supported() {
            assert_eq!(st, lungseg_status::LUNGSEG_DEVICE, "{k:?}");
            let e = last_error();
            assert!(
                e.contains(k.name()) && e.contains("cannot run on this CPU"),
                "{e}"
            );
            assert!(m.is_null());
            continue;
        }
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        let mut got = u32::MAX;
        assert_eq!(
            unsafe { lungseg_model_get_cpu_kernel(m, &mut got) },
            lungseg_status::LUNGSEG_OK
        );
        assert_eq!(got, lungseg_cpu_kernel::from(k) as u32);
        let mut info = lungseg_model_info::default();
        assert_eq!(
            unsafe { lungseg_model_get_info(m, &mut info) },
            lungseg_status::LUNGSEG_OK
        );
        let name = unsafe { CStr::from_ptr(info.device_name.as_ptr()) }
            .to_str()
            .unwrap();
        assert!(name.starts_with(&format!("CPU ({})", k.name())), "{name}");
        let mut prob = vec![0f32; n];
        assert_eq!(
            unsafe { lungseg_predict(m, input.as_ptr(), n, prob.as_mut_ptr(), n) },
            lungseg_status::LUNGSEG_OK
        );
        let rust = Model::open_with(
            &fixture(MODEL),
            &ModelOptions {
                cpu_kernel: Some(k),
                ..Default::default()
            },
        )
        .unwrap();
        let mut want = vec![0f32; n];
        mc::predict(&rust, &input, &mut want, 2).unwrap();
        assert!(prob
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        unsafe { lungseg_model_free(m) };
    }
    let p = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
    let mut m = std::ptr::dangling_mut::<lungseg_model>();
    let bad = lungseg_model_options {
        cpu_kernel: 5,
        ..Default::default()
    };
    expect(
        unsafe { lungseg_model_open(p.as_ptr(), &bad, &mut m) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "options.cpu_kernel: 5 is not a lungseg_cpu_kernel",
    );
    assert!(m.is_null());
    // A caller built before the field: its struct ends where `cpu_kernel` starts.
    let old = lungseg_model_options {
        struct_size: std::mem::offset_of!(lungseg_model_options, cpu_kernel) as u32,
        cpu_kernel: 5,
        ..Default::default()
    };
    let m = open(Some(&old));
    let mut got = 0;
    assert_eq!(
        unsafe { lungseg_model_get_cpu_kernel(m, &mut got) },
        lungseg_status::LUNGSEG_OK
    );
    let auto = lungseg::nn::cpu_kernel::select(None).unwrap();
    assert_eq!(got, lungseg_cpu_kernel::from(auto) as u32);
    expect(
        unsafe { lungseg_model_get_cpu_kernel(null(), &mut got) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    expect(
        unsafe { lungseg_model_get_cpu_kernel(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe { lungseg_model_free(m) };
}

/// Set in the child processes of [`cpu_kernel_environment_variable`]: the kernel the child
/// expects at open, or `refused:<status>`.
const CHILD_EXPECTS: &str = "LUNGSEG_TEST_CPU_KERNEL_EXPECTS";

/// `LUNGSEG_CPU_KERNEL` picks the kernel for AUTO and is checked at open; an explicit option
/// wins over it. Each value runs in a child process of this test binary, so the variable
/// never leaks into the other tests.
#[test]
fn cpu_kernel_environment_variable() {
    use lungseg::nn::cpu_kernel::{CpuKernel, ENV};
    if let Ok(expects) = std::env::var(CHILD_EXPECTS) {
        return cpu_kernel_environment_child(&expects);
    }
    let mut cases = vec![
        (
            "avx3".to_string(),
            "refused:LUNGSEG_INVALID_ARGUMENT".to_string(),
        ),
        ("".to_string(), CpuKernel::best().name().to_string()),
        ("auto".to_string(), CpuKernel::best().name().to_string()),
    ];
    for k in CpuKernel::ALL {
        let expects = if k.supported() {
            k.name().to_string()
        } else {
            "refused:LUNGSEG_DEVICE".to_string()
        };
        cases.push((k.name().to_string(), expects));
    }
    for (value, expects) in cases {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cpu_kernel_environment_variable", "--nocapture"])
            .env(ENV, &value)
            .env(CHILD_EXPECTS, &expects)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{ENV}={value:?}: {log}");
        assert!(log.contains("1 passed"), "{ENV}={value:?}: {log}");
    }
}

fn cpu_kernel_environment_child(expects: &str) {
    use lungseg::nn::cpu_kernel::ENV;
    let p = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(p.as_ptr(), null(), &mut m) };
    if let Some(status) = expects.strip_prefix("refused:") {
        assert_eq!(st.name(), status);
        assert!(last_error().contains(ENV), "{}", last_error());
    } else {
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        let mut info = lungseg_model_info::default();
        assert_eq!(
            unsafe { lungseg_model_get_info(m, &mut info) },
            lungseg_status::LUNGSEG_OK
        );
        let name = unsafe { CStr::from_ptr(info.device_name.as_ptr()) }
            .to_str()
            .unwrap();
        assert!(name.starts_with(&format!("CPU ({expects})")), "{name}");
        unsafe { lungseg_model_free(m) };
    }
    // The explicit option wins over the variable, whatever its value.
    let portable = lungseg_model_options {
        cpu_kernel: lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_PORTABLE as u32,
        ..Default::default()
    };
    let m = open(Some(&portable));
    let mut got = 0;
    unsafe { lungseg_model_get_cpu_kernel(m, &mut got) };
    assert_eq!(got, lungseg_cpu_kernel::LUNGSEG_CPU_KERNEL_PORTABLE as u32);
    unsafe { lungseg_model_free(m) };
}

fn device_note(m: *const lungseg_model) -> String {
    let n = unsafe { lungseg_model_get_device_note(m, std::ptr::null_mut(), 0) };
    let mut buf = vec![0 as std::ffi::c_char; n + 1];
    assert_eq!(
        unsafe { lungseg_model_get_device_note(m, buf.as_mut_ptr(), buf.len()) },
        n
    );
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn info_of(m: *const lungseg_model) -> lungseg_model_info {
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    info
}

/// `device_index` reaches the device choice; a caller of the layout before it (its 32 bytes,
/// garbage in the tail padding that became `reserved0`) gets device 0; AUTO on the CPU says
/// why in the device note. The test machine may or may not have a usable GPU: with one, an
/// index the driver lacks is still an error, and index 0 opens on it.
#[test]
fn device_index_old_callers_and_the_auto_note() {
    use lungseg_device::*;
    let p = CString::new(fixture(MODEL).to_str().unwrap()).unwrap();
    let full = lungseg_model_options {
        struct_size: std::mem::size_of::<lungseg_model_options>() as u32,
        device: LUNGSEG_DEVICE_CUDA as u32,
        device_index: 4097,
        ..Default::default()
    };
    let mut m = null_mut();
    expect(
        unsafe { lungseg_model_open(p.as_ptr(), &full, &mut m) },
        lungseg_status::LUNGSEG_DEVICE,
        "CUDA device 4097 was requested but cannot be used",
    );
    assert!(m.is_null());

    let old = lungseg_model_options {
        struct_size: std::mem::offset_of!(lungseg_model_options, device_index) as u32,
        reserved0: 0xdead_beef,
        ..full
    };
    assert_eq!(old.struct_size, 32);
    let st = unsafe { lungseg_model_open(p.as_ptr(), &old, &mut m) };
    if st == lungseg_status::LUNGSEG_OK {
        let info = info_of(m);
        let name = unsafe { CStr::from_ptr(info.device_name.as_ptr()) };
        assert!(name.to_str().unwrap().starts_with("CUDA 0:"), "{name:?}");
        unsafe { lungseg_model_free(m) };
    } else {
        expect(
            st,
            lungseg_status::LUNGSEG_DEVICE,
            "CUDA device 0 was requested",
        );
    }

    let auto = lungseg_model_options {
        device: LUNGSEG_DEVICE_AUTO as u32,
        ..full
    };
    let m = open(Some(&auto));
    assert_eq!(info_of(m).device, LUNGSEG_DEVICE_CPU as u32);
    let note = device_note(m);
    assert!(
        note.starts_with("AUTO chose the CPU: CUDA device 4097"),
        "{note}"
    );
    // Cut to the buffer, NUL-terminated, the full length returned.
    let mut small = [1 as std::ffi::c_char; 5];
    let n = unsafe { lungseg_model_get_device_note(m, small.as_mut_ptr(), small.len()) };
    assert_eq!(n, note.len());
    assert_eq!(
        unsafe { CStr::from_ptr(small.as_ptr()) }.to_bytes(),
        b"AUTO"
    );
    unsafe { lungseg_model_free(m) };

    let cpu = lungseg_model_options {
        device: LUNGSEG_DEVICE_CPU as u32,
        ..full
    };
    let m = open(Some(&cpu));
    assert_eq!(device_note(m), "");
    unsafe { lungseg_model_free(m) };
    assert_eq!(
        unsafe { lungseg_model_get_device_note(null(), null_mut(), 0) },
        0
    );
}

/// The test model with `config[key] = value`, saved as `format_version` and opened through
/// the C ABI.
fn open_with_config(key: &str, value: serde_json::Value, version: &str) -> *mut lungseg_model {
    open_with_configs(&[(key, value)], version)
}

/// The test model with the config `keys` set, as a file of `version`.
fn open_with_configs(keys: &[(&str, serde_json::Value)], version: &str) -> *mut lungseg_model {
    let bytes = std::fs::read(fixture(MODEL)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    for (key, value) in keys {
        cfg[*key] = value.clone();
    }
    meta.insert("config".into(), cfg.to_string());
    meta.insert("format_version".into(), version.into());
    let out = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    // One file per call: tests run in parallel threads of one process, and two of them may set
    // the same first key (a shared name let one remove the other's file before it was opened).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "lungseg-{}-{}-{call}.st",
        keys[0].0,
        std::process::id()
    ));
    std::fs::write(&path, out).unwrap();
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(p.as_ptr(), null(), &mut m) };
    std::fs::remove_file(&path).unwrap();
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    m
}

/// `lungseg_model_get_mask_threshold` gives the model file's `config.mask_threshold` (0.5 when
/// the file names none), and the summary's foreground count uses it.
#[test]
fn mask_threshold_accessor() {
    let m = open(None);
    let mut t = f32::NAN;
    assert_eq!(
        unsafe { lungseg_model_get_mask_threshold(m, &mut t) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(t, 0.5);
    expect(
        unsafe { lungseg_model_get_mask_threshold(null(), &mut t) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    expect(
        unsafe { lungseg_model_get_mask_threshold(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe { lungseg_model_free(m) };

    // The same file with `mask_threshold` 0.25 (format version 3).
    let m = open_with_config("mask_threshold", serde_json::json!(0.25), "3");
    assert_eq!(
        unsafe { lungseg_model_get_mask_threshold(m, &mut t) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(t, 0.25);
    unsafe { lungseg_model_free(m) };
}

/// `lungseg_model_get_test_time_flips` gives the model file's `config.test_time_flips` (1 when
/// the file names none).
#[test]
fn test_time_flips_accessor() {
    let m = open(None);
    let mut f = 0u32;
    assert_eq!(
        unsafe { lungseg_model_get_test_time_flips(m, &mut f) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(f, 1);
    expect(
        unsafe { lungseg_model_get_test_time_flips(null(), &mut f) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    expect(
        unsafe { lungseg_model_get_test_time_flips(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe { lungseg_model_free(m) };

    let m = open_with_config("test_time_flips", serde_json::json!(4), "4");
    assert_eq!(
        unsafe { lungseg_model_get_test_time_flips(m, &mut f) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(f, 4);
    unsafe { lungseg_model_free(m) };
}

/// The mean map of one MC call on the test patch through the C ABI, and its summary.
fn mean_and_summary(m: *mut lungseg_model) -> (Vec<f32>, lungseg_patch_summary) {
    let input = read_f32("small_f16_element.input.f32");
    let n = input.len();
    let mut mean = vec![f32::NAN; n];
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, null(), &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    (mean, out.summary)
}

/// With a spare radius, `lungseg_final_mask` and the summary keep a small component that comes
/// closer than it to the patch centre: a minimum above every component of the test patch's
/// mask and a radius between the nearest and the next-nearest component's distance (computed
/// here by hand, voxel centres from voxel size / 2 at the model's spacing) keep exactly the
/// nearest component.
#[test]
fn final_mask_spares_small_components_near_the_centre() {
    let plain = open(None);
    let mut v = f64::NAN;
    assert_eq!(
        unsafe { lungseg_model_get_min_component_spare_radius_mm(plain, &mut v) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(v, 0.0);
    let (mean, _) = mean_and_summary(plain);
    let n = mean.len();
    let rust = Model::open(&fixture(MODEL)).unwrap();
    let c = rust.config();
    let [x, y, z] = c.patch_size;
    let [sx, sy, sz] = c.spacing_mm;
    let cut: Vec<u8> = mean
        .iter()
        .map(|&p| u8::from(p >= c.mask_threshold))
        .collect();
    let distance = |i: usize| {
        let (k, j, l) = (i / (y * x), (i / x) % y, i % x);
        let d = [
            (k as f64 - (z / 2) as f64) * sz,
            (j as f64 - (y / 2) as f64) * sy,
            (l as f64 - (x / 2) as f64) * sx,
        ];
        d.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    let mut comps: Vec<(f64, Vec<u32>)> = Vec::new();
    lungseg::mask::Grid::new(n, [z, y, x])
        .unwrap()
        .components_where(
            |i| cut[i] != 0,
            |comp| {
                let near = comp
                    .iter()
                    .map(|&i| distance(i as usize))
                    .fold(f64::INFINITY, f64::min);
                comps.push((near, comp.to_vec()));
                false
            },
        )
        .unwrap();
    comps.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        comps.len() >= 2 && comps[1].0 > comps[0].0 + 0.1,
        "the test patch's components lie at {:?} mm",
        comps.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    let voxel_mm3: f64 = c.spacing_mm.iter().product();
    let largest = comps.iter().map(|c| c.1.len()).max().unwrap();
    let min_mm3 = (largest + 1) as f64 * voxel_mm3;
    let radius = (comps[0].0 + comps[1].0) / 2.0;
    let mut expected = vec![0u8; n];
    for &i in &comps[0].1 {
        expected[i as usize] = 1;
    }
    let m = open_with_configs(
        &[
            ("min_component_mm3", serde_json::json!(min_mm3)),
            ("min_component_spare_radius_mm", serde_json::json!(radius)),
        ],
        "6",
    );
    assert_eq!(
        unsafe { lungseg_model_get_min_component_spare_radius_mm(m, &mut v) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(v, radius);
    let (mean_spared, summary) = mean_and_summary(m);
    assert_eq!(mean_spared, mean, "the rule does not change the maps");
    let mut mask = vec![7u8; n];
    let mut count = u64::MAX;
    let st = unsafe { lungseg_final_mask(m, mean.as_ptr(), n, mask.as_mut_ptr(), &mut count) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(mask, expected);
    assert_eq!(count, comps[0].1.len() as u64);
    assert_eq!(count, summary.foreground_voxels);
    expect(
        unsafe { lungseg_model_get_min_component_spare_radius_mm(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe {
        lungseg_model_free(m);
        lungseg_model_free(plain);
    }
}

/// With a point rule, `lungseg_final_mask` and the summary add the components of the mean at
/// the lower threshold that come closer than the radius to the patch centre: checked against a
/// region grown here by hand from the voxels near the centre.
#[test]
fn final_mask_cuts_the_lesion_at_the_point_lower() {
    let plain = open(None);
    let (mut t, mut r) = (f32::NAN, f64::NAN);
    unsafe {
        assert_eq!(
            lungseg_model_get_point_mask_threshold(plain, &mut t),
            lungseg_status::LUNGSEG_OK
        );
        assert_eq!(
            lungseg_model_get_point_radius_mm(plain, &mut r),
            lungseg_status::LUNGSEG_OK
        );
    }
    assert_eq!((t, r), (0.0, 0.0));
    let (mean, plain_summary) = mean_and_summary(plain);
    let rust = Model::open(&fixture(MODEL)).unwrap();
    let c = rust.config();
    let [x, y, z] = c.patch_size;
    let [sx, sy, sz] = c.spacing_mm;
    let (tp, radius) = (0.05f32, 3.0f64);
    let idx = |k: usize, j: usize, l: usize| (k * y + j) * x + l;
    let mut grown = vec![false; mean.len()];
    for k in 0..z {
        for j in 0..y {
            for l in 0..x {
                let d2 = ((k as f64 - (z / 2) as f64) * sz).powi(2)
                    + ((j as f64 - (y / 2) as f64) * sy).powi(2)
                    + ((l as f64 - (x / 2) as f64) * sx).powi(2);
                grown[idx(k, j, l)] = mean[idx(k, j, l)] >= tp && d2 < radius * radius;
            }
        }
    }
    let near = |c: usize, n: usize| c.saturating_sub(1)..=(c + 1).min(n - 1);
    let mut changed = true;
    while changed {
        changed = false;
        for k in 0..z {
            for j in 0..y {
                for l in 0..x {
                    let i = idx(k, j, l);
                    if grown[i] || mean[i] < tp {
                        continue;
                    }
                    if near(k, z)
                        .any(|a| near(j, y).any(|b| near(l, x).any(|e| grown[idx(a, b, e)])))
                    {
                        grown[i] = true;
                        changed = true;
                    }
                }
            }
        }
    }
    let expected: Vec<u8> = mean
        .iter()
        .zip(&grown)
        .map(|(&p, &g)| u8::from(p >= c.mask_threshold || g))
        .collect();
    let expected_count = expected.iter().map(|&v| u64::from(v)).sum::<u64>();
    assert!(
        expected_count > plain_summary.foreground_voxels,
        "the rule adds nothing to the test patch: the check proves little"
    );
    let m = open_with_configs(
        &[
            ("point_mask_threshold", serde_json::json!(tp)),
            ("point_radius_mm", serde_json::json!(radius)),
        ],
        "7",
    );
    unsafe {
        assert_eq!(
            lungseg_model_get_point_mask_threshold(m, &mut t),
            lungseg_status::LUNGSEG_OK
        );
        assert_eq!(
            lungseg_model_get_point_radius_mm(m, &mut r),
            lungseg_status::LUNGSEG_OK
        );
    }
    assert_eq!((t, r), (tp, radius));
    let (mean_point, summary) = mean_and_summary(m);
    assert_eq!(mean_point, mean, "the rule does not change the maps");
    let mut mask = vec![7u8; mean.len()];
    let mut count = u64::MAX;
    let st =
        unsafe { lungseg_final_mask(m, mean.as_ptr(), mean.len(), mask.as_mut_ptr(), &mut count) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(mask, expected);
    assert_eq!(count, expected_count);
    assert_eq!(count, summary.foreground_voxels);
    expect(
        unsafe { lungseg_model_get_point_radius_mm(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    expect(
        unsafe { lungseg_model_get_point_mask_threshold(null(), &mut t) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    unsafe {
        lungseg_model_free(m);
        lungseg_model_free(plain);
    }
}

/// `lungseg_final_mask` gives the mask that `summary.foreground_voxels` counts: the mean at the
/// model's threshold without the 26-connected components below `min_component_mm3`
/// (`lungseg_model_get_min_component_mm3`, 0 when the file names none).
#[test]
fn final_mask_drops_the_components_the_model_names() {
    let plain = open(None);
    let mut v = f64::NAN;
    assert_eq!(
        unsafe { lungseg_model_get_min_component_mm3(plain, &mut v) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(v, 0.0);
    let (mean, summary) = mean_and_summary(plain);
    let n = mean.len();
    let rust = Model::open(&fixture(MODEL)).unwrap();
    let c = rust.config();
    let [x, y, z] = c.patch_size;
    let voxel_mm3: f64 = c.spacing_mm.iter().product();
    let cut: Vec<u8> = mean
        .iter()
        .map(|&p| u8::from(p >= c.mask_threshold))
        .collect();
    let cut_voxels: u64 = cut.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(summary.foreground_voxels, cut_voxels, "no minimum: the cut");
    // The smallest component of the cut, plus one voxel, as the minimum: it must go.
    let mut sizes = Vec::new();
    lungseg::mask::Grid::new(n, [z, y, x])
        .unwrap()
        .components_where(
            |i| cut[i] != 0,
            |comp| {
                sizes.push(comp.len());
                false
            },
        )
        .unwrap();
    assert!(
        sizes.len() >= 2,
        "the test patch's mask has {sizes:?} components"
    );
    let min_mm3 = (*sizes.iter().min().unwrap() + 1) as f64 * voxel_mm3;
    let mut by_hand = cut.clone();
    let rule = lungseg::mask::SmallComponents {
        min_mm3,
        spare_radius_mm: 0.0,
    };
    lungseg::mask::drop_small_components(&mut by_hand, lungseg::mask::PatchGrid::of(c), rule)
        .unwrap();

    let m = open_with_config("min_component_mm3", serde_json::json!(min_mm3), "5");
    assert_eq!(
        unsafe { lungseg_model_get_min_component_mm3(m, &mut v) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(v, min_mm3);
    let (mean_min, summary_min) = mean_and_summary(m);
    assert_eq!(mean_min, mean, "the minimum does not change the maps");
    let mut mask = vec![7u8; n];
    let mut count = u64::MAX;
    let st = unsafe { lungseg_final_mask(m, mean.as_ptr(), n, mask.as_mut_ptr(), &mut count) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(mask, by_hand);
    assert_eq!(count, summary_min.foreground_voxels);
    assert!(count < cut_voxels);

    expect(
        unsafe { lungseg_final_mask(m, mean.as_ptr(), n - 1, mask.as_mut_ptr(), null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "voxels",
    );
    expect(
        unsafe { lungseg_final_mask(m, null(), n, mask.as_mut_ptr(), null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "mean",
    );
    expect(
        unsafe { lungseg_final_mask(null(), mean.as_ptr(), n, mask.as_mut_ptr(), null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    let mut shared = mean.clone();
    expect(
        unsafe {
            lungseg_final_mask(
                m,
                shared.as_ptr(),
                n,
                shared.as_mut_ptr().cast(),
                null_mut(),
            )
        },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "overlap",
    );
    expect(
        unsafe { lungseg_model_get_min_component_mm3(m, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe {
        lungseg_model_free(m);
        lungseg_model_free(plain);
    }
}

/// `lungseg_calibrated_probability`: the mean unchanged without a map; with one, each voxel's
/// mean through the map of its Chebyshev distance band from `lungseg_final_mask`'s mask,
/// recomputed here by brute force. A file of version 1 carries the map: it changes nothing an
/// older reader gives.
#[test]
fn calibrated_probability_maps_the_mean_by_distance_from_the_mask() {
    let plain = open(None);
    let mut has = 7u8;
    assert_eq!(
        unsafe { lungseg_model_has_probability_map(plain, &mut has) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(has, 0);
    let (mean, _) = mean_and_summary(plain);
    let n = mean.len();
    let mut out = vec![f32::NAN; n];
    let st = unsafe { lungseg_calibrated_probability(plain, mean.as_ptr(), n, out.as_mut_ptr()) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(out, mean, "no map: the mean itself");

    let (edges, knots) = ([0u32, 1, 3], [0.0f32, 0.25, 0.5, 1.0]);
    let values = [
        [0.05f32, 0.2, 0.5, 0.9],
        [0.0, 0.1, 0.3, 0.6],
        [0.0, 0.05, 0.1, 0.4],
        [0.0, 0.0, 0.02, 0.2],
    ];
    let map = serde_json::json!({"band_max_voxels": edges, "knots": knots, "values": values});
    let m = open_with_config("probability_map", map, "1");
    assert_eq!(
        unsafe { lungseg_model_has_probability_map(m, &mut has) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(has, 1);
    let (mean_map, _) = mean_and_summary(m);
    assert_eq!(mean_map, mean, "the map does not change the MC mean");
    let mut mask = vec![0u8; n];
    let st = unsafe { lungseg_final_mask(m, mean.as_ptr(), n, mask.as_mut_ptr(), null_mut()) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let set: Vec<usize> = (0..n).filter(|&i| mask[i] != 0).collect();
    assert!(
        !set.is_empty() && set.len() < n / 2,
        "{} mask voxels",
        set.len()
    );
    let [x, y, _] = Model::open(&fixture(MODEL)).unwrap().config().patch_size;
    let at = |i: usize| [i / (x * y), (i / x) % y, i % x];
    let st = unsafe { lungseg_calibrated_probability(m, mean.as_ptr(), n, out.as_mut_ptr()) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let mut bands_seen = [0usize; 4];
    for i in 0..n {
        let dist = set
            .iter()
            .map(|&j| (0..3).map(|k| at(i)[k].abs_diff(at(j)[k])).max().unwrap())
            .min()
            .unwrap() as u32;
        let band = edges.iter().position(|&e| dist <= e).unwrap_or(edges.len());
        bands_seen[band] += 1;
        let p = mean[i];
        let k = knots
            .iter()
            .rposition(|&kn| kn <= p)
            .unwrap()
            .min(knots.len() - 2);
        let t = ((p - knots[k]) / (knots[k + 1] - knots[k])).min(1.0);
        let want = values[band][k] + t * (values[band][k + 1] - values[band][k]);
        assert!(
            (out[i] - want).abs() < 1e-6,
            "voxel {i}: {} vs {want}",
            out[i]
        );
    }
    assert!(bands_seen.iter().all(|&c| c > 0), "{bands_seen:?}");

    expect(
        unsafe { lungseg_calibrated_probability(m, mean.as_ptr(), n - 1, out.as_mut_ptr()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "voxels",
    );
    expect(
        unsafe { lungseg_calibrated_probability(m, null(), n, out.as_mut_ptr()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "mean",
    );
    let mut shared = mean.clone();
    expect(
        unsafe { lungseg_calibrated_probability(m, shared.as_ptr(), n, shared.as_mut_ptr()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "overlap",
    );
    expect(
        unsafe { lungseg_model_has_probability_map(null(), &mut has) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    unsafe {
        lungseg_model_free(m);
        lungseg_model_free(plain);
    }
}
