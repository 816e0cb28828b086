//! A second look at the requested point at half the model's spacing, and the mask that joins
//! both looks. The network is fully convolutional, so the same weights can read the point's
//! neighbourhood again with voxels half as large: a small nodule looks twice its size, the patch
//! (same voxel count) covers the central half of the first. Small nodules are where the
//! model's Dice is lost (a 4 mm nodule is 4 voxels across at 1 mm); at 0.5 mm, though, vessels
//! cut across look like nodules too. So the second look only reshapes or completes what the
//! first saw: a component of its mask joins the final mask when the first look's mean reaches
//! [`SecondLook::support`] somewhere inside it, and the first look's mask is then cut higher
//! ([`SecondLook::first_threshold`]) to pay for the false positives that remain. On slices
//! far apart (4.5–5 mm) the half-spacing grid is interpolation and the second look loses Dice.
//! So a model names the coarsest scan resolution its second look runs on
//! ([`SecondLook::max_scan_spacing_mm`]). The studies, on calibration scans, and the tests are in
//! docs/model-stages.md ("A second look at half the spacing"). A model file carries its setting
//! as `config.second_look` (docs/model-format.md); calls at a point of a scan that ask for the
//! final mask run it (`crate::mc::point`).
//!
//! Grids: both patches have the same dimensions (z, y, x; x fastest) and centre voxel
//! (`dims / 2` on each axis, `crate::patch`'s convention), the second's spacing half the
//! first's. Second-look voxel `2 i − dims / 2` then lies on first-look voxel `i`'s centre and
//! its two neighbours half a first-look voxel away, so the second mean is brought onto the first
//! grid with weights ¼ ½ ¼ per axis, on the first-look voxels whose three neighbours all exist
//! ([`covered`]): the central 31³ of a 64³ patch.

use std::ops::Range;

use crate::error::{try_vec, Error, Result};
use crate::mask::{ComponentScratch, Grid, MaskRule, PatchGrid};
use crate::patch::PatchSpec;

/// The setting of a second look: its thresholds and the scans it runs on.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
pub struct SecondLook {
    /// Mask threshold of the first look's mean when a second look runs (the model's
    /// `mask_threshold` applies without one).
    pub first_threshold: f32,
    /// Mask threshold of the second look's mean.
    pub threshold: f32,
    /// A component of the joined mask is kept only if the first look's mean reaches this in
    /// one of its voxels (0: every component).
    pub support: f32,
    /// The coarsest scan resolution (mm along any axis: voxel spacing, or slice thickness
    /// where coarser, `Volume::resolution_mm`) the second look runs on; on a coarser scan the
    /// model's mask applies. In (0, 100].
    pub max_scan_spacing_mm: f64,
}

impl SecondLook {
    /// Whether the second look runs on a scan of `resolution` (mm per axis): no axis coarser
    /// than [`SecondLook::max_scan_spacing_mm`] (by more than header rounding,
    /// `crate::intended_use::SPACING_TOLERANCE_MM`).
    pub fn runs_on(&self, resolution: [f64; 3]) -> bool {
        let limit = self.max_scan_spacing_mm + crate::intended_use::SPACING_TOLERANCE_MM;
        resolution.iter().all(|&s| s <= limit)
    }

    /// The second look's voxel spacing: half the first's.
    pub fn spacing_mm(first_spacing_mm: [f64; 3]) -> [f64; 3] {
        first_spacing_mm.map(|s| s / 2.0)
    }

    /// The second look's patch: the first's size and outside value at half its spacing.
    pub fn patch_spec(first: &PatchSpec) -> PatchSpec {
        PatchSpec {
            spacing_mm: Self::spacing_mm(first.spacing_mm),
            ..*first
        }
    }

    /// Fails unless both thresholds are in (0, 1], the support in [0, 1] and the scan limit in
    /// (0, 100] mm.
    pub fn check(&self) -> Result<()> {
        let t = |v: f32| v > 0.0 && v <= 1.0;
        if !(t(self.first_threshold) && t(self.threshold)) {
            return Err(Error::invalid(format!(
                "second look thresholds {} and {} must be in (0, 1]",
                self.first_threshold, self.threshold
            )));
        }
        if !(0.0..=1.0).contains(&self.support) {
            return Err(Error::invalid(format!(
                "second look support {} must be in [0, 1]",
                self.support
            )));
        }
        let v = self.max_scan_spacing_mm;
        if !(v.is_finite() && v > 0.0 && v <= 100.0) {
            return Err(Error::invalid(format!(
                "second look max_scan_spacing_mm {v} must be in (0, 100]"
            )));
        }
        Ok(())
    }
}

/// The first-look voxels along an axis of `n` voxels that the second look covers: those whose
/// centre and both half-voxel neighbours are second-look voxels. Empty below 4 voxels.
pub fn covered(n: usize) -> Range<usize> {
    if n < 4 {
        return 0..0;
    }
    // Second-look voxels 2i − n/2 − 1 ≥ 0 and 2i − n/2 + 1 ≤ n − 1.
    let h = n / 2;
    (h + 2) / 2..(n + h - 2) / 2 + 1
}

/// Whether a second look can change the mask: the first look's mean reaches `support` on a
/// covered voxel. Where it does not, no second-look component can find support.
pub fn can_change(first: &[f32], dims_zyx: [usize; 3], support: f32) -> Result<bool> {
    check_len(first.len(), dims_zyx)?;
    let [cz, cy, cx] = dims_zyx.map(covered);
    let [_, ny, nx] = dims_zyx;
    Ok(cz.into_iter().any(|z| {
        cy.clone()
            .any(|y| cx.clone().any(|x| first[(z * ny + y) * nx + x] >= support))
    }))
}

/// The second look's mean on the first grid: covered voxels hold the ¼ ½ ¼ average of the
/// second-look voxels around their centre, the others `None`.
pub fn onto_first_grid(second: &[f32], dims_zyx: [usize; 3]) -> Result<Vec<Option<f32>>> {
    check_len(second.len(), dims_zyx)?;
    const W: [(isize, f32); 3] = [(-1, 0.25), (0, 0.5), (1, 0.25)];
    let [nz, ny, nx] = dims_zyx;
    let centre = |i: usize, n: usize| 2 * i as isize - (n / 2) as isize;
    let mut out: Vec<Option<f32>> = try_vec(second.len(), "the second look on the first grid")?;
    let [cz, cy, cx] = dims_zyx.map(covered);
    for z in cz {
        for y in cy.clone() {
            for x in cx.clone() {
                let mut s = 0.0;
                for (dz, wz) in W {
                    let fz = (centre(z, nz) + dz) as usize;
                    for (dy, wy) in W {
                        let fy = (centre(y, ny) + dy) as usize;
                        for (dx, wx) in W {
                            let fx = (centre(x, nx) + dx) as usize;
                            s += wz * wy * wx * second[(fz * ny + fy) * nx + fx];
                        }
                    }
                }
                out[(z * ny + y) * nx + x] = Some(s);
            }
        }
    }
    Ok(out)
}

/// Writes the joined mask into `out` (0/1 on `grid`, the first look's) and returns its voxel
/// count: the union of the first mean at `look.first_threshold` and the second (on the first
/// grid, [`onto_first_grid`]) at `look.threshold`, under `rule`'s point and small-component
/// rules (its threshold is replaced), keeping only the components in which the first mean
/// reaches `look.support`. (Scaling the second mean so that one threshold cuts both can move a
/// voxel exactly at a threshold by a rounding step.)
pub fn joined_mask(
    first: &[f32],
    second_on_first: &[Option<f32>],
    grid: PatchGrid,
    rule: MaskRule,
    look: SecondLook,
    out: &mut [u8],
) -> Result<u64> {
    look.check()?;
    check_len(first.len(), grid.dims_zyx)?;
    check_len(second_on_first.len(), grid.dims_zyx)?;
    check_len(out.len(), grid.dims_zyx)?;
    // One threshold cuts both: the second mean scaled so its threshold lands on the first's.
    let scale = look.first_threshold / look.threshold;
    let mut joined: Vec<f32> = try_vec(first.len(), "the joined mean")?;
    for ((j, &c), s) in joined.iter_mut().zip(first).zip(second_on_first) {
        *j = s.map_or(c, |s| c.max(s * scale));
    }
    let rule = MaskRule {
        threshold: look.first_threshold,
        ..rule
    };
    let mut scratch = ComponentScratch::new(first.len())?;
    rule.apply(&joined, grid, out, &mut scratch)?;
    let labels = Grid::new(first.len(), grid.dims_zyx)?;
    let kept = labels.components_where(
        |i| out[i] != 0,
        |c| c.iter().any(|&i| first[i as usize] >= look.support),
    )?;
    out.fill(0);
    for &i in &kept {
        out[i as usize] = 1;
    }
    Ok(kept.len() as u64)
}

fn check_len(len: usize, dims_zyx: [usize; 3]) -> Result<()> {
    let n = dims_zyx.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(len) {
        return Err(Error::invalid(format!(
            "a map of {len} voxels on a {dims_zyx:?} grid"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{PointRule, SmallComponents};

    const N: usize = 8;
    const DIMS: [usize; 3] = [N; 3];

    fn at(z: usize, y: usize, x: usize) -> usize {
        (z * N + y) * N + x
    }

    fn grid() -> PatchGrid {
        PatchGrid {
            dims_zyx: DIMS,
            spacing_xyz: [1.0; 3],
        }
    }

    fn plain_rule() -> MaskRule {
        MaskRule {
            threshold: 0.5,
            point: PointRule {
                threshold: 0.0,
                radius_mm: 0.0,
            },
            small: SmallComponents {
                min_mm3: 0.0,
                spare_radius_mm: 0.0,
            },
        }
    }

    const LOOK: SecondLook = SecondLook {
        first_threshold: 0.7,
        threshold: 0.5,
        support: 0.3,
        max_scan_spacing_mm: 2.5,
    };

    #[test]
    fn covered_voxels_have_all_three_second_look_neighbours() {
        for n in 4..70 {
            let r = covered(n);
            let centre = |i: usize| 2 * i as isize - (n / 2) as isize;
            // The lowest and highest second-look voxels each end reads.
            let reads = |i: usize| (centre(i) - 1, centre(i) + 1);
            let inside = |(lo, hi): (isize, isize)| lo >= 0 && hi < n as isize;
            assert!(
                inside(reads(r.start)) && inside(reads(r.end - 1)),
                "n = {n}"
            );
            // Maximal: one voxel further on either side would leave the second patch.
            assert!(
                !inside(reads(r.start - 1)) && !inside(reads(r.end)),
                "n = {n}"
            );
        }
        assert_eq!(covered(64), 17..48);
        assert!(covered(3).is_empty());
    }

    #[test]
    fn a_constant_second_look_lands_unchanged_on_the_covered_voxels() {
        let out = onto_first_grid(&vec![0.7; N * N * N], DIMS).unwrap();
        let on_diagonal: Vec<usize> = (0..N).filter(|&i| out[at(i, i, i)].is_some()).collect();
        assert_eq!(on_diagonal, vec![3, 4, 5]);
        assert!(out.iter().flatten().all(|&v| (v - 0.7).abs() < 1e-6));
        assert_eq!(out.iter().flatten().count(), 27);
    }

    #[test]
    fn a_second_look_voxel_on_a_first_look_centre_weighs_an_eighth() {
        let mut second = vec![0.0; N * N * N];
        second[at(4, 4, 4)] = 1.0; // first-look voxel 4's centre: 2 * 4 - 4
        second[at(5, 4, 4)] = 1.0; // half a first-look voxel above it along z
        let out = onto_first_grid(&second, DIMS).unwrap();
        assert_eq!(out[at(4, 4, 4)], Some(0.125 + 0.0625));
        assert_eq!(out[at(5, 4, 4)], Some(0.0625)); // voxel 5's centre is second voxel 6
        assert_eq!(out[at(3, 4, 4)], Some(0.0));
    }

    #[test]
    fn a_supported_second_look_component_joins_and_an_unsupported_one_does_not() {
        let n3 = N * N * N;
        let mut first = vec![0.0; n3];
        let mut second = vec![None; n3];
        for (z, y, x) in [(3, 3, 3), (3, 3, 4)] {
            second[at(z, y, x)] = Some(0.6); // joined: the first mean is 0.4 >= 0.3 here
        }
        first[at(3, 3, 4)] = 0.4;
        second[at(5, 5, 5)] = Some(0.9); // alone, no support: the first mean is 0 there
        first[at(0, 0, 0)] = 0.8; // a first-look component outside the second look
        first[at(7, 7, 7)] = 0.6; // under the first threshold 0.7
        let mut out = vec![0u8; n3];
        let kept = joined_mask(&first, &second, grid(), plain_rule(), LOOK, &mut out).unwrap();
        let on: Vec<usize> = (0..n3).filter(|&i| out[i] != 0).collect();
        assert_eq!(on, vec![at(0, 0, 0), at(3, 3, 3), at(3, 3, 4)]);
        assert_eq!(kept, 3);
    }

    #[test]
    fn the_second_threshold_applies_to_the_second_mean() {
        let n3 = N * N * N;
        let mut first = vec![0.0; n3];
        first[at(4, 4, 4)] = 0.35;
        let mut second = vec![None; n3];
        second[at(4, 4, 4)] = Some(0.49);
        let mut out = vec![0u8; n3];
        assert_eq!(
            joined_mask(&first, &second, grid(), plain_rule(), LOOK, &mut out).unwrap(),
            0
        );
        second[at(4, 4, 4)] = Some(0.5);
        assert_eq!(
            joined_mask(&first, &second, grid(), plain_rule(), LOOK, &mut out).unwrap(),
            1
        );
    }

    #[test]
    fn can_change_reads_only_covered_voxels() {
        let mut first = vec![0.0; N * N * N];
        first[at(0, 0, 0)] = 1.0;
        assert!(!can_change(&first, DIMS, 0.5).unwrap());
        first[at(3, 5, 4)] = 0.5;
        assert!(can_change(&first, DIMS, 0.5).unwrap());
    }

    #[test]
    fn runs_on_scans_no_coarser_than_its_limit() {
        assert!(LOOK.runs_on([0.7, 0.7, 2.5]));
        assert!(LOOK.runs_on([0.7, 0.7, 2.5005])); // header rounding
        assert!(!LOOK.runs_on([0.7, 0.7, 2.502]));
        assert!(!LOOK.runs_on([3.0, 0.7, 1.0]));
    }

    #[test]
    fn bad_thresholds_and_lengths_are_refused() {
        let look = SecondLook {
            threshold: 0.0,
            ..LOOK
        };
        assert!(look.check().is_err());
        for v in [0.0, -1.0, 101.0, f64::NAN] {
            let look = SecondLook {
                max_scan_spacing_mm: v,
                ..LOOK
            };
            assert!(look.check().is_err(), "{v}");
        }
        let mut out = vec![0u8; 10];
        assert!(joined_mask(
            &[0.0; 10],
            &[None; 10],
            grid(),
            plain_rule(),
            LOOK,
            &mut out
        )
        .is_err());
        assert!(onto_first_grid(&[0.0; 10], DIMS).is_err());
    }
}
