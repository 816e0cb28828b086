//! A model file's tensors and metadata in memory: written by `export`, edited after it
//! (calibration changes metadata and single tensors, everything else kept byte for byte; the
//! result must load in lungseg before it replaces the original, written next to it and renamed
//! over it).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::model::Model;
use safetensors::{Dtype, SafeTensors, View};

/// One tensor of a model file, owned so that it can be edited.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

impl RawTensor {
    /// The values as f32 (F32, F16 and BF16 tensors: the dtypes lungseg reads).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            Dtype::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            d => bail!("tensor dtype {d:?} is not one lungseg reads"),
        })
    }

    /// A tensor of `dtype` holding `values` (rounded to nearest for the half types).
    pub fn from_f32(dtype: Dtype, shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        let bytes = match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            d => bail!("tensor dtype {d:?} is not one lungseg reads"),
        };
        ensure!(
            shape.iter().product::<usize>() == values.len(),
            "shape {shape:?} does not hold {} values",
            values.len()
        );
        Ok(RawTensor {
            dtype,
            shape,
            bytes,
        })
    }
}

/// A model file's metadata and tensors, in memory.
#[derive(Clone, Debug)]
pub struct ModelFile {
    pub metadata: HashMap<String, String>,
    pub tensors: Vec<(String, RawTensor)>,
}

impl ModelFile {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (_, header) = SafeTensors::read_metadata(bytes).context("not a safetensors file")?;
        let metadata = header.metadata().clone().unwrap_or_default();
        // By name: safetensors lists a file's tensors in hash-map order, which changes from one
        // process to the next, and whatever walks or rewrites them must not.
        let mut tensors: Vec<(String, RawTensor)> = st
            .tensors()
            .into_iter()
            .map(|(name, v)| {
                let t = RawTensor {
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    bytes: v.data().to_vec(),
                };
                (name, t)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(ModelFile { metadata, tensors })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&bytes).with_context(|| path.display().to_string())
    }

    pub fn tensor(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Replaces the tensor `name`, or adds it.
    pub fn set_tensor(&mut self, name: &str, t: RawTensor) {
        match self.tensors.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = t,
            None => self.tensors.push((name.to_string(), t)),
        }
    }

    /// The metadata value `key` as a JSON object (empty when absent).
    pub fn json_object(&self, key: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        match self.metadata.get(key) {
            None => Ok(serde_json::Map::new()),
            Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                _ => bail!("metadata '{key}' is not a JSON object: {s}"),
            },
        }
    }

    pub fn set_json_object(
        &mut self,
        key: &str,
        value: serde_json::Map<String, serde_json::Value>,
    ) {
        self.metadata
            .insert(key.into(), serde_json::Value::Object(value).to_string());
    }

    /// SHA-256 (hex) of what the file's patch scores depend on: every tensor (name, dtype,
    /// shape, bytes) and the `config` metadata without `probability_map` (which changes no
    /// mask or score). The review choice, provenance and format version are left out, so a
    /// report of this model stays the model's after `calibrate` writes its review.
    pub fn scoring_fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (name, t) in &self.tensors {
            h.update(format!(
                "{name}\0{:?}\0{:?}\0{}\0",
                t.dtype,
                t.shape,
                t.bytes.len()
            ));
            h.update(&t.bytes);
        }
        let mut config = self.json_object("config")?;
        config.remove("probability_map");
        // serde_json's maps are ordered by key: the text is canonical.
        h.update(serde_json::Value::Object(config).to_string());
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The file's bytes, checked to load in lungseg.
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Model)> {
        let out = safetensors::serialize(
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(self.metadata.clone()),
        )
        .context("cannot serialise the model file")?;
        let model = Model::from_bytes(&out).context("the edited model does not load")?;
        Ok((out, model))
    }
}

/// Writes `bytes` over `path`: a temporary file next to it, then a rename, so a reader never
/// sees half a model.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().context("model path has no file name")?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot replace {}: {e}", path.display())
    })
}
