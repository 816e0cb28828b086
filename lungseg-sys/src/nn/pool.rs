//! MaxPool3d(2): reads channels `[off, off + c)` of a zero-halo grid, writes a half-size
//! zero-halo grid with `c` channels per voxel. Memory-bound and tiny next to the convs; the
//! inner loop over channels autovectorises.

use super::{par_units, Grid};

/// `g` is the input grid (even sizes); the output grid is `g.half()` with stride `c`.
pub fn maxpool2(
    input: &[f32],
    g: Grid,
    in_stride: usize,
    off: usize,
    c: usize,
    out: &mut [f32],
    threads: usize,
) {
    let og = g.half();
    assert!(off + c <= in_stride && input.len() >= g.padded_voxels() * in_stride);
    assert!(out.len() >= og.padded_voxels() * c);
    let plane = og.plane() * c;
    par_units(out, plane, plane, og.d, threads, |z, chunk| {
        for y in 0..og.h {
            for x in 0..og.w {
                let o = ((y + 1) * og.row() + x + 1) * c;
                let dst = &mut chunk[o..o + c];
                dst.fill(f32::NEG_INFINITY);
                for k in 0..8 {
                    let s =
                        g.index(2 * z + k / 4, 2 * y + k / 2 % 2, 2 * x + k % 2) * in_stride + off;
                    for (d, &v) in dst.iter_mut().zip(&input[s..s + c]) {
                        *d = super::max_keep_nan(*d, v);
                    }
                }
            }
        }
    });
}

/// Plain reference on dense NDHWC `[d][h][w][c]`.
pub fn reference(input: &[f32], g: Grid, c: usize) -> Vec<f32> {
    let og = g.half();
    let mut out = vec![f32::NEG_INFINITY; og.voxels() * c];
    for z in 0..og.d {
        for y in 0..og.h {
            for x in 0..og.w {
                for k in 0..8 {
                    let (zz, yy, xx) = (2 * z + k / 4, 2 * y + k / 2 % 2, 2 * x + k % 2);
                    for ch in 0..c {
                        let o = &mut out[((z * og.h + y) * og.w + x) * c + ch];
                        *o = super::max_keep_nan(*o, input[((zz * g.h + yy) * g.w + xx) * c + ch]);
                    }
                }
            }
        }
    }
    out
}
