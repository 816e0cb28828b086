//! The scoring pass: every patch of a split through the shipped engine (MC dropout and the
//! dropout-off baseline), streamed into [`EvalAccumulator`].

use anyhow::{Context, Result};
use lungseg::mc::{self, McOptions, PatchSummary, UncertaintyMaps};
use lungseg::model::Model;

use crate::calibrate::patch_seed;
use crate::dataset::{Patch, PatchDataset, PatchRecord};
use crate::metrics::{EvalAccumulator, EvalConfig, EvalMetrics, PatchInput};

/// The engine's maps of one patch.
pub struct Maps {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    pub entropy: Vec<f32>,
    pub mutual_info: Vec<f32>,
    /// The dropout-off probability (deterministic baseline).
    pub det: Vec<f32>,
}

/// MC dropout on one patch with its reproducible seed, and the deterministic pass.
pub fn run_patch(
    model: &Model,
    rec: &PatchRecord,
    patch: &Patch,
    samples: u32,
    seed: u64,
) -> Result<(PatchSummary, Maps)> {
    let n = patch.hu.len();
    let mut m = Maps {
        mean: vec![0.0; n],
        variance: vec![0.0; n],
        entropy: vec![0.0; n],
        mutual_info: vec![0.0; n],
        det: vec![0.0; n],
    };
    let opts = McOptions {
        n_samples: samples,
        seed: patch_seed(seed, &rec.id),
        threads: 0,
        review_threshold: None,
    };
    let s = mc::predict_uncertainty(
        model,
        &patch.hu,
        &opts,
        UncertaintyMaps {
            mean: Some(&mut m.mean),
            variance: Some(&mut m.variance),
            entropy: Some(&mut m.entropy),
            mutual_info: Some(&mut m.mutual_info),
        },
    )
    .with_context(|| format!("patch {}", rec.id))?;
    mc::predict(model, &patch.hu, &mut m.det, 0).with_context(|| format!("patch {}", rec.id))?;
    Ok((s, m))
}

/// Candidate review scores of one patch: the engine's MC summaries and the deterministic
/// baselines (the same summaries of the dropout-off probability, through the engine's own
/// definitions).
pub fn candidate_scores(s: &PatchSummary, det: &[f32]) -> Vec<(&'static str, f32)> {
    let (mut fg, mut sum_p, mut sum_h) = (0u64, 0f64, 0f64);
    for &p in det {
        sum_p += f64::from(p);
        if p >= 0.5 {
            fg += 1;
            sum_h += f64::from(mc::entropy_bits(p));
        }
    }
    let det_entropy = if fg > 0 {
        (sum_h / fg as f64) as f32
    } else {
        0.0
    };
    vec![
        ("mc_review_score", s.uncertainty_score),
        ("mc_mean_entropy", s.mean_entropy),
        ("mc_mean_mutual_info", s.mean_mutual_info),
        ("det_mean_entropy", det_entropy),
        (
            "det_volume_disagreement",
            mc::volume_disagreement(sum_p, fg),
        ),
    ]
}

/// What the scoring pass keeps: the metrics, and each patch's engine score (for choosing
/// the patches shown).
pub struct Scored {
    pub metrics: EvalMetrics,
    pub scores: Vec<f32>,
}

/// Scores the patches `idx` of `ds`; `on_patch(done, total)` after each.
pub fn score_patches(
    model: &Model,
    ds: &PatchDataset,
    idx: &[usize],
    samples: u32,
    seed: u64,
    eval: &EvalConfig,
    mut on_patch: impl FnMut(usize, usize),
) -> Result<Scored> {
    let mut acc = EvalAccumulator::new(eval.clone()).map_err(anyhow::Error::msg)?;
    let mut scores = Vec::with_capacity(idx.len());
    let model_spacing = model.config().spacing_mm;
    for (done, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (s, m) = run_patch(model, rec, &patch, samples, seed)?;
        let [sx, sy, sz] = rec.spacing_mm.unwrap_or(model_spacing);
        let candidates = candidate_scores(&s, &m.det);
        acc.add_patch(&PatchInput {
            id: &rec.id,
            scan: &rec.seriesuid,
            dims: rec.shape,
            voxel_mm3: sx * sy * sz,
            diameter_mm: rec.diameter_mm,
            gt: &patch.mask,
            prob: &m.mean,
            entropy: &m.entropy,
            mutual_info: &m.mutual_info,
            variance: &m.variance,
            score: s.uncertainty_score,
            needs_review: s.needs_review,
            det_prob: &m.det,
            scores: &candidates,
        })
        .map_err(anyhow::Error::msg)?;
        scores.push(s.uncertainty_score);
        on_patch(done + 1, idx.len());
    }
    Ok(Scored {
        metrics: acc.finish().map_err(anyhow::Error::msg)?,
        scores,
    })
}
