//! Labels from label volumes (`prepare --label-masks DIR`): `DIR/<seriesuid>.mhd` on the scan's
//! grid, value `r + 1` = the scan's `r`-th row of `annotations.csv` (the layout of synth's
//! `seg-nodules/`). Each nodule is then labelled by its own shape, as LIDC outlines label real
//! nodules, instead of by a sphere of its equivalent diameter.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use lungseg::Geometry;

use super::lidc::consensus::{Bbox, BoxMask};
use super::lidc::ScanNodule;

/// Largest difference (mm, or direction cosine) between the label volume's geometry and the
/// scan's that still counts as the same grid (both are written as text).
const GEOMETRY_TOLERANCE: f64 = 1e-4;

/// The nodules of a label volume, one per annotation row (`None`: no voxel has its value).
/// The volume must be on the scan's grid (`geometry`), hold integers, and use no value above
/// `rows` (a value without a row would be a nodule nobody annotated).
pub fn scan_masks(
    path: &Path,
    geometry: &Geometry,
    rows: usize,
) -> Result<Vec<Option<ScanNodule>>> {
    let volume = lungseg::mhd::read(path, &Default::default())
        .with_context(|| format!("label volume {}", path.display()))?;
    volume.require_scalar()?;
    same_grid(&volume.geometry, geometry)
        .with_context(|| format!("label volume {} is not on its scan's grid", path.display()))?;
    let [nx, ny, nz] = geometry.dims;
    let mut boxes: Vec<Option<Bbox>> = vec![None; rows];
    let mut values = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let v = volume.value(i, j, k);
                ensure!(
                    v >= 0.0 && v.fract() == 0.0 && v as usize <= rows,
                    "label volume {}: value {v} at voxel ({i}, {j}, {k}); the scan has {rows} \
                     annotations (values 0..={rows})",
                    path.display()
                );
                let r = v as usize;
                values.push(r as u32);
                if r > 0 {
                    // BoxMask indexes (row i = y, column j = x, slice k = z), as pylidc does.
                    let p = [j as i64, i as i64, k as i64];
                    let b = &mut boxes[r - 1];
                    *b = Some(match *b {
                        Some(b) => Bbox {
                            lo: std::array::from_fn(|a| b.lo[a].min(p[a])),
                            hi: std::array::from_fn(|a| b.hi[a].max(p[a])),
                        },
                        None => Bbox { lo: p, hi: p },
                    });
                }
            }
        }
    }
    Ok(boxes
        .into_iter()
        .enumerate()
        .map(|(r, bbox)| {
            let bbox = bbox?;
            let [bi, bj, bk] = bbox.shape();
            let mut bits = vec![false; bi * bj * bk];
            for (o, bit) in bits.iter_mut().enumerate() {
                let (i, j, k) = (o / (bj * bk), (o / bk) % bj, o % bk);
                let (y, x, z) = (
                    bbox.lo[0] as usize + i,
                    bbox.lo[1] as usize + j,
                    bbox.lo[2] as usize + k,
                );
                *bit = values[(z * ny + y) * nx + x] as usize == r + 1;
            }
            ScanNodule::from_mask(geometry, BoxMask { bbox, bits })
        })
        .collect())
}

fn same_grid(a: &Geometry, b: &Geometry) -> Result<()> {
    ensure!(
        a.dims == b.dims,
        "dims {:?} vs the scan's {:?}",
        a.dims,
        b.dims
    );
    let close = |x: &[f64], y: &[f64]| {
        x.iter()
            .zip(y)
            .all(|(p, q)| (p - q).abs() <= GEOMETRY_TOLERANCE)
    };
    ensure!(
        close(&a.spacing, &b.spacing) && close(&a.origin, &b.origin),
        "spacing {:?} / origin {:?} vs the scan's {:?} / {:?}",
        a.spacing,
        a.origin,
        b.spacing,
        b.origin
    );
    ensure!(
        (0..3).all(|r| close(&a.direction[r], &b.direction[r])),
        "direction {:?} vs the scan's {:?}",
        a.direction,
        b.direction
    );
    Ok(())
}
