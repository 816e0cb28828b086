//! Calibration of the foreground probability: ECE, reliability diagram, Brier score.
//!
//! Definitions, over a set of N voxels with mean MC probability `p_i` and label
//! `y_i ∈ {0, 1}` (1 = nodule in the ground truth):
//! - bins: `B` equal-width bins of `p` over `[0, 1]`; voxel `i` falls in bin
//!   `min(floor(p_i · B), B − 1)` (so `p = 1` is in the last bin);
//! - per bin `b` with `n_b` voxels: confidence `conf_b = mean p`, observed frequency
//!   `freq_b = mean y` (the reliability diagram plots `freq_b` against `conf_b`);
//! - ECE = Σ_b (n_b / N) · |freq_b − conf_b|, i.e. the calibration of the *foreground
//!   probability* ("when the model says 70 %, is it nodule 70 % of the time?"), not of
//!   the max-class confidence;
//! - Brier score = (1/N) Σ_i (p_i − y_i)².
//!
//! Because almost all voxels of a patch are confidently background, whole-patch ECE
//! and Brier look excellent whatever the model does near the nodule. The report
//! therefore states them inside a region of interest: the ground truth dilated by a
//! cube of side `2r + 1` voxels ([`super::morphology::dilate_cube`]) united with the
//! predicted foreground.

use serde::{Deserialize, Serialize};

use super::MetricsError;

/// Default number of equal-width probability bins.
pub const DEFAULT_BINS: usize = 15;

/// Streaming sums for ECE, the reliability diagram and the Brier score. Serialised as its
/// sums (a report keeps each patch's, so that reports pool); a deserialised one is checked
/// to have as many sums as bins, at least one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalibrationSums", into = "CalibrationSums")]
pub struct CalibrationAccumulator {
    count: Vec<u64>,
    sum_p: Vec<f64>,
    sum_y: Vec<f64>,
    sum_sq: f64,
}

/// The serialised form of [`CalibrationAccumulator`], unchecked.
#[derive(Clone, Serialize, Deserialize)]
struct CalibrationSums {
    count: Vec<u64>,
    sum_p: Vec<f64>,
    sum_y: Vec<f64>,
    sum_sq: f64,
}

impl TryFrom<CalibrationSums> for CalibrationAccumulator {
    type Error = String;

    fn try_from(s: CalibrationSums) -> Result<Self, String> {
        let n = s.count.len();
        if n == 0 || s.sum_p.len() != n || s.sum_y.len() != n {
            return Err(format!(
                "calibration sums of {n}, {} and {} bins: expected the same number, at least one",
                s.sum_p.len(),
                s.sum_y.len()
            ));
        }
        Ok(CalibrationAccumulator {
            count: s.count,
            sum_p: s.sum_p,
            sum_y: s.sum_y,
            sum_sq: s.sum_sq,
        })
    }
}

impl From<CalibrationAccumulator> for CalibrationSums {
    fn from(a: CalibrationAccumulator) -> Self {
        CalibrationSums {
            count: a.count,
            sum_p: a.sum_p,
            sum_y: a.sum_y,
            sum_sq: a.sum_sq,
        }
    }
}

/// One bin of the reliability diagram.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean predicted probability in the bin (`None` when empty).
    pub mean_prob: Option<f64>,
    /// Fraction of the bin's voxels that are nodule (`None` when empty).
    pub observed_freq: Option<f64>,
}

/// ECE, Brier score and reliability bins of one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// `None` when no voxel was added.
    pub ece: Option<f64>,
    pub brier: Option<f64>,
    pub voxels: u64,
    pub bins: Vec<ReliabilityBin>,
}

impl CalibrationAccumulator {
    pub fn new(bins: usize) -> Result<Self, MetricsError> {
        if bins == 0 {
            return Err(MetricsError::InvalidParameter(
                "calibration needs at least one bin".into(),
            ));
        }
        Ok(CalibrationAccumulator {
            count: vec![0; bins],
            sum_p: vec![0.0; bins],
            sum_y: vec![0.0; bins],
            sum_sq: 0.0,
        })
    }

    /// Number of probability bins.
    pub fn bins(&self) -> usize {
        self.count.len()
    }

    /// Adds one voxel. `p` is clamped to `[0, 1]`; callers pass finite probabilities
    /// (a NaN would land in bin 0 and poison the Brier sum, which makes it visible).
    #[inline]
    pub fn add(&mut self, p: f32, y: bool) {
        let p = f64::from(p).clamp(0.0, 1.0);
        let nb = self.count.len();
        let b = ((p * nb as f64) as usize).min(nb - 1);
        let y = f64::from(u8::from(y));
        self.count[b] += 1;
        self.sum_p[b] += p;
        self.sum_y[b] += y;
        self.sum_sq += (p - y) * (p - y);
    }

    /// Adds `n` voxels of probability `p` and label `y` (a subsample standing for `n`).
    pub fn add_n(&mut self, p: f32, y: bool, n: u64) {
        let p = f64::from(p).clamp(0.0, 1.0);
        let nb = self.count.len();
        let b = ((p * nb as f64) as usize).min(nb - 1);
        let y = f64::from(u8::from(y));
        self.count[b] += n;
        self.sum_p[b] += n as f64 * p;
        self.sum_y[b] += n as f64 * y;
        self.sum_sq += n as f64 * (p - y) * (p - y);
    }

    /// Adds every voxel of a patch whose `roi` is non-zero (all voxels when `roi` is `None`).
    pub fn add_patch(
        &mut self,
        gt: &[u8],
        prob: &[f32],
        roi: Option<&[u8]>,
    ) -> Result<(), MetricsError> {
        super::check_len("probability map", gt.len(), prob.len())?;
        if let Some(r) = roi {
            super::check_len("region of interest", gt.len(), r.len())?;
        }
        for i in 0..gt.len() {
            if roi.is_none_or(|r| r[i] != 0) {
                self.add(prob[i], gt[i] != 0);
            }
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &CalibrationAccumulator) -> Result<(), MetricsError> {
        if other.count.len() != self.count.len() {
            return Err(MetricsError::InvalidParameter(
                "merging calibration with different bins".into(),
            ));
        }
        for b in 0..self.count.len() {
            self.count[b] += other.count[b];
            self.sum_p[b] += other.sum_p[b];
            self.sum_y[b] += other.sum_y[b];
        }
        self.sum_sq += other.sum_sq;
        Ok(())
    }

    /// ECE (module docs) of the voxels added, `None` when there are none; [`Self::summary`]
    /// reports it with the reliability bins.
    pub fn ece(&self) -> Option<f64> {
        let total: u64 = self.count.iter().sum();
        (total > 0).then(|| {
            (0..self.count.len())
                .filter(|&b| self.count[b] > 0)
                .map(|b| {
                    let n = self.count[b] as f64;
                    n / total as f64 * (self.sum_y[b] / n - self.sum_p[b] / n).abs()
                })
                .sum()
        })
    }

    pub fn summary(&self) -> CalibrationSummary {
        let nb = self.count.len();
        let total: u64 = self.count.iter().sum();
        let bins = (0..nb)
            .map(|b| {
                let n = self.count[b];
                let (mean_prob, observed_freq) = if n > 0 {
                    let conf = self.sum_p[b] / n as f64;
                    let freq = self.sum_y[b] / n as f64;
                    (Some(conf), Some(freq))
                } else {
                    (None, None)
                };
                ReliabilityBin {
                    lower: b as f64 / nb as f64,
                    upper: (b + 1) as f64 / nb as f64,
                    count: n,
                    mean_prob,
                    observed_freq,
                }
            })
            .collect();
        CalibrationSummary {
            ece: self.ece(),
            brier: (total > 0).then(|| self.sum_sq / total as f64),
            voxels: total,
            bins,
        }
    }
}

/// ECE of one set of voxels with `bins` equal-width bins (see the module docs).
pub fn ece(gt: &[u8], prob: &[f32], bins: usize) -> Result<Option<f64>, MetricsError> {
    let mut acc = CalibrationAccumulator::new(bins)?;
    acc.add_patch(gt, prob, None)?;
    Ok(acc.summary().ece)
}

/// Brier score (1/N) Σ (p − y)²; `None` for no voxels.
pub fn brier(gt: &[u8], prob: &[f32]) -> Result<Option<f64>, MetricsError> {
    let mut acc = CalibrationAccumulator::new(1)?;
    acc.add_patch(gt, prob, None)?;
    Ok(acc.summary().brier)
}
