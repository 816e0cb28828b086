//! What a patch stands for in every Dice, false-positive and review statistic.
//!
//! Patches are cut around points: an annotated nodule (the dataset's `label` 1) or a
//! candidate or random point (`label` 0). A patch cut around a nodule answers "how well is
//! this nodule outlined"; a patch cut elsewhere answers "is anything called a nodule here".
//! A patch cut elsewhere can still hold part of a nodule near its border: typically a sliver
//! of a nodule whose centre lies outside the patch, which the nodule's own patch outlines in
//! full. Counting such a patch as a nodule patch scores the sliver (often a few voxels at the
//! border, Dice 0) as a missed nodule; counting it as a negative scores the nodule as a false
//! positive. It is neither: it is [`PatchClass::Partial`], kept out of the nodule Dice, the
//! negatives' false-positive volume and the bad patches, and reported on its own line.

use serde::{Deserialize, Serialize};

/// The role of one patch in the statistics; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchClass {
    /// Cut around an annotated nodule whose ground truth has foreground: scored by Dice.
    Nodule,
    /// Ground truth without foreground: scored by its false-positive volume.
    Negative,
    /// Cut elsewhere, ground truth holding part of a nodule: reported apart.
    Partial,
}

impl PatchClass {
    /// The class of a patch cut around an annotated nodule (`centred_on_nodule`) or not, whose
    /// ground truth has `gt_voxels` foreground voxels. A nodule patch whose ground truth is
    /// empty (a nodule too small to leave a voxel at the patch's spacing) is a negative: there
    /// is nothing to outline, and anything predicted is a false positive.
    pub fn of(centred_on_nodule: bool, gt_voxels: u64) -> Self {
        match (centred_on_nodule, gt_voxels > 0) {
            (_, false) => PatchClass::Negative,
            (true, true) => PatchClass::Nodule,
            (false, true) => PatchClass::Partial,
        }
    }
}
