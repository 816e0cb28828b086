//! Volumes from a host's memory through the C ABI: decoded DICOM pixels, copied or borrowed.

use super::model::{disjoint, region};
use super::{arg_mut, arg_options, guard, lungseg_pixel_type, lungseg_status, lungseg_volume};
use super::{versioned, Versioned};
use crate::error::{Error, Result};
use crate::geometry::IDENTITY;
use crate::volume::memory::{self, HostPixels, MemoryDesc};
use crate::volume::Volume;

/// Pixels in memory and where they sit in the world: the description for
/// `lungseg_volume_create` and `lungseg_volume_create_borrowed`. Zero fields take the defaults
/// where one is stated; `pixel_type`, `dims` and `spacing` have none.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_volume_desc {
    /// `sizeof(lungseg_volume_desc)`.
    pub struct_size: u32,
    /// A `lungseg_pixel_type`: the stored sample type.
    pub pixel_type: u32,
    /// Voxels per axis: x, y, z (x fastest in memory).
    pub dims: [u64; 3],
    /// Voxel size in mm (finite, > 0).
    pub spacing: [f64; 3],
    /// World position (mm, LPS) of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Row-major `D[r][c]` as in `lungseg_volume_info`: world = origin + D * (spacing * index).
    /// All zero = identity.
    pub direction: [f64; 9],
    /// Bytes from the start of one row (y) to the next; 0 = packed (dims[0] samples).
    pub row_stride_bytes: u64,
    /// Bytes from the start of one slice (z) to the next; 0 = packed (dims[1] rows).
    pub slice_stride_bytes: u64,
    /// DICOM Rescale Slope: HU = slope * stored + intercept, in float (0 = 1).
    pub rescale_slope: f64,
    /// DICOM Rescale Intercept (0 = none).
    pub rescale_intercept: f64,
    /// Refuse volumes with more voxels than this (0 = default, as `lungseg_open_options`).
    pub max_voxels: u64,
    /// V2: the reconstructed slice thickness along z in mm, as DICOM Slice Thickness (0018,0050)
    /// states it (0 = not stated; else finite and > 0). A slice thicker than the z spacing
    /// (overlapping reconstruction) makes the scan as coarse as its thickness for the model's
    /// intended use (`lungseg_model_admits_volume`).
    pub slice_thickness_mm: f64,
}
versioned!(lungseg_volume_desc, v1 = 192, v1_last = max_voxels);

fn desc_from(d: &lungseg_volume_desc) -> Result<MemoryDesc> {
    let t = lungseg_pixel_type::try_from(d.pixel_type)
        .map_err(|e| Error::invalid(format!("desc.pixel_type: {}", Error::from(e).message)))?;
    let direction = if d.direction.iter().all(|&v| v == 0.0) {
        IDENTITY
    } else {
        std::array::from_fn(|r| std::array::from_fn(|c| d.direction[r * 3 + c]))
    };
    Ok(MemoryDesc {
        dims: d.dims,
        spacing: d.spacing,
        origin: d.origin,
        direction,
        element_type: t.into(),
        row_stride_bytes: d.row_stride_bytes,
        slice_stride_bytes: d.slice_stride_bytes,
        rescale: [
            if d.rescale_slope == 0.0 {
                1.0
            } else {
                d.rescale_slope
            },
            d.rescale_intercept,
        ],
        max_voxels: match d.max_voxels {
            0 => crate::mhd::ReadOptions::default().max_voxels,
            n => n,
        },
        slice_thickness_mm: (d.slice_thickness_mm != 0.0).then_some(d.slice_thickness_mm),
    })
}

/// The shared body of the two create calls.
unsafe fn create(
    desc: *const lungseg_volume_desc,
    pixels: *const libc::c_void,
    pixels_len: usize,
    out: *mut *mut lungseg_volume,
    make: unsafe fn(&MemoryDesc, HostPixels) -> Result<Volume>,
) -> lungseg_status {
    guard(|| {
        disjoint(&[
            region("out", out, 1),
            region("desc", desc.cast::<u8>(), lungseg_volume_desc::V1),
            region("pixels", pixels.cast::<u8>(), pixels_len),
        ])?;
        let out = arg_mut(out, "out")?;
        *out = std::ptr::null_mut();
        let d = arg_options(desc, "desc")?.ok_or_else(|| Error::invalid("desc is NULL"))?;
        let d = desc_from(&d)?;
        let px = HostPixels {
            ptr: pixels.cast(),
            len: pixels_len,
        };
        let volume = make(&d, px)?;
        *out = Box::into_raw(Box::new(lungseg_volume { inner: volume }));
        Ok(())
    })
}

/// Makes a volume from pixels in memory, copying them (the caller may free `pixels` on
/// return). `pixels_len` is the buffer's size in bytes; it must cover every row the
/// description reaches, and `pixels` must be aligned to the sample size. Validated like a
/// file: zero dims, non-finite or non-positive spacing, non-finite origin, a non-finite or
/// singular direction, a bad pixel type, strides shorter than a row (a slice) or not a whole
/// number of samples, a short buffer, or a float pixel that is not finite (after the rescale)
/// are `LUNGSEG_INVALID_ARGUMENT`; more voxels than `max_voxels` is `LUNGSEG_LIMIT`. `out`
/// must not overlap `desc` or `pixels`. On failure `*out` is NULL. The stored type is kept
/// (`lungseg_volume_info.element_type`: `LUNGSEG_MET_SHORT` for int16 ...) and the rescale is
/// applied whenever HU are read; `lungseg_volume_write` writes HU as float when it is not the
/// identity.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_create(
    desc: *const lungseg_volume_desc,
    pixels: *const libc::c_void,
    pixels_len: usize,
    out: *mut *mut lungseg_volume,
) -> lungseg_status {
    create(desc, pixels, pixels_len, out, memory::copy)
}

/// As `lungseg_volume_create`, but the volume reads `pixels` in place: the caller keeps them
/// alive and unchanged until `lungseg_volume_free` of this volume (no copy, no allocation
/// proportional to the scan).
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_create_borrowed(
    desc: *const lungseg_volume_desc,
    pixels: *const libc::c_void,
    pixels_len: usize,
    out: *mut *mut lungseg_volume,
) -> lungseg_status {
    create(desc, pixels, pixels_len, out, memory::borrow)
}
