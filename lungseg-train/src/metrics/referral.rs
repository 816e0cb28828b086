//! Patch referral: what happens to the Dice of the cases the model keeps when the most
//! uncertain ones go to a radiologist, and how the review flag matches bad segmentations.
//!
//! Definitions, over `n` patches with per-patch Dice `d_i` and uncertainty score `s_i`
//! (the engine's patch summary score; a patch is flagged when `s_i > threshold`):
//! - referral curve: patches are referred in decreasing order of `s`; patches with equal
//!   scores are referred together, so the curve has one point per distinct score
//!   boundary and does not depend on patch order. Each point gives the fraction
//!   referred `k / n` and the mean Dice of the `n − k` retained patches (`k < n`);
//! - referral AUC: area under that curve for fractions in `[0, (n − 1)/n]`, trapezoidal
//!   between points and constant after the last one, divided by the interval width so it
//!   reads as an average retained Dice. A random referral order gives, in expectation,
//!   the overall mean Dice at every fraction (`auc_random`); referring the worst patches
//!   first gives the best achievable curve (`auc_oracle`);
//! - needs-review confusion: the engine's `needs_review` flag scored as a detector of bad
//!   patches ([`super::review_scores::is_bad`]: Dice < 0.5 on nodule patches, a false
//!   positive larger than a 3 mm nodule on negatives, by default).

use serde::{Deserialize, Serialize};

use super::{check_len, MetricsError};

/// Dice below which a patch counts as a bad segmentation.
pub const DEFAULT_BAD_DICE: f64 = 0.5;

/// One point of the referral curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferralPoint {
    pub fraction_referred: f64,
    pub n_retained: usize,
    /// Mean Dice of the retained patches.
    pub retained_dice: f64,
}

/// Retained Dice against fraction referred, with its area and references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferralCurve {
    pub points: Vec<ReferralPoint>,
    pub auc: f64,
    /// The curve when patches are referred worst Dice first (best achievable).
    pub oracle: Vec<ReferralPoint>,
    /// Same area when patches are referred worst Dice first.
    pub auc_oracle: f64,
    /// Expected area for a random referral order (= mean Dice of all patches).
    pub auc_random: f64,
}

/// Retained-Dice referral curve (see the module docs). Fails on empty input or
/// mismatched lengths.
pub fn referral_curve(dice: &[f64], score: &[f32]) -> Result<ReferralCurve, MetricsError> {
    check_len("patch scores", dice.len(), score.len())?;
    if dice.is_empty() {
        return Err(MetricsError::InvalidParameter(
            "referral curve of no patches".into(),
        ));
    }
    let points = curve_by_key(
        dice,
        &score.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(),
    );
    let oracle = curve_by_key(dice, &dice.iter().map(|&d| -d).collect::<Vec<_>>());
    let n = dice.len();
    Ok(ReferralCurve {
        auc: area(&points, n),
        auc_oracle: area(&oracle, n),
        auc_random: dice.iter().sum::<f64>() / n as f64,
        points,
        oracle,
    })
}

/// Refers patches in decreasing `key`, equal keys together.
fn curve_by_key(dice: &[f64], key: &[f64]) -> Vec<ReferralPoint> {
    let n = dice.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key[b].total_cmp(&key[a]));
    let mut retained_sum: f64 = dice.iter().sum();
    let mut points = Vec::new();
    let mut k = 0;
    while k < n {
        points.push(ReferralPoint {
            fraction_referred: k as f64 / n as f64,
            n_retained: n - k,
            retained_dice: retained_sum / (n - k) as f64,
        });
        let t = key[order[k]];
        while k < n && key[order[k]].total_cmp(&t).is_eq() {
            retained_sum -= dice[order[k]];
            k += 1;
        }
    }
    points
}

fn area(points: &[ReferralPoint], n: usize) -> f64 {
    let end = (n - 1) as f64 / n as f64;
    if end <= 0.0 {
        return points[0].retained_dice;
    }
    let mut a = 0.0;
    for w in points.windows(2) {
        a += (w[1].fraction_referred - w[0].fraction_referred)
            * (w[0].retained_dice + w[1].retained_dice)
            / 2.0;
    }
    let last = points[points.len() - 1];
    a += (end - last.fraction_referred) * last.retained_dice;
    a / end
}

/// The review flag scored against bad patches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewConfusion {
    /// Flagged and bad.
    pub tp: u64,
    /// Flagged but good.
    pub fp: u64,
    /// Bad but not flagged: the dangerous cell.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Good and not flagged.
    pub tn: u64,
    /// Fraction of patches flagged.
    pub referred_fraction: f64,
    /// TP / (TP + FN): share of bad patches that were flagged.
    pub sensitivity: Option<f64>,
    /// TN / (TN + FP).
    pub specificity: Option<f64>,
    /// TP / (TP + FP): share of flagged patches that were bad.
    pub ppv: Option<f64>,
    /// TN / (TN + FN).
    pub npv: Option<f64>,
}

/// Confusion of `needs_review` against `bad`.
pub fn review_confusion(
    bad: &[bool],
    needs_review: &[bool],
) -> Result<ReviewConfusion, MetricsError> {
    check_len("review flags", bad.len(), needs_review.len())?;
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (&b, &r) in bad.iter().zip(needs_review) {
        match (b, r) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let ratio = |a: u64, b: u64| (a + b > 0).then(|| a as f64 / (a + b) as f64);
    let n = bad.len();
    Ok(ReviewConfusion {
        tp,
        fp,
        fn_,
        tn,
        referred_fraction: if n > 0 {
            (tp + fp) as f64 / n as f64
        } else {
            0.0
        },
        sensitivity: ratio(tp, fn_),
        specificity: ratio(tn, fp),
        ppv: ratio(tp, fp),
        npv: ratio(tn, fn_),
    })
}

/// The review threshold that refers a fraction of (validation) patches under the
/// engine's rule `score > threshold`.
///
/// With `k = ⌈fraction · n⌉` and scores sorted `s_1 ≥ … ≥ s_n`, returns `s_{k+1}`, the
/// highest retained score, so exactly the top `k` patches lie strictly above it (fewer
/// when `s_k = s_{k+1}`: tied patches are never split, they stay together below). `k = 0`
/// gives `s_1` (nothing referred); `k = n` gives the largest float below `s_n`.
/// `None` for no scores; an error for a fraction outside `[0, 1]` or a NaN score.
pub fn threshold_for_refer_fraction(
    scores: &[f32],
    fraction: f64,
) -> Result<Option<f32>, MetricsError> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(MetricsError::InvalidParameter(format!(
            "refer fraction {fraction} is outside [0, 1]"
        )));
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(MetricsError::InvalidParameter("NaN patch score".into()));
    }
    if scores.is_empty() {
        return Ok(None);
    }
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let n = s.len();
    // The epsilon keeps 0.1 · 30 = 3.0000000000000004 from becoming 4.
    let k = ((fraction * n as f64 - 1e-9).ceil().max(0.0) as usize).min(n);
    Ok(Some(if k < n { s[k] } else { next_down(s[n - 1]) }))
}

/// Largest f32 strictly below `x` (`f32::next_down` needs Rust 1.86).
fn next_down(x: f32) -> f32 {
    if x.is_infinite() && x < 0.0 {
        return x;
    }
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b - 1 } else { b + 1 })
}
