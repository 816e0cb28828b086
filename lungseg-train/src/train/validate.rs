//! Validation after each epoch, and which epoch is the best.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;

use super::batch::load_batch;
use super::loss::dice_bce;
use crate::dataset::PatchDataset;
use crate::metrics::{Confusion, PatchClass};
use crate::model::{UNet, UNetConfig};

/// Validation numbers (eval mode: running BN statistics, no dropout, no augmentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    pub loss: f64,
    /// Mean hard Dice over the nodule patches ([`PatchClass::Nodule`]; pooled Dice if there are
    /// none).
    pub dice: f64,
    /// Hard Dice pooled over all voxels.
    pub dice_pooled: f64,
}

/// Runs `model` in eval mode over the patches `idx`.
pub fn evaluate(
    model: &UNet,
    data: &PatchDataset,
    idx: &[usize],
    config: &UNetConfig,
    batch_size: usize,
    device: &Device,
) -> Result<Validation> {
    let model = model.valid();
    let (mut loss_sum, mut n) = (0.0, 0usize);
    let (mut dice_sum, mut positives) = (0.0, 0usize);
    let mut pooled = Confusion::default();
    for chunk in idx.chunks(batch_size.max(1)) {
        let batch = load_batch(data, chunk, config, None)?;
        let (x, y) = batch.tensors(device);
        let logits = model.forward(x);
        let loss = dice_bce(logits.clone(), y).total.into_scalar::<f32>();
        loss_sum += f64::from(loss) * chunk.len() as f64;
        n += chunk.len();
        let logits = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let per = logits.len() / chunk.len();
        for ((l, t), &i) in logits.chunks(per).zip(batch.mask.chunks(per)).zip(chunk) {
            let o = confusion(t, l);
            pooled.add(&o);
            if PatchClass::of(data.records[i].label == 1, o.gt_voxels()) == PatchClass::Nodule {
                dice_sum += o.dice();
                positives += 1;
            }
        }
    }
    Ok(Validation {
        loss: loss_sum / n.max(1) as f64,
        dice: if positives > 0 {
            dice_sum / positives as f64
        } else {
            pooled.dice()
        },
        dice_pooled: pooled.dice(),
    })
}

/// Voxel counts of one patch's logits against its mask (the metrics layer's definition).
pub(super) fn confusion(mask: &[f32], logits: &[f32]) -> Confusion {
    Confusion::from_logits(mask, logits).expect("logits and masks of one batch have equal sizes")
}

/// Whether validation `v` beats the best so far: a higher Dice, or the same Dice with a lower loss.
pub fn is_better(v: Validation, best_dice: f64, best_loss: f64) -> bool {
    v.dice > best_dice || (v.dice == best_dice && v.loss < best_loss)
}
