//! Patch results on the scan's grid through the C ABI: an accumulator handle that takes
//! patches (each with the spec and centre it was cut with) and writes the merged map into a
//! buffer of the scan's dims.

use super::volume::{patch_spec_from, world_arg};
use super::{arg_mut, arg_options, arg_ref, arg_slice, arg_slice_mut, guard, lungseg_status};
use super::{lungseg_patch_spec, lungseg_scan_map_kind, lungseg_volume};
use crate::error::Error;
use crate::scan_map::ScanMap;

/// Patches being merged onto one scan's grid (see `lungseg_scan_map_new`).
pub struct lungseg_scan_map {
    inner: ScanMap,
}

/// Starts a map on `volume`'s grid (its geometry is copied: the map does not use `volume`
/// afterwards). `kind` is a `lungseg_scan_map_kind`: `LUNGSEG_SCAN_MAP_MEAN` for probability
/// or uncertainty maps (trilinear, as SimpleITK's `sitkLinear`; weighted mean where patches
/// overlap), `LUNGSEG_SCAN_MAP_MAX` for 0/1 masks (nearest neighbour; maximum where they
/// overlap). Free it with `lungseg_scan_map_free`; on failure `*out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn lungseg_scan_map_new(
    volume: *const lungseg_volume,
    kind: u32,
    out: *mut *mut lungseg_scan_map,
) -> lungseg_status {
    guard(|| {
        let out = arg_mut(out, "out")?;
        *out = std::ptr::null_mut();
        let v = &arg_ref(volume, "volume")?.inner;
        let kind = lungseg_scan_map_kind::try_from(kind).map_err(Error::from)?;
        let map = ScanMap::new(v.geometry, kind.into());
        *out = Box::into_raw(Box::new(lungseg_scan_map { inner: map }));
        Ok(())
    })
}

/// Adds one patch: `values` (`len` finite floats, x fastest) on the grid that
/// `lungseg_volume_extract_patch` cuts around `center_world` with `spec` (NULL = default).
/// `weight` (finite, > 0) weighs it in the mean of `LUNGSEG_SCAN_MAP_MEAN`; `_MAX` ignores it.
/// The values are copied. A map holds at most 256 Mi patch values (`LUNGSEG_LIMIT`).
#[no_mangle]
pub unsafe extern "C" fn lungseg_scan_map_add_patch(
    map: *mut lungseg_scan_map,
    spec: *const lungseg_patch_spec,
    center_world: *const f64,
    values: *const f32,
    len: usize,
    weight: f32,
) -> lungseg_status {
    guard(|| {
        let map = arg_mut(map, "map")?;
        let spec = patch_spec_from(arg_options(spec, "spec")?);
        let c = world_arg(center_world, "center_world")?;
        let values = arg_slice(values, len, "values")?;
        map.inner.add(&spec, c, values, weight)
    })
}

/// Writes the merged map into `dst`: `dst_len` = dims[0] * dims[1] * dims[2] of the scan
/// (`lungseg_volume_info`), x fastest then y then z. Each patch is resampled at the scan's voxel
/// centres, with the border rules of `lungseg_volume_extract_patch` (a point within half a
/// patch voxel of the patch's edge takes the edge value); a voxel no patch covers gets 0.
#[no_mangle]
pub unsafe extern "C" fn lungseg_scan_map_read(
    map: *const lungseg_scan_map,
    dst: *mut f32,
    dst_len: usize,
) -> lungseg_status {
    guard(|| {
        let map = arg_ref(map, "map")?;
        let dst = arg_slice_mut(dst, dst_len, "dst")?;
        map.inner.read(dst)
    })
}

/// Frees a map. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn lungseg_scan_map_free(map: *mut lungseg_scan_map) {
    if !map.is_null() {
        let _ = std::panic::catch_unwind(|| drop(Box::from_raw(map)));
    }
}
