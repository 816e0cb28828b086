//! One block of tiles per instruction set: input transform into `V`, the 64 GEMMs
//! `M[p] = V[p] · U[p]`, output transform. The GEMM micro-kernel is [`crate::nn::conv3`]'s
//! with one tap: a tile of `XT` Winograd tiles times `NV` output-channel vectors lives in
//! `XT·NV` accumulators; per kept input channel `k` it loads `NV` vectors of `U[p][k]` and,
//! per tile, broadcasts `V[p][t][k]` and FMAs. Register tiles and budgets are conv3's
//! (AVX-512 4×4, 2×8, 1×16; AVX2 1×6 with NV = 2; NEON 1×6 with NV = 4; portable as AVX-512),
//! and `scripts/cpu-spill-check.py` checks these loops too. Every `M` value accumulates over
//! `k` in order from zero, whatever the tile, so the tiling never changes a value.

use super::Ctx;

/// Generates `block` and its GEMM for one vector type of `$lanes` floats; `$tiles` lists
/// `(blocks, XT)` pairs, widest first, the last one block wide. `block` gets the attributes
/// `$battr` (never inlined: one named function per instruction set, which the spill check
/// finds), everything it calls `$attr`.
macro_rules! kernels {
    (
        block: [$(#[$battr:meta])*],
        $(#[$attr:meta])*,
        $vec:ty, $lanes:literal, $zero:expr, $load:path, $store:path, $splat:path, $fma:path,
        $add:path, $sub:path, $mul:path, $relu:path, $prefetch:path,
        tiles: [$(($blocks:literal, $xt:literal)),+ $(,)?]
    ) => {
        tile_transforms!(
            $(#[$attr])*,
            $vec, $lanes, $zero, $load, $store, $add, $sub, $mul, $relu, $prefetch
        );

        /// Tiles `t0..t0 + n` of tile z-pair `u`: `out` is the pair's first output plane,
        /// `scr` the thread's scratch (`V` then `M`).
        $(#[$battr])*
        pub(in crate::nn::winograd) unsafe fn block(
            c: &Ctx<'_>,
            u: usize,
            t0: usize,
            n: usize,
            out: *mut f32,
            scr: *mut f32,
        ) {
            let (s, a) = (c.s, c.a);
            let (g, si) = (a.grid, a.in_stride);
            let (v, m) = (scr, scr.add(64 * s.vp));
            let tw = g.w / 2;
            for i in 0..n {
                let (ty, tx) = ((t0 + i) / tw, (t0 + i) % tw);
                let org = ((2 * u * (g.h + 2) + 2 * ty) * (g.w + 2) + 2 * tx) * si;
                let src = a.input.as_ptr().add(org + a.c0);
                let mut j0 = 0;
                while j0 < c.rows {
                    input(c, src, j0, v.add(i * s.ks + j0), s.vp);
                    j0 += 16;
                }
            }
            match s.ks {
                16 => gemm::<16>(c, n, v, m),
                32 => gemm::<32>(c, n, v, m),
                64 => gemm::<64>(c, n, v, m),
                128 => gemm::<128>(c, n, v, m),
                256 => gemm::<256>(c, n, v, m),
                512 => gemm::<512>(c, n, v, m),
                _ => gemm::<0>(c, n, v, m),
            }
            for i in 0..n {
                let (ty, tx) = ((t0 + i) / tw, (t0 + i) % tw);
                let org = ((2 * ty + 1) * (g.w + 2) + 2 * tx + 1) * c.out_stride + c.out_off;
                let mut co = 0;
                while co < a.cout {
                    let lanes = (a.cout - co).min(16);
                    let (mi, b) = (m.add(i * s.cp + co), a.bias.as_ptr().add(co));
                    output(c, mi, s.mp, b, lanes, out.add(org + co));
                    co += 16;
                }
            }
        }

        /// The 64 GEMMs of `n` tiles, `KS` the compile-time tile stride of `V` (0: runtime).
        $(#[$attr])*
        unsafe fn gemm<const KS: usize>(c: &Ctx<'_>, n: usize, v: *const f32, m: *mut f32) {
            let nb = c.s.cp / 16;
            for p in 0..64 {
                let mut b0 = 0;
                'blocks: while b0 < nb {
                    $(
                        if nb - b0 >= $blocks {
                            tiles::<{ 16 * $blocks / $lanes }, $xt, KS>(c, n, p, v, m, b0);
                            b0 += $blocks;
                            continue 'blocks;
                        }
                    )+
                    unreachable!("the last tile is one block wide");
                }
            }
        }

        $(#[$attr])*
        unsafe fn tiles<const NV: usize, const XT: usize, const KS: usize>(
            c: &Ctx<'_>,
            n: usize,
            p: usize,
            v: *const f32,
            m: *mut f32,
            b0: usize,
        ) {
            let mut t = 0;
            while t + XT <= n {
                tile::<NV, XT, KS>(c, p, t, v, m, b0);
                t += XT;
            }
            while XT > 4 && t + 4 <= n {
                tile::<NV, 4, KS>(c, p, t, v, m, b0);
                t += 4;
            }
            while XT > 2 && t + 2 <= n {
                tile::<NV, 2, KS>(c, p, t, v, m, b0);
                t += 2;
            }
            while t < n {
                tile::<NV, 1, KS>(c, p, t, v, m, b0);
                t += 1;
            }
        }

        /// `M[p][t..t + XT][b0·16 ..][.. NV·lanes]`.
        $(#[$attr])*
        unsafe fn tile<const NV: usize, const XT: usize, const KS: usize>(
            c: &Ctx<'_>,
            p: usize,
            t: usize,
            v: *const f32,
            m: *mut f32,
            b0: usize,
        ) {
            let (s, a) = (c.s, c.a);
            let ks = if KS == 0 { s.ks } else { KS };
            let vp = v.add(p * s.vp + t * ks);
            let up = a.u.as_ptr().add(p * c.rows * s.cp + b0 * 16);
            let mut acc: [[$vec; NV]; XT] = [[$zero; NV]; XT];
            for &k in a.keep {
                let k = k as usize;
                let wp = up.add(k * s.cp);
                let mut wv: [$vec; NV] = [$zero; NV];
                for j in 0..NV {
                    wv[j] = $load(wp.add($lanes * j));
                }
                for i in 0..XT {
                    let xv = $splat(*vp.add(i * ks + k));
                    for j in 0..NV {
                        acc[i][j] = $fma(xv, wv[j], acc[i][j]);
                    }
                }
            }
            let mp = m.add(p * s.mp + t * s.cp + b0 * 16);
            for i in 0..XT {
                for j in 0..NV {
                    $store(mp.add(i * s.cp + $lanes * j), acc[i][j]);
                }
            }
        }
    };
}

/// A hint to load the cache line at `p` into L1 (any address: it is never dereferenced).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn x86_prefetch(p: *const f32) {
    // SAFETY: a prefetch never faults, whatever the address (SSE, in x86-64's baseline).
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) }
}

/// No prefetch where std has no stable intrinsic for it (aarch64) or no target is assumed.
#[inline(always)]
fn no_prefetch(_: *const f32) {}

#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
pub(super) mod avx512 {
    use super::Ctx;
    use std::arch::x86_64::*;

    /// `max(0, r)` returns `r` when it is NaN: NaN must reach the output check.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn relu(r: __m512) -> __m512 {
        _mm512_max_ps(_mm512_setzero_ps(), r)
    }

    kernels!(
        block: [#[inline(never)] #[target_feature(enable = "avx512f")]],
        #[inline]
        #[target_feature(enable = "avx512f")],
        __m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
        _mm512_fmadd_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, relu, super::x86_prefetch,
        tiles: [(4, 4), (2, 8), (1, 16)]
    );
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::Ctx;
    use std::arch::x86_64::*;

    /// `max(0, r)` returns `r` when it is NaN: NaN must reach the output check.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn relu(r: __m256) -> __m256 {
        _mm256_max_ps(_mm256_setzero_ps(), r)
    }

    kernels!(
        block: [#[inline(never)] #[target_feature(enable = "avx2,fma")]],
        #[inline]
        #[target_feature(enable = "avx2,fma")],
        __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
        _mm256_fmadd_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, relu, super::x86_prefetch,
        tiles: [(1, 6)]
    );
}

#[cfg(target_arch = "aarch64")]
pub(super) mod neon {
    use super::Ctx;
    use std::arch::aarch64::*;

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn fma(x: float32x4_t, w: float32x4_t, acc: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, x, w)
    }

    /// `r < 0 ? 0 : r`, not FMAX: NaN passes and -0.0 stays -0.0, as on x86.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn relu(r: float32x4_t) -> float32x4_t {
        let zero = vdupq_n_f32(0.0);
        vbslq_f32(vcltq_f32(r, zero), zero, r)
    }

    kernels!(
        block: [#[inline(never)] #[target_feature(enable = "neon")]],
        #[inline]
        #[target_feature(enable = "neon")],
        float32x4_t, 4, vdupq_n_f32(0.0), vld1q_f32, vst1q_f32, vdupq_n_f32, fma,
        vaddq_f32, vsubq_f32, vmulq_f32, relu, super::no_prefetch,
        tiles: [(1, 6)]
    );
}

pub(super) mod portable {
    use super::Ctx;

    type V = [f32; 16];

    #[inline(always)]
    unsafe fn load(p: *const f32) -> V {
        *(p as *const V)
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: V) {
        *(p as *mut V) = v;
    }

    #[inline(always)]
    fn fma(a: V, b: V, mut c: V) -> V {
        for l in 0..16 {
            c[l] += a[l] * b[l];
        }
        c
    }

    #[inline(always)]
    fn splat(x: f32) -> V {
        [x; 16]
    }

    #[inline(always)]
    fn vadd(mut a: V, b: V) -> V {
        for l in 0..16 {
            a[l] += b[l];
        }
        a
    }

    #[inline(always)]
    fn vsub(mut a: V, b: V) -> V {
        for l in 0..16 {
            a[l] -= b[l];
        }
        a
    }

    #[inline(always)]
    fn vmul(mut a: V, b: V) -> V {
        for l in 0..16 {
            a[l] *= b[l];
        }
        a
    }

    #[inline(always)]
    fn relu(a: V) -> V {
        a.map(crate::nn::relu)
    }

    // No extra target feature: the baseline of the build target.
    kernels!(
        block: [#[inline(never)]],
        #[inline(always)],
        V, 16, [0.0; 16], load, store, splat, fma, vadd, vsub, vmul, relu, super::no_prefetch,
        tiles: [(4, 4), (2, 8), (1, 16)]
    );
}
