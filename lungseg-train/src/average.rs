//! The `average` command: the weighted mean of the weights of model files of one network — a
//! model soup (Wortsman et al., ICML 2022), or with a model and its own fine-tuned descendant,
//! weight-space ensembling (WiSE-FT, Wortsman et al., CVPR 2022). Fine-tuned from one start,
//! the models lie in one basin of the loss, where the average of their weights tends to keep
//! what each learnt; models trained from different random starts do not (their channels are
//! not aligned), which no check here can see: whether an average pays is for the calibration
//! scans to show, as for any candidate (docs/model-stages.md).
//!
//! Every tensor is averaged in f64 and written in the first model's dtype of it, BatchNorm
//! running statistics included (the mean of the members' statistics, not re-estimated on data:
//! for models one fine-tuning apart they barely differ). The networks must be the same (config
//! and tensor shapes). The settings calibrated on a member's outputs (mask threshold, flips,
//! components, review score and threshold) are the first member's until the average's own
//! calibration replaces them; its probability map is dropped, because a map fitted to one
//! model's mean would silently miscalibrate another's.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

use lungseg::model::ModelConfig;

use crate::model_file::{replace_file, ModelFile, RawTensor};

/// The fields of a config that make two files the same network (the rest is calibration).
fn architecture(c: &ModelConfig) -> [(&'static str, String); 9] {
    [
        ("in_channels", format!("{}", c.in_channels)),
        ("out_channels", format!("{}", c.out_channels)),
        ("channels", format!("{:?}", c.channels)),
        ("norm", format!("{:?}", c.norm)),
        ("bn_eps", format!("{}", c.bn_eps)),
        ("dropout", format!("{:?}", c.dropout)),
        ("patch_size", format!("{:?}", c.patch_size)),
        ("spacing_mm", format!("{:?}", c.spacing_mm)),
        ("hu_window", format!("{:?}", c.hu_window)),
    ]
}

/// `weights` made to sum to 1; each must be finite and > 0, one per member.
fn normalised(weights: &[f64], members: usize) -> Result<Vec<f64>> {
    if weights.is_empty() {
        return Ok(vec![1.0 / members as f64; members]);
    }
    ensure!(
        weights.len() == members,
        "{} weights for {members} models",
        weights.len()
    );
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        bail!("weight {w} must be finite and > 0");
    }
    let sum: f64 = weights.iter().sum();
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// Refuses members that are not the network of the first: config, tensor names and shapes.
fn check_same_network(files: &[ModelFile]) -> Result<()> {
    let first = files[0].to_bytes().context("model 1")?.1;
    let reference = architecture(first.network().config());
    for (i, file) in files.iter().enumerate().skip(1) {
        let model = file
            .to_bytes()
            .with_context(|| format!("model {}", i + 1))?
            .1;
        for ((field, a), (_, b)) in reference.iter().zip(architecture(model.network().config())) {
            ensure!(
                *a == b,
                "model {} has {field} {b}, model 1 has {a}: not the same network",
                i + 1
            );
        }
        let names = |f: &ModelFile| -> Vec<(String, Vec<usize>)> {
            f.tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shape.clone()))
                .collect()
        };
        ensure!(
            names(file) == names(&files[0]),
            "model {} has other tensors (names or shapes) than model 1",
            i + 1
        );
    }
    Ok(())
}

/// The weighted average of `files` (weights normalised to sum 1; empty = equal). `sources`
/// name the members in the provenance, one per file.
pub fn average(files: &[ModelFile], weights: &[f64], sources: &[String]) -> Result<ModelFile> {
    ensure!(files.len() >= 2, "average needs at least two models");
    ensure!(sources.len() == files.len(), "one source name per model");
    let weights = normalised(weights, files.len())?;
    check_same_network(files)?;
    let mut out = ModelFile {
        metadata: files[0].metadata.clone(),
        tensors: Vec::with_capacity(files[0].tensors.len()),
    };
    for (k, (name, t0)) in files[0].tensors.iter().enumerate() {
        let mut sum = vec![0f64; t0.shape.iter().product()];
        for (file, &w) in files.iter().zip(&weights) {
            let values = file.tensors[k].1.to_f32()?;
            for (s, v) in sum.iter_mut().zip(values) {
                *s += w * f64::from(v);
            }
        }
        let values: Vec<f32> = sum.iter().map(|&s| s as f32).collect();
        let t = RawTensor::from_f32(t0.dtype, t0.shape.clone(), &values)?;
        out.tensors.push((name.clone(), t));
    }
    let mut config = files[0].json_object("config")?;
    config.remove("probability_map");
    out.set_json_object("config", config);
    let mut members = Vec::with_capacity(files.len());
    for ((file, w), source) in files.iter().zip(&weights).zip(sources) {
        members.push(json!({
            "source": source,
            "weight": w,
            "scoring_fingerprint": file.scoring_fingerprint()?,
            "provenance": file.json_object("provenance")?,
        }));
    }
    let mut provenance = serde_json::Map::new();
    provenance.insert(
        "averaged".into(),
        json!({
            "method": "weighted mean of every tensor, BatchNorm statistics included (model soup)",
            "members": members,
            "calibrated_settings": "the first member's until recalibrated; probability map dropped",
        }),
    );
    provenance.insert("date".into(), json!(crate::export::utc_now()));
    provenance.insert("git_commit".into(), json!(crate::export::git_commit()));
    out.set_json_object("provenance", provenance);
    Ok(out)
}

/// Arguments of `lungseg-train average`.
#[derive(clap::Args, Debug)]
pub struct AverageArgs {
    /// A model file to average (at least two, the same network; repeat the flag).
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// One weight per model, e.g. 0.5,0.5 (normalised to sum 1); default: equal weights.
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// The averaged model file (the first model's dtypes).
    #[arg(long)]
    pub out: PathBuf,
}

impl AverageArgs {
    pub fn run(&self) -> Result<()> {
        let files = self
            .models
            .iter()
            .map(|p| ModelFile::read(p))
            .collect::<Result<Vec<_>>>()?;
        let sources: Vec<String> = self
            .models
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let avg = average(&files, &self.weights, &sources)?;
        let (bytes, _) = avg.to_bytes()?;
        replace_file(&self.out, &bytes)?;
        eprintln!(
            "wrote {} (the average of {} models; recalibrate it before use)",
            self.out.display(),
            files.len()
        );
        Ok(())
    }
}
