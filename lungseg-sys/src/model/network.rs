//! The immutable network: its configuration, review settings, provenance and BN-folded
//! weights. Every backend builds its own state from it; nothing here changes after load.

use super::config::{ModelConfig, ReviewConfig};

/// A loaded network, independent of where it runs. The weights are BN-folded f32 in the
/// layout below, which the CPU kernels read as they are and from which the CUDA backend
/// derives its fp16 layouts (`crate::cuda::weights`).
pub struct Network {
    pub(super) config: ModelConfig,
    pub(super) review: ReviewConfig,
    pub(super) provenance: String,
    pub(super) parameter_count: usize,
    pub(crate) net: Net,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .field("review", &self.review)
            .field("parameter_count", &self.parameter_count)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Architecture and input specification.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Which patch score flags a case for review, and its threshold.
    pub fn review(&self) -> &ReviewConfig {
        &self.review
    }

    /// The raw `provenance` JSON of the file (`{}` when absent).
    pub fn provenance(&self) -> &str {
        &self.provenance
    }

    /// Learnable parameters as PyTorch counts them (conv/BN weights and biases; running
    /// statistics excluded).
    pub fn parameter_count(&self) -> usize {
        self.parameter_count
    }
}

/// 3³ convolution with BN folded in. `w` is `[27][cin][pad16(cout)]` (tap `9kz + 3ky + kx`),
/// `bias` is `[pad16(cout)]`; padding lanes are zero. `wino` holds the Winograd-transformed
/// weights `[64][cin][pad16(cout)]` (`crate::nn::winograd::weights`) of the layers where
/// `crate::nn::winograd::pays`.
pub(crate) struct Conv3 {
    pub cout: usize,
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub wino: Option<Vec<f32>>,
}

/// Transposed conv k2 s2: `w` is `[cin][8][pad16(cout)]`, `bias` `[pad16(cout)]`.
pub(crate) struct UpConv {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
}

/// 1×1×1 conv to one logit.
pub(crate) struct Head {
    pub w: Vec<f32>,
    pub bias: f32,
}

pub(crate) struct Block {
    pub conv1: Conv3,
    pub conv2: Conv3,
}

/// `enc[l]` for every level (the last is the bottleneck); `up[l]`/`dec[l]` produce level `l`.
pub(crate) struct Net {
    pub enc: Vec<Block>,
    pub up: Vec<UpConv>,
    pub dec: Vec<Block>,
    pub head: Head,
}

impl Net {
    /// Floats of the largest weight tensor (what one sample's dropout-scaled copy may need).
    pub(crate) fn max_weight_len(&self) -> usize {
        self.enc
            .iter()
            .chain(&self.dec)
            .flat_map(|b| [b.conv1.w.len(), b.conv2.w.len()])
            .chain(self.up.iter().map(|u| u.w.len()))
            .chain([self.head.w.len()])
            .max()
            .unwrap_or(0)
    }
}
