//! What an evaluation keeps of each patch ([`PatchRecord`]) and the statistics that need
//! nothing else: the headline's means and rates with their by-scan intervals, and each review
//! score judged at the referral budget. `evaluate` computes them from its accumulator,
//! `pool-reports` from the records of several reports (the ROI ECE where every record keeps
//! its calibration sums).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bootstrap::{bootstrap_by_group, group_ids, mean_where, BootstrapConfig, Interval};
use super::calibration::CalibrationAccumulator;
use super::overlap::{Confusion, OverlapScores};
use super::patch_class::PatchClass;
use super::review_scores::{evaluate_score, ScoreEvaluation};
use super::MetricsError;

/// What is kept of one patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub id: String,
    pub scan: String,
    pub class: PatchClass,
    pub diameter_mm: Option<f64>,
    pub confusion: Confusion,
    pub overlap: OverlapScores,
    /// Predicted foreground outside the ground truth, mm³.
    pub fp_volume_mm3: f64,
    /// See [`super::review_scores::is_bad`].
    pub bad: bool,
    pub score: f32,
    pub needs_review: bool,
    /// Mean predictive entropy over the patch (bits).
    pub mean_entropy: f64,
    pub scores: BTreeMap<String, f32>,
    /// The patch's calibration sums of the reported probabilities in the ROI (the by-scan
    /// interval of the ROI ECE merges them; absent from reports written without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_roi: Option<CalibrationAccumulator>,
    /// The same for the MC mean, where a probability map gave the reported probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_roi_mean: Option<CalibrationAccumulator>,
}

/// The numbers a reader looks at first, each with its by-scan bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// Mean Dice over every nodule patch ([`PatchClass::Nodule`]).
    pub dice_nodules: Option<Interval>,
    pub iou_nodules: Option<Interval>,
    /// Mean Dice over nodule patches with diameter ≥ `min_diameter_mm`.
    pub dice_nodules_sized: Option<Interval>,
    pub min_diameter_mm: f64,
    pub n_nodule_patches: usize,
    /// Nodule patches with diameter ≥ `min_diameter_mm` (those of `dice_nodules_sized`).
    #[serde(default)]
    pub n_sized_patches: usize,
    pub n_negative_patches: usize,
    /// Mean false-positive volume on patches without nodule ([`PatchClass::Negative`]), mm³.
    pub fp_volume_negatives_mm3: Option<Interval>,
    /// Patches cut elsewhere that hold part of a nodule ([`PatchClass::Partial`]): in none of
    /// the statistics above, reported here.
    #[serde(default)]
    pub n_partial_patches: usize,
    /// Mean Dice over the [`PatchClass::Partial`] patches.
    #[serde(default)]
    pub dice_partial: Option<Interval>,
    pub n_bad: usize,
    /// Share of bad patches the engine's review flag catches.
    pub flag_catch_rate: Option<Interval>,
    /// Share of all patches the flag refers.
    pub flag_referred_fraction: Option<Interval>,
    /// Mean Dice of the nodule patches by the nodule's diameter ([`SIZE_BINS_MM`]).
    #[serde(default)]
    pub dice_by_size: Vec<SizeRow>,
    /// ECE in the ROI of the reported probabilities (`EvalMetrics::calibration_roi`), the
    /// bins' sums resampled by scan: a few scans with large, partly missed lesions hold much
    /// of the ROI's voxels, so the ECE moves between test sets far more than its voxel count
    /// suggests.
    #[serde(default)]
    pub ece_roi: Option<Interval>,
    /// The same for the MC mean, where a probability map gave the reported probabilities.
    #[serde(default)]
    pub ece_roi_mean: Option<Interval>,
}

/// Lower edges (mm) of the nodule-size bins of [`Headline::dice_by_size`]; the last is open.
pub const SIZE_BINS_MM: [f64; 5] = [0.0, 6.0, 10.0, 20.0, 30.0];

/// Mean Dice over the nodule patches of one size bin, `lo_mm ≤ diameter < hi_mm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeRow {
    pub lo_mm: f64,
    /// `None`: no upper edge.
    pub hi_mm: Option<f64>,
    pub patches: usize,
    pub dice: Option<Interval>,
}

/// The definitions the record statistics use (`EvalConfig::record_stats`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordStats {
    pub bootstrap: BootstrapConfig,
    /// The lower diameter of [`Headline::dice_nodules_sized`].
    pub min_diameter_mm: f64,
    /// Share of patches referred when a review score is judged.
    pub refer_budget: f64,
}

/// Group index of each record by its scan (the unit the intervals resample).
pub fn scan_groups(ps: &[PatchRecord]) -> Vec<usize> {
    group_ids(&ps.iter().map(|p| p.scan.as_str()).collect::<Vec<_>>())
}

/// [`Headline`] of the records (its ROI ECE intervals `None` unless every record keeps its
/// calibration sums).
pub fn records_headline(ps: &[PatchRecord], c: &RecordStats) -> Result<Headline, MetricsError> {
    let group = scan_groups(ps);
    let boot =
        |stat: &dyn Fn(&[usize]) -> Option<f64>| bootstrap_by_group(&group, &c.bootstrap, stat);
    let is = |i: usize, class: PatchClass| ps[i].class == class;
    let nodule = |i: usize| is(i, PatchClass::Nodule);
    let negative = |i: usize| is(i, PatchClass::Negative);
    let partial = |i: usize| is(i, PatchClass::Partial);
    let count = |f: &dyn Fn(usize) -> bool| (0..ps.len()).filter(|&i| f(i)).count();
    let sized = |i: usize| nodule(i) && ps[i].diameter_mm.is_some_and(|d| d >= c.min_diameter_mm);
    let flagged_bad = |s: &[usize]| {
        mean_where(
            s,
            |i| ps[i].bad,
            |i| f64::from(u8::from(ps[i].needs_review)),
        )
    };
    Ok(Headline {
        dice_nodules: boot(&|s| mean_where(s, nodule, |i| ps[i].overlap.dice))?,
        iou_nodules: boot(&|s| mean_where(s, nodule, |i| ps[i].overlap.iou))?,
        dice_nodules_sized: boot(&|s| mean_where(s, sized, |i| ps[i].overlap.dice))?,
        min_diameter_mm: c.min_diameter_mm,
        n_nodule_patches: count(&nodule),
        n_sized_patches: count(&sized),
        n_negative_patches: count(&negative),
        fp_volume_negatives_mm3: boot(&|s| mean_where(s, negative, |i| ps[i].fp_volume_mm3))?,
        n_partial_patches: count(&partial),
        dice_partial: boot(&|s| mean_where(s, partial, |i| ps[i].overlap.dice))?,
        n_bad: ps.iter().filter(|p| p.bad).count(),
        flag_catch_rate: boot(&flagged_bad)?,
        flag_referred_fraction: boot(&|s| {
            mean_where(s, |_| true, |i| f64::from(u8::from(ps[i].needs_review)))
        })?,
        dice_by_size: dice_by_size(ps, c, &group)?,
        ece_roi: ece_interval(ps, c, &group, |p| p.calibration_roi.as_ref())?,
        ece_roi_mean: ece_interval(ps, c, &group, |p| p.calibration_roi_mean.as_ref())?,
    })
}

/// By-scan interval of the ROI ECE from the per-patch sums `of` picks: each resample's
/// patches' bins summed, then its ECE. `None` when a record lacks them.
fn ece_interval(
    ps: &[PatchRecord],
    c: &RecordStats,
    group: &[usize],
    of: impl Fn(&PatchRecord) -> Option<&CalibrationAccumulator>,
) -> Result<Option<Interval>, MetricsError> {
    let Some(sums) = ps.iter().map(&of).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let Some(bins) = sums.first().map(|s| s.bins()) else {
        return Ok(None);
    };
    if sums.iter().any(|s| s.bins() != bins) {
        return Err(MetricsError::InvalidParameter(
            "patches with calibration sums of different bins".into(),
        ));
    }
    bootstrap_by_group(group, &c.bootstrap, |s| {
        let mut acc = CalibrationAccumulator::new(bins).ok()?;
        for &i in s {
            acc.merge(sums[i]).ok()?;
        }
        acc.ece()
    })
}

/// [`Headline::dice_by_size`]: nodule patches with a known diameter, binned.
fn dice_by_size(
    ps: &[PatchRecord],
    c: &RecordStats,
    group: &[usize],
) -> Result<Vec<SizeRow>, MetricsError> {
    SIZE_BINS_MM
        .iter()
        .enumerate()
        .map(|(b, &lo_mm)| {
            let hi_mm = SIZE_BINS_MM.get(b + 1).copied();
            let inside = |i: usize| {
                ps[i].class == PatchClass::Nodule
                    && ps[i]
                        .diameter_mm
                        .is_some_and(|d| d >= lo_mm && hi_mm.is_none_or(|h| d < h))
            };
            let stat = |s: &[usize]| mean_where(s, inside, |i| ps[i].overlap.dice);
            let dice = bootstrap_by_group(group, &c.bootstrap, stat)?;
            Ok(SizeRow {
                lo_mm,
                hi_mm,
                patches: (0..ps.len()).filter(|&i| inside(i)).count(),
                dice,
            })
        })
        .collect()
}

/// Each candidate score every record names, judged at the referral budget.
pub fn records_review_scores(
    ps: &[PatchRecord],
    c: &RecordStats,
) -> Result<Vec<ScoreEvaluation>, MetricsError> {
    let Some(first) = ps.first() else {
        return Ok(Vec::new());
    };
    let group = scan_groups(ps);
    let bad: Vec<bool> = ps.iter().map(|p| p.bad).collect();
    first
        .scores
        .keys()
        .filter(|k| ps.iter().all(|p| p.scores.contains_key(*k)))
        .map(|k| {
            let s: Vec<f32> = ps.iter().map(|p| p.scores[k]).collect();
            evaluate_score(k, &s, &bad, &group, c.refer_budget, &c.bootstrap)
        })
        .collect()
}
