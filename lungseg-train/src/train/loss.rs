//! Dice + BCE on logits, and the hard Dice used as a metric.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

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
}

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

/// Mean of `1 − softDice` over the patches of the batch whose target has foreground.
fn per_patch_dice_loss(p: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
    let [b, c, d, h, w] = p.dims();
    let n = c * d * h * w;
    let (p, t) = (p.reshape([b, n]), target.reshape([b, n]));
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let denom = p.sum_dim(1) + t.clone().sum_dim(1);
    let has = t.sum_dim(1).greater_elem(0.0).float();
    let count = has.clone().sum().clamp_min(1.0);
    let loss = (soft_dice(inter, denom).neg().add_scalar(1.0) * has).sum();
    loss.div(count)
}
