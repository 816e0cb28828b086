//! How well an uncertainty map points at the segmentation's errors.
//!
//! A voxel is an *error* when the thresholded prediction differs from the ground truth
//! (false positive or false negative); otherwise it is *correct*. For an uncertainty
//! map `u` (entropy, mutual information or variance) we report:
//! - mean `u` on correct voxels, mean `u` on error voxels, and their ratio
//!   `mean_incorrect / mean_correct` (how many times more uncertain the model is where
//!   it is wrong);
//! - voxel AUROC of `u` as a detector of errors: the probability that a random error
//!   voxel has a higher `u` than a random correct voxel, ties counting one half
//!   (Mann–Whitney U / (n_err · n_correct)). 1 = perfect, 0.5 = chance, 0 = inverted;
//! - UEO (uncertainty–error overlap, Jungo et al. 2020): the Dice between the
//!   thresholded uncertainty `{u ≥ t}` and the error mask. The report gives its
//!   **maximum over thresholds** `t`, together with the maximising `t`
//!   ([`ScoreHistogram::ueo_max`]); [`ueo`] gives it at a stated threshold.
//!
//! [`auroc_exact`] sorts all scores (exact, for validation and small sets). The
//! streaming [`ScoreHistogram`] bins `u` into `2^16` equal-width bins over the measure's
//! known range; two voxels in the same bin count as tied. Pairs in different bins are
//! ordered exactly as by their values, so the only error comes from (error, correct)
//! pairs sharing a bin, each off by at most ½: the histogram reports that bound,
//! `0.5 · Σ_b err_b · ok_b / (n_err · n_ok)`, next to its AUROC (typically < 1e-4).

use serde::{Deserialize, Serialize};

use super::{check_len, MetricsError};

/// Default number of histogram bins for streaming AUROC/UEO.
pub const DEFAULT_HIST_BINS: usize = 1 << 16;

/// The voxel uncertainty maps that MC dropout produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncertaintyMeasure {
    /// Predictive entropy of the mean probability, bits, in `[0, 1]`.
    Entropy,
    /// Mutual information between prediction and weights (BALD), bits, in `[0, 1]`.
    MutualInfo,
    /// Variance of the sampled probabilities, in `[0, 0.25]`.
    Variance,
    /// The deterministic baseline: entropy of the dropout-off probability, bits, in `[0, 1]`,
    /// judged against the errors of the dropout-off prediction. What MC dropout must beat.
    DeterministicEntropy,
}

impl UncertaintyMeasure {
    pub const ALL: [UncertaintyMeasure; 4] = [
        Self::Entropy,
        Self::MutualInfo,
        Self::Variance,
        Self::DeterministicEntropy,
    ];

    /// The closed range the measure can take.
    pub fn range(self) -> (f32, f32) {
        match self {
            Self::Entropy | Self::MutualInfo | Self::DeterministicEntropy => (0.0, 1.0),
            Self::Variance => (0.0, 0.25),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Entropy => "entropy",
            Self::MutualInfo => "mutual_info",
            Self::Variance => "variance",
            Self::DeterministicEntropy => "deterministic_entropy",
        }
    }

    /// Human-readable label with units, for reports and figures.
    pub fn label(self) -> &'static str {
        match self {
            Self::Entropy => "predictive entropy (bits)",
            Self::MutualInfo => "mutual information (bits)",
            Self::Variance => "variance of p",
            Self::DeterministicEntropy => "entropy without dropout (bits)",
        }
    }
}

/// An AUROC value with the largest possible deviation from the exact one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Auroc {
    pub value: f64,
    /// 0 for the exact computation; the histogram bound otherwise.
    pub max_abs_error: f64,
}

/// Exact AUROC of `scores` for separating `positive` from negative items, ties counted
/// as one half (average ranks). O(n log n). `None` when either class is empty.
/// Scores are ordered with `f32::total_cmp`; pass finite values.
pub fn auroc_exact(scores: &[f32], positive: &[bool]) -> Result<Option<Auroc>, MetricsError> {
    check_len("labels", scores.len(), positive.len())?;
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    let n_pos = positive.iter().filter(|&&p| p).count() as u64;
    let n_neg = scores.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Ok(None);
    }
    // Walk groups of equal scores in increasing order: each positive beats every
    // negative seen before its group and ties with the negatives in its group.
    let (mut neg_below, mut twice_u) = (0u64, 0u128);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i] as usize];
        let (mut pos_g, mut neg_g) = (0u64, 0u64);
        while i < order.len() && scores[order[i] as usize].total_cmp(&s).is_eq() {
            if positive[order[i] as usize] {
                pos_g += 1;
            } else {
                neg_g += 1;
            }
            i += 1;
        }
        twice_u += u128::from(pos_g) * u128::from(2 * neg_below + neg_g);
        neg_below += neg_g;
    }
    Ok(Some(Auroc {
        value: twice_u as f64 / (2.0 * n_pos as f64 * n_neg as f64),
        max_abs_error: 0.0,
    }))
}

/// UEO at a stated threshold: Dice between `{u ≥ threshold}` and the error mask.
/// `None` when there is no error voxel (nothing to overlap with).
pub fn ueo(unc: &[f32], error: &[bool], threshold: f32) -> Result<Option<f64>, MetricsError> {
    check_len("error mask", unc.len(), error.len())?;
    let (mut both, mut flagged, mut errors) = (0u64, 0u64, 0u64);
    for (&u, &e) in unc.iter().zip(error) {
        let f = u >= threshold;
        flagged += u64::from(f);
        errors += u64::from(e);
        both += u64::from(f && e);
    }
    Ok((errors > 0).then(|| 2.0 * both as f64 / (flagged + errors) as f64))
}

/// Exact maximum of [`ueo`] over all thresholds (every distinct value of `u`), with the
/// smallest maximising threshold. O(n log n). `None` when there is no error voxel.
pub fn ueo_max_exact(unc: &[f32], error: &[bool]) -> Result<Option<(f64, f32)>, MetricsError> {
    check_len("error mask", unc.len(), error.len())?;
    let errors = error.iter().filter(|&&e| e).count() as u64;
    if errors == 0 {
        return Ok(None);
    }
    let mut order: Vec<u32> = (0..unc.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| unc[b as usize].total_cmp(&unc[a as usize]));
    // Lower the threshold one distinct value at a time, from the top.
    let (mut flagged, mut both) = (0u64, 0u64);
    let mut best = (0.0, f32::INFINITY);
    let mut i = 0;
    while i < order.len() {
        let t = unc[order[i] as usize];
        while i < order.len() && unc[order[i] as usize].total_cmp(&t).is_eq() {
            flagged += 1;
            both += u64::from(error[order[i] as usize]);
            i += 1;
        }
        let d = 2.0 * both as f64 / (flagged + errors) as f64;
        if d >= best.0 {
            best = (d, t);
        }
    }
    Ok(Some(best))
}

/// Streaming histogram of an uncertainty measure on error and correct voxels, with exact
/// sums for the means. Values outside `[lo, hi]` are clamped into the end bins.
#[derive(Clone, Debug)]
pub struct ScoreHistogram {
    lo: f32,
    hi: f32,
    err: Vec<u64>,
    ok: Vec<u64>,
    sum_err: f64,
    sum_ok: f64,
}

/// Summary of one uncertainty measure against the error mask.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UncertaintySummary {
    pub measure: UncertaintyMeasure,
    pub n_correct: u64,
    pub n_incorrect: u64,
    pub mean_correct: Option<f64>,
    pub mean_incorrect: Option<f64>,
    /// `mean_incorrect / mean_correct`; `None` if either is missing or the denominator is 0.
    pub ratio: Option<f64>,
    pub auroc: Option<Auroc>,
    /// Maximum UEO over the histogram's bin edges.
    pub ueo_max: Option<f64>,
    /// The (smallest) threshold reaching `ueo_max`.
    pub ueo_threshold: Option<f32>,
}

/// Normalised histograms for plotting (each sums to 1 when its class is non-empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramDensity {
    pub measure: UncertaintyMeasure,
    /// `bins + 1` edges.
    pub edges: Vec<f32>,
    pub correct: Vec<f64>,
    pub incorrect: Vec<f64>,
}

impl ScoreHistogram {
    pub fn new(lo: f32, hi: f32, bins: usize) -> Result<Self, MetricsError> {
        if bins == 0 || lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return Err(MetricsError::InvalidParameter(format!(
                "histogram needs lo < hi and bins > 0 (got [{lo}, {hi}], {bins} bins)"
            )));
        }
        Ok(ScoreHistogram {
            lo,
            hi,
            err: vec![0; bins],
            ok: vec![0; bins],
            sum_err: 0.0,
            sum_ok: 0.0,
        })
    }

    /// A `2^16`-bin histogram over the measure's known range.
    pub fn for_measure(m: UncertaintyMeasure) -> Self {
        let (lo, hi) = m.range();
        Self::new(lo, hi, DEFAULT_HIST_BINS).expect("valid built-in range")
    }

    pub fn bins(&self) -> usize {
        self.err.len()
    }

    #[inline]
    fn bin(&self, v: f32) -> usize {
        let n = self.err.len();
        let x = (f64::from(v) - f64::from(self.lo)) / (f64::from(self.hi) - f64::from(self.lo));
        // NaN casts to 0; out-of-range values clamp into the end bins.
        ((x * n as f64).max(0.0) as usize).min(n - 1)
    }

    /// Lower edge of bin `k`.
    pub fn edge(&self, k: usize) -> f32 {
        let n = self.err.len() as f64;
        (f64::from(self.lo) + (f64::from(self.hi) - f64::from(self.lo)) * k as f64 / n) as f32
    }

    #[inline]
    pub fn add(&mut self, v: f32, is_error: bool) {
        let b = self.bin(v);
        if is_error {
            self.err[b] += 1;
            self.sum_err += f64::from(v);
        } else {
            self.ok[b] += 1;
            self.sum_ok += f64::from(v);
        }
    }

    pub fn merge(&mut self, other: &ScoreHistogram) -> Result<(), MetricsError> {
        if other.lo != self.lo || other.hi != self.hi || other.bins() != self.bins() {
            return Err(MetricsError::InvalidParameter(
                "merging histograms with different bins".into(),
            ));
        }
        for b in 0..self.bins() {
            self.err[b] += other.err[b];
            self.ok[b] += other.ok[b];
        }
        self.sum_err += other.sum_err;
        self.sum_ok += other.sum_ok;
        Ok(())
    }

    pub fn n_incorrect(&self) -> u64 {
        self.err.iter().sum()
    }

    pub fn n_correct(&self) -> u64 {
        self.ok.iter().sum()
    }

    /// AUROC with ties inside a bin, and its error bound (see the module docs).
    pub fn auroc(&self) -> Option<Auroc> {
        let (np, nn) = (self.n_incorrect(), self.n_correct());
        if np == 0 || nn == 0 {
            return None;
        }
        let (mut ok_below, mut twice_u, mut same_bin) = (0u64, 0u128, 0u128);
        for b in 0..self.bins() {
            let (e, o) = (u128::from(self.err[b]), u128::from(self.ok[b]));
            twice_u += e * (2 * u128::from(ok_below) + o);
            same_bin += e * o;
            ok_below += self.ok[b];
        }
        let pairs = np as f64 * nn as f64;
        Some(Auroc {
            value: twice_u as f64 / (2.0 * pairs),
            max_abs_error: 0.5 * same_bin as f64 / pairs,
        })
    }

    /// UEO at the lower edge of bin `k` (voxels in bins `≥ k` are flagged).
    pub fn ueo_at_bin(&self, k: usize) -> Option<f64> {
        let errors = self.n_incorrect();
        if errors == 0 {
            return None;
        }
        let both: u64 = self.err[k..].iter().sum();
        let flagged = both + self.ok[k..].iter().sum::<u64>();
        Some(2.0 * both as f64 / (flagged + errors) as f64)
    }

    /// Maximum UEO over all bin edges, with the smallest maximising threshold.
    pub fn ueo_max(&self) -> Option<(f64, f32)> {
        let errors = self.n_incorrect();
        if errors == 0 {
            return None;
        }
        let (mut both, mut flagged) = (0u64, 0u64);
        let mut best = (0.0, self.hi);
        for k in (0..self.bins()).rev() {
            both += self.err[k];
            flagged += self.err[k] + self.ok[k];
            let d = 2.0 * both as f64 / (flagged + errors) as f64;
            if d >= best.0 {
                best = (d, self.edge(k));
            }
        }
        Some(best)
    }

    pub fn summary(&self, measure: UncertaintyMeasure) -> UncertaintySummary {
        let (ni, nc) = (self.n_incorrect(), self.n_correct());
        let mean_incorrect = (ni > 0).then(|| self.sum_err / ni as f64);
        let mean_correct = (nc > 0).then(|| self.sum_ok / nc as f64);
        let ratio = match (mean_incorrect, mean_correct) {
            (Some(i), Some(c)) if c > 0.0 => Some(i / c),
            _ => None,
        };
        let ueo = self.ueo_max();
        UncertaintySummary {
            measure,
            n_correct: nc,
            n_incorrect: ni,
            mean_correct,
            mean_incorrect,
            ratio,
            auroc: self.auroc(),
            ueo_max: ueo.map(|u| u.0),
            ueo_threshold: ueo.map(|u| u.1),
        }
    }

    /// Re-bins into `bins` coarse bins (for figures) and normalises each class to 1. A fine
    /// bin goes wholly to the coarse bin holding its lower edge, so coarse edges are exact
    /// only to one fine bin width.
    pub fn density(&self, measure: UncertaintyMeasure, bins: usize) -> HistogramDensity {
        let bins = bins.max(1);
        let n = self.bins();
        let (mut c, mut i) = (vec![0.0; bins], vec![0.0; bins]);
        for k in 0..n {
            let j = k * bins / n;
            c[j] += self.ok[k] as f64;
            i[j] += self.err[k] as f64;
        }
        let norm = |v: &mut Vec<f64>| {
            let s: f64 = v.iter().sum();
            if s > 0.0 {
                v.iter_mut().for_each(|x| *x /= s);
            }
        };
        norm(&mut c);
        norm(&mut i);
        let step = (f64::from(self.hi) - f64::from(self.lo)) / bins as f64;
        HistogramDensity {
            measure,
            edges: (0..=bins)
                .map(|k| (f64::from(self.lo) + step * k as f64) as f32)
                .collect(),
            correct: c,
            incorrect: i,
        }
    }
}
