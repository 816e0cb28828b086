//! Candidate review scores judged as detectors of bad patches.
//!
//! A patch is *bad* when its segmentation would mislead: a nodule patch
//! ([`PatchClass::Nodule`]) with Dice < `bad_dice`, or a negative patch whose predicted
//! foreground exceeds `bad_fp_mm3` (see [`is_bad`]). Each candidate score (the engine's MC summaries, the
//! structure-wise measures, and the deterministic baseline: the entropy of the dropout-off
//! probability) is judged by
//! - `auroc`: probability that a bad patch scores above a good one (ties count ½);
//! - `catch_rate`: the share of bad patches among the top `⌈budget · n⌉` patches by score,
//!   i.e. what the flag catches when that fraction of cases is referred; ties at the cut are
//!   broken by patch order, which the report states (a cut never depends on the labels).
//!
//! The same functions choose the default score on validation data (calibrate) and report
//! every candidate on the test split (evaluate), so the two can never disagree on a definition.

use serde::{Deserialize, Serialize};

use super::bootstrap::{bootstrap_by_group, BootstrapConfig, Interval};
use super::patch_class::PatchClass;
use super::uncertainty::auroc_exact;
use super::{check_len, MetricsError};

/// Default referral budget: the share of patches a site is willing to send to a radiologist.
pub const DEFAULT_REFER_BUDGET: f64 = 0.15;

/// Volume of a 3 mm sphere: the smallest nodule LUNA16 annotates. A false positive of this
/// size on a negative patch is something a reader would have to rule out.
pub const DEFAULT_BAD_FP_MM3: f64 = std::f64::consts::PI / 6.0 * 27.0;

/// A patch is bad: a nodule segmented with Dice < `bad_dice`, or a false-positive volume above
/// `bad_fp_mm3` on a patch without nodule. A [`PatchClass::Partial`] patch is never bad: the
/// nodule it clips is judged on its own patch.
pub fn is_bad(
    class: PatchClass,
    dice: f64,
    fp_volume_mm3: f64,
    bad_dice: f64,
    bad_fp_mm3: f64,
) -> bool {
    match class {
        PatchClass::Nodule => dice < bad_dice,
        PatchClass::Negative => fp_volume_mm3 > bad_fp_mm3,
        PatchClass::Partial => false,
    }
}

/// One candidate score's record on a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreEvaluation {
    pub name: String,
    /// `None` when every patch is bad or none is.
    pub auroc: Option<f64>,
    /// Share of bad patches among the top `budget` fraction by score, with its interval.
    pub catch_rate: Option<Interval>,
    pub budget: f64,
}

/// The patches referred when `budget` of them go to review: the top `⌈budget · n⌉` by score
/// (NaN scores count as the most uncertain), ties in patch order.
pub fn referred_at_budget(scores: &[f32], budget: f64) -> Vec<bool> {
    let n = scores.len();
    let k = ((budget * n as f64 - 1e-9).ceil().max(0.0) as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    let key = |i: usize| {
        if scores[i].is_nan() {
            f32::INFINITY
        } else {
            scores[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let mut out = vec![false; n];
    for &i in &order[..k] {
        out[i] = true;
    }
    out
}

/// Judges one candidate score against `bad`, with a by-scan bootstrap of the catch rate
/// (the referral set is recomputed on every resample, as a site would apply the budget).
pub fn evaluate_score(
    name: &str,
    scores: &[f32],
    bad: &[bool],
    group: &[usize],
    budget: f64,
    boot: &BootstrapConfig,
) -> Result<ScoreEvaluation, MetricsError> {
    check_len("patch scores", bad.len(), scores.len())?;
    check_len("patch groups", bad.len(), group.len())?;
    if !(0.0..=1.0).contains(&budget) {
        return Err(MetricsError::InvalidParameter(format!(
            "referral budget {budget} is outside [0, 1]"
        )));
    }
    let auroc = auroc_exact(scores, bad)?.map(|a| a.value);
    let catch_rate = bootstrap_by_group(group, boot, |sample| {
        let s: Vec<f32> = sample.iter().map(|&i| scores[i]).collect();
        let referred = referred_at_budget(&s, budget);
        let (mut caught, mut n_bad) = (0usize, 0usize);
        for (k, &i) in sample.iter().enumerate() {
            if bad[i] {
                n_bad += 1;
                caught += usize::from(referred[k]);
            }
        }
        (n_bad > 0).then(|| caught as f64 / n_bad as f64)
    })?;
    Ok(ScoreEvaluation {
        name: name.to_string(),
        auroc,
        catch_rate,
        budget,
    })
}

/// The candidate with the highest catch rate at the budget (then AUROC, then list order):
/// how calibration picks the default review score on validation data.
pub fn best_score(evals: &[ScoreEvaluation]) -> Option<&ScoreEvaluation> {
    let key = |e: &ScoreEvaluation| {
        (
            e.catch_rate.map_or(-1.0, |c| c.estimate),
            e.auroc.unwrap_or(-1.0),
        )
    };
    evals.iter().reduce(|best, e| {
        let (a, b) = (key(e), key(best));
        if a.0 > b.0 || (a.0 == b.0 && a.1 > b.1) {
            e
        } else {
            best
        }
    })
}
