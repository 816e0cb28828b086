//! One file's header, read with dicom-rs after [`walk`](super::walk) has bounded it: which
//! series the file belongs to and, for the slices of the chosen series, what the volume needs.
//! A file of another series only has to say its series, so an unreadable slice elsewhere in the
//! folder (another modality, a compressed series) does not block the one asked for.

use super::identity::{self, Identity};
use super::walk::{self, Walk, PREAMBLE};
use crate::error::{Error, Result};
use dicom_core::header::HasLength;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemDicomObject;
use dicom_object::OpenFileOptions;
use std::ops::Range;

/// A DICOM file of a series: the series and, when the file can be a CT slice, its slice header.
#[derive(Debug, Clone)]
pub struct FileHeader {
    pub series_uid: String,
    /// Empty when the file does not say.
    pub modality: String,
    /// The slice header, or why this file cannot be one (reported only when its series is read).
    pub slice: Result<SliceHeader>,
}

/// What a slice of a volume needs from its file.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceHeader {
    pub rows: u16,
    pub columns: u16,
    /// Pixel Spacing: between rows (y), then between columns (x), in mm.
    pub pixel_spacing: [f64; 2],
    /// Image Orientation (Patient): the row (x) direction, then the column (y) direction.
    pub orientation: [f64; 6],
    /// Image Position (Patient): the centre of the first voxel, mm, LPS.
    pub position: [f64; 3],
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub pixel_representation: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
    /// Number of Frames (1 when absent).
    pub frames: i64,
    /// Rescale Slope and Intercept (1 and 0 when absent).
    pub rescale: [f64; 2],
    /// Slice Thickness (0018,0050) in mm; `None` when absent, empty or 0 (a type 2 element:
    /// "unknown"). A negative or non-finite value is refused.
    pub slice_thickness: Option<f64>,
    pub transfer_syntax: String,
    /// Where the Pixel Data value lies in the file's bytes (`None`: encapsulated).
    pub pixel_data: Option<Range<usize>>,
    /// What identifies the slice, for derived objects (DICOM SEG); not needed to read it.
    pub identity: Identity,
}

/// Reads the header of a Part-10 file; `Ok(None)` for DICOM files that belong to no series (a
/// DICOMDIR). A file of a series without Pixel Data (a report, or a slice cut short at an
/// element boundary) gets a slice error, so that it cannot silently drop out of its series.
pub fn read(bytes: &[u8]) -> Result<Option<FileHeader>> {
    let found = walk::walk(bytes)?;
    let obj = parse(bytes)?;
    let Some(series_uid) = text(&obj, tags::SERIES_INSTANCE_UID)? else {
        if found.pixel_data.is_some() || found.encapsulated {
            return Err(missing(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"));
        }
        return Ok(None);
    };
    let slice = if found.pixel_data.is_none() && !found.encapsulated {
        Err(Error::format(
            "no Pixel Data (7FE0,0010): not an image, or cut short",
        ))
    } else {
        slice(&obj, found)
    };
    Ok(Some(FileHeader {
        series_uid,
        modality: text(&obj, tags::MODALITY)?.unwrap_or_default(),
        slice,
    }))
}

fn parse(bytes: &[u8]) -> Result<InMemDicomObject> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .read_preamble(ReadPreamble::Never)
        .from_reader(&bytes[PREAMBLE..])
        .map_err(|e| Error::format(format!("not a readable DICOM file: {e}")))?;
    Ok(obj.into_inner())
}

fn slice(obj: &InMemDicomObject, found: Walk) -> Result<SliceHeader> {
    Ok(SliceHeader {
        rows: required(obj, tags::ROWS, "Rows", int)?,
        columns: required(obj, tags::COLUMNS, "Columns", int)?,
        pixel_spacing: required(obj, tags::PIXEL_SPACING, "PixelSpacing", floats)?,
        orientation: required(
            obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            floats,
        )?,
        position: required(
            obj,
            tags::IMAGE_POSITION_PATIENT,
            "ImagePositionPatient",
            floats,
        )?,
        bits_allocated: required(obj, tags::BITS_ALLOCATED, "BitsAllocated", int)?,
        bits_stored: required(obj, tags::BITS_STORED, "BitsStored", int)?,
        high_bit: required(obj, tags::HIGH_BIT, "HighBit", int)?,
        pixel_representation: required(
            obj,
            tags::PIXEL_REPRESENTATION,
            "PixelRepresentation",
            int,
        )?,
        samples_per_pixel: required(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", int)?,
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION)?.ok_or_else(|| {
            missing(
                tags::PHOTOMETRIC_INTERPRETATION,
                "PhotometricInterpretation",
            )
        })?,
        frames: optional(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames", int)?.unwrap_or(1),
        rescale: [
            optional(obj, tags::RESCALE_SLOPE, "RescaleSlope", float)?.unwrap_or(1.0),
            optional(obj, tags::RESCALE_INTERCEPT, "RescaleIntercept", float)?.unwrap_or(0.0),
        ],
        slice_thickness: optional(obj, tags::SLICE_THICKNESS, "SliceThickness", thickness)?
            .filter(|&t| t > 0.0),
        transfer_syntax: found.transfer_syntax,
        pixel_data: found.pixel_data,
        identity: identity::read(obj),
    })
}

type Element = dicom_object::mem::InMemElement;

/// A text value, trimmed; `None` when absent or empty.
pub(super) fn text(obj: &InMemDicomObject, tag: Tag) -> Result<Option<String>> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    let s = e
        .to_str()
        .map_err(|err| Error::format(format!("{tag}: {err}")))?;
    let s = walk::trimmed(s.as_bytes());
    Ok((!s.is_empty()).then_some(s))
}

fn missing(tag: Tag, name: &str) -> Error {
    Error::format(format!("missing required tag {name} {tag}"))
}

fn required<T>(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    conv: fn(&Element) -> Option<T>,
) -> Result<T> {
    optional(obj, tag, name, conv)?.ok_or_else(|| missing(tag, name))
}

/// A value converted by `conv`; `None` when absent or empty, an error when unreadable.
fn optional<T>(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    conv: fn(&Element) -> Option<T>,
) -> Result<Option<T>> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    if e.is_empty() {
        return Ok(None);
    }
    let shown = e.to_str().map(|s| s.into_owned()).unwrap_or_default();
    conv(e).map(Some).ok_or_else(|| {
        Error::format(format!(
            "{name} {tag} = {:?} is not a valid value",
            shown.chars().take(80).collect::<String>()
        ))
    })
}

fn int<T: TryFrom<i64>>(e: &Element) -> Option<T> {
    let v = e.to_multi_int::<i64>().ok()?;
    match v[..] {
        [x] => T::try_from(x).ok(),
        _ => None,
    }
}

fn float(e: &Element) -> Option<f64> {
    match floats::<1>(e)? {
        [x] => Some(x),
    }
}

/// One finite number, not negative.
fn thickness(e: &Element) -> Option<f64> {
    float(e).filter(|&t| t >= 0.0)
}

/// Exactly `N` finite numbers.
fn floats<const N: usize>(e: &Element) -> Option<[f64; N]> {
    let v = e.to_multi_float64().ok()?;
    let a: [f64; N] = v.try_into().ok()?;
    a.iter().all(|x| x.is_finite()).then_some(a)
}
