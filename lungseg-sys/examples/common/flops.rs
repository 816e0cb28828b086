//! Floating-point work of the U-Net, counted from the model's layer shapes: the one count the
//! CPU benchmarks report GFLOP/s against (BENCHMARKS.md, "Achieved GFLOP/s").
//!
//! A multiply-add is 2 FLOPs, and only the convolutions count: the 3³ convs, the 2³ stride-2
//! transposed convs and the 1³ head. Folded BN, bias, ReLU, pooling, sigmoid and dropout are
//! left out. The default net at 64³ is 14,921,236,480 multiply-adds = 29.842 GFLOP.
//!
//! Two counts for MC dropout: *nominal* = samples × one forward pass (the work of a peer that
//! multiplies by a mask), and *executed* = what the engine runs: `enc.0.conv1` (before the
//! first dropout) and the encoder levels without dropout above the first level with it once
//! per call, and per sample every consumer of a channel-dropout tensor over
//! its kept input channels only, read from the same Philox masks
//! (docs/model-format.md, "Dropout layers and masks"; the layer numbers `k` are the ones
//! documented there). Element dropout skips nothing.

use lungseg::model::dropout::{dec_layer, enc_layer};
use lungseg::model::{DropoutKind, ModelConfig};
use lungseg::philox::DropoutStream;

/// Multiply-adds of one pass: the part every MC sample shares (`enc.0.conv1`, and the encoder
/// levels before the first level with dropout: `ModelConfig::shared_levels`), and the rest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassMacs {
    pub prologue: u64,
    pub rest: u64,
}

/// One forward pass with every input channel live (the deterministic pass).
pub fn forward_macs(cfg: &ModelConfig) -> PassMacs {
    pass_macs(cfg, &|_k, c| c)
}

/// GFLOP of one deterministic forward pass.
pub fn forward_gflop(cfg: &ModelConfig) -> f64 {
    let m = forward_macs(cfg);
    gflop(m.prologue + m.rest)
}

/// GFLOP the engine executes for one MC call of `samples` samples keyed by `seed`.
pub fn mc_executed_gflop(cfg: &ModelConfig, seed: u64, samples: u32) -> f64 {
    let chan = cfg.dropout.kind == DropoutKind::Channel;
    let mut macs = forward_macs(cfg).prologue;
    for s in 0..samples {
        let kept = |k: u32, c: usize| {
            if !chan || !cfg.layer_drops(k) {
                return c;
            }
            let d = DropoutStream::new(seed, s, k, cfg.layer_p(k));
            (0..c as u64).filter(|&i| d.keep(i)).count()
        };
        macs += pass_macs(cfg, &kept).rest;
    }
    gflop(macs)
}

fn gflop(macs: u64) -> f64 {
    2.0 * macs as f64 * 1e-9
}

/// Multiply-adds with `kept(k, c)` live input channels out of the `c` channels of dropout
/// layer `k`.
fn pass_macs(cfg: &ModelConfig, kept: &dyn Fn(u32, usize) -> usize) -> PassMacs {
    let ch = &cfg.channels;
    let levels = ch.len();
    let vox = |l: usize| -> u64 { cfg.patch_size.iter().map(|&n| (n >> l) as u64).product() };
    let live = |k: u32, c: usize| kept(k, c) as u64;
    let enc_k = enc_layer;
    let dec_k = |l: usize, second: bool| dec_layer(levels, l, second);
    let c0 = ch[0] as u64;
    let mut prologue = vox(0) * 27 * cfg.in_channels as u64 * c0;
    let mut rest = 0;
    // Encoder levels before the first one with dropout run once per call, in the prologue.
    let shared = cfg.shared_levels();
    // enc.0.conv2
    let enc0 = vox(0) * 27 * live(enc_k(0, false), ch[0]) * c0;
    *(if shared > 0 { &mut prologue } else { &mut rest }) += enc0;
    for l in 1..levels {
        let c = ch[l] as u64;
        let block = vox(l) * 27 * live(enc_k(l - 1, true), ch[l - 1]) * c
            + vox(l) * 27 * live(enc_k(l, false), ch[l]) * c;
        *(if l < shared { &mut prologue } else { &mut rest }) += block;
    }
    for l in (0..levels.saturating_sub(1)).rev() {
        let c = ch[l] as u64;
        let below = if l + 2 == levels {
            enc_k(l + 1, true)
        } else {
            dec_k(l + 1, true)
        };
        // Each input voxel of the level below feeds 8 outputs.
        rest += vox(l + 1) * 8 * live(below, ch[l + 1]) * c;
        // The concat: the dropped skip tensor, then the transposed conv's output (no dropout).
        rest += vox(l) * 27 * (live(enc_k(l, true), ch[l]) + c) * c;
        rest += vox(l) * 27 * live(dec_k(l, false), ch[l]) * c;
    }
    let last = if levels > 1 {
        dec_k(0, true)
    } else {
        enc_k(0, true)
    };
    rest += vox(0) * live(last, ch[0]) * cfg.out_channels as u64;
    PassMacs { prologue, rest }
}
