//! CT from a folder of DICOM files (one slice per file, uncompressed), into the same
//! [`Volume`] the MetaImage reader gives, with the geometry SimpleITK's `ImageSeriesReader`
//! gives (docs/dicom.md).
//!
//! [`scan`] lists the folder, [`walk`] bounds each file's element structure before
//! [`header`] reads it with dicom-rs, [`series`] picks the series, [`stack`] sorts the slices
//! and derives the geometry, [`pixels`] decodes the samples. [`fuzzing`] holds the fuzz body.
//! [`identity`] keeps what identifies each slice, for [`seg`], which writes DICOM SEG on the
//! series' grid.

pub mod fuzzing;
pub mod header;
pub mod identity;
pub mod pixels;
pub mod scan;
pub mod seg;
pub mod series;
pub mod stack;
pub mod walk;

use crate::error::{Error, Result};
use crate::mhd::{ReadOptions, DEFAULT_MAX_DATA_FILES};
use crate::volume::{ElementType, Layout, PixelData, Rescale, Volume};
use pixels::{PixelFormat, Stored};
use series::Member;
use stack::{Slice, Stack};
use std::path::Path;

/// Default [`DicomOptions::max_file_bytes`]: a 1024 × 1024 16-bit slice is 2 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// Which series to read, and the limits on what a folder may make the reader do.
#[derive(Debug, Clone)]
pub struct DicomOptions {
    /// SeriesInstanceUID to read; `None`: the folder's only CT series.
    pub series_uid: Option<String>,
    /// Refuse volumes with more voxels than this (the MetaImage reader's limit).
    pub max_voxels: u64,
    /// Refuse volumes with more bytes of samples than this (the MetaImage reader's limit).
    pub max_bytes: u64,
    /// Refuse folders with more entries than this (the MetaImage reader's data-file limit).
    pub max_files: u64,
    /// Refuse DICOM files larger than this.
    pub max_file_bytes: u64,
}

impl Default for DicomOptions {
    fn default() -> Self {
        let mhd = ReadOptions::default();
        DicomOptions {
            series_uid: None,
            max_voxels: mhd.max_voxels,
            max_bytes: mhd.max_bytes,
            max_files: DEFAULT_MAX_DATA_FILES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Reads one series of the folder `dir` (not its subfolders).
pub fn read_series(dir: &Path, opts: &DicomOptions) -> Result<Volume> {
    assemble(&open_stack(dir, opts)?, opts)
}

/// The sorted slices and geometry of one series of the folder `dir`, within the limits of
/// `opts`; no pixel is read.
pub fn open_stack(dir: &Path, opts: &DicomOptions) -> Result<Stack> {
    let members = headers(dir, opts)?;
    if members.is_empty() {
        return Err(Error::format(format!(
            "{}: no DICOM image in this folder (subfolders are not searched)",
            dir.display()
        )));
    }
    let chosen = series::select(members, opts.series_uid.as_deref())
        .map_err(|e| e.context(dir.display()))?;
    let slices = chosen
        .into_iter()
        .map(slice)
        .collect::<Result<Vec<Slice>>>()?;
    let stack = stack::stack(slices).map_err(|e| e.context(dir.display()))?;
    check_limits(&stack, opts)?;
    Ok(stack)
}

/// The header of every DICOM image file of the folder.
fn headers(dir: &Path, opts: &DicomOptions) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    for path in scan::list(dir, opts.max_files)? {
        let Some(bytes) = scan::read(&path, opts.max_file_bytes)? else {
            continue;
        };
        if let Some(header) = header::read(&bytes).map_err(|e| e.context(path.display()))? {
            members.push(Member { path, header });
        }
    }
    Ok(members)
}

fn slice(m: Member) -> Result<Slice> {
    let ctx = |e: Error| e.context(m.path.display());
    let header = m.header.slice.map_err(ctx)?;
    let format = PixelFormat::of(&header).map_err(ctx)?;
    Ok(Slice {
        path: m.path,
        header,
        format,
    })
}

/// Voxels and bytes against the limits, before anything is allocated.
fn check_limits(stack: &Stack, opts: &DicomOptions) -> Result<()> {
    let dims = stack.geometry.dims;
    let voxels = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let bytes = voxels.and_then(|v| v.checked_mul(2));
    match (voxels, bytes) {
        (Some(v), Some(b)) if v <= opts.max_voxels && b <= opts.max_bytes => Ok(()),
        _ => Err(Error::limit(format!(
            "Columns × Rows × slices {dims:?} is more than the limit of {} voxels / {} bytes",
            opts.max_voxels, opts.max_bytes
        ))),
    }
}

/// Reads every slice's samples into one packed volume in the stored type; the rescale applies
/// on read.
fn assemble(stack: &Stack, opts: &DicomOptions) -> Result<Volume> {
    let first = &stack.slices[0];
    let [slope, intercept] = first.header.rescale;
    let element_type = if first.format.signed {
        ElementType::Short
    } else {
        ElementType::UShort
    };
    let rescale = Rescale::checked(slope, intercept, element_type).ok_or_else(|| {
        Error::format(format!(
            "{}: RescaleSlope {slope} / RescaleIntercept {intercept} must be finite, the slope \
             non-zero, and map every stored value to a finite float",
            first.path.display()
        ))
    })?;
    let data = if first.format.signed {
        PixelData::I16(samples::<i16>(stack, opts)?)
    } else {
        PixelData::U16(samples::<u16>(stack, opts)?)
    };
    let mut layout = Layout::packed(stack.geometry.dims, 1);
    layout.rescale = rescale;
    let mut volume = Volume::with_layout(stack.geometry, data, layout)?;
    volume.slice_thickness_mm = slice_thickness(stack);
    Ok(volume)
}

/// The thickest slice the series states (a series may mix reconstructions; the coarsest one
/// bounds what the volume resolves); `None` when no slice states one.
fn slice_thickness(stack: &Stack) -> Option<f64> {
    stack
        .slices
        .iter()
        .filter_map(|s| s.header.slice_thickness)
        .reduce(f64::max)
}

fn samples<T: Stored + Clone + Default>(stack: &Stack, opts: &DicomOptions) -> Result<Vec<T>> {
    let mut out = crate::error::try_vec::<T>(stack.geometry.voxel_count(), "DICOM volume")?;
    let per_slice = stack.geometry.dims[0] * stack.geometry.dims[1];
    for (s, dst) in stack.slices.iter().zip(out.chunks_exact_mut(per_slice)) {
        read_pixels(s, opts, dst).map_err(|e| e.context(s.path.display()))?;
    }
    Ok(out)
}

/// One slice's samples, from its file read again (the headers pass kept no pixels); the file
/// must still have the header it had then.
fn read_pixels<T: Stored>(s: &Slice, opts: &DicomOptions, dst: &mut [T]) -> Result<()> {
    let changed = || Error::io("the file changed while the series was read");
    let bytes = scan::read(&s.path, opts.max_file_bytes)?.ok_or_else(changed)?;
    let header = header::read(&bytes)?.ok_or_else(changed)?;
    if header.slice.as_ref().ok() != Some(&s.header) {
        return Err(changed());
    }
    pixels::decode(pixels::pixel_bytes(&s.header, &bytes)?, s.format, dst)
}
