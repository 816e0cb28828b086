//! Scratch memory of one concurrent CPU call, and its sizing from the model's config alone
//! (so the open-time limit and the allocation cannot disagree).
//!
//! Buffers per level `l` (grid `g_l`, channels `C_l`): `cat[l]` (stride `2C_l`) holds
//! `[skip | up]` so the decoder's concat costs nothing; the encoder's conv2 and later the
//! decoder's conv2 write its first half. Where the encoder of level `l` is shared by every MC
//! sample (`ModelConfig::shared_levels`), the skip must survive the samples and the decoder
//! writes `dec_out[l]` (stride `C_l`) instead. `tmp[l]` holds conv1 outputs, `pooled[l]` the
//! pooled input of level `l`, `bott` the bottleneck output, `first` the output of
//! `enc.0.conv1` (computed once per patch), `wino` the Winograd convolutions' per-thread
//! blocks (`nn::winograd::MAX_THREADS` of them).

use crate::error::{try_vec, Result};
use crate::model::dropout::layer_level;
use crate::model::ModelConfig;
use crate::nn::Grid;

/// Sample masks a workspace holds: one per sample a call may ask for, so that any call runs
/// in the preallocated workspace.
const MASK_SAMPLES: usize = crate::stats::MAX_SAMPLES as usize;

/// Scratch memory for one concurrent call, sized for one model by [`WorkspaceSize`].
pub(crate) struct Workspace {
    pub(super) grids: Vec<Grid>,
    pub(super) input: Vec<f32>,
    pub(super) first: Vec<f32>,
    pub(super) tmp: Vec<Vec<f32>>,
    pub(super) cat: Vec<Vec<f32>>,
    pub(super) dec_out: Vec<Vec<f32>>,
    pub(super) pooled: Vec<Vec<f32>>,
    pub(super) bott: Vec<f32>,
    pub prob: Vec<f32>,
    /// The mirrored patch and the mirrored-back probabilities of a test-time flip (empty
    /// when the model has `test_time_flips` 1).
    pub flip_in: Vec<f32>,
    pub flip_out: Vec<f32>,
    pub(super) w_eff: Vec<f32>,
    pub(super) ci: Vec<u32>,
    pub(super) scale: Vec<f32>,
    pub(super) ident: Vec<u32>,
    pub(super) wino: Vec<f32>,
    pub(super) masks: Vec<Vec<f32>>,
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
    /// Length of each test-time flip buffer: the patch, or 0 without flips.
    flipped: usize,
    w_eff: usize,
    /// Winograd scratch: `nn::winograd::MAX_THREADS` per-thread blocks.
    wino: usize,
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
        let wino = mul(
            wino_per_thread(cfg, &grids),
            crate::nn::winograd::MAX_THREADS,
        )?;
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
            flipped: if cfg.test_time_flips > 1 { voxels } else { 0 },
            w_eff,
            wino,
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
            .chain([self.wino, self.channels, self.flipped, self.flipped])
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

/// Winograd scratch floats of one thread: the largest block of the 3³ convolutions that run
/// on Winograd (`crate::nn::winograd::pays` on a grid it [`fits`](crate::nn::winograd::fits)),
/// 0 when none does. Channel counts are at most 4096 (the config check): nothing overflows.
fn wino_per_thread(cfg: &ModelConfig, grids: &[Grid]) -> usize {
    use crate::nn::winograd::{fits, pays, scratch_floats};
    let ch = &cfg.channels;
    let levels = ch.len();
    let mut most = 0;
    for (l, &g) in grids.iter().enumerate() {
        let cin = if l == 0 { cfg.in_channels } else { ch[l - 1] };
        let decoder = l + 1 < levels;
        let layers = [(cin, true), (ch[l], true), (2 * ch[l], decoder)];
        for (i, o) in layers
            .into_iter()
            .filter_map(|(i, on)| on.then_some((i, ch[l])))
        {
            if fits(g) && pays(i, o) {
                most = most.max(scratch_floats(i, o));
            }
        }
    }
    most
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
            flip_in: try_vec(size.flipped, "flipped patch")?,
            flip_out: try_vec(size.flipped, "flipped probabilities")?,
            w_eff: try_vec(size.w_eff, "weight workspace")?,
            ci: try_vec(size.channels, "channel list")?,
            scale: try_vec(size.channels, "channel scales")?,
            ident,
            wino: try_vec(size.wino, "Winograd workspace")?,
            masks,
            stats: crate::stats::Stats::new(size.voxels, MASK_SAMPLES)?,
        })
    }
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
            r#"{"channels":[3,5,7],"patch_size":[8,4,12],"dropout":{"levels":[2]}}"#,
            r#"{"channels":[3,5],"patch_size":[8,4,12],"test_time_flips":4}"#,
        ] {
            let cfg = ModelConfig::from_json(json).unwrap();
            assert_eq!(cfg.shared_levels() > 0, json.contains("levels"));
            let size = WorkspaceSize::of(&cfg).unwrap();
            let ws = Workspace::new(&size).unwrap();
            let all = |v: &[Vec<f32>]| v.iter().map(Vec::len).sum::<usize>();
            let f32s = ws.input.len()
                + ws.first.len()
                + all(&ws.tmp)
                + all(&ws.cat)
                + all(&ws.dec_out)
                + all(&ws.pooled)
                + ws.bott.len()
                + ws.prob.len()
                + ws.flip_in.len()
                + ws.flip_out.len()
                + ws.w_eff.len()
                + ws.wino.len()
                + ws.scale.len()
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
