//! Dice + BCE on logits, and the hard Dice used as a metric.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::metrics::review_scores::DEFAULT_BAD_FP_MM3;

/// Additive smoothing of the soft Dice: keeps the loss finite and near 0 on empty masks.
pub const DICE_SMOOTH: f64 = 1.0;

/// The two loss terms and their sum, each a one-element tensor.
pub struct Loss {
    pub total: Tensor<1>,
    pub bce: Tensor<1>,
    pub dice: Tensor<1>,
}

/// How the soft Dice term of [`dice_bce_with`] treats a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DiceLoss {
    /// One ratio over the whole batch: negatives with empty masks cannot dominate it, but a
    /// large lesion in the batch outweighs a small one by its volume.
    #[default]
    Pooled,
    /// The mean of one ratio per patch that has foreground: every nodule counts once, as in
    /// the evaluation's mean Dice over nodule patches; patches without foreground are left to
    /// BCE (0 when the batch has none).
    PerPatch,
    /// The mean over every patch of the batch: `1 − softDice` on a patch with foreground, as
    /// [`DiceLoss::PerPatch`], and the soft false-positive fraction `S / (S + V₀)` on a patch
    /// without (`S` = Σσ, `V₀` = [`NEGATIVE_FP_SCALE_VOXELS`]), so that a blob on a negative
    /// patch costs up to what a missed nodule costs, which the per-patch Dice never charges.
    /// It trades missed small nodules for fewer blobs (docs/model-stages.md, stage 8).
    PerPatchFp,
}

/// `V₀` of [`DiceLoss::PerPatchFp`]: the false-positive volume that makes a negative patch
/// bad in the evaluation ([`DEFAULT_BAD_FP_MM3`]), in voxels of the default model's 1 mm
/// patches. A blob of that volume costs a negative patch 0.5, as a nodule segmented at
/// Dice 0.5 costs its patch.
pub const NEGATIVE_FP_SCALE_VOXELS: f64 = DEFAULT_BAD_FP_MM3;

/// [`dice_bce_with`] with the pooled Dice.
pub fn dice_bce(logits: Tensor<5>, target: Tensor<5>) -> Loss {
    dice_bce_with(logits, target, DiceLoss::Pooled)
}

/// `BCE(logits, y) + (1 − softDice(σ(logits), y))`, the Dice term pooled or per patch
/// ([`DiceLoss`]).
///
/// BCE is the mean over voxels, written with `log σ` so large logits cannot overflow.
pub fn dice_bce_with(logits: Tensor<5>, target: Tensor<5>, kind: DiceLoss) -> Loss {
    let bce = -(target.clone() * log_sigmoid(logits.clone())
        + (target.clone().neg().add_scalar(1.0)) * log_sigmoid(logits.clone().neg()))
    .mean();
    let p = sigmoid(logits);
    let dice = match kind {
        DiceLoss::Pooled => {
            let inter = (p.clone() * target.clone()).sum();
            let denom = p.sum() + target.sum();
            soft_dice(inter, denom).neg().add_scalar(1.0)
        }
        DiceLoss::PerPatch => per_patch_dice_loss(p, target),
        DiceLoss::PerPatchFp => per_patch_fp_loss(p, target),
    };
    Loss {
        total: bce.clone() + dice.clone(),
        bce,
        dice,
    }
}

/// `(2·inter + s) / (denom + s)`, elementwise.
fn soft_dice<const D: usize>(inter: Tensor<D>, denom: Tensor<D>) -> Tensor<D> {
    inter
        .mul_scalar(2.0)
        .add_scalar(DICE_SMOOTH)
        .div(denom.add_scalar(DICE_SMOOTH))
}

/// Per patch (`[b]`): the intersection, `Σσ + Σy`, `Σσ`, and 1 where the target has
/// foreground.
struct PatchSums {
    inter: Tensor<1>,
    denom: Tensor<1>,
    pred: Tensor<1>,
    has: Tensor<1>,
}

fn patch_sums(p: Tensor<5>, target: Tensor<5>) -> PatchSums {
    let [b, c, d, h, w] = p.dims();
    let n = c * d * h * w;
    let (p, t) = (p.reshape([b, n]), target.reshape([b, n]));
    let inter = (p.clone() * t.clone()).sum_dim(1).reshape([b]);
    let pred = p.sum_dim(1).reshape([b]);
    let truth = t.sum_dim(1).reshape([b]);
    PatchSums {
        inter,
        denom: pred.clone() + truth.clone(),
        pred,
        has: truth.greater_elem(0.0).float(),
    }
}

/// Mean over all patches of `1 − softDice` where the target has foreground and
/// `S / (S + V₀)` where it has none ([`DiceLoss::PerPatchFp`]).
fn per_patch_fp_loss(p: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
    let s = patch_sums(p, target);
    let positive = soft_dice(s.inter, s.denom).neg().add_scalar(1.0);
    let negative = s
        .pred
        .clone()
        .div(s.pred.add_scalar(NEGATIVE_FP_SCALE_VOXELS));
    let empty = s.has.clone().neg().add_scalar(1.0);
    (positive * s.has + negative * empty).mean()
}

/// Mean of `1 − softDice` over the patches of the batch whose target has foreground.
fn per_patch_dice_loss(p: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
    let s = patch_sums(p, target);
    let count = s.has.clone().sum().clamp_min(1.0);
    let loss = (soft_dice(s.inter, s.denom).neg().add_scalar(1.0) * s.has).sum();
    loss.div(count)
}
