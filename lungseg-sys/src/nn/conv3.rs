//! 3³ convolution, padding 1, stride 1, with bias and optional ReLU: the U-Net's hot loop.
//!
//! Layouts: input zero-halo NDHWC (`stride` floats per voxel; the kernel reads the channel
//! offsets listed in `ci`, which is how channel dropout skips dropped channels and how the
//! decoder reads its concat buffer); weights `[27][ci.len()][cp]` with `cp = pad16(cout)` and
//! tap `t = 9kz + 3ky + kx`; bias `[cp]`.
//!
//! Micro-kernel (direct convolution, no im2col): one output row segment of `XT` x-positions
//! times `NV` 16-lane output-channel vectors lives in `XT·NV` accumulators; for every tap and
//! input channel it loads `NV` weight vectors and, per position, broadcasts one input value and
//! FMAs it into the `NV` accumulators. Tiles: `NV=1, XT=16` (16 channels), `NV=2, XT=8`,
//! `NV=4, XT=4` (16 accumulators each, leaving registers for weights on AVX-512's 32 zmm);
//! row tails use `XT=4` then `XT=1`. Common input strides (16..512) are compile-time constants. The same generic code is compiled for AVX-512
//! (`std::arch` intrinsics, runtime detection) and as a portable `[f32; 16]` version that
//! autovectorises; the two may differ in the last bit (FMA vs mul+add) but each is
//! deterministic.

use super::{has_avx512, par_units, Grid};

/// One 3³ convolution call.
pub struct Conv3Args<'a> {
    /// Zero-halo input, `grid.padded_voxels() · in_stride` floats at least.
    pub input: &'a [f32],
    pub grid: Grid,
    pub in_stride: usize,
    /// Channel offsets (within a voxel) to read, in weight order.
    pub ci: &'a [u32],
    /// `[27][ci.len()][pad16(cout)]`.
    pub w: &'a [f32],
    /// `[pad16(cout)]`.
    pub bias: &'a [f32],
    pub cout: usize,
    pub relu: bool,
}

struct Ctx<'a> {
    a: &'a Conv3Args<'a>,
    cp: usize,
    taps: [usize; 27],
    out_stride: usize,
}

/// Writes channels `[out_off, out_off + cout)` of every interior voxel of `out` (zero-halo,
/// `out_stride` floats per voxel, same grid as the input).
pub fn conv3(
    a: &Conv3Args<'_>,
    out: &mut [f32],
    out_stride: usize,
    out_off: usize,
    threads: usize,
) {
    conv3_with(a, out, out_stride, out_off, threads, has_avx512());
}

/// [`conv3`] choosing the micro-kernel: `avx512 = false` runs the portable one (parity tests);
/// `true` falls back to portable where AVX-512 is absent.
#[doc(hidden)]
pub fn conv3_with(
    a: &Conv3Args<'_>,
    out: &mut [f32],
    out_stride: usize,
    out_off: usize,
    threads: usize,
    avx512: bool,
) {
    let g = a.grid;
    let cp = a.cout.div_ceil(16) * 16;
    let nk = a.ci.len();
    assert!(a.input.len() >= g.padded_voxels() * a.in_stride);
    assert!(a.ci.iter().all(|&c| (c as usize) < a.in_stride));
    assert_eq!(a.w.len(), 27 * nk * cp);
    assert_eq!(a.bias.len(), cp);
    assert!(out_off + a.cout <= out_stride && out.len() >= g.padded_voxels() * out_stride);
    let mut taps = [0usize; 27];
    for (t, tap) in taps.iter_mut().enumerate() {
        let (kz, ky, kx) = (t / 9, t / 3 % 3, t % 3);
        *tap = ((kz * (g.h + 2) + ky) * (g.w + 2) + kx) * a.in_stride;
    }
    let ctx = Ctx {
        a,
        cp,
        taps,
        out_stride,
    };
    let plane = g.plane() * out_stride;
    let avx = avx512 && has_avx512();
    par_units(out, plane, plane, g.d, threads, |z, chunk| {
        for y in 0..g.h {
            // Neighbourhood origin of output (z, y, 0) is padded input voxel (z, y, 0).
            let inp = (z * (g.h + 2) + y) * (g.w + 2) * a.in_stride;
            let o = ((y + 1) * (g.w + 2) + 1) * out_stride + out_off;
            let orow = &mut chunk[o..o + (g.w - 1) * out_stride + a.cout];
            // SAFETY: the asserts above bound every read (origin + taps + positions + ci) by
            // the input length and every write by `orow`, whose length covers w voxels.
            #[cfg(target_arch = "x86_64")]
            if avx {
                unsafe { avx512::row(&ctx, inp, orow.as_mut_ptr()) };
                continue;
            }
            let _ = avx;
            unsafe { portable::row(&ctx, inp, orow.as_mut_ptr()) };
        }
    });
}

/// Generates the row driver and tile kernel for one vector type.
macro_rules! kernels {
    ($(#[$attr:meta])*, $vec:ty, $zero:expr, $load:path, $splat:path, $fma:path, $finish:path) => {
        $(#[$attr])*
        pub(super) unsafe fn row(c: &Ctx<'_>, inp: usize, out: *mut f32) {
            // A compile-time input stride turns the per-position offsets into immediate
            // displacements, freeing the general registers the tile would otherwise spill.
            match c.a.in_stride {
                16 => row_si::<16>(c, inp, out),
                32 => row_si::<32>(c, inp, out),
                64 => row_si::<64>(c, inp, out),
                128 => row_si::<128>(c, inp, out),
                256 => row_si::<256>(c, inp, out),
                512 => row_si::<512>(c, inp, out),
                _ => row_si::<0>(c, inp, out),
            }
        }

        $(#[$attr])*
        unsafe fn row_si<const SI: usize>(c: &Ctx<'_>, inp: usize, out: *mut f32) {
            let nv = c.cp / 16;
            let mut v0 = 0;
            while v0 < nv {
                match nv - v0 {
                    r if r >= 4 => {
                        tiles::<4, 4, SI>(c, inp, out, v0);
                        v0 += 4;
                    }
                    r if r >= 2 => {
                        tiles::<2, 8, SI>(c, inp, out, v0);
                        v0 += 2;
                    }
                    _ => {
                        tiles::<1, 16, SI>(c, inp, out, v0);
                        v0 += 1;
                    }
                }
            }
        }

        $(#[$attr])*
        unsafe fn tiles<const NV: usize, const XT: usize, const SI: usize>(c: &Ctx<'_>, inp: usize, out: *mut f32, v0: usize) {
            let w = c.a.grid.w;
            let (si, so) = (c.a.in_stride, c.out_stride);
            let mut x = 0;
            while x + XT <= w {
                tile::<NV, XT, SI>(c, inp + x * si, out.add(x * so), v0);
                x += XT;
            }
            while XT > 4 && x + 4 <= w {
                tile::<NV, 4, SI>(c, inp + x * si, out.add(x * so), v0);
                x += 4;
            }
            while x < w {
                tile::<NV, 1, SI>(c, inp + x * si, out.add(x * so), v0);
                x += 1;
            }
        }

        $(#[$attr])*
        unsafe fn tile<const NV: usize, const XT: usize, const SI: usize>(
            c: &Ctx<'_>,
            inp: usize,
            out: *mut f32,
            v0: usize,
        ) {
            let a = c.a;
            let nk = a.ci.len();
            let si = if SI == 0 { a.in_stride } else { SI };
            let src = a.input.as_ptr().add(inp);
            let mut acc: [[$vec; NV]; XT] = [[$zero; NV]; XT];
            for t in 0..27 {
                let p = src.add(c.taps[t]);
                let wt = a.w.as_ptr().add(t * nk * c.cp + v0 * 16);
                for j in 0..nk {
                    let ci = *a.ci.get_unchecked(j) as usize;
                    let wp = wt.add(j * c.cp);
                    let mut wv: [$vec; NV] = [$zero; NV];
                    for v in 0..NV {
                        wv[v] = $load(wp.add(16 * v));
                    }
                    for i in 0..XT {
                        let xv = $splat(*p.add(i * si + ci));
                        for v in 0..NV {
                            acc[i][v] = $fma(xv, wv[v], acc[i][v]);
                        }
                    }
                }
            }
            for v in 0..NV {
                let ch = (v0 + v) * 16;
                let lanes = (a.cout - ch).min(16);
                let b = $load(a.bias.as_ptr().add(ch));
                for i in 0..XT {
                    $finish(acc[i][v], b, a.relu, out.add(i * c.out_stride + ch), lanes);
                }
            }
        }
    };
}

// AVX-512 intrinsics are stable since Rust 1.89: the workspace MSRV must be at least that.
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod avx512 {
    use super::Ctx;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn finish(acc: __m512, b: __m512, relu: bool, out: *mut f32, lanes: usize) {
        let mut r = _mm512_add_ps(acc, b);
        if relu {
            // max(0, r) returns r when r is NaN: NaN must reach the output check.
            r = _mm512_max_ps(_mm512_setzero_ps(), r);
        }
        _mm512_mask_storeu_ps(out, ((1u32 << lanes) - 1) as u16, r);
    }

    kernels!(
        #[inline]
        #[target_feature(enable = "avx512f")],
        __m512,
        _mm512_setzero_ps(),
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        finish
    );
}

mod portable {
    use super::Ctx;

    type V = [f32; 16];

    #[inline(always)]
    unsafe fn load(p: *const f32) -> V {
        *(p as *const V)
    }

    #[inline(always)]
    fn fma(a: V, b: V, mut c: V) -> V {
        for l in 0..16 {
            c[l] += a[l] * b[l];
        }
        c
    }

    #[inline(always)]
    unsafe fn finish(acc: V, b: V, relu: bool, out: *mut f32, lanes: usize) {
        for l in 0..lanes {
            let r = acc[l] + b[l];
            *out.add(l) = if relu { super::super::relu(r) } else { r };
        }
    }

    #[inline(always)]
    fn splat(x: f32) -> V {
        [x; 16]
    }

    // No extra target feature: the baseline of the build target.
    kernels!(#[inline(always)], V, [0.0; 16], load, splat, fma, finish);
}

/// Plain reference: dense NDHWC input `[d][h][w][cin]`, PyTorch weights
/// `[cout][cin][3][3][3]`, returns dense `[d][h][w][cout]`.
pub fn reference(
    input: &[f32],
    g: Grid,
    cin: usize,
    w: &[f32],
    bias: &[f32],
    cout: usize,
    relu: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; g.voxels() * cout];
    for z in 0..g.d {
        for y in 0..g.h {
            for x in 0..g.w {
                for co in 0..cout {
                    let mut s = f64::from(bias[co]);
                    for ci in 0..cin {
                        for t in 0..27 {
                            let (zz, yy, xx) = (z + t / 9, y + t / 3 % 3, x + t % 3);
                            if zz < 1 || yy < 1 || xx < 1 || zz > g.d || yy > g.h || xx > g.w {
                                continue;
                            }
                            let iv = input[(((zz - 1) * g.h + yy - 1) * g.w + xx - 1) * cin + ci];
                            s += f64::from(iv) * f64::from(w[(co * cin + ci) * 27 + t]);
                        }
                    }
                    let s = s as f32;
                    out[((z * g.h + y) * g.w + x) * cout + co] =
                        if relu { super::relu(s) } else { s };
                }
            }
        }
    }
    out
}
