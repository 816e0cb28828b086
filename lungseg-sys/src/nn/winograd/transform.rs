//! The three Winograd F(2,3) transforms (matrices in the module doc): weights once at load in
//! f64, input and output tiles on 16-channel groups in f32 ([`tile_transforms`], generated per
//! instruction set inside its block code). The tile transforms are lane-wise additions in a
//! fixed order, so every vector width computes the same values.

/// `U = G g Gᵀ` along x, y, z of kernel-layout weights `w` `[27][rows][cp]` (tap
/// `9kz + 3ky + kx`) into `u` `[64][rows][cp]` (position `16z + 4y + x`); computed in f64 and
/// rounded once. False when a transformed weight is not finite in f32.
pub fn weights(w: &[f32], rows: usize, cp: usize, u: &mut [f32]) -> bool {
    assert_eq!(w.len(), 27 * rows * cp);
    assert_eq!(u.len(), 64 * rows * cp);
    for r in 0..rows {
        for co in 0..cp {
            let g: [f64; 27] = std::array::from_fn(|t| f64::from(w[(t * rows + r) * cp + co]));
            for (p, v) in transform_g(&g).into_iter().enumerate() {
                let f = v as f32;
                if !f.is_finite() {
                    return false;
                }
                u[(p * rows + r) * cp + co] = f;
            }
        }
    }
    true
}

/// `G` on one axis: `[g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2]`.
fn g1(g: [f64; 3]) -> [f64; 4] {
    [
        g[0],
        (g[0] + g[1] + g[2]) * 0.5,
        (g[0] - g[1] + g[2]) * 0.5,
        g[2],
    ]
}

/// `G g Gᵀ` of one 3³ kernel (index `9z + 3y + x`) into 4³ (index `16z + 4y + x`).
fn transform_g(g: &[f64; 27]) -> [f64; 64] {
    let mut gx = [0.0; 36]; // [z 3][y 3][x 4]
    for zy in 0..9 {
        let t = g1([g[3 * zy], g[3 * zy + 1], g[3 * zy + 2]]);
        gx[4 * zy..4 * zy + 4].copy_from_slice(&t);
    }
    let mut gy = [0.0; 48]; // [z 3][y 4][x 4]
    for z in 0..3 {
        for x in 0..4 {
            let t = g1([0, 1, 2].map(|y| gx[(z * 3 + y) * 4 + x]));
            for (y, v) in t.into_iter().enumerate() {
                gy[(z * 4 + y) * 4 + x] = v;
            }
        }
    }
    let mut u = [0.0; 64];
    for yx in 0..16 {
        let t = g1([0, 1, 2].map(|z| gy[z * 16 + yx]));
        for (z, v) in t.into_iter().enumerate() {
            u[z * 16 + yx] = v;
        }
    }
    u
}

/// How many tiles ahead along x the input transform asks for its lines: a tile's 16 lines
/// sit in 4 planes and 4 rows, more streams than the hardware prefetchers follow.
pub(super) const PREFETCH_TILES: usize = 4;

/// Generates the tile transforms `input` and `output` for one vector type of `$lanes` floats,
/// on groups of 16 channels (`16 / $lanes` vectors), with the instruction set's own vector
/// additions: lane-wise, so every vector width computes the same values.
macro_rules! tile_transforms {
    (
        $(#[$attr:meta])*,
        $vec:ty, $lanes:literal, $zero:expr, $load:path, $store:path,
        $add:path, $sub:path, $mul:path, $relu:path, $prefetch:path
    ) => {
        /// 16 channels of one position.
        type L = [$vec; 16 / $lanes];

        $(#[$attr])*
        unsafe fn ld(p: *const f32) -> L {
            let mut r = [$zero; 16 / $lanes];
            for (i, v) in r.iter_mut().enumerate() {
                *v = $load(p.add(i * $lanes));
            }
            r
        }

        $(#[$attr])*
        unsafe fn st(p: *mut f32, v: &L) {
            for (i, x) in v.iter().enumerate() {
                $store(p.add(i * $lanes), *x);
            }
        }

        $(#[$attr])*
        unsafe fn ladd(a: &L, b: &L) -> L {
            let mut r = *a;
            for i in 0..16 / $lanes {
                r[i] = $add(a[i], b[i]);
            }
            r
        }

        $(#[$attr])*
        unsafe fn lsub(a: &L, b: &L) -> L {
            let mut r = *a;
            for i in 0..16 / $lanes {
                r[i] = $sub(a[i], b[i]);
            }
            r
        }

        /// `Bᵀ` on one axis: `[d0 − d2, d1 + d2, d2 − d1, d1 − d3]`.
        $(#[$attr])*
        unsafe fn bt(d: [&L; 4]) -> [L; 4] {
            [lsub(d[0], d[2]), ladd(d[1], d[2]), lsub(d[2], d[1]), lsub(d[1], d[3])]
        }

        /// `Aᵀ` on one axis: `[m0 + m1 + m2, m1 − m2 − m3]`, summed left to right.
        $(#[$attr])*
        unsafe fn at(m: [&L; 4]) -> [L; 2] {
            [ladd(&ladd(m[0], m[1]), m[2]), lsub(&lsub(m[1], m[2]), m[3])]
        }

        /// Channels `j0..j0 + n` (`n ≤ 16`, zero-filled to 16) of the voxel at `s`.
        $(#[$attr])*
        unsafe fn gather(s: *const f32, j0: usize, n: usize) -> L {
            if n == 16 {
                return ld(s.add(j0));
            }
            let mut t = [0.0f32; 16];
            std::ptr::copy_nonoverlapping(s.add(j0), t.as_mut_ptr(), n);
            ld(t.as_ptr())
        }

        /// Transforms channels `j0..j0 + 16` (fewer at the end) of the 4³ tile at `src` (its
        /// origin voxel's channel `c0`) into `V`: position `p = 16z + 4y + x` goes to `v + p · pstride` (16 floats;
        /// lanes past the last channel are zero). `Bᵀ` along x, then y, then z.
        ///
        /// # Safety
        /// `src + c.vox[p] + j` readable for every `p` and `j0 ≤ j < min(j0 + 16, rows)`,
        /// `v + p · pstride .. + 16` writable for every `p`.
        $(#[$attr])*
        unsafe fn input(c: &Ctx<'_>, src: *const f32, j0: usize, v: *mut f32, pstride: usize) {
            let n = (c.rows - j0).min(16);
            // Uninitialised: zeroing 4 KiB per call would cost more than a tenth of the layer.
            let mut d = [std::mem::MaybeUninit::<L>::uninit(); 64];
            let ahead = crate::nn::winograd::transform::PREFETCH_TILES * 2 * c.a.in_stride + j0;
            for zy in 0..16 {
                // This line's voxels of the tile `PREFETCH_TILES` further along x (past the
                // row's end: a harmless hint, never dereferenced).
                let p = src.wrapping_add(c.vox[4 * zy] + ahead);
                $prefetch(p);
                $prefetch(p.wrapping_add(c.a.in_stride));
                let mut g = [[$zero; 16 / $lanes]; 4];
                for (x, gx) in g.iter_mut().enumerate() {
                    *gx = gather(src.add(c.vox[4 * zy + x]), j0, n);
                }
                let r = bt([&g[0], &g[1], &g[2], &g[3]]);
                for (x, rx) in r.into_iter().enumerate() {
                    d[4 * zy + x].write(rx);
                }
            }
            // SAFETY: the loop above wrote all 64 entries (4·zy + x for zy < 16, x < 4).
            let d = &mut *(&mut d as *mut [std::mem::MaybeUninit<L>; 64] as *mut [L; 64]);
            for z in 0..4 {
                for x in 0..4 {
                    let b = 16 * z + x;
                    let r = bt([&d[b], &d[b + 4], &d[b + 8], &d[b + 12]]);
                    for (y, ry) in r.iter().enumerate() {
                        d[b + 4 * y] = *ry;
                    }
                }
            }
            let mut f = [1.0f32; 16];
            if let Some(sc) = c.a.scale {
                f[..n].copy_from_slice(&sc[j0..j0 + n]);
            }
            let f = ld(f.as_ptr());
            for yx in 0..16 {
                let r = bt([&d[yx], &d[16 + yx], &d[32 + yx], &d[48 + yx]]);
                for (z, rz) in r.iter().enumerate() {
                    let mut o = *rz;
                    if c.a.scale.is_some() {
                        for i in 0..16 / $lanes {
                            o[i] = $mul(o[i], f[i]);
                        }
                    }
                    st(v.add((16 * z + yx) * pstride), &o);
                }
            }
        }

        /// Output channels `co..co + lanes` of one tile: `Y = Aᵀ M A` of the 64 products at
        /// `m + p · pstride` (`Aᵀ` along x, then y, then z), plus the bias (16 lanes from
        /// `co`), ReLU if asked, stored to `out + c.ovox[q]` for the 8 output voxels.
        ///
        /// # Safety
        /// `m + p · pstride .. + 16` readable for every `p`, `bias .. + 16` readable,
        /// `out + c.ovox[q] .. + lanes` writable.
        $(#[$attr])*
        unsafe fn output(
            c: &Ctx<'_>,
            m: *const f32,
            pstride: usize,
            bias: *const f32,
            lanes: usize,
            out: *mut f32,
        ) {
            // Uninitialised, as in `input`. x: [z 4][y 4][x 2], y: [z 4][y 2][x 2].
            let mut x = [std::mem::MaybeUninit::<L>::uninit(); 32];
            for zy in 0..16 {
                let mut g = [[$zero; 16 / $lanes]; 4];
                for (i, gi) in g.iter_mut().enumerate() {
                    *gi = ld(m.add((4 * zy + i) * pstride));
                }
                let r = at([&g[0], &g[1], &g[2], &g[3]]);
                x[2 * zy].write(r[0]);
                x[2 * zy + 1].write(r[1]);
            }
            // SAFETY: the loop above wrote all 32 entries (2·zy and 2·zy + 1 for zy < 16).
            let x = &*(&x as *const [std::mem::MaybeUninit<L>; 32] as *const [L; 32]);
            let mut y = [std::mem::MaybeUninit::<L>::uninit(); 16];
            for z in 0..4 {
                for i in 0..2 {
                    let b = 8 * z + i;
                    let r = at([&x[b], &x[b + 2], &x[b + 4], &x[b + 6]]);
                    y[4 * z + i].write(r[0]);
                    y[4 * z + 2 + i].write(r[1]);
                }
            }
            // SAFETY: the loop above wrote all 16 entries (4z + i and 4z + 2 + i, z < 4, i < 2).
            let y = &*(&y as *const [std::mem::MaybeUninit<L>; 16] as *const [L; 16]);
            let bias = ld(bias);
            for yx in 0..4 {
                let r = at([&y[yx], &y[4 + yx], &y[8 + yx], &y[12 + yx]]);
                for (z, o) in r.iter().enumerate() {
                    let mut v = ladd(o, &bias);
                    if c.a.relu {
                        for i in 0..16 / $lanes {
                            v[i] = $relu(v[i]);
                        }
                    }
                    let dst = out.add(c.ovox[4 * z + yx]);
                    if lanes == 16 {
                        st(dst, &v);
                    } else {
                        let mut t = [0.0f32; 16];
                        st(t.as_mut_ptr(), &v);
                        std::ptr::copy_nonoverlapping(t.as_ptr(), dst, lanes);
                    }
                }
            }
        }
    };
}
