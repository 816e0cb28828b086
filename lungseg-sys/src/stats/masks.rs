//! Structure-wise agreement of the MC samples (Roy et al. 2019, "Bayesian QuickNAT",
//! NeuroImage 186): each sample's foreground mask `M_s = {p_s ≥ t}` is kept as a bitset
//! (one bit per voxel, no probabilities), so that once the final mask `F = {mean ≥ t}` is
//! known the per-sample Dice against it can be counted (`t`: the model's mask threshold,
//! `config.mask_threshold`, 0.5 unless the model names another).
//!
//! Everything is integer counting folded in sample order, so the measures do not depend on the
//! thread count. Empty masks (see [`StructureMeasures`]) never read as agreement unless every
//! sample is empty: a patch where some samples see a structure and others do not is uncertain.

use crate::error::{try_vec, zeroed_vec, Error, Result};

/// Voxels per bitset word.
const BITS: usize = u64::BITS as usize;

/// Structure-wise measures of one MC prediction over its `N` sample masks `M_s` and the final
/// mask `F` (the voxels [`crate::mc::PatchSummary::foreground_voxels`] counts).
///
/// Empty masks:
/// - `Dice(M_s, F)` is 1 when both are empty (the sample agrees that nothing is there) and 0
///   when exactly one is (a sample that sees a structure the mean does not, or misses it).
/// - `iou` is 1 when every sample is empty (nothing to disagree on) and 0 when some samples
///   are foreground but no voxel is foreground in all of them.
/// - `volume_cv` is 0 when every sample is empty.
///
/// So all three say "sure" (1, 1, 0) only when the samples agree: every mask empty, or all
/// identical. An empty final mask with foreground in some samples gives `dice_agreement < 1`,
/// `iou = 0` and `volume_cv > 0`. One sample (`N = 1`) carries no spread: its measures are
/// (1, 1, 0) like the region means' zero variance.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StructureMeasures {
    /// Mean over samples of `Dice(M_s, F) = 2|M_s ∩ F| / (|M_s| + |F|)`.
    pub dice_agreement: f32,
    /// `|∩_s M_s| / |∪_s M_s|`: intersection over union of all sample masks.
    pub iou: f32,
    /// Coefficient of variation of the sample volumes: population std / mean of `|M_s|`.
    pub volume_cv: f32,
    /// `|∩_s M_s|`: voxels every sample calls foreground.
    pub intersection_voxels: u64,
    /// `|∪_s M_s|`: voxels some sample calls foreground.
    pub union_voxels: u64,
    /// Samples whose mask is empty.
    pub empty_samples: u32,
    /// Mean of `|M_s|` over samples, in voxels.
    pub sample_voxels_mean: f64,
    /// Population standard deviation of `|M_s|` over samples, in voxels.
    pub sample_voxels_std: f64,
}

/// Dice of two masks from their sizes and overlap, 1 when both are empty.
pub fn dice(overlap: u64, a: u64, b: u64) -> f64 {
    if a + b == 0 {
        1.0
    } else {
        2.0 * overlap as f64 / (a + b) as f64
    }
}

/// The sample masks of one call, for up to `capacity` samples, plus their running union and
/// intersection and the final mask.
pub(crate) struct SampleMasks {
    /// Read by [`Self::record_bits`] only (a device's rows: the CUDA backend).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    voxels: usize,
    words: usize,
    capacity: usize,
    n: usize,
    /// Row `s` (`words` long) is sample `s`'s mask; bits past the last voxel stay 0.
    rows: Vec<u64>,
    union: Vec<u64>,
    inter: Vec<u64>,
    final_mask: Vec<u64>,
    /// `|M_s|` per sample.
    volumes: Vec<u64>,
}

impl SampleMasks {
    /// Heap bytes for `voxels` voxels and `capacity` samples; `None` on overflow. The one sizing
    /// [`SampleMasks::new`] and the open-time workspace limit share.
    pub fn bytes(voxels: usize, capacity: usize) -> Option<usize> {
        let words = voxels.div_ceil(BITS);
        let rows = capacity.checked_add(3)?.checked_mul(words)?;
        rows.checked_add(capacity)?
            .checked_mul(std::mem::size_of::<u64>())
    }

    pub fn new(voxels: usize, capacity: usize) -> Result<SampleMasks> {
        let words = voxels.div_ceil(BITS);
        let rows = capacity
            .checked_mul(words)
            .ok_or_else(|| crate::error::Error::oom("sample masks overflow"))?;
        // Fresh zero pages: only the rows of the samples a call asks for become resident.
        let rows = zeroed_vec(rows).ok_or_else(|| {
            crate::error::Error::oom(format!("cannot allocate {rows} words for sample masks"))
        })?;
        Ok(SampleMasks {
            voxels,
            words,
            capacity,
            n: 0,
            rows,
            union: try_vec(words, "sample masks")?,
            inter: try_vec(words, "sample masks")?,
            final_mask: try_vec(words, "sample masks")?,
            volumes: try_vec(capacity, "sample volumes")?,
        })
    }

    /// Forgets the samples and the final mask. Rows are overwritten whole by [`Self::record`].
    pub fn reset(&mut self) {
        self.n = 0;
        self.union.fill(0);
        self.inter.fill(0);
        self.final_mask.fill(0);
    }

    /// Records the next sample's mask `p ≥ threshold`. Panics past `capacity` samples
    /// (callers bound the sample count first).
    pub fn record(&mut self, prob: &[f32], threshold: f32) {
        assert!(self.n < self.capacity, "more samples than mask rows");
        let s = self.n;
        let row = &mut self.rows[s * self.words..(s + 1) * self.words];
        for (w, chunk) in prob.chunks(BITS).enumerate() {
            row[w] = chunk
                .iter()
                .enumerate()
                .fold(0u64, |acc, (b, &p)| acc | (u64::from(p >= threshold) << b));
        }
        self.fold_row();
    }

    /// Folds the row of the next sample, written in place, into the union, the intersection
    /// and the volumes, and counts the sample.
    fn fold_row(&mut self) {
        let s = self.n;
        let row = &self.rows[s * self.words..(s + 1) * self.words];
        let mut volume = 0u64;
        for (w, &bits) in row.iter().enumerate() {
            volume += u64::from(bits.count_ones());
            self.union[w] |= bits;
            self.inter[w] = if s == 0 { bits } else { self.inter[w] & bits };
        }
        self.volumes[s] = volume;
        self.n += 1;
    }

    /// Records the next sample's mask given as a bitset row (`words` u64 words, bit `i % 64` of
    /// word `i / 64` = voxel `i`), as a device computes it: the same update as [`Self::record`].
    /// A row of another length, bits set past the last voxel, or more rows than `capacity` are
    /// a `Device` error (the only source of such rows is a device), and record nothing.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn record_bits(&mut self, row: &[u64]) -> Result<()> {
        if self.n >= self.capacity {
            return Err(Error::device(format!(
                "the device returned more than {} sample masks",
                self.capacity
            )));
        }
        if row.len() != self.words {
            return Err(Error::device(format!(
                "the device returned a mask row of {} words for {} words of voxels",
                row.len(),
                self.words
            )));
        }
        let tail = self.voxels % BITS;
        if let (Some(&last), true) = (row.last(), tail != 0) {
            if last >> tail != 0 {
                return Err(Error::device(format!(
                    "the device's mask row sets bits past voxel {}",
                    self.voxels - 1
                )));
            }
        }
        let s = self.n;
        self.rows[s * self.words..(s + 1) * self.words].copy_from_slice(row);
        self.fold_row();
        Ok(())
    }

    /// Samples recorded since the last reset.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn samples(&self) -> usize {
        self.n
    }

    /// Heap bytes this holds, counted from its buffers.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        8 * (self.rows.len()
            + self.union.len()
            + self.inter.len()
            + self.final_mask.len()
            + self.volumes.len())
    }

    /// Some sample calls voxel `i` foreground.
    pub fn any(&self, i: usize) -> bool {
        self.union[i / BITS] >> (i % BITS) & 1 == 1
    }

    /// Puts voxel `i` into the final mask `F`.
    pub fn mark_final(&mut self, i: usize) {
        self.final_mask[i / BITS] |= 1 << (i % BITS);
    }

    /// The measures of the recorded samples against the final mask marked so far.
    pub fn measures(&self) -> StructureMeasures {
        let n = self.n.max(1);
        let count = |v: &[u64]| v.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        let f = count(&self.final_mask);
        let volumes = &self.volumes[..self.n];
        let dice_sum: f64 = volumes
            .iter()
            .enumerate()
            .map(|(s, &v)| {
                let row = &self.rows[s * self.words..(s + 1) * self.words];
                let overlap = row
                    .iter()
                    .zip(&self.final_mask)
                    .map(|(a, b)| u64::from((a & b).count_ones()))
                    .sum();
                dice(overlap, v, f)
            })
            .sum();
        let (inter, union) = (count(&self.inter), count(&self.union));
        let mean = volumes.iter().sum::<u64>() as f64 / n as f64;
        let var = volumes
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        let std = var.sqrt();
        StructureMeasures {
            dice_agreement: if self.n == 0 {
                1.0
            } else {
                (dice_sum / n as f64) as f32
            },
            iou: if union == 0 {
                1.0
            } else {
                (inter as f64 / union as f64) as f32
            },
            volume_cv: if mean > 0.0 { (std / mean) as f32 } else { 0.0 },
            intersection_voxels: inter,
            union_voxels: union,
            empty_samples: volumes.iter().filter(|&&v| v == 0).count() as u32,
            sample_voxels_mean: mean,
            sample_voxels_std: std,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_what_is_allocated() {
        for (voxels, cap) in [(1, 1), (64, 3), (65, 1024), (4096, 20)] {
            let m = SampleMasks::new(voxels, cap).unwrap();
            assert_eq!(SampleMasks::bytes(voxels, cap), Some(m.held_bytes()));
        }
        assert_eq!(SampleMasks::bytes(usize::MAX, 1024), None);
    }

    #[test]
    fn bits_past_64_and_the_last_partial_word() {
        let mut m = SampleMasks::new(70, 2).unwrap();
        let mut p = vec![0.0f32; 70];
        p[0] = 0.5;
        p[64] = 0.9;
        p[69] = 0.7;
        m.record(&p, 0.5);
        p[0] = 0.49;
        m.record(&p, 0.5);
        assert!(m.any(0) && m.any(64) && m.any(69) && !m.any(1) && !m.any(68));
        let s = m.measures();
        assert_eq!((s.intersection_voxels, s.union_voxels), (2, 3));
        assert_eq!(s.iou, 2.0 / 3.0);
    }

    /// Records `samples` (each one probability per voxel), marks `final_mask` and measures.
    fn measure(samples: &[&[f32]], final_mask: &[usize]) -> StructureMeasures {
        let mut m = SampleMasks::new(samples[0].len(), samples.len()).unwrap();
        for p in samples {
            m.record(p, 0.5);
        }
        for &i in final_mask {
            m.mark_final(i);
        }
        m.measures()
    }

    #[test]
    fn every_sample_empty_is_agreement() {
        let s = measure(&[&[0.1, 0.4, 0.0], &[0.0, 0.49, 0.2]], &[]);
        assert_eq!((s.dice_agreement, s.iou, s.volume_cv), (1.0, 1.0, 0.0));
        assert_eq!((s.empty_samples, s.union_voxels), (2, 0));
    }

    /// The case a naive "empty final mask = nothing to doubt" gets wrong.
    #[test]
    fn an_empty_final_mask_with_foreground_in_some_samples_is_not_sure() {
        // Sample 0 sees two voxels, samples 1 and 2 see nothing; the mean stays below 0.5.
        let s = measure(&[&[0.9, 0.8, 0.0], &[0.1, 0.0, 0.0], &[0.2, 0.1, 0.0]], &[]);
        // Dice: sample 0 vs empty F is 0, the two empty samples agree with F (1 each).
        assert_eq!(s.dice_agreement, (2.0f64 / 3.0) as f32);
        assert_eq!(s.iou, 0.0);
        // Volumes 2, 0, 0: mean 2/3, population std 2√2/3, so CV √2.
        assert_eq!(s.volume_cv, 2f64.sqrt() as f32);
        assert_eq!(
            (s.empty_samples, s.intersection_voxels, s.union_voxels),
            (2, 0, 2)
        );
    }

    #[test]
    fn a_final_mask_that_some_samples_miss() {
        // F = {0}; sample 1 is empty: Dice 0; sample 0 equals F: Dice 1.
        let s = measure(&[&[0.9, 0.0], &[0.3, 0.0]], &[0]);
        assert_eq!(s.dice_agreement, 0.5);
        assert_eq!((s.iou, s.volume_cv), (0.0, 1.0));
    }

    #[test]
    fn identical_masks_agree_and_partial_overlap_does_not() {
        let same = measure(&[&[0.9, 0.6, 0.0], &[0.7, 0.5, 0.1]], &[0, 1]);
        assert_eq!(
            (same.dice_agreement, same.iou, same.volume_cv),
            (1.0, 1.0, 0.0)
        );
        // M_0 = {0, 1}, M_1 = {1, 2}, F = {1}: Dice 2·1/3 each; IoU 1/3; equal volumes.
        let part = measure(&[&[0.9, 0.9, 0.0], &[0.0, 0.9, 0.9]], &[1]);
        assert_eq!(part.dice_agreement, (2.0f64 / 3.0) as f32);
        assert_eq!((part.iou, part.volume_cv), ((1.0f64 / 3.0) as f32, 0.0));
    }

    /// A device's bit rows (70 voxels: a partial last word) fold exactly as the probabilities
    /// they were computed from; a malformed row is refused and records nothing.
    #[test]
    fn bit_rows_record_what_their_probabilities_record() {
        let probs: Vec<Vec<f32>> = (0..3)
            .map(|s| {
                (0..70)
                    .map(|i| ((i * 7 + s * 13) % 10) as f32 / 9.0)
                    .collect()
            })
            .collect();
        let (mut by_prob, mut by_bits) = (
            SampleMasks::new(70, 3).unwrap(),
            SampleMasks::new(70, 3).unwrap(),
        );
        for p in &probs {
            by_prob.record(p, 0.5);
            let mut row = [0u64; 2];
            for (i, &x) in p.iter().enumerate() {
                row[i / 64] |= u64::from(x >= 0.5) << (i % 64);
            }
            by_bits.record_bits(&row).unwrap();
        }
        for m in [&mut by_prob, &mut by_bits] {
            for i in [0, 5, 64, 69] {
                m.mark_final(i);
            }
        }
        let want = by_prob.measures();
        assert!(want.union_voxels > want.intersection_voxels && want.empty_samples == 0);
        assert_eq!(by_bits.measures(), want);
        assert!((0..70).all(|i| by_bits.any(i) == by_prob.any(i)));

        let mut m = SampleMasks::new(70, 1).unwrap();
        for (row, why) in [
            (&[0u64][..], "a mask row of 1 words"),
            (&[0, 1 << 6], "bits past voxel 69"),
        ] {
            let e = m.record_bits(row).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Device);
            assert!(e.message.contains(why), "{e}");
        }
        assert_eq!(m.samples(), 0);
        m.record_bits(&[1, 1 << 5]).unwrap();
        let e = m.record_bits(&[1, 0]).unwrap_err();
        assert!(e.message.contains("more than 1 sample masks"), "{e}");
        assert_eq!(m.measures().union_voxels, 2);
    }

    #[test]
    fn reset_forgets_the_previous_call() {
        let mut m = SampleMasks::new(3, 2).unwrap();
        m.record(&[0.9, 0.9, 0.9], 0.5);
        m.mark_final(0);
        m.reset();
        m.record(&[0.0, 0.0, 0.0], 0.5);
        let s = m.measures();
        assert_eq!((s.dice_agreement, s.iou, s.union_voxels), (1.0, 1.0, 0));
    }
}
