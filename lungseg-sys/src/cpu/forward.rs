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

/// Normalises the HU patch into the input buffer and runs `enc.0.conv1` (+BN+ReLU), the part
/// of the network before the first dropout.
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
    let cfg: &ModelConfig = model.config();
    let net: &Net = model.weights();
    let ch = &cfg.channels;
    let levels = ch.len();
    let chan = drop.is_some() && cfg.dropout.kind == DropoutKind::Channel;
    let elem = drop.filter(|_| cfg.dropout.kind == DropoutKind::Element);
    let Workspace {
        grids,
        first,
        tmp,
        cat,
        pooled,
        bott,
        prob,
        w_eff,
        ci,
        ident,
        masks,
        ..
    } = ws;
    // Layers whose level has no dropout (p = 0) get no mask: their consumers run the
    // deterministic path.
    let drops = |k: u32| cfg.layer_drops(k);
    if let (true, Some(d)) = (chan, drop) {
        for (k, m) in masks.iter_mut().enumerate().filter(|(k, _)| drops(*k as u32)) {
            let p = cfg.layer_p(k as u32);
            let (s, scale) = (DropoutStream::new(d.seed, d.sample, k as u32, p), 1.0 / (1.0 - p));
            for (c, v) in m.iter_mut().enumerate() {
                *v = if s.keep(c as u64) { scale } else { 0.0 };
            }
        }
    }
    let masks: &Vec<Vec<f32>> = masks;
    let mask = |k: u32| (chan && drops(k)).then(|| &masks[k as usize][..]);
    let mut layers = Layers {
        w_eff,
        ci,
        ident,
        threads,
        kernel: model.kernel(),
    };
    let mask_elems =
        |buf: &mut [f32], src: Option<&[f32]>, g: Grid, stride: usize, c: usize, k: u32| {
            if let Some(d) = elem.filter(|_| drops(k)) {
                let p = cfg.layer_p(k);
                let s = DropoutStream::new(d.seed, d.sample, k, p);
                dropout_elements(buf, src, g, stride, c, &s, 1.0 / (1.0 - p), threads);
            }
        };

    // Level 0 conv2 reads `first` (shared by all samples) through dropout layer 0.
    let g0 = grids[0];
    let c0 = ch[0];
    let mut input0: &[f32] = first;
    if elem.is_some() && drops(enc_layer(0, false)) {
        mask_elems(&mut tmp[0], Some(first), g0, c0, c0, enc_layer(0, false));
        input0 = &tmp[0];
    }
    let out0: (&mut Vec<f32>, usize) = if levels > 1 {
        (&mut cat[0], 2 * c0)
    } else {
        (&mut *bott, c0)
    };
    layers.conv(
        &net.enc[0].conv2,
        LayerIn {
            data: input0,
            grid: g0,
            stride: c0,
            parts: &[(c0, mask(enc_layer(0, false)))],
        },
        out0.0,
        out0.1,
    );
    mask_elems(out0.0, None, g0, out0.1, c0, enc_layer(0, true));

    for l in 1..levels {
        check()?;
        let g = grids[l];
        let (cp, cl) = (ch[l - 1], ch[l]);
        maxpool2(
            &cat[l - 1],
            grids[l - 1],
            2 * cp,
            0,
            cp,
            &mut pooled[l],
            par(threads, g.voxels() * cp * 8),
        );
        let b = &net.enc[l];
        layers.conv(
            &b.conv1,
            LayerIn {
                data: &pooled[l],
                grid: g,
                stride: cp,
                parts: &[(cp, mask(enc_layer(l - 1, true)))],
            },
            &mut tmp[l],
            cl,
        );
        mask_elems(&mut tmp[l], None, g, cl, cl, enc_layer(l, false));
        let (out, stride) = if l + 1 < levels {
            (&mut cat[l], 2 * cl)
        } else {
            (&mut *bott, cl)
        };
        layers.conv(
            &b.conv2,
            LayerIn {
                data: &tmp[l],
                grid: g,
                stride: cl,
                parts: &[(cl, mask(enc_layer(l, false)))],
            },
            out,
            stride,
        );
        mask_elems(out, None, g, stride, cl, enc_layer(l, true));
    }

    for l in (0..levels.saturating_sub(1)).rev() {
        check()?;
        let g = grids[l];
        let (cl, cn) = (ch[l], ch[l + 1]);
        let (lo, hi) = cat.split_at_mut(l + 1);
        let dst = &mut lo[l];
        let (src, src_stride, src_layer): (&[f32], usize, u32) = if l + 2 == levels {
            (bott, cn, enc_layer(l + 1, true))
        } else {
            (&hi[0], 2 * cn, dec_layer(levels, l + 1, true))
        };
        let u = &net.up[l];
        let (w, cis) = layers.effective(&u.w, 1, 8 * u.bias.len(), &[(cn, mask(src_layer))]);
        let a = UpArgs {
            input: src,
            grid: grids[l + 1],
            in_stride: src_stride,
            ci: cis,
            w,
            bias: &u.bias,
            cout: cl,
            kernel: model.kernel(),
        };
        upconv(
            &a,
            dst,
            2 * cl,
            cl,
            par(threads, grids[l + 1].voxels() * cn * 8 * cl),
        );
        let b = &net.dec[l];
        let parts = [(cl, mask(enc_layer(l, true))), (cl, None)];
        layers.conv(
            &b.conv1,
            LayerIn {
                data: &cat[l],
                grid: g,
                stride: 2 * cl,
                parts: &parts,
            },
            &mut tmp[l],
            cl,
        );
        mask_elems(&mut tmp[l], None, g, cl, cl, dec_layer(levels, l, false));
        layers.conv(
            &b.conv2,
            LayerIn {
                data: &tmp[l],
                grid: g,
                stride: cl,
                parts: &[(cl, mask(dec_layer(levels, l, false)))],
            },
            &mut cat[l],
            2 * cl,
        );
        mask_elems(&mut cat[l], None, g, 2 * cl, cl, dec_layer(levels, l, true));
    }

    let (src, stride, k): (&[f32], usize, u32) = if levels > 1 {
        (&cat[0], 2 * c0, dec_layer(levels, 0, true))
    } else {
        (bott, c0, enc_layer(0, true))
    };
    let h = &net.head;
    let (w, cis) = layers.effective(&h.w, 1, 1, &[(c0, mask(k))]);
    if head(src, g0, stride, cis, w, h.bias, prob) {
        Ok(())
    } else {
        Err(Error::format(
            "the network's output is not finite for this patch (NaN or infinity: the model's \
             weights overflow f32); no prediction",
        ))
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
