//! Per-voxel statistics across MC samples, and the sample masks behind the structure-wise
//! measures: the reduction every backend's samples are folded through.
//!
//! Samples are folded in sample order with Welford's update in f64, so the result does not
//! depend on thread count, and identical samples give exactly zero variance and mutual
//! information (p = 0 reproduces the deterministic pass bit for bit). Entropies are in bits,
//! with `0·log 0 = 0` (no clamping needed).

pub mod masks;

use crate::error::{try_vec, Error, Result};
use crate::mask::ComponentScratch;
use crate::model::ModelConfig;
use masks::{SampleMasks, StructureMeasures};

/// Most MC samples one call may ask for (the per-sample masks are sized for it).
pub const MAX_SAMPLES: u32 = 1024;

/// Running sums for one patch.
pub(crate) struct Stats {
    n: u32,
    /// The model's mask threshold: a sample calls a voxel foreground at `p ≥ mask_threshold`.
    mask_threshold: f32,
    mean: Vec<f64>,
    m2: Vec<f64>,
    sum_h: Vec<f64>,
    masks: SampleMasks,
    /// The mean in f32 as the maps hold it, the final mask cut from it, and its component
    /// pass's buffers: kept here so that a steady-state call allocates nothing.
    mean_f32: Vec<f32>,
    final_mask: Vec<u8>,
    components: ComponentScratch,
}

/// Binary entropy in bits of a probability, computed in f64.
pub fn entropy_bits(p: f32) -> f32 {
    let p = f64::from(p).clamp(0.0, 1.0);
    let xlx = |x: f64| if x > 0.0 { x * x.log2() } else { 0.0 };
    (-(xlx(p) + xlx(1.0 - p))) as f32
}

/// Per-voxel results, in f32 as the maps store them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoxelStats {
    pub mean: f32,
    pub variance: f32,
    pub entropy: f32,
    pub mutual_info: f32,
    /// Some sample has p ≥ the mask threshold here.
    pub any_foreground: bool,
}

impl Stats {
    /// Heap bytes per voxel of the running sums `mean`, `m2` and `sum_h`, the f32 mean, the
    /// final mask and its component pass.
    const BYTES_PER_VOXEL: usize = 3 * std::mem::size_of::<f64>()
        + std::mem::size_of::<f32>()
        + 1
        + ComponentScratch::BYTES_PER_VOXEL;

    /// Heap bytes of statistics for `voxels` voxels and up to `samples` samples (the sample
    /// masks included); `None` on overflow.
    pub fn bytes(voxels: usize, samples: usize) -> Option<usize> {
        voxels
            .checked_mul(Self::BYTES_PER_VOXEL)?
            .checked_add(SampleMasks::bytes(voxels, samples)?)
    }

    /// Statistics for `voxels` voxels and up to `samples` samples.
    pub fn new(voxels: usize, samples: usize) -> Result<Stats> {
        Ok(Stats {
            n: 0,
            mask_threshold: crate::model::DEFAULT_MASK_THRESHOLD,
            mean: try_vec(voxels, "MC statistics")?,
            m2: try_vec(voxels, "MC statistics")?,
            sum_h: try_vec(voxels, "MC statistics")?,
            masks: SampleMasks::new(voxels, samples)?,
            mean_f32: try_vec(voxels, "MC statistics")?,
            final_mask: try_vec(voxels, "final mask")?,
            components: ComponentScratch::new(voxels)?,
        })
    }

    /// Forgets the samples; the next ones are masked at `p ≥ mask_threshold` (the model's
    /// `config.mask_threshold`; every call starts here).
    pub fn reset(&mut self, mask_threshold: f32) {
        self.n = 0;
        self.mask_threshold = mask_threshold;
        self.mean.fill(0.0);
        self.m2.fill(0.0);
        self.sum_h.fill(0.0);
        self.masks.reset();
    }

    /// Folds in the next sample's probabilities.
    pub fn add(&mut self, prob: &[f32]) {
        self.n += 1;
        let k = f64::from(self.n);
        for (i, &p) in prob.iter().enumerate() {
            let x = f64::from(p);
            let d = x - self.mean[i];
            self.mean[i] += d / k;
            self.m2[i] += d * (x - self.mean[i]);
            self.sum_h[i] += f64::from(entropy_bits(p));
        }
        self.masks.record(prob, self.mask_threshold);
    }

    /// Records the next sample's foreground mask as a device computed it (see
    /// [`SampleMasks::record_bits`]); its probabilities reach the sums through
    /// [`Self::load_state`].
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn record_mask_bits(&mut self, row: &[u64]) -> Result<()> {
        self.masks.record_bits(row)
    }

    /// Takes the per-voxel running sums of `n` samples computed elsewhere (a device's head
    /// kernel, Welford in f32: mean, m2, sum of H(p_s) in bits) in place of [`Self::add`]'s, for
    /// the samples whose masks [`Self::record_mask_bits`] recorded, so that the summary is the
    /// one code that the CPU's sums go through. Lengths other than the voxel count, or `n` other
    /// than the masks recorded, are a `Device` error.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn load_state(&mut self, mean: &[f32], m2: &[f32], sum_h: &[f32], n: u32) -> Result<()> {
        let voxels = self.mean.len();
        if [mean.len(), m2.len(), sum_h.len()] != [voxels; 3] {
            return Err(Error::device(format!(
                "the device returned MC state of {}, {} and {} voxels for {voxels}",
                mean.len(),
                m2.len(),
                sum_h.len()
            )));
        }
        if n as usize != self.masks.samples() {
            return Err(Error::device(format!(
                "the device folded {n} samples but returned {} sample masks",
                self.masks.samples()
            )));
        }
        let widen = |dst: &mut [f64], src: &[f32]| {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = f64::from(x);
            }
        };
        widen(&mut self.mean, mean);
        widen(&mut self.m2, m2);
        widen(&mut self.sum_h, sum_h);
        self.n = n;
        Ok(())
    }

    /// The first voxel whose running sums are not finite (a NaN probability folded in).
    pub fn first_non_finite(&self) -> Option<usize> {
        (0..self.mean.len()).find(|&i| {
            !(self.mean[i].is_finite() && self.m2[i].is_finite() && self.sum_h[i].is_finite())
        })
    }

    /// Cuts the final mask of the current mean (`crate::mask::final_mask` with `cfg`'s
    /// threshold and minimum component), marks it for [`Self::structure`], and returns its
    /// voxel count and the sum of the predictive entropy over it. `cfg` must be the model of
    /// the patch these statistics were made for.
    pub fn finish_mask(&mut self, cfg: &ModelConfig) -> Result<(u64, f64)> {
        for (m, &x) in self.mean_f32.iter_mut().zip(&self.mean) {
            *m = x as f32;
        }
        let fg = crate::mask::final_mask_with(
            cfg,
            &self.mean_f32,
            &mut self.final_mask,
            &mut self.components,
        )?;
        let mut entropy = 0f64;
        for (i, &m) in self.final_mask.iter().enumerate() {
            if m != 0 {
                entropy += f64::from(entropy_bits(self.mean_f32[i]));
                self.masks.mark_final(i);
            }
        }
        Ok((fg, entropy))
    }

    /// The structure-wise measures of the samples so far against the marked final mask.
    pub fn structure(&self) -> StructureMeasures {
        self.masks.measures()
    }

    pub fn voxel(&self, i: usize) -> VoxelStats {
        let n = f64::from(self.n.max(1));
        let mean = self.mean[i] as f32;
        let entropy = entropy_bits(mean);
        let mi = (f64::from(entropy) - self.sum_h[i] / n).max(0.0);
        VoxelStats {
            mean,
            variance: (self.m2[i] / n).max(0.0) as f32,
            entropy,
            mutual_info: mi as f32,
            any_foreground: self.masks.any(i),
        }
    }

    /// Heap bytes this holds, counted from its buffers (tests check [`Self::bytes`] with it).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        8 * (self.mean.len() + self.m2.len() + self.sum_h.len())
            + self.masks.held_bytes()
            + 4 * self.mean_f32.len()
            + self.final_mask.len()
            + self.components.held_bytes()
    }

    pub fn samples(&self) -> u32 {
        self.n
    }
}

/// Statistics of one sample set given directly (tests, and a definition in code).
pub fn voxel_stats(samples: &[f32]) -> VoxelStats {
    let mut s = Stats::new(1, samples.len()).expect("one voxel's statistics");
    s.reset(crate::model::DEFAULT_MASK_THRESHOLD);
    for &p in samples {
        s.add(&[p]);
    }
    s.voxel(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums loaded from a device (f32) give the voxel statistics that folding the same samples
    /// on the host gives, to f32 precision; state that does not fit the call is refused.
    #[test]
    fn loaded_state_reads_as_the_folded_samples() {
        let samples = [[0.9f32, 0.2, 0.5], [0.7, 0.1, 0.4], [0.95, 0.3, 0.45]];
        let mut host = Stats::new(3, 3).unwrap();
        let mut dev = Stats::new(3, 3).unwrap();
        let (mut mean, mut m2, mut sum_h) = ([0f32; 3], [0f32; 3], [0f32; 3]);
        for (s, p) in samples.iter().enumerate() {
            host.add(p);
            let mut row = 0u64;
            for (i, &x) in p.iter().enumerate() {
                let k = (s + 1) as f32;
                let d = x - mean[i];
                mean[i] += d / k;
                m2[i] += d * (x - mean[i]);
                sum_h[i] += entropy_bits(x);
                row |= u64::from(x >= 0.5) << i;
            }
            dev.record_mask_bits(&[row]).unwrap();
        }
        dev.load_state(&mean, &m2, &sum_h, 3).unwrap();
        assert_eq!(dev.samples(), 3);
        assert_eq!(dev.first_non_finite(), None);
        for i in 0..3 {
            let (a, b) = (dev.voxel(i), host.voxel(i));
            assert!((a.mean - b.mean).abs() < 1e-6, "{a:?} {b:?}");
            assert!((a.variance - b.variance).abs() < 1e-6, "{a:?} {b:?}");
            assert!((a.mutual_info - b.mutual_info).abs() < 1e-5, "{a:?} {b:?}");
            assert_eq!(a.any_foreground, b.any_foreground);
        }
        assert_eq!(dev.structure(), host.structure());
        let e = dev.load_state(&mean, &m2, &sum_h, 2).unwrap_err();
        assert!(e.message.contains("folded 2 samples but returned 3"), "{e}");
        let e = dev.load_state(&mean[..2], &m2, &sum_h, 3).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Device);
        let nan = [0.5, f32::NAN, 0.5];
        dev.load_state(&mean, &m2, &nan, 3).unwrap();
        assert_eq!(dev.first_non_finite(), Some(1));
    }
}
