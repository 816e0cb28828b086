//! Batches as host arrays: patches read, HU-normalised and augmented.

use anyhow::{ensure, Result};
use burn::tensor::{Device, Tensor, TensorData};

use super::augment::{augment, augmented_shape, AugmentConfig};
use super::rng::Rng;
use crate::dataset::PatchDataset;
use crate::model::UNetConfig;

/// A batch as host arrays: normalised images and 0/1 masks, `[B, 1, D, H, W]`.
pub struct Batch {
    pub shape: [usize; 5],
    pub image: Vec<f32>,
    pub mask: Vec<f32>,
}

impl Batch {
    /// Patches `start..end` of the batch.
    pub fn slice(&self, start: usize, end: usize) -> Batch {
        let per: usize = self.shape[1..].iter().product();
        let mut shape = self.shape;
        shape[0] = end - start;
        Batch {
            shape,
            image: self.image[start * per..end * per].to_vec(),
            mask: self.mask[start * per..end * per].to_vec(),
        }
    }

    pub fn tensors(&self, device: &Device) -> (Tensor<5>, Tensor<5>) {
        let x = Tensor::from_data(TensorData::new(self.image.clone(), self.shape), device);
        let y = Tensor::from_data(TensorData::new(self.mask.clone(), self.shape), device);
        (x, y)
    }
}

/// A training crop must fit the patch and halve evenly at every pooling of the U-Net.
pub(super) fn check_crop(aug: Option<&AugmentConfig>, config: &UNetConfig) -> Result<()> {
    let Some(edge) = aug.and_then(|a| a.crop) else {
        return Ok(());
    };
    let step = 1usize << (config.channels.len() - 1);
    ensure!(
        edge > 0 && edge.is_multiple_of(step),
        "--crop {edge} must be a positive multiple of {step} (2^(levels-1) for {} levels)",
        config.channels.len()
    );
    ensure!(
        config.patch_size.iter().all(|&n| edge <= n),
        "--crop {edge} is larger than the patches {:?}",
        config.patch_size
    );
    Ok(())
}

/// Reads, normalises and (optionally) augments the patches `idx` into one batch.
pub fn load_batch(
    data: &PatchDataset,
    idx: &[usize],
    config: &UNetConfig,
    aug: Option<(&AugmentConfig, &mut Rng)>,
) -> Result<Batch> {
    let shape = data.records[idx[0]].shape;
    let mut image = Vec::with_capacity(idx.len() * shape.iter().product::<usize>());
    let mut mask = Vec::with_capacity(image.capacity());
    let mut aug = aug;
    let out_shape = aug
        .as_ref()
        .map_or(shape, |(cfg, _)| augmented_shape(cfg, shape));
    for &i in idx {
        let p = data.load(i)?;
        ensure!(
            p.shape == shape,
            "patch {} has shape {:?}, the batch {:?}",
            data.records[i].id,
            p.shape,
            shape
        );
        let img: Vec<f32> = p.hu.iter().map(|&h| config.normalize_hu(h)).collect();
        let (img, m) = match aug.as_mut() {
            Some((cfg, rng)) => augment(&img, &p.mask, shape, cfg, rng),
            None => (img, p.mask),
        };
        image.extend_from_slice(&img);
        mask.extend(m.iter().map(|&v| f32::from(v)));
    }
    Ok(Batch {
        shape: [idx.len(), 1, out_shape[0], out_shape[1], out_shape[2]],
        image,
        mask,
    })
}
