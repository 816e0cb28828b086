//! A wide look at the requested point at twice the model's spacing, and the mask it joins. The
//! mirror of [`crate::second_look`]: the model's patch (64 mm at 1 mm for the default model)
//! holds a 50 mm mass with little context around it, and masses are where most of the missed
//! nodule voxels lie; the same fully convolutional weights read a field twice as wide at 2 mm,
//! where such a mass looks like the 20–30 mm nodules the model segments well. A component of the
//! wide look's mask joins the final mask when it is large ([`WideLook::min_component_mm3`] of
//! the patch: a mass, not a blob the coarse grid makes of a small nodule or a vessel) and the
//! first look's mean reaches [`WideLook::support`] in it (it extends what the first look saw).
//! The study that chose it, on calibration scans, and its test are in docs/model-stages.md ("A
//! wide look at twice the spacing"). No model-file setting carries it, so the engine's point
//! calls do not run it.
//!
//! Grids: both patches have the same dimensions (z, y, x; x fastest) and centre voxel
//! (`dims / 2` on each axis, `crate::patch`'s convention), the wide look's spacing twice the
//! first's. First-look voxel `i` then lies at wide coordinate `(i − c) / 2 + c`, `c = dims / 2`
//! — on a wide voxel for even `i − c`, halfway between two for odd — so the wide mean is brought
//! onto the first grid trilinearly ([`onto_first_grid`]); every first-look voxel is covered.

use crate::error::{try_vec, Error, Result};
use crate::mask::{Grid, PatchGrid};
use crate::patch::PatchSpec;

/// The setting of a wide look: how its components join the final mask.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
pub struct WideLook {
    /// Mask threshold of the wide look's mean (on the first grid).
    pub threshold: f32,
    /// A wide component joins only if the first look's mean reaches this in one of its voxels.
    pub support: f32,
    /// ... and if it holds at least this many mm³ of the first look's patch.
    pub min_component_mm3: f64,
}

impl WideLook {
    /// The wide look's voxel spacing: twice the first's.
    pub fn spacing_mm(first_spacing_mm: [f64; 3]) -> [f64; 3] {
        first_spacing_mm.map(|s| s * 2.0)
    }

    /// The wide look's patch: the first's size and outside value at twice its spacing.
    pub fn patch_spec(first: &PatchSpec) -> PatchSpec {
        PatchSpec {
            spacing_mm: Self::spacing_mm(first.spacing_mm),
            ..*first
        }
    }

    /// Fails unless the threshold is in (0, 1], the support in [0, 1] and the least component
    /// volume finite and not negative.
    pub fn check(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(Error::invalid(format!(
                "wide look threshold {} must be in (0, 1]",
                self.threshold
            )));
        }
        if !(0.0..=1.0).contains(&self.support) {
            return Err(Error::invalid(format!(
                "wide look support {} must be in [0, 1]",
                self.support
            )));
        }
        let v = self.min_component_mm3;
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::invalid(format!(
                "wide look min_component_mm3 {v} must be finite and >= 0"
            )));
        }
        Ok(())
    }
}

/// Where first-look voxel `i` of an axis of `n` lies on the wide look's axis: the wide voxel
/// at or below it, the one above (the last voxel stands in beyond the edge) and the weight of
/// the one above.
fn wide_coordinate(i: usize, n: usize) -> (usize, usize, f32) {
    let c = (n / 2) as f64;
    let u = (i as f64 - c) / 2.0 + c;
    let k = (u.floor() as usize).min(n - 1);
    (k, (k + 1).min(n - 1), (u - k as f64) as f32)
}

/// The wide look's mean on the first grid, trilinear between the wide voxels around each
/// first-look voxel's centre.
pub fn onto_first_grid(wide: &[f32], dims_zyx: [usize; 3]) -> Result<Vec<f32>> {
    Grid::new(wide.len(), dims_zyx)?;
    let [nz, ny, nx] = dims_zyx;
    let at = |z: usize, y: usize, x: usize| wide[(z * ny + y) * nx + x];
    let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
    let mut out: Vec<f32> = try_vec(wide.len(), "the wide look on the first grid")?;
    for z in 0..nz {
        let (z0, z1, wz) = wide_coordinate(z, nz);
        for y in 0..ny {
            let (y0, y1, wy) = wide_coordinate(y, ny);
            for x in 0..nx {
                let (x0, x1, wx) = wide_coordinate(x, nx);
                let plane = |z: usize| {
                    lerp(
                        lerp(at(z, y0, x0), at(z, y0, x1), wx),
                        lerp(at(z, y1, x0), at(z, y1, x1), wx),
                        wy,
                    )
                };
                out[(z * ny + y) * nx + x] = lerp(plane(z0), plane(z1), wz);
            }
        }
    }
    Ok(out)
}

/// Adds to `mask` (0/1 on `grid`, the first look's final mask) the 26-connected components of
/// the wide mean on the first grid (`wide_on_first`, [`onto_first_grid`]) at `look.threshold`
/// that hold at least `look.min_component_mm3` and in which the first mean reaches
/// `look.support`; returns the mask's voxel count.
pub fn join(
    first: &[f32],
    wide_on_first: &[f32],
    grid: PatchGrid,
    look: WideLook,
    mask: &mut [u8],
) -> Result<u64> {
    look.check()?;
    let cells = Grid::new(first.len(), grid.dims_zyx)?;
    for len in [wide_on_first.len(), mask.len()] {
        Grid::new(len, grid.dims_zyx)?;
    }
    let voxel_mm3 = grid.voxel_mm3();
    let kept = cells.components_where(
        |i| wide_on_first[i] >= look.threshold,
        |c| {
            c.len() as f64 * voxel_mm3 >= look.min_component_mm3
                && c.iter().any(|&i| first[i as usize] >= look.support)
        },
    )?;
    for i in kept {
        mask[i as usize] = 1;
    }
    Ok(mask.iter().map(|&m| u64::from(m != 0)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const LOOK: WideLook = WideLook {
        threshold: 0.6,
        support: 0.4,
        min_component_mm3: 8.0,
    };

    /// First-look voxel i lies at wide coordinate (i − 4) / 2 + 4 on an axis of 8.
    #[test]
    fn first_voxels_fall_on_or_between_wide_voxels() {
        assert_eq!(wide_coordinate(4, N), (4, 5, 0.0));
        assert_eq!(wide_coordinate(0, N), (2, 3, 0.0));
        assert_eq!(wide_coordinate(1, N), (2, 3, 0.5));
        assert_eq!(wide_coordinate(7, N), (5, 6, 0.5));
        // An odd axis: centre voxel 2 of 5; the last voxel stands in beyond the edge.
        assert_eq!(wide_coordinate(2, 5), (2, 3, 0.0));
        assert_eq!(wide_coordinate(4, 5), (3, 4, 0.0));
        assert_eq!(wide_coordinate(0, 1), (0, 0, 0.0));
    }

    /// Trilinear interpolation reproduces a linear field exactly: the first grid sees the
    /// field at its own voxel centres.
    #[test]
    fn a_linear_field_is_read_at_the_first_voxel_centres() {
        let field = |z: f32, y: f32, x: f32| 0.5 * z - 0.25 * y + 0.125 * x + 1.0;
        let mut wide = vec![0.0; N * N * N];
        for z in 0..N {
            for y in 0..N {
                for x in 0..N {
                    wide[at(z, y, x)] = field(z as f32, y as f32, x as f32);
                }
            }
        }
        let on_first = onto_first_grid(&wide, DIMS).unwrap();
        let u = |i: usize| (i as f32 - 4.0) / 2.0 + 4.0;
        for z in 0..N {
            for y in 0..N {
                for x in 0..N {
                    let want = field(u(z), u(y), u(x));
                    assert!((on_first[at(z, y, x)] - want).abs() < 1e-6, "({z},{y},{x})");
                }
            }
        }
    }

    /// A block of the wide mean: its component on the first grid has 2³ first voxels per wide
    /// voxel of the block (less the half-weighted rim under the threshold).
    fn wide_block(z: std::ops::Range<usize>, v: f32) -> Vec<f32> {
        let mut wide = vec![0.0; N * N * N];
        for zz in z {
            for y in 3..6 {
                for x in 3..6 {
                    wide[at(zz, y, x)] = v;
                }
            }
        }
        wide
    }

    #[test]
    fn large_supported_components_join_the_mask() {
        let wide = onto_first_grid(&wide_block(3..6, 1.0), DIMS).unwrap();
        let mut first = vec![0.0; N * N * N];
        let mut mask = vec![0u8; N * N * N];
        mask[0] = 1; // the first look's mask is kept
        let joined = |first: &[f32], look: WideLook, mask: &mut [u8]| {
            join(first, &wide, grid(), look, mask).unwrap()
        };
        // No support: nothing joins.
        assert_eq!(joined(&first, LOOK, &mut mask), 1);
        first[at(4, 4, 4)] = 0.4;
        let n = joined(&first, LOOK, &mut mask);
        // Wide voxels 3..6 hold first voxels 2..=6 at 1 per axis (5³); the rim between a
        // block voxel and a zero reads 0.5 or less, under the threshold. Plus the mask's 1.
        assert_eq!(n, 125 + 1);
        assert_eq!(mask[at(2, 2, 2)], 1);
        assert_eq!(mask[at(1, 4, 4)], 0);
        // Too small: a floor above the component's 125 mm³ keeps it out.
        let mut mask2 = vec![0u8; N * N * N];
        let small = WideLook {
            min_component_mm3: 126.0,
            ..LOOK
        };
        assert_eq!(joined(&first, small, &mut mask2), 0);
    }

    #[test]
    fn bad_settings_and_lengths_are_refused() {
        for look in [
            WideLook {
                threshold: 0.0,
                ..LOOK
            },
            WideLook {
                support: 1.5,
                ..LOOK
            },
            WideLook {
                min_component_mm3: f64::NAN,
                ..LOOK
            },
            WideLook {
                min_component_mm3: -1.0,
                ..LOOK
            },
        ] {
            assert!(look.check().is_err(), "{look:?}");
        }
        let v = vec![0.0; N * N * N];
        let mut mask = vec![0u8; N * N * N - 1];
        assert!(join(&v, &v, grid(), LOOK, &mut mask).is_err());
        assert!(onto_first_grid(&v[1..], DIMS).is_err());
    }

    #[test]
    fn twice_the_spacing() {
        assert_eq!(WideLook::spacing_mm([1.0, 1.0, 1.25]), [2.0, 2.0, 2.5]);
    }
}
