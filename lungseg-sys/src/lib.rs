//! lungseg: lung-nodule segmentation with Monte-Carlo-dropout uncertainty, for device software.
//!
//! Layers, bottom up: [`mhd`] reads and writes MetaImage CT into a [`volume::Volume`] with
//! [`geometry`]; [`patch`] resamples HU patches around world points; [`model`] loads the
//! safetensors U-Net into an immutable [`model::Network`]; [`nn`] holds the CPU kernels and
//! `cpu` the CPU engine over them; `stats` is the MC reduction; `predict` runs the forward
//! pass and MC-dropout sampling with [`philox`] masks on an engine; `backend` chooses the
//! engine at open (CPU, or the `cuda` GPU engine); [`mc`] is the inference entry point on a
//! [`model::Model`]; [`mask`] cuts the final mask and [`probability_map`] calibrates the
//! mean by distance from it; [`intended_use`] flags patches of scans the model is not meant for; [`ffi`] is the stable C ABI (`include/lungseg.h`).

// Unit tests share the integration tests' helpers, which name the crate `lungseg`.
#[cfg(test)]
extern crate self as lungseg;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

pub(crate) mod backend;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod ffi;
mod fsio;
pub mod fuzzing;
pub mod geometry;
pub mod intended_use;
pub mod mask;
pub mod mc;
pub mod mhd;
pub mod model;
pub mod nn;
pub mod patch;
pub mod philox;
pub(crate) mod predict;
pub mod probability_map;
pub mod scan_map;
pub mod second_look;
pub(crate) mod stats;
pub mod volume;
pub mod wide_look;

pub use error::{Error, ErrorKind, Result};
pub use geometry::Geometry;
pub use volume::{ElementType, PixelData, Volume};

/// The crate version, as `Cargo.toml` states it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
