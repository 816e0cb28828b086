//! DICOM SEG from C: binary masks on the grid of a source CT series, written as one
//! Segmentation object that references the series' slices (docs/dicom.md, "DICOM SEG").

use super::volume::optional_text_arg;
use super::{arg_options, arg_slice, guard, lungseg_status, path_arg, versioned};
use crate::error::{Error, Result};
use std::ffi::CStr;
use std::path::Path;

/// One segment for `lungseg_write_dicom_seg` (an input struct: set `struct_size` to
/// `sizeof(lungseg_seg_segment)`, the same in every element of the array).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_seg_segment {
    /// `sizeof(lungseg_seg_segment)`.
    pub struct_size: u32,
    /// One byte per voxel of the series, 0 or 1, x fastest, then y, then z in the order
    /// `lungseg_volume_open_dicom` gives the series' slices.
    pub mask: *const u8,
    /// Bytes in `mask`: the series' voxel count.
    pub mask_len: usize,
    /// Segment Label, UTF-8: 1 to 64 characters, no backslash or control character.
    pub label: *const libc::c_char,
    /// Segment Description, UTF-8, at most 1024 characters (e.g. the segment's uncertainty
    /// summary); NULL or empty: none.
    pub description: *const libc::c_char,
}
versioned!(lungseg_seg_segment, v1 = 40, v1_last = description);

/// A segment as the caller gave it, checked for pointers and UTF-8 (in every build, so that a
/// build without the `dicom` feature refuses the same arguments).
#[cfg_attr(not(feature = "dicom"), allow(dead_code))]
struct SegmentArg<'a> {
    mask: &'a [u8],
    label: String,
    description: String,
}

/// Writes a binary DICOM Segmentation object (Segmentation Storage, Part 10, explicit VR little
/// endian) at `out_path` for `n_segments` masks on the grid of a DICOM series: the series
/// `series_uid` names in the folder `series_dir`, or with NULL its only CT series, as
/// `lungseg_volume_open_dicom` reads it. One frame per segment and slice with any voxel set,
/// each referencing its source slice; the segments are "Nodule" (SCT 27925004) made by lungseg.
/// The file is written under a temporary name and renamed over `out_path`. Refused: no
/// segment, more than 65535 segments or non-empty frames, a mask of the wrong length or with a
/// byte other than 0 and 1, a label that is not a valid LO, a series that cannot be read or
/// lacks the UIDs a SEG references. A library built without the `dicom` feature returns
/// `LUNGSEG_UNSUPPORTED`.
#[no_mangle]
pub unsafe extern "C" fn lungseg_write_dicom_seg(
    series_dir: *const libc::c_char,
    series_uid: *const libc::c_char,
    segments: *const lungseg_seg_segment,
    n_segments: usize,
    out_path: *const libc::c_char,
) -> lungseg_status {
    guard(|| {
        let dir = path_arg(series_dir, "series_dir")?;
        let uid = optional_text_arg(series_uid, "series_uid")?;
        let out = path_arg(out_path, "out_path")?;
        let segments = segments_arg(segments, n_segments)?;
        write_segments(&dir, uid, &segments, &out)
    })
}

/// The caller's array: its stride is the first element's `struct_size`, which every element
/// repeats.
unsafe fn segments_arg<'a>(p: *const lungseg_seg_segment, n: usize) -> Result<Vec<SegmentArg<'a>>> {
    if n == 0 {
        return Err(Error::invalid(
            "n_segments is 0: a SEG needs at least one segment",
        ));
    }
    let stride = arg_options(p, "segments[0]")?
        .ok_or_else(|| Error::invalid("segments is NULL"))?
        .struct_size as usize;
    if n.checked_mul(stride)
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::invalid(format!("n_segments {n} is too large")));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| Error::oom(format!("{n} segments")))?;
    for i in 0..n {
        out.push(segment_arg(
            p.cast::<u8>().add(i * stride).cast(),
            i,
            stride,
        )?);
    }
    Ok(out)
}

/// Element `i` of the caller's array, at `at`.
unsafe fn segment_arg<'a>(
    at: *const lungseg_seg_segment,
    i: usize,
    stride: usize,
) -> Result<SegmentArg<'a>> {
    let name = format!("segments[{i}]");
    // Checked before the element is read: a larger size would read past the array.
    let size = std::ptr::read_unaligned(at.cast::<u32>()) as usize;
    if size != stride {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}, segments[0].struct_size is {stride}: every element \
             is a sizeof(lungseg_seg_segment)"
        )));
    }
    let s = arg_options(at, &name)?.ok_or_else(|| Error::invalid(format!("{name} is NULL")))?;
    Ok(SegmentArg {
        mask: arg_slice(s.mask, s.mask_len, &format!("{name}.mask"))?,
        label: text(s.label, &format!("{name}.label"))?,
        description: if s.description.is_null() {
            String::new()
        } else {
            text(s.description, &format!("{name}.description"))?
        },
    })
}

/// A UTF-8 string argument.
unsafe fn text(p: *const libc::c_char, name: &str) -> Result<String> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map(str::to_string)
        .map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
}

#[cfg(feature = "dicom")]
fn write_segments(
    dir: &Path,
    series_uid: Option<String>,
    args: &[SegmentArg],
    out: &Path,
) -> Result<()> {
    use crate::volume::dicom::seg::{write_seg, Algorithm, SegRequest, Segment};
    use crate::volume::dicom::DicomOptions;
    let segments: Vec<Segment> = args
        .iter()
        .map(|a| Segment {
            mask: a.mask,
            label: &a.label,
            description: &a.description,
            algorithm: Algorithm::LUNGSEG,
        })
        .collect();
    let req = SegRequest {
        series_dir: dir,
        read: DicomOptions {
            series_uid,
            ..DicomOptions::default()
        },
        segments: &segments,
    };
    write_seg(&req, out).map(drop)
}

#[cfg(not(feature = "dicom"))]
fn write_segments(_: &Path, _: Option<String>, _: &[SegmentArg], _: &Path) -> Result<()> {
    Err(Error::unsupported(
        "this lungseg library was built without the `dicom` feature: it cannot write DICOM SEG \
         (rebuild with `--features dicom`, or write the masks as MetaImage)",
    ))
}
