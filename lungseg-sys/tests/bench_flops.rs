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
    // Nothing dropped: every sample runs the whole pass after the prologue.
    cfg.dropout.p = 0.0;
    let all = flops::mc_executed_gflop(&cfg, 1, 20);
    assert!((all - (once + 20.0 * per_pass)).abs() < 1e-6, "{all}");
    // Element dropout skips nothing either.
    cfg.dropout.p = 0.2;
    cfg.dropout.kind = DropoutKind::Element;
    assert!((flops::mc_executed_gflop(&cfg, 1, 20) - all).abs() < 1e-6);
    // Channel dropout at p = 0.2: between the layers' (1 − p) share and the whole pass.
    cfg.dropout.kind = DropoutKind::Channel;
    let some = flops::mc_executed_gflop(&cfg, 1, 20);
    assert!(some < all && some > 0.7 * all, "{some} of {all}");
    // A different seed drops different channels.
    assert_ne!(some, flops::mc_executed_gflop(&cfg, 2, 20));
}
