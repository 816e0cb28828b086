//! HU patches resampled around world points, their normalisation, and sphere label masks.
//!
//! Patch grid convention (part of the API): the patch axes are the world axes (LPS), voxel
//! `idx = (i, j, k)` of a patch centred at `c` sits at `c + (idx - size/2) * spacing` (integer
//! division, so voxel 32 of 64 is exactly the centre); buffers are z-major with x fastest.
//!
//! Resampling is trilinear and matches SimpleITK's `Resample` with `sitkLinear` on the same
//! output grid (the oracle in `tests/geometry_simpleitk.rs`), border included: a sample point
//! whose continuous index `u` satisfies `-0.5 <= u < n - 0.5` on every axis is inside the scan;
//! in the outer half-voxel (`-0.5 <= u < 0` or `n - 1 < u < n - 0.5`) the edge voxel's value
//! is extended (neighbours are clamped to the grid, no extrapolation); anything else, or a
//! non-finite index, gets `PatchSpec::outside_hu`.

mod resample;

use crate::error::{Error, Result};
use crate::volume::Volume;

pub use resample::{extract_hu, reaches_outside};
pub(crate) use resample::{resample_affine, Affine};

/// Largest patch edge accepted, in voxels: far beyond any model input, small enough that a
/// typo (or an uninitialised C struct) is refused instead of allocating gigabytes.
pub const MAX_PATCH_AXIS: usize = 1024;
/// Largest patch accepted, in voxels (256³: 64 MiB of f32).
pub const MAX_PATCH_VOXELS: usize = 256 * 256 * 256;

/// What patch to cut: size in voxels (x, y, z), spacing in mm, and the value outside the scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchSpec {
    pub size: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub outside_hu: f32,
}

impl Default for PatchSpec {
    fn default() -> Self {
        PatchSpec {
            size: [64; 3],
            spacing_mm: [1.0; 3],
            outside_hu: -1000.0,
        }
    }
}

impl PatchSpec {
    /// A cube of `n³` voxels at `spacing_mm` isotropic, air outside.
    pub fn cube(n: usize, spacing_mm: f64) -> Self {
        PatchSpec {
            size: [n; 3],
            spacing_mm: [spacing_mm; 3],
            ..Self::default()
        }
    }

    /// Voxel count, once the spec is valid (see [`PatchSpec::validate`]).
    pub fn len(&self) -> usize {
        self.size.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks sizes (non-zero, ≤ [`MAX_PATCH_AXIS`], ≤ [`MAX_PATCH_VOXELS`] in all), spacing
    /// (finite, > 0) and `outside_hu` (finite); returns the voxel count.
    pub fn validate(&self) -> Result<usize> {
        if self.size.iter().any(|&n| n == 0 || n > MAX_PATCH_AXIS) {
            return Err(Error::invalid(format!(
                "patch size {:?} must be between 1 and {MAX_PATCH_AXIS} voxels per axis",
                self.size
            )));
        }
        let n = self.len();
        if n > MAX_PATCH_VOXELS {
            return Err(Error::invalid(format!(
                "patch size {:?} has {n} voxels, more than the limit of {MAX_PATCH_VOXELS}",
                self.size
            )));
        }
        if self.spacing_mm.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::invalid(format!(
                "patch spacing {:?} mm must be finite and positive",
                self.spacing_mm
            )));
        }
        if !self.outside_hu.is_finite() {
            return Err(Error::invalid(format!(
                "outside_hu {} must be finite",
                self.outside_hu
            )));
        }
        Ok(n)
    }

    /// World offset (mm) of patch voxel `idx` from the patch centre: `(idx - size/2) * spacing`.
    #[inline]
    pub fn offset_mm(&self, idx: [usize; 3]) -> [f64; 3] {
        std::array::from_fn(|a| (idx[a] as f64 - (self.size[a] / 2) as f64) * self.spacing_mm[a])
    }

    /// World point (mm) of patch voxel `idx` for a patch centred at `center_world`.
    #[inline]
    pub fn voxel_world(&self, center_world: [f64; 3], idx: [usize; 3]) -> [f64; 3] {
        let o = self.offset_mm(idx);
        std::array::from_fn(|a| center_world[a] + o[a])
    }
    /// The patch grid around `center_world` as a volume geometry (identity direction, origin
    /// at patch voxel 0): where a patch map lies in the world, for writing or resampling it.
    pub fn geometry(&self, center_world: [f64; 3]) -> Result<crate::geometry::Geometry> {
        self.validate()?;
        crate::geometry::Geometry::new(
            self.size,
            self.spacing_mm,
            self.voxel_world(center_world, [0, 0, 0]),
            crate::geometry::IDENTITY,
        )
    }
}

/// Intensity window mapped to [0, 1] for the model: `clip((hu - lo) / (hi - lo), 0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HuWindow {
    pub lo: f32,
    pub hi: f32,
}

impl Default for HuWindow {
    fn default() -> Self {
        HuWindow {
            lo: -1000.0,
            hi: 400.0,
        }
    }
}

impl HuWindow {
    fn validate(&self) -> Result<()> {
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo < self.hi) {
            return Err(Error::invalid(format!(
                "HU window [{}, {}] must be finite with lo < hi",
                self.lo, self.hi
            )));
        }
        Ok(())
    }

    #[inline]
    fn apply(&self, hu: f32) -> f32 {
        ((hu - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }
}

/// A patch with the validation in one place: `Vec` variant of [`extract_hu`].
pub fn extract_patch(
    volume: &Volume,
    center_world: [f64; 3],
    spec: &PatchSpec,
) -> Result<Vec<f32>> {
    let n = spec.validate()?;
    let mut dst = crate::error::try_vec(n, "patch")?;
    extract_hu(volume, center_world, spec, &mut dst)?;
    Ok(dst)
}

/// Fails on the first NaN: a NaN in HU means a broken upstream, and silently mapping it to some
/// window value would hide that from the model and the user. `±inf` clip to 1 / 0 like any
/// out-of-window value.
fn reject_nan(hu: &[f32]) -> Result<()> {
    match hu.iter().position(|v| v.is_nan()) {
        Some(i) => Err(Error::invalid(format!("HU value at index {i} is NaN"))),
        None => Ok(()),
    }
}

/// `dst[i] = clip((hu[i] - lo) / (hi - lo), 0, 1)`. Errors (InvalidArgument) on a bad window,
/// mismatched lengths or any NaN input; `dst` is untouched on error.
pub fn normalize(hu: &[f32], window: HuWindow, dst: &mut [f32]) -> Result<()> {
    window.validate()?;
    if hu.len() != dst.len() {
        return Err(Error::invalid(format!(
            "normalize: input has {} values, destination {}",
            hu.len(),
            dst.len()
        )));
    }
    reject_nan(hu)?;
    for (d, &h) in dst.iter_mut().zip(hu) {
        *d = window.apply(h);
    }
    Ok(())
}

/// In-place [`normalize`]; the buffer is untouched on error.
pub fn normalize_in_place(values: &mut [f32], window: HuWindow) -> Result<()> {
    window.validate()?;
    reject_nan(values)?;
    for v in values.iter_mut() {
        *v = window.apply(*v);
    }
    Ok(())
}

/// Rasterises a ball on the patch grid: voxel = 1 iff its world point (see the module docs) is
/// within `diameter_mm / 2` of `nodule_center_world` (boundary included), else 0. Returns the
/// number of voxels set. A zero diameter marks only a voxel lying exactly on the centre.
pub fn sphere_mask(
    spec: &PatchSpec,
    patch_center_world: [f64; 3],
    nodule_center_world: [f64; 3],
    diameter_mm: f64,
    dst: &mut [u8],
) -> Result<usize> {
    let n = spec.validate()?;
    if dst.len() != n {
        return Err(Error::invalid(format!(
            "mask destination holds {} bytes, the patch {:?} has {n} voxels",
            dst.len(),
            spec.size
        )));
    }
    check_finite("patch centre", patch_center_world)?;
    check_finite("nodule centre", nodule_center_world)?;
    if !diameter_mm.is_finite() || diameter_mm < 0.0 {
        return Err(Error::invalid(format!(
            "diameter {diameter_mm} mm must be finite and >= 0"
        )));
    }
    let r2 = (diameter_mm / 2.0).powi(2);
    // Offset of patch voxel 0 from the nodule centre, then separable squared distances.
    let o = spec.voxel_world(patch_center_world, [0, 0, 0]);
    let axis_d2 = |a: usize| -> Vec<f64> {
        (0..spec.size[a])
            .map(|i| (o[a] + i as f64 * spec.spacing_mm[a] - nodule_center_world[a]).powi(2))
            .collect()
    };
    let (dx2, dy2, dz2) = (axis_d2(0), axis_d2(1), axis_d2(2));
    let mut count = 0;
    let mut it = dst.iter_mut();
    for z2 in &dz2 {
        for y2 in &dy2 {
            for (x2, d) in dx2.iter().zip(it.by_ref()) {
                let inside = x2 + y2 + z2 <= r2;
                *d = inside as u8;
                count += inside as usize;
            }
        }
    }
    Ok(count)
}

fn check_finite(what: &str, p: [f64; 3]) -> Result<()> {
    if p.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} {p:?} must be finite")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn grid_convention() {
        let s = PatchSpec {
            size: [64, 5, 4],
            spacing_mm: [1.0, 0.5, 2.0],
            outside_hu: -1000.0,
        };
        assert_eq!(
            s.voxel_world([10.0, 20.0, 30.0], [32, 2, 2]),
            [10.0, 20.0, 30.0]
        );
        assert_eq!(s.voxel_world([0.0; 3], [0, 0, 0]), [-32.0, -1.0, -4.0]);
        assert_eq!(s.voxel_world([0.0; 3], [63, 4, 3]), [31.0, 1.0, 2.0]);
    }

    #[test]
    fn spec_validation() {
        let bad = [
            PatchSpec {
                size: [0, 64, 64],
                ..Default::default()
            },
            PatchSpec {
                size: [MAX_PATCH_AXIS + 1, 1, 1],
                ..Default::default()
            },
            PatchSpec {
                size: [1024, 1024, 1024],
                ..Default::default()
            },
            PatchSpec {
                spacing_mm: [1.0, 0.0, 1.0],
                ..Default::default()
            },
            PatchSpec {
                spacing_mm: [1.0, f64::NAN, 1.0],
                ..Default::default()
            },
            PatchSpec {
                spacing_mm: [-1.0, 1.0, 1.0],
                ..Default::default()
            },
            PatchSpec {
                outside_hu: f32::NAN,
                ..Default::default()
            },
        ];
        for s in bad {
            assert_eq!(
                s.validate().unwrap_err().kind,
                ErrorKind::InvalidArgument,
                "{s:?}"
            );
        }
        assert_eq!(PatchSpec::default().validate().unwrap(), 64 * 64 * 64);
    }

    #[test]
    fn normalize_window() {
        let hu = [
            -2000.0,
            -1000.0,
            -300.0,
            400.0,
            1000.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut out = [0.0; 7];
        normalize(&hu, HuWindow::default(), &mut out).unwrap();
        assert_eq!(out, [0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0]);
        let mut v = hu;
        normalize_in_place(&mut v, HuWindow::default()).unwrap();
        assert_eq!(v, out);
    }

    #[test]
    fn normalize_rejects_nan_and_bad_windows() {
        let mut v = [0.0, f32::NAN, 1.0];
        let e = normalize_in_place(&mut v, HuWindow::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("index 1 is NaN"), "{e}");
        assert_eq!(v[0], 0.0, "untouched on error");
        let mut out = [0.0; 3];
        assert!(normalize(&[0.0; 3], HuWindow { lo: 1.0, hi: 1.0 }, &mut out).is_err());
        assert!(normalize(
            &[0.0; 3],
            HuWindow {
                lo: f32::NAN,
                hi: 1.0
            },
            &mut out
        )
        .is_err());
        assert!(normalize(&[0.0; 2], HuWindow::default(), &mut out).is_err());
    }

    #[test]
    fn sphere_mask_volume_and_symmetry() {
        let spec = PatchSpec::default();
        let mut m = vec![0u8; spec.len()];
        // A 3 mm ball on a 1 mm grid is the centre, its 6 faces and 12 edges (19 voxels);
        // larger balls approach 4/3·π·r³.
        for (d, tol) in [(3.0, 0.35), (10.0, 0.05), (30.0, 0.01)] {
            let n = sphere_mask(&spec, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], d, &mut m).unwrap();
            let expect = 4.0 / 3.0 * std::f64::consts::PI * (d / 2.0f64).powi(3);
            assert_eq!(n, m.iter().map(|&v| v as usize).sum::<usize>());
            assert!(
                (n as f64 - expect).abs() / expect < tol,
                "d={d}: {n} vs {expect}"
            );
            if d == 3.0 {
                assert_eq!(n, 19);
            }
            // Mirror symmetry about voxel 32 on every axis.
            let at = |i: usize, j: usize, k: usize| m[(k * 64 + j) * 64 + i];
            for k in 1..64 {
                for j in 1..64 {
                    for i in 1..64 {
                        assert_eq!(at(i, j, k), at(64 - i, j, k));
                        assert_eq!(at(i, j, k), at(i, 64 - j, k));
                        assert_eq!(at(i, j, k), at(i, j, 64 - k));
                    }
                }
            }
        }
    }

    #[test]
    fn sphere_mask_rejects_bad_input() {
        let spec = PatchSpec::cube(8, 1.0);
        let mut m = vec![0u8; 8 * 8 * 8];
        assert!(sphere_mask(&spec, [0.0; 3], [0.0; 3], -1.0, &mut m).is_err());
        assert!(sphere_mask(&spec, [0.0; 3], [f64::NAN, 0.0, 0.0], 1.0, &mut m).is_err());
        assert!(sphere_mask(&spec, [0.0; 3], [0.0; 3], 1.0, &mut m[1..]).is_err());
        assert_eq!(
            sphere_mask(&spec, [0.0; 3], [0.0; 3], 0.0, &mut m).unwrap(),
            1
        );
    }
}
