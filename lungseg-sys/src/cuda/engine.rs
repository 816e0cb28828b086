//! The CUDA backend on the device: weights and workspace uploaded once, the MC batch in chunks,
//! the [`Plan`](super::plan::Plan)'s launches (see `plan` for the network as data and the MC
//! structure, `weights` for the layouts, `launch` for each kernel's grid and arguments).

use std::sync::{Arc, Mutex};

use half::f16;

use super::memory::Footprint;
use super::plan::{chunk_schedule, mirror_patch, ChunkDrop, ChunkHook, McState, Plan};
use super::weights::{unsupported_reason, ConvW, GpuWeights};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, Network};

pub use gpu::{launch_resolved, CudaEngine};

mod gpu {
    use super::*;
    use crate::cuda::launch::{
        head_finalize_blocks, head_mask_words, ConvShape, KArg, Launch, Params, PlanLaunches, Slot,
    };
    use crate::cuda::params::MAX_PARAMS_BYTES;
    use cudarc::driver::{
        CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PinnedHostSlice,
        PushKernelArg, SyncOnDrop,
    };

    /// A kernel's parameter struct with its device addresses written in: the driver copies
    /// the kernel's parameter size from it (at most [`MAX_PARAMS_BYTES`]).
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct ParamBlock([u8; MAX_PARAMS_BYTES]);

    // SAFETY: plain bytes, 8-aligned like every parameter struct.
    unsafe impl cudarc::driver::DeviceRepr for ParamBlock {}

    struct Kernels {
        first: CudaFunction,
        expand: CudaFunction,
        conv: CudaFunction,
        conv_narrow: CudaFunction,
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
        /// `chunk` rows of the chunk's sample masks.
        masks: CudaSlice<u32>,
        maps: [CudaSlice<f32>; 4],
        partials: CudaSlice<f64>,
        /// Page-locked staging for what an MC call downloads (the chunk's mask rows after each
        /// chunk; mean, m2 and Σ H at the end): the DMA reads it directly, where a pageable
        /// destination costs the driver a bounce copy.
        staged: Staging,
    }

    struct Staging {
        masks: PinnedHostSlice<u32>,
        state: [PinnedHostSlice<f32>; 3],
    }

    impl Kernels {
        /// Every kernel of [`super::super::KERNELS`], compiled for this device (or taken from
        /// the cubin cache) and loaded into `ctx`.
        fn load(ctx: &Arc<CudaContext>, info: &super::super::probe::GpuInfo) -> Result<Kernels> {
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
            Ok(Kernels {
                first: take("ls_conv_first")?,
                expand: take("ls_dropout_expand")?,
                conv: take("ls_conv3")?,
                conv_narrow: take("ls_conv3_narrow")?,
                pool: take("ls_maxpool2")?,
                up: take("ls_upconv2")?,
                head_acc: take("ls_head_accumulate")?,
                head_fin: take("ls_head_finalize")?,
            })
        }
    }

    impl DevConv {
        /// Weights in fp16, bias in f32.
        fn upload(stream: &Arc<CudaStream>, c: &ConvW) -> Result<DevConv> {
            let w16: Vec<f16> = c.w.iter().map(|&x| f16::from_f32(x)).collect();
            Ok(DevConv {
                w: stream.clone_htod(&w16).map_err(dev("upload"))?,
                b: stream.clone_htod(&c.bias).map_err(dev("upload"))?,
            })
        }
    }

    impl Workspace {
        /// Every device buffer and staging area of `plan` for `chunk` samples, zeroed.
        fn alloc(
            ctx: &Arc<CudaContext>,
            stream: &Arc<CudaStream>,
            plan: &Plan,
            chunk: usize,
        ) -> Result<Workspace> {
            let [d, h, w] = plan.grids[0];
            let v = d * h * w;
            let f32s = |n: usize| stream.alloc_zeros::<f32>(n).map_err(dev("alloc"));
            Ok(Workspace {
                bufs: (0..plan.bufs.len())
                    .map(|b| {
                        stream
                            .alloc_zeros::<f16>(plan.buf_len(b, chunk))
                            .map_err(dev("alloc"))
                    })
                    .collect::<Result<Vec<_>>>()?,
                hu: f32s(v)?,
                mean: f32s(v)?,
                m2: f32s(v)?,
                sum_h: f32s(v)?,
                any_fg: stream.alloc_zeros::<u32>(v).map_err(dev("alloc"))?,
                masks: stream
                    .alloc_zeros::<u32>(chunk * head_mask_words(v))
                    .map_err(dev("alloc"))?,
                maps: [f32s(v)?, f32s(v)?, f32s(v)?, f32s(v)?],
                partials: stream
                    .alloc_zeros::<f64>(head_finalize_blocks(v) * 6)
                    .map_err(dev("alloc"))?,
                staged: Staging {
                    masks: pinned(ctx, chunk * head_mask_words(v))?,
                    state: [pinned(ctx, v)?, pinned(ctx, v)?, pinned(ctx, v)?],
                },
            })
        }
    }

    /// `len` page-locked elements for downloads. Not cudarc's `alloc_pinned`, whose
    /// write-combined memory is fast for the device to read and slow for the CPU to read.
    fn pinned<T: cudarc::driver::DeviceRepr>(
        ctx: &Arc<CudaContext>,
        len: usize,
    ) -> Result<PinnedHostSlice<T>> {
        // SAFETY: every read of the staging follows a download that wrote those elements.
        unsafe { ctx.alloc_pinned_with_flags::<T>(len, 0) }.map_err(dev("pinned alloc"))
    }

    /// One model on one CUDA device: weights uploaded once (fp16), workspace allocated once
    /// for `chunk` samples; calls are serialised on one stream.
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
        /// The model's config (dropout: p, kind, levels).
        config: ModelConfig,
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

    /// Which samples one device run covers.
    #[derive(Clone, Copy)]
    struct Span {
        seed: u64,
        sample0: u32,
        n_samples: u32,
        dropout: bool,
        /// The model's `test_time_flips` for a whole MC call; 1 for single passes.
        flips: u32,
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
        /// Compiles (or loads cached) kernels, uploads the weights, allocates the workspace on
        /// CUDA device `index`.
        pub fn new(model: &Network, index: u32) -> Result<CudaEngine> {
            // The model first: its refusal does not depend on the machine.
            if let Some(why) = unsupported_reason(model) {
                return Err(Error::device(format!(
                    "model not supported by the CUDA backend: {why}"
                )));
            }
            let info = match super::super::probe::probe_device(index) {
                super::super::Probe::Usable(i) => i,
                super::super::Probe::Unusable(why) => return Err(Error::device(why)),
            };
            let ctx = CudaContext::new(index as usize).map_err(dev("context"))?;
            // A stream of the model's own, non-blocking: the integrator's work on the legacy
            // default stream neither waits for ours nor makes ours wait.
            let stream = ctx.new_stream().map_err(dev("stream"))?;
            let k = Kernels::load(&ctx, &info)?;
            let plan = Plan::new(model);
            let wts = GpuWeights::new(model);
            let upload = |c: &ConvW| DevConv::upload(&stream, c);
            let convs = wts.convs.iter().map(upload).collect::<Result<Vec<_>>>()?;
            let ups = wts.ups.iter().map(upload).collect::<Result<Vec<_>>>()?;
            // The budget first, before anything is allocated: a model that cannot run one
            // sample is refused with the sizes (AUTO then stays on the CPU).
            let (free, _) = ctx.mem_get_info().map_err(dev("memory info"))?;
            let chunk = Footprint::of(&plan, &wts)
                .chunk(free)
                .map_err(Error::device)?;
            let ws = Workspace::alloc(&ctx, &stream, &plan, chunk)?;
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
                config: cfg.clone(),
                ws: Mutex::new(ws),
                device_name: format!("CUDA {index}: {}", info.name),
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
            self.run_from(patch_hu, seed, 0, n_samples, dropout)
        }

        /// [`Self::run`] over samples `sample0..sample0 + n_samples` of the seed's MC
        /// sequence (the same dropout masks as those samples of a run from 0); with
        /// `n_samples = 1` the mean map is that one sample's probability map.
        pub fn run_from(
            &self,
            patch_hu: &[f32],
            seed: u64,
            sample0: u32,
            n_samples: u32,
            dropout: bool,
        ) -> Result<DeviceResult> {
            let mut guard = self.ws.lock().unwrap_or_else(|e| e.into_inner());
            let ws = &mut *guard;
            let st = &self.stream;
            let span = Span {
                seed,
                sample0,
                n_samples,
                dropout,
                flips: 1,
            };
            self.run_chunks(ws, patch_hu, span, None)?;
            self.launch(ws, &self.launches().finalize(n_samples))?;
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

        /// MC samples `0..n_samples` of `seed` in chunks of at most [`Self::chunk`], cut where
        /// the model's test-time flip changes, for a summary on the host: `hook` is asked before
        /// each chunk and gets its sample masks after it (downloaded then, so the device waits
        /// for the host once per chunk); returns the running statistics (no finalize: the host
        /// computes the maps from them).
        pub fn run_mc(
            &self,
            patch_hu: &[f32],
            seed: u64,
            n_samples: u32,
            hook: &mut dyn ChunkHook,
        ) -> Result<McState> {
            let mut guard = self.ws.lock().unwrap_or_else(|e| e.into_inner());
            let ws = &mut *guard;
            let span = Span {
                seed,
                sample0: 0,
                n_samples,
                dropout: true,
                flips: self.config.test_time_flips,
            };
            self.run_chunks(ws, patch_hu, span, Some(hook))?;
            let st = &self.stream;
            let [mean, m2, sum_h] = &mut ws.staged.state;
            for (src, dst) in [(&ws.mean, &mut *mean), (&ws.m2, m2), (&ws.sum_h, sum_h)] {
                st.memcpy_dtoh(src, dst).map_err(dev("download"))?;
            }
            let get = |x: &PinnedHostSlice<f32>| -> Result<Vec<f32>> {
                Ok(x.as_slice().map_err(dev("download"))?.to_vec())
            };
            let [mean, m2, sum_h] = &ws.staged.state;
            Ok(McState {
                n: n_samples,
                mean: get(mean)?,
                m2: get(m2)?,
                sum_h: get(sum_h)?,
            })
        }

        /// Runs `span`'s samples chunk by chunk through the plan, into the head's running
        /// state, uploading the patch (mirrored by the flip) before each flip's first chunk;
        /// with a `hook`, asks it before each chunk and hands it the chunk's masks after.
        fn run_chunks(
            &self,
            ws: &mut Workspace,
            patch_hu: &[f32],
            span: Span,
            mut hook: Option<&mut dyn ChunkHook>,
        ) -> Result<()> {
            let st = &self.stream;
            let launches = self.launches();
            let words = head_mask_words(patch_hu.len());
            let mut mirrored = Vec::new();
            for chunk in chunk_schedule(span.n_samples, self.chunk, span.flips) {
                let (done, s) = (chunk.done, chunk.s);
                if chunk.fresh {
                    let hu =
                        mirror_patch(patch_hu, chunk.flip, self.config.patch_size, &mut mirrored)?;
                    st.memcpy_htod(hu, &mut ws.hu)
                        .map_err(dev("upload patch"))?;
                }
                if let Some(h) = hook.as_deref_mut() {
                    h.before(done, s as u32)?;
                }
                let sample0 = span.sample0.checked_add(done).ok_or_else(|| {
                    Error::invalid(format!("sample {} + {done} overflows", span.sample0))
                })?;
                let drop = span
                    .dropout
                    .then(|| ChunkDrop::new(&self.config, span.seed, sample0));
                for op in &self.plan.ops {
                    if let Some(l) = launches.op(op, &chunk, drop) {
                        self.launch(ws, &l)?;
                    }
                }
                if let Some(h) = hook.as_deref_mut() {
                    let rows = &mut ws.staged.masks;
                    st.memcpy_dtoh(&ws.masks.slice(..s * words), rows)
                        .map_err(dev("download masks"))?;
                    let rows = rows.as_slice().map_err(dev("download masks"))?;
                    h.masks(&rows[..s * words])?;
                }
            }
            Ok(())
        }

        fn launches(&self) -> PlanLaunches<'_> {
            PlanLaunches {
                plan: &self.plan,
                convs: &self.conv_shapes,
                ups: &self.up_shapes,
                hu_window: self.hu_window,
                head_bias: self.head_b,
                mask_t: self.config.mask_threshold,
            }
        }

        /// Performs `l` on the stream, its buffers resolved in the workspace and weights.
        fn launch(&self, ws: &Workspace, l: &Launch<Slot>) -> Result<()> {
            let k = &self.k;
            let f = match l.func {
                "ls_conv_first" => &k.first,
                "ls_dropout_expand" => &k.expand,
                "ls_conv3" => &k.conv,
                "ls_conv3_narrow" => &k.conv_narrow,
                "ls_maxpool2" => &k.pool,
                "ls_upconv2" => &k.up,
                "ls_head_accumulate" => &k.head_acc,
                "ls_head_finalize" => &k.head_fin,
                other => return Err(Error::device(format!("internal: no kernel {other}"))),
            };
            launch_resolved(&self.stream, f, l, |slot| self.device_ptr(ws, slot))
        }

        /// The device address of `slot`, and the record that orders this stream after its
        /// last write (dropped once the launch reading it is scheduled).
        fn device_ptr<'a>(
            &'a self,
            ws: &'a Workspace,
            slot: Slot,
        ) -> Result<(u64, SyncOnDrop<'a>)> {
            let st = &self.stream;
            Ok(match slot {
                Slot::Act(i) => ws
                    .bufs
                    .get(i)
                    .ok_or_else(|| Error::device(format!("internal: no activation buffer {i}")))?
                    .device_ptr(st),
                Slot::Hu => ws.hu.device_ptr(st),
                Slot::FirstW => self.first_w.device_ptr(st),
                Slot::FirstB => self.first_b.device_ptr(st),
                Slot::ConvW(i) => self.convs[i].w.device_ptr(st),
                Slot::ConvB(i) => self.convs[i].b.device_ptr(st),
                Slot::UpW(i) => self.ups[i].w.device_ptr(st),
                Slot::UpB(i) => self.ups[i].b.device_ptr(st),
                Slot::HeadW => self.head_w.device_ptr(st),
                Slot::Mean => ws.mean.device_ptr(st),
                Slot::M2 => ws.m2.device_ptr(st),
                Slot::SumH => ws.sum_h.device_ptr(st),
                Slot::AnyFg => ws.any_fg.device_ptr(st),
                Slot::Masks => ws.masks.device_ptr(st),
                Slot::Map(k) => ws.maps[k].device_ptr(st),
                Slot::Partials => ws.partials.device_ptr(st),
            })
        }
    }

    /// Performs `l` with `f` on `stream`, each buffer's device address given by `addr` with the
    /// record that orders the stream after the buffer's last use (held until the launch is
    /// scheduled). Parameter structs get the addresses written in at their pointer fields.
    /// The engine resolves its slots with it; GPU tests that own their buffers resolve theirs.
    pub fn launch_resolved<'a, B: Copy>(
        stream: &Arc<CudaStream>,
        f: &CudaFunction,
        l: &Launch<B>,
        mut addr: impl FnMut(B) -> Result<(u64, SyncOnDrop<'a>)>,
    ) -> Result<()> {
        let mut records = Vec::new();
        let mut resolve = |b: Option<B>| -> Result<u64> {
            match b {
                Some(b) => {
                    let (a, record) = addr(b)?;
                    records.push(record);
                    Ok(a)
                }
                None => Ok(0),
            }
        };
        // Every argument's value first: the builder borrows them until the launch.
        let mut values = Vec::with_capacity(l.args.len());
        for a in &l.args {
            values.push(match a {
                KArg::Params(p) => ArgValue::Block(param_block(p, &mut resolve)?),
                KArg::Buf(b) => ArgValue::U64(resolve(Some(*b))?),
                KArg::Null => ArgValue::U64(0),
                KArg::I32(v) => ArgValue::I32(*v),
                KArg::U32(v) => ArgValue::U32(*v),
                KArg::U64(v) => ArgValue::U64(*v),
                KArg::F32(v) => ArgValue::F32(*v),
                KArg::Drop(v) => ArgValue::Drop(*v),
            });
        }
        let mut b = stream.launch_builder(f);
        for v in &values {
            match v {
                ArgValue::Block(x) => b.arg(x),
                ArgValue::U64(x) => b.arg(x),
                ArgValue::I32(x) => b.arg(x),
                ArgValue::U32(x) => b.arg(x),
                ArgValue::F32(x) => b.arg(x),
                ArgValue::Drop(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
            block_dim: (l.block[0], l.block[1], l.block[2]),
            shared_mem_bytes: l.dyn_smem,
        };
        // SAFETY: `launch::*` builds each argument list in its kernel's parameter order
        // (the emulator checks every argument's type against the kernel's signature) and the
        // caller sizes every buffer for the grid it launches.
        let launched = unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(|e| Error::device(format!("CUDA launch {}: {e:?}", l.func)));
        drop(records);
        launched
    }

    /// A kernel argument by value.
    enum ArgValue {
        Block(ParamBlock),
        U64(u64),
        I32(i32),
        U32(u32),
        F32(f32),
        Drop(crate::cuda::reference::LsDrop),
    }

    /// `p`'s bytes with the device address of each of its buffers written in.
    fn param_block<B: Copy>(
        p: &Params<B>,
        resolve: &mut impl FnMut(Option<B>) -> Result<u64>,
    ) -> Result<ParamBlock> {
        let mut block = ParamBlock([0; MAX_PARAMS_BYTES]);
        let head = block
            .0
            .get_mut(..p.bytes.len())
            .ok_or_else(|| Error::device(format!("internal: {} parameter bytes", p.bytes.len())))?;
        head.copy_from_slice(&p.bytes);
        for &(offset, buf) in &p.ptrs {
            let addr = resolve(buf)?;
            block
                .0
                .get_mut(offset..offset + 8)
                .ok_or_else(|| Error::device(format!("internal: pointer at {offset}")))?
                .copy_from_slice(&addr.to_le_bytes());
        }
        Ok(block)
    }
}
