//! Trilinear resampling of a patch from the scan grid (border rules in the parent module docs).
//!
//! The world → continuous-index map is affine and the patch grid is regular, so the index of
//! patch voxel `(i, j, k)` is `u0 + i·ux + j·uy + k·uz` with four constant vectors computed once;
//! the inner loop does no matrix maths, no allocation, and the pixel type is dispatched once.

use super::{check_finite, PatchSpec};
use crate::error::{Error, Result};
use crate::volume::{Sample, Volume};
use crate::with_pixels;

/// Trilinear HU patch around `center_world` into `dst` (`spec.size` voxels, z-major, x fastest).
///
/// Errors (all `InvalidArgument` except the channel check, `Unsupported`): a multi-channel
/// volume, an invalid spec (see [`PatchSpec::validate`]), `dst.len()` not the patch voxel
/// count, a non-finite centre, or a volume whose data length disagrees with its geometry.
pub fn extract_hu(volume: &Volume, center_world: [f64; 3], spec: &PatchSpec, dst: &mut [f32]) -> Result<()> {
    volume.require_scalar()?;
    let n = spec.validate()?;
    if dst.len() != n {
        return Err(Error::invalid(format!(
            "patch destination holds {} floats, the patch {:?} has {n} voxels",
            dst.len(),
            spec.size
        )));
    }
    check_finite("patch centre", center_world)?;
    let g = &volume.geometry;
    if volume.data.len() != g.voxel_count() {
        return Err(Error::invalid(format!(
            "volume data has {} samples but dims {:?} need {}",
            volume.data.len(),
            g.dims,
            g.voxel_count()
        )));
    }
    let u0 = g.world_to_index(spec.voxel_world(center_world, [0, 0, 0]));
    // Index step per patch axis: the linear part of world_to_index applied to spacing · e_a.
    let step = |a: usize| -> [f64; 3] {
        let mut w = g.origin;
        w[a] += spec.spacing_mm[a];
        let u = g.world_to_index(w);
        std::array::from_fn(|c| u[c])
    };
    let map = Affine { u0, ux: step(0), uy: step(1), uz: step(2) };
    let grid = Grid::new(g.dims);
    with_pixels!(&volume.data, |s| resample(s, &grid, &map, spec, dst));
    Ok(())
}

/// Continuous scan index of patch voxel (i, j, k) = u0 + i·ux + j·uy + k·uz.
struct Affine {
    u0: [f64; 3],
    ux: [f64; 3],
    uy: [f64; 3],
    uz: [f64; 3],
}

/// Scan extents, precomputed as the bounds the inner loop compares against.
struct Grid {
    dims: [usize; 3],
    /// `n - 1`: the fast path needs `0 <= u < n - 1` (both neighbours inside, no clamping).
    last: [f64; 3],
    /// `n - 0.5`: the end of the inside region (exclusive), as ITK's `IsInsideBuffer`.
    end: [f64; 3],
    stride_y: usize,
    stride_z: usize,
}

impl Grid {
    fn new(dims: [usize; 3]) -> Self {
        Grid {
            dims,
            last: dims.map(|n| (n - 1) as f64),
            end: dims.map(|n| n as f64 - 0.5),
            stride_y: dims[0],
            stride_z: dims[0] * dims[1],
        }
    }
}

fn resample<T: Sample>(src: &[T], grid: &Grid, map: &Affine, spec: &PatchSpec, dst: &mut [f32]) {
    let [px, py, _] = spec.size;
    for (k, plane) in dst.chunks_exact_mut(px * py).enumerate() {
        for (j, row) in plane.chunks_exact_mut(px).enumerate() {
            let (jf, kf) = (j as f64, k as f64);
            let base: [f64; 3] =
                std::array::from_fn(|c| map.u0[c] + jf * map.uy[c] + kf * map.uz[c]);
            for (i, d) in row.iter_mut().enumerate() {
                let f = i as f64;
                let u = [base[0] + f * map.ux[0], base[1] + f * map.ux[1], base[2] + f * map.ux[2]];
                *d = sample(src, grid, u, spec.outside_hu);
            }
        }
    }
}

#[inline(always)]
fn sample<T: Sample>(src: &[T], g: &Grid, u: [f64; 3], outside: f32) -> f32 {
    if (0..3).all(|a| u[a] >= 0.0 && u[a] < g.last[a]) {
        // Interior: truncation is floor for non-negative values, and x0 + 1 is in the grid.
        let x0 = [u[0] as usize, u[1] as usize, u[2] as usize];
        let f = [(u[0] - x0[0] as f64) as f32, (u[1] - x0[1] as f64) as f32, (u[2] - x0[2] as f64) as f32];
        let i000 = x0[0] + x0[1] * g.stride_y + x0[2] * g.stride_z;
        return trilinear(src, [i000, i000 + 1], [0, g.stride_y], [0, g.stride_z], f);
    }
    // `!(a && b)` so that NaN indices count as outside.
    if !(0..3).all(|a| u[a] >= -0.5 && u[a] < g.end[a]) {
        return outside;
    }
    // Border half-voxel (or a 1-voxel-thick axis): clamp both neighbours into the grid.
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    let mut f = [0f32; 3];
    for a in 0..3 {
        let fl = u[a].floor();
        let n = g.dims[a] as isize;
        let b = fl as isize;
        lo[a] = b.clamp(0, n - 1) as usize;
        hi[a] = (b + 1).clamp(0, n - 1) as usize;
        f[a] = (u[a] - fl) as f32;
    }
    trilinear(
        src,
        [lo[0] + lo[1] * g.stride_y + lo[2] * g.stride_z, hi[0] + lo[1] * g.stride_y + lo[2] * g.stride_z],
        [0, (hi[1] - lo[1]) * g.stride_y],
        [0, (hi[2] - lo[2]) * g.stride_z],
        f,
    )
}

/// Interpolates from the two x-neighbours `x` (at y, z offsets 0), offset by `dy[1]`/`dz[1]`.
#[inline(always)]
fn trilinear<T: Sample>(src: &[T], x: [usize; 2], dy: [usize; 2], dz: [usize; 2], f: [f32; 3]) -> f32 {
    let v = |i: usize| src[i].to_f32();
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let row = |o: usize| lerp(v(x[0] + o), v(x[1] + o), f[0]);
    let plane = |o: usize| lerp(row(o + dy[0]), row(o + dy[1]), f[1]);
    lerp(plane(dz[0]), plane(dz[1]), f[2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::geometry::Geometry;
    use crate::patch::{extract_patch, PatchSpec};
    use crate::volume::PixelData;

    /// A linear ramp in world x: trilinear interpolation reproduces it exactly inside.
    fn ramp(direction: [[f64; 3]; 3]) -> Volume {
        let g = Geometry::new([20, 30, 12], [0.7, 0.8, 2.5], [-5.0, -10.0, -12.0], direction).unwrap();
        let mut v = Vec::new();
        for k in 0..12 {
            for j in 0..30 {
                for i in 0..20 {
                    let w = g.index_to_world([i as f64, j as f64, k as f64]);
                    v.push((2.0 * w[0] - w[1] + 0.5 * w[2]) as f32);
                }
            }
        }
        Volume::new(g, PixelData::F32(v)).unwrap()
    }

    #[test]
    fn reproduces_a_linear_field_under_flips() {
        for dir in [crate::geometry::IDENTITY, [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]] {
            let vol = ramp(dir);
            let c = vol.geometry.index_to_world([10.0, 15.0, 6.0]);
            let spec = PatchSpec::cube(8, 0.9);
            let p = extract_patch(&vol, c, &spec).unwrap();
            for k in 0..8 {
                for j in 0..8 {
                    for i in 0..8 {
                        let w = spec.voxel_world(c, [i, j, k]);
                        let expect = (2.0 * w[0] - w[1] + 0.5 * w[2]) as f32;
                        let got = p[(k * 8 + j) * 8 + i];
                        assert!((got - expect).abs() < 1e-3, "{dir:?} {i},{j},{k}: {got} vs {expect}");
                    }
                }
            }
        }
    }

    #[test]
    fn border_half_voxel_extends_the_edge_and_beyond_is_outside() {
        // 1-D along x: values 10, 20, 30 at x = 0, 1, 2 (spacing 1, origin 0).
        let g = Geometry::axis_aligned([3, 1, 1], [1.0; 3], [0.0; 3]).unwrap();
        let vol = Volume::new(g, PixelData::I16(vec![10, 20, 30])).unwrap();
        let spec = PatchSpec { size: [1, 1, 1], ..Default::default() };
        let at = |x: f64| extract_patch(&vol, [x, 0.0, 0.0], &spec).unwrap()[0];
        assert_eq!(at(-0.5), 10.0);
        assert_eq!(at(-0.3), 10.0);
        assert_eq!(at(0.5), 15.0);
        assert_eq!(at(2.3), 30.0);
        assert_eq!(at(2.5), -1000.0);
        assert_eq!(at(-0.51), -1000.0);
        assert_eq!(at(1e300), -1000.0);
        // y and z are 1 voxel thick: inside for |offset| < 0.5.
        assert_eq!(extract_patch(&vol, [1.0, 0.4, -0.4], &spec).unwrap()[0], 20.0);
    }

    #[test]
    fn validates_arguments() {
        let vol = ramp(crate::geometry::IDENTITY);
        let spec = PatchSpec::cube(4, 1.0);
        let mut dst = vec![0.0; 64];
        let e = extract_hu(&vol, [f64::NAN, 0.0, 0.0], &spec, &mut dst).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = extract_hu(&vol, [0.0; 3], &spec, &mut dst[..63]).unwrap_err();
        assert!(e.message.contains("63"), "{e}");
        let zero = PatchSpec { size: [4, 0, 4], ..spec };
        assert!(extract_hu(&vol, [0.0; 3], &zero, &mut dst).is_err());
        let mut multi = vol.clone();
        multi.channels = 2;
        assert_eq!(extract_hu(&multi, [0.0; 3], &spec, &mut dst).unwrap_err().kind, ErrorKind::Unsupported);
        let mut short = vol.clone();
        short.data = PixelData::F32(vec![0.0; 10]);
        assert!(extract_hu(&short, [0.0; 3], &spec, &mut dst).is_err());
    }
}
