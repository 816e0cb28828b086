//! Which slice of the LUNA16 `.mhd` scan a LIDC `roi` is on.
//!
//! LIDC names a slice twice: `imageSOP_UID` (the DICOM file) and `imageZposition` (its z in mm).
//! LUNA16's `.mhd` scans keep no SOP Instance UIDs, so the match is by z: slice k's z is the
//! world z of voxel `(0, 0, k)`, and a roi belongs to the nearest slice when it is within
//! `tolerance × |slice spacing|` of it (pylidc takes the nearest slice with no tolerance; a
//! roi farther than the tolerance from every slice means the XML and the scan disagree).
//! In-plane, LIDC's `xCoord`/`yCoord` are the DICOM column and row, which are the `.mhd`'s
//! x and y indices (the converter writes the slices as they are, with the orientation in the
//! direction matrix), so they need no transform.

use anyhow::{ensure, Result};
use lungseg::geometry::Geometry;

/// Default largest distance of a roi's z from its slice, as a fraction of the slice spacing.
pub const DEFAULT_Z_TOLERANCE: f64 = 0.25;

/// The slices of a scan by z.
#[derive(Clone, Debug)]
pub struct SliceIndex {
    /// (z, k), sorted by z.
    by_z: Vec<(f64, usize)>,
    /// Largest |roi z − slice z| accepted (mm).
    pub tolerance_mm: f64,
    /// |slice spacing| along z (mm): pylidc's `slice_thickness` stand-in.
    pub slice_spacing_mm: f64,
}

impl SliceIndex {
    /// Fails unless the scan is axial (its x and y axes have no z component, so every voxel of
    /// a slice has the slice's z) and `tolerance` is in (0, 0.5].
    pub fn new(geometry: &Geometry, tolerance: f64) -> Result<SliceIndex> {
        ensure!(
            tolerance > 0.0 && tolerance <= 0.5,
            "the slice z tolerance {tolerance} must be in (0, 0.5] (a fraction of the slice spacing)"
        );
        let d = &geometry.direction;
        ensure!(
            d[2][0].abs() < 1e-6 && d[2][1].abs() < 1e-6 && d[2][2].abs() > 1e-6,
            "the scan is not axial (direction {:?}): LIDC outlines are drawn on axial slices",
            d
        );
        let slice_spacing_mm = geometry.spacing[2] * d[2][2].abs();
        let mut by_z: Vec<(f64, usize)> = (0..geometry.dims[2])
            .map(|k| (geometry.index_to_world([0.0, 0.0, k as f64])[2], k))
            .collect();
        by_z.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(SliceIndex {
            by_z,
            tolerance_mm: tolerance * slice_spacing_mm,
            slice_spacing_mm,
        })
    }

    /// The slice within the tolerance of `z`, if any.
    pub fn slice_of(&self, z: f64) -> Option<usize> {
        let at = self.by_z.partition_point(|&(sz, _)| sz < z);
        [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.by_z.get(i))
            .map(|&(sz, k)| ((sz - z).abs(), k))
            .filter(|&(d, _)| d <= self.tolerance_mm)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k)
    }
}
