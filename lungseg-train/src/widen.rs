//! The `widen` command: a model file's U-Net with more channels per level that computes the same
//! function (Net2WiderNet, Chen, Goodfellow & Shlens, ICLR 2016), so that a wider network can
//! start training where a narrower one ended instead of from a random initialisation.
//!
//! Every layer output ("group") that grows from `C` to `C' ≥ C` channels keeps its first `C`
//! channels and fills the rest with copies of randomly drawn ones: the producing convolution's
//! output rows, bias and BatchNorm entries are copied. A copied channel carries the same values
//! as its original (BatchNorm normalises each channel by its own statistics, which are copies
//! too; max pooling and ReLU act per channel), so the consuming layer splits the original's
//! input weights among all copies with random positive shares summing to 1. The sum is the old
//! one exactly (up to f32 rounding); unequal shares let the copies' gradients differ, so
//! training can make them different channels (equal halves would keep the copies identical in
//! the levels without dropout).
//!
//! Groups, for `L` levels (`docs/model-format.md`): `enc.l.conv1` → `a_l`, `enc.l.conv2` →
//! `s_l` (the skip, and through max pooling the input of `enc.{l+1}.conv1`), `dec.l.up` →
//! `u_l`, `dec.l.conv1` → `d_l` (input: concat(`s_l`, `u_l`)), `dec.l.conv2` → `o_l`. The
//! input of `dec.l.up` is the output of the level below: `s_{L−1}` at the bottleneck, `o_{l+1}`
//! otherwise; the head reads level 0's output.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use serde_json::json;

use lungseg::model::{ModelConfig, Norm};

use crate::model_file::{replace_file, ModelFile, RawTensor};

/// Where each channel of a widened group comes from, and the share of the original's outgoing
/// weights it takes.
#[derive(Clone, Debug, PartialEq)]
struct ChannelMap {
    /// The number of channels before widening.
    old: usize,
    /// `source[i]`: the old channel that new channel `i` copies (`source[i] = i` for `i < C`).
    source: Vec<usize>,
    /// `share[i]`: the fraction of `source[i]`'s input weights in the consuming layer that
    /// channel `i` takes; the shares of one old channel's copies sum to 1.
    share: Vec<f32>,
}

impl ChannelMap {
    /// The unchanged group of `n` channels.
    fn identity(n: usize) -> Self {
        ChannelMap {
            old: n,
            source: (0..n).collect(),
            share: vec![1.0; n],
        }
    }

    /// `old` channels widened to `new`: copies of uniformly drawn channels, each copy's share
    /// proportional to a draw from [1, 3), so that none is near 0 (a pair's lie in (0.25, 0.75)).
    fn draw(old: usize, new: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut source: Vec<usize> = (0..old).collect();
        source.extend((old..new).map(|_| rng.random_range(0..old)));
        let raw: Vec<f32> = source.iter().map(|_| rng.random_range(1.0..3.0)).collect();
        let mut total = vec![0.0f32; old];
        for (&s, &r) in source.iter().zip(&raw) {
            total[s] += r;
        }
        let share = source
            .iter()
            .zip(&raw)
            .map(|(&s, &r)| r / total[s])
            .collect();
        ChannelMap { old, source, share }
    }

    /// The map of a channel concatenation `[self, other]` (the decoder's skip and upsampled
    /// halves).
    fn concat(&self, other: &ChannelMap) -> ChannelMap {
        let mut source = self.source.clone();
        source.extend(other.source.iter().map(|s| s + self.old));
        let mut share = self.share.clone();
        share.extend(&other.share);
        ChannelMap {
            old: self.old + other.old,
            source,
            share,
        }
    }
}

/// `values` of `shape` with axis `axis` rebuilt by `map`: entry `i` along it is the old entry
/// `map.source[i]`, times `map.share[i]` when `split` (an input axis) and as is otherwise.
fn remap_axis(
    values: &[f32],
    shape: &[usize],
    axis: usize,
    map: &ChannelMap,
    split: bool,
) -> (Vec<f32>, Vec<usize>) {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let old = shape[axis];
    let new = map.source.len();
    let mut out = Vec::with_capacity(outer * new * inner);
    for o in 0..outer {
        for (&s, &share) in map.source.iter().zip(&map.share) {
            let start = (o * old + s) * inner;
            let scale = if split { share } else { 1.0 };
            out.extend(values[start..start + inner].iter().map(|v| v * scale));
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = new;
    (out, new_shape)
}

/// One layer's tensors (`prefix.weight`, optional `prefix.bias`, and the BatchNorm
/// `bn_prefix.*` when present) remapped: inputs by `input` (axis `in_axis` of the weight),
/// outputs by `output` (the other channel axis, the bias and the BatchNorm vectors).
struct Layer<'a> {
    prefix: String,
    bn: Option<String>,
    input: &'a ChannelMap,
    output: &'a ChannelMap,
    /// 1 for convolutions (`[out, in, k…]`), 0 for the transposed ones (`[in, out, k…]`).
    in_axis: usize,
}

fn f32_tensor(file: &ModelFile, name: &str) -> Result<Option<(Vec<f32>, Vec<usize>)>> {
    match file.tensor(name) {
        None => Ok(None),
        Some(t) => Ok(Some((t.to_f32()?, t.shape.clone()))),
    }
}

fn put(out: &mut ModelFile, name: &str, (values, shape): (Vec<f32>, Vec<usize>)) -> Result<()> {
    out.set_tensor(name, RawTensor::from_f32(Dtype::F32, shape, &values)?);
    Ok(())
}

impl Layer<'_> {
    fn apply(&self, src: &ModelFile, out: &mut ModelFile) -> Result<()> {
        let weight = format!("{}.weight", self.prefix);
        let (w, shape) =
            f32_tensor(src, &weight)?.with_context(|| format!("no tensor {weight}"))?;
        ensure!(
            shape.len() == 5
                && shape[self.in_axis] == self.input.old
                && shape[1 - self.in_axis] == self.output.old,
            "tensor {weight} has shape {shape:?}; its channels do not match the config"
        );
        let (w, shape) = remap_axis(&w, &shape, self.in_axis, self.input, true);
        put(
            out,
            &weight,
            remap_axis(&w, &shape, 1 - self.in_axis, self.output, false),
        )?;
        let mut vectors = vec![format!("{}.bias", self.prefix)];
        if let Some(bn) = &self.bn {
            for v in ["weight", "bias", "running_mean", "running_var"] {
                vectors.push(format!("{bn}.{v}"));
            }
        }
        for name in vectors {
            if let Some((v, shape)) = f32_tensor(src, &name)? {
                put(out, &name, remap_axis(&v, &shape, 0, self.output, false))?;
            }
        }
        Ok(())
    }
}

/// The channel maps of every layer output (module docs: `a_l`, `s_l`, `u_l`, `d_l`, `o_l`).
struct Groups {
    a: Vec<ChannelMap>,
    s: Vec<ChannelMap>,
    u: Vec<ChannelMap>,
    d: Vec<ChannelMap>,
    o: Vec<ChannelMap>,
    /// `concat[l]`: the input of `dec.l.conv1`, concat(`s_l`, `u_l`).
    concat: Vec<ChannelMap>,
    input: ChannelMap,
    output: ChannelMap,
}

impl Groups {
    fn draw(config: &ModelConfig, channels: &[usize], seed: u64) -> Self {
        let old = &config.channels;
        let levels = old.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |l: usize| ChannelMap::draw(old[l], channels[l], &mut rng);
        let a: Vec<ChannelMap> = (0..levels).map(&mut draw).collect();
        let s: Vec<ChannelMap> = (0..levels).map(&mut draw).collect();
        let u: Vec<ChannelMap> = (0..levels - 1).map(&mut draw).collect();
        let d = (0..levels - 1).map(&mut draw).collect();
        let o = (0..levels - 1).map(&mut draw).collect();
        let concat = (0..levels - 1).map(|l| s[l].concat(&u[l])).collect();
        Groups {
            a,
            s,
            u,
            d,
            o,
            concat,
            input: ChannelMap::identity(config.in_channels),
            output: ChannelMap::identity(config.out_channels),
        }
    }

    /// The output of level `l`'s last block: what `dec.{l-1}.up` (or the head) reads.
    fn level_output(&self, l: usize) -> &ChannelMap {
        if l + 1 == self.s.len() {
            &self.s[l]
        } else {
            &self.o[l]
        }
    }

    /// Every layer of the network with its input and output maps.
    fn layers(&self, batch_norm: bool) -> Vec<Layer<'_>> {
        let bn = |p: String| batch_norm.then_some(p);
        let mut layers = Vec::new();
        for l in 0..self.s.len() {
            let prev = if l == 0 { &self.input } else { &self.s[l - 1] };
            let (a, s) = (&self.a[l], &self.s[l]);
            layers.push(conv(
                format!("enc.{l}.conv1"),
                bn(format!("enc.{l}.bn1")),
                prev,
                a,
            ));
            layers.push(conv(
                format!("enc.{l}.conv2"),
                bn(format!("enc.{l}.bn2")),
                a,
                s,
            ));
        }
        for l in 0..self.u.len() {
            layers.push(Layer {
                prefix: format!("dec.{l}.up"),
                bn: None,
                input: self.level_output(l + 1),
                output: &self.u[l],
                in_axis: 0,
            });
            let (c, d, o) = (&self.concat[l], &self.d[l], &self.o[l]);
            layers.push(conv(
                format!("dec.{l}.conv1"),
                bn(format!("dec.{l}.bn1")),
                c,
                d,
            ));
            layers.push(conv(
                format!("dec.{l}.conv2"),
                bn(format!("dec.{l}.bn2")),
                d,
                o,
            ));
        }
        layers.push(conv(
            "head".into(),
            None,
            self.level_output(0),
            &self.output,
        ));
        layers
    }
}

/// How many values the tensors of a U-Net with `channels` hold (weights, biases and BatchNorm
/// vectors; 1 output channel), counted before anything of that size is allocated.
pub fn tensor_values(in_channels: usize, channels: &[usize]) -> u128 {
    let c: Vec<u128> = channels.iter().map(|&c| c as u128).collect();
    let block = |cin: u128, c: u128| 27 * (cin * c + c * c) + 10 * c;
    let mut total = c[0] + 1; // head weight and bias
    for l in 0..c.len() {
        let cin = if l == 0 {
            in_channels as u128
        } else {
            c[l - 1]
        };
        total += block(cin, c[l]);
    }
    for l in 0..c.len() - 1 {
        total += 8 * c[l + 1] * c[l] + c[l] + block(2 * c[l], c[l]);
    }
    total
}

/// `file` with the channels of `channels` (as many levels, none fewer than before), drawn from
/// `seed`. Every tensor is written in F32 (the shares are not representable in F16); the
/// config's `channels` changes and the provenance records the widening; everything else,
/// including the calibrated settings, is kept: the widened network computes what the old one did.
pub fn widen(file: &ModelFile, channels: &[usize], seed: u64) -> Result<ModelFile> {
    let (_, model) = file.to_bytes().context("the model to widen")?;
    let config = model.network().config();
    let old = &config.channels;
    ensure!(
        channels.len() == old.len(),
        "--channels has {} levels; the model has {} ({old:?})",
        channels.len(),
        old.len()
    );
    if let Some(l) = (0..old.len()).find(|&l| channels[l] < old[l]) {
        bail!("--channels {channels:?} narrows level {l} (the model has {old:?}); widen only");
    }
    let bytes = 4 * tensor_values(config.in_channels, channels);
    ensure!(
        bytes <= u128::from(lungseg::model::MAX_FILE_BYTES),
        "--channels {channels:?} would need {bytes} bytes of F32 tensors; lungseg opens model files up to {} bytes",
        lungseg::model::MAX_FILE_BYTES
    );
    let groups = Groups::draw(config, channels, seed);
    let mut out = ModelFile {
        metadata: file.metadata.clone(),
        tensors: Vec::new(),
    };
    for layer in groups.layers(config.norm == Norm::Batch) {
        layer.apply(file, &mut out)?;
    }
    let mut meta = file.json_object("config")?;
    meta.insert("channels".into(), json!(channels));
    out.set_json_object("config", meta);
    let mut provenance = file.json_object("provenance")?;
    provenance.insert(
        "widened".into(),
        json!({"from_channels": old, "to_channels": channels, "seed": seed,
               "method": "Net2WiderNet, random shares"}),
    );
    out.set_json_object("provenance", provenance);
    Ok(out)
}

fn conv<'a>(
    prefix: String,
    bn: Option<String>,
    input: &'a ChannelMap,
    output: &'a ChannelMap,
) -> Layer<'a> {
    Layer {
        prefix,
        bn,
        input,
        output,
        in_axis: 1,
    }
}

/// Arguments of `lungseg-train widen`.
#[derive(clap::Args, Debug)]
pub struct WidenArgs {
    /// The model file to widen.
    #[arg(long)]
    pub model: PathBuf,
    /// Channels per level of the widened network, shallowest first (none fewer than the
    /// model's), e.g. 16,32,64,128,256.
    #[arg(long, value_delimiter = ',', required = true)]
    pub channels: Vec<usize>,
    /// Seed of the copied channels and their shares.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The widened model file (F32 tensors).
    #[arg(long)]
    pub out: PathBuf,
}

impl WidenArgs {
    pub fn run(&self) -> Result<()> {
        let file = ModelFile::read(&self.model)?;
        let wide = widen(&file, &self.channels, self.seed)?;
        let (bytes, model) = wide.to_bytes()?;
        replace_file(&self.out, &bytes)?;
        eprintln!(
            "wrote {} ({} parameters, channels {:?})",
            self.out.display(),
            model.network().parameter_count(),
            self.channels
        );
        Ok(())
    }
}
