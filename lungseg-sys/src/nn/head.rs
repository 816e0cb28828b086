//! 1×1×1 convolution to one logit, then sigmoid, written to a dense z-major probability map.

use super::Grid;

/// `prob[(z·h + y)·w + x] = σ(bias + Σ_j w[j] · in[voxel][ci[j]])`. Returns whether every
/// logit was finite: σ maps ±∞ to a confident 0 or 1, so overflow must be caught here.
pub fn head(
    input: &[f32],
    g: Grid,
    in_stride: usize,
    ci: &[u32],
    w: &[f32],
    bias: f32,
    prob: &mut [f32],
) -> bool {
    assert!(input.len() >= g.padded_voxels() * in_stride && ci.len() == w.len());
    assert!(ci.iter().all(|&c| (c as usize) < in_stride) && prob.len() == g.voxels());
    let mut k = 0;
    let mut finite = true;
    for z in 0..g.d {
        for y in 0..g.h {
            for x in 0..g.w {
                let src = &input[g.index(z, y, x) * in_stride..][..in_stride];
                let mut s = bias;
                for (&c, &wv) in ci.iter().zip(w) {
                    s += src[c as usize] * wv;
                }
                finite &= s.is_finite();
                prob[k] = sigmoid(s);
                k += 1;
            }
        }
    }
    finite
}

/// Logistic function, saturating cleanly for large |x|.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
