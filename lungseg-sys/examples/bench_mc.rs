//! Times the CPU engine on one 64³ patch: deterministic pass and MC-20.
//!
//! `cargo run --release --example bench_mc -- [model.safetensors] [patch.f32] [--threads N]
//! [--runs N] [--samples N] [--warmup-samples N] [--json]`. Without a model it builds the
//! default architecture with pseudo-random weights; without a patch it uses a synthetic
//! nodule. Prints medians after one warm-up (the MC warm-up takes `--warmup-samples`, default
//! all), GFLOP/s against the model's nominal FLOPs (`common/flops.rs`; 29.842 GFLOP per
//! forward for the default net) and, for MC, against the FLOPs the engine executes, the CPU
//! kernel the model runs on (`LUNGSEG_CPU_KERNEL` picks it), and peak RSS.

use std::time::Instant;

#[path = "common/flops.rs"]
mod flops;

use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Flags followed by a value.
const VALUE_FLAGS: [&str; 4] = ["--threads", "--runs", "--samples", "--warmup-samples"];

fn synth_model() -> Vec<u8> {
    let ch = [16usize, 32, 64, 128, 256];
    let mut names: Vec<(String, Vec<usize>)> = Vec::new();
    let block = |p: String, cin: usize, c: usize, names: &mut Vec<(String, Vec<usize>)>| {
        for (i, ci) in [(1, cin), (2, c)] {
            names.push((format!("{p}.conv{i}.weight"), vec![c, ci, 3, 3, 3]));
            for k in ["weight", "bias", "running_mean", "running_var"] {
                names.push((format!("{p}.bn{i}.{k}"), vec![c]));
            }
        }
    };
    for (l, &c) in ch.iter().enumerate() {
        block(
            format!("enc.{l}"),
            if l == 0 { 1 } else { ch[l - 1] },
            c,
            &mut names,
        );
    }
    for l in 0..ch.len() - 1 {
        names.push((
            format!("dec.{l}.up.weight"),
            vec![ch[l + 1], ch[l], 2, 2, 2],
        ));
        names.push((format!("dec.{l}.up.bias"), vec![ch[l]]));
        block(format!("dec.{l}"), 2 * ch[l], ch[l], &mut names);
    }
    names.push(("head.weight".into(), vec![1, ch[0], 1, 1, 1]));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / 16_777_216.0
    };
    let data: Vec<Vec<u8>> = names
        .iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let fan = s.iter().skip(1).product::<usize>().max(1) as f32;
            (0..len)
                .map(|_| {
                    let u = rnd();
                    if n.ends_with("running_var") || (n.contains(".bn") && n.ends_with("weight")) {
                        0.5 + u
                    } else if n.contains(".bn") {
                        0.1 * (2.0 * u - 1.0)
                    } else {
                        (2.0 * u - 1.0) * (6.0 / fan).sqrt()
                    }
                })
                .flat_map(f32::to_le_bytes)
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView)> = names
        .iter()
        .zip(&data)
        .map(|((n, s), d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let meta = [("format", "lungseg-unet3d"), ("format_version", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds of the whole process (all threads): with wall time, shows other load.
fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("number"))
    };
    let threads = flag("--threads", 2);
    let runs = flag("--runs", 5);
    let samples = flag("--samples", 20) as u32;
    let warmup_samples = flag("--warmup-samples", samples as usize) as u32;
    let json = args.iter().any(|a| a == "--json");
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--") && (*i == 0 || !VALUE_FLAGS.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    let model = match positional.first() {
        Some(p) => Model::open(std::path::Path::new(p.as_str())).expect("model"),
        None => Model::from_bytes(&synth_model()).expect("synthetic model"),
    };
    let n = model.config().patch_voxels();
    let patch: Vec<f32> = match positional.get(1) {
        Some(p) => std::fs::read(p.as_str())
            .expect("patch")
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        None => (0..n)
            .map(|i| {
                let (z, y, x) = (
                    (i / 4096) as f32 - 32.0,
                    (i / 64 % 64) as f32 - 32.0,
                    (i % 64) as f32 - 32.0,
                );
                if z * z + y * y + x * x < 81.0 {
                    40.0
                } else {
                    -850.0
                }
            })
            .collect(),
    };
    let mut prob = vec![0.0; n];
    // (median wall seconds, median CPU seconds) of `runs` runs of `f(false)`, after the
    // warm-up `f(true)`.
    let time = |f: &mut dyn FnMut(bool)| {
        f(true);
        let (w, c): (Vec<f64>, Vec<f64>) = (0..runs)
            .map(|_| {
                let (t, c) = (Instant::now(), cpu_s());
                f(false);
                (t.elapsed().as_secs_f64(), cpu_s() - c)
            })
            .unzip();
        (median(w), median(c))
    };
    let (det, det_cpu) = time(&mut |_| predict(&model, &patch, &mut prob, threads).unwrap());
    let (mut mean, mut mi) = (vec![0.0; n], vec![0.0; n]);
    let opts = McOptions {
        n_samples: samples,
        seed: 1,
        threads,
        review_threshold: None,
        review_score: None,
    };
    let mut summary = None;
    let (mc, mc_cpu) = time(&mut |warm_up| {
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            mutual_info: Some(&mut mi),
            ..Default::default()
        };
        let n_samples = if warm_up { warmup_samples } else { samples };
        let o = McOptions { n_samples, ..opts };
        summary = Some(predict_uncertainty(&model, &patch, &o, maps).unwrap());
    });
    let rss = peak_rss_mib();
    let cfg = model.config();
    let gflop = flops::forward_gflop(cfg);
    let mc_executed = flops::mc_executed_gflop(cfg, opts.seed, samples);
    let gf_det = gflop / det;
    let gf_mc = gflop * f64::from(samples) / mc;
    let gf_mc_exec = mc_executed / mc;
    let kernel = model.kernel().name();
    if json {
        println!(
            "{{\"kernel\":\"{kernel}\",\"threads\":{threads},\"deterministic_s\":{det:.4},\"mc_s\":{mc:.4},\"samples\":{samples},\"deterministic_cpu_s\":{det_cpu:.4},\"mc_cpu_s\":{mc_cpu:.4},\"gflop_per_forward\":{gflop:.6},\"mc_gflop_executed\":{mc_executed:.6},\"gflops_det\":{gf_det:.1},\"gflops_mc_nominal\":{gf_mc:.1},\"gflops_mc_executed\":{gf_mc_exec:.1},\"peak_rss_mib\":{rss:.1}}}"
        );
    } else {
        println!("kernel {kernel}, threads {threads}, {runs} runs after warm-up, medians");
        println!("deterministic: {det:.4} s  ({gf_det:.1} GFLOP/s), CPU {det_cpu:.3} s");
        println!(
            "MC-{samples}:         {mc:.4} s  ({gf_mc:.1} GFLOP/s nominal, {gf_mc_exec:.1} executed), CPU {mc_cpu:.3} s"
        );
        println!("peak RSS: {rss:.1} MiB");
        println!("summary: {:?}", summary.unwrap());
    }
}
