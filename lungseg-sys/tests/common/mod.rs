//! Shared by the engine tests: the weight formula of `scripts/make_model_fixtures.py`, a
//! minimal safetensors writer (independent of the crate the loader uses), fixture readers.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_f32(name: &str) -> Vec<f32> {
    let b = std::fs::read(fixture(name)).unwrap();
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn sidecar(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("{name}.json"))).unwrap()).unwrap()
}

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn uniform(name: &str, n: usize) -> Vec<f32> {
    let h = fnv1a(name);
    (0..n as u64)
        .map(|i| {
            (splitmix(h.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))) >> 40) as f32
                / 16_777_216.0
        })
        .collect()
}

/// The fixture weight formula (see the script's docstring).
pub fn synth_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product();
    let u = uniform(name, n);
    let s = |u: f32| 2.0 * u - 1.0;
    let sq = |x: f64| x.sqrt() as f32;
    let kind = name.rsplit('.').next().unwrap();
    u.into_iter()
        .map(|u| {
            if name.contains(".bn") {
                match kind {
                    "weight" => 0.8 + 0.4 * u,
                    "bias" => 0.1 * s(u),
                    "running_mean" => 0.1 * s(u),
                    _ => 0.5 + u,
                }
            } else if name == "head.weight" {
                s(u) * sq(3.0 / shape[1] as f64)
            } else if name == "head.bias" {
                0.1 * s(u) - 0.4
            } else if name.contains(".up.") {
                if kind == "weight" {
                    s(u) * sq(3.0 / shape[0] as f64)
                } else {
                    0.05 * s(u)
                }
            } else if kind == "weight" {
                s(u) * sq(6.0 / (shape[1] * 27) as f64)
            } else {
                0.05 * s(u)
            }
        })
        .collect()
}

/// (name, shape) of every tensor of the U-Net with these channels, in state_dict order.
pub fn tensor_shapes(ch: &[usize]) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    let block = |v: &mut Vec<(String, Vec<usize>)>, p: &str, cin: usize, cout: usize| {
        for (i, ci) in [(1, cin), (2, cout)] {
            v.push((format!("{p}.conv{i}.weight"), vec![cout, ci, 3, 3, 3]));
            v.push((format!("{p}.conv{i}.bias"), vec![cout]));
            for k in ["weight", "bias", "running_mean", "running_var"] {
                v.push((format!("{p}.bn{i}.{k}"), vec![cout]));
            }
        }
    };
    for (l, &c) in ch.iter().enumerate() {
        block(
            &mut v,
            &format!("enc.{l}"),
            if l == 0 { 1 } else { ch[l - 1] },
            c,
        );
    }
    for l in 0..ch.len() - 1 {
        v.push((
            format!("dec.{l}.up.weight"),
            vec![ch[l + 1], ch[l], 2, 2, 2],
        ));
        v.push((format!("dec.{l}.up.bias"), vec![ch[l]]));
        block(&mut v, &format!("dec.{l}"), 2 * ch[l], ch[l]);
    }
    v.push(("head.weight".into(), vec![1, ch[0], 1, 1, 1]));
    v.push(("head.bias".into(), vec![1]));
    v
}

/// A tensor to write: name, dtype string, shape, raw little-endian bytes.
pub struct RawTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn f32_tensor(name: &str, shape: &[usize], v: &[f32]) -> RawTensor {
    RawTensor {
        name: name.into(),
        dtype: "F32".into(),
        shape: shape.to_vec(),
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Serialises a safetensors file by hand.
pub fn write_safetensors(tensors: &[RawTensor], meta: &[(&str, String)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let m: serde_json::Map<String, serde_json::Value> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    header.insert("__metadata__".into(), m.into());
    let mut off = 0;
    for t in tensors {
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + t.data.len()]}),
        );
        off += t.data.len();
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    for t in tensors {
        out.extend(&t.data);
    }
    out
}

/// The metadata of a model file with `config`: the oldest format_version that holds it
/// (the library's own rule, `required_format_version`), and the config.
pub fn standard_meta(config: &str) -> Vec<(&'static str, String)> {
    let version = lungseg::model::ModelConfig::from_json(config)
        .map(|c| lungseg::model::required_format_version(&c))
        .unwrap_or(lungseg::model::FORMAT_VERSION_V1);
    vec![
        ("format", "lungseg-unet3d".into()),
        ("format_version", version.into()),
        ("config", config.into()),
    ]
}

/// The formula model for a config JSON, as F32 tensors.
pub fn synth_tensors(channels: &[usize]) -> Vec<RawTensor> {
    tensor_shapes(channels)
        .into_iter()
        .map(|(n, s)| f32_tensor(&n, &s, &synth_tensor(&n, &s)))
        .collect()
}

pub fn synth_model_bytes(config: &str) -> Vec<u8> {
    let cfg: serde_json::Value = serde_json::from_str(config).unwrap();
    let ch: Vec<usize> = match cfg.get("channels") {
        Some(c) => serde_json::from_value(c.clone()).unwrap(),
        None => vec![16, 32, 64, 128, 256],
    };
    write_safetensors(&synth_tensors(&ch), &standard_meta(config))
}

/// The model of a fixture, from its sidecar's config.
pub fn fixture_model(name: &str) -> lungseg::model::Model {
    fixture_model_on(name, None)
}

/// [`fixture_model`] on a given CPU kernel (`None`: the default choice).
pub fn fixture_model_on(
    name: &str,
    kernel: Option<lungseg::nn::cpu_kernel::CpuKernel>,
) -> lungseg::model::Model {
    let side = sidecar(name);
    let bytes = synth_model_bytes(&side["config"].to_string());
    let opts = lungseg::model::ModelOptions {
        cpu_kernel: kernel,
        ..Default::default()
    };
    let m = lungseg::model::Model::from_bytes_with(&bytes, &opts).unwrap();
    if let Some(k) = kernel {
        assert_eq!(m.kernel(), k);
    }
    m
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Deterministic uniform values in [-1, 1) (xorshift64), for tests that need random data.
pub struct Rng(pub u64);

impl Rng {
    pub fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / 16_777_216.0) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// Runs a python3 oracle `script` with the JSON `request` on stdin and returns its JSON
/// stdout. The script exits with `LUNGSEG_MISSING_PYTHON_DEPS` on stderr when an import
/// fails; the test then fails (never skips) with `hint`, the packages to install.
pub fn python_oracle(script: &str, request: &serde_json::Value, hint: &str) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {hint}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("LUNGSEG_MISSING_PYTHON_DEPS"),
        "{stderr}\n{hint}"
    );
    assert!(out.status.success(), "python oracle failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}
