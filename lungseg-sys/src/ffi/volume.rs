//! CT volumes through the C ABI: open, describe, map world ↔ voxel, copy HU, cut patches.

use super::{
    arg_mut, arg_options, arg_out, arg_ref, arg_slice, arg_slice_mut, frozen_output, guard,
    lungseg_status, versioned,
};
use crate::error::{Error, Result};
use crate::mhd::{self, ReadOptions};
use crate::patch::{self, HuWindow, PatchSpec};
use crate::volume::Volume;
use std::ffi::CStr;
use std::path::PathBuf;

/// An opened CT volume. Immutable: one handle may be read from many threads at once.
pub struct lungseg_volume {
    pub(crate) inner: Volume,
}

/// Geometry and storage of a volume (an output struct, frozen at its published layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_volume_info {
    /// Voxels per axis: x, y, z (x fastest in memory).
    pub dims: [u64; 3],
    /// Voxel size in mm.
    pub spacing: [f64; 3],
    /// World position (mm, LPS) of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Row-major `D[r][c]`: world = origin + D * (spacing * index).
    pub direction: [f64; 9],
    /// The on-disk MetaIO element type (a `lungseg_element_type` value).
    pub element_type: u32,
    /// Components per voxel (CT: 1).
    pub channels: u32,
}
frozen_output!(lungseg_volume_info, size = 152);

/// Options for `lungseg_volume_open_ex`. Zero fields take the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_open_options {
    /// `sizeof(lungseg_open_options)`.
    pub struct_size: u32,
    /// Non-zero: allow absolute data file paths and `..` components in data file names.
    /// Zero (default): the header may only name files below its own folder, and any `..`
    /// is refused, even `a/../x.raw`, because the OS applies `..` to a symlink's target
    /// (`link/../x.raw` would read beside wherever `link` points). Symlinks inside the folder
    /// are followed: they were placed by the folder's owner (symlink farms), not by the header.
    pub allow_outside_paths: u32,
    /// Refuse volumes with more voxels than this (0 = default, 1024 × 1024 × 2000).
    pub max_voxels: u64,
    /// Refuse data larger than this many bytes after decompression (0 = default).
    pub max_bytes: u64,
    /// Refuse headers naming more data files than this (`LIST`, `%d` patterns) before any is
    /// opened (0 = default, 65536).
    pub max_data_files: u64,
}
versioned!(lungseg_open_options, v1 = 24, v1_last = max_bytes);

/// Which patch to cut. Zero fields take the defaults (64³ voxels, 1 mm, -1000 HU outside).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_patch_spec {
    /// `sizeof(lungseg_patch_spec)`.
    pub struct_size: u32,
    /// Patch size in voxels: x, y, z.
    pub size: [u32; 3],
    /// Patch voxel spacing in mm: x, y, z.
    pub spacing_mm: [f64; 3],
    /// HU value used where the patch leaves the scan (NaN = default -1000).
    pub outside_hu: f32,
}
versioned!(lungseg_patch_spec, v1 = 48, v1_last = outside_hu);

pub(crate) unsafe fn path_arg(p: *const libc::c_char, name: &str) -> Result<PathBuf> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    let bytes = CStr::from_ptr(p).to_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid(format!("{name} is empty")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
    }
}

pub(crate) fn patch_spec_from(spec: Option<lungseg_patch_spec>) -> PatchSpec {
    let mut out = PatchSpec::default();
    if let Some(s) = spec {
        for a in 0..3 {
            if s.size[a] != 0 {
                out.size[a] = s.size[a] as usize;
            }
            if s.spacing_mm[a] != 0.0 {
                out.spacing_mm[a] = s.spacing_mm[a];
            }
        }
        if !s.outside_hu.is_nan() {
            out.outside_hu = s.outside_hu;
        }
    }
    out
}

pub(crate) fn world_arg(p: *const f64, name: &str) -> Result<[f64; 3]> {
    let s = unsafe { arg_slice(p, 3, name)? };
    let w = [s[0], s[1], s[2]];
    if w.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!("{name} {w:?} is not finite")));
    }
    Ok(w)
}

/// Opens a MetaImage CT (`.mhd` + `.raw`/`.zraw`, or `.mha`) with default options.
/// On success `*out` owns the volume (free it with `lungseg_volume_free`); on failure `*out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_open(
    path: *const libc::c_char,
    out: *mut *mut lungseg_volume,
) -> lungseg_status {
    lungseg_volume_open_ex(path, std::ptr::null(), out)
}

/// Like `lungseg_volume_open`, with options (NULL = defaults).
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_open_ex(
    path: *const libc::c_char,
    options: *const lungseg_open_options,
    out: *mut *mut lungseg_volume,
) -> lungseg_status {
    guard(|| {
        let out = arg_mut(out, "out")?;
        *out = std::ptr::null_mut();
        let path = path_arg(path, "path")?;
        let mut opts = ReadOptions::default();
        if let Some(o) = arg_options(options, "options")? {
            opts.allow_outside_paths = o.allow_outside_paths != 0;
            if o.max_voxels != 0 {
                opts.max_voxels = o.max_voxels;
            }
            if o.max_bytes != 0 {
                opts.max_bytes = o.max_bytes;
            }
            if o.max_data_files != 0 {
                opts.max_data_files = o.max_data_files;
            }
        }
        let volume = mhd::read(&path, &opts)?;
        *out = Box::into_raw(Box::new(lungseg_volume { inner: volume }));
        Ok(())
    })
}

/// Opens a CT series from a folder of DICOM files, one uncompressed slice per file
/// (docs/dicom.md): the series `series_uid` names (its SeriesInstanceUID), or with NULL the
/// folder's only CT series. Subfolders are not searched; files that are not DICOM are skipped.
/// Slices are sorted along the slice normal; tilted, unevenly spaced or incomplete series are
/// refused. A library built without the `dicom` feature returns `LUNGSEG_UNSUPPORTED`.
/// On success `*out` owns the volume (free it with `lungseg_volume_free`); on failure `*out` is NULL.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_open_dicom(
    dir: *const libc::c_char,
    series_uid: *const libc::c_char,
    out: *mut *mut lungseg_volume,
) -> lungseg_status {
    guard(|| {
        let out = arg_mut(out, "out")?;
        *out = std::ptr::null_mut();
        let dir = path_arg(dir, "dir")?;
        let uid = optional_text_arg(series_uid, "series_uid")?;
        let volume = open_dicom(&dir, uid)?;
        *out = Box::into_raw(Box::new(lungseg_volume { inner: volume }));
        Ok(())
    })
}

/// NULL, or a non-empty UTF-8 string.
pub(crate) unsafe fn optional_text_arg(
    p: *const libc::c_char,
    name: &str,
) -> Result<Option<String>> {
    if p.is_null() {
        return Ok(None);
    }
    let s = CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))?;
    if s.is_empty() {
        return Err(Error::invalid(format!(
            "{name} is empty (NULL chooses the default)"
        )));
    }
    Ok(Some(s.to_string()))
}

#[cfg(feature = "dicom")]
fn open_dicom(dir: &std::path::Path, series_uid: Option<String>) -> Result<Volume> {
    use crate::volume::dicom::{read_series, DicomOptions};
    read_series(
        dir,
        &DicomOptions {
            series_uid,
            ..DicomOptions::default()
        },
    )
}

#[cfg(not(feature = "dicom"))]
fn open_dicom(_dir: &std::path::Path, _series_uid: Option<String>) -> Result<Volume> {
    Err(Error::unsupported(
        "this lungseg library was built without the `dicom` feature: it cannot read DICOM \
         (rebuild with `--features dicom`, or convert the series to MetaImage)",
    ))
}

/// Frees a volume. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_free(volume: *mut lungseg_volume) {
    if !volume.is_null() {
        let _ = std::panic::catch_unwind(|| drop(Box::from_raw(volume)));
    }
}

/// Describes a volume's geometry and storage.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_get_info(
    volume: *const lungseg_volume,
    out: *mut lungseg_volume_info,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let out = arg_out(out, "out")?;
        let g = &v.geometry;
        out.write(lungseg_volume_info {
            dims: g.dims.map(|d| d as u64),
            spacing: g.spacing,
            origin: g.origin,
            direction: g.direction_row_major(),
            element_type: v.element_type as u32,
            channels: v.channels as u32,
        });
        Ok(())
    })
}

/// The volume's reconstructed slice thickness along z in mm, written to `*out_mm`: DICOM Slice
/// Thickness (0018,0050) of a series (its thickest slice), or `lungseg_volume_desc`'s
/// `slice_thickness_mm`; 0 when the source states none (MetaImage never does). A thickness
/// above the z spacing makes the scan that coarse for `lungseg_model_admits_volume`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_get_slice_thickness(
    volume: *const lungseg_volume,
    out_mm: *mut f64,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let out = arg_mut(out_mm, "out_mm")?;
        *out = v.slice_thickness_mm.unwrap_or(0.0);
        Ok(())
    })
}

/// Copies every voxel as float HU (x fastest, then y, then z) into `dst`, which must hold
/// exactly dims[0] * dims[1] * dims[2] floats. Fails for multi-channel volumes.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_copy_hu(
    volume: *const lungseg_volume,
    dst: *mut f32,
    dst_len: usize,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let dst = arg_slice_mut(dst, dst_len, "dst")?;
        v.copy_f32(dst)
    })
}

/// Maps a world point (mm, LPS) to a continuous voxel index (x, y, z), as ITK's
/// `TransformPhysicalPointToContinuousIndex`. Points outside the scan are not an error.
#[no_mangle]
pub unsafe extern "C" fn lungseg_world_to_voxel(
    volume: *const lungseg_volume,
    world: *const f64,
    voxel: *mut f64,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let w = world_arg(world, "world")?;
        let out = arg_slice_mut(voxel, 3, "voxel")?;
        out.copy_from_slice(&v.geometry.world_to_index(w));
        Ok(())
    })
}

/// Maps a continuous voxel index (x, y, z) to a world point (mm, LPS).
#[no_mangle]
pub unsafe extern "C" fn lungseg_voxel_to_world(
    volume: *const lungseg_volume,
    voxel: *const f64,
    world: *mut f64,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let i = world_arg(voxel, "voxel")?;
        let out = arg_slice_mut(world, 3, "world")?;
        out.copy_from_slice(&v.geometry.index_to_world(i));
        Ok(())
    })
}

/// Resamples a HU patch centred on a world point (trilinear; patch axes are the world axes;
/// voxel size/2 of each axis sits on the centre). `spec` NULL = 64³ at 1 mm. `dst` holds
/// size[0] * size[1] * size[2] floats, x fastest then y then z.
#[no_mangle]
pub unsafe extern "C" fn lungseg_volume_extract_patch(
    volume: *const lungseg_volume,
    center_world: *const f64,
    spec: *const lungseg_patch_spec,
    dst: *mut f32,
    dst_len: usize,
) -> lungseg_status {
    guard(|| {
        let v = &arg_ref(volume, "volume")?.inner;
        let c = world_arg(center_world, "center_world")?;
        let spec = patch_spec_from(arg_options(spec, "spec")?);
        let dst = arg_slice_mut(dst, dst_len, "dst")?;
        patch::extract_hu(v, c, &spec, dst)
    })
}

/// Maps HU to the model's input range, `clip((hu - lo) / (hi - lo), 0, 1)`. `dst` may be the
/// same buffer as `hu` (in place). NaN input is an error and leaves `dst` untouched.
#[no_mangle]
pub unsafe extern "C" fn lungseg_normalize_hu(
    hu: *const f32,
    len: usize,
    window_lo: f32,
    window_hi: f32,
    dst: *mut f32,
) -> lungseg_status {
    guard(|| {
        let window = HuWindow {
            lo: window_lo,
            hi: window_hi,
        };
        if std::ptr::eq(hu, dst.cast_const()) {
            return patch::normalize_in_place(arg_slice_mut(dst, len, "dst")?, window);
        }
        let src = arg_slice(hu, len, "hu")?;
        let dst = arg_slice_mut(dst, len, "dst")?;
        let (a, b) = (src.as_ptr() as usize, dst.as_ptr() as usize);
        let bytes = len * std::mem::size_of::<f32>();
        if a < b + bytes && b < a + bytes {
            return Err(Error::invalid(
                "hu and dst overlap without being the same buffer",
            ));
        }
        patch::normalize(src, window, dst)
    })
}

/// Rasterises a nodule ball (`diameter_mm` at `nodule_world`) on the grid of the patch that
/// `lungseg_volume_extract_patch` cuts around `patch_center_world` with `spec` (NULL = default):
/// voxel = 1 when its centre lies within the radius. `*voxels_set` (may be NULL) gets the count.
#[no_mangle]
pub unsafe extern "C" fn lungseg_sphere_mask(
    spec: *const lungseg_patch_spec,
    patch_center_world: *const f64,
    nodule_world: *const f64,
    diameter_mm: f64,
    dst: *mut u8,
    dst_len: usize,
    voxels_set: *mut u64,
) -> lungseg_status {
    guard(|| {
        let spec = patch_spec_from(arg_options(spec, "spec")?);
        let c = world_arg(patch_center_world, "patch_center_world")?;
        let n = world_arg(nodule_world, "nodule_world")?;
        let dst = arg_slice_mut(dst, dst_len, "dst")?;
        let count = patch::sphere_mask(&spec, c, n, diameter_mm, dst)?;
        if let Some(out) = voxels_set.as_mut() {
            *out = count as u64;
        }
        Ok(())
    })
}
