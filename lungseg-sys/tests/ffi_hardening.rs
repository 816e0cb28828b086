//! C-ABI hardening of the predict calls: overlapping input/output buffers are refused, and the
//! workspace limit of `lungseg_model_options` is enforced at open.

mod common;
mod ffi_common;

use ffi_common::expect;
use lungseg::ffi::*;
use std::ffi::CString;
use std::ptr::{null, null_mut};

use lungseg_status::{LUNGSEG_INVALID_ARGUMENT, LUNGSEG_LIMIT, LUNGSEG_OK};

fn open(
    path: &std::path::Path,
    opts: Option<&lungseg_model_options>,
) -> (lungseg_status, *mut lungseg_model) {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st =
        unsafe { lungseg_model_open(p.as_ptr(), opts.map_or(null(), |o| o as *const _), &mut m) };
    (st, m)
}

fn small() -> *mut lungseg_model {
    let (st, m) = open(&common::fixture("small_f16_element.safetensors"), None);
    assert_eq!(st, LUNGSEG_OK);
    m
}

#[test]
fn predict_refuses_overlapping_input_and_output() {
    let m = small();
    let n = common::read_f32("small_f16_element.input.f32").len();
    let mut buf = common::read_f32("small_f16_element.input.f32");
    buf.resize(2 * n, 0.0);
    let p = buf.as_mut_ptr();
    for shift in [0, 1, n - 1] {
        let st = unsafe { lungseg_predict(m, p, n, p.add(shift), n) };
        expect(st, LUNGSEG_INVALID_ARGUMENT, "overlap");
    }
    // Adjacent, not overlapping: fine.
    let st = unsafe { lungseg_predict(m, p, n, p.add(n), n) };
    assert_eq!(st, LUNGSEG_OK);
    unsafe { lungseg_model_free(m) };
}

#[test]
fn predict_uncertainty_refuses_maps_overlapping_the_input_or_each_other() {
    let m = small();
    let input = common::read_f32("small_f16_element.input.f32");
    let n = input.len();
    let mut buf = vec![0f32; 3 * n];
    buf[..n].copy_from_slice(&input);
    let p = buf.as_mut_ptr();
    let mut a = vec![0f32; n];
    let out = |mean: *mut f32, mi: *mut f32| lungseg_uncertainty {
        mean,
        variance: null_mut(),
        entropy: null_mut(),
        mutual_info: mi,
        len: n,
        summary: Default::default(),
    };
    let cases = [
        (unsafe { p.add(n / 2) }, null_mut(), "patch_hu"),
        (null_mut(), p, "patch_hu"),
        (unsafe { p.add(n) }, unsafe { p.add(n + 5) }, "overlap"),
    ];
    for (mean, mi, needle) in cases {
        let mut o = out(mean, mi);
        let st = unsafe { lungseg_predict_uncertainty(m, p, n, null(), &mut o) };
        expect(st, LUNGSEG_INVALID_ARGUMENT, needle);
    }
    let mut o = out(unsafe { p.add(n) }, a.as_mut_ptr());
    let st = unsafe { lungseg_predict_uncertainty(m, p, n, null(), &mut o) };
    assert_eq!(st, LUNGSEG_OK);
    unsafe { lungseg_model_free(m) };
}

#[test]
fn workspace_limit_is_an_open_option() {
    let cfg = r#"{"channels":[8,16,32,64,128],"patch_size":[256,256,256]}"#;
    let dir = std::env::temp_dir().join(format!("lungseg-ffi-hardening-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge_patch.safetensors");
    std::fs::write(&path, common::synth_model_bytes(cfg)).unwrap();
    let (st, m) = open(&path, None);
    assert!(m.is_null());
    expect(st, LUNGSEG_LIMIT, "max_workspace_bytes");
    let roomy = lungseg_model_options {
        struct_size: std::mem::size_of::<lungseg_model_options>() as u32,
        max_workspace_bytes: 1 << 40,
        ..Default::default()
    };
    let (st, m) = open(&path, Some(&roomy));
    assert_eq!(st, LUNGSEG_OK);
    unsafe { lungseg_model_free(m) };
    let _ = std::fs::remove_dir_all(&dir);
}
