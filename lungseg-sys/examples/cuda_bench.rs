//! Benchmark of the CUDA backend (run on a GPU machine by `scripts/gpu-check.sh run`): the
//! default 5-level model (formula weights, 64³ patch), deterministic pass, MC-N, throughput
//! over many patches and GPU memory; one markdown table row per measurement on stdout.
//!
//! `cuda_bench [--samples N] [--iters K] [--patches P] [--write-model PATH]`
//! `--write-model` writes the safetensors model for `scripts/bench_cuda_torch.py` and exits.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use lungseg::cuda::engine::CudaEngine;

fn main() {
    let mut samples = 20u32;
    let mut iters = 10usize;
    let mut patches = 50usize;
    let mut args = std::env::args().skip(1);
    let cfg = r#"{"channels":[16,32,64,128,256]}"#;
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("missing value");
        match a.as_str() {
            "--samples" => samples = val().parse().expect("--samples N"),
            "--iters" => iters = val().parse().expect("--iters K"),
            "--patches" => patches = val().parse().expect("--patches P"),
            "--write-model" => {
                let p = val();
                std::fs::write(&p, common::synth_model_bytes(cfg)).expect("write model");
                println!("wrote {p}");
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let model = lungseg::model::Model::from_bytes(&common::synth_model_bytes(cfg)).unwrap();
    let n = model.config().patch_voxels();
    let patch: Vec<f32> = (0..n)
        .map(|i| -900.0 + 1200.0 * (((i * 2_654_435_761) % 1000) as f32 / 1000.0))
        .collect();
    // The primary context, shared with the engine, so that free memory can be read around it.
    let ctx = cudarc::driver::CudaContext::new(0).ok();
    let free = || {
        ctx.as_ref()
            .and_then(|c| c.mem_get_info().ok())
            .map(|m| m.0)
    };
    let t = Instant::now();
    let free0 = free();
    let eng = match CudaEngine::new(&model, 0) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cuda_bench: {e}");
            std::process::exit(1);
        }
    };
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let free1 = free();
    // Warm-up (also fills caches), then the medians.
    eng.run(&patch, 1, samples, true).unwrap();
    let time = |f: &dyn Fn()| {
        let mut v: Vec<f64> = (0..iters)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let det = time(&|| {
        eng.run(&patch, 0, 1, false).unwrap();
    });
    let mc = time(&|| {
        eng.run(&patch, 7, samples, true).unwrap();
    });
    let t = Instant::now();
    for p in 0..patches {
        eng.run(&patch, p as u64, samples, true).unwrap();
    }
    let thr = patches as f64 / t.elapsed().as_secs_f64();
    let mem = match (free0, free1) {
        (Some(a), Some(b)) => format!("{:.0} MiB", (a.saturating_sub(b)) as f64 / 1048576.0),
        _ => "n/a".into(),
    };
    let gflop = 29.8 * f64::from(samples);
    println!(
        "| lungseg CUDA | {} | open (NVRTC/cache + upload) | {open_ms:.1} ms |",
        eng.device_name
    );
    println!(
        "| lungseg CUDA | {} | deterministic pass | {det:.2} ms |",
        eng.device_name
    );
    println!(
        "| lungseg CUDA | {} | MC-{samples} (chunk {}) | {mc:.2} ms ({:.1} TFLOP/s) |",
        eng.device_name,
        eng.chunk(),
        gflop / mc
    );
    println!(
        "| lungseg CUDA | {} | MC-{samples} throughput, {patches} patches | {thr:.2} patches/s |",
        eng.device_name
    );
    println!(
        "| lungseg CUDA | {} | model + workspace GPU memory | {mem} |",
        eng.device_name
    );
}
