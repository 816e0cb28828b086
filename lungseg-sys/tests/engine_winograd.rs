//! Winograd F(2,3) convolution against the direct convolution and the f64 reference, on every
//! CPU kernel this machine runs: odd channel counts, channels at an offset of a wider voxel,
//! kept-channel lists that skip channels with dropout scales, outputs into a wider buffer,
//! ReLU on and off, several blocks per unit.

mod common;

use common::Rng;

use lungseg::nn::conv3::{conv3, reference as conv_ref, Conv3Args};
use lungseg::nn::cpu_kernel::CpuKernel;
use lungseg::nn::winograd::{scratch_floats, weights, winograd, WinoArgs};
use lungseg::nn::{pad, unpad, Grid};

/// Kernel-layout weights `[27][rows][cp]` from PyTorch `[cout][rows][27]`.
fn kernel_w(w: &[f32], rows: usize, cout: usize) -> Vec<f32> {
    let cp = cout.div_ceil(16) * 16;
    let mut k = vec![0.0; 27 * rows * cp];
    for co in 0..cout {
        for j in 0..rows {
            for t in 0..27 {
                k[(t * rows + j) * cp + co] = w[(co * rows + j) * 27 + t];
            }
        }
    }
    k
}

/// One case: grid, input stride, the layer's first input channel and channel count, the
/// channels the sums keep (dropout skips the others), whether a dropout-like scale applies,
/// cout, output stride and offset, ReLU.
struct Case {
    g: Grid,
    stride: usize,
    c0: usize,
    rows: usize,
    keep: Vec<u32>,
    scaled: bool,
    cout: usize,
    os: usize,
    oo: usize,
    relu: bool,
}

fn cases() -> Vec<Case> {
    let c = |g: (usize, usize, usize), stride, c0, rows: usize, cout, os, oo, relu| Case {
        g: Grid::new(g.0, g.1, g.2),
        stride,
        c0,
        rows,
        keep: (0..rows as u32).collect(),
        scaled: false,
        cout,
        os,
        oo,
        relu,
    };
    // Dropout's shape: some channels of a 64-channel input are kept, each with a scale.
    let kept: Vec<u32> = (0..64).filter(|c| c % 2 == 0 || c % 7 == 0).collect();
    vec![
        c((2, 2, 2), 16, 0, 16, 16, 16, 0, true),
        c((4, 6, 10), 21, 5, 13, 21, 24, 3, false),
        c((2, 4, 34), 40, 3, 37, 33, 48, 10, true),
        Case {
            keep: (0..40).filter(|c| c % 3 != 1).collect(),
            ..c((2, 8, 6), 40, 0, 40, 50, 64, 7, true)
        },
        // Several blocks per unit (72 tiles), tails of every register tile.
        c((4, 16, 18), 32, 0, 32, 48, 48, 0, true),
        c((2, 2, 4), 8, 5, 1, 16, 16, 0, false),
        Case {
            keep: vec![],
            ..c((2, 2, 2), 8, 0, 8, 17, 17, 0, false)
        },
        Case {
            keep: kept,
            scaled: true,
            ..c((4, 4, 4), 64, 0, 64, 64, 128, 64, true)
        },
    ]
}

/// `|wino − ref| ≤ tol · (Σ|w·x| + |b|)` per output: rounding errors of a sum are bounded by
/// its magnitude sum times a multiple of the unit roundoff (2⁻²⁴ ≈ 6e-8), which the
/// transforms grow by the absolute row sums of Bᵀ, G and Aᵀ (at most 2, 3/2, 3 per axis).
/// 2e-6 is about 34 units of roundoff; the largest seen in these cases is 1.8e-7 (and 4e-7 of
/// the largest output's magnitude).
const TOL: f64 = 2e-6;

#[test]
fn winograd_matches_direct_conv_and_reference() {
    let mut r = Rng(0x5eed_1234);
    for case in cases() {
        check_case(&case, &mut r);
    }
}

fn check_case(k: &Case, r: &mut Rng) {
    let (g, nk, cout) = (k.g, k.keep.len(), k.cout);
    let cp = cout.div_ceil(16) * 16;
    let dense_all = r.vec(g.voxels() * k.stride);
    let wt = r.vec(cout * k.rows * 27);
    let bias = r.vec(cout);
    let scale: Vec<f32> = (0..k.rows)
        .map(|j| 1.0 + f32::from(u8::from(k.scaled)) * (0.25 + j as f32 / 64.0))
        .collect();
    // The kept channels' offsets, the dense gathered input and the PyTorch weights of the
    // kept channels (scale folded in).
    let ci: Vec<u32> = k.keep.iter().map(|&j| (k.c0 + j as usize) as u32).collect();
    let dense: Vec<f32> = dense_all
        .chunks(k.stride)
        .flat_map(|v| ci.iter().map(|&c| v[c as usize]).collect::<Vec<_>>())
        .collect();
    let mut wj = vec![0.0f32; cout * nk * 27];
    for co in 0..cout {
        for (j, &row) in k.keep.iter().enumerate() {
            let row = row as usize;
            for t in 0..27 {
                wj[(co * nk + j) * 27 + t] = wt[(co * k.rows + row) * 27 + t] * scale[row];
            }
        }
    }
    let want = conv_ref(&dense, g, nk, &wj, &bias, cout, k.relu);
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let mag = conv_ref(&abs(&dense), g, nk, &abs(&wj), &abs(&bias), cout, false);
    let input = pad(&dense_all, g, k.stride);
    let mut kb = bias.clone();
    kb.resize(cp, 0.0);
    let mut u = vec![0.0; 64 * k.rows * cp];
    assert!(weights(&kernel_w(&wt, k.rows, cout), k.rows, cp, &mut u));
    let direct_w = kernel_w(&wj, nk, cout);
    // Blocks for 2 threads: the 3-thread runs must fall back to 2 (same values).
    let mut scratch = vec![0.0; 2 * scratch_floats(k.rows, cout)];
    let mut fma_result: Option<Vec<f32>> = None;
    for kernel in CpuKernel::available() {
        let a = WinoArgs {
            input: &input,
            grid: g,
            in_stride: k.stride,
            c0: k.c0,
            keep: &k.keep,
            scale: k.scaled.then_some(&scale[..]),
            u: &u,
            bias: &kb,
            cout,
            relu: k.relu,
            kernel,
        };
        let what = format!("{:?} nk={nk} cout={cout} {kernel:?}", g);
        let mut first: Option<Vec<f32>> = None;
        for threads in [1, 2, 3] {
            let mut out = vec![0.0; g.padded_voxels() * k.os];
            winograd(&a, &mut out, k.os, k.oo, threads, &mut scratch);
            let got = unpad(&out, g, k.os, k.oo, cout);
            for (i, ((x, y), m)) in got.iter().zip(&want).zip(&mag).enumerate() {
                let err = f64::from(x - y).abs();
                assert!(
                    err <= TOL * f64::from(*m),
                    "{what} t={threads}: output {i}: {x} vs {y} (magnitude {m})"
                );
            }
            let touched: f32 = unpad(&out, g, k.os, 0, k.os).iter().map(|v| v.abs()).sum();
            let outside: f32 = out.iter().map(|v| v.abs()).sum::<f32>() - touched;
            let other: f32 = touched - got.iter().map(|v| v.abs()).sum::<f32>();
            assert!(
                outside == 0.0 && other == 0.0,
                "{what}: writes outside its channels"
            );
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(f, &out, "{what}: thread count changed the result"),
            }
        }
        // The direct convolution on the same kernel, as a second opinion on the scale.
        let d = Conv3Args {
            input: &input,
            grid: g,
            in_stride: k.stride,
            ci: &ci,
            w: &direct_w,
            bias: &kb,
            cout,
            relu: k.relu,
            kernel,
        };
        let mut direct = vec![0.0; g.padded_voxels() * k.os];
        conv3(&d, &mut direct, k.os, k.oo, 1);
        let direct = unpad(&direct, g, k.os, k.oo, cout);
        let got = unpad(first.as_ref().unwrap(), g, k.os, k.oo, cout);
        for (i, ((x, y), m)) in got.iter().zip(&direct).zip(&mag).enumerate() {
            let err = f64::from(x - y).abs();
            assert!(
                err <= 2.0 * TOL * f64::from(*m),
                "{what}: vs direct {i}: {x} vs {y}"
            );
        }
        if kernel != CpuKernel::Portable {
            let out = first.unwrap();
            match &fma_result {
                None => fma_result = Some(out),
                Some(f) => assert_eq!(f, &out, "{what}: differs from another FMA kernel"),
            }
        }
    }
}
