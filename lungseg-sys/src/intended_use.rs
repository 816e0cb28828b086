//! The scans a model is meant for. A model trained on thin-slice CT has not seen what a 5 mm
//! slice does to a small nodule or to a vessel cut obliquely (docs/model-stages.md, "Thick
//! slices"): its masks degrade there while its uncertainty need not grow, so its score alone
//! does not send such a scan to a radiologist. Cleared nodule tools state the slice thickness
//! they accept for the same reason. A model file names the coarsest voxel spacing it is meant
//! for (`config.max_scan_spacing_mm`, format version 8); a patch predicted at a point of a
//! scan coarser than that along any axis is flagged for review whatever its score. What is
//! judged is the scan's resolution (`Volume::resolution_mm`): its spacing, or along the slice
//! axis its slice thickness where the source states a coarser one, because a 5 mm
//! reconstruction stored every 2.5 mm blurs a small nodule as a 5 mm one does.
//!
//! Only calls that know the scan apply it (a point of a volume: `lungseg_predict_uncertainty_at`,
//! the batch, `lungseg-train predict`); a patch passed from memory has no scan, so its host
//! states the scan's resolution (`lungseg_mc_options.scan_resolution_mm`) or checks the scan
//! once with `lungseg_model_admits_volume`.

use crate::mc::PatchSummary;
use crate::model::ModelConfig;

/// Spacing above the limit by no more than this (mm) is admitted: header values are rounded
/// (a 2.5 mm series may say 2.5000001), and no scanner reconstructs slices 1 µm apart.
pub const SPACING_TOLERANCE_MM: f64 = 1e-3;

/// The coarsest voxel spacing a model admits; 0 admits every scan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IntendedUse {
    pub max_spacing_mm: f64,
}

impl IntendedUse {
    /// The model's setting (`config.max_scan_spacing_mm`).
    pub fn of(config: &ModelConfig) -> IntendedUse {
        IntendedUse {
            max_spacing_mm: config.max_scan_spacing_mm,
        }
    }

    /// Whether a scan of `resolution` (mm per index axis: `Volume::resolution_mm`, or the
    /// voxel spacing where no thickness is known) is one the model is meant for: no axis
    /// coarser than the limit (by more than [`SPACING_TOLERANCE_MM`]).
    pub fn admits(&self, resolution: [f64; 3]) -> bool {
        self.max_spacing_mm == 0.0
            || resolution
                .iter()
                .all(|&s| s <= self.max_spacing_mm + SPACING_TOLERANCE_MM)
    }

    /// Flags `summary` for review when its scan (`resolution`) is outside the intended use.
    pub fn apply(&self, resolution: [f64; 3], summary: &mut PatchSummary) {
        if !self.admits(resolution) {
            summary.outside_intended_use = true;
            summary.needs_review = true;
        }
    }

    /// Why a scan of `resolution` is outside the intended use, for logs and messages.
    pub fn describe(&self, resolution: [f64; 3]) -> String {
        format!(
            "the scan's resolution ({:.3}, {:.3}, {:.3}) mm (voxel spacing, or the slice \
             thickness where coarser) is coarser than the {:.3} mm the model is meant for \
             (config.max_scan_spacing_mm): every patch is flagged for review",
            resolution[0], resolution[1], resolution[2], self.max_spacing_mm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_admits_every_scan() {
        assert!(IntendedUse::default().admits([0.7, 0.7, 10.0]));
    }

    #[test]
    fn any_axis_coarser_than_the_limit_is_outside() {
        let u = IntendedUse {
            max_spacing_mm: 2.5,
        };
        assert!(u.admits([0.7, 0.7, 2.5]));
        assert!(u.admits([0.7, 0.7, 2.5 + 0.5 * SPACING_TOLERANCE_MM]));
        assert!(!u.admits([0.7, 0.7, 2.5 + 2.0 * SPACING_TOLERANCE_MM]));
        assert!(!u.admits([3.0, 0.7, 1.0]), "an axis other than z");
        assert!(!u.admits([0.7, 0.7, 5.0]));
    }
}
