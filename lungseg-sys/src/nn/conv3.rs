//! 3³ convolution, padding 1, stride 1, with bias and optional ReLU: the U-Net's hot loop.
//!
//! This is the direct convolution. The engine runs the layers with at least 16 input and 16
//! output channels on even grids with Winograd F(2,3) instead ([`super::winograd`], 216/64 ×
//! fewer multiply-adds, the same register tiles); the direct convolution runs the others
//! (the first layer, 8-channel levels, odd grids) and is Winograd's reference in the tests.
//!
//! Layouts: input zero-halo NDHWC (`stride` floats per voxel; the kernel reads the channel
//! offsets listed in `ci`, which is how channel dropout skips dropped channels and how the
//! decoder reads its concat buffer); weights `[27][ci.len()][cp]` with `cp = pad16(cout)` and
//! tap `t = 9kz + 3ky + kx`; bias `[cp]`.
//!
//! Micro-kernel (direct convolution, no im2col): one output row segment of `XT` x-positions
//! times `NV` output-channel vectors lives in `XT·NV` accumulators; for every tap and input
//! channel it loads `NV` weight vectors and, per position, broadcasts one input value and FMAs
//! it into the `NV` accumulators. Output channels are handled in 16-channel blocks (the weight
//! padding), each block being `16 / LANES` vectors. One generic source ([`kernels!`]) is
//! compiled per instruction set with its own tiles, chosen so that accumulators, the `NV`
//! weight vectors and a broadcast fit the register file without spilling:
//!
//! | kernel   | lanes | registers | tiles (blocks × XT)   | accumulators + weights + broadcast |
//! |----------|-------|-----------|-----------------------|------------------------------------|
//! | AVX-512  | 16    | 32 zmm    | 4×4, 2×8, 1×16        | 16 + 4 / 2 / 1 + 1 (≤ 21)          |
//! | AVX2+FMA | 8     | 16 ymm    | 1×6 (NV = 2)          | 12 + 2 + 1 = 15                    |
//! | NEON     | 4     | 32 q      | 1×6 (NV = 4)          | 24 + 4 + 1 = 29                    |
//! | portable | 16    | baseline  | 4×4, 2×8, 1×16        | (autovectorised `[f32; 16]`)       |
//!
//! Layers with at most 8 output channels compute only the first half of their one padded block
//! (AVX2: NV = 1 ymm × 6 positions, 6 accumulators + 1 weight + 6 broadcasts, as LLVM hoists
//! them all; AVX-512: the same ymm code with AVX-512VL's 32 registers and embedded broadcasts,
//! 12 positions; NEON: NV = 2 × 12, 24 + 2 + 1 = 27): a 16-wide block would spend half its FMAs on zero lanes, on the layers
//! that hold half the work of an 8-channel first level. Same accumulation order, same values.
//!
//! `scripts/cpu-spill-check.py` (CI) disassembles the release library (x86, and the aarch64
//! cross build in `scripts/aarch64-check.sh`) and fails when an FMA loop touches a vector
//! register through the stack; a 2×6 AVX2 tile and a 2×6 NEON tile make it fail.
//!
//! AVX2 has no room for a second block (24 accumulators or 4 weights + 3 positions = 17 > 16),
//! so wide layers run block after block, re-broadcasting the inputs (8 loads per 12 FMAs,
//! within two loads per cycle). Row tails use 4, 2 and 1 positions. Common input strides
//! (16..512) are compile-time constants. The tiling never changes a value: every output is
//! accumulated over taps, then input channels, in the same order. See [`super::cpu_kernel`]
//! for which kernel runs and how the results of the kernels compare.

use super::cpu_kernel::CpuKernel;
use super::{par_units, Grid};

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
    /// The instruction set to run on; must be [`CpuKernel::supported`] (asserted).
    pub kernel: CpuKernel,
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
    let g = a.grid;
    let cp = a.cout.div_ceil(16) * 16;
    let nk = a.ci.len();
    assert!(a.input.len() >= g.padded_voxels() * a.in_stride);
    assert!(a.ci.iter().all(|&c| (c as usize) < a.in_stride));
    assert_eq!(a.w.len(), 27 * nk * cp);
    assert_eq!(a.bias.len(), cp);
    assert!(out_off + a.cout <= out_stride && out.len() >= g.padded_voxels() * out_stride);
    assert!(
        a.kernel.supported(),
        "{:?} kernel on a CPU without it",
        a.kernel
    );
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
    par_units(out, plane, plane, g.d, threads, |z, chunk| {
        for y in 0..g.h {
            // Neighbourhood origin of output (z, y, 0) is padded input voxel (z, y, 0).
            let inp = (z * (g.h + 2) + y) * (g.w + 2) * a.in_stride;
            let o = ((y + 1) * (g.w + 2) + 1) * out_stride + out_off;
            let orow = &mut chunk[o..o + (g.w - 1) * out_stride + a.cout];
            // SAFETY: the asserts above bound every read (origin + taps + positions + ci) by
            // the input length and every write by `orow`, whose length covers w voxels; the
            // kernel's instructions exist on this CPU (asserted above).
            unsafe { row(&ctx, inp, orow.as_mut_ptr()) };
        }
    });
}

/// One output row on the context's kernel.
///
/// # Safety
/// See the call in [`conv3`].
#[inline(always)]
unsafe fn row(c: &Ctx<'_>, inp: usize, out: *mut f32) {
    match c.a.kernel {
        // Layers of at most 8 output channels (the default model's level 0) run on 8-lane ymm
        // code: a zmm would carry 8 zero lanes.
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx512 if c.a.cout <= 8 => avx512::ymm::row(c, inp, out),
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx512 => avx512::row(c, inp, out),
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx2 => avx2::row(c, inp, out),
        #[cfg(target_arch = "aarch64")]
        CpuKernel::Neon => neon::row(c, inp, out),
        _ => portable::row(c, inp, out),
    }
}

/// Generates the row driver and tile kernel for one vector type of `$lanes` floats. `$tiles`
/// lists `(blocks, XT)` pairs, widest first, the last one block wide: a tile covers `blocks`
/// 16-channel blocks (`NV = 16·blocks / lanes` vectors) at `XT` x-positions.
macro_rules! kernels {
    (
        $(#[$attr:meta])*,
        $vec:ty, $lanes:literal, $zero:expr, $load:path, $splat:path, $fma:path, $finish:path,
        tiles: [$(($blocks:literal, $xt:literal)),+ $(,)?]
        $(, half: $hxt:literal)?
    ) => {
        $(#[$attr])*
        pub(in crate::nn::conv3) unsafe fn row(c: &Ctx<'_>, inp: usize, out: *mut f32) {
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
            $(
                // At most 8 output channels: only the first half of the one padded block is
                // computed (`8 / lanes` vectors at `$hxt` positions).
                if c.a.cout <= 8 {
                    tiles::<{ 8 / $lanes }, $hxt, SI>(c, inp, out, 0);
                    return;
                }
            )?
            let nb = c.cp / 16;
            let mut b0 = 0;
            'blocks: while b0 < nb {
                $(
                    if nb - b0 >= $blocks {
                        tiles::<{ 16 * $blocks / $lanes }, $xt, SI>(c, inp, out, b0);
                        b0 += $blocks;
                        continue 'blocks;
                    }
                )+
                unreachable!("the last tile is one block wide");
            }
        }

        $(#[$attr])*
        unsafe fn tiles<const NV: usize, const XT: usize, const SI: usize>(
            c: &Ctx<'_>,
            inp: usize,
            out: *mut f32,
            b0: usize,
        ) {
            let w = c.a.grid.w;
            let (si, so) = (c.a.in_stride, c.out_stride);
            let mut x = 0;
            while x + XT <= w {
                tile::<NV, XT, SI>(c, inp + x * si, out.add(x * so), b0);
                x += XT;
            }
            while XT > 4 && x + 4 <= w {
                tile::<NV, 4, SI>(c, inp + x * si, out.add(x * so), b0);
                x += 4;
            }
            while XT > 2 && x + 2 <= w {
                tile::<NV, 2, SI>(c, inp + x * si, out.add(x * so), b0);
                x += 2;
            }
            while x < w {
                tile::<NV, 1, SI>(c, inp + x * si, out.add(x * so), b0);
                x += 1;
            }
        }

        $(#[$attr])*
        unsafe fn tile<const NV: usize, const XT: usize, const SI: usize>(
            c: &Ctx<'_>,
            inp: usize,
            out: *mut f32,
            b0: usize,
        ) {
            let a = c.a;
            let nk = a.ci.len();
            let si = if SI == 0 { a.in_stride } else { SI };
            let src = a.input.as_ptr().add(inp);
            let mut acc: [[$vec; NV]; XT] = [[$zero; NV]; XT];
            for t in 0..27 {
                let p = src.add(c.taps[t]);
                let wt = a.w.as_ptr().add(t * nk * c.cp + b0 * 16);
                for j in 0..nk {
                    let ci = *a.ci.get_unchecked(j) as usize;
                    let wp = wt.add(j * c.cp);
                    let mut wv: [$vec; NV] = [$zero; NV];
                    for v in 0..NV {
                        wv[v] = $load(wp.add($lanes * v));
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
                let ch = b0 * 16 + v * $lanes;
                if ch >= a.cout {
                    break;
                }
                let lanes = (a.cout - ch).min($lanes);
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
        __m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, finish,
        tiles: [(4, 4), (2, 8), (1, 16)]
    );

    /// Layers of at most 8 output channels: 8-lane ymm code with AVX-512VL's 32 registers,
    /// where a broadcast folds into the FMA as an embedded-broadcast memory operand, so a
    /// 12-position tile fits (the AVX2 code's 16 registers hold 6). Only the `half` tile runs.
    pub(super) mod ymm {
        use super::super::avx2::finish;
        use super::super::Ctx;
        use std::arch::x86_64::*;

        kernels!(
            #[inline]
            #[target_feature(enable = "avx512f,avx512vl")],
            __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
            finish,
            tiles: [(1, 6)],
            half: 12
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Ctx;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn finish(acc: __m256, b: __m256, relu: bool, out: *mut f32, lanes: usize) {
        let mut r = _mm256_add_ps(acc, b);
        if relu {
            // max(0, r) returns r when r is NaN: NaN must reach the output check.
            r = _mm256_max_ps(_mm256_setzero_ps(), r);
        }
        if lanes == 8 {
            _mm256_storeu_ps(out, r);
        } else {
            let mut all = [0.0f32; 8];
            _mm256_storeu_ps(all.as_mut_ptr(), r);
            std::ptr::copy_nonoverlapping(all.as_ptr(), out, lanes);
        }
    }

    kernels!(
        #[inline]
        #[target_feature(enable = "avx2,fma")],
        __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, finish,
        tiles: [(1, 6)],
        half: 6
    );
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::Ctx;
    use std::arch::aarch64::*;

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn fma(x: float32x4_t, w: float32x4_t, acc: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, x, w)
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn finish(acc: float32x4_t, b: float32x4_t, relu: bool, out: *mut f32, lanes: usize) {
        let mut r = vaddq_f32(acc, b);
        if relu {
            // `r < 0 ? 0 : r`, not FMAX: NaN passes and -0.0 stays -0.0, as on x86.
            let zero = vdupq_n_f32(0.0);
            r = vbslq_f32(vcltq_f32(r, zero), zero, r);
        }
        if lanes == 4 {
            vst1q_f32(out, r);
        } else {
            let mut all = [0.0f32; 4];
            vst1q_f32(all.as_mut_ptr(), r);
            std::ptr::copy_nonoverlapping(all.as_ptr(), out, lanes);
        }
    }

    kernels!(
        #[inline]
        #[target_feature(enable = "neon")],
        float32x4_t, 4, vdupq_n_f32(0.0), vld1q_f32, vdupq_n_f32, fma, finish,
        tiles: [(1, 6)],
        half: 12
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
    kernels!(
        #[inline(always)],
        V, 16, [0.0; 16], load, splat, fma, finish,
        tiles: [(4, 4), (2, 8), (1, 16)]
    );
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
