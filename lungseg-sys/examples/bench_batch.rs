//! Throughput of MC dropout over many candidate points of one scan, through the C ABI as a
//! host calls it: patches per second for the two ways of using T cores.
//!
//! `cargo run --release --example bench_batch -- model.safetensors --mode sample|patch
//! [--threads T] [--points 32] [--samples 20] [--json]`
//!
//! - `sample`: sample-level parallelism: one `lungseg_predict_uncertainty_batch` call over all
//!   points, on a model opened with `threads = T` (each point's layers split over the pool).
//! - `patch`: patch-level parallelism: T host threads take the next point from a shared
//!   counter and call `lungseg_predict_uncertainty_at` on a model opened with `threads = 1`.
//!
//! Both cut the model's patch around each point of one synthetic int16 scan (resampling
//! included), run `--samples` samples with the same seed and write the mean and mutual
//! information maps of every point into its own buffers. One warm-up (every thread runs one
//! 2-sample point), then one timed pass over all points. `digest` hashes every point's summary
//! in point order: the two modes compute the same thing, so their digests must agree. The CPU
//! kernel is the model's default (`LUNGSEG_CPU_KERNEL` picks it).

use std::ffi::CString;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use lungseg::ffi::*;
use lungseg::nn::cpu_kernel::CpuKernel;

/// Seed of every call's dropout masks.
const SEED: u64 = 7;

struct Args {
    model: String,
    patch_level: bool,
    threads: usize,
    points: usize,
    samples: u32,
    json: bool,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| a.iter().position(|x| x == name).and_then(|i| a.get(i + 1));
    let number = |name: &str, default: usize| {
        value(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a number, not {v:?}"))
        })
    };
    let patch_level = match value("--mode").map(String::as_str) {
        Some("sample") => false,
        Some("patch") => true,
        m => panic!("--mode sample|patch, not {m:?}"),
    };
    Args {
        model: a
            .first()
            .filter(|m| !m.starts_with("--"))
            .expect("the model file comes first")
            .clone(),
        patch_level,
        threads: number("--threads", 1).max(1),
        points: number("--points", 32).max(1),
        samples: number("--samples", 20) as u32,
        json: a.iter().any(|x| x == "--json"),
    }
}

/// A status that must be OK, else the library's message.
fn ok(st: lungseg_status, what: &str) {
    if st != lungseg_status::LUNGSEG_OK {
        let n = unsafe { lungseg_last_error(null_mut(), 0) };
        let mut buf = vec![0 as libc::c_char; n + 1];
        unsafe { lungseg_last_error(buf.as_mut_ptr(), buf.len()) };
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        panic!("{what}: {st:?}: {}", msg.to_string_lossy());
    }
}

/// The model and scan handles, shared read-only by the host threads (the C ABI allows one
/// model handle to serve many threads at once).
#[derive(Clone, Copy)]
struct Handles {
    model: *const lungseg_model,
    volume: *const lungseg_volume,
}
// SAFETY: both handles are only read, and the library documents them as thread-safe.
unsafe impl Send for Handles {}
unsafe impl Sync for Handles {}

impl Handles {
    /// MC dropout at one world point into `out`'s maps.
    fn at(&self, centre: &[f64; 3], samples: u32, out: &mut lungseg_uncertainty) {
        // SAFETY: live handles, a 3-double centre, maps of the model's patch size.
        let st = unsafe {
            lungseg_predict_uncertainty_at(
                self.model,
                self.volume,
                centre.as_ptr(),
                &mc_options(samples),
                out,
            )
        };
        ok(st, "point");
    }
}

fn open_model(path: &str, threads: usize) -> *mut lungseg_model {
    let p = CString::new(path).expect("model path");
    let opts = lungseg_model_options {
        threads: threads as u32,
        ..Default::default()
    };
    let mut m = null_mut();
    ok(
        unsafe { lungseg_model_open(p.as_ptr(), &opts, &mut m) },
        "model open",
    );
    m
}

fn kernel_name(m: *const lungseg_model) -> &'static str {
    let mut v = 0u32;
    ok(unsafe { lungseg_model_get_cpu_kernel(m, &mut v) }, "kernel");
    CpuKernel::ALL
        .into_iter()
        .find(|&k| lungseg_cpu_kernel::from(k) as u32 == v)
        .map_or("?", CpuKernel::name)
}

/// Scan geometry: 256 × 256 × 128 voxels of 0.7 × 0.7 × 1.25 mm, origin 0.
const DIMS: [usize; 3] = [256, 256, 128];
const SPACING: [f64; 3] = [0.7, 0.7, 1.25];

/// `n` candidate points (world mm) spread over the scan's interior, cycling through a
/// 4 × 4 × 2 grid with a small offset per cycle.
fn points(n: usize) -> Vec<[f64; 3]> {
    let ext: Vec<f64> = (0..3).map(|a| DIMS[a] as f64 * SPACING[a]).collect();
    (0..n)
        .map(|i| {
            let (g, cycle) = (i % 32, (i / 32) as f64);
            let cell = [g % 4, g / 4 % 4, g / 16];
            let per = [4.0, 4.0, 2.0];
            std::array::from_fn(|a| {
                let f = (cell[a] as f64 + 0.5) / per[a];
                0.2 * ext[a] + 0.6 * ext[a] * f + 1.5 * cycle
            })
        })
        .collect()
}

/// Lung-like int16 scan: -850 HU with a 40 HU sphere (radius 2–9 mm) around every point.
fn scan(centres: &[[f64; 3]]) -> *mut lungseg_volume {
    let [nx, ny, nz] = DIMS;
    let mut px = vec![-850i16; nx * ny * nz];
    for (i, c) in centres.iter().enumerate() {
        let r = 2.0 + (i % 8) as f64;
        let lo: Vec<usize> = (0..3)
            .map(|a| ((c[a] - r) / SPACING[a]).floor().max(0.0) as usize)
            .collect();
        let hi: Vec<usize> = (0..3)
            .map(|a| (((c[a] + r) / SPACING[a]).ceil() as usize).min(DIMS[a] - 1))
            .collect();
        for z in lo[2]..=hi[2] {
            for y in lo[1]..=hi[1] {
                for x in lo[0]..=hi[0] {
                    let d2: f64 = [x, y, z]
                        .iter()
                        .enumerate()
                        .map(|(a, &v)| (v as f64 * SPACING[a] - c[a]).powi(2))
                        .sum();
                    if d2 <= r * r {
                        px[(z * ny + y) * nx + x] = 40;
                    }
                }
            }
        }
    }
    let desc = lungseg_volume_desc {
        pixel_type: lungseg_pixel_type::LUNGSEG_PIXEL_INT16 as u32,
        dims: DIMS.map(|d| d as u64),
        spacing: SPACING,
        ..Default::default()
    };
    let mut v = null_mut();
    ok(
        unsafe { lungseg_volume_create(&desc, px.as_ptr().cast(), px.len() * 2, &mut v) },
        "volume",
    );
    v
}

/// Each point's mean and mutual-information maps.
struct Maps {
    mean: Vec<f32>,
    mi: Vec<f32>,
}

impl Maps {
    fn out(&mut self) -> lungseg_uncertainty {
        lungseg_uncertainty {
            mean: self.mean.as_mut_ptr(),
            mutual_info: self.mi.as_mut_ptr(),
            len: self.mean.len(),
            ..Default::default()
        }
    }
}

fn mc_options(samples: u32) -> lungseg_mc_options {
    lungseg_mc_options {
        n_samples: samples,
        seed: SEED,
        ..Default::default()
    }
}

/// Sample-level: one batch call over all points.
fn sample_level(
    h: Handles,
    centres: &[[f64; 3]],
    maps: &mut [Maps],
    samples: u32,
) -> Vec<lungseg_patch_summary> {
    let flat: Vec<f64> = centres.iter().flatten().copied().collect();
    let mut outs: Vec<lungseg_uncertainty> = maps.iter_mut().map(Maps::out).collect();
    let st = unsafe {
        lungseg_predict_uncertainty_batch(
            h.model,
            h.volume,
            flat.as_ptr(),
            centres.len(),
            &mc_options(samples),
            outs.as_mut_ptr(),
            null_mut(),
        )
    };
    ok(st, "batch");
    outs.iter().map(|o| o.summary).collect()
}

/// Patch-level: `threads` host threads, each taking the next point.
fn patch_level(
    h: Handles,
    centres: &[[f64; 3]],
    maps: &mut [Maps],
    samples: u32,
    threads: usize,
) -> Vec<lungseg_patch_summary> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<(&mut Maps, Option<lungseg_patch_summary>)>> =
        maps.iter_mut().map(|m| Mutex::new((m, None))).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let mut slot = slot.lock().unwrap();
                let mut out = slot.0.out();
                h.at(&centres[i], samples, &mut out);
                slot.1 = Some(out.summary);
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().unwrap().1.expect("every point ran"))
        .collect()
}

/// FNV-1a over each summary's voxel count and score bits, in point order.
fn digest(summaries: &[lungseg_patch_summary]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for s in summaries {
        let words = [
            s.foreground_voxels,
            u64::from(s.mean_mutual_info.to_bits()),
            u64::from(s.uncertainty_score.to_bits()),
            u64::from(s.mean_probability.to_bits()),
        ];
        for b in words.iter().flat_map(|w| w.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let a = args();
    assert!(Path::new(&a.model).is_file(), "no model file {}", a.model);
    let model_threads = if a.patch_level { 1 } else { a.threads };
    let model = open_model(&a.model, model_threads);
    let mut info = lungseg_model_info::default();
    ok(unsafe { lungseg_model_get_info(model, &mut info) }, "info");
    let voxels: usize = info.patch_size.iter().map(|&v| v as usize).product();
    let centres = points(a.points);
    let h = Handles {
        model,
        volume: scan(&centres),
    };
    let mut maps: Vec<Maps> = (0..a.points)
        .map(|_| Maps {
            mean: vec![0.0; voxels],
            mi: vec![0.0; voxels],
        })
        .collect();
    let run = |maps: &mut [Maps], centres: &[[f64; 3]], samples: u32| {
        if a.patch_level {
            patch_level(h, centres, maps, samples, a.threads)
        } else {
            sample_level(h, centres, maps, samples)
        }
    };
    let warm = a.threads.min(a.points);
    run(&mut maps[..warm], &centres[..warm], 2);
    let (t, c) = (Instant::now(), process_cpu_s());
    let summaries = run(&mut maps, &centres, a.samples);
    let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_s() - c);
    let d = digest(&summaries);
    let mode = if a.patch_level { "patch" } else { "sample" };
    let kernel = kernel_name(model);
    let rate = a.points as f64 / wall;
    let rss = peak_rss_mib();
    if a.json {
        println!(
            "{{\"mode\":\"{mode}\",\"threads\":{},\"kernel\":\"{kernel}\",\"points\":{},\"samples\":{},\"wall_s\":{wall:.4},\"cpu_s\":{cpu:.4},\"patches_per_s\":{rate:.4},\"peak_rss_mib\":{rss:.1},\"digest\":\"{d:016x}\"}}",
            a.threads, a.points, a.samples
        );
    } else {
        println!(
            "{mode}-level, {} threads, kernel {kernel}: {} points × MC-{} in {wall:.2} s \
             ({rate:.3} patches/s), CPU {cpu:.2} s, peak RSS {rss:.0} MiB, digest {d:016x}",
            a.threads, a.points, a.samples
        );
    }
    unsafe {
        lungseg_volume_free(h.volume.cast_mut());
        lungseg_model_free(model);
    }
}
