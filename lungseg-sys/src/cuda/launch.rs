//! Every kernel launch as data: grid, block and the argument list in the kernel's parameter
//! order, built by one typed function per kernel. Each network kernel takes one by-value
//! parameter struct ([`super::params`], mirrored in its `.cu`): its launcher fills the struct
//! and names the buffers its pointer fields get ([`Params`]). [`super::engine::CudaEngine`]
//! turns a [`Launch`] into a cudarc launch and the host emulator ([`super::emu`], feature
//! `cuda-emu`) runs the same value, so the emulated tests check exactly what the GPU is given.
//!
//! `B` names buffers: the engine's [`Slot`]s, or an emulator buffer id in kernel tests.

use std::mem::offset_of;

use super::params::{Conv3Args, ExpandArgs, FirstArgs, HeadAccArgs, HeadFinArgs, PoolArgs, UpArgs};
use super::plan::{layer_drop, Chunk, ChunkDrop, Op, Plan};
use super::reference::LsDrop;
use crate::predict::Flip;

/// A kernel's parameter struct as bytes, and the buffer each pointer field points to (`None`:
/// a null pointer). Whoever launches it writes the buffers' addresses at those offsets.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<B> {
    pub bytes: Vec<u8>,
    pub ptrs: Vec<(usize, Option<B>)>,
}

impl<B> Params<B> {
    /// `args` with its pointer fields still 0.
    fn new<T: bytemuck::Pod>(args: &T) -> Params<B> {
        Params {
            bytes: bytemuck::bytes_of(args).to_vec(),
            ptrs: Vec::new(),
        }
    }

    /// The pointer field at `offset` points to `buf`.
    fn at(mut self, offset: usize, buf: impl Into<Option<B>>) -> Params<B> {
        self.ptrs.push((offset, buf.into()));
        self
    }
}

/// One kernel argument: a network kernel's parameter struct, or (the emulator's self-test
/// kernels) one scalar or pointer.
#[derive(Clone, Debug, PartialEq)]
pub enum KArg<B> {
    Params(Params<B>),
    Buf(B),
    /// A null pointer (optional outputs of `ls_head_finalize`).
    Null,
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
    Drop(LsDrop),
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch<B> {
    pub func: &'static str,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dyn_smem: u32,
    pub args: Vec<KArg<B>>,
}

impl<B: Copy> Launch<B> {
    /// The same launch with its buffers renamed by `f`.
    pub fn map<C>(&self, mut f: impl FnMut(B) -> C) -> Launch<C> {
        let args = self
            .args
            .iter()
            .map(|a| match *a {
                KArg::Params(ref p) => KArg::Params(Params {
                    bytes: p.bytes.clone(),
                    ptrs: p.ptrs.iter().map(|&(o, b)| (o, b.map(&mut f))).collect(),
                }),
                KArg::Buf(b) => KArg::Buf(f(b)),
                KArg::Null => KArg::Null,
                KArg::I32(v) => KArg::I32(v),
                KArg::U32(v) => KArg::U32(v),
                KArg::U64(v) => KArg::U64(v),
                KArg::F32(v) => KArg::F32(v),
                KArg::Drop(v) => KArg::Drop(v),
            })
            .collect();
        Launch {
            func: self.func,
            grid: self.grid,
            block: self.block,
            dyn_smem: self.dyn_smem,
            args,
        }
    }
}

/// The tile shape of a tensor-core GEMM kernel, `ls_conv3` or `ls_upconv2` (their `.cu`
/// headers explain each constant and the layouts). NVRTC and the emulator compile the kernel
/// with these as `-D` constants ([`CONV3_DEFINES`], [`UPCONV_DEFINES`]); the launchers size
/// the grid, block and dynamic shared memory from the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaTile {
    /// Warps per block, stacked along M.
    pub warps: u32,
    /// m16 tiles per warp (even).
    pub wm: u32,
    /// n8 tiles per warp (even).
    pub wn: u32,
    /// K groups of 16 per pipeline step.
    pub kg: u32,
    /// cp.async pipeline stages.
    pub stages: u32,
}

impl MmaTile {
    pub const fn threads(&self) -> u32 {
        32 * self.warps
    }
    /// Output voxels per block.
    pub const fn bm(&self) -> u32 {
        16 * self.wm * self.warps
    }
    /// Output channels per block.
    pub const fn bn(&self) -> u32 {
        8 * self.wn
    }
    /// Dynamic shared memory: every stage holds A [BM][16·KG] and B [BN][16·KG] halves.
    pub const fn smem_bytes(&self) -> u32 {
        self.stages * (self.bm() + self.bn()) * 16 * self.kg * 2
    }
}

/// 4 warps of 32×32 (128 voxels × 32 channels), K steps of 32, 3 stages: 30 KiB of shared
/// memory, under the 48 KiB a launch gets without an opt-in.
pub const CONV3_TILE: MmaTile = MmaTile {
    warps: 4,
    wm: 2,
    wn: 4,
    kg: 2,
    stages: 3,
};

/// One warp of 32×32 (32 voxels × 32 channels), otherwise [`CONV3_TILE`]: 4× the blocks of the
/// wide tile for the deep levels (at 64³ and 20 samples, level 4 is M = 1280 voxels: 40 wide
/// blocks for 132 SMs, 160 narrow ones), 12 KiB of shared memory, so many blocks share an SM.
pub const CONV3_NARROW_TILE: MmaTile = MmaTile {
    warps: 1,
    ..CONV3_TILE
};

/// A layer's grid of wide blocks below this uses [`CONV3_NARROW`]: two waves of a 132-SM card
/// (H100/H200; an A100 has 108). Unmeasured: a first GPU run should tune it
/// (`docs/cuda.md`, "What remains").
pub const CONV3_NARROW_BELOW: usize = 264;

/// One compiled entry point of conv3.cu: its function and the tile it was compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3Kernel {
    pub func: &'static str,
    pub tile: MmaTile,
}

/// `ls_conv3`, the wide tile.
pub const CONV3_WIDE: Conv3Kernel = Conv3Kernel {
    func: "ls_conv3",
    tile: CONV3_TILE,
};

/// `ls_conv3_narrow`, the narrow tile.
pub const CONV3_NARROW: Conv3Kernel = Conv3Kernel {
    func: "ls_conv3_narrow",
    tile: CONV3_NARROW_TILE,
};

/// The entry point for a layer of `m` output voxels (all samples) and `cout` channels: the wide
/// tile unless its grid has fewer than [`CONV3_NARROW_BELOW`] blocks.
pub fn conv3_kernel_for(m: usize, cout: usize) -> Conv3Kernel {
    let t = CONV3_TILE;
    let wide_blocks = m.div_ceil(t.bm() as usize) * cout.div_ceil(t.bn() as usize);
    if wide_blocks < CONV3_NARROW_BELOW {
        CONV3_NARROW
    } else {
        CONV3_WIDE
    }
}

const fn conv3_defines(t: MmaTile, narrow: u32) -> [(&'static str, u32); 6] {
    [
        ("CONV_WARPS", t.warps),
        ("CONV_WM", t.wm),
        ("CONV_WN", t.wn),
        ("CONV_KG", t.kg),
        ("CONV_STAGES", t.stages),
        ("CONV_NARROW", narrow),
    ]
}

/// [`CONV3_WIDE`]'s compile-time constants.
pub const CONV3_DEFINES: &[(&str, u32)] = &conv3_defines(CONV3_TILE, 0);

/// [`CONV3_NARROW`]'s compile-time constants.
pub const CONV3_NARROW_DEFINES: &[(&str, u32)] = &conv3_defines(CONV3_NARROW_TILE, 1);

/// The tile of `ls_upconv2`: conv3's (a dense GEMM of the same operand layouts), so one shape
/// is tuned and checked.
pub const UPCONV_TILE: MmaTile = CONV3_TILE;

/// [`UPCONV_TILE`] as the kernel's compile-time constants.
pub const UPCONV_DEFINES: &[(&str, u32)] = &[
    ("UP_WARPS", UPCONV_TILE.warps),
    ("UP_WM", UPCONV_TILE.wm),
    ("UP_WN", UPCONV_TILE.wn),
    ("UP_KG", UPCONV_TILE.kg),
    ("UP_STAGES", UPCONV_TILE.stages),
];

/// Largest dynamic shared memory a launch gets without `cuFuncSetAttribute`.
pub const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;
const _: () = assert!(CONV3_TILE.smem_bytes() <= DEFAULT_SMEM_LIMIT);
const _: () = assert!(CONV3_NARROW_TILE.smem_bytes() <= DEFAULT_SMEM_LIMIT);
const _: () = assert!(UPCONV_TILE.smem_bytes() <= DEFAULT_SMEM_LIMIT);

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

fn linear<B>(func: &'static str, threads: usize, per_block: u32, params: Params<B>) -> Launch<B> {
    Launch {
        func,
        grid: [blocks(threads, per_block as usize), 1, 1],
        block: [per_block, 1, 1],
        dyn_smem: 0,
        args: vec![KArg::Params(params)],
    }
}

/// `ls_conv_first` (conv_first.cu).
pub struct ConvFirst<B> {
    pub hu: B,
    pub window: (f32, f32),
    pub w: B,
    pub bias: B,
    pub out: B,
    pub cout: usize,
    pub dims: [usize; 3],
}

pub fn conv_first<B>(a: ConvFirst<B>) -> Launch<B> {
    let [d, h, w] = a.dims;
    let p = FirstArgs {
        lo: a.window.0,
        hi: a.window.1,
        cout: a.cout as i32,
        d: d as i32,
        h: h as i32,
        wd: w as i32,
        ..FirstArgs::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(FirstArgs, hu), a.hu)
        .at(offset_of!(FirstArgs, w), a.w)
        .at(offset_of!(FirstArgs, bias), a.bias)
        .at(offset_of!(FirstArgs, out), a.out);
    linear("ls_conv_first", d * h * w, 128, params)
}

/// `ls_dropout_expand` (dropout.cu): `v` voxels of `c` channels into `s` samples.
pub struct Expand<B> {
    pub input: B,
    pub out: B,
    pub s: usize,
    pub v: usize,
    pub c: usize,
    pub drop: LsDrop,
}

pub fn expand<B>(a: Expand<B>) -> Launch<B> {
    let p = ExpandArgs {
        drop: a.drop,
        s: a.s as i32,
        v: a.v as u32,
        c: a.c as i32,
        ..ExpandArgs::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(ExpandArgs, input), a.input)
        .at(offset_of!(ExpandArgs, out), a.out);
    linear("ls_dropout_expand", a.s * a.v * a.c / 2, 256, params)
}

/// One input of `ls_conv3`: buffer, channels, batch stride in elements (0 = shared).
#[derive(Clone, Copy)]
pub struct ConvSrc<B> {
    pub buf: B,
    pub c: usize,
    pub stride: u64,
}

/// `ls_conv3` (conv3.cu). Without `src1` the kernel gets `src0` again with 0 channels.
pub struct Conv3<B> {
    pub src0: ConvSrc<B>,
    pub src1: Option<ConvSrc<B>>,
    pub w: B,
    pub bias: B,
    pub out: B,
    pub cout: usize,
    pub s: usize,
    pub dims: [usize; 3],
    pub relu: bool,
    pub drop: LsDrop,
}

/// `ls_conv3` or `ls_conv3_narrow`, as [`conv3_kernel_for`] picks for the layer.
pub fn conv3<B: Copy>(a: Conv3<B>) -> Launch<B> {
    let k = conv3_kernel_for(a.s * a.dims.iter().product::<usize>(), a.cout);
    conv3_with(a, k)
}

/// The conv3 launch on entry point `k` (tests run both on one layer).
pub fn conv3_with<B: Copy>(a: Conv3<B>, k: Conv3Kernel) -> Launch<B> {
    let [d, h, w] = a.dims;
    let s1 = a.src1.unwrap_or(ConvSrc {
        buf: a.src0.buf,
        c: 0,
        stride: 0,
    });
    let p = Conv3Args {
        ss0: a.src0.stride,
        ss1: s1.stride,
        drop: a.drop,
        c0: a.src0.c as i32,
        c1: s1.c as i32,
        cout: a.cout as i32,
        s: a.s as i32,
        d: d as i32,
        h: h as i32,
        wd: w as i32,
        relu: i32::from(a.relu),
        ..Conv3Args::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(Conv3Args, src0), a.src0.buf)
        .at(offset_of!(Conv3Args, src1), s1.buf)
        .at(offset_of!(Conv3Args, w), a.w)
        .at(offset_of!(Conv3Args, bias), a.bias)
        .at(offset_of!(Conv3Args, out), a.out);
    let t = k.tile;
    Launch {
        func: k.func,
        grid: [
            blocks(a.s * d * h * w, t.bm() as usize),
            blocks(a.cout, t.bn() as usize),
            1,
        ],
        block: [t.threads(), 1, 1],
        dyn_smem: t.smem_bytes(),
        args: vec![KArg::Params(params)],
    }
}

/// `ls_maxpool2` (pool.cu): `dims` are the input's.
pub struct Pool<B> {
    pub input: B,
    pub out: B,
    pub s: usize,
    pub dims: [usize; 3],
    pub c: usize,
}

pub fn pool<B>(a: Pool<B>) -> Launch<B> {
    let [d, h, w] = a.dims;
    let p = PoolArgs {
        s: a.s as i32,
        d: d as i32,
        h: h as i32,
        wd: w as i32,
        c: a.c as i32,
        ..PoolArgs::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(PoolArgs, input), a.input)
        .at(offset_of!(PoolArgs, out), a.out);
    // One thread per output voxel and channel pair.
    let threads = a.s * (d / 2) * (h / 2) * (w / 2) * (a.c / 2);
    linear("ls_maxpool2", threads, 256, params)
}

/// `ls_upconv2` (upconv.cu): `dims` are the input's.
pub struct Up<B> {
    pub input: B,
    pub cin: usize,
    pub w: B,
    pub bias: B,
    pub out: B,
    pub cout: usize,
    pub s: usize,
    pub dims: [usize; 3],
}

pub fn upconv<B>(a: Up<B>) -> Launch<B> {
    let [d, h, w] = a.dims;
    let p = UpArgs {
        cin: a.cin as i32,
        cout: a.cout as i32,
        s: a.s as i32,
        d: d as i32,
        h: h as i32,
        wd: w as i32,
        ..UpArgs::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(UpArgs, input), a.input)
        .at(offset_of!(UpArgs, w), a.w)
        .at(offset_of!(UpArgs, bias), a.bias)
        .at(offset_of!(UpArgs, out), a.out);
    let t = UPCONV_TILE;
    Launch {
        func: "ls_upconv2",
        grid: [
            blocks(a.s * d * h * w, t.bm() as usize),
            blocks(8 * a.cout, t.bn() as usize),
            1,
        ],
        block: [t.threads(), 1, 1],
        dyn_smem: t.smem_bytes(),
        args: vec![KArg::Params(params)],
    }
}

/// The per-voxel MC state of the head kernels.
#[derive(Clone, Copy)]
pub struct HeadState<B> {
    pub mean: B,
    pub m2: B,
    pub sum_h: B,
    pub any_fg: B,
}

/// Threads per block of both head kernels (head.cu gets it as a constant, [`HEAD_DEFINES`]): a
/// multiple of 64, so that each block composes whole u64 words of the sample masks.
pub const HEAD_THREADS: u32 = 256;
const _: () = assert!(HEAD_THREADS.is_multiple_of(64) && HEAD_THREADS <= 1024);

/// [`HEAD_THREADS`] as the head kernels' compile-time constant.
pub const HEAD_DEFINES: &[(&str, u32)] = &[("HEAD_THREADS", HEAD_THREADS)];

/// u32 words of one sample's mask row from `ls_head_accumulate` for `v` voxels: bit `i % 32`
/// of word `i / 32` is voxel `i`, rounded up to whole u64 words (pairs, little-endian).
pub fn head_mask_words(v: usize) -> usize {
    2 * v.div_ceil(64)
}

/// `ls_head_accumulate` (head.cu): folds `s` samples into `state` after `n0` earlier ones;
/// `masks` (optional) gets the chunk's `s` mask rows of [`head_mask_words`]`(v)` u32 words.
pub struct HeadAcc<B> {
    pub x: B,
    pub c: usize,
    pub w: B,
    pub bias: f32,
    pub s: usize,
    pub v: usize,
    pub n0: u32,
    /// The model's mask threshold.
    pub mask_t: f32,
    pub state: HeadState<B>,
    pub masks: Option<B>,
    /// The chunk's test-time flip and the grid (d, h, w) it mirrors: the samples' output is
    /// read at each state voxel's mirror image.
    pub flip: Flip,
    pub dims: [usize; 3],
}

pub fn head_accumulate<B>(a: HeadAcc<B>) -> Launch<B> {
    let [_, h, w] = a.dims;
    let p = HeadAccArgs {
        flip: a.flip.bits(),
        nx: w as u32,
        ny: h as u32,
        bias: a.bias,
        c: a.c as i32,
        s: a.s as i32,
        v: a.v as u32,
        n0: a.n0 as i32,
        mask_t: a.mask_t,
        mask_words: head_mask_words(a.v) as u32,
        ..HeadAccArgs::default()
    };
    let params = Params::new(&p)
        .at(offset_of!(HeadAccArgs, x), a.x)
        .at(offset_of!(HeadAccArgs, w), a.w)
        .at(offset_of!(HeadAccArgs, mean), a.state.mean)
        .at(offset_of!(HeadAccArgs, m2), a.state.m2)
        .at(offset_of!(HeadAccArgs, sum_h), a.state.sum_h)
        .at(offset_of!(HeadAccArgs, any_fg), a.state.any_fg)
        .at(offset_of!(HeadAccArgs, masks), a.masks);
    linear("ls_head_accumulate", a.v, HEAD_THREADS, params)
}

/// `ls_head_finalize` (head.cu): `maps` = mean, variance, entropy, mutual information (each
/// optional); `partials` gets 6 sums per block of [`HEAD_THREADS`] voxels.
pub struct HeadFin<B> {
    pub state: HeadState<B>,
    pub n: u32,
    pub v: usize,
    /// The model's mask threshold.
    pub mask_t: f32,
    pub maps: [Option<B>; 4],
    pub partials: B,
}

pub fn head_finalize<B>(a: HeadFin<B>) -> Launch<B> {
    let p = HeadFinArgs {
        n: a.n as i32,
        v: a.v as u32,
        mask_t: a.mask_t,
        ..HeadFinArgs::default()
    };
    let [mean, var, ent, mi] = a.maps;
    let params = Params::new(&p)
        .at(offset_of!(HeadFinArgs, mean), a.state.mean)
        .at(offset_of!(HeadFinArgs, m2), a.state.m2)
        .at(offset_of!(HeadFinArgs, sum_h), a.state.sum_h)
        .at(offset_of!(HeadFinArgs, any_fg), a.state.any_fg)
        .at(offset_of!(HeadFinArgs, out_mean), mean)
        .at(offset_of!(HeadFinArgs, out_var), var)
        .at(offset_of!(HeadFinArgs, out_ent), ent)
        .at(offset_of!(HeadFinArgs, out_mi), mi)
        .at(offset_of!(HeadFinArgs, partials), a.partials);
    linear("ls_head_finalize", a.v, HEAD_THREADS, params)
}

/// Blocks of `ls_head_finalize` for `v` voxels (rows of its partial sums).
pub fn head_finalize_blocks(v: usize) -> usize {
    v.div_ceil(HEAD_THREADS as usize)
}

/// The buffers of [`CudaEngine`](super::engine::CudaEngine)'s workspace and weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `Plan::bufs[i]` (fp16 activations).
    Act(usize),
    /// The caller's HU patch (f32).
    Hu,
    FirstW,
    FirstB,
    ConvW(usize),
    ConvB(usize),
    UpW(usize),
    UpB(usize),
    HeadW,
    Mean,
    M2,
    SumH,
    AnyFg,
    /// The chunk's per-sample mask rows of `ls_head_accumulate` (u32).
    Masks,
    /// Output maps: mean, variance, entropy, mutual information (f32).
    Map(usize),
    /// `ls_head_finalize`'s per-block sums (f64).
    Partials,
}

/// Shape of one conv or up-conv weight tensor.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
}

/// What the launches of a [`Plan`] depend on besides the plan.
pub struct PlanLaunches<'a> {
    pub plan: &'a Plan,
    pub convs: &'a [ConvShape],
    pub ups: &'a [ConvShape],
    pub hu_window: (f32, f32),
    pub head_bias: f32,
    /// The model's mask threshold (`config.mask_threshold`).
    pub mask_t: f32,
}

const STATE: HeadState<Slot> = HeadState {
    mean: Slot::Mean,
    m2: Slot::M2,
    sum_h: Slot::SumH,
    any_fg: Slot::AnyFg,
};

impl PlanLaunches<'_> {
    /// The launch of `op` for a chunk of `s` samples after `n0` earlier ones; `None` for an op
    /// writing a shared buffer after the first chunk (see [`Plan::runs_once`]).
    pub fn op(&self, op: &Op, chunk: &Chunk, drop: Option<ChunkDrop>) -> Option<Launch<Slot>> {
        let plan = self.plan;
        let grid_of = |level: usize| plan.grids[level];
        let v0 = grid_of(0).iter().product::<usize>();
        let n0 = chunk.done;
        // Shared buffers are written once per flip of an MC call, by its first chunk, as one
        // sample.
        let (s, drop) = if plan.runs_once(op) {
            if !chunk.fresh {
                return None;
            }
            (1, None)
        } else {
            (chunk.s, drop)
        };
        Some(match *op {
            Op::First { out } => conv_first(ConvFirst {
                hu: Slot::Hu,
                window: self.hu_window,
                w: Slot::FirstW,
                bias: Slot::FirstB,
                out: Slot::Act(out),
                cout: plan.bufs[out].c,
                dims: grid_of(0),
            }),
            Op::Expand { src, out, layer } => expand(Expand {
                input: Slot::Act(src),
                out: Slot::Act(out),
                s,
                v: v0,
                c: plan.bufs[src].c,
                drop: layer_drop(drop, layer),
            }),
            Op::Conv {
                conv,
                src0,
                src1,
                out,
                level,
                layer,
            } => {
                let dims = grid_of(level);
                let vox = dims.iter().product::<usize>();
                let src = |b: usize| {
                    let x = plan.bufs[b];
                    ConvSrc {
                        buf: Slot::Act(b),
                        c: x.c,
                        stride: if x.shared { 0 } else { (vox * x.c) as u64 },
                    }
                };
                conv3(Conv3 {
                    src0: src(src0),
                    src1: src1.map(src),
                    w: Slot::ConvW(conv),
                    bias: Slot::ConvB(conv),
                    out: Slot::Act(out),
                    cout: self.convs[conv].cout,
                    s,
                    dims,
                    relu: true,
                    drop: layer_drop(drop, layer),
                })
            }
            Op::Pool { src, out, level_in } => pool(Pool {
                input: Slot::Act(src),
                out: Slot::Act(out),
                s,
                dims: grid_of(level_in),
                c: plan.bufs[src].c,
            }),
            Op::Up {
                up,
                src,
                out,
                level_in,
            } => upconv(Up {
                input: Slot::Act(src),
                cin: self.ups[up].cin,
                w: Slot::UpW(up),
                bias: Slot::UpB(up),
                out: Slot::Act(out),
                cout: self.ups[up].cout,
                s,
                dims: grid_of(level_in),
            }),
            Op::Head { src } => head_accumulate(HeadAcc {
                x: Slot::Act(src),
                c: plan.bufs[src].c,
                w: Slot::HeadW,
                bias: self.head_bias,
                s,
                v: v0,
                n0,
                mask_t: self.mask_t,
                state: STATE,
                masks: Some(Slot::Masks),
                flip: chunk.flip,
                dims: grid_of(0),
            }),
        })
    }

    /// `ls_head_finalize` after `n` samples, every map requested.
    pub fn finalize(&self, n: u32) -> Launch<Slot> {
        head_finalize(HeadFin {
            state: STATE,
            n,
            v: self.plan.grids[0].iter().product(),
            mask_t: self.mask_t,
            maps: [0, 1, 2, 3].map(|k| Some(Slot::Map(k))),
            partials: Slot::Partials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 samples of 3×4×6 voxels, 16 → 48 channels, one source.
    fn small_layer() -> Conv3<usize> {
        Conv3 {
            src0: ConvSrc {
                buf: 0,
                c: 16,
                stride: 0,
            },
            src1: None,
            w: 1,
            bias: 2,
            out: 3,
            cout: 48,
            s: 2,
            dims: [3, 4, 6],
            relu: true,
            drop: LsDrop::NONE,
        }
    }

    #[test]
    fn grids_cover_every_thread_the_kernels_index() {
        let l = pool(Pool {
            input: 0,
            out: 1,
            s: 3,
            dims: [6, 4, 10],
            c: 32,
        });
        // 3 · 3·2·5 voxels · 16 channel pairs = 1440 threads.
        assert_eq!((l.grid, l.block), ([6, 1, 1], [256, 1, 1]));
        let c = conv3_with(small_layer(), CONV3_WIDE);
        assert_eq!((c.grid, c.block), ([2, 2, 1], [128, 1, 1]));
        assert_eq!(c.dyn_smem, 3 * (128 + 32) * 32 * 2);
        // Without src1 the kernel gets src0 again, with 0 channels.
        let KArg::Params(p) = &c.args[0] else {
            panic!("{:?}", c.args)
        };
        assert!(p.ptrs.contains(&(offset_of!(Conv3Args, src1), Some(0))));
        let c1 = offset_of!(Conv3Args, c1);
        assert_eq!(p.bytes[c1..c1 + 4], 0i32.to_le_bytes());
        assert_eq!(c.func, "ls_conv3");
        // The narrow entry point on the same layer: 32 voxels × 32 channels per one-warp block.
        let n = conv3_with(small_layer(), CONV3_NARROW);
        assert_eq!(
            (n.func, n.grid, n.block),
            ("ls_conv3_narrow", [5, 2, 1], [32, 1, 1])
        );
        assert_eq!(n.dyn_smem, 3 * (32 + 32) * 32 * 2);
    }

    #[test]
    fn deep_levels_get_the_narrow_tile() {
        // 64³ patch, 20 samples: level 0 (64³, 16 stored channels) wide; level 3 (8³, 64
        // channels: 80 × 2 wide blocks) and level 4 (4³, 128 channels: 10 × 4) narrow.
        assert_eq!(conv3_kernel_for(20 * 64 * 64 * 64, 16), CONV3_WIDE);
        assert_eq!(conv3_kernel_for(20 * 8 * 8 * 8, 64), CONV3_NARROW);
        assert_eq!(conv3_kernel_for(20 * 4 * 4 * 4, 128), CONV3_NARROW);
        // The floor itself: exactly CONV3_NARROW_BELOW wide blocks stay wide, one fewer not.
        let bm = CONV3_TILE.bm() as usize;
        assert_eq!(conv3_kernel_for(CONV3_NARROW_BELOW * bm, 32), CONV3_WIDE);
        assert_eq!(
            conv3_kernel_for((CONV3_NARROW_BELOW - 1) * bm, 32),
            CONV3_NARROW
        );
        // Every layer of the narrow tile fits the shared memory of a default launch.
        assert!(CONV3_NARROW_TILE.smem_bytes() <= DEFAULT_SMEM_LIMIT);
    }
}
