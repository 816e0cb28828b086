//! The CUDA backend's network as data: [`Plan`] lists the kernel launches over named buffers,
//! built from the model's configuration. It is pure Rust, so [`run_reference`] executes it on
//! the CPU with the kernel references (tested against the CPU engine without a GPU), the
//! emulator runs it through the real kernel sources, and `CudaEngine` runs it on the device.
//!
//! Storage differs from the CPU engine in one way: the GPU stores activations *after* dropout
//! (the conv epilogue applies the mask and the `1/(1-p)` scale before the fp16 store), where
//! the CPU engine stores them before and folds the mask into the consumer's weights. Both
//! compute the same function; only rounding differs.
//!
//! MC structure: `ls_conv_first` (enc.0.conv1, before the first dropout) runs once per patch,
//! and so do the encoder levels before the first level with dropout ([`Plan::runs_once`]: shared
//! buffers, a batch of one); `ls_dropout_expand` applies layer 0 per sample when level 0 has
//! dropout; everything after runs on all samples of a chunk as one batch (`S` = chunk size,
//! chosen at open by `memory::Footprint::chunk`: weights and workspace within
//! `memory::DEVICE_BUDGET` and the device's free memory); `ls_head_accumulate` folds each chunk into per-voxel running
//! statistics and writes the chunk's per-sample masks, and `ls_head_finalize` writes the maps
//! and per-block summary sums. An MC prediction ([`ChunkHook`], [`McState`]) takes the masks
//! after each chunk and the running statistics at the end, and skips the finalize: the host
//! summarises them (`backend::cuda`).

use super::launch::head_mask_words;
use super::reference::{self as r, LsDrop, Src};
use super::weights::{stored_channels, GpuWeights};
use crate::error::Result;
pub use crate::model::dropout::{dec_layer, enc_layer};
use crate::model::dropout::{layer_level, LevelSet};
use crate::model::{DropoutKind, ModelConfig, Network};
use crate::predict::Flip;

/// A buffer of the plan: `[S][grid][c]` fp16 (or one shared `[grid][c]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    pub level: usize,
    pub c: usize,
    pub shared: bool,
}

/// One launch. Buffer operands index [`Plan::bufs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    First {
        out: usize,
    },
    /// Dropout layer 0 on the shared first output, per sample.
    Expand {
        src: usize,
        out: usize,
        layer: u32,
    },
    /// `convs[conv]`, output dropped by `layer`.
    Conv {
        conv: usize,
        src0: usize,
        src1: Option<usize>,
        out: usize,
        level: usize,
        layer: u32,
    },
    Pool {
        src: usize,
        out: usize,
        level_in: usize,
    },
    Up {
        up: usize,
        src: usize,
        out: usize,
        level_in: usize,
    },
    Head {
        src: usize,
    },
}

/// The network as launches over buffers (see the module doc).
#[derive(Clone, Debug)]
pub struct Plan {
    pub grids: Vec<[usize; 3]>,
    pub bufs: Vec<Buf>,
    pub ops: Vec<Op>,
}

impl Plan {
    /// Buffers per level l: P (layer-0 input at level 0, then up / decoder output), Q (pooled
    /// input, `C_{l-1}` channels), T (conv1 output), K (skip = encoder output), aliased where
    /// lifetimes allow; plus the shared first-layer output.
    ///
    /// The encoder levels before the first level with dropout (`ModelConfig::shared_levels`,
    /// the prefix the CPU engine's prologue shares) compute the same values for every sample:
    /// their buffers are shared (`[grid][c]`), their launches run once per MC call with a
    /// batch of one ([`Plan::runs_once`]), and the decoder reads their skips with batch
    /// stride 0. Every other buffer holds one tensor per sample.
    pub fn new(model: &Network) -> Plan {
        let cfg = model.config();
        // Buffers hold the stored channel counts (zero channels up to a multiple of 16).
        let ch: Vec<usize> = cfg.channels.iter().map(|&c| stored_channels(c)).collect();
        let [px, py, pz] = cfg.patch_size;
        let grids: Vec<[usize; 3]> = (0..ch.len()).map(|l| [pz >> l, py >> l, px >> l]).collect();
        let (bufs, ids) = BufIds::allocate(&ch, cfg.shared_levels());
        let mut ops = ids.encoder_ops();
        ids.decoder_ops(&mut ops);
        Plan { grids, bufs, ops }
    }

    /// Whether `op` writes a shared buffer: it runs once per MC call (with the first chunk),
    /// with a batch of one and no dropout.
    pub fn runs_once(&self, op: &Op) -> bool {
        let out = match *op {
            Op::First { out }
            | Op::Expand { out, .. }
            | Op::Conv { out, .. }
            | Op::Pool { out, .. }
            | Op::Up { out, .. } => out,
            Op::Head { .. } => return false,
        };
        self.bufs[out].shared
    }

    /// fp16 elements of buffer `b` for a batch of `s`.
    pub fn buf_len(&self, b: usize, s: usize) -> usize {
        let x = self.bufs[b];
        let [d, h, w] = self.grids[x.level];
        d * h * w * x.c * if x.shared { 1 } else { s }
    }

    /// Device bytes of the workspace for a batch of `s` (activations + head state + maps +
    /// the chunk's sample masks).
    pub fn workspace_bytes(&self, s: usize) -> usize {
        let act: usize = (0..self.bufs.len()).map(|b| self.buf_len(b, s) * 2).sum();
        let [d, h, w] = self.grids[0];
        let v = d * h * w;
        act + v * 4 * 8 + s * head_mask_words(v) * 4
    }
}

/// Where an MC run on the device (or the emulator) reports between its chunks.
pub trait ChunkHook {
    /// Before the chunk of samples `first..first + count`: an error stops the run there.
    fn before(&mut self, first: u32, count: u32) -> Result<()>;
    /// That chunk's per-sample masks as `ls_head_accumulate` wrote them: `count` rows of
    /// [`head_mask_words`]`(V)` u32 words, in sample order.
    fn masks(&mut self, rows: &[u32]) -> Result<()>;
}

/// The per-voxel running statistics `ls_head_accumulate` leaves after `n` samples (f32, as the
/// device holds them; `m2` and `sum_h` are sums, not yet divided by `n`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct McState {
    pub n: u32,
    pub mean: Vec<f32>,
    pub m2: Vec<f32>,
    pub sum_h: Vec<f32>,
}

/// One batch chunk of an MC call: samples `done..done + s`, all of one test-time flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub done: u32,
    pub s: usize,
    pub flip: Flip,
    /// The first chunk of its flip: the (mirrored) patch is uploaded and the ops every sample
    /// shares run, once, before it.
    pub fresh: bool,
}

/// The chunks of an MC call of `n_samples` with at most `chunk` samples each, cut where the
/// test-time flip changes (`flips`: the model's `test_time_flips`; 1 for single passes,
/// which never flip).
pub fn chunk_schedule(n_samples: u32, chunk: usize, flips: u32) -> Vec<Chunk> {
    let chunk = chunk.max(1);
    let flip = |i: u32| Flip::of_sample(i, n_samples, flips);
    let mut out = Vec::new();
    let mut done = 0u32;
    while done < n_samples {
        let f = flip(done);
        let fresh = done == 0 || flip(done - 1) != f;
        let mut end = done + 1;
        while end < n_samples && end - done < chunk as u32 && flip(end) == f {
            end += 1;
        }
        out.push(Chunk {
            done,
            s: (end - done) as usize,
            flip: f,
            fresh,
        });
        done = end;
    }
    out
}

/// `patch_hu` as the network sees it under `flip`: itself, or its mirror image in `buf`
/// (`size` = the model's patch size, x, y, z).
pub fn mirror_patch<'a>(
    patch_hu: &'a [f32],
    flip: Flip,
    size: [usize; 3],
    buf: &'a mut Vec<f32>,
) -> Result<&'a [f32]> {
    if flip.is_none() {
        return Ok(patch_hu);
    }
    if buf.len() != patch_hu.len() {
        *buf = crate::error::try_vec(patch_hu.len(), "mirrored patch")?;
    }
    flip.apply(size, patch_hu, buf);
    Ok(buf)
}

/// The buffers of a plan by role, one per level: `p` (the dropout-expanded input at level 0,
/// then the decoder's upsampled input and output), `t` (the decoder's first conv), `k` (the
/// encoder's output, kept for the skip), `t_enc` (the encoder's first conv) and `q` (the
/// pooled input of levels 1..).
struct BufIds {
    p: Vec<usize>,
    t: Vec<usize>,
    k: Vec<usize>,
    t_enc: Vec<usize>,
    q: Vec<usize>,
    /// Levels before the first level with dropout: their encoder buffers are shared.
    shared: usize,
}

impl BufIds {
    /// Buffer 0 is the first conv's output (shared); the rest in the order the fields list.
    fn allocate(ch: &[usize], shared: usize) -> (Vec<Buf>, BufIds) {
        let levels = ch.len();
        let mut bufs = vec![Buf {
            level: 0,
            c: ch[0],
            shared: true,
        }];
        let mut idx = |level: usize, c: usize, shared: bool| {
            bufs.push(Buf { level, c, shared });
            bufs.len() - 1
        };
        let is_shared = |l: usize| l < shared;
        let p: Vec<usize> = (0..levels).map(|l| idx(l, ch[l], false)).collect();
        let t: Vec<usize> = (0..levels).map(|l| idx(l, ch[l], false)).collect();
        let k: Vec<usize> = (0..levels).map(|l| idx(l, ch[l], is_shared(l))).collect();
        // The encoder's conv1 output of a shared level is shared; the decoder's is not.
        let t_enc: Vec<usize> = (0..levels)
            .map(|l| {
                if is_shared(l) {
                    idx(l, ch[l], true)
                } else {
                    t[l]
                }
            })
            .collect();
        // Pooled inputs of levels 1.. (the previous level's channel count), shared when the
        // level pooled from is.
        let q: Vec<usize> = (0..levels)
            .map(|l| {
                if l == 0 {
                    return p[0]; // never used: level 0 is not pooled into
                }
                idx(l, ch[l - 1], is_shared(l - 1))
            })
            .collect();
        let ids = BufIds {
            p,
            t,
            k,
            t_enc,
            q,
            shared,
        };
        (bufs, ids)
    }

    fn levels(&self) -> usize {
        self.k.len()
    }

    /// First conv, optional dropout expansion, level 0's second conv, then pool and two
    /// convs per deeper level; conv weights are numbered in this order.
    fn encoder_ops(&self) -> Vec<Op> {
        let (p, k, q, t_enc) = (&self.p, &self.k, &self.q, &self.t_enc);
        let mut ops = vec![Op::First { out: 0 }];
        let first_in = if self.shared > 0 {
            0
        } else {
            ops.push(Op::Expand {
                src: 0,
                out: p[0],
                layer: enc_layer(0, false),
            });
            p[0]
        };
        ops.push(Op::Conv {
            conv: 0,
            src0: first_in,
            src1: None,
            out: k[0],
            level: 0,
            layer: enc_layer(0, true),
        });
        for l in 1..self.levels() {
            let conv = 2 * l - 1;
            ops.push(Op::Pool {
                src: k[l - 1],
                out: q[l],
                level_in: l - 1,
            });
            ops.push(Op::Conv {
                conv,
                src0: q[l],
                src1: None,
                out: t_enc[l],
                level: l,
                layer: enc_layer(l, false),
            });
            ops.push(Op::Conv {
                conv: conv + 1,
                src0: t_enc[l],
                src1: None,
                out: k[l],
                level: l,
                layer: enc_layer(l, true),
            });
        }
        ops
    }

    /// Per level from the second deepest up: upsample, conv over (skip, upsampled), conv;
    /// then the head.
    fn decoder_ops(&self, ops: &mut Vec<Op>) {
        let (p, t, k) = (&self.p, &self.t, &self.k);
        let levels = self.levels();
        let mut conv = 2 * levels - 1;
        let mut last = k[levels - 1];
        for l in (0..levels.saturating_sub(1)).rev() {
            ops.push(Op::Up {
                up: l,
                src: last,
                out: p[l],
                level_in: l + 1,
            });
            ops.push(Op::Conv {
                conv,
                src0: k[l],
                src1: Some(p[l]),
                out: t[l],
                level: l,
                layer: dec_layer(levels, l, false),
            });
            ops.push(Op::Conv {
                conv: conv + 1,
                src0: t[l],
                src1: None,
                out: p[l],
                level: l,
                layer: dec_layer(levels, l, true),
            });
            conv += 2;
            last = p[l];
        }
        ops.push(Op::Head { src: last });
    }
}

/// Dropout of one MC chunk: `None` = deterministic pass.
#[derive(Clone, Copy, Debug)]
pub struct ChunkDrop {
    pub seed: u64,
    pub p: f32,
    pub element: bool,
    pub sample0: u32,
    /// The levels that drop, of a `net_levels`-level network.
    pub levels: LevelSet,
    pub net_levels: usize,
}

impl ChunkDrop {
    /// The dropout of `cfg` for the chunk starting at MC sample `sample0` of `seed`.
    pub fn new(cfg: &ModelConfig, seed: u64, sample0: u32) -> ChunkDrop {
        ChunkDrop {
            seed,
            p: cfg.dropout.p,
            element: cfg.dropout.kind == DropoutKind::Element,
            sample0,
            levels: cfg.dropout.levels,
            net_levels: cfg.levels(),
        }
    }
}

/// The kernels' dropout argument for `layer` of a chunk (`None`, or a level without dropout:
/// deterministic).
pub fn layer_drop(d: Option<ChunkDrop>, layer: u32) -> LsDrop {
    d.filter(|d| d.levels.contains(layer_level(d.net_levels, layer as usize)))
        .map_or(LsDrop::NONE, |d| {
            LsDrop::new(d.seed, d.p, layer, d.element, d.sample0)
        })
}

/// The whole network on the CPU through the kernel references: `n_samples` MC samples in
/// chunks of `chunk` (`drop = false`: one deterministic sample). Returns the head output.
pub fn run_reference(
    model: &Network,
    patch_hu: &[f32],
    seed: u64,
    n_samples: u32,
    chunk: usize,
    dropout: bool,
) -> r::HeadOut {
    run_reference_from(model, patch_hu, (seed, 0), n_samples, chunk, dropout)
}

/// [`run_reference`] over samples `sample0..sample0 + n_samples` of the seed's MC sequence,
/// `(seed, sample0)` being its key.
pub fn run_reference_from(
    model: &Network,
    patch_hu: &[f32],
    (seed, sample0): (u64, u32),
    n_samples: u32,
    chunk: usize,
    dropout: bool,
) -> r::HeadOut {
    let run = ReferenceRun {
        plan: Plan::new(model),
        wts: GpuWeights::new(model),
        cfg: model.config(),
        patch_hu,
    };
    let mut state = r::HeadState::default();
    let mut done = 0u32;
    let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); run.plan.bufs.len()];
    while done < n_samples {
        let chunk_s = chunk.min((n_samples - done) as usize);
        let cfg = run.cfg;
        let chunk_drop = dropout.then(|| ChunkDrop::new(cfg, seed, sample0.saturating_add(done)));
        for op in &run.plan.ops {
            // Ops before the first dropout run once, for the first chunk, on one sample.
            let once = run.plan.runs_once(op);
            if once && done > 0 {
                continue;
            }
            let (s, drop) = if once {
                (1, None)
            } else {
                (chunk_s, chunk_drop)
            };
            run.op(op, &mut bufs, (s, drop), &mut state);
        }
        done += chunk_s as u32;
    }
    r::head_finalize(&state, run.cfg.mask_threshold)
}

/// What [`run_reference_from`] runs each op of its plan with.
struct ReferenceRun<'a> {
    plan: Plan,
    wts: GpuWeights,
    cfg: &'a ModelConfig,
    patch_hu: &'a [f32],
}

impl ReferenceRun<'_> {
    /// One op on `s` samples with the chunk's dropout `drop`: its output buffer replaces
    /// `bufs[out]`, or the head folds its samples into `state`.
    fn op(
        &self,
        op: &Op,
        bufs: &mut [Vec<f32>],
        (s, drop): (usize, Option<ChunkDrop>),
        state: &mut r::HeadState,
    ) {
        let (plan, wts, cfg) = (&self.plan, &self.wts, self.cfg);
        match *op {
            Op::First { out } => {
                bufs[out] = r::conv_first(
                    self.patch_hu,
                    cfg.hu_window.0,
                    cfg.hu_window.1,
                    &wts.first_w,
                    &wts.first_b,
                    plan.bufs[out].c,
                    plan.grids[0],
                );
            }
            Op::Expand { src, out, layer } => {
                let [d, h, w] = plan.grids[0];
                bufs[out] = r::dropout_expand(
                    &bufs[src],
                    s,
                    d * h * w,
                    plan.bufs[src].c,
                    &layer_drop(drop, layer),
                );
            }
            Op::Conv {
                conv,
                src0,
                src1,
                out,
                level,
                layer,
            } => {
                let c = &wts.convs[conv];
                let mk = |b: usize| Src {
                    data: &bufs[b],
                    c: plan.bufs[b].c,
                    shared: plan.bufs[b].shared,
                };
                let o = r::conv3(
                    mk(src0),
                    src1.map(mk),
                    &c.w,
                    &c.bias,
                    c.cout,
                    s,
                    plan.grids[level],
                    true,
                    &layer_drop(drop, layer),
                );
                bufs[out] = o;
            }
            Op::Pool { src, out, level_in } => {
                bufs[out] = r::maxpool2(&bufs[src], s, plan.grids[level_in], plan.bufs[src].c);
            }
            Op::Up {
                up,
                src,
                out,
                level_in,
            } => {
                let u = &wts.ups[up];
                bufs[out] = r::upconv2(
                    &bufs[src],
                    u.cin,
                    &u.w,
                    &u.bias,
                    u.cout,
                    s,
                    plan.grids[level_in],
                );
            }
            Op::Head { src } => {
                r::head_accumulate(
                    &bufs[src],
                    plan.bufs[src].c,
                    &wts.head_w,
                    wts.head_b,
                    cfg.mask_threshold,
                    s,
                    state,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_where_the_flip_changes() {
        let got: Vec<(u32, usize, u32, bool)> = chunk_schedule(7, 3, 4)
            .iter()
            .map(|c| (c.done, c.s, c.flip.bits(), c.fresh))
            .collect();
        // Flips of samples 0..7 of a 4-flip model: 0 0 1 1 2 2 3.
        assert_eq!(
            got,
            [
                (0, 2, 0, true),
                (2, 2, 1, true),
                (4, 2, 2, true),
                (6, 1, 3, true)
            ]
        );
        let got: Vec<(u32, usize, bool)> = chunk_schedule(10, 4, 1)
            .iter()
            .map(|c| (c.done, c.s, c.fresh))
            .collect();
        assert_eq!(got, [(0, 4, true), (4, 4, false), (8, 2, false)]);
        let got: Vec<(u32, usize, bool)> = chunk_schedule(20, 2, 2)
            .iter()
            .map(|c| (c.done, c.s, c.fresh))
            .collect();
        assert_eq!(got[4..6], [(8, 2, false), (10, 2, true)]);
        assert!(chunk_schedule(0, 4, 8).is_empty());
    }
}
