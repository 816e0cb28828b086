//! lungseg-train: the training harness around `lungseg`: synthetic LUNA16-like CT ([`synth`]),
//! LUNA16 patch preparation ([`prepare`], [`dataset`]), the Burn U-Net ([`model`]) and its
//! training ([`train`]) and export ([`export`]), review-threshold calibration ([`calibrate`]),
//! evaluation through lungseg-sys ([`evaluate`], [`metrics`], [`report`]) and the demo ([`demo`]).

pub mod average;
pub mod calibrate;
pub mod components;
pub mod dataset;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod import;
pub mod intended_use;
pub mod metrics;
pub mod model;
pub mod model_file;
pub mod predict;
pub mod prepare;
pub mod report;
pub mod second_look;
pub mod synth;
pub mod train;
pub mod widen;
