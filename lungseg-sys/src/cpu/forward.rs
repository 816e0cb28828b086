//! One forward pass of the U-Net over a patch, with or without dropout masks, on a reusable
//! [`Workspace`].
//!
//! MC structure: `enc.0.conv1` (+BN+ReLU) comes before the first dropout, so it is computed
//! once per patch into `first`, and so are the whole encoder levels above the first level with
//! dropout (`ModelConfig::shared_levels`). Activations are stored *before* dropout; with
//! channel dropout a tensor's mask travels to its consumers, which skip dropped input channels
//! and apply the `1/(1-p)` scale: the direct and transposed convolutions through a per-sample
//! copy of their weights with the scale folded in (`effective`), the Winograd convolutions by
//! summing over the kept channels of the model's transformed weights with the scale multiplied
//! into their transformed input (`kept`), without a copy. This holds through max-pooling (a positive per-channel scale commutes with max) and through the
//! transposed conv. Element dropout is applied in place on the stored tensor instead.

use super::workspace::Workspace;
use super::Pass;
use crate::error::{Error, Result};
use crate::model::dropout::{dec_layer, enc_layer};
use crate::model::{DropoutKind, ModelConfig, Net};
use crate::nn::conv3::{conv3, Conv3Args};
use crate::nn::cpu_kernel::CpuKernel;
use crate::nn::head::head;
use crate::nn::pool::maxpool2;
use crate::nn::upconv::{upconv, UpArgs};
use crate::nn::winograd::{self, winograd, WinoArgs};
use crate::nn::Grid;
use crate::philox::DropoutStream;

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

/// Below this many multiply-adds a layer runs on the calling thread only.
const PAR_MIN_MACS: usize = 1 << 21;

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
            scale,
            ident,
            wino,
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
                scale,
                ident,
                wino,
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
/// folded into the weights), the kept-channel list and scales, the Winograd scratch, and the
/// call's threads and kernel.
struct Layers<'a> {
    w_eff: &'a mut [f32],
    ci: &'a mut [u32],
    scale: &'a mut [f32],
    ident: &'a [u32],
    wino: &'a mut [f32],
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
        effective(
            w,
            taps,
            row,
            parts,
            self.w_eff,
            (self.ci, self.scale),
            self.ident,
        )
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
        if let (Some(u), true) = (&c.wino, winograd::fits(input.grid)) {
            let (keep, scale) = kept(input.parts, (self.ci, self.scale), self.ident);
            // Nominal multiply-adds (the direct convolution's) decide the threads, as below.
            let macs = input.grid.voxels() * 27 * keep.len() * c.cout;
            let a = WinoArgs {
                input: input.data,
                grid: input.grid,
                in_stride: input.stride,
                c0: 0,
                keep,
                scale,
                u,
                bias: &c.bias,
                cout: c.cout,
                relu: true,
                kernel,
            };
            winograd(&a, out, out_stride, 0, par(threads, macs), self.wino);
            return;
        }
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

/// The input channels a consumer reads this sample and their dropout scales: every channel
/// (`ident`) with no scale when nothing is masked, else the kept channels (listed into
/// `lists.0`) and every channel's scale (into `lists.1`, 0 where dropped). A channel's number
/// is its weight row.
fn kept<'a>(
    parts: &[(usize, Option<&[f32]>)],
    lists: (&'a mut [u32], &'a mut [f32]),
    ident: &'a [u32],
) -> (&'a [u32], Option<&'a [f32]>) {
    let cin: usize = parts.iter().map(|p| p.0).sum();
    if parts.iter().all(|p| p.1.is_none()) {
        return (&ident[..cin], None);
    }
    let (ci, scale) = lists;
    let mut nk = 0;
    let mut o = 0;
    for &(n, m) in parts {
        for c in 0..n {
            scale[o + c] = m.map_or(1.0, |m| m[c]);
            if scale[o + c] != 0.0 {
                ci[nk] = (o + c) as u32;
                nk += 1;
            }
        }
        o += n;
    }
    (&ci[..nk], Some(&scale[..cin]))
}

/// The weights `[taps][cin][row]` and channel list a consumer uses this sample: the model's
/// own when nothing is masked, else the kept input channels with their scale folded in.
fn effective<'a>(
    w: &'a [f32],
    taps: usize,
    row: usize,
    parts: &[(usize, Option<&[f32]>)],
    w_eff: &'a mut [f32],
    lists: (&'a mut [u32], &'a mut [f32]),
    ident: &'a [u32],
) -> (&'a [f32], &'a [u32]) {
    let cin: usize = parts.iter().map(|p| p.0).sum();
    let (ci, Some(scale)) = kept(parts, lists, ident) else {
        return (w, &ident[..cin]);
    };
    let nk = ci.len();
    for t in 0..taps {
        for (j, &c) in ci.iter().enumerate() {
            let s = scale[c as usize];
            let src = &w[(t * cin + c as usize) * row..][..row];
            let dst = &mut w_eff[(t * nk + j) * row..][..row];
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v * s;
            }
        }
    }
    (&w_eff[..taps * nk * row], ci)
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
