//! Consensus masks on the scan grid, resampled into a patch by nearest neighbour (a label is a
//! class, so it is not interpolated): a patch voxel is 1 when the scan voxel nearest to its
//! world point is in a mask.

use anyhow::{ensure, Result};
use lungseg::geometry::Geometry;
use lungseg::patch::PatchSpec;

use super::consensus::BoxMask;

/// Sets `dst[v] = 1` for every patch voxel (x fastest) whose nearest scan voxel is in one of
/// `masks` (`(i, j, k)` = (row, column, slice) = scan `(y, x, z)`); returns how many it set.
pub fn paint_patch(
    spec: &PatchSpec,
    center: [f64; 3],
    geometry: &Geometry,
    masks: &[&BoxMask],
    dst: &mut [u8],
) -> Result<usize> {
    if masks.is_empty() {
        return Ok(0);
    }
    ensure!(
        dst.len() == spec.len(),
        "label buffer of {} voxels for a {:?} patch",
        dst.len(),
        spec.size
    );
    let [sx, sy, sz] = spec.size;
    let mut set = 0;
    for z in 0..sz {
        for y in 0..sy {
            for x in 0..sx {
                let w = spec.voxel_world(center, [x, y, z]);
                let c = geometry.world_to_index(w).map(f64::round);
                if !c.iter().all(|v| v.is_finite() && v.abs() < 1e12) {
                    continue;
                }
                let [ci, cj, ck] = [c[1] as i64, c[0] as i64, c[2] as i64];
                if masks.iter().any(|m| m.get([ci, cj, ck])) {
                    let v = (z * sy + y) * sx + x;
                    set += usize::from(dst[v] == 0);
                    dst[v] = 1;
                }
            }
        }
    }
    Ok(set)
}

/// World centre (mm) of a mask's voxels; `None` when it is empty.
pub fn centroid_world(geometry: &Geometry, mask: &BoxMask) -> Option<[f64; 3]> {
    let [ni, nj, nk] = mask.bbox.shape();
    let (mut s, mut n) = ([0.0f64; 3], 0usize);
    for i in 0..ni {
        for j in 0..nj {
            for k in 0..nk {
                if mask.bits[(i * nj + j) * nk + k] {
                    s[0] += (mask.bbox.lo[1] + j as i64) as f64;
                    s[1] += (mask.bbox.lo[0] + i as i64) as f64;
                    s[2] += (mask.bbox.lo[2] + k as i64) as f64;
                    n += 1;
                }
            }
        }
    }
    (n > 0).then(|| geometry.index_to_world(s.map(|v| v / n as f64)))
}
