//! Orchestration of the CUDA backend.
//!
//! [`Plan`] is the network as a list of kernel launches over named buffers, built from the
//! model's configuration; it is pure Rust, so [`run_reference`] executes it on the CPU with
//! the kernel references (tested against the CPU engine without a GPU) and [`CudaEngine`]
//! executes the same plan on the device.
//!
//! Storage differs from the CPU engine in one way: the GPU stores activations *after* dropout
//! (the conv epilogue applies the mask and the `1/(1-p)` scale before the fp16 store), where
//! the CPU engine stores them before and folds the mask into the consumer's weights. Both
//! compute the same function; only rounding differs.
//!
//! MC structure: `ls_conv_first` (enc.0.conv1, before the first dropout) runs once per patch;
//! `ls_dropout_expand` applies layer 0 per sample; everything after runs on all samples of a
//! chunk as one batch (`S` = chunk size, chosen at open so that the workspace fits
//! [`WORKSPACE_BUDGET`]); `ls_head_accumulate` folds each chunk into per-voxel running
//! statistics and `ls_head_finalize` writes the maps and per-block summary sums.

use std::sync::{Arc, Mutex};

use half::f16;

use super::reference::{self as r, LsDrop, Src};
use crate::error::{Error, Result};
use crate::model::{DropoutKind, Model};

/// Dropout layer numbers (`docs/model-format.md`): execution order, two per block.
pub fn enc_layer(l: usize, second: bool) -> u32 {
    (2 * l + usize::from(second)) as u32
}

/// See [`enc_layer`]; decoder level `l` of `levels`.
pub fn dec_layer(levels: usize, l: usize, second: bool) -> u32 {
    (2 * levels + 2 * (levels - 2 - l) + usize::from(second)) as u32
}

/// Device memory the per-model workspace may use (weights are separate and small).
pub const WORKSPACE_BUDGET: usize = 768 << 20;

/// Weights in the kernels' layouts, fp16 values held as f32 (exactly representable) so the
/// CPU references and the upload share one copy.
pub struct GpuWeights {
    /// enc.0.conv1: `[32][cout]` f32 (taps 27..31 zero), bias `[cout]`.
    pub first_w: Vec<f32>,
    pub first_b: Vec<f32>,
    /// Every other 3³ conv, in plan order: `[cout][27][cin]`, bias `[cout]`.
    pub convs: Vec<ConvW>,
    /// `up[l]`: `[8][cout][cin]`.
    pub ups: Vec<ConvW>,
    pub head_w: Vec<f32>,
    pub head_b: f32,
}

pub struct ConvW {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub cin: usize,
    pub cout: usize,
}

fn conv_w(c: &crate::model::Conv3) -> ConvW {
    let cp = c.bias.len();
    let cin = c.w.len() / (27 * cp);
    let mut w = vec![0.0; c.cout * 27 * cin];
    for t in 0..27 {
        for ci in 0..cin {
            for co in 0..c.cout {
                w[(co * 27 + t) * cin + ci] = r::round_f16(c.w[(t * cin + ci) * cp + co]);
            }
        }
    }
    ConvW {
        w,
        bias: c.bias[..c.cout].to_vec(),
        cin,
        cout: c.cout,
    }
}

impl GpuWeights {
    pub fn new(model: &Model) -> GpuWeights {
        let net = &model.net;
        let c0 = &net.enc[0].conv1;
        let cp = c0.bias.len();
        let mut first_w = vec![0.0; 32 * c0.cout];
        for t in 0..27 {
            for co in 0..c0.cout {
                first_w[t * c0.cout + co] = c0.w[t * cp + co];
            }
        }
        let mut convs = vec![conv_w(&net.enc[0].conv2)];
        for b in &net.enc[1..] {
            convs.push(conv_w(&b.conv1));
            convs.push(conv_w(&b.conv2));
        }
        for l in (0..net.dec.len()).rev() {
            convs.push(conv_w(&net.dec[l].conv1));
            convs.push(conv_w(&net.dec[l].conv2));
        }
        let ups = net
            .up
            .iter()
            .enumerate()
            .map(|(l, u)| {
                let cp = u.bias.len();
                let cin = u.w.len() / (8 * cp);
                let cout = model.config().channels[l];
                let mut w = vec![0.0; 8 * cout * cin];
                for ci in 0..cin {
                    for o in 0..8 {
                        for co in 0..cout {
                            w[(o * cout + co) * cin + ci] =
                                r::round_f16(u.w[(ci * 8 + o) * cp + co]);
                        }
                    }
                }
                ConvW {
                    w,
                    bias: u.bias[..cout].to_vec(),
                    cin,
                    cout,
                }
            })
            .collect();
        GpuWeights {
            first_w,
            first_b: c0.bias[..c0.cout].to_vec(),
            convs,
            ups,
            head_w: net.head.w.clone(),
            head_b: net.head.bias,
        }
    }
}

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
    pub fn new(model: &Model) -> Plan {
        let cfg = model.config();
        let ch = &cfg.channels;
        let levels = ch.len();
        let [px, py, pz] = cfg.patch_size;
        let grids: Vec<[usize; 3]> = (0..levels).map(|l| [pz >> l, py >> l, px >> l]).collect();
        let mut bufs = vec![Buf {
            level: 0,
            c: ch[0],
            shared: true,
        }];
        let mut idx = |b: Buf| {
            bufs.push(b);
            bufs.len() - 1
        };
        let p: Vec<usize> = (0..levels)
            .map(|l| {
                idx(Buf {
                    level: l,
                    c: ch[l],
                    shared: false,
                })
            })
            .collect();
        let t: Vec<usize> = (0..levels)
            .map(|l| {
                idx(Buf {
                    level: l,
                    c: ch[l],
                    shared: false,
                })
            })
            .collect();
        let k: Vec<usize> = (0..levels)
            .map(|l| {
                idx(Buf {
                    level: l,
                    c: ch[l],
                    shared: false,
                })
            })
            .collect();
        // Pooled inputs of levels 1.. (the previous level's channel count).
        let q: Vec<usize> = (0..levels)
            .map(|l| {
                if l == 0 {
                    return p[0]; // never used: level 0 is not pooled into
                }
                idx(Buf {
                    level: l,
                    c: ch[l.saturating_sub(1)],
                    shared: false,
                })
            })
            .collect();
        let mut ops = vec![
            Op::First { out: 0 },
            Op::Expand {
                src: 0,
                out: p[0],
                layer: enc_layer(0, false),
            },
            Op::Conv {
                conv: 0,
                src0: p[0],
                src1: None,
                out: k[0],
                level: 0,
                layer: enc_layer(0, true),
            },
        ];
        let mut conv = 1;
        for l in 1..levels {
            ops.push(Op::Pool {
                src: k[l - 1],
                out: q[l],
                level_in: l - 1,
            });
            ops.push(Op::Conv {
                conv,
                src0: q[l],
                src1: None,
                out: t[l],
                level: l,
                layer: enc_layer(l, false),
            });
            ops.push(Op::Conv {
                conv: conv + 1,
                src0: t[l],
                src1: None,
                out: k[l],
                level: l,
                layer: enc_layer(l, true),
            });
            conv += 2;
        }
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
        Plan { grids, bufs, ops }
    }

    /// fp16 elements of buffer `b` for a batch of `s`.
    pub fn buf_len(&self, b: usize, s: usize) -> usize {
        let x = self.bufs[b];
        let [d, h, w] = self.grids[x.level];
        d * h * w * x.c * if x.shared { 1 } else { s }
    }

    /// Device bytes of the workspace for a batch of `s` (activations + head state + maps).
    pub fn workspace_bytes(&self, s: usize) -> usize {
        let act: usize = (0..self.bufs.len()).map(|b| self.buf_len(b, s) * 2).sum();
        let [d, h, w] = self.grids[0];
        act + d * h * w * 4 * 8
    }
}

/// Dropout of one MC chunk: `None` = deterministic pass.
#[derive(Clone, Copy, Debug)]
pub struct ChunkDrop {
    pub seed: u64,
    pub p: f32,
    pub element: bool,
    pub sample0: u32,
}

/// The kernels' dropout argument for `layer` of a chunk (`None`: deterministic).
pub fn layer_drop(d: Option<ChunkDrop>, layer: u32) -> LsDrop {
    d.map_or(LsDrop::NONE, |d| {
        LsDrop::new(d.seed, d.p, layer, d.element, d.sample0)
    })
}

/// The whole network on the CPU through the kernel references: `n_samples` MC samples in
/// chunks of `chunk` (`drop = false`: one deterministic sample). Returns the head output.
pub fn run_reference(
    model: &Model,
    patch_hu: &[f32],
    seed: u64,
    n_samples: u32,
    chunk: usize,
    dropout: bool,
) -> r::HeadOut {
    let plan = Plan::new(model);
    let wts = GpuWeights::new(model);
    let cfg = model.config();
    let element = cfg.dropout.kind == DropoutKind::Element;
    let mut state = r::HeadState::default();
    let mut done = 0u32;
    while done < n_samples {
        let s = chunk.min((n_samples - done) as usize);
        let drop = dropout.then_some(ChunkDrop {
            seed,
            p: cfg.dropout.p,
            element,
            sample0: done,
        });
        let mut bufs: Vec<Vec<f32>> = vec![Vec::new(); plan.bufs.len()];
        for op in &plan.ops {
            match *op {
                Op::First { out } => {
                    bufs[out] = r::conv_first(
                        patch_hu,
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
                        s,
                        &mut state,
                    );
                }
            }
        }
        done += s as u32;
    }
    r::head_finalize(&state)
}

/// Why a model cannot run on the CUDA backend (layout requirements of the kernels), if so.
pub fn unsupported_reason(model: &Model) -> Option<String> {
    if let Some(why) = fp16_overflow(model) {
        return Some(why);
    }
    let ch = &model.config().channels;
    if let Some(c) = ch.iter().find(|&&c| c % 16 != 0) {
        return Some(format!(
            "channel count {c} is not a multiple of 16 (tensor-core K tiles)"
        ));
    }
    if ch[0] > 64 {
        return Some(format!("first-level channels {} exceed 64", ch[0]));
    }
    None
}

/// The first BN-folded weight that the kernels hold as fp16 but fp16 cannot (it would round to
/// ±inf and turn whole activations into inf/NaN). The first layer and the head stay f32.
fn fp16_overflow(model: &Model) -> Option<String> {
    let net = &model.net;
    let mut layers: Vec<(String, &[f32])> = Vec::new();
    for (l, b) in net.enc.iter().enumerate() {
        if l > 0 {
            layers.push((format!("enc.{l}.conv1"), &b.conv1.w));
        }
        layers.push((format!("enc.{l}.conv2"), &b.conv2.w));
    }
    for (l, b) in net.dec.iter().enumerate() {
        layers.push((format!("dec.{l}.conv1"), &b.conv1.w));
        layers.push((format!("dec.{l}.conv2"), &b.conv2.w));
    }
    for (l, u) in net.up.iter().enumerate() {
        layers.push((format!("dec.{l}.up"), &u.w));
    }
    layers.into_iter().find_map(|(name, w)| {
        let v = w.iter().find(|&&v| !f16::from_f32(v).is_finite())?;
        Some(format!(
            "{name} has a BN-folded weight of {v:e}, beyond fp16's ±65504"
        ))
    })
}

pub use gpu::CudaEngine;

mod gpu {
    use super::*;
    use crate::cuda::launch::{head_finalize_blocks, ConvShape, KArg, Launch, PlanLaunches, Slot};
    use cudarc::driver::{
        CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
    };

    struct Kernels {
        first: CudaFunction,
        expand: CudaFunction,
        conv: CudaFunction,
        pool: CudaFunction,
        up: CudaFunction,
        head_acc: CudaFunction,
        head_fin: CudaFunction,
    }

    struct DevConv {
        w: CudaSlice<f16>,
        b: CudaSlice<f32>,
    }

    struct Workspace {
        bufs: Vec<CudaSlice<f16>>,
        hu: CudaSlice<f32>,
        mean: CudaSlice<f32>,
        m2: CudaSlice<f32>,
        sum_h: CudaSlice<f32>,
        any_fg: CudaSlice<u32>,
        maps: [CudaSlice<f32>; 4],
        partials: CudaSlice<f64>,
    }

    /// One model on device 0: weights uploaded once (fp16), workspace allocated once for
    /// `chunk` samples; calls are serialised on one stream.
    pub struct CudaEngine {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        k: Kernels,
        plan: Plan,
        first_w: CudaSlice<f32>,
        first_b: CudaSlice<f32>,
        convs: Vec<DevConv>,
        ups: Vec<DevConv>,
        conv_shapes: Vec<ConvShape>,
        up_shapes: Vec<ConvShape>,
        head_w: CudaSlice<f32>,
        head_b: f32,
        chunk: usize,
        hu_window: (f32, f32),
        p: f32,
        element: bool,
        ws: Mutex<Workspace>,
        pub device_name: String,
    }

    fn shapes(w: &[ConvW]) -> Vec<ConvShape> {
        w.iter()
            .map(|c| ConvShape {
                cin: c.cin,
                cout: c.cout,
            })
            .collect()
    }

    fn dev<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> Error + '_ {
        move |e| Error::device(format!("CUDA {what}: {e:?}"))
    }

    /// The per-voxel maps and summary sums of one call.
    pub struct DeviceResult {
        pub mean: Vec<f32>,
        pub variance: Vec<f32>,
        pub entropy: Vec<f32>,
        pub mutual_info: Vec<f32>,
        pub sums: [f64; 6],
    }

    impl CudaEngine {
        /// Compiles (or loads cached) kernels, uploads the weights, allocates the workspace.
        pub fn new(model: &Model) -> Result<CudaEngine> {
            // The model first: its refusal does not depend on the machine.
            if let Some(why) = unsupported_reason(model) {
                return Err(Error::device(format!(
                    "model not supported by the CUDA backend: {why}"
                )));
            }
            let info = match super::super::probe() {
                super::super::Probe::Usable(i) => i.clone(),
                super::super::Probe::Unusable(why) => return Err(Error::device(why.clone())),
            };
            let ctx = CudaContext::new(0).map_err(dev("context"))?;
            let stream = ctx.default_stream();
            let mut funcs = std::collections::HashMap::new();
            for ks in super::super::KERNELS {
                let cubin = super::super::compile::cubin_for(
                    ks,
                    info.compute,
                    info.driver_version,
                    info.nvrtc,
                )
                .map_err(Error::device)?;
                let module = ctx
                    .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
                    .map_err(dev("module load"))?;
                for f in ks.functions {
                    funcs.insert(*f, module.load_function(f).map_err(dev("load function"))?);
                }
            }
            let mut take = |n: &str| {
                funcs
                    .remove(n)
                    .ok_or_else(|| Error::device(format!("kernel {n} missing")))
            };
            let k = Kernels {
                first: take("ls_conv_first")?,
                expand: take("ls_dropout_expand")?,
                conv: take("ls_conv3")?,
                pool: take("ls_maxpool2")?,
                up: take("ls_upconv2")?,
                head_acc: take("ls_head_accumulate")?,
                head_fin: take("ls_head_finalize")?,
            };
            let plan = Plan::new(model);
            let wts = GpuWeights::new(model);
            let up16 = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
            let upload = |c: &ConvW| -> Result<DevConv> {
                Ok(DevConv {
                    w: stream.clone_htod(&up16(&c.w)).map_err(dev("upload"))?,
                    b: stream.clone_htod(&c.bias).map_err(dev("upload"))?,
                })
            };
            let convs = wts.convs.iter().map(upload).collect::<Result<Vec<_>>>()?;
            let ups = wts.ups.iter().map(upload).collect::<Result<Vec<_>>>()?;
            let per_sample = plan.workspace_bytes(2) - plan.workspace_bytes(1);
            let fixed = plan.workspace_bytes(1) - per_sample;
            let chunk = ((WORKSPACE_BUDGET.saturating_sub(fixed)) / per_sample.max(1)).clamp(1, 32);
            let [d, h, w] = plan.grids[0];
            let v = d * h * w;
            let ws = Workspace {
                bufs: (0..plan.bufs.len())
                    .map(|b| {
                        stream
                            .alloc_zeros::<f16>(plan.buf_len(b, chunk))
                            .map_err(dev("alloc"))
                    })
                    .collect::<Result<Vec<_>>>()?,
                hu: stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                mean: stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                m2: stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                sum_h: stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                any_fg: stream.alloc_zeros::<u32>(v).map_err(dev("alloc"))?,
                maps: [
                    stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                    stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                    stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                    stream.alloc_zeros::<f32>(v).map_err(dev("alloc"))?,
                ],
                partials: stream
                    .alloc_zeros::<f64>(head_finalize_blocks(v) * 6)
                    .map_err(dev("alloc"))?,
            };
            let cfg = model.config();
            Ok(CudaEngine {
                first_w: stream.clone_htod(&wts.first_w).map_err(dev("upload"))?,
                first_b: stream.clone_htod(&wts.first_b).map_err(dev("upload"))?,
                head_w: stream.clone_htod(&wts.head_w).map_err(dev("upload"))?,
                head_b: wts.head_b,
                ctx,
                stream,
                k,
                plan,
                convs,
                ups,
                conv_shapes: shapes(&wts.convs),
                up_shapes: shapes(&wts.ups),
                chunk,
                hu_window: cfg.hu_window,
                p: cfg.dropout.p,
                element: cfg.dropout.kind == DropoutKind::Element,
                ws: Mutex::new(ws),
                device_name: info.name,
            })
        }

        /// Samples per batch chunk.
        pub fn chunk(&self) -> usize {
            self.chunk
        }

        /// The CUDA context (benchmarks time with its events).
        pub fn context(&self) -> &Arc<CudaContext> {
            &self.ctx
        }

        /// Runs `n_samples` MC samples (`dropout = false`: one deterministic pass) and returns
        /// the maps and summary sums.
        pub fn run(
            &self,
            patch_hu: &[f32],
            seed: u64,
            n_samples: u32,
            dropout: bool,
        ) -> Result<DeviceResult> {
            let mut guard = self.ws.lock().unwrap_or_else(|e| e.into_inner());
            let ws = &mut *guard;
            let st = &self.stream;
            let plan = &self.plan;
            st.memcpy_htod(patch_hu, &mut ws.hu)
                .map_err(dev("upload patch"))?;
            let launches = self.launches();
            let mut done = 0u32;
            while done < n_samples {
                let s = self.chunk.min((n_samples - done) as usize);
                let drop = dropout.then_some(ChunkDrop {
                    seed,
                    p: self.p,
                    element: self.element,
                    sample0: done,
                });
                for op in &plan.ops {
                    if let Some(l) = launches.op(op, s, drop, done) {
                        self.launch(ws, &l)?;
                    }
                }
                done += s as u32;
            }
            self.launch(ws, &launches.finalize(n_samples))?;
            let get = |x: &CudaSlice<f32>| st.clone_dtoh(x).map_err(dev("download"));
            let partials = st.clone_dtoh(&ws.partials).map_err(dev("download"))?;
            let mut sums = [0f64; 6];
            for row in partials.chunks(6) {
                for (s, v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            Ok(DeviceResult {
                mean: get(&ws.maps[0])?,
                variance: get(&ws.maps[1])?,
                entropy: get(&ws.maps[2])?,
                mutual_info: get(&ws.maps[3])?,
                sums,
            })
        }

        fn launches(&self) -> PlanLaunches<'_> {
            PlanLaunches {
                plan: &self.plan,
                convs: &self.conv_shapes,
                ups: &self.up_shapes,
                hu_window: self.hu_window,
                head_bias: self.head_b,
            }
        }

        /// Performs `l` on the stream, its buffers resolved in the workspace and weights.
        fn launch(&self, ws: &Workspace, l: &Launch<Slot>) -> Result<()> {
            let k = &self.k;
            let f = match l.func {
                "ls_conv_first" => &k.first,
                "ls_dropout_expand" => &k.expand,
                "ls_conv3" => &k.conv,
                "ls_maxpool2" => &k.pool,
                "ls_upconv2" => &k.up,
                "ls_head_accumulate" => &k.head_acc,
                "ls_head_finalize" => &k.head_fin,
                other => return Err(Error::device(format!("internal: no kernel {other}"))),
            };
            let null: u64 = 0;
            let mut b = self.stream.launch_builder(f);
            for a in &l.args {
                match a {
                    KArg::Buf(slot) => self.push_buf(&mut b, ws, *slot)?,
                    KArg::Null => {
                        b.arg(&null);
                    }
                    KArg::I32(v) => {
                        b.arg(v);
                    }
                    KArg::U32(v) => {
                        b.arg(v);
                    }
                    KArg::U64(v) => {
                        b.arg(v);
                    }
                    KArg::F32(v) => {
                        b.arg(v);
                    }
                    KArg::Drop(v) => {
                        b.arg(v);
                    }
                }
            }
            let cfg = LaunchConfig {
                grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
                block_dim: (l.block[0], l.block[1], l.block[2]),
                shared_mem_bytes: l.dyn_smem,
            };
            // SAFETY: `launch::*` builds each argument list in its kernel's parameter order
            // (the emulator checks every argument's type against the kernel's signature) and
            // the plan sizes every buffer for the grid it launches.
            unsafe { b.launch(cfg) }
                .map(|_| ())
                .map_err(|e| Error::device(format!("CUDA launch {}: {e:?}", l.func)))
        }

        fn push_buf<'a>(
            &'a self,
            b: &mut cudarc::driver::LaunchArgs<'a>,
            ws: &'a Workspace,
            slot: Slot,
        ) -> Result<()> {
            match slot {
                Slot::Act(i) => {
                    let x = ws.bufs.get(i).ok_or_else(|| {
                        Error::device(format!("internal: no activation buffer {i}"))
                    })?;
                    b.arg(x)
                }
                Slot::Hu => b.arg(&ws.hu),
                Slot::FirstW => b.arg(&self.first_w),
                Slot::FirstB => b.arg(&self.first_b),
                Slot::ConvW(i) => b.arg(&self.convs[i].w),
                Slot::ConvB(i) => b.arg(&self.convs[i].b),
                Slot::UpW(i) => b.arg(&self.ups[i].w),
                Slot::UpB(i) => b.arg(&self.ups[i].b),
                Slot::HeadW => b.arg(&self.head_w),
                Slot::Mean => b.arg(&ws.mean),
                Slot::M2 => b.arg(&ws.m2),
                Slot::SumH => b.arg(&ws.sum_h),
                Slot::AnyFg => b.arg(&ws.any_fg),
                Slot::Map(k) => b.arg(&ws.maps[k]),
                Slot::Partials => b.arg(&ws.partials),
            };
            Ok(())
        }
    }
}
