//! Data, metrics and evaluation tests: one binary, so the Burn stack is linked once.

#[path = "../common/mod.rs"]
mod common;

mod calibrate_mask_distance;
mod calibrate_mask_threshold;
mod calibrate_probability;
mod evaluate_baseline;
mod evaluate_calibrate;
mod evaluate_second_look;
mod metrics_accumulate;
mod metrics_bootstrap;
mod metrics_calibration;
mod metrics_overlap;
mod metrics_paired;
mod metrics_referral;
mod metrics_report;
mod metrics_uncertainty;
mod predict;
mod prepare_lidc;
mod prepare_luna;
mod prepare_mine;
mod prepare_sampling;
mod synth;
mod train_augment;
