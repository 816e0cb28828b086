//! Every predict entry point allocates nothing in the steady state (after a warm-up call with
//! the same arguments), on the calling thread or on the library's worker threads.
//!
//! A counting global allocator counts every allocation in the process while armed, so this
//! file runs without the test harness (`harness = false`): no other test may run meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CString;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lungseg::ffi::*;
use lungseg::geometry::Geometry;
use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::volume::{PixelData, Volume};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations anywhere in the process during `f`.
fn allocations(f: &mut dyn FnMut()) -> usize {
    COUNT.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    COUNT.load(Ordering::SeqCst)
}

/// Runs `f` once to warm up, then three more times counting.
fn steady(name: &str, f: &mut dyn FnMut(), failures: &mut Vec<String>) {
    f();
    let n = allocations(&mut || {
        for _ in 0..3 {
            f()
        }
    });
    println!("{name}: {n} allocations in 3 steady-state calls");
    if n != 0 {
        failures.push(format!("{name}: {n}"));
    }
}

fn ok(st: lungseg_status) {
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
}

/// Library helper threads alive now.
fn library_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("lungseg"))
        .count()
}

fn main() {
    // Large enough that layers run in parallel (the pool's helpers are exercised), with
    // element dropout so that the per-sample masking runs too, and a minimum mask component
    // so that the final mask's component pass runs in every MC call.
    let cfg = r#"{"channels":[4,8,16],"patch_size":[32,32,32],"dropout":{"p":0.2,"kind":"element"},"min_component_mm3":4}"#;
    let tmp = std::env::temp_dir().join(format!("lungseg-no-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("model.safetensors");
    std::fs::write(&file, common::synth_model_bytes(cfg)).unwrap();
    let model = Model::open(&file).unwrap();
    let n = model.config().patch_voxels();
    let input: Vec<f32> = (0..n).map(|i| (i % 31) as f32 * 45.0 - 900.0).collect();
    let mut failures = Vec::new();

    for threads in [1, 2, 0] {
        let mut prob = vec![0.0; n];
        steady(
            &format!("mc::predict threads={threads}"),
            &mut || predict(&model, &input, &mut prob, threads).unwrap(),
            &mut failures,
        );
        let (mut mean, mut var, mut ent, mut mi) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let opts = McOptions {
            n_samples: 3,
            seed: 7,
            threads,
            // A structure-wise score: the sample masks are recorded and measured too.
            review_threshold: Some(0.2),
            review_score: Some(lungseg::model::ReviewScore::DiceDisagreement),
        };
        steady(
            &format!("mc::predict_uncertainty threads={threads}"),
            &mut || {
                let maps = UncertaintyMaps {
                    mean: Some(&mut mean),
                    variance: Some(&mut var),
                    entropy: Some(&mut ent),
                    mutual_info: Some(&mut mi),
                };
                predict_uncertainty(&model, &input, &opts, maps).unwrap();
            },
            &mut failures,
        );
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cores == 1 || library_threads() > 0,
        "the pool's helpers should have run"
    );
    let path = CString::new(file.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    ok(unsafe { lungseg_model_open(path.as_ptr(), null(), &mut m) });
    let mut prob = vec![0.0; n];
    steady(
        "lungseg_predict",
        &mut || ok(unsafe { lungseg_predict(m, input.as_ptr(), n, prob.as_mut_ptr(), n) }),
        &mut failures,
    );
    let (mut mean, mut var, mut ent, mut mi) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        variance: var.as_mut_ptr(),
        entropy: ent.as_mut_ptr(),
        mutual_info: mi.as_mut_ptr(),
        len: n,
        summary: Default::default(),
    };
    let mut measures = lungseg_structure_measures::default();
    let opts = lungseg_mc_options {
        struct_size: std::mem::size_of::<lungseg_mc_options>() as u32,
        n_samples: 3,
        seed: 1,
        override_review_threshold: 1,
        review_threshold: 0.3,
        structure_measures: &mut measures,
        review_score: lungseg_review_score::LUNGSEG_REVIEW_VOLUME_CV as u32,
        ..Default::default()
    };
    steady(
        "lungseg_predict_uncertainty",
        &mut || ok(unsafe { lungseg_predict_uncertainty(m, input.as_ptr(), n, &opts, &mut out) }),
        &mut failures,
    );

    // An axis-aligned scan (the separable resampler) and an oblique one (the general path).
    let dims = [60usize, 56, 50];
    let data: Vec<i16> = (0..dims.iter().product::<usize>())
        .map(|i| ((i * 7919) % 1400) as i16 - 1000)
        .collect();
    let oblique = {
        let (c, s) = (0.8f64, 0.6f64);
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    };
    for (name, dir) in [
        ("axis-aligned", lungseg::geometry::IDENTITY),
        ("oblique", oblique),
    ] {
        let g = Geometry::new(dims, [0.8, 0.8, 1.5], [-10.0, -12.0, -20.0], dir).unwrap();
        let centre = g.index_to_world([30.0, 28.0, 25.0]);
        let v = Volume::new(g, PixelData::I16(data.clone())).unwrap();
        let mhd = tmp.join(format!("{name}.mhd"));
        lungseg::mhd::write(&mhd, &v, &Default::default()).unwrap();
        let p = CString::new(mhd.to_str().unwrap()).unwrap();
        let mut vol = null_mut();
        ok(unsafe { lungseg_volume_open(p.as_ptr(), &mut vol) });
        steady(
            &format!("lungseg_predict_uncertainty_at ({name})"),
            &mut || {
                ok(unsafe {
                    lungseg_predict_uncertainty_at(m, vol, centre.as_ptr(), &opts, &mut out)
                })
            },
            &mut failures,
        );
        unsafe { lungseg_volume_free(vol) };
        // The same scan from memory: copied, and borrowed with padded rows/slices and a rescale.
        let (nx, ny) = (dims[0], dims[1]);
        let (row, slice) = (nx + 3, (nx + 3) * (ny + 2));
        let mut padded = vec![0i16; slice * dims[2]];
        for (r, src) in data.chunks_exact(nx).enumerate() {
            let at = (r / ny) * slice + (r % ny) * row;
            padded[at..at + nx].copy_from_slice(src);
        }
        let desc = lungseg_volume_desc {
            pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
            dims: dims.map(|d| d as u64),
            spacing: [0.8, 0.8, 1.5],
            origin: [-10.0, -12.0, -20.0],
            direction: std::array::from_fn(|i| dir[i / 3][i % 3]),
            ..Default::default()
        };
        let strided = lungseg_volume_desc {
            row_stride_bytes: row as u64 * 2,
            slice_stride_bytes: slice as u64 * 2,
            rescale_slope: 1.0,
            rescale_intercept: -1024.0,
            ..desc
        };
        for (how, d, px) in [
            ("copied", desc, &data),
            ("borrowed strided", strided, &padded),
        ] {
            let mut vol = null_mut();
            let create = match how {
                "copied" => lungseg_volume_create,
                _ => lungseg_volume_create_borrowed,
            };
            ok(unsafe { create(&d, px.as_ptr().cast(), px.len() * 2, &mut vol) });
            steady(
                &format!("lungseg_predict_uncertainty_at ({name}, {how})"),
                &mut || {
                    ok(unsafe {
                        lungseg_predict_uncertainty_at(m, vol, centre.as_ptr(), &opts, &mut out)
                    })
                },
                &mut failures,
            );
            unsafe { lungseg_volume_free(vol) };
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    unsafe { lungseg_model_free(m) };
    assert!(
        failures.is_empty(),
        "allocations in steady state: {failures:?}"
    );
    println!("no_alloc: ok");
}
