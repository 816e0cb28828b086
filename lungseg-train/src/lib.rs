//! lungseg-train: the training harness around `lungseg`: synthetic LUNA16-like CT ([`synth`]),
//! evaluation metrics ([`metrics`]) and reports ([`report`]), and the demo ([`demo`]).
//! LUNA16 preparation, training (Burn) and export come next.

pub mod calibrate;
pub mod dataset;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod metrics;
pub mod model;
pub mod prepare;
pub mod report;
pub mod synth;
pub mod train;
