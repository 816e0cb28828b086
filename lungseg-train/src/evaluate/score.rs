//! The scoring pass: every patch of a split through the shipped engine (MC dropout and the
//! dropout-off baseline), streamed into [`EvalAccumulator`].

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use lungseg::intended_use::IntendedUse;
use lungseg::mc::point::{predict_point, MaskSource, Point, Scan};
use lungseg::mc::{self, Flip, McOptions, PatchSummary, RunControl, UncertaintyMaps};
use lungseg::model::{Model, ReviewScore};

use crate::dataset::{Patch, PatchDataset, PatchRecord};
use crate::metrics::{EvalAccumulator, EvalConfig, EvalMetrics, PatchInput};
use crate::prepare::split::uid_hash;

pub use super::second_look::SecondLookPatches;

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

/// The engine's maps of one patch.
pub struct Maps {
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
    pub entropy: Vec<f32>,
    pub mutual_info: Vec<f32>,
    /// The dropout-off probability under the model's test-time flips (deterministic
    /// baseline, [`deterministic`]).
    pub det: Vec<f32>,
}

/// MC dropout on one patch with its reproducible seed, and the deterministic baseline. The
/// summary is flagged as the library flags a point of the patch's scan when that scan is
/// outside the model's intended use (`PatchRecord::scan_spacing_mm`).
pub fn run_patch(
    model: &Model,
    rec: &PatchRecord,
    patch: &Patch,
    samples: u32,
    seed: u64,
) -> Result<(PatchSummary, Maps)> {
    let r = run_point(
        model,
        PointCase {
            rec,
            patch,
            second: None,
        },
        samples,
        seed,
    )?;
    Ok((r.summary, r.maps))
}

/// One evaluated point: its patch and, for a second look, its half-spacing twins.
#[derive(Clone, Copy)]
pub struct PointCase<'a> {
    pub rec: &'a PatchRecord,
    pub patch: &'a Patch,
    pub second: Option<&'a SecondLookPatches>,
}

/// What the engine gives for one point.
pub struct PointRun {
    pub summary: PatchSummary,
    pub maps: Maps,
    /// The final mask (`lungseg::mc::point`) and how it was made.
    pub mask: Vec<u8>,
    pub source: MaskSource,
}

impl PointRun {
    /// Whether the second look decided the mask (joined, or the first look cut at its own
    /// threshold); otherwise the mask is the model's rule on the mean, which the evaluation's
    /// own rule (`EvalConfig`, possibly another threshold under study) cuts instead.
    pub fn second_look_made(&self) -> bool {
        matches!(self.source, MaskSource::Joined | MaskSource::FirstLookOnly)
    }
}

/// [`run_patch`] with the engine's final mask of the point: the second look runs where the
/// model has one, the patch's scan is known and thin enough and `case.second` holds the twins;
/// otherwise the mask is the model's.
pub fn run_point(model: &Model, case: PointCase<'_>, samples: u32, seed: u64) -> Result<PointRun> {
    let PointCase { rec, patch, second } = case;
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
        review_score: None,
    };
    let mut second_patch = |hu: &mut [f32]| -> lungseg::Result<()> {
        let twin = second
            .map(|t| t.hu_for(rec))
            .transpose()
            .map_err(|e| lungseg::Error::io(format!("{e:#}")))?;
        let twin = twin.ok_or_else(|| lungseg::Error::invalid("no second look's patch"))?;
        hu.copy_from_slice(&twin);
        Ok(())
    };
    let scan = match (second, rec.scan_spacing_mm) {
        (Some(_), Some(resolution_mm)) => Some(Scan {
            resolution_mm,
            second_patch: &mut second_patch,
        }),
        _ => None,
    };
    let point = Point {
        patch_hu: &patch.hu,
        scan,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut m.mean),
        variance: Some(&mut m.variance),
        entropy: Some(&mut m.entropy),
        mutual_info: Some(&mut m.mutual_info),
    };
    let mut mask = vec![0u8; n];
    let (mut s, source) = predict_point(
        model,
        point,
        &opts,
        maps,
        &mut mask,
        &mut RunControl::default(),
    )
    .with_context(|| format!("patch {}", rec.id))?;
    if let Some(spacing) = rec.scan_spacing_mm {
        IntendedUse::of(model.config()).apply(spacing, &mut s);
    }
    deterministic(model, &patch.hu, &mut m.det).with_context(|| format!("patch {}", rec.id))?;
    Ok(PointRun {
        summary: s,
        maps: m,
        mask,
        source,
    })
}

/// The deterministic baseline of MC dropout: the model's inference with dropout off and
/// everything else as the MC call does it, i.e. the mean of the dropout-off probabilities of
/// the patch under each of the model's test-time flips, mirrored back (the plain pass when
/// `test_time_flips` is 1). Without the flips the comparison would credit MC dropout with
/// what the test-time augmentation does.
pub fn deterministic(model: &Model, hu: &[f32], out: &mut [f32]) -> Result<()> {
    let cfg = model.config();
    let flips = cfg.test_time_flips;
    if flips <= 1 {
        return Ok(mc::predict(model, hu, out, 0)?);
    }
    let n = hu.len();
    let (mut input, mut prob, mut back) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    out.fill(0.0);
    for f in 0..flips {
        let flip = Flip::of_sample(f, flips, flips);
        flip.apply(cfg.patch_size, hu, &mut input);
        mc::predict(model, &input, &mut prob, 0)?;
        flip.apply(cfg.patch_size, &prob, &mut back);
        for (o, b) in out.iter_mut().zip(&back) {
            *o += b;
        }
    }
    let scale = 1.0 / flips as f32;
    out.iter_mut().for_each(|o| *o *= scale);
    Ok(())
}

/// The library's calibrated probabilities of `mean` (`lungseg_calibrated_probability`), where
/// the model has a probability map.
pub fn calibrated_probability(model: &Model, mean: &[f32]) -> Result<Option<Vec<f32>>> {
    if model.config().probability_map.is_none() {
        return Ok(None);
    }
    let mut out = vec![0.0; mean.len()];
    lungseg::probability_map::calibrated_probability(model.config(), mean, &mut out)?;
    Ok(Some(out))
}

/// Candidate review scores of one patch: every score the engine can flag by (under its
/// model-file name), and the deterministic baselines ([`deterministic`]): the mean entropy
/// over the dropout-off foreground (`p ≥ fg_threshold`, the model's mask threshold) and the
/// volume disagreement of the dropout-off probability.
pub fn candidate_scores(
    s: &PatchSummary,
    det: &[f32],
    fg_threshold: f32,
) -> Vec<(&'static str, f32)> {
    let (mut fg, mut sum_p, mut sum_h) = (0u64, 0f64, 0f64);
    for &p in det {
        sum_p += f64::from(p);
        if p >= fg_threshold {
            fg += 1;
            sum_h += f64::from(mc::entropy_bits(p));
        }
    }
    let det_entropy = if fg > 0 {
        (sum_h / fg as f64) as f32
    } else {
        0.0
    };
    let mut out: Vec<(&'static str, f32)> = ReviewScore::ALL
        .iter()
        .map(|&k| (k.name(), s.scores.get(k)))
        .collect();
    out.push((DET_MEAN_ENTROPY, det_entropy));
    out.push((DET_VOLUME_DISAGREEMENT, mc::volume_disagreement(sum_p, fg)));
    out
}

/// Names of the deterministic baseline scores (not selectable in a model: no dropout).
pub const DET_MEAN_ENTROPY: &str = "det_mean_entropy";
pub const DET_VOLUME_DISAGREEMENT: &str = "det_volume_disagreement";

/// What the scoring pass keeps: the metrics, each patch's engine score (for choosing the
/// patches shown), and how many final masks each [`MaskSource`] made.
pub struct Scored {
    pub metrics: EvalMetrics,
    pub scores: Vec<f32>,
    pub mask_sources: BTreeMap<MaskSource, usize>,
}

/// How a scoring pass runs the engine.
#[derive(Clone, Copy)]
pub struct ScoreRun<'a> {
    /// MC-dropout samples per patch.
    pub samples: u32,
    pub seed: u64,
    pub eval: &'a EvalConfig,
    /// The half-spacing twins of the patches, for a model's second look (`None`: the model's
    /// mask).
    pub second_look: Option<&'a SecondLookPatches>,
}

/// Scores the patches `idx` of `ds`; `on_patch(done, total)` after each. Where a second look
/// decides a mask ([`PointRun::second_look_made`]), that mask is scored.
pub fn score_patches(
    model: &Model,
    ds: &PatchDataset,
    idx: &[usize],
    run: ScoreRun<'_>,
    mut on_patch: impl FnMut(usize, usize),
) -> Result<Scored> {
    let eval = run.eval;
    let mut acc = EvalAccumulator::new(eval.clone()).map_err(anyhow::Error::msg)?;
    let mut scores = Vec::with_capacity(idx.len());
    let mut mask_sources = BTreeMap::new();
    let model_spacing = model.config().spacing_mm;
    for (done, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let case = PointCase {
            rec,
            patch: &patch,
            second: run.second_look,
        };
        let point = run_point(model, case, run.samples, run.seed)?;
        *mask_sources.entry(point.source).or_insert(0) += 1;
        let made = point.second_look_made();
        let (s, m) = (point.summary, point.maps);
        let calibrated = calibrated_probability(model, &m.mean)?;
        let candidates = candidate_scores(&s, &m.det, eval.fg_threshold);
        acc.add_patch(&PatchInput {
            id: &rec.id,
            scan: &rec.seriesuid,
            dims: rec.shape,
            spacing_mm: rec.grid(model_spacing).spacing_xyz,
            centred_on_nodule: rec.label == 1,
            diameter_mm: rec.diameter_mm,
            gt: &patch.mask,
            prob: &m.mean,
            mask: made.then_some(&point.mask[..]),
            calibrated: calibrated.as_deref(),
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
        mask_sources,
    })
}
