//! Calibrated probabilities of a mean map, by distance from the final mask
//! (`config.probability_map` of the model file).
//!
//! Why the distance: a map of the MC mean alone cannot be right both around a nodule and in
//! the background. Near the boundary of a lesion a voxel at p = 0.05 is nodule far more often
//! than a background voxel at p = 0.05, so a monotone map of p fitted where the ROI ECE is
//! measured lifts the background, and one fitted on the whole patch leaves the lesion's margin
//! miscalibrated (docs/model-stages.md, "A map that also knows the distance to the mask"). The
//! distance to the final mask is known at inference and tells the two apart: each voxel's
//! band is the first `band_max_voxels` entry at least its Chebyshev distance (voxels, the
//! maximum over the axes of the index difference) to the nearest mask voxel, 0 inside the
//! mask, and the last band (one more than the list) holds everything further, including every
//! voxel of a patch whose mask is empty. Each band has its own non-decreasing piecewise-linear
//! map of p through `(knots[k], values[band][k])`, constant beyond the first and last knot.
//!
//! The mask is not changed: it is cut from the uncalibrated mean (`crate::mask`), and within
//! a band a higher mean keeps a probability at least as high.
//!
//! Patches are z-major with x fastest (`dims_zyx`).

use crate::error::{try_vec, Error, Result};
use crate::mask::PatchGrid;
use crate::model::ModelConfig;

/// Most bands a map may have (`band_max_voxels.len() + 1`).
pub const MAX_BANDS: usize = 16;
/// Largest band edge, voxels.
pub const MAX_BAND_VOXELS: u32 = 64;
/// Most knots per band.
pub const MAX_KNOTS: usize = 1024;

/// A probability map by distance band from the final mask.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ProbabilityMap {
    /// Upper Chebyshev distance (voxels) of each band but the last, strictly increasing from
    /// 0 (the mask itself) or above.
    pub band_max_voxels: Vec<u32>,
    /// Probabilities at which the maps are given, strictly increasing in [0, 1].
    pub knots: Vec<f32>,
    /// One row per band (`band_max_voxels.len() + 1` rows) of `knots.len()` values in [0, 1],
    /// non-decreasing along the row.
    pub values: Vec<Vec<f32>>,
}

impl ProbabilityMap {
    /// Number of bands.
    pub fn bands(&self) -> usize {
        self.band_max_voxels.len() + 1
    }

    /// Checks every rule of the module docs; the message names `config.probability_map`.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::format(format!("config.probability_map: {what}")));
        let edges = &self.band_max_voxels;
        if self.bands() > MAX_BANDS {
            return bad(format!("{} bands (at most {MAX_BANDS})", self.bands()));
        }
        if edges.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("band_max_voxels {edges:?} must increase strictly"));
        }
        if edges.last().is_some_and(|&e| e > MAX_BAND_VOXELS) {
            return bad(format!("band_max_voxels above {MAX_BAND_VOXELS}"));
        }
        let k = &self.knots;
        if k.is_empty() || k.len() > MAX_KNOTS {
            return bad(format!("{} knots (1..={MAX_KNOTS})", k.len()));
        }
        if !k.iter().all(|x| (0.0..=1.0).contains(x)) || k.windows(2).any(|w| w[0] >= w[1]) {
            return bad("knots must increase strictly within [0, 1]".into());
        }
        if self.values.len() != self.bands() {
            return bad(format!(
                "{} rows of values for {} bands",
                self.values.len(),
                self.bands()
            ));
        }
        for (b, row) in self.values.iter().enumerate() {
            if row.len() != k.len() {
                return bad(format!(
                    "band {b} has {} values for {} knots",
                    row.len(),
                    k.len()
                ));
            }
            if !row.iter().all(|v| (0.0..=1.0).contains(v)) || row.windows(2).any(|w| w[0] > w[1]) {
                return bad(format!(
                    "band {b}'s values must be non-decreasing within [0, 1]"
                ));
            }
        }
        Ok(())
    }

    /// The calibrated probability of mean `p` in `band`.
    pub fn map(&self, band: usize, p: f32) -> f32 {
        let (k, v) = (&self.knots, &self.values[band]);
        let i = k.partition_point(|&x| x <= p);
        if i == 0 {
            return v[0];
        }
        if i == k.len() {
            return v[k.len() - 1];
        }
        let t = (p - k[i - 1]) / (k[i] - k[i - 1]);
        v[i - 1] + t * (v[i] - v[i - 1])
    }

    /// `out[i]` = the calibrated probability of `mean[i]` given the final mask `mask` of the
    /// patch (`dims_zyx`); all three hold the patch's voxel count.
    pub fn apply(
        &self,
        mean: &[f32],
        mask: &[u8],
        dims_zyx: [usize; 3],
        out: &mut [f32],
    ) -> Result<()> {
        let n: usize = dims_zyx.iter().product();
        if mean.len() != n || mask.len() != n || out.len() != n {
            return Err(Error::invalid(format!(
                "mean, mask and out hold {}, {} and {} values; the patch has {n} voxels",
                mean.len(),
                mask.len(),
                out.len()
            )));
        }
        if let Some(p) = mean.iter().find(|p| !p.is_finite()) {
            return Err(Error::invalid(format!("mean holds {p}")));
        }
        let band = bands(&self.band_max_voxels, mask, dims_zyx)?;
        for ((o, &p), &b) in out.iter_mut().zip(mean).zip(&band) {
            *o = self.map(usize::from(b), p);
        }
        Ok(())
    }
}

/// Each voxel's band from the final mask `mask` (`dims_zyx`): the first `band_max_voxels`
/// entry at least its Chebyshev distance to the mask, or `band_max_voxels.len()` beyond the
/// last (module docs). The one definition the engine and the fitting share.
pub fn bands(band_max_voxels: &[u32], mask: &[u8], dims_zyx: [usize; 3]) -> Result<Vec<u8>> {
    if band_max_voxels.len() >= MAX_BANDS || band_max_voxels.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::invalid(format!(
            "band edges {band_max_voxels:?}: at most {} increasing values",
            MAX_BANDS - 1
        )));
    }
    let cap = band_max_voxels.last().map_or(0, |&e| e + 1);
    let dist = chebyshev_distance(mask, dims_zyx, cap)?;
    Ok(dist
        .iter()
        .map(|&d| band_max_voxels.partition_point(|&e| e < u32::from(d)) as u8)
        .collect())
}

/// `out` = the calibrated probabilities of `mean` under `cfg`'s map, the bands measured from
/// the final mask of that same mean (`crate::mask::final_mask`, so a caller cannot pair a
/// mean with another mask); a copy of `mean` when `cfg` has no map.
pub fn calibrated_probability(cfg: &ModelConfig, mean: &[f32], out: &mut [f32]) -> Result<()> {
    let n = cfg.patch_voxels();
    if mean.len() != n || out.len() != n {
        return Err(Error::invalid(format!(
            "mean of {} and out of {} values for a patch of {n} voxels",
            mean.len(),
            out.len()
        )));
    }
    let Some(map) = &cfg.probability_map else {
        out.copy_from_slice(mean);
        return Ok(());
    };
    let mut mask: Vec<u8> = try_vec(n, "final mask")?;
    crate::mask::final_mask(cfg, mean, &mut mask)?;
    map.apply(mean, &mask, PatchGrid::of(cfg).dims_zyx, out)
}

/// Chebyshev distance (voxels) from each voxel to the nearest non-zero voxel of `mask`, capped
/// at `cap` (also where the mask is empty). Separable: the distance along x, then the minimum
/// over the y line of max(|Δy|, that), then the same along z — exact for the maximum metric.
pub fn chebyshev_distance(mask: &[u8], dims_zyx: [usize; 3], cap: u32) -> Result<Vec<u16>> {
    let cap = u16::try_from(cap.min(u32::from(u16::MAX - 1)))
        .map_err(|_| Error::invalid("distance cap"))?;
    let [nz, ny, nx] = dims_zyx;
    if mask.len() != nz * ny * nx {
        return Err(Error::invalid(format!(
            "mask holds {} values; the patch has {} voxels",
            mask.len(),
            nz * ny * nx
        )));
    }
    let mut d: Vec<u16> = try_vec(mask.len(), "distance map")?;
    for (o, &m) in d.iter_mut().zip(mask) {
        *o = if m != 0 { 0 } else { cap };
    }
    for (stride, len) in [(1, nx), (nx, ny), (nx * ny, nz)] {
        let mut line: Vec<u16> = try_vec(len, "distance line")?;
        for start in (0..d.len()).filter(|&s| (s / stride) % len == 0) {
            for (i, v) in line.iter_mut().enumerate() {
                *v = d[start + i * stride];
            }
            for i in 0..len {
                let reach = usize::from(cap);
                let lo = i.saturating_sub(reach);
                let hi = (i + reach).min(len - 1);
                let best = (lo..=hi)
                    .map(|j| line[j].max(i.abs_diff(j) as u16))
                    .min()
                    .unwrap_or(cap);
                d[start + i * stride] = best.min(cap);
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map3() -> ProbabilityMap {
        ProbabilityMap {
            band_max_voxels: vec![0, 2],
            knots: vec![0.0, 0.5, 1.0],
            values: vec![
                vec![0.1, 0.4, 0.8],
                vec![0.0, 0.2, 0.6],
                vec![0.0, 0.01, 0.3],
            ],
        }
    }

    /// The distance by brute force over every mask voxel.
    fn direct(mask: &[u8], dims: [usize; 3], cap: u16) -> Vec<u16> {
        let [_, ny, nx] = dims;
        let at = |i: usize| [i / (nx * ny), (i / nx) % ny, i % nx];
        (0..mask.len())
            .map(|i| {
                let a = at(i);
                (0..mask.len())
                    .filter(|&j| mask[j] != 0)
                    .map(|j| {
                        let b = at(j);
                        (0..3).map(|k| a[k].abs_diff(b[k])).max().unwrap() as u16
                    })
                    .min()
                    .unwrap_or(cap)
                    .min(cap)
            })
            .collect()
    }

    #[test]
    fn distance_matches_brute_force() {
        let dims = [5, 6, 7];
        let n = 5 * 6 * 7;
        let mut state = 12345u32;
        for fill in [0u32, 1, 3, 20] {
            let mask: Vec<u8> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    u8::from((state >> 24) % 100 < fill)
                })
                .collect();
            for cap in [0u32, 1, 3, 10] {
                let got = chebyshev_distance(&mask, dims, cap).unwrap();
                assert_eq!(
                    got,
                    direct(&mask, dims, cap as u16),
                    "fill {fill} cap {cap}"
                );
            }
        }
    }

    #[test]
    fn maps_by_band_and_interpolates() {
        let m = map3();
        m.check().unwrap();
        // A single mask voxel in a 1×1×6 line: distances 0, 1, 2, 3, 4, 5 → bands 0, 1, 1, 2, 2, 2.
        let mask = [1u8, 0, 0, 0, 0, 0];
        let mean = [0.25f32, 0.25, 0.75, 0.5, 1.0, 0.0];
        let mut out = [0.0f32; 6];
        m.apply(&mean, &mask, [1, 1, 6], &mut out).unwrap();
        let want = [0.25f32, 0.1, 0.4, 0.01, 0.3, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
        // Beyond the knots the ends hold; an empty mask puts every voxel in the last band.
        let edge = ProbabilityMap {
            knots: vec![0.2, 0.8],
            values: vec![vec![0.3, 0.7]; 3],
            ..m.clone()
        };
        assert_eq!(edge.map(0, 0.1), 0.3);
        assert_eq!(edge.map(0, 0.9), 0.7);
        m.apply(&mean, &[0; 6], [1, 1, 6], &mut out).unwrap();
        assert!((out[2] - 0.155).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn calibrates_against_the_final_mask_of_the_same_mean() {
        let mut cfg = ModelConfig {
            channels: vec![4],
            patch_size: [6, 1, 1],
            mask_threshold: 0.5,
            ..ModelConfig::default()
        };
        let mean = [0.9f32, 0.25, 0.75, 0.5, 0.0, 0.2];
        let mut out = [0.0f32; 6];
        calibrated_probability(&cfg, &mean, &mut out).unwrap();
        assert_eq!(out, mean, "no map: the mean itself");
        cfg.probability_map = Some(map3());
        calibrated_probability(&cfg, &mean, &mut out).unwrap();
        // Mask {0, 2, 3} (mean >= 0.5): distances 0, 1, 0, 0, 1, 2 -> bands 0, 1, 0, 0, 1, 1.
        let m = map3();
        let want: Vec<f32> = [(0, 0.9), (1, 0.25), (0, 0.75), (0, 0.5), (1, 0.0), (1, 0.2)]
            .iter()
            .map(|&(b, p)| m.map(b, p))
            .collect();
        assert_eq!(out.to_vec(), want);
        assert!(calibrated_probability(&cfg, &mean[1..], &mut out).is_err());
    }

    #[test]
    fn refuses_broken_maps() {
        let ok = map3();
        let cases = [
            ProbabilityMap {
                band_max_voxels: vec![2, 2],
                ..ok.clone()
            },
            ProbabilityMap {
                band_max_voxels: vec![0, 65],
                ..ok.clone()
            },
            ProbabilityMap {
                knots: vec![0.0, 0.5, 0.5],
                ..ok.clone()
            },
            ProbabilityMap {
                knots: vec![0.0, 0.5, 1.5],
                ..ok.clone()
            },
            ProbabilityMap {
                knots: vec![],
                values: vec![vec![]; 3],
                ..ok.clone()
            },
            ProbabilityMap {
                values: vec![vec![0.0, 0.1, 0.2]; 2],
                ..ok.clone()
            },
            ProbabilityMap {
                values: vec![vec![0.0, 0.3, 0.2]; 3],
                ..ok.clone()
            },
            ProbabilityMap {
                values: vec![vec![0.0, 0.3]; 3],
                ..ok.clone()
            },
            ProbabilityMap {
                values: vec![vec![0.0, 0.3, f32::NAN]; 3],
                ..ok.clone()
            },
            ProbabilityMap {
                band_max_voxels: (0..16).collect(),
                values: vec![vec![0.0, 0.1, 0.2]; 17],
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(c.check().is_err(), "{c:?}");
        }
        let mut out = [0.0f32; 6];
        assert!(ok.apply(&[0.1; 5], &[0; 6], [1, 1, 6], &mut out).is_err());
        assert!(ok
            .apply(&[f32::NAN; 6], &[0; 6], [1, 1, 6], &mut out)
            .is_err());
    }
}
