//! lungseg-train: the training harness around `lungseg`. For now: synthetic LUNA16-like CT
//! ([`synth`]) and a provisional demo ([`demo`]); LUNA16 preparation, training (Burn), export
//! and evaluation come next.

pub mod demo;
pub mod synth;
