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

use lungseg::mask::{ComponentScratch, MaskRule, PatchGrid, PointRule, SmallComponents};
use lungseg::mc::entropy_bits;
use serde::{Deserialize, Serialize};

use super::bootstrap::BootstrapConfig;
use super::calibration::{CalibrationAccumulator, CalibrationSummary, DEFAULT_BINS};
use super::morphology::dilate_cube;
use super::overlap::{summarize_overlap, Confusion, OverlapSummary};
use super::patch_class::PatchClass;
use super::records::{records_headline, records_review_scores, Headline, PatchRecord, RecordStats};
use super::referral::{
    referral_curve, review_confusion, ReferralCurve, ReviewConfusion, DEFAULT_BAD_DICE,
};
use super::review_scores::{is_bad, ScoreEvaluation, DEFAULT_BAD_FP_MM3, DEFAULT_REFER_BUDGET};
use super::uncertainty::{
    HistogramDensity, ScoreHistogram, UncertaintyMeasure, UncertaintySummary, DEFAULT_HIST_BINS,
};
use super::{check_len, MetricsError, DEFAULT_FG_THRESHOLD};

/// The predicted mask of one patch: `p >= fg_threshold` with the lesion at the point cut at
/// `point_mask_threshold`, then the small 26-connected components dropped
/// ([`EvalConfig::mask_rule`]; `lungseg::mask`, the library's final mask when the
/// configuration is [`EvalConfig::for_model`]'s).
pub fn predicted_mask(
    prob: &[f32],
    grid: PatchGrid,
    config: &EvalConfig,
) -> Result<Vec<u8>, MetricsError> {
    let invalid = |e: lungseg::error::Error| MetricsError::InvalidParameter(e.message);
    let mut mask = vec![0u8; prob.len()];
    // Empty: a component pass grows it to the patch when the rule has one.
    let mut scratch = ComponentScratch::default();
    config
        .mask_rule()
        .apply(prob, grid, &mut mask, &mut scratch)
        .map_err(invalid)?;
    Ok(mask)
}

/// The region of interest of one patch: ground truth dilated by `roi_dilation` voxels ∪ the
/// MC prediction (`pred`, [`predicted_mask`]) ∪ the dropout-off prediction (at
/// `fg_threshold`). One ROI for every measure, so the MC maps and the baseline are judged on
/// the same voxels, and probability calibration is fitted on the voxels its ECE is reported on.
pub fn roi_mask(
    gt: &[u8],
    pred: &[u8],
    det_prob: &[f32],
    dims: [usize; 3],
    config: &EvalConfig,
) -> Result<Vec<u8>, MetricsError> {
    check_len("predicted mask", gt.len(), pred.len())?;
    check_len("deterministic probability map", gt.len(), det_prob.len())?;
    let t = config.fg_threshold;
    let mut roi = dilate_cube(gt, dims, config.roi_dilation)?;
    for ((r, &q), &d) in roi.iter_mut().zip(pred).zip(det_prob) {
        *r |= u8::from(q != 0 || d >= t);
    }
    Ok(roi)
}

/// Parameters of the evaluation; all are written into the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// A voxel is predicted foreground when `p >= fg_threshold`. The commands that evaluate a
    /// model set it to the model's mask threshold ([`EvalConfig::for_model`]).
    pub fg_threshold: f32,
    /// The predicted mask drops its 26-connected components below this many mm³ (the model's
    /// `config.min_component_mm3`; 0 keeps them all).
    #[serde(default)]
    pub min_component_mm3: f64,
    /// ... unless a voxel of theirs is closer than this many mm to the patch centre (the
    /// model's `config.min_component_spare_radius_mm`; 0 spares none).
    #[serde(default)]
    pub min_component_spare_radius_mm: f64,
    /// The components of `p >= point_mask_threshold` closer than `point_radius_mm` to the
    /// patch centre join the predicted mask (the model's `config.point_mask_threshold` and
    /// `config.point_radius_mm`; radius 0 adds none).
    #[serde(default)]
    pub point_mask_threshold: f32,
    #[serde(default)]
    pub point_radius_mm: f64,
    /// Radius (voxels, cube structuring element) of the ground-truth dilation in the ROI.
    pub roi_dilation: usize,
    /// Equal-width probability bins for ECE and the reliability diagram.
    pub calibration_bins: usize,
    /// Histogram bins per uncertainty measure for AUROC and UEO.
    pub hist_bins: usize,
    /// Coarse bins of the uncertainty histograms kept for the figures.
    pub figure_hist_bins: usize,
    /// Nodule patches with Dice below this are bad (see [`super::review_scores::is_bad`]).
    pub bad_dice: f64,
    /// Negative patches with a predicted foreground above this many mm³ are bad.
    pub bad_fp_mm3: f64,
    /// Fraction of patches referred when candidate review scores are compared.
    pub refer_budget: f64,
    /// The headline Dice is also stated for nodules at least this large (mm).
    pub min_diameter_mm: f64,
    pub bootstrap: BootstrapConfig,
}

impl EvalConfig {
    /// This configuration with `fg_threshold` and `min_component_mm3` = the model's
    /// (`config.mask_threshold`, `config.min_component_mm3`): a model is scored on the masks
    /// the library gives for it.
    pub fn for_model(&self, model: &lungseg::model::Model) -> EvalConfig {
        EvalConfig {
            fg_threshold: model.config().mask_threshold,
            min_component_mm3: model.config().min_component_mm3,
            min_component_spare_radius_mm: model.config().min_component_spare_radius_mm,
            point_mask_threshold: model.config().point_mask_threshold,
            point_radius_mm: model.config().point_radius_mm,
            ..self.clone()
        }
    }

    /// The lesion at the point the predicted mask cuts lower.
    pub fn point_rule(&self) -> PointRule {
        PointRule {
            threshold: self.point_mask_threshold,
            radius_mm: self.point_radius_mm,
        }
    }

    /// The whole rule of the predicted mask.
    pub fn mask_rule(&self) -> MaskRule {
        MaskRule {
            threshold: self.fg_threshold,
            point: self.point_rule(),
            small: self.small_components(),
        }
    }

    /// The components the predicted mask drops.
    pub fn small_components(&self) -> SmallComponents {
        SmallComponents {
            min_mm3: self.min_component_mm3,
            spare_radius_mm: self.min_component_spare_radius_mm,
        }
    }
}

impl EvalConfig {
    /// The definitions the statistics of the per-patch records use.
    pub fn record_stats(&self) -> RecordStats {
        RecordStats {
            bootstrap: self.bootstrap,
            min_diameter_mm: self.min_diameter_mm,
            refer_budget: self.refer_budget,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            fg_threshold: DEFAULT_FG_THRESHOLD,
            min_component_mm3: 0.0,
            min_component_spare_radius_mm: 0.0,
            point_mask_threshold: 0.0,
            point_radius_mm: 0.0,
            roi_dilation: 3,
            calibration_bins: DEFAULT_BINS,
            hist_bins: DEFAULT_HIST_BINS,
            figure_hist_bins: 50,
            bad_dice: DEFAULT_BAD_DICE,
            bad_fp_mm3: DEFAULT_BAD_FP_MM3,
            refer_budget: DEFAULT_REFER_BUDGET,
            min_diameter_mm: 5.0,
            bootstrap: BootstrapConfig::default(),
        }
    }
}

/// The engine's output for one patch, with its ground truth. All maps have
/// `dims[0] * dims[1] * dims[2]` voxels, x fastest.
#[derive(Clone, Copy, Debug)]
pub struct PatchInput<'a> {
    pub id: &'a str,
    /// The scan the patch was cut from: the unit of bootstrap resampling.
    pub scan: &'a str,
    pub dims: [usize; 3],
    /// Voxel spacing (x, y, z) in mm: false-positive volumes, and the distances of the
    /// predicted mask's component rule.
    pub spacing_mm: [f64; 3],
    /// The patch was cut around an annotated nodule (the dataset's `label` 1); with the ground
    /// truth, this gives its [`PatchClass`].
    pub centred_on_nodule: bool,
    /// Annotated nodule diameter, for nodule patches where known.
    pub diameter_mm: Option<f64>,
    pub gt: &'a [u8],
    /// Mean MC-dropout foreground probability.
    pub prob: &'a [f32],
    /// The engine's final mask where it made it (`lungseg::mc::point`, a second look
    /// included); `None`: [`predicted_mask`] of `prob`.
    pub mask: Option<&'a [u8]>,
    /// The calibrated probability where the model has a probability map
    /// (`lungseg::probability_map`): what calibration is measured on; the masks stay `prob`'s.
    pub calibrated: Option<&'a [f32]>,
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
    /// Dropout-off probability: the deterministic baseline's map.
    pub det_prob: &'a [f32],
    /// Candidate review scores by name (MC summaries, structure-wise measures, baseline).
    pub scores: &'a [(&'a str, f32)],
}

/// Every metric of an evaluation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub config: EvalConfig,
    pub n_patches: usize,
    pub overlap: OverlapSummary,
    /// Calibration of the probabilities the library reports: the calibrated ones where the
    /// model has a probability map ([`PatchInput::calibrated`]), else the MC mean.
    pub calibration_roi: CalibrationSummary,
    pub calibration_all: CalibrationSummary,
    /// The MC mean's own calibration, where a probability map replaced it above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_roi_mean: Option<CalibrationSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_all_mean: Option<CalibrationSummary>,
    pub uncertainty_roi: Vec<UncertaintySummary>,
    pub uncertainty_all: Vec<UncertaintySummary>,
    /// Normalised correct/incorrect histograms inside the ROI, per measure.
    pub histograms_roi: Vec<HistogramDensity>,
    /// `None` without patches.
    pub referral: Option<ReferralCurve>,
    pub review: ReviewConfusion,
    pub headline: Headline,
    /// Every candidate review score as a detector of bad patches, at `refer_budget`.
    pub review_scores: Vec<ScoreEvaluation>,
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
    /// The MC mean's, kept apart once a patch came with calibrated probabilities.
    calib_mean: Option<(CalibrationAccumulator, CalibrationAccumulator)>,
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
            calib_mean: None,
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
        check_len("deterministic probability map", n, p.det_prob.len())?;
        let t = self.config.fg_threshold;
        let grid = PatchGrid {
            dims_zyx: p.dims,
            spacing_xyz: p.spacing_mm,
        };
        let pred = match p.mask {
            Some(m) => {
                check_len("final mask", n, m.len())?;
                m.to_vec()
            }
            None => predicted_mask(p.prob, grid, &self.config)?,
        };
        let confusion = Confusion::from_masks(p.gt, &pred)?;
        let roi = roi_mask(p.gt, &pred, p.det_prob, p.dims, &self.config)?;
        let (calibration_roi, calibration_roi_mean) = self.add_calibration(p, &roi)?;
        for (i, &in_roi) in roi.iter().enumerate() {
            let gt = p.gt[i] != 0;
            let mc_error = gt != (pred[i] != 0);
            let det_error = gt != (p.det_prob[i] >= t);
            let values = [
                (p.entropy[i], mc_error),
                (p.mutual_info[i], mc_error),
                (p.variance[i], mc_error),
                (entropy_bits(p.det_prob[i]), det_error),
            ];
            for (m, &(v, error)) in values.iter().enumerate() {
                self.hist_all[m].add(v, error);
                if in_roi != 0 {
                    self.hist_roi[m].add(v, error);
                }
            }
        }
        let mean_entropy = if n > 0 {
            p.entropy.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64
        } else {
            0.0
        };
        let class = PatchClass::of(p.centred_on_nodule, confusion.gt_voxels());
        let overlap = confusion.scores();
        let fp_volume_mm3 = confusion.fp as f64 * grid.voxel_mm3();
        let c = &self.config;
        self.patches.push(PatchRecord {
            id: p.id.to_string(),
            scan: p.scan.to_string(),
            class,
            diameter_mm: p.diameter_mm,
            confusion,
            overlap,
            fp_volume_mm3,
            bad: is_bad(class, overlap.dice, fp_volume_mm3, c.bad_dice, c.bad_fp_mm3),
            score: p.score,
            needs_review: p.needs_review,
            mean_entropy,
            scores: p.scores.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            calibration_roi: Some(calibration_roi),
            calibration_roi_mean,
        });
        Ok(self.patches.last().expect("just pushed"))
    }

    pub fn patches(&self) -> &[PatchRecord] {
        &self.patches
    }

    /// The reported probability's calibration, and the mean's apart when they differ, added
    /// to the run's totals; returns the patch's own ROI sums of both. Every patch of a run
    /// must come with calibrated probabilities or none.
    fn add_calibration(
        &mut self,
        p: &PatchInput<'_>,
        roi: &[u8],
    ) -> Result<(CalibrationAccumulator, Option<CalibrationAccumulator>), MetricsError> {
        let first = self.patches.is_empty();
        if !first && p.calibrated.is_some() != self.calib_mean.is_some() {
            return Err(MetricsError::InvalidParameter(
                "some patches come with calibrated probabilities and some without".into(),
            ));
        }
        let bins = self.config.calibration_bins;
        let (reported, patch_mean_roi) = match p.calibrated {
            Some(c) => {
                check_len("calibrated probability map", p.gt.len(), c.len())?;
                let (mean_roi, mean_all) = match &mut self.calib_mean {
                    Some(m) => m,
                    None => self.calib_mean.insert((
                        CalibrationAccumulator::new(bins)?,
                        CalibrationAccumulator::new(bins)?,
                    )),
                };
                mean_roi.add_patch(p.gt, p.prob, Some(roi))?;
                mean_all.add_patch(p.gt, p.prob, None)?;
                let mut patch_roi = CalibrationAccumulator::new(bins)?;
                patch_roi.add_patch(p.gt, p.prob, Some(roi))?;
                (c, Some(patch_roi))
            }
            None => (p.prob, None),
        };
        // The totals are summed voxel by voxel, in the order of the calibration fit's own sums
        // (it compares with them exactly); the per-patch sums only feed the interval.
        let mut patch_roi = CalibrationAccumulator::new(bins)?;
        patch_roi.add_patch(p.gt, reported, Some(roi))?;
        self.calib_roi.add_patch(p.gt, reported, Some(roi))?;
        self.calib_all.add_patch(p.gt, reported, None)?;
        Ok((patch_roi, patch_mean_roi))
    }

    /// All metrics of the patches added so far.
    pub fn finish(&self) -> Result<EvalMetrics, MetricsError> {
        let confusions: Vec<(Confusion, PatchClass)> = self
            .patches
            .iter()
            .map(|p| (p.confusion, p.class))
            .collect();
        let dice: Vec<f64> = self.patches.iter().map(|p| p.overlap.dice).collect();
        let scores: Vec<f32> = self.patches.iter().map(|p| p.score).collect();
        let flags: Vec<bool> = self.patches.iter().map(|p| p.needs_review).collect();
        let bad: Vec<bool> = self.patches.iter().map(|p| p.bad).collect();
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
            calibration_roi_mean: self.calib_mean.as_ref().map(|m| m.0.summary()),
            calibration_all_mean: self.calib_mean.as_ref().map(|m| m.1.summary()),
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
            review: review_confusion(&bad, &flags)?,
            headline: records_headline(&self.patches, &self.config.record_stats())?,
            review_scores: records_review_scores(&self.patches, &self.config.record_stats())?,
            patches: self.patches.clone(),
        })
    }
}
