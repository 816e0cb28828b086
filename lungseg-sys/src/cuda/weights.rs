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
    /// Stored channel counts ([`stored_channels`] of each source, summed).
    pub cin: usize,
    pub cout: usize,
}

/// The channels a device buffer holds for a layer of `c` channels: the next multiple of 16,
/// the tensor cores' K group (`mma.m16n8k16`), so that a network with 8-channel levels (the
/// default model's level 0) runs on the same kernels. The extra channels are zeros: every
/// weight into them and their bias are 0 (ReLU, pooling, dropout and the up-conv keep 0) and
/// every weight out of them is 0, so they change no sum; they cost their share of the FLOPs.
pub const fn stored_channels(c: usize) -> usize {
    c.next_multiple_of(16)
}

/// Pads `v` (length `n`) with zeros to `stored_channels(n)`.
fn padded(v: &[f32], n: usize) -> Vec<f32> {
    let mut out = v[..n].to_vec();
    out.resize(stored_channels(n), 0.0);
    out
}

/// A 3³ conv in the kernel layout `[cout][27][cin]` (stored channels). `sources` are the
/// logical channel counts of its inputs in K order (the decoder's first conv: skip, then the
/// upsampled tensor), each padded to its stored count.
fn conv_w(c: &crate::model::Conv3, sources: &[usize]) -> ConvW {
    let cp = c.bias.len();
    let cin = c.w.len() / (27 * cp);
    assert_eq!(
        sources.iter().sum::<usize>(),
        cin,
        "conv sources vs its weights"
    );
    let mut col = Vec::with_capacity(cin);
    let mut base = 0;
    for &n in sources {
        col.extend(base..base + n);
        base += stored_channels(n);
    }
    let (cin_s, cout_s) = (base, stored_channels(c.cout));
    let mut w = vec![0.0; cout_s * 27 * cin_s];
    for t in 0..27 {
        for (ci, &k) in col.iter().enumerate() {
            for co in 0..c.cout {
                w[(co * 27 + t) * cin_s + k] = r::round_f16(c.w[(t * cin + ci) * cp + co]);
            }
        }
    }
    ConvW {
        w,
        bias: padded(&c.bias, c.cout),
        cin: cin_s,
        cout: cout_s,
    }
}

/// `up[l]` in the kernel layout `[8][cout][cin]` (stored channels): `cin` logical channels of
/// level l + 1 to `cout` of level l.
fn up_w(u: &crate::model::UpConv, cin: usize, cout: usize) -> ConvW {
    let cp = u.bias.len();
    let (cin_s, cout_s) = (stored_channels(cin), stored_channels(cout));
    let mut w = vec![0.0; 8 * cout_s * cin_s];
    for ci in 0..cin {
        for o in 0..8 {
            for co in 0..cout {
                w[(o * cout_s + co) * cin_s + ci] = r::round_f16(u.w[(ci * 8 + o) * cp + co]);
            }
        }
    }
    ConvW {
        w,
        bias: padded(&u.bias, cout),
        cin: cin_s,
        cout: cout_s,
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
        let ch = &model.config().channels;
        let c0 = &net.enc[0].conv1;
        let cp = c0.bias.len();
        let first_cout = stored_channels(c0.cout);
        let mut first_w = vec![0.0; 32 * first_cout];
        for t in 0..27 {
            for co in 0..c0.cout {
                first_w[t * first_cout + co] = c0.w[t * cp + co];
            }
        }
        let mut convs = vec![conv_w(&net.enc[0].conv2, &[ch[0]])];
        for (l, b) in net.enc.iter().enumerate().skip(1) {
            convs.push(conv_w(&b.conv1, &[ch[l - 1]]));
            convs.push(conv_w(&b.conv2, &[ch[l]]));
        }
        for l in (0..net.dec.len()).rev() {
            convs.push(conv_w(&net.dec[l].conv1, &[ch[l], ch[l]]));
            convs.push(conv_w(&net.dec[l].conv2, &[ch[l]]));
        }
        let ups = net
            .up
            .iter()
            .enumerate()
            .map(|(l, u)| up_w(u, ch[l + 1], ch[l]))
            .collect();
        GpuWeights {
            first_w,
            first_b: padded(&c0.bias, c0.cout),
            convs,
            ups,
            head_w: padded(&net.head.w, ch[0]),
            head_b: net.head.bias,
        }
    }
}

/// Why a model cannot run on the CUDA backend (layout requirements of the kernels), if so.
pub fn unsupported_reason(model: &Network) -> Option<String> {
    if let Some(why) = fp16_overflow(model) {
        return Some(why);
    }
    let c0 = model.config().channels[0];
    if stored_channels(c0) > 64 {
        return Some(format!(
            "first-level channels {c0} exceed 64 (stored as {})",
            stored_channels(c0)
        ));
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
