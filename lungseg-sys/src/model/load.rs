//! Reading a `lungseg-unet3d` safetensors file into folded, kernel-ready layers.
//!
//! Every tensor is looked up by its PyTorch state_dict name, converted from F32/F16/BF16 to
//! f32, shape-checked (the message names the tensor, the expected and the found shape), and
//! BatchNorm is folded into the preceding convolution in f64:
//! `w' = w·γ/√(σ²+ε)`, `b' = (b − μ)·γ/√(σ²+ε) + β`. Tensors the network does not use are an
//! error, except PyTorch's `*.num_batches_tracked` counters.
//!
//! Numbers: every raw tensor and every folded weight and bias must be finite in f32 (a huge γ
//! over a tiny σ² overflows), or the file is refused naming the tensors; a model that opens
//! has finite weights everywhere. Sizes: the caller's check of the config (e.g. the CPU
//! workspace a prediction will need against its limit) runs before any tensor is converted;
//! every buffer sized by the file is allocated fallibly.

use std::collections::HashSet;

use safetensors::{Dtype, SafeTensors};

use super::config::{ModelConfig, Norm, ReviewConfig, DEFAULT_MASK_THRESHOLD};
use super::dropout::LevelSet;
use super::network::{Block, Conv3, Head, Net, Network, UpConv};
use crate::error::{try_vec, Error, Result};

/// Metadata value of `format`.
pub const FORMAT: &str = "lungseg-unet3d";
/// The newest `format_version` this reader understands: 2 adds `config.dropout.levels`, 3
/// adds `config.mask_threshold`, 4 `config.test_time_flips`, 5 `config.min_component_mm3`, 6
/// `config.min_component_spare_radius_mm`, 7 `config.point_mask_threshold` and
/// `config.point_radius_mm`, 8 `config.max_scan_spacing_mm`.
pub const FORMAT_VERSION: &str = "8";
/// Version 7 (`config.point_mask_threshold`, `config.point_radius_mm`).
pub const FORMAT_VERSION_V7: &str = "7";
/// Version 6 (`config.min_component_spare_radius_mm`).
pub const FORMAT_VERSION_V6: &str = "6";
/// Version 5 (`config.min_component_mm3`).
pub const FORMAT_VERSION_V5: &str = "5";
/// Version 4 (`config.test_time_flips`).
pub const FORMAT_VERSION_V4: &str = "4";
/// Version 3 (`config.mask_threshold`).
pub const FORMAT_VERSION_V3: &str = "3";
/// Version 2 (`config.dropout.levels`).
pub const FORMAT_VERSION_V2: &str = "2";
/// Version 1, which writers keep for files that use nothing newer, so that older readers
/// open them.
pub const FORMAT_VERSION_V1: &str = "1";
/// Every version this reader opens, oldest first.
const VERSIONS: [&str; 8] = [
    FORMAT_VERSION_V1,
    FORMAT_VERSION_V2,
    FORMAT_VERSION_V3,
    FORMAT_VERSION_V4,
    FORMAT_VERSION_V5,
    FORMAT_VERSION_V6,
    FORMAT_VERSION_V7,
    FORMAT_VERSION,
];

/// The oldest `format_version` whose readers understand everything `config` uses: an older
/// reader ignores the newer keys and would compute another thing (sample another network,
/// draw masks at another threshold), so a file must say at least this for such readers to
/// refuse it. A key that changes nothing (a spare radius without a minimum) needs nothing.
/// Writers use this; the reader refuses files that claim less.
pub fn required_format_version(config: &ModelConfig) -> &'static str {
    let small = crate::mask::SmallComponents::of(config).canonical();
    let point = crate::mask::PointRule::of(config).canonical(config.mask_threshold);
    if config.max_scan_spacing_mm != 0.0 {
        FORMAT_VERSION
    } else if point != crate::mask::PointRule::default() {
        FORMAT_VERSION_V7
    } else if small.spare_radius_mm != 0.0 {
        FORMAT_VERSION_V6
    } else if small.min_mm3 != 0.0 {
        FORMAT_VERSION_V5
    } else if config.test_time_flips != 1 {
        FORMAT_VERSION_V4
    } else if config.mask_threshold != DEFAULT_MASK_THRESHOLD {
        FORMAT_VERSION_V3
    } else if config.dropout.levels != LevelSet::ALL {
        FORMAT_VERSION_V2
    } else {
        FORMAT_VERSION_V1
    }
}

/// Position of a version in [`VERSIONS`].
fn version_rank(v: &str) -> usize {
    VERSIONS
        .iter()
        .position(|&k| k == v)
        .expect("a known version")
}

/// Parses `bytes`; `precheck` sees the config before any tensor is read and may refuse it.
pub(super) fn load(
    bytes: &[u8],
    precheck: &mut dyn FnMut(&ModelConfig) -> Result<()>,
) -> Result<Network> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let empty = Default::default();
    let meta = header.metadata().as_ref().unwrap_or(&empty);
    let version = format_version(meta)?;
    let config = config_of(meta, version)?;
    let review = match meta.get("review") {
        Some(s) => ReviewConfig::from_json(s)?,
        None => ReviewConfig::default(),
    };
    precheck(&config)?;
    let provenance = meta
        .get("provenance")
        .cloned()
        .unwrap_or_else(|| "{}".to_string());
    let (net, parameter_count) = read_net(&st, &config)?;
    Ok(Network {
        config,
        review,
        provenance,
        net,
        parameter_count,
    })
}

type Metadata = std::collections::HashMap<String, String>;

/// The file's `format_version`, once its `format` is this reader's.
fn format_version(meta: &Metadata) -> Result<&'static str> {
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(Error::unsupported(format!(
                "model format '{other}' (expected '{FORMAT}')"
            )))
        }
        None => {
            return Err(Error::format(format!(
                "metadata key 'format' is missing (expected '{FORMAT}')"
            )))
        }
    }
    match meta.get("format_version").map(String::as_str) {
        Some(v) => VERSIONS.iter().copied().find(|&k| k == v).ok_or_else(|| {
            Error::unsupported(format!(
                "model format_version '{v}' (this reader supports {})",
                VERSIONS.map(|v| format!("'{v}'")).join(", ")
            ))
        }),
        None => Err(Error::format("metadata key 'format_version' is missing")),
    }
}

/// The model config (the defaults without one), refused when it uses something newer than
/// the file's `version`.
fn config_of(meta: &Metadata, version: &str) -> Result<ModelConfig> {
    let config = match meta.get("config") {
        Some(s) => ModelConfig::from_json(s)?,
        None => ModelConfig::default(),
    };
    let needed = required_format_version(&config);
    if version_rank(version) < version_rank(needed) {
        let what = if needed == FORMAT_VERSION {
            "config.max_scan_spacing_mm other than 0"
        } else if needed == FORMAT_VERSION_V7 {
            "config.point_mask_threshold below the mask threshold with config.point_radius_mm other than 0"
        } else if needed == FORMAT_VERSION_V6 {
            "config.min_component_spare_radius_mm other than 0 (with a minimum component)"
        } else if needed == FORMAT_VERSION_V5 {
            "config.min_component_mm3 other than 0"
        } else if needed == FORMAT_VERSION_V4 {
            "config.test_time_flips other than 1"
        } else if needed == FORMAT_VERSION_V3 {
            "config.mask_threshold other than 0.5"
        } else {
            "config.dropout.levels"
        };
        return Err(Error::format(format!(
            "{what} needs format_version '{needed}' (the file says '{version}')"
        )));
    }
    Ok(config)
}

/// Every layer of the U-Net `config` describes, and the parameter count; a tensor the network
/// does not use is an error.
fn read_net(st: &SafeTensors<'_>, config: &ModelConfig) -> Result<(Net, usize)> {
    let mut r = Reader {
        st,
        used: HashSet::new(),
        params: 0,
        cfg: config,
    };
    let ch = &config.channels;
    let levels = ch.len();
    let mut enc = Vec::with_capacity(levels);
    for l in 0..levels {
        let cin = if l == 0 {
            config.in_channels
        } else {
            ch[l - 1]
        };
        enc.push(r.block(&format!("enc.{l}"), cin, ch[l])?);
    }
    let mut up = Vec::with_capacity(levels.saturating_sub(1));
    let mut dec = Vec::with_capacity(levels.saturating_sub(1));
    for l in 0..levels.saturating_sub(1) {
        up.push(r.upconv(&format!("dec.{l}.up"), ch[l + 1], ch[l])?);
        dec.push(r.block(&format!("dec.{l}"), 2 * ch[l], ch[l])?);
    }
    let head = r.head(ch[0])?;

    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !r.used.contains(*n) && !n.ends_with(".num_batches_tracked"))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(Error::format(format!(
            "unexpected tensor(s) in model file: {}",
            extra.join(", ")
        )));
    }
    Ok((Net { enc, up, dec, head }, r.params))
}

struct Reader<'a, 'b> {
    st: &'a SafeTensors<'b>,
    used: HashSet<String>,
    params: usize,
    cfg: &'a ModelConfig,
}

/// Rounds a channel count up to whole 16-lane vectors.
pub(crate) fn pad16(c: usize) -> usize {
    c.div_ceil(16) * 16
}

impl Reader<'_, '_> {
    /// The tensor `name` as f32, which must have exactly `shape`.
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.st.tensor(name).map_err(|_| {
            Error::format(format!(
                "tensor '{name}' is missing (expected shape {shape:?})"
            ))
        })?;
        if t.shape() != shape {
            return Err(Error::format(format!(
                "tensor '{name}': expected shape {shape:?}, found {:?}",
                t.shape()
            )));
        }
        let n: usize = shape.iter().product();
        let mut out = try_vec::<f32>(n, name)?;
        let data = t.data();
        match t.dtype() {
            Dtype::F32 => convert(data, 4, &mut out, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }),
            Dtype::F16 => convert(data, 2, &mut out, |b| {
                half::f16::from_le_bytes([b[0], b[1]]).to_f32()
            }),
            Dtype::BF16 => convert(data, 2, &mut out, |b| {
                half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
            }),
            other => {
                return Err(Error::unsupported(format!(
                    "tensor '{name}' has dtype {other:?} (supported: F32, F16, BF16)"
                )))
            }
        }
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(format!(
                "tensor '{name}' has a non-finite value at element {i}"
            )));
        }
        self.used.insert(name.to_string());
        Ok(out)
    }

    fn optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if self.st.tensor(name).is_ok() {
            self.tensor(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    fn block(&mut self, prefix: &str, cin: usize, cout: usize) -> Result<Block> {
        Ok(Block {
            conv1: self.conv3(
                &format!("{prefix}.conv1"),
                &format!("{prefix}.bn1"),
                cin,
                cout,
            )?,
            conv2: self.conv3(
                &format!("{prefix}.conv2"),
                &format!("{prefix}.bn2"),
                cout,
                cout,
            )?,
        })
    }

    /// Conv3d 3³ (+ bias) (+ BN), folded, in the kernel layout `[27][cin][pad16(cout)]`.
    fn conv3(&mut self, conv: &str, bn: &str, cin: usize, cout: usize) -> Result<Conv3> {
        let w = self.tensor(&format!("{conv}.weight"), &[cout, cin, 3, 3, 3])?;
        let b = self.optional(&format!("{conv}.bias"), &[cout])?;
        self.params += w.len() + b.as_ref().map_or(0, Vec::len);
        let (scale, shift) = self.bn(bn, cout, b.as_deref())?;
        let cp = pad16(cout);
        let mut wk = try_vec::<f32>(27 * cin * cp, conv)?;
        let folded = |v: f64, what: &str, i: usize| -> Result<f32> {
            let f = v as f32;
            if f.is_finite() {
                return Ok(f);
            }
            Err(Error::format(format!(
                "'{conv}.{what}' folded with '{bn}' (γ/√(running_var + bn_eps)) is not finite \
                 in f32 at output channel {i} ({v:e}): the BatchNorm statistics are unusable"
            )))
        };
        for co in 0..cout {
            for ci in 0..cin {
                for t in 0..27 {
                    let v = f64::from(w[(co * cin + ci) * 27 + t]) * scale[co];
                    wk[(t * cin + ci) * cp + co] = folded(v, "weight", co)?;
                }
            }
        }
        let mut bias = try_vec::<f32>(cp, conv)?;
        for co in 0..cout {
            bias[co] = folded(shift[co], "bias", co)?;
        }
        let wino = if crate::nn::winograd::pays(cin, cout) {
            Some(winograd_weights(&wk, cin, cp, conv, bn)?)
        } else {
            None
        };
        Ok(Conv3 {
            cout,
            w: wk,
            bias,
            wino,
        })
    }

    /// Per-channel (scale, shift) that replace conv bias + BN in eval mode.
    fn bn(
        &mut self,
        bn: &str,
        c: usize,
        conv_bias: Option<&[f32]>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let bias = |i: usize| conv_bias.map_or(0.0, |b| f64::from(b[i]));
        let mut scale = try_vec::<f64>(c, bn)?;
        let mut shift = try_vec::<f64>(c, bn)?;
        if self.cfg.norm == Norm::None {
            scale.fill(1.0);
            shift.iter_mut().enumerate().for_each(|(i, s)| *s = bias(i));
            return Ok((scale, shift));
        }
        let gamma = self.tensor(&format!("{bn}.weight"), &[c])?;
        let beta = self.tensor(&format!("{bn}.bias"), &[c])?;
        let mean = self.tensor(&format!("{bn}.running_mean"), &[c])?;
        let var = self.tensor(&format!("{bn}.running_var"), &[c])?;
        self.params += 2 * c;
        let eps = self.cfg.bn_eps;
        for i in 0..c {
            let v = f64::from(var[i]) + eps;
            if v <= 0.0 {
                return Err(Error::format(format!(
                    "tensor '{bn}.running_var' element {i} = {} gives a non-positive variance",
                    var[i]
                )));
            }
            let s = f64::from(gamma[i]) / v.sqrt();
            scale[i] = s;
            shift[i] = (bias(i) - f64::from(mean[i])) * s + f64::from(beta[i]);
        }
        Ok((scale, shift))
    }

    /// ConvTranspose3d k2 s2, PyTorch weight `[cin, cout, 2, 2, 2]`, kernel layout
    /// `[cin][8][pad16(cout)]` with offset `o = 4a + 2b + c` for output (2z+a, 2y+b, 2x+c).
    fn upconv(&mut self, name: &str, cin: usize, cout: usize) -> Result<UpConv> {
        let w = self.tensor(&format!("{name}.weight"), &[cin, cout, 2, 2, 2])?;
        let b = self.optional(&format!("{name}.bias"), &[cout])?;
        self.params += w.len() + b.as_ref().map_or(0, Vec::len);
        let cp = pad16(cout);
        let mut wk = try_vec::<f32>(cin * 8 * cp, name)?;
        for ci in 0..cin {
            for co in 0..cout {
                for o in 0..8 {
                    wk[(ci * 8 + o) * cp + co] = w[(ci * cout + co) * 8 + o];
                }
            }
        }
        let mut bias = try_vec::<f32>(cp, name)?;
        if let Some(b) = b {
            bias[..cout].copy_from_slice(&b);
        }
        Ok(UpConv { w: wk, bias })
    }

    fn head(&mut self, c0: usize) -> Result<Head> {
        let w = self.tensor("head.weight", &[1, c0, 1, 1, 1])?;
        let b = self.optional("head.bias", &[1])?;
        self.params += w.len() + b.as_ref().map_or(0, Vec::len);
        Ok(Head {
            w,
            bias: b.map_or(0.0, |b| b[0]),
        })
    }
}

fn convert(data: &[u8], size: usize, out: &mut [f32], f: impl Fn(&[u8]) -> f32) {
    for (o, b) in out.iter_mut().zip(data.chunks_exact(size)) {
        *o = f(b);
    }
}

/// The Winograd-transformed weights `[64][cin][cp]` of a folded 3³ conv `wk` (`nn::winograd`).
fn winograd_weights(wk: &[f32], cin: usize, cp: usize, conv: &str, bn: &str) -> Result<Vec<f32>> {
    let mut u = try_vec::<f32>(64 * cin * cp, conv)?;
    if crate::nn::winograd::weights(wk, cin, cp, &mut u) {
        return Ok(u);
    }
    Err(Error::format(format!(
        "'{conv}.weight' folded with '{bn}' is not finite in f32 after the Winograd transform \
         (G g Gᵀ): the weights are too large"
    )))
}
