//! The lesion at the requested point: of a patch mask, keep the 26-connected components that
//! come within `radius_mm` of the patch centre and drop the rest (vessels, the diaphragm,
//! another nodule elsewhere in the patch). A post-processing candidate, studied on
//! calibration patches by `examples/mask_filter_study.rs` and not adopted (docs/model-stages.md,
//! "Keeping the component at the point"); the engine's mask is `lungseg::mask::final_mask`,
//! whose 26-connected labelling and centre distance this reuses (the engine's own rule
//! spares small components near the centre instead: `lungseg::mask::SmallComponents`).
//!
//! The centre is the point the caller asked about: voxel `size / 2` on each axis (the patch
//! grid convention of `lungseg::patch`). A component is kept whole when any of its voxels lies within
//! the radius, measured between voxel centres in mm with the patch's spacing; so a mass that
//! reaches the centre keeps its far edge, and a speck beside the point is kept too.

use anyhow::{bail, Result};
use lungseg::mask::{Grid, PatchGrid};

/// Keeps in `mask` (z-major, x fastest, `dims_zyx` voxels) only the 26-connected components
/// with a voxel within `radius_mm` of the patch centre; returns the voxels kept. `spacing_xyz`
/// in mm. Fails on a mask of the wrong length, a non-finite or negative radius, or a
/// non-positive spacing.
pub fn keep_near_centre(
    mask: &mut [bool],
    dims_zyx: [usize; 3],
    spacing_xyz: [f64; 3],
    radius_mm: f64,
) -> Result<u64> {
    let grid = Grid::new(mask.len(), dims_zyx)?;
    if !(radius_mm.is_finite() && radius_mm >= 0.0) {
        bail!("centre radius {radius_mm} mm must be finite and >= 0");
    }
    if !spacing_xyz.iter().all(|s| s.is_finite() && *s > 0.0) {
        bail!("spacing {spacing_xyz:?} mm must be finite and > 0");
    }
    let patch = PatchGrid {
        dims_zyx,
        spacing_xyz,
    };
    let near = |i: u32| patch.centre_distance_mm2(grid.zyx(i as usize)) <= radius_mm * radius_mm;
    let kept = grid.components_where(|i| mask[i], |c| c.iter().any(|&i| near(i)))?;
    mask.fill(false);
    for &i in &kept {
        mask[i as usize] = true;
    }
    Ok(kept.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: [usize; 3] = [9, 9, 9];
    const ONE: [f64; 3] = [1.0, 1.0, 1.0];

    fn at(z: usize, y: usize, x: usize) -> usize {
        (z * 9 + y) * 9 + x
    }

    fn mask(on: &[usize]) -> Vec<bool> {
        let mut m = vec![false; 729];
        for &i in on {
            m[i] = true;
        }
        m
    }

    #[test]
    fn a_blob_away_from_the_point_goes_and_the_one_at_it_stays_whole() {
        // Centre blob reaching out to x = 7 (beyond the 1 mm radius), a far speck at a corner.
        let centre: Vec<usize> = (4..8).map(|x| at(4, 4, x)).collect();
        let mut m = mask(&[centre.as_slice(), &[at(0, 0, 0)]].concat());
        assert_eq!(keep_near_centre(&mut m, D, ONE, 1.0).unwrap(), 4);
        assert!(centre.iter().all(|&i| m[i]));
        assert!(!m[at(0, 0, 0)]);
    }

    #[test]
    fn components_join_through_corners() {
        // A diagonal chain from the centre to a corner is one 26-connected component.
        let chain: Vec<usize> = (0..5)
            .map(|k| at(4 + k.min(4), 4 + k.min(4), 4 + k.min(4)))
            .collect();
        let mut m = mask(&chain);
        assert_eq!(keep_near_centre(&mut m, D, ONE, 0.0).unwrap(), 5);
    }

    #[test]
    fn the_radius_is_in_mm_with_the_axis_spacing() {
        // A speck 3 voxels from the centre along z: 3 mm at 1 mm, 6 mm at 2 mm slices.
        let speck = [at(1, 4, 4)];
        let mut m = mask(&speck);
        assert_eq!(keep_near_centre(&mut m, D, ONE, 3.0).unwrap(), 1);
        let mut m = mask(&speck);
        assert_eq!(
            keep_near_centre(&mut m, D, [1.0, 1.0, 2.0], 5.0).unwrap(),
            0
        );
        let mut m = mask(&speck);
        assert_eq!(
            keep_near_centre(&mut m, D, [1.0, 1.0, 2.0], 6.0).unwrap(),
            1
        );
        // Along x the slice spacing does not count.
        let mut m = mask(&[at(4, 4, 1)]);
        assert_eq!(
            keep_near_centre(&mut m, D, [1.0, 1.0, 2.0], 3.0).unwrap(),
            1
        );
    }

    #[test]
    fn the_centre_of_an_even_patch_is_voxel_size_over_2() {
        // 4³: the centre is voxel (2, 2, 2); radius 0 keeps only a component holding it.
        let idx = |z: usize, y: usize, x: usize| (z * 4 + y) * 4 + x;
        let mut m = vec![false; 64];
        m[idx(1, 1, 1)] = true;
        assert_eq!(keep_near_centre(&mut m, [4; 3], ONE, 0.0).unwrap(), 0);
        m[idx(2, 2, 2)] = true;
        m[idx(1, 1, 1)] = true;
        assert_eq!(keep_near_centre(&mut m, [4; 3], ONE, 0.0).unwrap(), 2);
    }

    #[test]
    fn an_empty_mask_stays_empty_and_bad_arguments_are_refused() {
        let mut m = vec![false; 729];
        assert_eq!(keep_near_centre(&mut m, D, ONE, 5.0).unwrap(), 0);
        assert!(keep_near_centre(&mut m[..10], D, ONE, 5.0).is_err());
        assert!(keep_near_centre(&mut m, D, ONE, f64::NAN).is_err());
        assert!(keep_near_centre(&mut m, D, ONE, -1.0).is_err());
        assert!(keep_near_centre(&mut m, D, [1.0, 0.0, 1.0], 5.0).is_err());
        assert!(keep_near_centre(&mut [], [usize::MAX, 2, 1], ONE, 5.0).is_err());
    }
}
