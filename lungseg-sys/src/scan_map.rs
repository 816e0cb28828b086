//! Patch results back on the scan's own grid: maps (probability, uncertainty) or masks cut on
//! world-aligned patch grids (see [`crate::patch`]) are resampled onto the voxels of the scan
//! they came from and merged, so a host can overlay or store them with its CT.
//!
//! - [`Merge::Mean`] (maps): each patch is sampled trilinearly at every scan voxel centre, with
//!   the border rules of [`crate::patch`] (SimpleITK's `sitkLinear`); a voxel covered by
//!   several patches gets their weighted mean.
//! - [`Merge::Max`] (masks): nearest patch voxel (ITK's `NearestNeighbor`, halves round up);
//!   a voxel covered by several patches gets the largest value.
//!
//! A scan voxel that no patch covers gets 0. Patches are kept until [`ScanMap::read`], which
//! does the resampling: each patch touches only the scan voxels of its bounding box.

use crate::error::{try_vec, Error, Result};
use crate::geometry::Geometry;
use crate::patch::{resample_affine, Affine, PatchSpec};
use crate::volume::{PixelData, Volume};

/// Most patch values one map holds (1 GiB of f32): a loop adding patches without end is
/// refused rather than exhausting memory.
pub const MAX_MAP_VALUES: usize = 256 << 20;

/// How patches merge where they overlap, and how they are interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Weighted mean of trilinear samples (probability, uncertainty maps).
    Mean,
    /// Maximum of nearest-neighbour samples (0/1 masks).
    Max,
}

/// One patch: where it sits and its values as a one-channel volume on its own grid.
struct Placed {
    patch: Volume,
    weight: f32,
}

/// An accumulator of patches for one scan grid.
pub struct ScanMap {
    scan: Geometry,
    merge: Merge,
    patches: Vec<Placed>,
    values: usize,
}

/// A box of scan voxels: first index and size per axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Box3 {
    start: [usize; 3],
    size: [usize; 3],
}

impl Box3 {
    fn len(&self) -> usize {
        self.size.iter().product()
    }
}

impl ScanMap {
    pub fn new(scan: Geometry, merge: Merge) -> Self {
        ScanMap {
            scan,
            merge,
            patches: Vec::new(),
            values: 0,
        }
    }

    /// Adds a patch cut around `center_world` with `spec` (the grid of
    /// `lungseg_volume_extract_patch`); `values` are finite, `spec.len()` of them, x fastest.
    /// `weight` (finite, > 0) counts in [`Merge::Mean`] only.
    pub fn add(
        &mut self,
        spec: &PatchSpec,
        center_world: [f64; 3],
        values: &[f32],
        weight: f32,
    ) -> Result<()> {
        let n = spec.validate()?;
        if values.len() != n {
            return Err(Error::invalid(format!(
                "values holds {} floats, the patch {:?} has {n} voxels",
                values.len(),
                spec.size
            )));
        }
        if center_world.iter().any(|c| !c.is_finite()) {
            return Err(Error::invalid(format!(
                "center_world {center_world:?} is not finite"
            )));
        }
        if !(weight.is_finite() && weight > 0.0) {
            return Err(Error::invalid(format!(
                "weight {weight} must be finite and > 0"
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "patch value {i} is {}: values must be finite",
                values[i]
            )));
        }
        if self.values + n > MAX_MAP_VALUES {
            return Err(Error::limit(format!(
                "the map holds {} patch values; {n} more exceed the limit of {MAX_MAP_VALUES}",
                self.values
            )));
        }
        let grid = spec.geometry(center_world)?;
        let mut copy = try_vec(n, "patch values")?;
        copy.copy_from_slice(values);
        self.patches
            .try_reserve(1)
            .map_err(|_| Error::oom("patch list"))?;
        self.patches.push(Placed {
            patch: Volume::new(grid, PixelData::F32(copy))?,
            weight,
        });
        self.values += n;
        Ok(())
    }

    /// Resamples and merges every patch into `dst` (the scan's voxel count, x fastest).
    pub fn read(&self, dst: &mut [f32]) -> Result<()> {
        if dst.len() != self.scan.voxel_count() {
            return Err(Error::invalid(format!(
                "destination holds {} floats, the scan {:?} has {} voxels",
                dst.len(),
                self.scan.dims,
                self.scan.voxel_count()
            )));
        }
        let boxes: Vec<Option<Box3>> = self.patches.iter().map(|p| self.bounds(p)).collect();
        let union = boxes.iter().flatten().copied().reduce(union);
        dst.fill(0.0);
        let Some(union) = union else {
            return Ok(());
        };
        let largest = boxes.iter().flatten().map(Box3::len).max().unwrap_or(0);
        let mut samples = try_vec::<f32>(largest, "patch samples on the scan grid")?;
        // Mean: the sum goes to `dst`, the weights to a buffer over the patches' union box.
        // Max: `acc` holds whether a voxel has a value yet.
        let mut acc = try_vec::<f32>(union.len(), "scan map weights")?;
        for (p, b) in self.patches.iter().zip(&boxes) {
            let Some(b) = b else { continue };
            let s = &mut samples[..b.len()];
            self.sample(p, b, s);
            for_box(b, &union, self.scan.dims, |i, at, u| {
                let v = s[i];
                if v.is_nan() {
                    return;
                }
                match self.merge {
                    Merge::Mean => {
                        dst[at] += p.weight * v;
                        acc[u] += p.weight;
                    }
                    Merge::Max => {
                        if acc[u] == 0.0 || v > dst[at] {
                            dst[at] = v;
                        }
                        acc[u] = 1.0;
                    }
                }
            });
        }
        if self.merge == Merge::Mean {
            for_box(&union, &union, self.scan.dims, |_, at, u| {
                if acc[u] > 0.0 {
                    dst[at] /= acc[u];
                }
            });
        }
        Ok(())
    }

    /// The scan voxels whose centres may fall inside a patch (its voxels plus the half-voxel
    /// border), or `None` when it misses the scan.
    fn bounds(&self, p: &Placed) -> Option<Box3> {
        let g = &p.patch.geometry;
        let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for corner in 0..8 {
            let idx: [f64; 3] = std::array::from_fn(|a| {
                if corner >> a & 1 == 0 {
                    -0.5
                } else {
                    g.dims[a] as f64 - 0.5
                }
            });
            let u = self.scan.world_to_index(g.index_to_world(idx));
            for a in 0..3 {
                lo[a] = lo[a].min(u[a]);
                hi[a] = hi[a].max(u[a]);
            }
        }
        let mut b = Box3 {
            start: [0; 3],
            size: [0; 3],
        };
        for a in 0..3 {
            let n = self.scan.dims[a] as f64;
            let (l, h) = (
                (lo[a].floor() - 1.0).max(0.0),
                (hi[a].ceil() + 1.0).min(n - 1.0),
            );
            // NaN bounds (never from checked geometry) miss the scan too.
            if l.partial_cmp(&h).is_none_or(|o| o.is_gt()) {
                return None;
            }
            b.start[a] = l as usize;
            b.size[a] = (h - l) as usize + 1;
        }
        Some(b)
    }

    /// The patch's values at the scan voxels of `b` (z-major), NaN where outside the patch.
    fn sample(&self, p: &Placed, b: &Box3, dst: &mut [f32]) {
        let g = &p.patch.geometry;
        let at = |d: [f64; 3]| {
            let start = b.start.map(|s| s as f64);
            g.world_to_index(
                self.scan
                    .index_to_world(std::array::from_fn(|a| start[a] + d[a])),
            )
        };
        let u0 = at([0.0; 3]);
        let step = |a: usize| {
            let mut e = [0.0; 3];
            e[a] = 1.0;
            let u = at(e);
            std::array::from_fn(|c| u[c] - u0[c])
        };
        let map = Affine {
            u0,
            ux: step(0),
            uy: step(1),
            uz: step(2),
        };
        match self.merge {
            Merge::Mean => {
                let out = PatchSpec {
                    size: b.size,
                    spacing_mm: [1.0; 3],
                    outside_hu: f32::NAN,
                };
                resample_affine(&p.patch, &map, &out, dst);
            }
            Merge::Max => nearest(&p.patch, &map, b.size, dst),
        }
    }
}

/// Nearest-neighbour samples as ITK's `NearestNeighborInterpolateImageFunction`: inside when
/// `-0.5 <= u < n - 0.5` on every axis, index `floor(u + 0.5)`; NaN outside.
fn nearest(patch: &Volume, map: &Affine, size: [usize; 3], dst: &mut [f32]) {
    let n = patch.geometry.dims;
    let mut it = dst.iter_mut();
    for k in 0..size[2] {
        for j in 0..size[1] {
            for i in 0..size[0] {
                let (fi, fj, fk) = (i as f64, j as f64, k as f64);
                let u: [f64; 3] = std::array::from_fn(|c| {
                    map.u0[c] + fi * map.ux[c] + fj * map.uy[c] + fk * map.uz[c]
                });
                let inside = (0..3).all(|a| u[a] >= -0.5 && u[a] < n[a] as f64 - 0.5);
                let v = if inside {
                    let x = u.map(|c| (c + 0.5).floor() as usize);
                    patch.value(x[0].min(n[0] - 1), x[1].min(n[1] - 1), x[2].min(n[2] - 1))
                } else {
                    f32::NAN
                };
                if let Some(d) = it.next() {
                    *d = v;
                }
            }
        }
    }
}

fn union(a: Box3, b: Box3) -> Box3 {
    let mut out = a;
    for i in 0..3 {
        let end = (a.start[i] + a.size[i]).max(b.start[i] + b.size[i]);
        out.start[i] = a.start[i].min(b.start[i]);
        out.size[i] = end - out.start[i];
    }
    out
}

/// Calls `f(index in b, index in the scan, index in u)` for every voxel of `b`, a box inside
/// `u`, itself inside a scan of `dims`.
fn for_box(b: &Box3, u: &Box3, dims: [usize; 3], mut f: impl FnMut(usize, usize, usize)) {
    let mut i = 0;
    for k in b.start[2]..b.start[2] + b.size[2] {
        for j in b.start[1]..b.start[1] + b.size[1] {
            let scan_row = (k * dims[1] + j) * dims[0];
            let u_row = ((k - u.start[2]) * u.size[1] + (j - u.start[1])) * u.size[0];
            for x in b.start[0]..b.start[0] + b.size[0] {
                f(i, scan_row + x, u_row + x - u.start[0]);
                i += 1;
            }
        }
    }
}
