//! The bad patches by what a review score can see of them.
//!
//! A review score is a summary of the returned mask or of the probabilities around it. A nodule
//! for which no voxel is returned leaves a mask score nothing to read, so it looks like a correct
//! empty negative; counting those apart says how much of the flag's miss rate is out of any mask
//! score's reach and how much is the score's own.

use serde::{Deserialize, Serialize};

use super::{PatchClass, PatchRecord};

/// Why a bad patch ([`super::is_bad`]) is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadKind {
    /// A nodule patch with an empty mask: nothing segmented.
    EmptyNodule,
    /// A nodule patch with a mask that overlaps the nodule too little.
    PoorNodule,
    /// A patch without nodule holding a false positive.
    FalsePositive,
}

impl BadKind {
    pub const ALL: [BadKind; 3] = [
        BadKind::EmptyNodule,
        BadKind::PoorNodule,
        BadKind::FalsePositive,
    ];

    /// The kind of a bad patch; `None` for a good one (or a partial patch, never bad).
    pub fn of(p: &PatchRecord) -> Option<Self> {
        if !p.bad {
            return None;
        }
        match p.class {
            PatchClass::Nodule if p.confusion.pred_voxels() == 0 => Some(Self::EmptyNodule),
            PatchClass::Nodule => Some(Self::PoorNodule),
            PatchClass::Negative => Some(Self::FalsePositive),
            PatchClass::Partial => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::EmptyNodule => "nodule, nothing segmented",
            Self::PoorNodule => "nodule, poor mask",
            Self::FalsePositive => "no nodule, false positive",
        }
    }
}

/// The bad patches of one kind and how many of them the flag caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadKindRow {
    pub kind: BadKind,
    pub flagged: usize,
    pub not_flagged: usize,
}

/// One row per [`BadKind`], in [`BadKind::ALL`]'s order (rows of no patch included).
pub fn bad_kinds(patches: &[PatchRecord]) -> Vec<BadKindRow> {
    BadKind::ALL
        .iter()
        .map(|&kind| {
            let of_kind = patches.iter().filter(|p| BadKind::of(p) == Some(kind));
            let (flagged, not_flagged) = of_kind.fold((0, 0), |(f, n), p| {
                if p.needs_review {
                    (f + 1, n)
                } else {
                    (f, n + 1)
                }
            });
            BadKindRow {
                kind,
                flagged,
                not_flagged,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Confusion, OverlapScores};

    fn patch(class: PatchClass, tp: u64, fp: u64, bad: bool, flagged: bool) -> PatchRecord {
        PatchRecord {
            id: String::new(),
            scan: String::new(),
            class,
            diameter_mm: None,
            confusion: Confusion {
                tp,
                fp,
                fn_: 10,
                tn: 100,
            },
            overlap: OverlapScores {
                dice: 0.0,
                iou: 0.0,
                sensitivity: None,
                precision: None,
            },
            fp_volume_mm3: fp as f64,
            bad,
            score: 0.0,
            needs_review: flagged,
            mean_entropy: 0.0,
            scores: Default::default(),
            calibration_roi: None,
            calibration_roi_mean: None,
        }
    }

    #[test]
    fn counts_each_kind_with_its_flags() {
        use PatchClass::*;
        let patches = [
            patch(Nodule, 0, 0, true, false),    // empty
            patch(Nodule, 0, 0, true, true),     // empty, flagged anyway
            patch(Nodule, 0, 5, true, true),     // mask beside the nodule: poor, not empty
            patch(Nodule, 3, 0, true, false),    // poor
            patch(Nodule, 50, 0, false, true),   // good, flagged: in no row
            patch(Negative, 0, 40, true, true),  // false positive
            patch(Negative, 0, 0, false, false), // good negative
            patch(Partial, 0, 0, false, false),  // never bad
        ];
        let rows = bad_kinds(&patches);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.kind, r.flagged, r.not_flagged))
            .collect();
        assert_eq!(
            got,
            [
                (BadKind::EmptyNodule, 1, 1),
                (BadKind::PoorNodule, 1, 1),
                (BadKind::FalsePositive, 1, 0),
            ]
        );
        let total: usize = rows.iter().map(|r| r.flagged + r.not_flagged).sum();
        assert_eq!(total, patches.iter().filter(|p| p.bad).count());
    }
}
