//! Training throughput of the Burn U-Net: patches/s for forward + backward + Adam step on
//! random data, after one warm-up step.
//!
//! `cargo run --release -p lungseg-train --example train_throughput -- [size] [batch] [steps] [channels]`
//! e.g. `-- 64 2 5 16,32,64,128,256` (the defaults).

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use lungseg_train::model::UNetConfig;
use lungseg_train::train::loss::dice_bce;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: usize = args.first().map_or(64, |s| s.parse().expect("size"));
    let batch: usize = args.get(1).map_or(2, |s| s.parse().expect("batch"));
    let steps: usize = args.get(2).map_or(5, |s| s.parse().expect("steps"));
    let channels: Vec<usize> = args.get(3).map_or(vec![16, 32, 64, 128, 256], |s| {
        s.split(',').map(|c| c.parse().expect("channels")).collect()
    });
    let device = Device::flex().autodiff();
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
    let mut times = Vec::new();
    for step in 0..=steps {
        let t = Instant::now();
        let loss = dice_bce(model.forward(x.clone()), y.clone()).total;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let l = loss.into_scalar::<f32>();
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "step {step}: {s:.3}s loss {l:.4}{}",
            if step == 0 { " (warm-up)" } else { "" }
        );
        if step > 0 {
            times.push(s);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "burn flex: channels {channels:?}, {size}^3, batch {batch}: median {median:.3} s/step = {:.3} patches/s (threads: {})",
        batch as f64 / median,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
