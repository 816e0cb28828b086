//! The final mask a point call returns and the model's second look behind it, through the C
//! ABI: `config.second_look` read back; without a mask buffer a call is what it was for older
//! callers; with one, the mask of a thin scan's point equals the joined mask of the first look
//! and an independent MC call on the half-spacing patch (same seed), and the summary counts it;
//! thick scans, patches from memory and models without a second look get the model's mask; the
//! batch writes the same masks per point; bad buffers are refused.

mod ffi_common;

use ffi_common::{expect, last_error, open_fixture_with};
use lungseg::ffi::*;
use lungseg::mask::{MaskRule, PatchGrid};
use lungseg::model::ModelConfig;
use lungseg::second_look::{can_change, joined_mask, onto_first_grid, SecondLook};
use std::ffi::c_void;
use std::ptr::null_mut;

const MODEL: &str = "small_f16_element.safetensors";
const SAMPLES: u32 = 6;
const SEED: u64 = 11;
const THIN: [f64; 3] = [0.7, 0.7, 1.25];
const THICK: [f64; 3] = [0.7, 0.7, 5.0];

fn look(support: f32) -> SecondLook {
    SecondLook {
        first_threshold: 0.55,
        threshold: 0.5,
        support,
        max_scan_spacing_mm: 2.5,
    }
}

/// The test model, with `config.second_look` set when given; and its config.
fn open_model(second: Option<SecondLook>) -> (*mut lungseg_model, ModelConfig) {
    let mut config = None;
    let m = open_fixture_with(
        MODEL,
        |cfg| {
            if let Some(l) = second {
                cfg["second_look"] = serde_json::json!({
                    "first_threshold": l.first_threshold,
                    "threshold": l.threshold,
                    "support": l.support,
                    "max_scan_spacing_mm": l.max_scan_spacing_mm,
                });
            }
            config = Some(ModelConfig::from_json(&cfg.to_string()).unwrap());
        },
        None,
    );
    (m, config.unwrap())
}

/// A 32³ int16 scan of `spacing` with a bright blob and a dimmer rod near its centre; its world
/// centre is the origin.
fn scan(spacing: [f64; 3]) -> *mut lungseg_volume {
    let n = 32usize;
    let mut px = vec![-850i16; n * n * n];
    for (i, p) in px.iter_mut().enumerate() {
        let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
        let d = |a: usize, c: f64| a as f64 - c;
        if d(x, 16.0).powi(2) + d(y, 15.0).powi(2) + d(z, 16.0).powi(2) < 16.0 {
            *p = 60;
        }
        if (d(x, 12.0).abs() < 1.5) && (d(y, 18.0).abs() < 1.5) {
            *p = -300;
        }
    }
    let desc = lungseg_volume_desc {
        pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
        dims: [n as u64; 3],
        spacing,
        origin: spacing.map(|s| -16.0 * s),
        ..Default::default()
    };
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_create(&desc, px.as_ptr().cast(), px.len() * 2, &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    v
}

fn voxels(cfg: &ModelConfig) -> usize {
    cfg.patch_voxels()
}

fn options() -> lungseg_mc_options {
    lungseg_mc_options {
        n_samples: SAMPLES,
        seed: SEED,
        ..Default::default()
    }
}

/// One point call: its result, mean map, mask and mask source (`None`: no mask asked for).
struct PointResult {
    summary: lungseg_patch_summary,
    mean: Vec<f32>,
    mask: Option<(Vec<u8>, u32)>,
}

fn predict_at(
    m: *const lungseg_model,
    cfg: &ModelConfig,
    v: *const lungseg_volume,
    opts: &mut lungseg_mc_options,
    want_mask: bool,
) -> PointResult {
    let n = voxels(cfg);
    let mut mean = vec![0f32; n];
    let mut mask = vec![9u8; n];
    let mut source = 0u32;
    if want_mask {
        opts.final_mask = mask.as_mut_ptr();
        opts.final_mask_len = n;
        opts.mask_source = &mut source;
    }
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty_at(m, v, [0.0; 3].as_ptr(), opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    PointResult {
        summary: out.summary,
        mean,
        mask: want_mask.then_some((mask, source)),
    }
}

/// The MC mean of the model's patch at `spacing_mm` around the origin, through an independent
/// extract + `lungseg_predict_uncertainty` call.
fn mean_at_spacing(
    m: *const lungseg_model,
    cfg: &ModelConfig,
    v: *const lungseg_volume,
    spacing_mm: [f64; 3],
) -> Vec<f32> {
    let n = voxels(cfg);
    let spec = lungseg_patch_spec {
        size: cfg.patch_size.map(|s| s as u32),
        spacing_mm,
        outside_hu: -1000.0,
        ..Default::default()
    };
    let mut hu = vec![0f32; n];
    let st =
        unsafe { lungseg_volume_extract_patch(v, [0.0; 3].as_ptr(), &spec, hu.as_mut_ptr(), n) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let mut mean = vec![0f32; n];
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &options(), &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    mean
}

/// The model's own final mask of `mean` (`lungseg_final_mask`).
fn model_mask(m: *const lungseg_model, mean: &[f32]) -> Vec<u8> {
    let mut mask = vec![9u8; mean.len()];
    let st =
        unsafe { lungseg_final_mask(m, mean.as_ptr(), mean.len(), mask.as_mut_ptr(), null_mut()) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    mask
}

fn count(mask: &[u8]) -> u64 {
    mask.iter().filter(|&&b| b == 1).count() as u64
}

const JOINED: u32 = lungseg_mask_source::LUNGSEG_MASK_JOINED as u32;

#[test]
fn the_second_look_reads_back() {
    let (plain, _) = (open_model(None).0, ());
    let (with, _) = open_model(Some(look(0.3)));
    let mut out = lungseg_second_look {
        present: 7,
        ..Default::default()
    };
    assert_eq!(
        unsafe { lungseg_model_get_second_look(plain, &mut out) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!((out.present, out.struct_size), (0, 32));
    let mut out = lungseg_second_look::default();
    assert_eq!(
        unsafe { lungseg_model_get_second_look(with, &mut out) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(out.present, 1);
    assert_eq!(
        (out.first_threshold, out.threshold, out.support),
        (0.55, 0.5, 0.3)
    );
    assert_eq!(out.max_scan_spacing_mm, 2.5);
    let mut small = lungseg_second_look {
        struct_size: 16,
        ..Default::default()
    };
    expect(
        unsafe { lungseg_model_get_second_look(with, &mut small) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "struct_size",
    );
    expect(
        unsafe { lungseg_model_get_second_look(with, null_mut()) },
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    unsafe {
        lungseg_model_free(plain);
        lungseg_model_free(with);
    }
}

#[test]
fn a_call_without_a_mask_buffer_is_unchanged_by_the_second_look() {
    let (plain, cfg) = open_model(None);
    let (with, _) = open_model(Some(look(0.0)));
    let v = scan(THIN);
    // An older caller's struct (V4: up to `scan_resolution_mm`) and a zeroed V5 one.
    let mut v4 = lungseg_mc_options {
        struct_size: std::mem::offset_of!(lungseg_mc_options, final_mask) as u32,
        ..options()
    };
    let a = predict_at(plain, &cfg, v, &mut options(), false);
    let b = predict_at(with, &cfg, v, &mut v4, false);
    let c = predict_at(with, &cfg, v, &mut options(), false);
    for r in [&b, &c] {
        assert_eq!(r.mean, a.mean);
        assert_eq!(r.summary.foreground_voxels, a.summary.foreground_voxels);
        assert_eq!(r.summary.uncertainty_score, a.summary.uncertainty_score);
    }
    assert_eq!(
        a.summary.foreground_voxels,
        count(&model_mask(plain, &a.mean))
    );
    unsafe {
        lungseg_model_free(plain);
        lungseg_model_free(with);
        lungseg_volume_free(v);
    }
}

#[test]
fn on_a_thin_scan_the_mask_joins_an_independent_half_spacing_look() {
    for support in [0.0, 0.3] {
        let l = look(support);
        let (m, cfg) = open_model(Some(l));
        let v = scan(THIN);
        let r = predict_at(m, &cfg, v, &mut options(), true);
        let (mask, source) = r.mask.unwrap();
        let grid = PatchGrid::of(&cfg);
        let changes = can_change(&r.mean, grid.dims_zyx, support).unwrap();
        let second = if changes {
            let fine = mean_at_spacing(m, &cfg, v, SecondLook::spacing_mm(cfg.spacing_mm));
            onto_first_grid(&fine, grid.dims_zyx).unwrap()
        } else {
            vec![None; r.mean.len()]
        };
        let mut want = vec![0u8; r.mean.len()];
        let rule = MaskRule::of(&cfg);
        joined_mask(&r.mean, &second, grid, rule, l, &mut want).unwrap();
        assert_eq!(mask, want, "support {support}");
        let want_source = if changes {
            JOINED
        } else {
            lungseg_mask_source::LUNGSEG_MASK_FIRST_LOOK_ONLY as u32
        };
        assert_eq!(source, want_source, "support {support}");
        assert_eq!(r.summary.foreground_voxels, count(&mask));
        let mm3 = count(&mask) as f64 * cfg.spacing_mm.iter().product::<f64>();
        assert!((r.summary.volume_mm3 - mm3).abs() < 1e-9);
        unsafe {
            lungseg_model_free(m);
            lungseg_volume_free(v);
        }
    }
}

#[test]
fn the_joined_mask_differs_from_the_model_mask_on_the_test_scan() {
    // Guards the test above against passing with a second look that changes nothing.
    let (m, cfg) = open_model(Some(look(0.0)));
    let v = scan(THIN);
    let r = predict_at(m, &cfg, v, &mut options(), true);
    let (mask, source) = r.mask.unwrap();
    assert_eq!(source, JOINED);
    assert_ne!(mask, model_mask(m, &r.mean));
    unsafe {
        lungseg_model_free(m);
        lungseg_volume_free(v);
    }
}

#[test]
fn thick_scans_patches_from_memory_and_plain_models_get_the_model_mask() {
    let (with, cfg) = open_model(Some(look(0.0)));
    let (plain, _) = open_model(None);
    let (thin, thick) = (scan(THIN), scan(THICK));
    let cases = [
        (
            with,
            thick,
            lungseg_mask_source::LUNGSEG_MASK_SCAN_TOO_COARSE,
        ),
        (plain, thin, lungseg_mask_source::LUNGSEG_MASK_MODEL),
    ];
    for (m, v, want) in cases {
        let r = predict_at(m, &cfg, v, &mut options(), true);
        let (mask, source) = r.mask.unwrap();
        assert_eq!(source, want as u32);
        assert_eq!(mask, model_mask(m, &r.mean));
        assert_eq!(r.summary.foreground_voxels, count(&mask));
    }
    // A caller who states a coarse scan resolution is judged by it too.
    let mut opts = lungseg_mc_options {
        scan_resolution_mm: THICK,
        ..options()
    };
    let r = predict_at(with, &cfg, thin, &mut opts, true);
    let source = r.mask.unwrap().1;
    assert_eq!(
        source,
        lungseg_mask_source::LUNGSEG_MASK_SCAN_TOO_COARSE as u32
    );
    // From memory: no scan to look at again.
    let n = voxels(&cfg);
    let hu = vec![-200f32; n];
    let (mut mean, mut mask, mut source) = (vec![0f32; n], vec![9u8; n], 0u32);
    let opts = lungseg_mc_options {
        final_mask: mask.as_mut_ptr(),
        final_mask_len: n,
        mask_source: &mut source,
        ..options()
    };
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty(with, hu.as_ptr(), n, &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(source, lungseg_mask_source::LUNGSEG_MASK_NO_SCAN as u32);
    assert_eq!(mask, model_mask(with, &mean));
    unsafe {
        lungseg_model_free(with);
        lungseg_model_free(plain);
        lungseg_volume_free(thin);
        lungseg_volume_free(thick);
    }
}

#[test]
fn the_batch_writes_each_points_mask_as_the_single_call_does() {
    let (m, cfg) = open_model(Some(look(0.0)));
    let v = scan(THIN);
    let n = voxels(&cfg);
    let centres = [0.0, 0.0, 0.0, 2.1, -1.4, 1.25];
    let mut masks = vec![9u8; 2 * n];
    let mut sources = [0u32; 2];
    let opts = lungseg_mc_options {
        final_mask: masks.as_mut_ptr(),
        final_mask_len: 2 * n,
        mask_source: sources.as_mut_ptr(),
        ..options()
    };
    let mut out = [lungseg_uncertainty::default(); 2];
    let mut done = 0usize;
    let st = unsafe {
        lungseg_predict_uncertainty_batch(
            m,
            v,
            centres.as_ptr(),
            2,
            &opts,
            out.as_mut_ptr(),
            &mut done,
        )
    };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(done, 2);
    for i in 0..2 {
        let (mut mask, mut source) = (vec![9u8; n], 0u32);
        let single = lungseg_mc_options {
            final_mask: mask.as_mut_ptr(),
            final_mask_len: n,
            mask_source: &mut source,
            ..options()
        };
        let mut o = lungseg_uncertainty::default();
        let c = &centres[3 * i..3 * i + 3];
        let st = unsafe { lungseg_predict_uncertainty_at(m, v, c.as_ptr(), &single, &mut o) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        assert_eq!(&masks[i * n..(i + 1) * n], &mask[..], "point {i}");
        assert_eq!(sources[i], source);
        assert_eq!(
            out[i].summary.foreground_voxels,
            o.summary.foreground_voxels
        );
    }
    assert_eq!(sources[0], JOINED);
    unsafe {
        lungseg_model_free(m);
        lungseg_volume_free(v);
    }
}

unsafe extern "C" fn on_progress(user: *mut c_void, done: u64, total: u64) {
    (*user.cast::<Vec<(u64, u64)>>()).push((done, total));
}

#[test]
fn progress_counts_the_second_looks_passes() {
    let (m, cfg) = open_model(Some(look(0.0)));
    let v = scan(THIN);
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let run = lungseg_run_options {
        progress: Some(on_progress),
        user: (&mut seen as *mut Vec<(u64, u64)>).cast(),
        ..Default::default()
    };
    let mut opts = lungseg_mc_options {
        run: &run,
        ..options()
    };
    let r = predict_at(m, &cfg, v, &mut opts, true);
    assert_eq!(r.mask.unwrap().1, JOINED);
    let n = u64::from(SAMPLES);
    assert_eq!(seen.len() as u64, 2 * n);
    assert_eq!(seen.last(), Some(&(2 * n, 2 * n)));
    assert!(seen
        .windows(2)
        .all(|w| w[1].0 == w[0].0 + 1 && w[1].0 <= w[1].1));
    unsafe {
        lungseg_model_free(m);
        lungseg_volume_free(v);
    }
}

#[test]
fn bad_mask_buffers_are_refused() {
    let (m, cfg) = open_model(Some(look(0.0)));
    let v = scan(THIN);
    let n = voxels(&cfg);
    let mut buf = vec![0u8; 2 * n];
    let mut source = 0u32;
    let mut out = lungseg_uncertainty::default();
    let c = [0.0f64; 3];
    let call = |opts: &lungseg_mc_options, out: &mut lungseg_uncertainty| unsafe {
        lungseg_predict_uncertainty_at(m, v, c.as_ptr(), opts, out)
    };
    let no_mask = lungseg_mc_options {
        mask_source: &mut source,
        ..options()
    };
    expect(
        call(&no_mask, &mut out),
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "without opts->final_mask",
    );
    let short = lungseg_mc_options {
        final_mask: buf.as_mut_ptr(),
        final_mask_len: n - 1,
        ..options()
    };
    expect(
        call(&short, &mut out),
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "final_mask_len",
    );
    // The mask over the mean map's bytes.
    let mut mean = vec![0f32; n];
    let overlapping = lungseg_mc_options {
        final_mask: mean.as_mut_ptr().cast(),
        final_mask_len: n,
        ..options()
    };
    let mut with_mean = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    expect(
        call(&overlapping, &mut with_mean),
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "overlap",
    );
    unsafe {
        lungseg_model_free(m);
        lungseg_volume_free(v);
    }
}
