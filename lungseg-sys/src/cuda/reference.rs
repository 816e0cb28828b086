//! CPU references of the CUDA kernels: same layouts, same arguments, f32 arithmetic with fp16
//! rounding exactly where a kernel rounds (every stored activation). The GPU tests compare
//! each kernel against these; CPU tests check these against the CPU engine's `nn` references
//! so that the references themselves are right, and run the whole [`super::engine::Plan`]
//! through them against the CPU engine.
//!
//! Activations are dense NDHWC `[S][D][H][W][C]` (no halo), as `f32` values that are exactly
//! representable in fp16.

use half::f16;

use super::launch::head_mask_words;
use crate::philox::philox4x32_10;

/// Rounds to the nearest fp16 (ties to even), as `cvt.rn.f16.f32`.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    // Saturating, as the kernels' ls_f2h (common.cuh): beyond ±65504 (inf included) is ±65504.
    f16::from_f32(x.clamp(-65504.0, 65504.0)).to_f32()
}

/// The kernels' `LsDrop` (`kernels/common.cuh`), passed by value. `kind` 0 = none,
/// 1 = channel, 2 = element.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LsDrop {
    pub seed: u64,
    pub threshold: u64,
    pub scale: f32,
    pub layer: u32,
    pub kind: u32,
    pub sample0: u32,
}

// SAFETY: plain-old-data with the C struct's layout (checked by a size test).
unsafe impl cudarc::driver::DeviceRepr for LsDrop {}

impl LsDrop {
    pub const NONE: LsDrop = LsDrop {
        seed: 0,
        threshold: 0,
        scale: 1.0,
        layer: 0,
        kind: 0,
        sample0: 0,
    };

    pub fn new(seed: u64, p: f32, layer: u32, element: bool, sample0: u32) -> LsDrop {
        LsDrop {
            seed,
            threshold: crate::philox::keep_threshold(p),
            scale: 1.0 / (1.0 - p),
            layer,
            kind: if element { 2 } else { 1 },
            sample0,
        }
    }

    /// `ls_dropout`: value `v` of batch entry `s`, channel `c`, voxel `vox` of `dhw`.
    #[inline]
    pub fn apply(&self, v: f32, s: u32, c: u32, vox: u32, dhw: u32) -> f32 {
        if self.kind == 0 {
            return v;
        }
        let index = if self.kind == 1 {
            u64::from(c)
        } else {
            u64::from(c) * u64::from(dhw) + u64::from(vox)
        };
        let ctr = [
            self.sample0 + s,
            self.layer,
            index as u32,
            (index >> 32) as u32,
        ];
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let keep = u64::from(philox4x32_10(ctr, key)[0]) >= self.threshold;
        if keep {
            v * self.scale
        } else {
            0.0
        }
    }
}

/// `ls_conv_first`: HU `[D][H][W]` → `[D][H][W][cout]`; `w` is `[32][cout]` (taps 27..31 zero).
#[allow(clippy::too_many_arguments)]
pub fn conv_first(
    hu: &[f32],
    lo: f32,
    hi: f32,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    dims: [usize; 3],
) -> Vec<f32> {
    let [d, h, wd] = dims;
    let norm: Vec<f32> = hu
        .iter()
        .map(|&v| round_f16(((v - lo) / (hi - lo)).clamp(0.0, 1.0)))
        .collect();
    let mut out = vec![0.0; d * h * wd * cout];
    for z in 0..d {
        for y in 0..h {
            for x in 0..wd {
                let mut inp = [0.0f32; 27];
                for (t, iv) in inp.iter_mut().enumerate() {
                    let (zz, yy, xx) = (
                        z as isize + (t / 9) as isize - 1,
                        y as isize + (t / 3 % 3) as isize - 1,
                        x as isize + (t % 3) as isize - 1,
                    );
                    if (0..d as isize).contains(&zz)
                        && (0..h as isize).contains(&yy)
                        && (0..wd as isize).contains(&xx)
                    {
                        *iv = norm[(zz as usize * h + yy as usize) * wd + xx as usize];
                    }
                }
                let o = ((z * h + y) * wd + x) * cout;
                for c in 0..cout {
                    let mut a = 0.0f32;
                    for (t, iv) in inp.iter().enumerate() {
                        a = iv.mul_add(w[t * cout + c], a);
                    }
                    out[o + c] = round_f16((a + bias[c]).max(0.0));
                }
            }
        }
    }
    out
}

/// One input of [`conv3`]: `[S][D][H][W][c]`, or one `[D][H][W][c]` tensor shared by all
/// samples when `shared`.
#[derive(Clone, Copy)]
pub struct Src<'a> {
    pub data: &'a [f32],
    pub c: usize,
    pub shared: bool,
}

/// `ls_conv3`: `w` is `[cout][27][c0 + c1]` (values already fp16), output rounded to fp16.
#[allow(clippy::too_many_arguments)]
pub fn conv3(
    src0: Src<'_>,
    src1: Option<Src<'_>>,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    s: usize,
    dims: [usize; 3],
    relu: bool,
    drop: &LsDrop,
) -> Vec<f32> {
    let [d, h, wd] = dims;
    let dhw = d * h * wd;
    let c1 = src1.map_or(0, |x| x.c);
    let cin = src0.c + c1;
    assert_eq!(w.len(), cout * 27 * cin);
    let mut out = vec![0.0; s * dhw * cout];
    let mut a = vec![0.0f32; 27 * cin];
    for b in 0..s {
        for z in 0..d {
            for y in 0..h {
                for x in 0..wd {
                    // Gather the implicit-GEMM row (tap-major, channels of src0 then src1).
                    for t in 0..27 {
                        let (zz, yy, xx) = (
                            z as isize + (t / 9) as isize - 1,
                            y as isize + (t / 3 % 3) as isize - 1,
                            x as isize + (t % 3) as isize - 1,
                        );
                        let inside = (0..d as isize).contains(&zz)
                            && (0..h as isize).contains(&yy)
                            && (0..wd as isize).contains(&xx);
                        let row = &mut a[t * cin..(t + 1) * cin];
                        if !inside {
                            row.fill(0.0);
                            continue;
                        }
                        let v = (zz as usize * h + yy as usize) * wd + xx as usize;
                        for (k, src) in std::iter::once(src0).chain(src1).enumerate() {
                            let base = if src.shared { 0 } else { b * dhw };
                            let off = if k == 0 { 0 } else { src0.c };
                            row[off..off + src.c]
                                .copy_from_slice(&src.data[(base + v) * src.c..][..src.c]);
                        }
                    }
                    let vox = (z * h + y) * wd + x;
                    for co in 0..cout {
                        let wr = &w[co * 27 * cin..(co + 1) * 27 * cin];
                        let acc: f32 = a.iter().zip(wr).map(|(p, q)| p * q).sum();
                        let mut v = acc + bias[co];
                        if relu {
                            v = v.max(0.0);
                        }
                        v = drop.apply(v, b as u32, co as u32, vox as u32, dhw as u32);
                        out[(b * dhw + vox) * cout + co] = round_f16(v);
                    }
                }
            }
        }
    }
    out
}

/// `ls_dropout_expand`: shared `[V][C]` → `[S][V][C]`, each sample with its mask.
pub fn dropout_expand(input: &[f32], s: usize, v: usize, c: usize, drop: &LsDrop) -> Vec<f32> {
    let mut out = Vec::with_capacity(s * v * c);
    for b in 0..s {
        for vox in 0..v {
            for ch in 0..c {
                let x = input[vox * c + ch];
                out.push(round_f16(
                    drop.apply(x, b as u32, ch as u32, vox as u32, v as u32),
                ));
            }
        }
    }
    out
}

/// `ls_maxpool2` (exact).
pub fn maxpool2(input: &[f32], s: usize, dims: [usize; 3], c: usize) -> Vec<f32> {
    let [d, h, w] = dims;
    let (od, oh, ow) = (d / 2, h / 2, w / 2);
    let mut out = vec![f32::NEG_INFINITY; s * od * oh * ow * c];
    for b in 0..s {
        for z in 0..od {
            for y in 0..oh {
                for x in 0..ow {
                    let o = (((b * od + z) * oh + y) * ow + x) * c;
                    for k in 0..8 {
                        let (zz, yy, xx) = (2 * z + k / 4, 2 * y + k / 2 % 2, 2 * x + k % 2);
                        let i = (((b * d + zz) * h + yy) * w + xx) * c;
                        for ch in 0..c {
                            out[o + ch] = out[o + ch].max(input[i + ch]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// `ls_upconv2`: `w` is `[8][cout][cin]`, output `[S][2d][2h][2w][cout]` rounded to fp16.
#[allow(clippy::too_many_arguments)]
pub fn upconv2(
    input: &[f32],
    cin: usize,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    s: usize,
    dims: [usize; 3],
) -> Vec<f32> {
    let [d, h, wd] = dims;
    let (od, oh, ow) = (2 * d, 2 * h, 2 * wd);
    let mut out = vec![0.0; s * od * oh * ow * cout];
    for b in 0..s {
        for z in 0..d {
            for y in 0..h {
                for x in 0..wd {
                    let iv = &input[(((b * d + z) * h + y) * wd + x) * cin..][..cin];
                    for o in 0..8 {
                        let (za, yb, xc) = (2 * z + o / 4, 2 * y + o / 2 % 2, 2 * x + o % 2);
                        let ov = (((b * od + za) * oh + yb) * ow + xc) * cout;
                        for co in 0..cout {
                            let wr = &w[(o * cout + co) * cin..][..cin];
                            let acc: f32 = iv.iter().zip(wr).map(|(p, q)| p * q).sum();
                            out[ov + co] = round_f16(acc + bias[co]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Running MC state of `ls_head_accumulate` (per voxel).
#[derive(Clone, Debug, Default)]
pub struct HeadState {
    pub n: u32,
    pub mean: Vec<f32>,
    pub m2: Vec<f32>,
    pub sum_h: Vec<f32>,
    pub any_fg: Vec<u32>,
}

/// `ls_entropy_bits` in f32.
pub fn entropy_bits_f32(p: f32) -> f32 {
    let p = p.clamp(0.0, 1.0);
    let mut h = 0.0;
    if p > 0.0 {
        h -= p * p.log2();
    }
    if p < 1.0 {
        h -= (1.0 - p) * (1.0 - p).log2();
    }
    h
}

/// `ls_head_accumulate`: folds `S` samples of `x` `[S][V][C]` into `st`; returns the chunk's
/// mask rows (`S` rows of [`head_mask_words`]`(V)` u32 words, bit `i % 32` of word `i / 32` set
/// where sample `p_i ≥ mask_t`, the model's mask threshold).
pub fn head_accumulate(
    x: &[f32],
    c: usize,
    w: &[f32],
    bias: f32,
    mask_t: f32,
    s: usize,
    st: &mut HeadState,
) -> Vec<u32> {
    let v = x.len() / (s * c);
    let words = head_mask_words(v);
    let mut masks = vec![0u32; s * words];
    if st.n == 0 {
        *st = HeadState {
            n: 0,
            mean: vec![0.0; v],
            m2: vec![0.0; v],
            sum_h: vec![0.0; v],
            any_fg: vec![0; v],
        };
    }
    for b in 0..s {
        let k = (st.n + b as u32 + 1) as f32;
        for i in 0..v {
            let px = &x[(b * v + i) * c..][..c];
            let logit = px.iter().zip(w).fold(bias, |a, (p, q)| p.mul_add(*q, a));
            let p = 1.0 / (1.0 + (-logit).exp());
            let d = p - st.mean[i];
            st.mean[i] += d / k;
            st.m2[i] += d * (p - st.mean[i]);
            st.sum_h[i] += entropy_bits_f32(p);
            st.any_fg[i] |= u32::from(p >= mask_t);
            masks[b * words + i / 32] |= u32::from(p >= mask_t) << (i % 32);
        }
    }
    st.n += s as u32;
    masks
}

/// Maps and summary sums of `ls_head_finalize`.
#[derive(Clone, Debug, Default)]
pub struct HeadOut {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    pub entropy: Vec<f32>,
    pub mutual_info: Vec<f32>,
    /// [foreground, region, Σ mean, Σ entropy, Σ MI, Σ variance] (the last four over the region).
    pub sums: [f64; 6],
}

/// `ls_head_finalize` (`mask_t`: the model's mask threshold).
pub fn head_finalize(st: &HeadState, mask_t: f32) -> HeadOut {
    let n = st.n.max(1) as f32;
    let mut o = HeadOut::default();
    for i in 0..st.mean.len() {
        let mu = st.mean[i];
        let var = (st.m2[i] / n).max(0.0);
        let h = entropy_bits_f32(mu);
        let mi = (h - st.sum_h[i] / n).max(0.0);
        o.mean.push(mu);
        o.variance.push(var);
        o.entropy.push(h);
        o.mutual_info.push(mi);
        o.sums[0] += f64::from(u8::from(mu >= mask_t));
        if st.any_fg[i] != 0 {
            o.sums[1] += 1.0;
            o.sums[2] += f64::from(mu);
            o.sums[3] += f64::from(h);
            o.sums[4] += f64::from(mi);
            o.sums[5] += f64::from(var);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::philox::DropoutStream;

    #[test]
    fn lsdrop_matches_the_c_struct_layout() {
        // struct LsDrop { u64 seed; u64 threshold; float scale; u32 layer, kind, sample0; }
        assert_eq!(std::mem::size_of::<LsDrop>(), 32);
        assert_eq!(std::mem::align_of::<LsDrop>(), 8);
        assert_eq!(std::mem::offset_of!(LsDrop, scale), 16);
        assert_eq!(std::mem::offset_of!(LsDrop, sample0), 28);
    }

    #[test]
    fn lsdrop_apply_is_the_philox_mask() {
        let p = 0.3f32;
        for &element in &[false, true] {
            let d = LsDrop::new(0xdead_beef_0123_4567, p, 7, element, 5);
            for s in 0..3u32 {
                let st = DropoutStream::new(d.seed, 5 + s, 7, p);
                for c in 0..40u32 {
                    let vox = (c * 7919) % 1000;
                    let idx = if element {
                        u64::from(c) * 1000 + u64::from(vox)
                    } else {
                        u64::from(c)
                    };
                    let want = if st.keep(idx) { 2.0 / (1.0 - p) } else { 0.0 };
                    assert_eq!(d.apply(2.0, s, c, vox, 1000), want);
                }
            }
        }
    }
}
