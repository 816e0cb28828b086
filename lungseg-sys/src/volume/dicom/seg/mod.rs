//! Binary DICOM Segmentation objects (Segmentation Storage) on the grid of a CT series read by
//! this module's reader (docs/dicom.md, "DICOM SEG"): one segment per mask, one frame per
//! (segment, source slice) with any voxel set, each frame referencing the slice it lies on.
//!
//! [`source`] re-reads the series and keeps what the object references, [`segments`] checks the
//! caller's segments, [`frames`] chooses and packs the frames, [`dataset`] builds the data set
//! from [`values`], [`write`] encodes and writes the file.

pub mod dataset;
pub mod frames;
pub mod segments;
pub mod source;
pub mod values;
pub mod write;

use super::DicomOptions;
use crate::error::Result;
use std::path::Path;

/// Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// Segment numbers and frame counts are US / 16-bit in the object: at most this many of each.
pub const MAX_SEGMENTS: usize = 65535;
/// See [`MAX_SEGMENTS`].
pub const MAX_FRAMES: usize = 65535;

/// The algorithm that made a segment (Segment Algorithm Name, Algorithm Version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithm<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

impl Algorithm<'static> {
    /// This library.
    pub const LUNGSEG: Algorithm<'static> = Algorithm {
        name: "lungseg",
        version: env!("CARGO_PKG_VERSION"),
    };
}

/// One segment: a binary mask on the series' grid and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// One byte per voxel, 0 or 1, x fastest, then y (rows), then z (slices in the order the
    /// reader sorts them, the `Volume`'s z): the series' voxel count.
    pub mask: &'a [u8],
    /// Segment Label (LO: at most 64 characters, no backslash or control character).
    pub label: &'a str,
    /// Segment Description (ST, at most 1024 characters; empty: none), e.g. the segment's
    /// uncertainty summary.
    pub description: &'a str,
    pub algorithm: Algorithm<'a>,
}

/// What to write: the source series and the segments.
#[derive(Debug, Clone)]
pub struct SegRequest<'a> {
    /// The folder of the source series.
    pub series_dir: &'a Path,
    /// Which series of the folder and the reader's limits.
    pub read: DicomOptions,
    pub segments: &'a [Segment<'a>],
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    /// Frames in the object (one empty frame when every mask is empty: an object needs one).
    pub frames: usize,
}

/// Writes the segments as one binary DICOM SEG file at `out` (Part 10, explicit VR little
/// endian), under a temporary name renamed over `out`, so a failure leaves no partial file.
pub fn write_seg(req: &SegRequest, out: &Path) -> Result<Written> {
    segments::check(req.segments)?;
    let source = source::read(req.series_dir, &req.read)?;
    segments::check_masks(req.segments, source.voxel_count())?;
    let frames = frames::select(req.segments, &source)?;
    let pixels = frames::pack(req.segments, &source, &frames)?;
    let ids = dataset::NewIds::generate();
    let obj = dataset::build(dataset::Content {
        source: &source,
        segments: req.segments,
        frames: &frames,
        ids: &ids,
        pixels,
    });
    write::write(obj, out)?;
    Ok(Written {
        series_instance_uid: ids.series,
        sop_instance_uid: ids.instance,
        frames: frames.len(),
    })
}
