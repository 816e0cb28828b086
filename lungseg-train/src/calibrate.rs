//! `calibrate`: the review threshold of a model, chosen on held-out patches so that a given
//! fraction of cases is referred to a radiologist, and written into the model file.
//!
//! Scores come from the shipped engine (`lungseg::mc`), not from the training framework, so
//! the threshold is calibrated on exactly the numbers device software will compare with it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;

use crate::dataset::PatchDataset;
use crate::metrics::threshold_for_refer_fraction;
use crate::prepare::split::uid_hash;

/// The dropout seed of one patch: a hash of the run seed and the patch id, so a patch gets the
/// same masks whichever other patches are evaluated (and re-running one patch reproduces it).
pub fn patch_seed(seed: u64, id: &str) -> u64 {
    uid_hash(id, seed)
}

/// Indices of `split`, after checking the split is non-empty and its patches fit the model.
pub fn split_for_model(model: &Model, ds: &PatchDataset, split: &str) -> Result<Vec<usize>> {
    let idx = ds.split(split);
    ensure!(
        !idx.is_empty(),
        "{}: split '{split}' has no patches",
        ds.root().display()
    );
    let [x, y, z] = model.config().patch_size;
    for &i in &idx {
        let r = &ds.records[i];
        ensure!(
            r.shape == [z, y, x],
            "patch {} has shape {:?} (z,y,x), the model expects {:?}: prepare the data with \
             --patch-size {x},{y},{z}",
            r.id,
            r.shape,
            [z, y, x]
        );
    }
    Ok(idx)
}

/// MC-dropout review scores (`PatchSummary::uncertainty_score`) of every patch of `split`.
pub fn score_split(
    model: &Model,
    ds: &PatchDataset,
    split: &str,
    samples: u32,
    seed: u64,
    mut on_patch: impl FnMut(),
) -> Result<Vec<f32>> {
    let idx = split_for_model(model, ds, split)?;
    idx.iter()
        .map(|&i| {
            let p = ds.load(i)?;
            let opts = McOptions {
                n_samples: samples,
                seed: patch_seed(seed, &ds.records[i].id),
                threads: 0,
                review_threshold: None,
                review_score: None,
            };
            let s = mc::predict_uncertainty(model, &p.hu, &opts, UncertaintyMaps::default())
                .with_context(|| format!("patch {}", ds.records[i].id))?;
            on_patch();
            Ok(s.uncertainty_score)
        })
        .collect()
}

/// Result of a calibration run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Name of the model's review score.
    pub score: String,
    pub threshold: f32,
    pub patches: usize,
    /// Patches with `score > threshold` (ties are never split, so this may be below the target).
    pub referred: usize,
    pub refer_fraction_requested: f64,
}

/// Scores the split and picks the threshold; `on_patch` is called after each patch.
pub fn calibrate(
    model_path: &Path,
    dataset: &Path,
    split: &str,
    refer_fraction: f64,
    samples: u32,
    seed: u64,
    on_patch: impl FnMut(),
) -> Result<Calibration> {
    ensure!(
        (0.0..=1.0).contains(&refer_fraction),
        "refer fraction {refer_fraction} must be in [0, 1]"
    );
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(dataset)?;
    let scores = score_split(&model, &ds, split, samples, seed, on_patch)?;
    let threshold = threshold_for_refer_fraction(&scores, refer_fraction)?
        .context("no scores to calibrate on")?;
    Ok(Calibration {
        score: model.review().score.name().to_string(),
        threshold,
        patches: scores.len(),
        referred: scores.iter().filter(|&&s| s > threshold).count(),
        refer_fraction_requested: refer_fraction,
    })
}

/// The review threshold above which `refer_fraction` of the `split` patches of `dataset` are
/// referred, under `model_path`'s review score, with `samples` MC samples. For export and the demo.
pub fn calibrate_review_threshold(
    model_path: impl AsRef<Path>,
    dataset: impl AsRef<Path>,
    split: &str,
    refer_fraction: f64,
    samples: u32,
    seed: u64,
) -> Result<f32> {
    Ok(calibrate(
        model_path.as_ref(),
        dataset.as_ref(),
        split,
        refer_fraction,
        samples,
        seed,
        || {},
    )?
    .threshold)
}

/// Rewrites the `review` metadata of a model file in place with `threshold`, keeping the score
/// name, every other review key, all other metadata and every tensor byte for byte. Writes a
/// temporary file next to it, checks that lungseg loads it, then renames it over the original.
pub fn set_review_threshold(model_path: impl AsRef<Path>, threshold: f32) -> Result<()> {
    use safetensors::SafeTensors;
    let path = model_path.as_ref();
    ensure!(
        threshold.is_finite(),
        "review threshold {threshold} is not finite"
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let mut review = match meta.get("review") {
        Some(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => bail!(
                "{}: metadata 'review' is not a JSON object: {s}",
                path.display()
            ),
        },
        None => serde_json::Map::new(),
    };
    review
        .entry("score")
        .or_insert_with(|| lungseg::model::ReviewConfig::default().score.name().into());
    review.insert("threshold".into(), serde_json::json!(threshold));
    meta.insert(
        "review".into(),
        serde_json::Value::Object(review).to_string(),
    );
    let out = safetensors::serialize(st.tensors(), Some(meta))
        .with_context(|| format!("{}: cannot re-serialise", path.display()))?;
    let model = Model::from_bytes(&out)
        .with_context(|| format!("{}: rewritten model does not load", path.display()))?;
    ensure!(
        model.review().threshold == threshold,
        "rewritten model reads threshold {} instead of {threshold}",
        model.review().threshold
    );
    let name = path.file_name().context("model path has no file name")?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot replace {}: {e}", path.display())
    })
}
