//! Two models on the same patches, compared patch by patch.
//!
//! Each model's own interval on 40 scans spans ±0.08 of mean Dice, so two models' intervals
//! overlap even when one is better on most patches; a patch's difficulty is shared by both
//! models, and the paired difference removes it. The interval resamples scans, as every
//! interval of the evaluation does ([`super::bootstrap`]).

use std::collections::HashMap;

use super::bootstrap::{bootstrap_by_group, group_ids, mean_where, BootstrapConfig, Interval};
use super::patch_class::PatchClass;
use super::{MetricsError, PatchRecord};

/// Mean Dice over the nodule patches of each model, and their paired difference
/// (candidate − baseline) with its by-scan bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedDice {
    pub candidate: f64,
    pub baseline: f64,
    pub difference: Interval,
    pub nodule_patches: usize,
}

/// The paired difference of mean Dice over nodule patches. Both lists must hold the same
/// patches (by id, each of the same scan and [`PatchClass`]), in any order.
pub fn paired_dice(
    candidate: &[PatchRecord],
    baseline: &[PatchRecord],
    cfg: &BootstrapConfig,
) -> Result<PairedDice, MetricsError> {
    let pairs = match_patches(candidate, baseline)?;
    let nodules: Vec<_> = pairs
        .iter()
        .filter(|(c, _)| c.class == PatchClass::Nodule)
        .collect();
    let scans: Vec<&str> = nodules.iter().map(|(c, _)| c.scan.as_str()).collect();
    let dice = |i: usize| (nodules[i].0.overlap.dice, nodules[i].1.overlap.dice);
    let all: Vec<usize> = (0..nodules.len()).collect();
    let difference = bootstrap_by_group(&group_ids(&scans), cfg, |idx| {
        mean_where(idx, |_| true, |i| dice(i).0 - dice(i).1)
    })?
    .ok_or_else(|| MetricsError::InvalidParameter("no nodule patch to compare".into()))?;
    Ok(PairedDice {
        candidate: mean_where(&all, |_| true, |i| dice(i).0).unwrap_or(0.0),
        baseline: mean_where(&all, |_| true, |i| dice(i).1).unwrap_or(0.0),
        difference,
        nodule_patches: nodules.len(),
    })
}

/// Each candidate patch with the baseline's record of the same id.
fn match_patches<'a>(
    candidate: &'a [PatchRecord],
    baseline: &'a [PatchRecord],
) -> Result<Vec<(&'a PatchRecord, &'a PatchRecord)>, MetricsError> {
    let mismatch = |why: String| MetricsError::InvalidParameter(format!("reports differ: {why}"));
    if candidate.len() != baseline.len() {
        return Err(mismatch(format!(
            "{} patches against {}",
            candidate.len(),
            baseline.len()
        )));
    }
    let by_id: HashMap<&str, &PatchRecord> = baseline.iter().map(|p| (p.id.as_str(), p)).collect();
    candidate
        .iter()
        .map(|c| {
            let b = by_id
                .get(c.id.as_str())
                .ok_or_else(|| mismatch(format!("patch {} only in the candidate", c.id)))?;
            if b.scan != c.scan || b.class != c.class {
                return Err(mismatch(format!("patch {} is not the same patch", c.id)));
            }
            Ok((c, *b))
        })
        .collect()
}
