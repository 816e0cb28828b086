//! Evaluation metrics for nodule segmentation with MC-dropout uncertainty.
//!
//! Every metric here is a pure function (or a streaming accumulator) on flat voxel
//! arrays, so the `evaluate` command only has to run the engine and feed patches in.
//! Conventions shared by all modules:
//! - masks are `u8`, any non-zero value is foreground;
//! - a voxel is *predicted* foreground when its mean MC probability `p >= fg_threshold`
//!   (the model's mask threshold; 0.5 by default, [`DEFAULT_FG_THRESHOLD`]) and its
//!   26-connected component holds at least `min_component_mm3` or comes closer than
//!   `min_component_spare_radius_mm` to the patch centre (the model's; 0 and 0 by default):
//!   [`predicted_mask`], the library's final mask;
//! - a voxel is an *error* when the prediction differs from the ground truth;
//! - uncertainty maps are in their natural units: entropy and mutual information in
//!   bits (binary case, in `[0, 1]`), variance of the probability (in `[0, 0.25]`).

pub mod accumulate;
pub mod bad_kinds;
pub mod bootstrap;
pub mod calibration;
pub mod morphology;
pub mod negative_cost;
pub mod overlap;
pub mod paired;
pub mod patch_class;
pub mod records;
pub mod referral;
pub mod review_scores;
pub mod uncertainty;

pub use accumulate::{
    predicted_mask, roi_mask, EvalAccumulator, EvalConfig, EvalMetrics, PatchInput,
};
pub use bad_kinds::{bad_kinds, BadKind, BadKindRow};
pub use bootstrap::{BootstrapConfig, Interval};
pub use calibration::{CalibrationAccumulator, CalibrationSummary, ReliabilityBin};
pub use negative_cost::NegativeCost;
pub use overlap::{Confusion, MeanOverlap, OverlapScores, OverlapSummary};
pub use paired::{paired_dice, PairedDice};
pub use patch_class::PatchClass;
pub use records::{
    records_headline, records_review_scores, scan_groups, Headline, PatchRecord, RecordStats,
    SizeRow, SIZE_BINS_MM,
};
pub use referral::{
    referral_curve, review_confusion, threshold_for_refer_fraction, ReferralCurve, ReferralPoint,
    ReviewConfusion,
};
pub use review_scores::{is_bad, ScoreEvaluation};
pub use uncertainty::{auroc_exact, Auroc, ScoreHistogram, UncertaintyMeasure};

/// Probability at or above which a voxel counts as predicted foreground, for a model that does
/// not name its own mask threshold (lungseg-sys owns the value).
pub const DEFAULT_FG_THRESHOLD: f32 = lungseg::model::DEFAULT_MASK_THRESHOLD;

/// Errors from metric inputs that do not fit together.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    /// Two arrays that must describe the same voxels have different lengths.
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A parameter outside its documented range.
    InvalidParameter(String),
}

impl std::fmt::Display for MetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsError::LengthMismatch {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected {expected} voxels, got {got}"),
            MetricsError::InvalidParameter(m) => write!(f, "invalid parameter: {m}"),
        }
    }
}

impl std::error::Error for MetricsError {}

/// `Ok` when an array has the expected number of voxels, else a [`MetricsError::LengthMismatch`].
pub fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MetricsError> {
    if expected == got {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}
