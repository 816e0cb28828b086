//! The statistics that need only the per-patch records of an evaluation (`PatchRecord`):
//! the headline's means and rates with their by-scan intervals, and each review score judged
//! at the referral budget. `evaluate` computes them from its accumulator, `pool-reports`
//! from the records of several reports; the ROI ECE needs the per-patch calibration sums
//! only the accumulator holds, so it is not among them.

use super::accumulate::{EvalConfig, Headline, PatchRecord, SizeRow, SIZE_BINS_MM};
use super::bootstrap::{bootstrap_by_group, group_ids, mean_where};
use super::patch_class::PatchClass;
use super::review_scores::{evaluate_score, ScoreEvaluation};
use super::MetricsError;

/// Group index of each record by its scan (the unit the intervals resample).
pub fn scan_groups(ps: &[PatchRecord]) -> Vec<usize> {
    group_ids(&ps.iter().map(|p| p.scan.as_str()).collect::<Vec<_>>())
}

/// [`Headline`] of the records, its ROI ECE intervals `None`.
pub fn records_headline(ps: &[PatchRecord], c: &EvalConfig) -> Result<Headline, MetricsError> {
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
        ece_roi: None,
        ece_roi_mean: None,
    })
}

/// [`Headline::dice_by_size`]: nodule patches with a known diameter, binned.
fn dice_by_size(
    ps: &[PatchRecord],
    c: &EvalConfig,
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
    c: &EvalConfig,
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
