//! Overlap metrics between a predicted and a ground-truth mask.
//!
//! Definitions, with TP/FP/FN counted over voxels (foreground = non-zero mask, or
//! probability `>= fg_threshold`):
//! - Dice = 2·TP / (2·TP + FP + FN)
//! - IoU (Jaccard) = TP / (TP + FP + FN); note IoU = Dice / (2 − Dice), so the two agree
//!   only when both are 0 or 1. Identical Dice and IoU on real data means a bug.
//! - sensitivity (recall) = TP / (TP + FN)
//! - precision (PPV) = TP / (TP + FP)
//!
//! Empty masks (negative patches, or a missed nodule):
//! - Dice and IoU are **1** when ground truth and prediction are both empty (the model
//!   correctly found nothing) and **0** when exactly one of them is empty.
//! - sensitivity is **undefined** (`None`) when the ground truth is empty, precision is
//!   undefined when the prediction is empty. Undefined values are left out of means, and
//!   the number of patches that entered each mean is reported.
//!
//! "Pooled" scores add the counts of all patches first (one big volume, dominated by
//! large nodules); "mean of patches" averages per-patch scores (each patch weighs the same).

use serde::{Deserialize, Serialize};

use super::patch_class::PatchClass;
use super::{check_len, MetricsError};

/// Voxel confusion counts of a binary segmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl Confusion {
    /// Counts from two masks (non-zero = foreground).
    pub fn from_masks(gt: &[u8], pred: &[u8]) -> Result<Self, MetricsError> {
        check_len("prediction mask", gt.len(), pred.len())?;
        let mut c = Confusion::default();
        for (&g, &p) in gt.iter().zip(pred) {
            c.count(g != 0, p != 0);
        }
        Ok(c)
    }

    /// Counts from a ground-truth mask and a probability map thresholded at `p >= fg_threshold`.
    pub fn from_probs(gt: &[u8], prob: &[f32], fg_threshold: f32) -> Result<Self, MetricsError> {
        check_len("probability map", gt.len(), prob.len())?;
        let mut c = Confusion::default();
        for (&g, &p) in gt.iter().zip(prob) {
            c.count(g != 0, p >= fg_threshold);
        }
        Ok(c)
    }

    /// Counts from a 0/1 target (`>= 0.5` is foreground) and logits: a voxel is predicted
    /// foreground when `sigmoid(logit) >= 0.5`, i.e. `logit >= 0`, the same rule as
    /// [`super::DEFAULT_FG_THRESHOLD`] on probabilities (training-time validation uses this).
    pub fn from_logits(target: &[f32], logits: &[f32]) -> Result<Self, MetricsError> {
        check_len("logits", target.len(), logits.len())?;
        let mut c = Confusion::default();
        for (&t, &l) in target.iter().zip(logits) {
            c.count(t >= 0.5, l >= 0.0);
        }
        Ok(c)
    }

    #[inline]
    pub(crate) fn count(&mut self, gt: bool, pred: bool) {
        match (gt, pred) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// Element-wise sum (pooling over patches).
    pub fn add(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }

    pub fn gt_voxels(&self) -> u64 {
        self.tp + self.fn_
    }

    pub fn pred_voxels(&self) -> u64 {
        self.tp + self.fp
    }

    /// 2·TP / (2·TP + FP + FN); 1 when both masks are empty.
    pub fn dice(&self) -> f64 {
        let den = 2 * self.tp + self.fp + self.fn_;
        if den == 0 {
            1.0
        } else {
            (2 * self.tp) as f64 / den as f64
        }
    }

    /// TP / (TP + FP + FN); 1 when both masks are empty.
    pub fn iou(&self) -> f64 {
        let den = self.tp + self.fp + self.fn_;
        if den == 0 {
            1.0
        } else {
            self.tp as f64 / den as f64
        }
    }

    /// TP / (TP + FN); `None` when the ground truth is empty.
    pub fn sensitivity(&self) -> Option<f64> {
        ratio(self.tp, self.gt_voxels())
    }

    /// TP / (TP + FP); `None` when the prediction is empty.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.pred_voxels())
    }

    pub fn scores(&self) -> OverlapScores {
        OverlapScores {
            dice: self.dice(),
            iou: self.iou(),
            sensitivity: self.sensitivity(),
            precision: self.precision(),
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Dice, IoU, sensitivity and precision of one patch or of pooled counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlapScores {
    pub dice: f64,
    pub iou: f64,
    pub sensitivity: Option<f64>,
    pub precision: Option<f64>,
}

/// Means of per-patch scores, each over the patches where the score is defined.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanOverlap {
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    pub sensitivity: Option<f64>,
    pub precision: Option<f64>,
    /// Patches in the Dice/IoU means.
    pub n: usize,
    /// Patches with a non-empty ground truth (in the sensitivity mean).
    pub n_sensitivity: usize,
    /// Patches with a non-empty prediction (in the precision mean).
    pub n_precision: usize,
}

/// Overlap over a set of patches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlapSummary {
    /// Scores of the summed confusion counts.
    pub pooled: OverlapScores,
    pub pooled_counts: Confusion,
    /// Mean over all patches (negative patches included, with the empty-mask convention).
    pub mean_all: MeanOverlap,
    /// Mean over the nodule patches ([`PatchClass::Nodule`]).
    pub mean_positive: MeanOverlap,
}

fn mean_of<'a>(patches: impl Iterator<Item = &'a Confusion>) -> MeanOverlap {
    let (mut d, mut j, mut s, mut p) = (0.0, 0.0, 0.0, 0.0);
    let (mut n, mut ns, mut np) = (0usize, 0usize, 0usize);
    for c in patches {
        d += c.dice();
        j += c.iou();
        n += 1;
        if let Some(v) = c.sensitivity() {
            s += v;
            ns += 1;
        }
        if let Some(v) = c.precision() {
            p += v;
            np += 1;
        }
    }
    let avg = |sum: f64, k: usize| (k > 0).then(|| sum / k as f64);
    MeanOverlap {
        dice: avg(d, n),
        iou: avg(j, n),
        sensitivity: avg(s, ns),
        precision: avg(p, np),
        n,
        n_sensitivity: ns,
        n_precision: np,
    }
}

/// Pooled and mean-of-patches overlap from per-patch confusion counts and classes.
pub fn summarize_overlap(per_patch: &[(Confusion, PatchClass)]) -> OverlapSummary {
    let mut pooled = Confusion::default();
    for (c, _) in per_patch {
        pooled.add(c);
    }
    OverlapSummary {
        pooled: pooled.scores(),
        pooled_counts: pooled,
        mean_all: mean_of(per_patch.iter().map(|(c, _)| c)),
        mean_positive: mean_of(
            per_patch
                .iter()
                .filter(|(_, k)| *k == PatchClass::Nodule)
                .map(|(c, _)| c),
        ),
    }
}
