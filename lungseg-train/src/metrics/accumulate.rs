//! Streaming evaluation: feed one patch at a time, get every metric at the end.
//!
//! Only per-patch summaries (a few numbers each) and fixed-size accumulators are kept:
//! calibration bins, and for each uncertainty measure a `2^16`-bin histogram on error and
//! correct voxels (see [`super::uncertainty`] for the AUROC error bound it reports). So a
//! test split of thousands of 64³ patches needs a few MiB, not all its voxels.
//!
//! Uncertainty-vs-error metrics and calibration are reported twice: over all voxels of
//! all patches, and inside the region of interest (ground truth dilated by
//! `roi_dilation` voxels ∪ predicted foreground), where the clinically relevant
//! uncertainty lives; the whole-patch numbers are inflated by easy background.

use serde::{Deserialize, Serialize};

use super::calibration::{CalibrationAccumulator, CalibrationSummary, DEFAULT_BINS};
use super::morphology::dilate_cube;
use super::overlap::{summarize_overlap, Confusion, OverlapScores, OverlapSummary};
use super::referral::{
    referral_curve, review_confusion, ReferralCurve, ReviewConfusion, DEFAULT_BAD_DICE,
};
use super::uncertainty::{
    HistogramDensity, ScoreHistogram, UncertaintyMeasure, UncertaintySummary, DEFAULT_HIST_BINS,
};
use super::{check_len, MetricsError, DEFAULT_FG_THRESHOLD};

/// Parameters of the evaluation; all are written into the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// A voxel is predicted foreground when `p >= fg_threshold`.
    pub fg_threshold: f32,
    /// Radius (voxels, cube structuring element) of the ground-truth dilation in the ROI.
    pub roi_dilation: usize,
    /// Equal-width probability bins for ECE and the reliability diagram.
    pub calibration_bins: usize,
    /// Histogram bins per uncertainty measure for AUROC and UEO.
    pub hist_bins: usize,
    /// Coarse bins of the uncertainty histograms kept for the figures.
    pub figure_hist_bins: usize,
    /// Patches with Dice below this are "bad" in the review confusion.
    pub bad_dice: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            fg_threshold: DEFAULT_FG_THRESHOLD,
            roi_dilation: 3,
            calibration_bins: DEFAULT_BINS,
            hist_bins: DEFAULT_HIST_BINS,
            figure_hist_bins: 50,
            bad_dice: DEFAULT_BAD_DICE,
        }
    }
}

/// The engine's output for one patch, with its ground truth. All maps have
/// `dims[0] * dims[1] * dims[2]` voxels, x fastest.
#[derive(Clone, Copy, Debug)]
pub struct PatchInput<'a> {
    pub id: &'a str,
    pub dims: [usize; 3],
    pub gt: &'a [u8],
    /// Mean MC-dropout foreground probability.
    pub prob: &'a [f32],
    /// Predictive entropy, bits.
    pub entropy: &'a [f32],
    /// Mutual information (BALD), bits.
    pub mutual_info: &'a [f32],
    /// Variance of the sampled probabilities.
    pub variance: &'a [f32],
    /// The engine's patch uncertainty score (compared with the review threshold).
    pub score: f32,
    /// The engine's flag: `score > threshold`.
    pub needs_review: bool,
}

/// What is kept of one patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub id: String,
    pub confusion: Confusion,
    pub overlap: OverlapScores,
    pub score: f32,
    pub needs_review: bool,
    /// Mean predictive entropy over the patch (bits).
    pub mean_entropy: f64,
}

/// Every metric of an evaluation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub config: EvalConfig,
    pub n_patches: usize,
    pub overlap: OverlapSummary,
    pub calibration_roi: CalibrationSummary,
    pub calibration_all: CalibrationSummary,
    pub uncertainty_roi: Vec<UncertaintySummary>,
    pub uncertainty_all: Vec<UncertaintySummary>,
    /// Normalised correct/incorrect histograms inside the ROI, per measure.
    pub histograms_roi: Vec<HistogramDensity>,
    /// `None` without patches.
    pub referral: Option<ReferralCurve>,
    pub review: ReviewConfusion,
    pub patches: Vec<PatchRecord>,
}

impl EvalMetrics {
    /// The uncertainty summary of `measure` in the ROI or over all voxels.
    pub fn uncertainty(
        &self,
        measure: UncertaintyMeasure,
        roi: bool,
    ) -> Option<&UncertaintySummary> {
        let list = if roi {
            &self.uncertainty_roi
        } else {
            &self.uncertainty_all
        };
        list.iter().find(|u| u.measure == measure)
    }
}

/// Streaming accumulator over patches.
#[derive(Clone, Debug)]
pub struct EvalAccumulator {
    config: EvalConfig,
    patches: Vec<PatchRecord>,
    calib_roi: CalibrationAccumulator,
    calib_all: CalibrationAccumulator,
    hist_roi: Vec<ScoreHistogram>,
    hist_all: Vec<ScoreHistogram>,
}

impl EvalAccumulator {
    pub fn new(config: EvalConfig) -> Result<Self, MetricsError> {
        let hists = || {
            UncertaintyMeasure::ALL
                .iter()
                .map(|m| {
                    let (lo, hi) = m.range();
                    ScoreHistogram::new(lo, hi, config.hist_bins)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(EvalAccumulator {
            calib_roi: CalibrationAccumulator::new(config.calibration_bins)?,
            calib_all: CalibrationAccumulator::new(config.calibration_bins)?,
            hist_roi: hists()?,
            hist_all: hists()?,
            patches: Vec::new(),
            config,
        })
    }

    /// Adds one patch and returns its record (also kept for the report).
    pub fn add_patch(&mut self, p: &PatchInput<'_>) -> Result<&PatchRecord, MetricsError> {
        let n = p.dims.iter().product::<usize>();
        check_len("ground truth", n, p.gt.len())?;
        check_len("probability map", n, p.prob.len())?;
        check_len("entropy map", n, p.entropy.len())?;
        check_len("mutual information map", n, p.mutual_info.len())?;
        check_len("variance map", n, p.variance.len())?;
        let t = self.config.fg_threshold;
        let confusion = Confusion::from_probs(p.gt, p.prob, t)?;
        let mut roi = dilate_cube(p.gt, p.dims, self.config.roi_dilation)?;
        for (r, &q) in roi.iter_mut().zip(p.prob) {
            *r |= u8::from(q >= t);
        }
        self.calib_roi.add_patch(p.gt, p.prob, Some(&roi))?;
        self.calib_all.add_patch(p.gt, p.prob, None)?;
        let maps = [p.entropy, p.mutual_info, p.variance];
        for i in 0..n {
            let error = (p.gt[i] != 0) != (p.prob[i] >= t);
            for (m, map) in maps.iter().enumerate() {
                self.hist_all[m].add(map[i], error);
                if roi[i] != 0 {
                    self.hist_roi[m].add(map[i], error);
                }
            }
        }
        let mean_entropy = if n > 0 {
            p.entropy.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64
        } else {
            0.0
        };
        self.patches.push(PatchRecord {
            id: p.id.to_string(),
            confusion,
            overlap: confusion.scores(),
            score: p.score,
            needs_review: p.needs_review,
            mean_entropy,
        });
        Ok(self.patches.last().expect("just pushed"))
    }

    pub fn patches(&self) -> &[PatchRecord] {
        &self.patches
    }

    /// All metrics of the patches added so far.
    pub fn finish(&self) -> Result<EvalMetrics, MetricsError> {
        let confusions: Vec<Confusion> = self.patches.iter().map(|p| p.confusion).collect();
        let dice: Vec<f64> = self.patches.iter().map(|p| p.overlap.dice).collect();
        let scores: Vec<f32> = self.patches.iter().map(|p| p.score).collect();
        let flags: Vec<bool> = self.patches.iter().map(|p| p.needs_review).collect();
        let summarize = |h: &[ScoreHistogram]| {
            UncertaintyMeasure::ALL
                .iter()
                .zip(h)
                .map(|(&m, h)| h.summary(m))
                .collect::<Vec<_>>()
        };
        Ok(EvalMetrics {
            config: self.config.clone(),
            n_patches: self.patches.len(),
            overlap: summarize_overlap(&confusions),
            calibration_roi: self.calib_roi.summary(),
            calibration_all: self.calib_all.summary(),
            uncertainty_roi: summarize(&self.hist_roi),
            uncertainty_all: summarize(&self.hist_all),
            histograms_roi: UncertaintyMeasure::ALL
                .iter()
                .zip(&self.hist_roi)
                .map(|(&m, h)| h.density(m, self.config.figure_hist_bins))
                .collect(),
            referral: if dice.is_empty() {
                None
            } else {
                Some(referral_curve(&dice, &scores)?)
            },
            review: review_confusion(&dice, &flags, self.config.bad_dice)?,
            patches: self.patches.clone(),
        })
    }
}
