//! Trilinear resampling of a patch from the scan grid (border rules in the parent module docs).
//!
//! The world → continuous-index map is affine and the patch grid is regular, so the index of
//! patch voxel `(i, j, k)` is `u0 + i·ux + j·uy + k·uz` with four constant vectors computed once;
//! the inner loop does no matrix maths, no allocation, and the pixel type is dispatched once.
//! The per-axis taps of axis-aligned scans live in a per-thread scratch buffer that grows to
//! the largest patch seen, so repeated extractions allocate nothing.

use super::{check_finite, PatchSpec};
use crate::error::{Error, Result};
use crate::volume::{Layout, Sample, ToHu, Volume};
use crate::{with_hu, with_pixels};

/// Trilinear HU patch around `center_world` into `dst` (`spec.size` voxels, z-major, x fastest).
///
/// Errors (all `InvalidArgument` except the channel check, `Unsupported`): a multi-channel
/// volume, an invalid spec (see [`PatchSpec::validate`]), `dst.len()` not the patch voxel
/// count, a non-finite centre, or a volume whose data length disagrees with its geometry.
pub fn extract_hu(
    volume: &Volume,
    center_world: [f64; 3],
    spec: &PatchSpec,
    dst: &mut [f32],
) -> Result<()> {
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
    volume.check_data()?;
    let g = &volume.geometry;
    let u0 = g.world_to_index(spec.voxel_world(center_world, [0, 0, 0]));
    // Index step per patch axis: the linear part of world_to_index applied to spacing · e_a.
    let step = |a: usize| -> [f64; 3] {
        let mut w = g.origin;
        w[a] += spec.spacing_mm[a];
        let u = g.world_to_index(w);
        std::array::from_fn(|c| u[c])
    };
    let map = Affine {
        u0,
        ux: step(0),
        uy: step(1),
        uz: step(2),
    };
    resample_affine(volume, &map, spec, dst);
    Ok(())
}

/// Whether part of the patch around `center_world` lies outside the scan, where [`extract_hu`]
/// fills `spec.outside_hu`: the patch is a parallelepiped in index space, so its 8 corner
/// voxels decide.
pub fn reaches_outside(volume: &Volume, center_world: [f64; 3], spec: &PatchSpec) -> bool {
    let g = &volume.geometry;
    let last = spec.size.map(|n| n.saturating_sub(1));
    (0..8).any(|corner: usize| {
        let idx = std::array::from_fn(|a| if corner >> a & 1 == 1 { last[a] } else { 0 });
        let u = g.world_to_index(spec.voxel_world(center_world, idx));
        (0..3).any(|a| !(u[a] >= 0.0 && u[a] <= (g.dims[a] - 1) as f64))
    })
}

/// Trilinear samples of a checked scalar `volume` at the continuous indices
/// `map.u0 + i·ux + j·uy + k·uz` for every `(i, j, k)` of `out.size`, into `dst` (z-major,
/// x fastest); `out.outside_hu` where a point is outside (`out.spacing_mm` is unused: the map
/// carries the geometry). The border rules are the module's.
pub(crate) fn resample_affine(volume: &Volume, map: &Affine, out: &PatchSpec, dst: &mut [f32]) {
    let grid = Grid::new(volume.geometry.dims, &volume.layout);
    if map.is_separable() {
        with_tap_scratch(out.size.iter().sum(), |scratch| {
            let (tx, rest) = scratch.split_at_mut(out.size[0]);
            let (ty, tz) = rest.split_at_mut(out.size[1]);
            fill_taps(tx, &grid, 0, map.u0[0], map.ux[0]);
            fill_taps(ty, &grid, 1, map.u0[1], map.uy[1]);
            fill_taps(tz, &grid, 2, map.u0[2], map.uz[2]);
            let taps = [&*tx, &*ty, &*tz];
            with_hu!(volume.layout.rescale, |r| with_pixels!(&volume.data, |s| {
                resample_separable(Src { s, r }, taps, out, dst)
            }));
        });
    } else {
        with_hu!(volume.layout.rescale, |r| with_pixels!(&volume.data, |s| {
            resample(Src { s, r }, &grid, map, out, dst)
        }));
    }
}

thread_local! {
    static TAPS: std::cell::RefCell<Vec<Tap>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` taps of this thread's scratch (a fresh buffer if it is in use).
fn with_tap_scratch(len: usize, f: impl FnOnce(&mut [Tap])) {
    let mut f = Some(f);
    let _ = TAPS.try_with(|cell| {
        let Ok(mut v) = cell.try_borrow_mut() else {
            return;
        };
        if v.len() < len {
            v.resize(len, Tap::default());
        }
        if let Some(f) = f.take() {
            f(&mut v[..len]);
        }
    });
    // Thread-local storage gone (thread exit) or borrowed: use a buffer of our own.
    if let Some(f) = f {
        f(&mut vec![Tap::default(); len]);
    }
}

/// Continuous source index of output voxel (i, j, k) = u0 + i·ux + j·uy + k·uz.
pub(crate) struct Affine {
    pub(crate) u0: [f64; 3],
    pub(crate) ux: [f64; 3],
    pub(crate) uy: [f64; 3],
    pub(crate) uz: [f64; 3],
}

impl Affine {
    fn step(&self, a: usize) -> [f64; 3] {
        [self.ux, self.uy, self.uz][a]
    }

    /// Patch axis a moves only scan axis a: true for every axis-aligned scan, flipped or not
    /// (all of LUNA16), whose index maps then factor per axis.
    fn is_separable(&self) -> bool {
        (0..3).all(|a| (0..3).all(|c| c == a || self.step(a)[c] == 0.0))
    }
}

/// Interpolation tap along one axis of a separable map, for one patch index: the clamped lower
/// and upper neighbours (pre-multiplied by the scan stride), the weight of the upper one, and
/// whether the sample is inside (`-0.5 <= u < n - 0.5`). The same arithmetic as [`sample`].
#[derive(Clone, Copy, Default)]
struct Tap {
    lo: usize,
    hi: usize,
    f: f32,
    inside: bool,
}

/// The taps of patch indices `0..taps.len()` along scan axis `a`.
fn fill_taps(taps: &mut [Tap], g: &Grid, a: usize, u0: f64, step: f64) {
    let stride = [1, g.stride_y, g.stride_z][a];
    let n = g.dims[a] as isize;
    for (i, t) in taps.iter_mut().enumerate() {
        let u = u0 + i as f64 * step;
        *t = Tap::default();
        if !(u >= -0.5 && u < g.end[a]) {
            continue;
        }
        let fl = u.floor();
        let b = fl as isize;
        *t = Tap {
            lo: b.clamp(0, n - 1) as usize * stride,
            hi: (b + 1).clamp(0, n - 1) as usize * stride,
            f: (u - fl) as f32,
            inside: true,
        };
    }
}

/// Axis-aligned scans: per-axis taps, so the inner loop is 8 loads and 7 lerps.
fn resample_separable<T: Sample, R: ToHu>(
    src: Src<T, R>,
    taps: [&[Tap]; 3],
    spec: &PatchSpec,
    dst: &mut [f32],
) {
    let [tx, ty, tz] = taps;
    let [px, py, _] = spec.size;
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    for (k, plane) in dst.chunks_exact_mut(px * py).enumerate() {
        for (j, row) in plane.chunks_exact_mut(px).enumerate() {
            let (y, z) = (ty[j], tz[k]);
            if !(z.inside && y.inside) {
                row.fill(spec.outside_hu);
                continue;
            }
            let (fy, fz) = (y.f, z.f);
            let rows = [z.lo + y.lo, z.lo + y.hi, z.hi + y.lo, z.hi + y.hi];
            for (d, t) in row.iter_mut().zip(tx) {
                if !t.inside {
                    *d = spec.outside_hu;
                    continue;
                }
                let (a, b, fx) = (t.lo, t.hi, t.f);
                let x = |r: usize| lerp(src.at(r + a), src.at(r + b), fx);
                *d = lerp(
                    lerp(x(rows[0]), x(rows[1]), fy),
                    lerp(x(rows[2]), x(rows[3]), fy),
                    fz,
                );
            }
        }
    }
}

/// The scan's samples and their rescale to HU.
struct Src<'a, T, R> {
    s: &'a [T],
    r: R,
}

impl<T, R: Copy> Clone for Src<'_, T, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, R: Copy> Copy for Src<'_, T, R> {}

impl<T: Sample, R: ToHu> Src<'_, T, R> {
    /// HU of sample `i` (bounds-checked: a rounding slip panics, never UB).
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        self.r.hu(self.s[i].to_f32())
    }
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
    fn new(dims: [usize; 3], layout: &Layout) -> Self {
        Grid {
            dims,
            last: dims.map(|n| (n - 1) as f64),
            end: dims.map(|n| n as f64 - 0.5),
            stride_y: layout.row_stride,
            stride_z: layout.slice_stride,
        }
    }
}

fn resample<T: Sample, R: ToHu>(
    src: Src<T, R>,
    grid: &Grid,
    map: &Affine,
    spec: &PatchSpec,
    dst: &mut [f32],
) {
    let [px, py, _] = spec.size;
    for (k, plane) in dst.chunks_exact_mut(px * py).enumerate() {
        for (j, row) in plane.chunks_exact_mut(px).enumerate() {
            let (jf, kf) = (j as f64, k as f64);
            let base: [f64; 3] =
                std::array::from_fn(|c| map.u0[c] + jf * map.uy[c] + kf * map.uz[c]);
            let at = |i: usize| -> [f64; 3] {
                let f = i as f64;
                [
                    base[0] + f * map.ux[0],
                    base[1] + f * map.ux[1],
                    base[2] + f * map.ux[2],
                ]
            };
            let (lo, hi) = interior_run(grid, &base, &map.ux, px);
            for (i, d) in row.iter_mut().enumerate().take(lo) {
                *d = sample(src, grid, at(i), spec.outside_hu);
            }
            for (i, d) in row.iter_mut().enumerate().take(hi).skip(lo) {
                *d = interior(src, grid, at(i));
            }
            for (i, d) in row.iter_mut().enumerate().skip(hi.max(lo)) {
                *d = sample(src, grid, at(i), spec.outside_hu);
            }
        }
    }
}

/// The run `lo..hi` of a row `base + i·ux` whose samples are certainly interior
/// (`0 <= u < n - 1` on every axis), with a margin of 1e-6 voxel and one patch voxel per side
/// against rounding; the rest of the row takes the fully checked path. Empty: `lo >= hi`.
fn interior_run(g: &Grid, base: &[f64; 3], ux: &[f64; 3], len: usize) -> (usize, usize) {
    const EPS: f64 = 1e-6;
    if !base.iter().chain(ux).all(|v| v.is_finite()) {
        return (0, 0);
    }
    let (mut t0, mut t1) = (0.0f64, len as f64 - 1.0);
    for a in 0..3 {
        let (lo, hi) = (EPS, g.last[a] - EPS);
        if ux[a] == 0.0 {
            if !(base[a] >= lo && base[a] < hi) {
                return (0, 0);
            }
            continue;
        }
        let (e0, e1) = ((lo - base[a]) / ux[a], (hi - base[a]) / ux[a]);
        t0 = t0.max(e0.min(e1));
        t1 = t1.min(e0.max(e1));
    }
    if t0 > t1 {
        return (0, 0);
    }
    let lo = (t0.ceil() + 1.0).max(0.0) as usize;
    let hi = ((t1.floor() - 1.0).max(-1.0) + 1.0) as usize;
    (lo.min(len), hi.min(len))
}

/// Interpolation for an index known to satisfy `0 <= u < n - 1`: truncation is floor, and the
/// upper neighbours exist. (Indexing stays bounds-checked: a rounding slip panics, never UB.)
#[inline(always)]
fn interior<T: Sample, R: ToHu>(src: Src<T, R>, g: &Grid, u: [f64; 3]) -> f32 {
    let x0 = [u[0] as usize, u[1] as usize, u[2] as usize];
    let f = [
        (u[0] - x0[0] as f64) as f32,
        (u[1] - x0[1] as f64) as f32,
        (u[2] - x0[2] as f64) as f32,
    ];
    let i000 = x0[0] + x0[1] * g.stride_y + x0[2] * g.stride_z;
    trilinear(src, [i000, i000 + 1], [0, g.stride_y], [0, g.stride_z], f)
}

#[inline(always)]
fn sample<T: Sample, R: ToHu>(src: Src<T, R>, g: &Grid, u: [f64; 3], outside: f32) -> f32 {
    if (0..3).all(|a| u[a] >= 0.0 && u[a] < g.last[a]) {
        return interior(src, g, u);
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
        [
            lo[0] + lo[1] * g.stride_y + lo[2] * g.stride_z,
            hi[0] + lo[1] * g.stride_y + lo[2] * g.stride_z,
        ],
        [0, (hi[1] - lo[1]) * g.stride_y],
        [0, (hi[2] - lo[2]) * g.stride_z],
        f,
    )
}

/// Interpolates from the two x-neighbours `x` (at y, z offsets 0), offset by `dy[1]`/`dz[1]`.
#[inline(always)]
fn trilinear<T: Sample, R: ToHu>(
    src: Src<T, R>,
    x: [usize; 2],
    dy: [usize; 2],
    dz: [usize; 2],
    f: [f32; 3],
) -> f32 {
    let v = |i: usize| src.at(i);
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
        let g = Geometry::new(
            [20, 30, 12],
            [0.7, 0.8, 2.5],
            [-5.0, -10.0, -12.0],
            direction,
        )
        .unwrap();
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
        for dir in [
            crate::geometry::IDENTITY,
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        ] {
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
                        assert!(
                            (got - expect).abs() < 1e-3,
                            "{dir:?} {i},{j},{k}: {got} vs {expect}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn separable_path_equals_general_path() {
        let vol = ramp([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]);
        let g = &vol.geometry;
        // A centre near a corner so border, interior and outside samples all occur.
        let c = g.index_to_world([1.3, 27.9, 0.4]);
        let spec = PatchSpec {
            size: [16, 12, 10],
            spacing_mm: [0.9, 1.1, 1.3],
            outside_hu: -1000.0,
        };
        let fast = extract_patch(&vol, c, &spec).unwrap();
        let u0 = g.world_to_index(spec.voxel_world(c, [0, 0, 0]));
        let step = |a: usize| {
            let mut w = g.origin;
            w[a] += spec.spacing_mm[a];
            g.world_to_index(w)
        };
        let map = Affine {
            u0,
            ux: step(0),
            uy: step(1),
            uz: step(2),
        };
        assert!(map.is_separable());
        let mut general = vec![0.0; spec.len()];
        let PixelData::F32(src) = &vol.data else {
            unreachable!()
        };
        let src = Src {
            s: &src[..],
            r: crate::volume::Identity,
        };
        resample(
            src,
            &Grid::new(g.dims, &vol.layout),
            &map,
            &spec,
            &mut general,
        );
        assert_eq!(fast, general);
        assert!(fast.contains(&-1000.0) && fast.iter().any(|&v| v != -1000.0));
    }

    #[test]
    fn border_half_voxel_extends_the_edge_and_beyond_is_outside() {
        // 1-D along x: values 10, 20, 30 at x = 0, 1, 2 (spacing 1, origin 0).
        let g = Geometry::axis_aligned([3, 1, 1], [1.0; 3], [0.0; 3]).unwrap();
        let vol = Volume::new(g, PixelData::I16(vec![10, 20, 30])).unwrap();
        let spec = PatchSpec {
            size: [1, 1, 1],
            ..Default::default()
        };
        let at = |x: f64| extract_patch(&vol, [x, 0.0, 0.0], &spec).unwrap()[0];
        assert_eq!(at(-0.5), 10.0);
        assert_eq!(at(-0.3), 10.0);
        assert_eq!(at(0.5), 15.0);
        assert_eq!(at(2.3), 30.0);
        assert_eq!(at(2.5), -1000.0);
        assert_eq!(at(-0.51), -1000.0);
        assert_eq!(at(1e300), -1000.0);
        // y and z are 1 voxel thick: inside for |offset| < 0.5.
        assert_eq!(
            extract_patch(&vol, [1.0, 0.4, -0.4], &spec).unwrap()[0],
            20.0
        );
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
        let zero = PatchSpec {
            size: [4, 0, 4],
            ..spec
        };
        assert!(extract_hu(&vol, [0.0; 3], &zero, &mut dst).is_err());
        let mut multi = vol.clone();
        multi.channels = 2;
        assert_eq!(
            extract_hu(&multi, [0.0; 3], &spec, &mut dst)
                .unwrap_err()
                .kind,
            ErrorKind::Unsupported
        );
        let mut short = vol.clone();
        short.data = PixelData::F32(vec![0.0; 10]);
        assert!(extract_hu(&short, [0.0; 3], &spec, &mut dst).is_err());
    }
}
