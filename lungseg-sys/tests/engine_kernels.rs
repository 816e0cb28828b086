//! Fast kernels against their plain reference implementations, on odd shapes, on every CPU
//! kernel this machine runs.

mod common;

use common::Rng;

use lungseg::nn::conv3::{conv3, reference as conv_ref, Conv3Args};
use lungseg::nn::cpu_kernel::CpuKernel;
use lungseg::nn::pool::{maxpool2, reference as pool_ref};
use lungseg::nn::upconv::{reference as up_ref, upconv, UpArgs};
use lungseg::nn::{pad, unpad, Grid};

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

/// Kernel-layout weights `[27][nk][cp]` from PyTorch `[cout][nk][27]`.
fn kernel_w(w: &[f32], nk: usize, cout: usize) -> Vec<f32> {
    let cp = cout.div_ceil(16) * 16;
    let mut k = vec![0.0; 27 * nk * cp];
    for co in 0..cout {
        for j in 0..nk {
            for t in 0..27 {
                k[(t * nk + j) * cp + co] = w[(co * nk + j) * 27 + t];
            }
        }
    }
    k
}

#[test]
fn conv3_matches_reference_on_odd_shapes() {
    let mut r = Rng(0x1234_5678);
    // (d, h, w, stride, channels read, cout, out stride, out offset)
    for &(d, h, w, stride, ci, cout, os, oo) in &[
        (3, 4, 5, 1, &[0u32][..], 16, 16, 0),
        (5, 7, 19, 6, &[4, 0, 2][..], 21, 24, 3),
        (4, 3, 33, 16, &[0, 1, 2, 3, 5, 8, 9, 15][..], 40, 40, 0),
        (2, 2, 9, 32, &[1, 31][..], 70, 80, 10),
        (6, 5, 4, 8, &[0, 1, 2, 3, 4, 5, 6, 7][..], 5, 5, 0),
        // 8 channels into a concat-like buffer: the half-block path's 12-wide tiles and tails.
        (3, 4, 29, 8, &[0, 2, 3, 4, 5, 7][..], 8, 16, 8),
    ] {
        let g = Grid::new(d, h, w);
        let nk = ci.len();
        let dense_all = r.vec(g.voxels() * stride);
        let dense: Vec<f32> = dense_all
            .chunks(stride)
            .flat_map(|v| ci.iter().map(|&c| v[c as usize]).collect::<Vec<_>>())
            .collect();
        let wt = r.vec(cout * nk * 27);
        let bias = r.vec(cout);
        let want = conv_ref(&dense, g, nk, &wt, &bias, cout, true);
        let input = pad(&dense_all, g, stride);
        let kw = kernel_w(&wt, nk, cout);
        let mut kb = bias.clone();
        kb.resize(cout.div_ceil(16) * 16, 0.0);
        // The FMA kernels round the same way: one result for all of them.
        let mut fma_result: Option<Vec<f32>> = None;
        for kernel in CpuKernel::available() {
            let a = Conv3Args {
                input: &input,
                grid: g,
                in_stride: stride,
                ci,
                w: &kw,
                bias: &kb,
                cout,
                relu: true,
                kernel,
            };
            let mut first: Option<Vec<f32>> = None;
            for threads in [1, 2, 3] {
                let mut out = vec![0.0; g.padded_voxels() * os];
                conv3(&a, &mut out, os, oo, threads);
                let what = format!("conv {d}x{h}x{w} {kernel:?} t={threads}");
                close(&unpad(&out, g, os, oo, cout), &want, 1e-5, &what);
                // the halo and the other channels stay untouched (zero)
                let touched: f32 = unpad(&out, g, os, 0, os)
                    .iter()
                    .map(|v| v.abs())
                    .sum::<f32>();
                let total: f32 = out.iter().map(|v| v.abs()).sum();
                assert_eq!(touched, total, "{what}: writes outside the interior");
                match &first {
                    None => first = Some(out),
                    Some(f) => assert_eq!(f, &out, "{what}: thread count changed the result"),
                }
            }
            if kernel != CpuKernel::Portable {
                let out = first.unwrap();
                match &fma_result {
                    None => fma_result = Some(out),
                    Some(f) => assert_eq!(f, &out, "{kernel:?} differs from another FMA kernel"),
                }
            }
        }
    }
}

/// The fused ReLU lets NaN through on every kernel (a non-finite activation must reach the
/// output check) and clamps negatives, also in a partial vector (2 of 16 channels).
#[test]
fn conv3_relu_keeps_nan() {
    let g = Grid::new(1, 1, 1);
    // Centre tap: channel 0 = x, channel 1 = -x.
    let mut w = vec![0.0; 27 * 16];
    w[13 * 16] = 1.0;
    w[13 * 16 + 1] = -1.0;
    let bias = vec![0.0; 16];
    for kernel in CpuKernel::available() {
        for (x, want) in [
            (f32::NAN, [f32::NAN; 2]),
            (-2.0, [0.0, 2.0]),
            (3.0, [3.0, 0.0]),
        ] {
            let input = pad(&[x], g, 1);
            let a = Conv3Args {
                input: &input,
                grid: g,
                in_stride: 1,
                ci: &[0],
                w: &w,
                bias: &bias,
                cout: 2,
                relu: true,
                kernel,
            };
            let mut out = vec![0.0; g.padded_voxels() * 2];
            conv3(&a, &mut out, 2, 0, 1);
            let got = unpad(&out, g, 2, 0, 2);
            for (o, e) in got.iter().zip(want) {
                assert!(
                    o == &e || (o.is_nan() && e.is_nan()),
                    "{kernel:?} {x}: {got:?}"
                );
            }
        }
    }
}

#[test]
fn maxpool_matches_reference() {
    let mut r = Rng(99);
    let (g, c, stride, off) = (Grid::new(4, 6, 10), 5, 12, 7);
    let all = r.vec(g.voxels() * stride);
    let dense: Vec<f32> = all
        .chunks(stride)
        .flat_map(|v| v[off..off + c].to_vec())
        .collect();
    let want = pool_ref(&dense, g, c);
    let input = pad(&all, g, stride);
    for threads in [1, 2] {
        let mut out = vec![0.0; g.half().padded_voxels() * c];
        maxpool2(&input, g, stride, off, c, &mut out, threads);
        assert_eq!(unpad(&out, g.half(), c, 0, c), want);
    }
}

#[test]
fn upconv_matches_reference() {
    let mut r = Rng(7);
    for &(d, h, w, cin, cout) in &[
        (2usize, 3usize, 5usize, 3usize, 4usize),
        (1, 1, 2, 20, 17),
        (3, 2, 2, 16, 32),
    ] {
        let g = Grid::new(d, h, w);
        let dense = r.vec(g.voxels() * cin);
        let wt = r.vec(cin * cout * 8);
        let bias = r.vec(cout);
        let want = up_ref(&dense, g, cin, &wt, &bias, cout);
        let cp = cout.div_ceil(16) * 16;
        let mut kw = vec![0.0; cin * 8 * cp];
        for ci in 0..cin {
            for co in 0..cout {
                for o in 0..8 {
                    kw[(ci * 8 + o) * cp + co] = wt[(ci * cout + co) * 8 + o];
                }
            }
        }
        let mut kb = bias.clone();
        kb.resize(cp, 0.0);
        let ci: Vec<u32> = (0..cin as u32).collect();
        let input = pad(&dense, g, cin);
        let og = g.double();
        let (os, oo) = (cout + 3, 2);
        // No kernel fuses the multiply-add here: all give the same bits.
        let mut first: Option<Vec<f32>> = None;
        for kernel in CpuKernel::available() {
            let a = UpArgs {
                input: &input,
                grid: g,
                in_stride: cin,
                ci: &ci,
                w: &kw,
                bias: &kb,
                cout,
                kernel,
            };
            for threads in [1, 2] {
                let mut out = vec![0.0; og.padded_voxels() * os];
                upconv(&a, &mut out, os, oo, threads);
                let what = format!("upconv {kernel:?} t={threads}");
                close(&unpad(&out, og, os, oo, cout), &want, 1e-5, &what);
                match &first {
                    None => first = Some(out),
                    Some(f) => assert_eq!(f, &out, "{what} differs"),
                }
            }
        }
    }
}
