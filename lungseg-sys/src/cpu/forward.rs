//! One forward pass of the U-Net over a patch, with or without dropout masks, on reusable
//! workspace buffers.
//!
//! MC structure: `enc.0.conv1` (+BN+ReLU) comes before the first dropout, so it is computed
//! once per patch into `first`. Activations are stored *before* dropout; with channel dropout
//! a tensor's mask travels to its consumers, which skip dropped input channels and fold the
//! `1/(1-p)` scale into a per-sample copy of their weights (`effective`). This holds through
//! max-pooling (a positive per-channel scale commutes with max) and through the transposed
//! conv. Element dropout is applied in place on the stored tensor instead.
//!
//! Buffers per level `l` (grid `g_l`, channels `C_l`): `cat[l]` (stride `2C_l`) holds
//! `[skip | up]` so the decoder's concat costs nothing; the encoder's conv2 and later the
//! decoder's conv2 write its first half. `tmp[l]` holds conv1 outputs, `pooled[l]` the pooled
//! input of level `l`, `bott` the bottleneck output.

use super::Pass;
use crate::error::{try_vec, Error, Result};
use crate::model::dropout::{dec_layer, enc_layer, layer_level};
use crate::model::{DropoutKind, ModelConfig, Net};
use crate::nn::conv3::{conv3, Conv3Args};
use crate::nn::cpu_kernel::CpuKernel;
use crate::nn::head::head;
use crate::nn::pool::maxpool2;
use crate::nn::upconv::{upconv, UpArgs};
use crate::nn::Grid;
use crate::philox::DropoutStream;

/// Sample masks a workspace holds: one per sample a call may ask for, so that any call runs
/// in the preallocated workspace.
const MASK_SAMPLES: usize = crate::stats::MAX_SAMPLES as usize;

/// Below this many multiply-adds a layer runs on the calling thread only.
const PAR_MIN_MACS: usize = 1 << 21;

/// Scratch memory for one concurrent call, sized for one model by [`WorkspaceSize`].
pub(crate) struct Workspace {
    grids: Vec<Grid>,
    input: Vec<f32>,
    first: Vec<f32>,
    tmp: Vec<Vec<f32>>,
    cat: Vec<Vec<f32>>,
    dec_out: Vec<Vec<f32>>,
    pooled: Vec<Vec<f32>>,
    bott: Vec<f32>,
    pub prob: Vec<f32>,
    w_eff: Vec<f32>,
    ci: Vec<u32>,
    ident: Vec<u32>,
    masks: Vec<Vec<f32>>,
    pub stats: crate::stats::Stats,
}

/// Element counts of every workspace buffer of a model, and their total in bytes: the one
/// sizing that both the open-time limit and [`Workspace::new`] use, so they cannot disagree.
/// Computed from the config alone, with checked arithmetic.
#[derive(Clone, Debug)]
pub(crate) struct WorkspaceSize {
    grids: Vec<Grid>,
    input: usize,
    first: usize,
    tmp: Vec<usize>,
    cat: Vec<usize>,
    /// Decoder outputs of the levels whose encoder every sample shares (their skips in
    /// `cat` must survive the samples).
    dec_out: Vec<usize>,
    /// `pooled[0]` is unused (level 0 reads the input).
    pooled: Vec<usize>,
    bott: usize,
    voxels: usize,
    w_eff: usize,
    channels: usize,
    masks: Vec<usize>,
    bytes: u64,
}

fn mul(a: usize, b: usize) -> Option<usize> {
    a.checked_mul(b)
}

impl WorkspaceSize {
    /// `None` when a size overflows `usize`/`u64`.
    pub(crate) fn of(cfg: &ModelConfig) -> Option<WorkspaceSize> {
        let ch = &cfg.channels;
        let levels = ch.len();
        let [px, py, pz] = cfg.patch_size;
        let grids: Vec<Grid> = (0..levels)
            .map(|l| Grid::new(pz >> l, py >> l, px >> l))
            .collect();
        let padded = |g: &Grid| mul(mul(g.d + 2, g.h + 2)?, g.w + 2);
        let pv = grids.iter().map(padded).collect::<Option<Vec<usize>>>()?;
        let tmp = (0..levels)
            .map(|l| mul(pv[l], ch[l]))
            .collect::<Option<Vec<_>>>()?;
        let cat = (0..levels.saturating_sub(1))
            .map(|l| mul(pv[l], mul(2, ch[l])?))
            .collect::<Option<Vec<_>>>()?;
        let dec_out = (0..cfg.shared_levels())
            .map(|l| mul(pv[l], ch[l]))
            .collect::<Option<Vec<_>>>()?;
        let pooled = (0..levels)
            .map(|l| {
                if l == 0 {
                    Some(0)
                } else {
                    mul(pv[l], ch[l - 1])
                }
            })
            .collect::<Option<Vec<_>>>()?;
        // The largest folded weight tensor: a 3³ conv `[27][cin][pad16(cout)]` or an up-conv
        // `[cin][8][pad16(cout)]`; the head's is `ch[0]`.
        let pad16 = |c: usize| c.div_ceil(16) * 16;
        let mut w_eff = ch[0];
        for l in 0..levels {
            let cin = if l == 0 { cfg.in_channels } else { ch[l - 1] };
            w_eff = w_eff.max(mul(27, mul(ch[l].max(cin), pad16(ch[l]))?)?);
            if l + 1 < levels {
                w_eff = w_eff.max(mul(27, mul(2 * ch[l], pad16(ch[l]))?)?);
                w_eff = w_eff.max(mul(ch[l + 1], mul(8, pad16(ch[l]))?)?);
            }
        }
        let channels = 2 * ch.iter().max().copied().unwrap_or(0);
        let masks: Vec<usize> = (0..cfg.dropout_layers())
            .map(|k| ch[layer_level(levels, k)])
            .collect();
        let voxels = cfg
            .patch_size
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))?;
        let mut s = WorkspaceSize {
            input: pv[0],
            first: mul(pv[0], ch[0])?,
            bott: mul(pv[levels - 1], ch[levels - 1])?,
            grids,
            tmp,
            cat,
            dec_out,
            pooled,
            voxels,
            w_eff,
            channels,
            masks,
            bytes: 0,
        };
        s.bytes = s.total_bytes()?;
        Some(s)
    }

    fn total_bytes(&self) -> Option<u64> {
        let f32s = [self.input, self.first, self.bott, self.voxels, self.w_eff]
            .into_iter()
            .chain(self.tmp.iter().copied())
            .chain(self.cat.iter().copied())
            .chain(self.dec_out.iter().copied())
            .chain(self.pooled.iter().copied())
            .chain(self.masks.iter().copied())
            .try_fold(0usize, usize::checked_add)?;
        let words = f32s.checked_add(mul(2, self.channels)?)?;
        let stats = crate::stats::Stats::bytes(self.voxels, MASK_SAMPLES)?;
        let total = mul(words, 4)?.checked_add(stats)?;
        u64::try_from(total).ok()
    }

    /// Bytes one workspace holds.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Floats of the per-sample weight copy: at least the largest folded weight tensor.
    pub(crate) fn weight_capacity(&self) -> usize {
        self.w_eff
    }
}

impl Workspace {
    pub(crate) fn new(size: &WorkspaceSize) -> Result<Workspace> {
        let vecs = |lens: &[usize], what: &str| -> Result<Vec<Vec<f32>>> {
            lens.iter().map(|&n| try_vec(n, what)).collect()
        };
        let mut ident = try_vec::<u32>(size.channels, "channel list")?;
        for (i, v) in ident.iter_mut().enumerate() {
            *v = i as u32;
        }
        let mut masks = vecs(&size.masks, "dropout masks")?;
        masks.iter_mut().for_each(|m| m.fill(1.0));
        Ok(Workspace {
            grids: size.grids.clone(),
            input: try_vec(size.input, "input workspace")?,
            first: try_vec(size.first, "first-layer workspace")?,
            tmp: vecs(&size.tmp, "conv workspace")?,
            cat: vecs(&size.cat, "concat workspace")?,
            dec_out: vecs(&size.dec_out, "decoder workspace")?,
            pooled: vecs(&size.pooled, "pool workspace")?,
            bott: try_vec(size.bott, "bottleneck workspace")?,
            prob: try_vec(size.voxels, "probability workspace")?,
            w_eff: try_vec(size.w_eff, "weight workspace")?,
            ci: try_vec(size.channels, "channel list")?,
            ident,
            masks,
            stats: crate::stats::Stats::new(size.voxels, MASK_SAMPLES)?,
        })
    }
}

/// Normalises the HU patch into the input buffer and runs the part of the network that every
/// MC sample shares: `enc.0.conv1` (+BN+ReLU), before the first dropout layer, and the whole
/// encoder levels `0..shared_levels()` when the model has no dropout there (their outputs
/// stay in `cat[l]`; the decoder of those levels writes `dec_out[l]` instead).
pub(crate) fn prologue(model: &Pass<'_>, ws: &mut Workspace, patch_hu: &[f32], threads: usize) {
    let cfg = model.config();
    let g = ws.grids[0];
    let (lo, hi) = cfg.hu_window;
    let mut k = 0;
    for z in 0..g.d {
        for y in 0..g.h {
            let o = g.index(z, y, 0);
            for (d, &hu) in ws.input[o..o + g.w].iter_mut().zip(&patch_hu[k..k + g.w]) {
                *d = ((hu - lo) / (hi - lo)).clamp(0.0, 1.0);
            }
            k += g.w;
        }
    }
    let c = &model.weights().enc[0].conv1;
    let a = Conv3Args {
        input: &ws.input,
        grid: g,
        in_stride: 1,
        ci: &[0],
        w: &c.w,
        bias: &c.bias,
        cout: c.cout,
        relu: true,
        kernel: model.kernel(),
    };
    conv3(
        &a,
        &mut ws.first,
        c.cout,
        0,
        par(threads, g.voxels() * 27 * c.cout),
    );
    let shared = cfg.shared_levels();
    if shared > 0 {
        let mut pass = PassParts::new(model, ws, None, threads);
        pass.encoder(0..shared);
    }
}

fn par(threads: usize, macs: usize) -> usize {
    if macs < PAR_MIN_MACS {
        1
    } else {
        threads
    }
}

/// Dropout for one MC sample.
#[derive(Clone, Copy)]
pub(crate) struct SampleDrop {
    pub seed: u64,
    pub sample: u32,
}

/// Runs everything after [`prologue`] and leaves the probabilities in `ws.prob`. Fails
/// (`Format`: the weights overflow f32 on this patch) when a logit is not finite.
/// `stop` is asked before every level of the encoder and decoder; when it says yes the pass
/// ends with a `Cancelled` error and the workspace holds no result.
pub(crate) fn forward(
    model: &Pass<'_>,
    ws: &mut Workspace,
    drop: Option<SampleDrop>,
    threads: usize,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let check = || {
        if stop() {
            Err(Error::cancelled("forward pass stopped"))
        } else {
            Ok(())
        }
    };
    let levels = model.config().levels();
    let shared = model.config().shared_levels();
    let mut pass = PassParts::new(model, ws, drop, threads);
    for l in shared..levels {
        check()?;
        pass.encoder(l..l + 1);
    }
    for l in (0..levels.saturating_sub(1)).rev() {
        check()?;
        pass.decoder(l);
    }
    pass.head()
}

/// Where decoder level `l`'s output lives, with its stride and dropout layer: the skip half
/// of `cat[l]`, or `dec_out[l]` where the skip is shared by every sample (and must survive).
fn dec_output<'a>(
    cfg: &ModelConfig,
    cat: &'a [Vec<f32>],
    dec_out: &'a [Vec<f32>],
    l: usize,
) -> (&'a [f32], usize, u32) {
    let cl = cfg.channels[l];
    let k = dec_layer(cfg.levels(), l, true);
    if l < dec_out.len() {
        (&dec_out[l], cl, k)
    } else {
        (&cat[l], 2 * cl, k)
    }
}

/// One pass over a workspace: its buffers, this sample's dropout, and the layer runner.
struct PassParts<'w, 'p> {
    cfg: &'p ModelConfig,
    net: &'p Net,
    grids: &'w [Grid],
    first: &'w [f32],
    tmp: &'w mut [Vec<f32>],
    cat: &'w mut [Vec<f32>],
    dec_out: &'w mut [Vec<f32>],
    pooled: &'w mut [Vec<f32>],
    bott: &'w mut Vec<f32>,
    prob: &'w mut [f32],
    masks: &'w [Vec<f32>],
    chan: bool,
    elem: Option<SampleDrop>,
    layers: Layers<'w>,
}

impl<'w, 'p> PassParts<'w, 'p> {
    /// Splits `ws` for one pass and draws this sample's channel masks (layers whose level has
    /// no dropout get none: their consumers run the deterministic path).
    fn new(
        model: &'p Pass<'_>,
        ws: &'w mut Workspace,
        drop: Option<SampleDrop>,
        threads: usize,
    ) -> Self {
        let cfg: &ModelConfig = model.config();
        let chan = drop.is_some() && cfg.dropout.kind == DropoutKind::Channel;
        let elem = drop.filter(|_| cfg.dropout.kind == DropoutKind::Element);
        let Workspace {
            grids,
            first,
            tmp,
            cat,
            dec_out,
            pooled,
            bott,
            prob,
            w_eff,
            ci,
            ident,
            masks,
            ..
        } = ws;
        if let (true, Some(d)) = (chan, drop) {
            for (k, m) in masks.iter_mut().enumerate() {
                let k = k as u32;
                if !cfg.layer_drops(k) {
                    continue;
                }
                let p = cfg.layer_p(k);
                let (s, scale) = (DropoutStream::new(d.seed, d.sample, k, p), 1.0 / (1.0 - p));
                for (c, v) in m.iter_mut().enumerate() {
                    *v = if s.keep(c as u64) { scale } else { 0.0 };
                }
            }
        }
        PassParts {
            cfg,
            net: model.weights(),
            grids,
            first,
            tmp,
            cat,
            dec_out,
            pooled,
            bott,
            prob,
            masks,
            chan,
            elem,
            layers: Layers {
                w_eff,
                ci,
                ident,
                threads,
                kernel: model.kernel(),
            },
        }
    }

    /// The channel mask dropout layer `k` applies this sample, if any.
    fn mask(&self, k: u32) -> Option<&'w [f32]> {
        let masks: &'w [Vec<f32>] = self.masks;
        (self.chan && self.cfg.layer_drops(k)).then(|| &masks[k as usize][..])
    }

    /// Element dropout of layer `k` on channels `[0, c)` of `buf` (from `src` if given).
    fn mask_elems(&self, buf: &mut [f32], src: Option<&[f32]>, at: (Grid, usize, usize), k: u32) {
        let (g, stride, c) = at;
        if let Some(d) = self.elem.filter(|_| self.cfg.layer_drops(k)) {
            let p = self.cfg.layer_p(k);
            let s = DropoutStream::new(d.seed, d.sample, k, p);
            let threads = self.layers.threads;
            dropout_elements(buf, src, g, stride, c, &s, 1.0 / (1.0 - p), threads);
        }
    }

    /// Encoder blocks `range`: conv1 (level 0: from the prologue's `first`), conv2 into the
    /// skip half of `cat[l]` (the bottleneck into `bott`).
    fn encoder(&mut self, range: std::ops::Range<usize>) {
        let levels = self.cfg.levels();
        for l in range {
            let g = self.grids[l];
            let cl = self.cfg.channels[l];
            let input: &[f32] = if l == 0 {
                let k = enc_layer(0, false);
                if self.elem.is_some() && self.cfg.layer_drops(k) {
                    let mut t0 = std::mem::take(&mut self.tmp[0]);
                    self.mask_elems(&mut t0, Some(self.first), (g, cl, cl), k);
                    self.tmp[0] = t0;
                    &self.tmp[0]
                } else {
                    self.first
                }
            } else {
                self.pool_and_conv1(l);
                &self.tmp[l]
            };
            let parts = [(cl, self.mask(enc_layer(l, false)))];
            let conv = &self.net.enc[l].conv2;
            let (out, stride) = if l + 1 < levels {
                (&mut self.cat[l], 2 * cl)
            } else {
                (&mut *self.bott, cl)
            };
            self.layers.conv(
                conv,
                LayerIn {
                    data: input,
                    grid: g,
                    stride: cl,
                    parts: &parts,
                },
                out,
                stride,
            );
            let mut o = std::mem::take(out);
            self.mask_elems(&mut o, None, (g, stride, cl), enc_layer(l, true));
            if l + 1 < levels {
                self.cat[l] = o;
            } else {
                *self.bott = o;
            }
        }
    }

    /// Encoder level `l ≥ 1`: max-pool of the level above's skip, conv1 into `tmp[l]`.
    fn pool_and_conv1(&mut self, l: usize) {
        let g = self.grids[l];
        let (cp, cl) = (self.cfg.channels[l - 1], self.cfg.channels[l]);
        let threads = self.layers.threads;
        maxpool2(
            &self.cat[l - 1],
            self.grids[l - 1],
            2 * cp,
            0,
            cp,
            &mut self.pooled[l],
            par(threads, g.voxels() * cp * 8),
        );
        let parts = [(cp, self.mask(enc_layer(l - 1, true)))];
        self.layers.conv(
            &self.net.enc[l].conv1,
            LayerIn {
                data: &self.pooled[l],
                grid: g,
                stride: cp,
                parts: &parts,
            },
            &mut self.tmp[l],
            cl,
        );
        let mut t = std::mem::take(&mut self.tmp[l]);
        self.mask_elems(&mut t, None, (g, cl, cl), enc_layer(l, false));
        self.tmp[l] = t;
    }

    /// Decoder level `l`: up-convolution of the level below into the second half of
    /// `cat[l]`, conv1 over `[skip | up]`, conv2.
    fn decoder(&mut self, l: usize) {
        let levels = self.cfg.levels();
        let g = self.grids[l];
        let (cl, cn) = (self.cfg.channels[l], self.cfg.channels[l + 1]);
        let threads = self.layers.threads;
        let kernel = self.layers.kernel;
        {
            let mut dst = std::mem::take(&mut self.cat[l]);
            let (src, src_stride, src_layer): (&[f32], usize, u32) = if l + 2 == levels {
                (&self.bott[..], cn, enc_layer(l + 1, true))
            } else {
                dec_output(self.cfg, self.cat, self.dec_out, l + 1)
            };
            let m = self.mask(src_layer);
            let u = &self.net.up[l];
            let (w, cis) = self.layers.effective(&u.w, 1, 8 * u.bias.len(), &[(cn, m)]);
            let a = UpArgs {
                input: src,
                grid: self.grids[l + 1],
                in_stride: src_stride,
                ci: cis,
                w,
                bias: &u.bias,
                cout: cl,
                kernel,
            };
            upconv(
                &a,
                &mut dst,
                2 * cl,
                cl,
                par(threads, self.grids[l + 1].voxels() * cn * 8 * cl),
            );
            self.cat[l] = dst;
        }
        let parts = [(cl, self.mask(enc_layer(l, true))), (cl, None)];
        self.layers.conv(
            &self.net.dec[l].conv1,
            LayerIn {
                data: &self.cat[l],
                grid: g,
                stride: 2 * cl,
                parts: &parts,
            },
            &mut self.tmp[l],
            cl,
        );
        let mut t = std::mem::take(&mut self.tmp[l]);
        self.mask_elems(&mut t, None, (g, cl, cl), dec_layer(levels, l, false));
        let parts = [(cl, self.mask(dec_layer(levels, l, false)))];
        let shared = l < self.dec_out.len();
        let mut out = if shared {
            std::mem::take(&mut self.dec_out[l])
        } else {
            std::mem::take(&mut self.cat[l])
        };
        let stride = if shared { cl } else { 2 * cl };
        self.layers.conv(
            &self.net.dec[l].conv2,
            LayerIn {
                data: &t,
                grid: g,
                stride: cl,
                parts: &parts,
            },
            &mut out,
            stride,
        );
        self.tmp[l] = t;
        self.mask_elems(&mut out, None, (g, stride, cl), dec_layer(levels, l, true));
        if shared {
            self.dec_out[l] = out;
        } else {
            self.cat[l] = out;
        }
    }

    /// The 1×1×1 head and sigmoid into `prob`.
    fn head(&mut self) -> Result<()> {
        let levels = self.cfg.levels();
        let c0 = self.cfg.channels[0];
        let (src, stride, k): (&[f32], usize, u32) = if levels > 1 {
            dec_output(self.cfg, self.cat, self.dec_out, 0)
        } else {
            (&self.bott[..], c0, enc_layer(0, true))
        };
        let m = self.mask(k);
        let h = &self.net.head;
        let (w, cis) = self.layers.effective(&h.w, 1, 1, &[(c0, m)]);
        if head(src, self.grids[0], stride, cis, w, h.bias, self.prob) {
            Ok(())
        } else {
            Err(Error::format(
                "the network's output is not finite for this patch (NaN or infinity: the \
                 model's weights overflow f32); no prediction",
            ))
        }
    }
}

/// What every layer of one pass shares: the per-sample weight scratch (masked input channels
/// folded into the weights) and the call's threads and kernel.
struct Layers<'a> {
    w_eff: &'a mut [f32],
    ci: &'a mut [u32],
    ident: &'a [u32],
    threads: usize,
    kernel: CpuKernel,
}

/// A layer's input: `grid` voxels of `stride` floats whose channels come in `parts`
/// (count, dropout mask).
struct LayerIn<'a, 'm> {
    data: &'a [f32],
    grid: Grid,
    stride: usize,
    parts: &'a [(usize, Option<&'m [f32]>)],
}

impl Layers<'_> {
    /// [`effective`] with this pass's scratch.
    fn effective<'s>(
        &'s mut self,
        w: &'s [f32],
        taps: usize,
        row: usize,
        parts: &[(usize, Option<&[f32]>)],
    ) -> (&'s [f32], &'s [u32]) {
        effective(w, taps, row, parts, self.w_eff, self.ci, self.ident)
    }

    /// One 3³ conv layer (+folded BN, ReLU) into `out` (`out_stride` floats per voxel).
    fn conv(
        &mut self,
        c: &crate::model::Conv3,
        input: LayerIn<'_, '_>,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let (threads, kernel) = (self.threads, self.kernel);
        let (w, cis) = self.effective(&c.w, 27, c.bias.len(), input.parts);
        let macs = input.grid.voxels() * 27 * cis.len() * c.cout;
        let a = Conv3Args {
            input: input.data,
            grid: input.grid,
            in_stride: input.stride,
            ci: cis,
            w,
            bias: &c.bias,
            cout: c.cout,
            relu: true,
            kernel,
        };
        conv3(&a, out, out_stride, 0, par(threads, macs));
    }
}

/// The weights `[taps][cin][row]` and channel list a consumer uses this sample: the model's
/// own when nothing is masked, else the kept input channels with their scale folded in.
fn effective<'a>(
    w: &'a [f32],
    taps: usize,
    row: usize,
    parts: &[(usize, Option<&[f32]>)],
    w_eff: &'a mut [f32],
    ci: &'a mut [u32],
    ident: &'a [u32],
) -> (&'a [f32], &'a [u32]) {
    let cin: usize = parts.iter().map(|p| p.0).sum();
    if parts.iter().all(|p| p.1.is_none()) {
        return (w, &ident[..cin]);
    }
    let scale_of = |c: usize| {
        let mut o = 0;
        for &(n, m) in parts {
            if c < o + n {
                return m.map_or(1.0, |m| m[c - o]);
            }
            o += n;
        }
        1.0
    };
    let nk = (0..cin).filter(|&c| scale_of(c) != 0.0).fold(0, |j, c| {
        ci[j] = c as u32;
        j + 1
    });
    for t in 0..taps {
        for j in 0..nk {
            let c = ci[j] as usize;
            let s = scale_of(c);
            let src = &w[(t * cin + c) * row..][..row];
            let dst = &mut w_eff[(t * nk + j) * row..][..row];
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v * s;
            }
        }
    }
    (&w_eff[..taps * nk * row], &ci[..nk])
}

/// Element dropout on channels `[0, c)` of a zero-halo tensor: `dst = mask · scale · src`
/// (`src = None`: in place). Element index = PyTorch NCDHW index within one sample.
#[allow(clippy::too_many_arguments)]
fn dropout_elements(
    dst: &mut [f32],
    src: Option<&[f32]>,
    g: Grid,
    stride: usize,
    c: usize,
    s: &DropoutStream,
    scale: f32,
    threads: usize,
) {
    let plane = g.plane() * stride;
    let vox = g.voxels() as u64;
    crate::nn::par_units(dst, plane, plane, g.d, threads, |z, chunk| {
        for y in 0..g.h {
            for x in 0..g.w {
                let o = ((y + 1) * g.row() + x + 1) * stride;
                let sp = g.index(z, y, x) * stride;
                let e = ((z * g.h + y) * g.w + x) as u64;
                for ch in 0..c {
                    let v = src.map_or(chunk[o + ch], |s| s[sp + ch]);
                    chunk[o + ch] = if s.keep(ch as u64 * vox + e) {
                        v * scale
                    } else {
                        0.0
                    };
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open-time figure is what a workspace really holds, buffer by buffer.
    #[test]
    fn workspace_bytes_are_what_is_allocated() {
        for json in [
            r#"{"channels":[3,5,7],"patch_size":[8,4,12]}"#,
            r#"{"channels":[16,32,64,128,256],"patch_size":[64,64,64]}"#,
            r#"{"channels":[5],"patch_size":[6,2,4],"dropout":{"kind":"element"}}"#,
        ] {
            let cfg = ModelConfig::from_json(json).unwrap();
            let size = WorkspaceSize::of(&cfg).unwrap();
            let ws = Workspace::new(&size).unwrap();
            let all = |v: &[Vec<f32>]| v.iter().map(Vec::len).sum::<usize>();
            let f32s = ws.input.len()
                + ws.first.len()
                + all(&ws.tmp)
                + all(&ws.cat)
                + all(&ws.pooled)
                + ws.bott.len()
                + ws.prob.len()
                + ws.w_eff.len()
                + all(&ws.masks);
            let u32s = ws.ci.len() + ws.ident.len();
            let stats = ws.stats.held_bytes();
            assert_eq!((4 * (f32s + u32s) + stats) as u64, size.bytes(), "{json}");
        }
        // The default network at 64³: the "about 150 MB" of the docs.
        let size = WorkspaceSize::of(&ModelConfig::default()).unwrap();
        assert!(
            (135e6..165e6).contains(&(size.bytes() as f64)),
            "{}",
            size.bytes()
        );
    }
}
