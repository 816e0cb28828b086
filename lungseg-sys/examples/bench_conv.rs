//! Times the 3³ conv kernel alone on the U-Net's level shapes (one thread unless `--threads`;
//! the CPU kernel `LUNGSEG_CPU_KERNEL` names, else the fastest).
use std::time::Instant;

use lungseg::nn::conv3::{conv3, Conv3Args};
use lungseg::nn::cpu_kernel;
use lungseg::nn::Grid;

/// CPU seconds of the calling thread: robust to other load on the machine.
fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .map_or(1, |i| args[i + 1].parse().unwrap());
    let kernel = cpu_kernel::select(None).unwrap();
    println!("kernel: {}", kernel.name());
    for (s, cin, cout) in [
        (16usize, 16usize, 16usize),
        (64usize, 16usize, 16usize),
        (64, 32, 16),
        (32, 32, 32),
        (32, 64, 32),
        (16, 64, 64),
        (8, 128, 128),
        (4, 256, 256),
    ] {
        let g = Grid::new(s, s, s);
        let input: Vec<f32> = (0..g.padded_voxels() * cin)
            .map(|i| (i % 7) as f32 * 0.1)
            .collect();
        let cp = cout.div_ceil(16) * 16;
        let w: Vec<f32> = (0..27 * cin * cp).map(|i| (i % 5) as f32 * 0.01).collect();
        let bias = vec![0.0; cp];
        let ci: Vec<u32> = (0..cin as u32).collect();
        let mut out = vec![0.0; g.padded_voxels() * cout];
        let a = Conv3Args {
            input: &input,
            grid: g,
            in_stride: cin,
            ci: &ci,
            w: &w,
            bias: &bias,
            cout,
            relu: true,
            kernel,
        };
        conv3(&a, &mut out, cout, 0, threads);
        let reps = 5;
        let t = Instant::now();
        let c0 = cpu_s();
        for _ in 0..reps {
            conv3(&a, &mut out, cout, 0, threads);
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        let dc = (cpu_s() - c0) / reps as f64;
        let flop = 2.0 * (g.voxels() * 27 * cin * cout) as f64;
        println!(
            "{s}^3 {cin}->{cout}: {:.2} ms  {:.1} GFLOP/s wall, {:.1} GFLOP/s per CPU-second (1 thread)",
            dt * 1e3,
            flop / dt / 1e9,
            flop / dc / 1e9
        );
    }
}
