//! CPU kernels for the U-Net, on NDHWC f32 activations stored with a one-voxel zero halo.
//!
//! Layout: an activation grid of `d × h × w` voxels is stored as `(d+2) × (h+2) × (w+2)`
//! voxels, z-major, x fastest, each voxel `stride` floats; a tensor may occupy channels
//! `[off, off + c)` of each voxel so that a decoder's `concat([skip, up])` is one buffer that
//! the skip writer and the transposed conv fill in place. Kernels write only interior voxels,
//! so halos stay zero and the 3³ convolution needs no boundary branches.
//!
//! Parallel loops split the output into contiguous z-planes (shares fixed by index) and run on
//! one bounded, process-wide team of helper threads (`team.rs`); each output value is computed
//! by exactly one thread in a fixed order, so results are bit-identical for any thread count.
//! Every kernel has a plain `reference` implementation used by the parity tests.
//!
//! The convolutions run on the instruction set a model chose at open ([`cpu_kernel`]). The
//! max-pool and the 1×1 head stay baseline code: they are memory-bound, with a few
//! operations per voxel and channel against the convolutions' 27 · channels.

pub mod conv3;
pub mod cpu_kernel;
pub mod head;
pub mod pool;
mod team;
pub mod upconv;
pub mod winograd;

pub use team::{available_cores, max_helpers};

/// Interior size of an activation grid (the halo is implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub d: usize,
    pub h: usize,
    pub w: usize,
}

impl Grid {
    pub fn new(d: usize, h: usize, w: usize) -> Grid {
        Grid { d, h, w }
    }
    /// Interior voxels.
    pub fn voxels(&self) -> usize {
        self.d * self.h * self.w
    }
    /// Stored voxels including the halo.
    pub fn padded_voxels(&self) -> usize {
        (self.d + 2) * self.plane()
    }
    /// Stored voxels per padded x-row.
    pub fn row(&self) -> usize {
        self.w + 2
    }
    /// Stored voxels per padded z-plane.
    pub fn plane(&self) -> usize {
        (self.h + 2) * (self.w + 2)
    }
    /// Stored voxel index of interior voxel (z, y, x).
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        ((z + 1) * (self.h + 2) + y + 1) * (self.w + 2) + x + 1
    }
    pub fn half(&self) -> Grid {
        Grid::new(self.d / 2, self.h / 2, self.w / 2)
    }
    pub fn double(&self) -> Grid {
        Grid::new(self.d * 2, self.h * 2, self.w * 2)
    }
}

/// Most shares a parallel loop splits into: one per helper thread and one for the caller.
fn max_shares() -> usize {
    team::max_helpers() + 1
}

/// Shares a loop of `n` units on `threads` threads splits into.
fn shares(n: usize, threads: usize) -> usize {
    // More shares than cores only queue up; the split never changes a value (see above).
    threads.clamp(1, n.max(1)).min(max_shares())
}

/// Runs `f(u, chunk)` for units `u in 0..n`, where unit `u` owns
/// `out[first + u·len ..][..len]`, on up to `threads` threads (contiguous ranges of units).
pub(crate) fn par_units<F>(
    out: &mut [f32],
    first: usize,
    len: usize,
    n: usize,
    threads: usize,
    f: F,
) where
    F: Fn(usize, &mut [f32]) + Sync,
{
    par_shares(out, (first, len, n), threads, |_, u, c| f(u, c));
}

/// [`par_units`] where each share also gets `per` floats of its own from `scratch`
/// (`f(u, chunk, scratch_of_share)`), which must hold `per` floats for every share that runs:
/// `threads · per` is always enough.
pub(crate) fn par_units_scratch<F>(
    out: &mut [f32],
    units: (usize, usize, usize),
    threads: usize,
    scratch: (&mut [f32], usize),
    f: F,
) where
    F: Fn(usize, &mut [f32], &mut [f32]) + Sync,
{
    let (scratch, per) = scratch;
    let t = shares(units.2, threads);
    assert!(
        scratch.len() >= t * per,
        "scratch for {t} shares of {per} floats"
    );
    let base = scratch.as_mut_ptr() as usize;
    par_shares(out, units, threads, |k, u, c| {
        // SAFETY: share k < t owns floats [k·per, (k+1)·per) of `scratch` (asserted to hold
        // t·per), disjoint from every other share's; `scratch` stays mutably borrowed until
        // `par_shares` returns.
        let mine = unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(k * per), per) };
        f(u, c, mine)
    });
}

/// The split behind [`par_units`]: `f(share, u, chunk)`, with `share < shares(n, threads)`.
fn par_shares<F>(out: &mut [f32], units: (usize, usize, usize), threads: usize, f: F)
where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    let (first, len, n) = units;
    let body = &mut out[first..first + n * len];
    let t = shares(n, threads);
    if t == 1 {
        for (u, c) in body.chunks_mut(len).enumerate() {
            f(0, u, c);
        }
        return;
    }
    let base = body.as_mut_ptr() as usize;
    let job = |k: usize| {
        let (u0, u1) = (n * k / t, n * (k + 1) / t);
        // SAFETY: the shares [u0, u1) of different k are disjoint and lie inside `body`, which
        // stays mutably borrowed until `team::run` has returned from every share.
        let mine = unsafe {
            std::slice::from_raw_parts_mut((base as *mut f32).add(u0 * len), (u1 - u0) * len)
        };
        for (i, c) in mine.chunks_mut(len).enumerate() {
            f(k, u0 + i, c);
        }
    };
    team::run(t, &job);
}

/// ReLU as `_mm512_max_ps(0, r)` computes it: NaN passes through (so a non-finite activation
/// reaches the output check instead of becoming a confident 0), and `-0.0` stays `-0.0`.
#[inline(always)]
pub(crate) fn relu(r: f32) -> f32 {
    if 0.0 > r {
        0.0
    } else {
        r
    }
}

/// `max(a, b)` that keeps a NaN from either side (`f32::max` drops it).
#[inline(always)]
pub(crate) fn max_keep_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

/// Packs a dense NDHWC tensor `[d][h][w][c]` into a zero-halo buffer (tests and benches).
pub fn pad(dense: &[f32], g: Grid, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; g.padded_voxels() * c];
    for z in 0..g.d {
        for y in 0..g.h {
            for x in 0..g.w {
                let s = ((z * g.h + y) * g.w + x) * c;
                let d = g.index(z, y, x) * c;
                out[d..d + c].copy_from_slice(&dense[s..s + c]);
            }
        }
    }
    out
}

/// Extracts channels `[off, off + c)` of a zero-halo buffer as dense NDHWC (tests and benches).
pub fn unpad(buf: &[f32], g: Grid, stride: usize, off: usize, c: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(g.voxels() * c);
    for z in 0..g.d {
        for y in 0..g.h {
            for x in 0..g.w {
                let s = g.index(z, y, x) * stride + off;
                out.extend_from_slice(&buf[s..s + c]);
            }
        }
    }
    out
}
