//! The 3D U-Net of `docs/model-format.md` in Burn, and the JSON config it shares with
//! lungseg-sys.
//!
//! Field names are chosen so that the module paths are the PyTorch state_dict names the
//! engine reads (`enc.{l}.conv1.weight`, `dec.{l}.up.weight`, `head.bias`, ...); only
//! BatchNorm's `gamma`/`beta` are renamed at export.

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

/// Which units a dropout layer zeroes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DropoutKind {
    /// Whole channels per sample, like PyTorch's `Dropout3d`.
    Channel,
    /// Single activations, like PyTorch's `Dropout`.
    Element,
}

/// The `dropout` object of the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutSpec {
    pub p: f64,
    pub kind: DropoutKind,
    /// U-Net levels whose blocks (encoder and decoder) apply dropout; absent: every level.
    /// Files that name levels are `format_version` 2 (docs/model-format.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<usize>>,
}

impl DropoutSpec {
    /// The dropout probability of the blocks of U-Net level `level`.
    pub fn p_at(&self, level: usize) -> f64 {
        match &self.levels {
            Some(levels) if !levels.contains(&level) => 0.0,
            _ => self.p,
        }
    }
}

/// The `config` metadata JSON of a model file (issue 3), field for field.
///
/// Serialised with `serde_json`, the default is byte-identical to the documented example, so
/// lungseg-sys and a PyTorch script read the same document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Channels per level, shallowest first; the last level is the bottleneck.
    pub channels: Vec<usize>,
    /// Only `"batch"` is trained here.
    pub norm: String,
    pub bn_eps: f64,
    pub dropout: DropoutSpec,
    /// Only `"conv_transpose"` (k2 s2).
    pub upsample: String,
    pub patch_size: [usize; 3],
    pub spacing_mm: [f64; 3],
    /// (lo, hi): the input is `clip((HU - lo) / (hi - lo), 0, 1)`.
    pub hu_window: [f64; 2],
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            out_channels: 1,
            channels: vec![16, 32, 64, 128, 256],
            norm: "batch".into(),
            bn_eps: 1e-5,
            dropout: DropoutSpec {
                p: 0.2,
                kind: DropoutKind::Channel,
                levels: None,
            },
            upsample: "conv_transpose".into(),
            patch_size: [64, 64, 64],
            spacing_mm: [1.0, 1.0, 1.0],
            hu_window: [-1000.0, 400.0],
        }
    }
}

impl UNetConfig {
    /// Rejects configs this crate cannot build, with a message naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.in_channels >= 1, "config.in_channels must be ≥ 1");
        anyhow::ensure!(
            self.out_channels == 1,
            "config.out_channels must be 1 (binary segmentation)"
        );
        anyhow::ensure!(!self.channels.is_empty(), "config.channels is empty");
        anyhow::ensure!(
            self.channels.iter().all(|&c| c > 0),
            "config.channels has a zero"
        );
        anyhow::ensure!(
            self.norm == "batch",
            "config.norm '{}' (only 'batch' is trainable here)",
            self.norm
        );
        anyhow::ensure!(
            self.upsample == "conv_transpose",
            "config.upsample '{}' (only 'conv_transpose')",
            self.upsample
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.dropout.p),
            "config.dropout.p = {} must be in [0, 1)",
            self.dropout.p
        );
        if let Some(levels) = &self.dropout.levels {
            anyhow::ensure!(
                levels.iter().all(|&l| l < self.channels.len()),
                "config.dropout.levels {levels:?}: the network has levels 0..{}",
                self.channels.len()
            );
        }
        anyhow::ensure!(self.bn_eps > 0.0, "config.bn_eps must be positive");
        let div = 1usize << (self.channels.len() - 1);
        anyhow::ensure!(
            self.patch_size.iter().all(|&s| s > 0 && s % div == 0),
            "config.patch_size {:?} must be divisible by {div} ({} levels)",
            self.patch_size,
            self.channels.len()
        );
        anyhow::ensure!(
            self.hu_window[1] > self.hu_window[0],
            "config.hu_window must be (lo, hi) with lo < hi"
        );
        Ok(())
    }

    /// Maps HU to the network input range, exactly as lungseg-sys does.
    pub fn normalize_hu(&self, hu: f32) -> f32 {
        let [lo, hi] = self.hu_window;
        (((f64::from(hu) - lo) / (hi - lo)) as f32).clamp(0.0, 1.0)
    }

    /// Builds a freshly initialised network on `device`.
    pub fn init(&self, device: &Device) -> UNet {
        let ch = &self.channels;
        let drop = |l| Dropout3d::new(&self.dropout, l);
        let enc = (0..ch.len())
            .map(|l| {
                let cin = if l == 0 { self.in_channels } else { ch[l - 1] };
                Block::new(None, cin, ch[l], self.bn_eps, drop(l), device)
            })
            .collect();
        let dec = (0..ch.len() - 1)
            .map(|l| {
                let up = ConvTranspose3dConfig::new([ch[l + 1], ch[l]], [2, 2, 2])
                    .with_stride([2, 2, 2])
                    .init(device);
                Block::new(Some(up), 2 * ch[l], ch[l], self.bn_eps, drop(l), device)
            })
            .collect();
        let head = Conv3dConfig::new([ch[0], self.out_channels], [1, 1, 1]).init(device);
        UNet { enc, dec, head }
    }
}

/// Where training-mode dropout takes its keep masks from.
///
/// Layers are numbered in execution order as in docs/model-format.md (`2l`, `2l + 1` in
/// encoder level `l`, then the decoder from the deepest level up), so a mask source can replay
/// another framework's masks layer by layer (the PyTorch gradient fixture does).
pub trait DropoutMasks {
    /// The 0/1 keep mask of dropout `layer` for an activation of `shape`: `[b, c, 1, 1, 1]`
    /// when `channel`, else `shape`; each unit kept with probability `keep`.
    fn keep_mask(
        &mut self,
        layer: usize,
        shape: [usize; 5],
        keep: f64,
        channel: bool,
        device: &Device,
    ) -> Tensor<5>;
}

/// Masks drawn from Burn's random number generator (what training uses).
pub struct RandomMasks;

impl DropoutMasks for RandomMasks {
    fn keep_mask(
        &mut self,
        _layer: usize,
        shape: [usize; 5],
        keep: f64,
        channel: bool,
        device: &Device,
    ) -> Tensor<5> {
        let [b, c, ..] = shape;
        let shape = if channel { [b, c, 1, 1, 1] } else { shape };
        Tensor::random(shape, Distribution::Bernoulli(keep), device)
    }
}

/// Dropout that can drop whole channels (Burn 0.22 has no `Dropout3d`).
///
/// Active only in training mode on an autodiff device, like Burn's own `Dropout`.
#[derive(Module, Debug)]
pub struct Dropout3d {
    pub prob: f64,
    pub channel: bool,
    pub training: Param<Flag>,
}

impl Dropout3d {
    /// The dropout of the blocks of U-Net level `level`.
    pub fn new(spec: &DropoutSpec, level: usize) -> Self {
        Dropout3d {
            prob: spec.p_at(level),
            channel: spec.kind == DropoutKind::Channel,
            training: Param::from_bool(true),
        }
    }

    /// Dropout with masks from Burn's generator.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward_with(x, 0, &mut RandomMasks)
    }

    /// Dropout as layer `layer`, with masks from `masks`.
    pub fn forward_with(
        &self,
        x: Tensor<5>,
        layer: usize,
        masks: &mut dyn DropoutMasks,
    ) -> Tensor<5> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mask = masks.keep_mask(layer, x.dims(), keep, self.channel, &x.device());
        x * mask.div_scalar(keep)
    }
}

/// Two Conv3d 3³ → BN → ReLU → Dropout, preceded in the decoder by the up-convolution.
///
/// One type for both paths keeps the tensor names flat (`dec.{l}.up`, `dec.{l}.conv1`): an
/// encoder block's `up` is `None`, and `Option` adds no path segment.
#[derive(Module, Debug)]
pub struct Block {
    pub up: Option<ConvTranspose3d>,
    pub conv1: Conv3d,
    pub bn1: BatchNorm,
    pub conv2: Conv3d,
    pub bn2: BatchNorm,
    pub drop: Dropout3d,
}

impl Block {
    fn new(
        up: Option<ConvTranspose3d>,
        cin: usize,
        cout: usize,
        eps: f64,
        drop: Dropout3d,
        device: &Device,
    ) -> Self {
        let conv = |ci, co| {
            Conv3dConfig::new([ci, co], [3, 3, 3])
                .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                .init(device)
        };
        let bn = || BatchNormConfig::new(cout).with_epsilon(eps).init(device);
        Block {
            up,
            conv1: conv(cin, cout),
            bn1: bn(),
            conv2: conv(cout, cout),
            bn2: bn(),
            drop,
        }
    }

    /// The block with dropout layers `layer` and `layer + 1`.
    fn forward(&self, x: Tensor<5>, layer: usize, masks: &mut dyn DropoutMasks) -> Tensor<5> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = self.drop.forward_with(x, layer, masks);
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        self.drop.forward_with(x, layer + 1, masks)
    }
}

/// The U-Net: `enc[0..L]` (the last is the bottleneck), `dec[0..L-1]`, 1×1×1 `head`.
#[derive(Module, Debug)]
pub struct UNet {
    pub enc: Vec<Block>,
    pub dec: Vec<Block>,
    pub head: Conv3d,
}

impl UNet {
    /// The same weights with the dropout of `spec` (dropout has no weights, so a model can be
    /// fine-tuned with dropout in other levels than it was trained with).
    pub fn with_dropout(mut self, spec: &DropoutSpec) -> Self {
        for (l, b) in self.enc.iter_mut().enumerate() {
            b.drop = Dropout3d::new(spec, l);
        }
        for (l, b) in self.dec.iter_mut().enumerate() {
            b.drop = Dropout3d::new(spec, l);
        }
        self
    }

    /// Logits `[B, 1, D, H, W]` for normalised input `[B, C_in, D, H, W]`.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward_with(x, &mut RandomMasks)
    }

    /// [`forward`](Self::forward) with training-mode dropout masks from `masks`.
    pub fn forward_with(&self, x: Tensor<5>, masks: &mut dyn DropoutMasks) -> Tensor<5> {
        let mut skips = Vec::with_capacity(self.enc.len());
        let mut x = x;
        for (l, block) in self.enc.iter().enumerate() {
            if l > 0 {
                x = max_pool2(x);
            }
            x = block.forward(x, 2 * l, masks);
            skips.push(x.clone());
        }
        skips.pop();
        // Decoder layers continue the numbering from the deepest level up.
        let mut layer = 2 * self.enc.len();
        for block in self.dec.iter().rev() {
            let up = block
                .up
                .as_ref()
                .expect("decoder blocks have an up-convolution");
            let skip = skips.pop().expect("one skip per decoder level");
            x = block.forward(Tensor::cat(vec![skip, up.forward(x)], 1), layer, masks);
            layer += 2;
        }
        self.head.forward(x)
    }

    /// Learnable parameters (conv and BN weights and biases; not BN running statistics),
    /// counted the way lungseg-sys and PyTorch's `parameters()` count them.
    pub fn num_learnable_params(&self) -> usize {
        let bn = |b: &BatchNorm| b.gamma.shape().num_elements() + b.beta.shape().num_elements();
        let conv = |c: &Conv3d| {
            c.weight.shape().num_elements()
                + c.bias.as_ref().map_or(0, |b| b.shape().num_elements())
        };
        let blocks: usize = self
            .enc
            .iter()
            .chain(&self.dec)
            .map(|b| {
                let up = b.up.as_ref().map_or(0, |u| {
                    u.weight.shape().num_elements()
                        + u.bias.as_ref().map_or(0, |b| b.shape().num_elements())
                });
                up + conv(&b.conv1) + conv(&b.conv2) + bn(&b.bn1) + bn(&b.bn2)
            })
            .sum();
        blocks + conv(&self.head)
    }
}

/// MaxPool3d(2) as a native 2-D pool over (h, w) and a `max_dim` over pairs of slices, keeping
/// every tensor ≤ 5-D (Burn 0.22 has no 3-D pool). The 2-D pool runs in the backend's own
/// kernel both ways (libtorch's `max_pool2d_with_indices` with `--backend tch`), which leaves one
/// generic max-and-scatter on half the data instead of three.
pub fn max_pool2(x: Tensor<5>) -> Tensor<5> {
    let [b, c, d, h, w] = x.dims();
    let (d2, h2, w2) = (d / 2, h / 2, w / 2);
    let planes = max_pool2d(x.reshape([b, c * d, h, w]), MaxPoolOptions::new([2, 2]));
    planes
        .reshape([b * c, d2, 2, h2 * w2])
        .max_dim(2)
        .reshape([b, c, d2, h2, w2])
}
