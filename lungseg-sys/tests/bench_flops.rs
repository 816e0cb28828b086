//! The FLOP count the CPU benchmarks report against (`examples/common/flops.rs`): the default
//! net's figure in BENCHMARKS.md, and the MC count's bounds.

#[path = "../examples/common/flops.rs"]
mod flops;

use lungseg::model::{DropoutKind, ModelConfig};

#[test]
fn the_default_net_is_the_documented_29_842_gflop() {
    let m = flops::forward_macs(&ModelConfig::default());
    assert_eq!(m.prologue, 64 * 64 * 64 * 27 * 16);
    assert_eq!(m.prologue + m.rest, 14_921_236_480);
    let gflop = flops::forward_gflop(&ModelConfig::default());
    assert!((gflop - 29.842_472_96).abs() < 1e-9, "{gflop}");
}

#[test]
fn mc_executes_the_prologue_once_and_skips_dropped_channels() {
    let mut cfg = ModelConfig::default();
    let m = flops::forward_macs(&cfg);
    let per_pass = 2e-9 * m.rest as f64;
    let once = 2e-9 * m.prologue as f64;
    let full = once + 20.0 * per_pass;
    // Element dropout in every level skips nothing: every sample runs the whole pass after
    // the prologue.
    cfg.dropout.kind = DropoutKind::Element;
    let all = flops::mc_executed_gflop(&cfg, 1, 20);
    assert!((all - full).abs() < 1e-6, "{all} vs {full}");
    // Channel dropout at p = 0.2: between the layers' (1 − p) share and the whole pass.
    cfg.dropout.kind = DropoutKind::Channel;
    let some = flops::mc_executed_gflop(&cfg, 1, 20);
    assert!(some < all && some > 0.7 * all, "{some} of {all}");
    // A different seed drops different channels.
    assert_ne!(some, flops::mc_executed_gflop(&cfg, 2, 20));
}

#[test]
fn encoder_levels_without_dropout_run_once_per_call() {
    let mut cfg = ModelConfig::default();
    cfg.dropout.kind = DropoutKind::Element;
    cfg.dropout.levels = lungseg::model::LevelSet(1 << 4);
    // The encoder of levels 0..4 by hand: enc.0.conv2, then conv1 + conv2 of levels 1..3.
    let ch = [16u64, 32, 64, 128];
    let vox = |l: usize| (64u64 >> l).pow(3);
    let mut encoder = vox(0) * 27 * 16 * 16;
    for l in 1..4 {
        encoder += vox(l) * 27 * (ch[l - 1] * ch[l] + ch[l] * ch[l]);
    }
    let m = flops::forward_macs(&cfg);
    assert_eq!(m.prologue, 64 * 64 * 64 * 27 * 16 + encoder);
    assert_eq!(m.prologue + m.rest, 14_921_236_480);
    let executed = flops::mc_executed_gflop(&cfg, 1, 20);
    let want = 2e-9 * (m.prologue as f64 + 20.0 * m.rest as f64);
    assert!((executed - want).abs() < 1e-6, "{executed} vs {want}");
}
