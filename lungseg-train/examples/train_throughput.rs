//! Training throughput of the Burn U-Net: patches/s for forward + backward + Adam step on
//! random data (the loss of `train`, channel dropout, BatchNorm in training mode), after one
//! warm-up step. Also prints the process CPU time per step, so a loaded machine shows itself
//! (CPU/wall well below the thread count).
//!
//! `cargo run --release -p lungseg-train [--features tch] --example train_throughput --
//! [size] [batch] [steps] [channels] [backend] [device]`, e.g. `-- 64 2 5 16,32,64,128,256 flex`
//! (the defaults); backend `flex`, `tch` or `wgpu`, device `cpu` or `cuda:N`.

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Distribution, Tensor};
use lungseg_train::model::UNetConfig;
use lungseg_train::train::loss::dice_bce;
use lungseg_train::train::{Backend, DeviceSpec};

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Linux reports these in USER_HZ, 100 on every mainstream configuration.
    f.iter().sum::<f64>() / 100.0
}

fn parse_backend(s: &str) -> Backend {
    match s {
        "flex" => Backend::Flex,
        "tch" => Backend::Tch,
        "wgpu" => Backend::Wgpu,
        other => panic!("unknown backend {other}: flex, tch or wgpu"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = args.first().map_or(64, |s| s.parse().expect("size"));
    let batch: usize = args.get(1).map_or(2, |s| s.parse().expect("batch"));
    let steps: usize = args.get(2).map_or(5, |s| s.parse().expect("steps"));
    let channels: Vec<usize> = args.get(3).map_or(vec![16, 32, 64, 128, 256], |s| {
        s.split(',').map(|c| c.parse().expect("channels")).collect()
    });
    let backend = args.get(4).map_or(Backend::Flex, |s| parse_backend(s));
    let spec: Option<DeviceSpec> = args.get(5).map(|s| s.parse().expect("device"));
    let device = backend
        .device(spec)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .autodiff();
    device.seed(0);
    let config = UNetConfig {
        channels: channels.clone(),
        patch_size: [size; 3],
        ..UNetConfig::default()
    };
    let mut model = config.init(&device);
    let mut optim = AdamConfig::new().init();
    let shape = [batch, 1, size, size, size];
    let x = Tensor::<5>::random(shape, Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<5>::random(shape, Distribution::Bernoulli(0.05), &device);
    let (mut times, mut cpu) = (Vec::new(), Vec::new());
    for step in 0..=steps {
        let (t, c) = (Instant::now(), cpu_seconds());
        let loss = dice_bce(model.forward(x.clone()), y.clone()).total;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let l = loss.into_scalar::<f32>();
        let (s, cs) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        eprintln!(
            "step {step}: {s:.3}s (cpu {cs:.2}s) loss {l:.4}{}",
            if step == 0 { " (warm-up)" } else { "" }
        );
        if step > 0 {
            times.push(s);
            cpu.push(cs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (wall, cpu) = (median(&mut times), median(&mut cpu));
    println!(
        "burn {backend:?} {}: channels {channels:?}, {size}^3, batch {batch}: median {wall:.3} s/step = {:.3} patches/s, cpu {cpu:.2} s/step ({:.2} cores busy; threads available: {})",
        spec.map_or("default".into(), |s| s.to_string()),
        batch as f64 / wall,
        cpu / wall,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
