//! Writing MetaImage from C: a volume, or a patch-aligned map (probability, uncertainty, mask)
//! placed in world space so a viewer (3D Slicer, ITK-SNAP) overlays it on the CT it came from.

use super::volume::{patch_spec_from, world_arg};
use super::{arg_options, arg_ref, arg_slice, guard, lungseg_patch_spec, lungseg_status};
use super::{lungseg_volume, path_arg};
use crate::error::{Error, Result};
use crate::mhd::{self, WriteOptions};
use crate::volume::{PixelData, Volume};

/// Flag for the `flags` of the write calls: zlib-compress the voxels (`.zraw`, or inside `.mha`).
pub const LUNGSEG_WRITE_COMPRESS: u32 = 1;

fn write_options(flags: u32) -> Result<WriteOptions> {
    if flags & !LUNGSEG_WRITE_COMPRESS != 0 {
        return Err(Error::invalid(format!(
            "flags {flags:#x} has unknown bits (only LUNGSEG_WRITE_COMPRESS = 1 is defined)"
        )));
    }
    Ok(WriteOptions {
        compress: flags & LUNGSEG_WRITE_COMPRESS != 0,
    })
}

/// The geometry of the patch `lungseg_volume_extract_patch` cuts around `center` with `spec`:
/// world-aligned axes, voxel (0, 0, 0) at the patch's first voxel centre.
/// The body of the patch writers, for any pixel type `pixels` wraps.
unsafe fn write_patch<T: Copy>(
    spec: *const lungseg_patch_spec,
    patch_center_world: *const f64,
    data: *const T,
    len: usize,
    pixels: fn(Vec<T>) -> PixelData,
    path: *const libc::c_char,
    flags: u32,
) -> lungseg_status {
    guard(|| {
        let spec = patch_spec_from(arg_options(spec, "spec")?);
        let center = world_arg(patch_center_world, "patch_center_world")?;
        let data = arg_slice(data, len, "data")?;
        let path = path_arg(path, "path")?;
        let opts = write_options(flags)?;
        let geometry = spec.geometry(center)?;
        if len != spec.len() {
            return Err(Error::invalid(format!(
                "data holds {len} values, the patch has {} voxels",
                spec.len()
            )));
        }
        let volume = Volume::new(geometry, pixels(data.to_vec()))?;
        mhd::write(&path, &volume, &opts)
    })
}

/// Writes a volume as MetaImage: `path` ending in `.mhd` (plus `.raw`/`.zraw` beside it) or
/// `.mha` (one file). Files are written under a temporary name and renamed, so a failed write
/// leaves an earlier file of that name whole.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_write(
    volume: *const lungseg_volume,
    path: *const libc::c_char,
    flags: u32,
) -> lungseg_status {
    guard(|| {
        let volume = arg_ref(volume, "volume")?;
        let path = path_arg(path, "path")?;
        let opts = write_options(flags)?;
        mhd::write(&path, &volume.inner, &opts)
    })
}

/// Writes a float map on a patch's grid (e.g. `lungseg_uncertainty.mean` or `.entropy`) as
/// MetaImage `MET_FLOAT`, placed where `lungseg_volume_extract_patch` cut the patch around
/// `patch_center_world` with `spec` (NULL = default), so it overlays the CT in a viewer.
/// `data` holds size[0] * size[1] * size[2] floats, x fastest. `flags`: 0 or
/// `LUNGSEG_WRITE_COMPRESS`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_write_patch_map(
    spec: *const lungseg_patch_spec,
    patch_center_world: *const f64,
    data: *const f32,
    len: usize,
    path: *const libc::c_char,
    flags: u32,
) -> lungseg_status {
    write_patch(
        spec,
        patch_center_world,
        data,
        len,
        PixelData::F32,
        path,
        flags,
    )
}

/// As `lungseg_write_patch_map` for a 0/1 mask (e.g. mean probability ≥
/// `lungseg_model_get_mask_threshold`), `MET_UCHAR`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_write_patch_mask(
    spec: *const lungseg_patch_spec,
    patch_center_world: *const f64,
    data: *const u8,
    len: usize,
    path: *const libc::c_char,
    flags: u32,
) -> lungseg_status {
    write_patch(
        spec,
        patch_center_world,
        data,
        len,
        PixelData::U8,
        path,
        flags,
    )
}
