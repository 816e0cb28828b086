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

/// Overlap counts of a binarised prediction (`logit > 0`, i.e. p > 0.5) and a 0/1 target.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overlap {
    pub tp: u64,
    pub pred: u64,
    pub truth: u64,
}

impl Overlap {
    pub fn count(logits: &[f32], target: &[f32]) -> Self {
        let mut o = Overlap::default();
        for (&l, &t) in logits.iter().zip(target) {
            let p = l > 0.0;
            let g = t > 0.5;
            o.tp += u64::from(p && g);
            o.pred += u64::from(p);
            o.truth += u64::from(g);
        }
        o
    }

    pub fn add(&mut self, other: Overlap) {
        self.tp += other.tp;
        self.pred += other.pred;
        self.truth += other.truth;
    }

    /// `2·TP / (|P| + |G|)`; 1 when both are empty.
    pub fn dice(&self) -> f64 {
        let d = self.pred + self.truth;
        if d == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }
}
