//! Per-voxel statistics across MC samples, and the sample masks behind the structure-wise
//! measures: the reduction every backend's samples are folded through.
//!
//! Samples are folded in sample order with Welford's update in f64, so the result does not
//! depend on thread count, and identical samples give exactly zero variance and mutual
//! information (p = 0 reproduces the deterministic pass bit for bit). Entropies are in bits,
//! with `0·log 0 = 0` (no clamping needed).

pub mod masks;

use crate::error::{try_vec, Result};
use masks::{SampleMasks, StructureMeasures};

/// Most MC samples one call may ask for (the per-sample masks are sized for it).
pub const MAX_SAMPLES: u32 = 1024;

/// Running sums for one patch.
pub(crate) struct Stats {
    n: u32,
    mean: Vec<f64>,
    m2: Vec<f64>,
    sum_h: Vec<f64>,
    masks: SampleMasks,
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
    /// Some sample has p ≥ 0.5 here.
    pub any_foreground: bool,
}

impl Stats {
    /// Heap bytes per voxel of the running sums `mean`, `m2` and `sum_h`.
    const BYTES_PER_VOXEL: usize = 3 * std::mem::size_of::<f64>();

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
            mean: try_vec(voxels, "MC statistics")?,
            m2: try_vec(voxels, "MC statistics")?,
            sum_h: try_vec(voxels, "MC statistics")?,
            masks: SampleMasks::new(voxels, samples)?,
        })
    }

    pub fn reset(&mut self) {
        self.n = 0;
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
        self.masks.record(prob);
    }

    /// Puts voxel `i` into the final mask (mean ≥ 0.5) that [`Self::structure`] compares with.
    pub fn mark_final(&mut self, i: usize) {
        self.masks.mark_final(i);
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
        8 * (self.mean.len() + self.m2.len() + self.sum_h.len()) + self.masks.held_bytes()
    }

    pub fn samples(&self) -> u32 {
        self.n
    }
}

/// Statistics of one sample set given directly (tests, and a definition in code).
pub fn voxel_stats(samples: &[f32]) -> VoxelStats {
    let mut s = Stats::new(1, samples.len()).expect("one voxel's statistics");
    for &p in samples {
        s.add(&[p]);
    }
    s.voxel(0)
}
