//! The arithmetic ceiling of each CPU kernel path on this machine, measured: what the vector
//! units deliver when nothing but independent multiply-adds run (no loads, no stores, no
//! dependencies between chains), on 1 and more threads at once.
//!
//! `cargo run --release --example fma_peak -- [--threads 1,2] [--ms 300] [--json]`
//!
//! Per path, the instructions its conv kernel computes with (`lungseg::nn::cpu_kernel`):
//! - `avx512`: `vfmadd` on zmm, 16 f32 lanes, 16 independent accumulator chains;
//! - `avx2`: `vfmadd` on ymm, 8 lanes, 12 chains (the 16 ymm registers hold 12 accumulators
//!   and the two operands);
//! - `neon`: `fmla` on q, 4 lanes, 16 chains;
//! - `portable`: a multiply then an add (the portable kernel has no FMA) on the build
//!   target's baseline vectors: SSE2 `mulps` + `addps` on xmm (x86-64) or NEON `fmul` +
//!   `fadd` (aarch64), 4 lanes, 14 chains (a chain's latency is a multiply's plus an add's);
//!   scalar f32 elsewhere.
//!
//! Chain counts cover latency × issue width of current cores (e.g. 4-cycle FMA on 2 pipes
//! needs 8 in flight). Each lane's multiply-add counts 2 FLOPs. Every thread runs the same
//! number of iterations after a common start; GFLOP/s = all threads' FLOPs / wall time of
//! the slowest, best of 3 repetitions (a ceiling: the best the machine gave). The
//! iteration count is calibrated once per path so that one thread takes about `--ms`.

use std::sync::Barrier;
use std::time::Instant;

use lungseg::nn::cpu_kernel::CpuKernel;

/// One path's loop: `iters` rounds over all chains; returns a value the optimiser must keep.
type Loop = fn(u64) -> f32;

/// A path's loop and what one iteration computes.
struct Peak {
    kernel: CpuKernel,
    what: &'static str,
    flops_per_iter: u64,
    run: Loop,
}

fn peaks() -> Vec<Peak> {
    CpuKernel::available().filter_map(peak).collect()
}

fn peak(kernel: CpuKernel) -> Option<Peak> {
    let (what, lanes, chains, run): (&str, u64, usize, Loop) = match kernel {
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx512 => ("vfmadd zmm", 16, x86::AVX512_CHAINS, x86::avx512),
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx2 => ("vfmadd ymm", 8, x86::AVX2_CHAINS, x86::avx2),
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Portable => ("mulps+addps xmm (SSE2)", 4, x86::SSE2_CHAINS, x86::sse2),
        #[cfg(target_arch = "aarch64")]
        CpuKernel::Neon => ("fmla q", 4, arm::FMA_CHAINS, arm::neon_fma),
        #[cfg(target_arch = "aarch64")]
        CpuKernel::Portable => (
            "fmul+fadd q (NEON)",
            4,
            arm::MUL_ADD_CHAINS,
            arm::neon_mul_add,
        ),
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        CpuKernel::Portable => ("scalar f32 mul+add", 1, SCALAR_CHAINS, scalar),
        _ => return None,
    };
    Some(Peak {
        kernel,
        what,
        flops_per_iter: 2 * lanes * chains as u64,
        run,
    })
}

/// Start value, multiplier and addend: the chains converge to `c / (1 − m)` (no overflow,
/// no subnormals).
const X0: f32 = 1.0;
const M: f32 = 0.999_9;
const C: f32 = 1e-4;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{C, M, X0};
    use std::arch::x86_64::*;
    use std::hint::black_box;

    pub const AVX512_CHAINS: usize = 16;
    pub const AVX2_CHAINS: usize = 12;
    pub const SSE2_CHAINS: usize = 14;

    pub fn avx512(iters: u64) -> f32 {
        assert!(is_x86_feature_detected!("avx512f"));
        // SAFETY: AVX512F checked above.
        unsafe { avx512_chains(iters) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_chains(iters: u64) -> f32 {
        let (m, c) = (_mm512_set1_ps(black_box(M)), _mm512_set1_ps(black_box(C)));
        let mut acc = [_mm512_set1_ps(black_box(X0)); AVX512_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
        _mm512_reduce_add_ps(s)
    }

    pub fn avx2(iters: u64) -> f32 {
        assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
        // SAFETY: AVX2 and FMA checked above.
        unsafe { avx2_chains(iters) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_chains(iters: u64) -> f32 {
        let (m, c) = (_mm256_set1_ps(black_box(M)), _mm256_set1_ps(black_box(C)));
        let mut acc = [_mm256_set1_ps(black_box(X0)); AVX2_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    pub fn sse2(iters: u64) -> f32 {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { sse2_chains(iters) }
    }

    #[target_feature(enable = "sse2")]
    unsafe fn sse2_chains(iters: u64) -> f32 {
        let (m, c) = (_mm_set1_ps(black_box(M)), _mm_set1_ps(black_box(C)));
        let mut acc = [_mm_set1_ps(black_box(X0)); SSE2_CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm_add_ps(_mm_mul_ps(*a, m), c);
            }
        }
        let s = acc.iter().fold(_mm_setzero_ps(), |s, &a| _mm_add_ps(s, a));
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{C, M, X0};
    use std::arch::aarch64::*;
    use std::hint::black_box;

    pub const FMA_CHAINS: usize = 16;
    pub const MUL_ADD_CHAINS: usize = 14;

    pub fn neon_fma(iters: u64) -> f32 {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe {
            let (m, c) = (vdupq_n_f32(black_box(M)), vdupq_n_f32(black_box(C)));
            let mut acc = [vdupq_n_f32(black_box(X0)); FMA_CHAINS];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = vfmaq_f32(c, *a, m);
                }
            }
            vaddvq_f32(acc.iter().fold(vdupq_n_f32(0.0), |s, &a| vaddq_f32(s, a)))
        }
    }

    pub fn neon_mul_add(iters: u64) -> f32 {
        // SAFETY: NEON is part of the aarch64 baseline.
        unsafe {
            let (m, c) = (vdupq_n_f32(black_box(M)), vdupq_n_f32(black_box(C)));
            let mut acc = [vdupq_n_f32(black_box(X0)); MUL_ADD_CHAINS];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = vaddq_f32(vmulq_f32(*a, m), c);
                }
            }
            vaddvq_f32(acc.iter().fold(vdupq_n_f32(0.0), |s, &a| vaddq_f32(s, a)))
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SCALAR_CHAINS: usize = 14;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn scalar(iters: u64) -> f32 {
    let (m, c) = (std::hint::black_box(M), std::hint::black_box(C));
    let mut acc = [std::hint::black_box(X0); SCALAR_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * m + c;
        }
    }
    acc.iter().sum()
}

/// Wall seconds for `threads` threads each running `iters` iterations from a common start.
fn timed(run: Loop, iters: u64, threads: usize) -> f64 {
    let start = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                std::hint::black_box(run(std::hint::black_box(iters)));
                done.wait();
            });
        }
        start.wait();
        let t = Instant::now();
        done.wait();
        t.elapsed().as_secs_f64()
    })
}

/// Iterations that take one thread about `ms` milliseconds.
fn calibrate(run: Loop, ms: f64) -> u64 {
    let mut iters = 1u64 << 16;
    loop {
        let s = timed(run, iters, 1);
        if s > 0.02 || iters > 1 << 40 {
            return ((iters as f64 * ms * 1e-3 / s) as u64).max(1);
        }
        iters *= 4;
    }
}

struct Args {
    threads: Vec<usize>,
    ms: f64,
    json: bool,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| a.iter().position(|x| x == name).and_then(|i| a.get(i + 1));
    let threads = value("--threads").map_or(vec![1, 2], |v| {
        v.split(',')
            .map(|t| {
                t.parse()
                    .expect("--threads: a comma-separated list of counts")
            })
            .collect()
    });
    assert!(threads.iter().all(|&t| t > 0), "--threads: counts ≥ 1");
    Args {
        threads,
        ms: value("--ms").map_or(300.0, |v| v.parse().expect("--ms: a number")),
        json: a.iter().any(|x| x == "--json"),
    }
}

fn main() {
    let a = args();
    let mut rows = Vec::new();
    for p in peaks() {
        let iters = calibrate(p.run, a.ms);
        for &t in &a.threads {
            let best = (0..3)
                .map(|_| timed(p.run, iters, t))
                .fold(f64::INFINITY, f64::min);
            let gflops = (p.flops_per_iter * iters * t as u64) as f64 * 1e-9 / best;
            rows.push(format!(
                "{{\"kernel\":\"{}\",\"what\":\"{}\",\"threads\":{t},\"gflops\":{gflops:.1}}}",
                p.kernel.name(),
                p.what
            ));
            if !a.json {
                println!(
                    "{:<9} {:<24} {t:>3} threads: {gflops:8.1} GFLOP/s",
                    p.kernel.name(),
                    p.what
                );
            }
        }
    }
    if a.json {
        println!("{{\"peaks\":[{}]}}", rows.join(","));
    }
}
