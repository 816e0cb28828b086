//! The scans a model is meant for, through the C ABI: `config.max_scan_spacing_mm` read back,
//! `lungseg_model_admits_volume` against scans on both sides of it, and every patch of a
//! coarser scan flagged for review whatever its score (single point and batch, one WARN per
//! call), while maps and scores stay those of the same model without a limit.

mod ffi_common;

use ffi_common::{expect, last_error, open_fixture_with};
use lungseg::ffi::*;
use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};

const MODEL: &str = "small_f16_element.safetensors";

/// The test model, with `config.max_scan_spacing_mm` set to `limit` when given (format version
/// 8), else the fixture as it is.
fn open_model(limit: Option<f64>) -> *mut lungseg_model {
    match limit {
        None => open_fixture_with(MODEL, |_| {}, None),
        Some(v) => open_fixture_with(
            MODEL,
            |c| c["max_scan_spacing_mm"] = serde_json::json!(v),
            Some("8"),
        ),
    }
}

/// A 24³ int16 scan of `spacing` with a bright blob at its centre, from memory; its world
/// centre is the origin.
fn scan(spacing: [f64; 3]) -> *mut lungseg_volume {
    let (st, v) = try_scan(spacing, 0.0, std::mem::size_of::<lungseg_volume_desc>());
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    v
}

/// [`scan`] with the description's `slice_thickness_mm` and `struct_size` (V1 = 192: a caller
/// built before the field, which the library must not read).
fn try_scan(
    spacing: [f64; 3],
    thickness_mm: f64,
    struct_size: usize,
) -> (lungseg_status, *mut lungseg_volume) {
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
        struct_size: struct_size as u32,
        pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
        dims: [n as u64; 3],
        spacing,
        origin: spacing.map(|s| -12.0 * s),
        slice_thickness_mm: thickness_mm,
        ..Default::default()
    };
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_create(&desc, px.as_ptr().cast(), px.len() * 2, &mut v) };
    (st, v)
}

fn slice_thickness(v: *const lungseg_volume) -> f64 {
    let mut t = f64::NAN;
    let st = unsafe { lungseg_volume_get_slice_thickness(v, &mut t) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    t
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

/// A 5 mm reconstruction stored every 2.5 mm resolves 5 mm along z: the model meant for 2.5 mm
/// refuses it and flags its patches, though its voxel spacing is within the limit.
#[test]
fn a_thick_slice_at_an_overlapping_step_is_as_coarse_as_its_thickness() {
    let limited = open_model(Some(2.5));
    let full = std::mem::size_of::<lungseg_volume_desc>();
    let (st, overlapping) = try_scan(THIN, 5.0, full);
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(slice_thickness(overlapping), 5.0);
    assert!(!admits(limited, overlapping), "5 mm slices every 2.5 mm");
    let (s, _, warns) = predict_at(limited, overlapping);
    assert!(s.needs_review, "its patch is flagged whatever the score");
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("5.000"), "{}", warns[0]);

    // A thickness within the limit, or none stated, leaves the spacing to decide.
    let (_, within) = try_scan(THIN, 2.0, full);
    assert_eq!(slice_thickness(within), 2.0);
    assert!(admits(limited, within), "2 mm slices every 2.5 mm");
    let thin = scan(THIN);
    assert_eq!(slice_thickness(thin), 0.0, "not stated");
    assert!(admits(limited, thin));

    // A caller built before the field passes the V1 size: the bytes past it are not read.
    const V1: usize = 192;
    assert!(full > V1);
    let (st, v1) = try_scan(THIN, 5.0, V1);
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(slice_thickness(v1), 0.0);
    assert!(admits(limited, v1));

    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let (st, v) = try_scan(THIN, bad, full);
        assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "{bad}");
        assert!(v.is_null());
        assert!(
            last_error().contains("slice_thickness_mm"),
            "{}",
            last_error()
        );
    }
    let mut t = 0.0;
    expect(
        unsafe { lungseg_volume_get_slice_thickness(null(), &mut t) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "volume is NULL",
    );
    expect(
        unsafe { lungseg_volume_get_slice_thickness(thin, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out_mm is NULL",
    );
    unsafe {
        for v in [overlapping, within, thin, v1] {
            lungseg_volume_free(v);
        }
        lungseg_model_free(limited);
    }
}

/// `lungseg_predict_uncertainty` on a patch from memory, with `opts.scan_resolution_mm` =
/// `stated`, `opts.struct_size` = `size` and a review threshold no score reaches. Returns the
/// status, the summary and the WARN lines.
fn predict_memory(
    m: *const lungseg_model,
    stated: [f64; 3],
    size: usize,
) -> (lungseg_status, lungseg_patch_summary, Vec<String>) {
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    let n: usize = info.patch_size.iter().map(|&v| v as usize).product();
    let hu: Vec<f32> = (0..n)
        .map(|i| if i % 7 == 0 { 40.0 } else { -800.0 })
        .collect();
    let mut log: Vec<(u32, String)> = Vec::new();
    let run = warn_log(&mut log);
    let opts = lungseg_mc_options {
        struct_size: size as u32,
        n_samples: 2,
        override_review_threshold: 1,
        review_threshold: f32::MAX,
        run: &run,
        scan_resolution_mm: stated,
        ..Default::default()
    };
    let mut out = lungseg_uncertainty::default();
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &opts, &mut out) };
    let warns = log
        .into_iter()
        .filter(|(l, _)| *l == lungseg_log_level::LUNGSEG_LOG_WARN as u32)
        .map(|(_, m)| m)
        .collect();
    (st, out.summary, warns)
}

/// A host that cuts patches itself states its scan's resolution in the options, and the patch
/// is judged as a point of that scan would be; a caller built before the field is not.
#[test]
fn a_patch_from_memory_is_judged_by_the_resolution_its_host_states() {
    let limited = open_model(Some(2.5));
    let full = std::mem::size_of::<lungseg_mc_options>();
    let (st, s, warns) = predict_memory(limited, [0.7, 0.7, 5.0], full);
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert!(s.needs_review, "a 5 mm scan's patch is flagged");
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("max_scan_spacing_mm"), "{}", warns[0]);
    for (stated, size, why) in [
        ([0.7, 0.7, 2.5], full, "within the limit"),
        ([0.0; 3], full, "not stated"),
        (
            [0.7, 0.7, 5.0],
            48,
            "a V3 caller's struct ends before the field",
        ),
    ] {
        let (st, s, warns) = predict_memory(limited, stated, size);
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{why}: {}", last_error());
        assert!(!s.needs_review, "{why}");
        assert!(warns.is_empty(), "{why}: {warns:?}");
    }
    for bad in [[0.7, 0.0, 5.0], [f64::NAN, 1.0, 1.0], [1.0, 1.0, -2.0]] {
        let (st, _, _) = predict_memory(limited, bad, full);
        assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "{bad:?}");
        assert!(
            last_error().contains("scan_resolution_mm"),
            "{}",
            last_error()
        );
    }

    // A point of a thin volume: the caller's statement of a thicker reconstruction counts too.
    let thin = scan(THIN);
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(limited, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    let n: usize = info.patch_size.iter().map(|&v| v as usize).product();
    let mut out = lungseg_uncertainty {
        len: n,
        ..Default::default()
    };
    let opts = lungseg_mc_options {
        n_samples: 2,
        override_review_threshold: 1,
        review_threshold: f32::MAX,
        scan_resolution_mm: [0.7, 0.7, 5.0],
        ..Default::default()
    };
    let centre = [0.0f64; 3];
    let st =
        unsafe { lungseg_predict_uncertainty_at(limited, thin, centre.as_ptr(), &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert!(out.summary.needs_review);
    unsafe {
        lungseg_volume_free(thin);
        lungseg_model_free(limited);
    }
}
