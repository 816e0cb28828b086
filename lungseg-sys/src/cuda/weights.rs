//! The model's weights in the CUDA kernels' layouts (fp16 values held as f32), and what a model
//! must satisfy to run on those kernels.

use half::f16;

use super::reference as r;
use crate::model::Network;

/// Weights in the kernels' layouts, fp16 values held as f32 (exactly representable) so the
/// CPU references and the upload share one copy.
pub struct GpuWeights {
    /// enc.0.conv1: `[32][cout]` f32 (taps 27..31 zero), bias `[cout]`.
    pub first_w: Vec<f32>,
    pub first_b: Vec<f32>,
    /// Every other 3³ conv, in plan order: `[cout][27][cin]`, bias `[cout]`.
    pub convs: Vec<ConvW>,
    /// `up[l]`: `[8][cout][cin]`.
    pub ups: Vec<ConvW>,
    pub head_w: Vec<f32>,
    pub head_b: f32,
}

pub struct ConvW {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub cin: usize,
    pub cout: usize,
}

fn conv_w(c: &crate::model::Conv3) -> ConvW {
    let cp = c.bias.len();
    let cin = c.w.len() / (27 * cp);
    let mut w = vec![0.0; c.cout * 27 * cin];
    for t in 0..27 {
        for ci in 0..cin {
            for co in 0..c.cout {
                w[(co * 27 + t) * cin + ci] = r::round_f16(c.w[(t * cin + ci) * cp + co]);
            }
        }
    }
    ConvW {
        w,
        bias: c.bias[..c.cout].to_vec(),
        cin,
        cout: c.cout,
    }
}

impl GpuWeights {
    /// Device bytes once uploaded: conv and up-conv weights as fp16, everything else f32.
    pub fn device_bytes(&self) -> usize {
        let convs: usize = self
            .convs
            .iter()
            .chain(&self.ups)
            .map(|c| 2 * c.w.len() + 4 * c.bias.len())
            .sum();
        convs + 4 * (self.first_w.len() + self.first_b.len() + self.head_w.len())
    }

    pub fn new(model: &Network) -> GpuWeights {
        let net = &model.net;
        let c0 = &net.enc[0].conv1;
        let cp = c0.bias.len();
        let mut first_w = vec![0.0; 32 * c0.cout];
        for t in 0..27 {
            for co in 0..c0.cout {
                first_w[t * c0.cout + co] = c0.w[t * cp + co];
            }
        }
        let mut convs = vec![conv_w(&net.enc[0].conv2)];
        for b in &net.enc[1..] {
            convs.push(conv_w(&b.conv1));
            convs.push(conv_w(&b.conv2));
        }
        for l in (0..net.dec.len()).rev() {
            convs.push(conv_w(&net.dec[l].conv1));
            convs.push(conv_w(&net.dec[l].conv2));
        }
        let ups = net
            .up
            .iter()
            .enumerate()
            .map(|(l, u)| {
                let cp = u.bias.len();
                let cin = u.w.len() / (8 * cp);
                let cout = model.config().channels[l];
                let mut w = vec![0.0; 8 * cout * cin];
                for ci in 0..cin {
                    for o in 0..8 {
                        for co in 0..cout {
                            w[(o * cout + co) * cin + ci] =
                                r::round_f16(u.w[(ci * 8 + o) * cp + co]);
                        }
                    }
                }
                ConvW {
                    w,
                    bias: u.bias[..cout].to_vec(),
                    cin,
                    cout,
                }
            })
            .collect();
        GpuWeights {
            first_w,
            first_b: c0.bias[..c0.cout].to_vec(),
            convs,
            ups,
            head_w: net.head.w.clone(),
            head_b: net.head.bias,
        }
    }
}

/// Why a model cannot run on the CUDA backend (layout requirements of the kernels), if so.
pub fn unsupported_reason(model: &Network) -> Option<String> {
    if let Some(why) = fp16_overflow(model) {
        return Some(why);
    }
    let ch = &model.config().channels;
    if let Some(c) = ch.iter().find(|&&c| c % 16 != 0) {
        return Some(format!(
            "channel count {c} is not a multiple of 16 (tensor-core K tiles)"
        ));
    }
    if ch[0] > 64 {
        return Some(format!("first-level channels {} exceed 64", ch[0]));
    }
    None
}

/// The first BN-folded weight that the kernels hold as fp16 but fp16 cannot (it would round to
/// ±inf and turn whole activations into inf/NaN). The first layer and the head stay f32.
fn fp16_overflow(model: &Network) -> Option<String> {
    let net = &model.net;
    let mut layers: Vec<(String, &[f32])> = Vec::new();
    for (l, b) in net.enc.iter().enumerate() {
        if l > 0 {
            layers.push((format!("enc.{l}.conv1"), &b.conv1.w));
        }
        layers.push((format!("enc.{l}.conv2"), &b.conv2.w));
    }
    for (l, b) in net.dec.iter().enumerate() {
        layers.push((format!("dec.{l}.conv1"), &b.conv1.w));
        layers.push((format!("dec.{l}.conv2"), &b.conv2.w));
    }
    for (l, u) in net.up.iter().enumerate() {
        layers.push((format!("dec.{l}.up"), &u.w));
    }
    layers.into_iter().find_map(|(name, w)| {
        let v = w.iter().find(|&&v| !f16::from_f32(v).is_finite())?;
        Some(format!(
            "{name} has a BN-folded weight of {v:e}, beyond fp16's ±65504"
        ))
    })
}
