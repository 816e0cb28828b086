//! The scans a model is meant for, through the C ABI: `config.max_scan_spacing_mm` read back,
//! `lungseg_model_admits_volume` against scans on both sides of it, and every patch of a
//! coarser scan flagged for review whatever its score (single point and batch, one WARN per
//! call), while maps and scores stay those of the same model without a limit.

mod ffi_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};

const MODEL: &str = "small_f16_element.safetensors";

/// The test model, with `config.max_scan_spacing_mm` set to `limit` when given (format version
/// 8), else the fixture as it is.
fn open_model(limit: Option<f64>) -> *mut lungseg_model {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(MODEL);
    let bytes = std::fs::read(&fixture).unwrap();
    let bytes = match limit {
        None => bytes,
        Some(v) => {
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            let mut meta = header.metadata().clone().unwrap();
            let mut cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
            cfg["max_scan_spacing_mm"] = serde_json::json!(v);
            meta.insert("config".into(), cfg.to_string());
            meta.insert("format_version".into(), "8".into());
            safetensors::serialize(st.tensors(), Some(meta)).unwrap()
        }
    };
    // One file per call: the tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "lungseg-intended-use-{}-{call}.st",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(p.as_ptr(), null(), &mut m) };
    std::fs::remove_file(&path).unwrap();
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    m
}

/// A 24³ int16 scan of `spacing` with a bright blob at its centre, from memory; its world
/// centre is the origin.
fn scan(spacing: [f64; 3]) -> *mut lungseg_volume {
    let n = 24usize;
    let mut px = vec![-800i16; n * n * n];
    for (i, p) in px.iter_mut().enumerate() {
        let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
        let d2: f64 = [x, y, z].iter().map(|&a| (a as f64 - 12.0).powi(2)).sum();
        if d2 < 9.0 {
            *p = 40;
        }
    }
    let desc = lungseg_volume_desc {
        pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
        dims: [n as u64; 3],
        spacing,
        origin: spacing.map(|s| -12.0 * s),
        ..Default::default()
    };
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_create(&desc, px.as_ptr().cast(), px.len() * 2, &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    v
}

const THIN: [f64; 3] = [0.7, 0.7, 2.5];
const THICK: [f64; 3] = [0.7, 0.7, 5.0];

fn admits(m: *const lungseg_model, v: *const lungseg_volume) -> bool {
    let mut out = false;
    let st = unsafe { lungseg_model_admits_volume(m, v, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    out
}

#[test]
fn the_limit_reads_back_and_decides_which_scans_are_admitted() {
    let (plain, limited) = (open_model(None), open_model(Some(2.5)));
    let (thin, thick) = (scan(THIN), scan(THICK));
    let mut limit = f64::NAN;
    assert_eq!(
        unsafe { lungseg_model_get_max_scan_spacing_mm(plain, &mut limit) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(limit, 0.0, "a file without the key admits any scan");
    assert_eq!(
        unsafe { lungseg_model_get_max_scan_spacing_mm(limited, &mut limit) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(limit, 2.5);
    assert!(admits(plain, thick));
    assert!(admits(limited, thin), "the limit itself is admitted");
    assert!(!admits(limited, thick));
    let mut out = false;
    expect(
        unsafe { lungseg_model_admits_volume(limited, null(), &mut out) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "volume is NULL",
    );
    expect(
        unsafe { lungseg_model_admits_volume(limited, thin, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    expect(
        unsafe { lungseg_model_get_max_scan_spacing_mm(null(), &mut limit) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "model is NULL",
    );
    unsafe {
        lungseg_volume_free(thin);
        lungseg_volume_free(thick);
        lungseg_model_free(plain);
        lungseg_model_free(limited);
    }
}

unsafe extern "C" fn on_log(user: *mut c_void, level: u32, message: *const libc::c_char) {
    let log = &mut *user.cast::<Vec<(u32, String)>>();
    log.push((level, CStr::from_ptr(message).to_str().unwrap().to_string()));
}

/// Run options that collect the WARN and ERROR lines of a call into `log`.
fn warn_log(log: &mut Vec<(u32, String)>) -> lungseg_run_options {
    lungseg_run_options {
        log_level: lungseg_log_level::LUNGSEG_LOG_WARN as u32,
        log: Some(on_log),
        user: (log as *mut Vec<(u32, String)>).cast(),
        ..Default::default()
    }
}

/// One point at the scan's centre with a review threshold no score reaches: the flag can only
/// come from the scan. Returns the summary, the mean map and the WARN lines logged.
fn predict_at(
    m: *const lungseg_model,
    v: *const lungseg_volume,
) -> (lungseg_patch_summary, Vec<f32>, Vec<String>) {
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    let n = info.patch_size.iter().map(|&v| v as usize).product();
    let mut mean = vec![f32::NAN; n];
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let mut log: Vec<(u32, String)> = Vec::new();
    let run = warn_log(&mut log);
    let opts = lungseg_mc_options {
        n_samples: 4,
        seed: 3,
        override_review_threshold: 1,
        review_threshold: f32::MAX,
        run: &run,
        ..Default::default()
    };
    let centre = [0.0f64; 3];
    let st = unsafe { lungseg_predict_uncertainty_at(m, v, centre.as_ptr(), &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let warns = log
        .into_iter()
        .filter(|(l, _)| *l == lungseg_log_level::LUNGSEG_LOG_WARN as u32)
        .map(|(_, m)| m)
        .collect();
    (out.summary, mean, warns)
}

#[test]
fn every_patch_of_a_coarser_scan_needs_review_and_nothing_else_changes() {
    let (plain, limited) = (open_model(None), open_model(Some(2.5)));
    let (thin, thick) = (scan(THIN), scan(THICK));
    let (s, _, warns) = predict_at(limited, thin);
    assert!(
        !s.needs_review,
        "a scan within the limit keeps the score's decision"
    );
    assert!(warns.is_empty(), "{warns:?}");
    let (want, want_mean, _) = predict_at(plain, thick);
    assert!(!want.needs_review, "no score reaches the threshold");
    let (got, got_mean, warns) = predict_at(limited, thick);
    assert!(got.needs_review, "the thick scan's patch is flagged");
    assert_eq!(got_mean, want_mean, "the maps are the model's own");
    assert_eq!(
        (got.foreground_voxels, got.uncertainty_score.to_bits()),
        (want.foreground_voxels, want.uncertainty_score.to_bits())
    );
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].contains("max_scan_spacing_mm") && warns[0].contains("5.000"),
        "{}",
        warns[0]
    );

    // The batch flags every point of the thick scan and warns once per call.
    let k = 3;
    let centers = [0.0, 0.0, 0.0, 2.0, -1.0, 5.0, -3.0, 2.0, -10.0];
    let mut outs = vec![lungseg_uncertainty::default(); k];
    for (v, flagged) in [(thick, true), (thin, false)] {
        let mut log: Vec<(u32, String)> = Vec::new();
        let run = warn_log(&mut log);
        let opts = lungseg_mc_options {
            n_samples: 2,
            override_review_threshold: 1,
            review_threshold: f32::MAX,
            run: &run,
            ..Default::default()
        };
        let mut done = 0usize;
        let st = unsafe {
            lungseg_predict_uncertainty_batch(
                limited,
                v,
                centers.as_ptr(),
                k,
                &opts,
                outs.as_mut_ptr(),
                &mut done,
            )
        };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        assert_eq!(done, k);
        assert!(outs.iter().all(|o| o.summary.needs_review == flagged));
        let spacing_warns = log
            .iter()
            .filter(|(_, m)| m.contains("max_scan_spacing_mm"))
            .count();
        assert_eq!(spacing_warns, usize::from(flagged), "{log:?}");
    }
    unsafe {
        lungseg_volume_free(thin);
        lungseg_volume_free(thick);
        lungseg_model_free(plain);
        lungseg_model_free(limited);
    }
}
