//! Times the 3³ conv kernels alone on the U-Net's level shapes, direct and Winograd F(2,3)
//! (one thread unless `--threads`; the CPU kernel `LUNGSEG_CPU_KERNEL` names, else the
//! fastest). GFLOP/s count the direct convolution's multiply-adds for both: Winograd's is an
//! equivalent rate, not executed operations.
use std::time::Instant;

use lungseg::nn::conv3::{conv3, Conv3Args};
use lungseg::nn::cpu_kernel;
use lungseg::nn::winograd::{scratch_floats, weights, winograd, WinoArgs};
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
        (64usize, 8usize, 16usize),
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
        let flop = 2.0 * (g.voxels() * 27 * cin * cout) as f64;
        let direct = time(|| conv3(&a, &mut out, cout, 0, threads));
        let mut u = vec![0.0; 64 * cin * cp];
        assert!(weights(&w, cin, cp, &mut u));
        let mut scratch = vec![0.0; threads * scratch_floats(cin, cout)];
        let wa = WinoArgs {
            input: &input,
            grid: g,
            in_stride: cin,
            c0: 0,
            keep: &ci,
            scale: None,
            u: &u,
            bias: &bias,
            cout,
            relu: true,
            kernel,
        };
        let wino = time(|| winograd(&wa, &mut out, cout, 0, threads, &mut scratch));
        let rate = |t: (f64, f64)| (flop / t.0 / 1e9, flop / t.1 / 1e9);
        let (dr, wr) = (rate(direct), rate(wino));
        println!(
            "{s}^3 {cin}->{cout}: direct {:.2} ms {:.1} GFLOP/s wall {:.1} per CPU-s; \
             winograd {:.2} ms {:.1} wall {:.1} per CPU-s (equivalent); CPU ratio {:.2}",
            direct.0 * 1e3,
            dr.0,
            dr.1,
            wino.0 * 1e3,
            wr.0,
            wr.1,
            wino.1 / direct.1
        );
    }
}

/// Median of 5 timed calls after one warm-up: (wall s, calling thread's CPU s).
fn time(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut runs: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let (t, c0) = (Instant::now(), cpu_s());
            f();
            (t.elapsed().as_secs_f64(), cpu_s() - c0)
        })
        .collect();
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    runs[2]
}
