//! 3³ convolution, padding 1, stride 1, with bias and optional ReLU, by Winograd's minimal
//! filtering F(2×2×2, 3×3×3) (Lavin & Gray 2015, F(2, 3) along each axis): a 4³ input tile
//! gives a 2³ output tile with 64 element-wise products per (input, output) channel pair
//! instead of 8 · 27 = 216 multiply-adds, once both are transformed. The matrices are
//! exactly the standard ones:
//!
//! ```text
//!        | 1  0 -1  0 |         | 1    0    0   |
//!   Bᵀ = | 0  1  1  0 |    G =  | 1/2  1/2  1/2 |    Aᵀ = | 1  1  1  0 |
//!        | 0 -1  1  0 |         | 1/2 -1/2  1/2 |         | 0  1 -1 -1 |
//!        | 0  1  0 -1 |         | 0    0    1   |
//! ```
//!
//! applied along x, then y, then z: `U = G g Gᵀ` per (input, output) channel ([`weights`],
//! once at model load, in f64 and rounded once), `V = Bᵀ d B` per input tile and channel,
//! `Y = Aᵀ M A` with `M[p] = Σ_k V[p][k] · U[p][k]` for each of the 64 transformed positions
//! `p = 16·z + 4·y + x`.
//!
//! Layouts: input and output as in [`super::conv3`] (zero-halo NDHWC; the layer's input
//! channels are `[c0, c0 + rows)` of each input voxel, channels `[out_off, out_off + cout)` of
//! each output voxel are written). Transformed weights `U` are `[64][rows][cp]`
//! (`cp = pad16(cout)`). Every input channel is transformed (contiguous vector loads), and the
//! GEMMs sum over the channels listed in `keep` only: channel dropout passes its kept channels
//! and multiplies its scale into `V`, instead of copying the weights per sample. Tiles are
//! 2³ output voxels; a parallel unit is one z-pair of tiles (two output planes), cut into
//! blocks of at most `T` tiles (x fastest, then y). Per block and thread the scratch holds
//! `V [64][T][ks]` (`ks` = the tile stride: the power of two ≥ max(16, rows)) and
//! `M [64][T][cp]`, each position padded by one cache line; `T` keeps both within
//! [`BLOCK_FLOATS`] (an L2-sized share) where at least [`MIN_TILES`] fit. The batched GEMMs
//! run on the register tiles of [`super::conv3`] (one tap, `ks` as the input stride), see
//! `gemm.rs`.
//!
//! Every output is one tile's transform of `M`, and `M[p]` accumulates over `k` in order with
//! one FMA per step on the FMA kernels, so the AVX-512, AVX2 and NEON kernels give
//! bit-identical results (the transforms are lane-wise additions, identical at any vector
//! width), and a tile is computed by one thread whatever the block or thread split. The
//! values differ from the direct convolution's by rounding (the transformed inputs and
//! products are sums rounded once more per axis): see `tests/engine_winograd.rs` for the
//! bound.

#[macro_use]
mod transform;
mod gemm;

pub use transform::weights;

use super::cpu_kernel::CpuKernel;
use super::Grid;

/// Scratch floats a block of tiles may hold (V and M together): 256 KiB, half of a typical
/// L2, so the block's transformed inputs stay cached between the 64 GEMMs that read them.
pub const BLOCK_FLOATS: usize = 64 * 1024;

/// Fewest tiles in a block: the AVX-512 4×4 register tile wants four.
pub const MIN_TILES: usize = 4;

/// Most tiles in a block.
const MAX_TILES: usize = 64;

/// Most threads one Winograd convolution runs on: the engine's workspace holds this many
/// per-thread blocks, a number fixed so that the workspace size depends on the model alone
/// (not on the host's cores). A 64³ patch's level 0 has 32 parallel units.
pub const MAX_THREADS: usize = 16;

/// One Winograd convolution call.
pub struct WinoArgs<'a> {
    /// Zero-halo input, `grid.padded_voxels() · in_stride` floats at least.
    pub input: &'a [f32],
    /// Interior size; every dimension even.
    pub grid: Grid,
    pub in_stride: usize,
    /// The layer's input channels are `[c0, c0 + rows)` of each voxel (`rows` those of `u`).
    pub c0: usize,
    /// The channels (relative to `c0`, each also its row of `u`) the sums run over, in order.
    pub keep: &'a [u32],
    /// A factor per input channel (`rows` of them) applied to its transformed input (channel
    /// dropout's `1/(1-p)`); `None` means 1.
    pub scale: Option<&'a [f32]>,
    /// Transformed weights `[64][rows][pad16(cout)]` from [`weights`].
    pub u: &'a [f32],
    /// `[pad16(cout)]`.
    pub bias: &'a [f32],
    pub cout: usize,
    pub relu: bool,
    /// The instruction set to run on; must be [`CpuKernel::supported`] (asserted).
    pub kernel: CpuKernel,
}

/// Block geometry of a layer with `rows` weight rows and `cout` output channels.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Floats between consecutive tiles in `V` (a power of two ≥ 16).
    ks: usize,
    cp: usize,
    /// Tiles per block.
    tiles: usize,
    /// Floats between positions `p` and `p + 1` in `V` and in `M`: the block plus one cache
    /// line, so that the 64 positions of a tile fall into different L1 sets (a power-of-two
    /// stride puts them into two).
    vp: usize,
    mp: usize,
}

fn shape(rows: usize, cout: usize) -> Shape {
    let ks = rows.next_power_of_two().max(16);
    let cp = cout.div_ceil(16) * 16;
    let tiles = (BLOCK_FLOATS / (64 * (ks + cp))).clamp(MIN_TILES, MAX_TILES);
    Shape {
        ks,
        cp,
        tiles,
        vp: tiles * ks + 16,
        mp: tiles * cp + 16,
    }
}

/// Scratch floats one thread needs for a layer of `rows` weight rows and `cout` outputs.
pub fn scratch_floats(rows: usize, cout: usize) -> usize {
    let s = shape(rows, cout);
    64 * (s.vp + s.mp)
}

/// Whether a layer of `cin` input and `cout` output channels runs on Winograd in the engine:
/// with few channels the transforms cost more than the multiply-adds they save (measured in
/// BENCHMARKS.md, "Winograd F(2×2×2, 3×3×3) for the 3³ convolutions").
pub fn pays(cin: usize, cout: usize) -> bool {
    cin >= 16 && cout >= 16
}

/// Whether Winograd tiles cover `g` (every dimension even).
pub fn fits(g: Grid) -> bool {
    [g.d, g.h, g.w].iter().all(|n| n.is_multiple_of(2))
}

/// What the per-ISA block code reads.
struct Ctx<'a> {
    a: &'a WinoArgs<'a>,
    s: Shape,
    /// Rows of `u`.
    rows: usize,
    /// Offsets (floats) of the 4³ voxels of an input tile from its origin, `p = 16z + 4y + x`.
    vox: [usize; 64],
    /// Offsets (floats) of the 2³ voxels of an output tile from its origin, `4z + 2y + x`.
    ovox: [usize; 8],
    out_stride: usize,
    out_off: usize,
}

/// Writes channels `[out_off, out_off + cout)` of every interior voxel of `out` (zero-halo,
/// `out_stride` floats per voxel, same grid as the input). `scratch` holds
/// [`scratch_floats`]`(rows, cout)` floats per thread; the call runs on at most as many
/// threads as `scratch` has blocks (at least one).
pub fn winograd(
    a: &WinoArgs<'_>,
    out: &mut [f32],
    out_stride: usize,
    out_off: usize,
    threads: usize,
    scratch: &mut [f32],
) {
    let g = a.grid;
    let cp = a.cout.div_ceil(16) * 16;
    let rows = a.u.len() / (64 * cp).max(1);
    let s = shape(rows, a.cout);
    assert!(
        fits(g),
        "Winograd F(2,3) needs even grid dimensions, got {g:?}"
    );
    assert!(a.input.len() >= g.padded_voxels() * a.in_stride);
    assert!(a.c0 + rows <= a.in_stride);
    assert!(a.keep.iter().all(|&k| (k as usize) < rows));
    assert!(a.scale.is_none_or(|sc| sc.len() == rows));
    assert_eq!(a.u.len(), 64 * rows * s.cp);
    assert_eq!(a.bias.len(), s.cp);
    assert!(out_off + a.cout <= out_stride && out.len() >= g.padded_voxels() * out_stride);
    assert!(
        a.kernel.supported(),
        "{:?} kernel on a CPU without it",
        a.kernel
    );
    let per = 64 * (s.vp + s.mp);
    assert!(scratch.len() >= per, "Winograd scratch for one thread");
    let threads = threads.min(scratch.len() / per);
    let (row, plane_v) = (g.w + 2, g.plane());
    let vox =
        std::array::from_fn(|p| ((p / 16) * plane_v + (p / 4 % 4) * row + p % 4) * a.in_stride);
    let ovox =
        std::array::from_fn(|q| ((q / 4) * plane_v + (q / 2 % 2) * row + q % 2) * out_stride);
    let ctx = Ctx {
        a,
        s,
        rows,
        vox,
        ovox,
        out_stride,
        out_off,
    };
    let plane = g.plane() * out_stride;
    let tiles = (g.h / 2) * (g.w / 2);
    super::par_units_scratch(
        out,
        (plane, 2 * plane, g.d / 2),
        threads,
        (scratch, per),
        |u, chunk, scr| {
            let mut t0 = 0;
            while t0 < tiles {
                let n = s.tiles.min(tiles - t0);
                // SAFETY: `chunk` is output planes 2u+1, 2u+2 (padded), `scr` holds `per`
                // floats; the asserts above bound every input read (tile origins of z-pair
                // u, rows < h+2, columns < w+2, channels c0 + [0, rows) ≤ in_stride), every
                // V and U read (`keep` < rows ≤ ks) and every output write (interior voxels
                // of the two planes, channels below out_off + cout ≤ out_stride); the
                // kernel's instructions exist on this CPU (asserted above).
                unsafe { block(&ctx, u, t0, n, chunk.as_mut_ptr(), scr.as_mut_ptr()) };
                t0 += n;
            }
        },
    );
}

/// Tiles `t0..t0 + n` of tile z-pair `u` on the context's kernel.
///
/// # Safety
/// See the call in [`winograd`].
#[inline(always)]
unsafe fn block(c: &Ctx<'_>, u: usize, t0: usize, n: usize, out: *mut f32, scr: *mut f32) {
    match c.a.kernel {
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx512 => gemm::avx512::block(c, u, t0, n, out, scr),
        #[cfg(target_arch = "x86_64")]
        CpuKernel::Avx2 => gemm::avx2::block(c, u, t0, n, out, scr),
        #[cfg(target_arch = "aarch64")]
        CpuKernel::Neon => gemm::neon::block(c, u, t0, n, out, scr),
        _ => gemm::portable::block(c, u, t0, n, out, scr),
    }
}
