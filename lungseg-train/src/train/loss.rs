//! Dice + BCE on logits, and the hard Dice used as a metric.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::Tensor;

/// Additive smoothing of the soft Dice: keeps the loss finite and near 0 on empty masks.
pub const DICE_SMOOTH: f64 = 1.0;

/// The two loss terms and their sum, each a one-element tensor.
pub struct Loss {
    pub total: Tensor<1>,
    pub bce: Tensor<1>,
    pub dice: Tensor<1>,
}

/// `BCE(logits, y) + (1 − softDice(σ(logits), y))`.
///
/// BCE is the mean over voxels, written with `log σ` so large logits cannot overflow. The soft
/// Dice pools the whole batch (one ratio per batch, not a mean of per-patch ratios): negatives
/// with empty masks then cannot dominate it.
pub fn dice_bce(logits: Tensor<5>, target: Tensor<5>) -> Loss {
    let bce = -(target.clone() * log_sigmoid(logits.clone())
        + (target.clone().neg().add_scalar(1.0)) * log_sigmoid(logits.clone().neg()))
    .mean();
    let p = sigmoid(logits);
    let inter = (p.clone() * target.clone()).sum();
    let denom = p.sum() + target.sum();
    let dice = inter
        .mul_scalar(2.0)
        .add_scalar(DICE_SMOOTH)
        .div(denom.add_scalar(DICE_SMOOTH))
        .neg()
        .add_scalar(1.0);
    Loss {
        total: bce.clone() + dice.clone(),
        bce,
        dice,
    }
}
