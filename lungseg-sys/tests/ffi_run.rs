//! The host's hooks (`lungseg_run_options`: cancel flag, progress, log) and the batch call,
//! through the C ABI: a cancelled call writes nothing and says so, progress counts every
//! forward pass once, the log filters by level and repeats failures, and a batch equals the
//! single-point calls bit for bit.

mod ffi_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

const MODEL: &str = "small_f16_element.safetensors";

fn open_model() -> *mut lungseg_model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(MODEL);
    let p = CString::new(p.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(p.as_ptr(), null(), &mut m) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    m
}

fn patch_voxels(m: *const lungseg_model) -> usize {
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    info.patch_size.iter().map(|&v| v as usize).product()
}

/// A 40×36×30 int16 scan at 1.5 mm with a bright blob in the middle, from memory.
fn scan() -> *mut lungseg_volume {
    let dims = [40usize, 36, 30];
    let mut px = vec![-800i16; dims.iter().product()];
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let d2 = [(x, 20), (y, 18), (z, 15)]
                    .iter()
                    .map(|&(a, c)| (a as f64 - c as f64).powi(2))
                    .sum::<f64>();
                if d2 < 16.0 {
                    px[(z * dims[1] + y) * dims[0] + x] = 40;
                }
            }
        }
    }
    let desc = lungseg_volume_desc {
        pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
        dims: dims.map(|d| d as u64),
        spacing: [1.5; 3],
        origin: [-30.0, -27.0, -22.5],
        ..Default::default()
    };
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_create(&desc, px.as_ptr().cast(), px.len() * 2, &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    v
}

/// What the callbacks saw, reached through `user`.
#[derive(Default)]
struct Seen {
    progress: Vec<(u64, u64)>,
    log: Vec<(u32, String)>,
    /// Set the flag once this many passes are done (0: never).
    cancel_after: u64,
    flag: AtomicI32,
}

unsafe extern "C" fn on_progress(user: *mut c_void, done: u64, total: u64) {
    let seen = &mut *user.cast::<Seen>();
    seen.progress.push((done, total));
    if seen.cancel_after != 0 && done >= seen.cancel_after {
        seen.flag.store(1, Ordering::Relaxed);
    }
}

unsafe extern "C" fn on_log(user: *mut c_void, level: u32, message: *const libc::c_char) {
    let seen = &mut *user.cast::<Seen>();
    let m = CStr::from_ptr(message).to_str().unwrap().to_string();
    seen.log.push((level, m));
}

fn run_options(seen: &mut Seen, level: lungseg_log_level) -> lungseg_run_options {
    lungseg_run_options {
        log_level: level as u32,
        cancel: seen.flag.as_ptr(),
        progress: Some(on_progress),
        log: Some(on_log),
        user: (seen as *mut Seen).cast(),
        ..Default::default()
    }
}

fn mc_options(n_samples: u32, run: *const lungseg_run_options) -> lungseg_mc_options {
    lungseg_mc_options {
        n_samples,
        seed: 5,
        run,
        ..Default::default()
    }
}

fn levels(seen: &Seen) -> Vec<u32> {
    seen.log.iter().map(|(l, _)| *l).collect()
}

#[test]
fn progress_counts_every_sample_and_the_log_filters_by_level() {
    let m = open_model();
    let n = patch_voxels(m);
    let hu = vec![-600f32; n];
    let mut seen = Seen::default();
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_DEBUG);
    let mut out = lungseg_uncertainty::default();
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(6, &run), &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(seen.progress, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());
    let debug = lungseg_log_level::LUNGSEG_LOG_DEBUG as u32;
    let info = lungseg_log_level::LUNGSEG_LOG_INFO as u32;
    assert_eq!(levels(&seen), [debug, info], "{:?}", seen.log);
    assert!(
        seen.log[0].1.contains("6 samples, seed 5"),
        "{:?}",
        seen.log
    );
    assert!(seen.log[1].1.contains("needs_review"), "{:?}", seen.log);

    // log_level 0 is INFO: the DEBUG line goes.
    let mut seen = Seen::default();
    let mut run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_INFO);
    run.log_level = 0;
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(2, &run), &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    assert_eq!(levels(&seen), [info]);

    // A failure is logged at ERROR with the message `lungseg_last_error` gives.
    let mut seen = Seen::default();
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_ERROR);
    let mut bad = hu.clone();
    bad[3] = f32::NAN;
    let st =
        unsafe { lungseg_predict_uncertainty(m, bad.as_ptr(), n, &mc_options(2, &run), &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
    assert_eq!(
        seen.log,
        [(lungseg_log_level::LUNGSEG_LOG_ERROR as u32, last_error())]
    );
    unsafe { lungseg_model_free(m) };
}

#[test]
fn a_cancelled_call_stops_between_samples_and_writes_nothing() {
    let m = open_model();
    let n = patch_voxels(m);
    let hu = vec![-600f32; n];
    let mut mean = vec![f32::NAN; n];
    let mut measures = lungseg_structure_measures::default();
    let mut seen = Seen {
        cancel_after: 3,
        ..Seen::default()
    };
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_INFO);
    let opts = lungseg_mc_options {
        structure_measures: &mut measures,
        ..mc_options(50, &run)
    };
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        len: n,
        ..Default::default()
    };
    out.summary.n_samples = 777;
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &opts, &mut out) };
    expect(
        st,
        lungseg_status::LUNGSEG_CANCELLED,
        "after 3 of 50 MC samples",
    );
    assert_eq!(seen.progress.len(), 3, "no pass after the flag was seen");
    assert!(mean.iter().all(|v| v.is_nan()), "no map written");
    assert_eq!(out.summary.n_samples, 777, "no summary written");
    assert_eq!(
        measures.struct_size as usize,
        size_of::<lungseg_structure_measures>()
    );
    assert_eq!(measures.union_voxels, 0, "no measures written");
    let info = lungseg_log_level::LUNGSEG_LOG_INFO as u32;
    let error = lungseg_log_level::LUNGSEG_LOG_ERROR as u32;
    assert_eq!(levels(&seen), [info, error], "{:?}", seen.log);

    // A flag already set: nothing runs.
    let mut seen = Seen::default();
    seen.flag.store(1, Ordering::Relaxed);
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_INFO);
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(4, &run), &mut out) };
    expect(st, lungseg_status::LUNGSEG_CANCELLED, "after 0 of 4");
    assert!(seen.progress.is_empty());
    unsafe { lungseg_model_free(m) };
}

/// The engine reads the flag between the levels of a pass too: a flag raised from another
/// thread while one long pass runs ends the call before that pass completes.
#[test]
fn the_flag_is_read_inside_a_pass() {
    use lungseg::mc::{self, McOptions, RunControl, UncertaintyMaps};
    use lungseg::model::Model;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(MODEL);
    let model = Model::open(&path).unwrap();
    let hu = vec![-600f32; model.config().patch_voxels()];
    let asks = std::cell::Cell::new(0u32);
    // True from the second question on: the first is asked before sample 0, the second
    // inside its forward pass.
    let cancel = || {
        asks.set(asks.get() + 1);
        asks.get() > 1
    };
    let mut passes = 0u64;
    let mut count = |_: mc::Progress| passes += 1;
    let mut ctl = RunControl::default()
        .with_cancel(&cancel)
        .with_progress(&mut count);
    let opts = McOptions {
        n_samples: 3,
        ..McOptions::default()
    };
    let e = mc::predict_uncertainty_with(&model, &hu, &opts, UncertaintyMaps::default(), &mut ctl)
        .unwrap_err();
    assert_eq!(e.kind, lungseg::error::ErrorKind::Cancelled, "{e}");
    assert!(e.message.contains("after 0 of 3"), "{e}");
    assert_eq!(passes, 0, "the first pass was stopped inside");
    assert_eq!(asks.get(), 2);
}

fn summaries_equal(a: &lungseg_patch_summary, b: &lungseg_patch_summary) {
    assert_eq!(
        (
            a.foreground_voxels,
            a.uncertainty_score.to_bits(),
            a.mean_entropy.to_bits()
        ),
        (
            b.foreground_voxels,
            b.uncertainty_score.to_bits(),
            b.mean_entropy.to_bits()
        )
    );
    assert_eq!((a.needs_review, a.n_samples), (b.needs_review, b.n_samples));
}

#[test]
fn a_batch_equals_single_point_calls_and_reports_progress_over_all_points() {
    let m = open_model();
    let v = scan();
    let n = patch_voxels(m);
    // The second point's patch reaches past the scan's edge.
    let centers = [0.0, 0.0, 0.0, 25.0, -20.0, 15.0, 3.0, 1.5, -4.5];
    let k = centers.len() / 3;
    let mut means = vec![vec![f32::NAN; n]; k];
    let mut outs: Vec<lungseg_uncertainty> = means
        .iter_mut()
        .map(|mean| lungseg_uncertainty {
            mean: mean.as_mut_ptr(),
            len: n,
            ..Default::default()
        })
        .collect();
    let mut measures = vec![lungseg_structure_measures::default(); k];
    let mut seen = Seen::default();
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_INFO);
    let opts = lungseg_mc_options {
        structure_measures: measures.as_mut_ptr(),
        ..mc_options(4, &run)
    };
    let mut done = 99usize;
    let st = unsafe {
        lungseg_predict_uncertainty_batch(
            m,
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
    assert_eq!(seen.progress, (1..=12).map(|d| (d, 12)).collect::<Vec<_>>());
    let warns: Vec<_> = seen
        .log
        .iter()
        .filter(|(l, _)| *l == lungseg_log_level::LUNGSEG_LOG_WARN as u32)
        .collect();
    assert_eq!(warns.len(), 1, "{:?}", seen.log);
    assert!(warns[0].1.contains("(25.0, -20.0, 15.0)"), "{}", warns[0].1);
    assert!(
        seen.log.last().unwrap().1.starts_with("batch: 3 points"),
        "{:?}",
        seen.log
    );

    for i in 0..k {
        let mut mean = vec![f32::NAN; n];
        let mut one = lungseg_uncertainty {
            mean: mean.as_mut_ptr(),
            len: n,
            ..Default::default()
        };
        let mut meas = lungseg_structure_measures::default();
        let o = lungseg_mc_options {
            structure_measures: &mut meas,
            ..mc_options(4, null())
        };
        let st = unsafe {
            lungseg_predict_uncertainty_at(m, v, centers[3 * i..].as_ptr(), &o, &mut one)
        };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        assert_eq!(mean, means[i], "point {i}: the same maps bit for bit");
        summaries_equal(&one.summary, &outs[i].summary);
        assert_eq!(meas.union_voxels, measures[i].union_voxels);
        assert_eq!(
            meas.dice_agreement.to_bits(),
            measures[i].dice_agreement.to_bits()
        );
    }
    unsafe {
        lungseg_volume_free(v);
        lungseg_model_free(m);
    }
}

#[test]
fn a_batch_stops_at_the_failing_or_cancelled_point_and_counts_what_was_written() {
    let m = open_model();
    let v = scan();
    let mut outs = vec![lungseg_uncertainty::default(); 3];
    let mut done = 0usize;
    let batch = |centers: &[f64],
                 opts: &lungseg_mc_options,
                 outs: &mut [lungseg_uncertainty],
                 done: &mut usize| unsafe {
        lungseg_predict_uncertainty_batch(
            m,
            v,
            centers.as_ptr(),
            centers.len() / 3,
            opts,
            outs.as_mut_ptr(),
            done,
        )
    };

    // A non-finite centre fails its point, after the points before it.
    let bad = [0.0, 0.0, 0.0, f64::NAN, 0.0, 0.0, 1.0, 1.0, 1.0];
    let st = batch(&bad, &mc_options(2, null()), &mut outs, &mut done);
    expect(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "point 1 of 3");
    assert_eq!(done, 1);
    assert_eq!(outs[0].summary.n_samples, 2);

    // Cancelled during the second point (after 5 of 3 × 4 passes).
    let centers = [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, -1.0, -2.0, -3.0];
    let mut seen = Seen {
        cancel_after: 5,
        ..Seen::default()
    };
    let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_ERROR);
    let st = batch(&centers, &mc_options(4, &run), &mut outs, &mut done);
    expect(st, lungseg_status::LUNGSEG_CANCELLED, "point 1 of 3");
    assert_eq!(done, 1);
    assert_eq!(seen.progress.last(), Some(&(5, 12)));

    // Sizes: none is fine, too many is a limit, measures must agree on their size.
    let st = batch(&[], &mc_options(2, null()), &mut outs, &mut done);
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    assert_eq!(done, 0);
    let st = unsafe {
        lungseg_predict_uncertainty_batch(
            m,
            v,
            centers.as_ptr(),
            LUNGSEG_MAX_BATCH_POINTS + 1,
            null(),
            outs.as_mut_ptr(),
            null_mut(),
        )
    };
    expect(st, lungseg_status::LUNGSEG_LIMIT, "n_points");
    let mut measures = vec![lungseg_structure_measures::default(); 3];
    measures[2].struct_size = 64;
    let opts = lungseg_mc_options {
        structure_measures: measures.as_mut_ptr(),
        ..mc_options(2, null())
    };
    let st = batch(&centers, &opts, &mut outs, &mut done);
    expect(
        st,
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "structure_measures[2].struct_size is 64",
    );
    assert_eq!(done, 2);

    // Outputs overlapping the centres are refused before anything runs.
    let n = patch_voxels(m);
    let mut centers_and_map = vec![0f64; n];
    let mut aliased = vec![lungseg_uncertainty::default(); 1];
    aliased[0].mean = centers_and_map.as_mut_ptr().cast();
    aliased[0].len = n;
    let st = unsafe {
        lungseg_predict_uncertainty_batch(
            m,
            v,
            centers_and_map.as_ptr(),
            1,
            null(),
            aliased.as_mut_ptr(),
            &mut done,
        )
    };
    expect(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "overlap");
    unsafe {
        lungseg_volume_free(v);
        lungseg_model_free(m);
    }
}

#[test]
fn run_options_are_versioned_and_checked() {
    let m = open_model();
    let n = patch_voxels(m);
    let hu = vec![-600f32; n];
    let mut out = lungseg_uncertainty::default();
    let mut seen = Seen::default();
    let mut run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_INFO);
    run.log_level = 9;
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(2, &run), &mut out) };
    expect(
        st,
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "lungseg_log_level",
    );
    run.log_level = 0;
    run.struct_size = 16;
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(2, &run), &mut out) };
    expect(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "struct_size");
    run.struct_size = size_of::<lungseg_run_options>() as u32;
    let unaligned = unsafe { seen.flag.as_ptr().cast::<u8>().add(1).cast::<i32>() };
    run.cancel = unaligned;
    let st =
        unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(2, &run), &mut out) };
    expect(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "aligned");

    // A caller built against the header before `run` (struct_size 40) gets no hooks.
    seen.flag.store(1, Ordering::Relaxed);
    run.cancel = seen.flag.as_ptr();
    let mut opts = mc_options(2, &run);
    opts.struct_size = std::mem::offset_of!(lungseg_mc_options, run) as u32;
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert!(seen.progress.is_empty());
    unsafe { lungseg_model_free(m) };
}

/// Hooks are per call: two threads with their own flags on one model, one cancelled.
#[test]
fn hooks_belong_to_their_call() {
    let m = open_model() as usize;
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for cancel in [false, true] {
            let results = &results;
            s.spawn(move || {
                let m = m as *const lungseg_model;
                let n = patch_voxels(m);
                let hu = vec![-600f32; n];
                let mut seen = Seen::default();
                seen.flag.store(i32::from(cancel), Ordering::Relaxed);
                let run = run_options(&mut seen, lungseg_log_level::LUNGSEG_LOG_ERROR);
                let mut out = lungseg_uncertainty::default();
                let st = unsafe {
                    lungseg_predict_uncertainty(m, hu.as_ptr(), n, &mc_options(8, &run), &mut out)
                };
                results
                    .lock()
                    .unwrap()
                    .push((cancel, st, seen.progress.len()));
            });
        }
    });
    let mut r = results.into_inner().unwrap();
    r.sort_by_key(|x| x.0);
    assert_eq!(
        r,
        [
            (false, lungseg_status::LUNGSEG_OK, 8),
            (true, lungseg_status::LUNGSEG_CANCELLED, 0)
        ]
    );
    unsafe { lungseg_model_free(m as *mut lungseg_model) };
}
