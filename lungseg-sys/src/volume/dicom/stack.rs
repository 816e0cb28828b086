//! Slices into a volume: the series must agree on size, orientation, spacing and pixel format;
//! slices are sorted by their position along the slice normal (never by file name or
//! InstanceNumber) and must be evenly spaced along it, without gaps, duplicates or tilt. The
//! geometry is the one SimpleITK's `ImageSeriesReader` gives.

use super::header::SliceHeader;
use super::pixels::PixelFormat;
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use std::path::{Path, PathBuf};

/// Relative tolerance on slice steps: each step along the normal within 1 % of the smallest,
/// and each step's in-plane part (gantry tilt) within 1 % of its step along the normal.
pub const STEP_TOLERANCE: f64 = 0.01;
/// Two slices closer than this along the normal (mm) are at the same position.
pub const SAME_POSITION_MM: f64 = 1e-3;
/// Orientation cosines of two slices may differ by this much (rounding of decimal strings).
const ORIENTATION_TOLERANCE: f64 = 1e-4;
/// Pixel spacings of two slices may differ by this fraction.
const SPACING_TOLERANCE: f64 = 1e-4;

/// A slice of the chosen series.
#[derive(Debug, Clone)]
pub struct Slice {
    pub path: PathBuf,
    pub header: SliceHeader,
    pub format: PixelFormat,
}

/// The series' geometry, and its slices in volume order (z index).
#[derive(Debug)]
pub struct Stack {
    pub geometry: Geometry,
    pub slices: Vec<Slice>,
}

fn name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Checks that every slice matches the first, sorts them and derives the geometry.
pub fn stack(slices: Vec<Slice>) -> Result<Stack> {
    let first = slices
        .first()
        .ok_or_else(|| Error::format("the series has no slice"))?;
    if slices.len() < 2 {
        return Err(Error::unsupported(format!(
            "the series has one slice ({}): a volume needs at least 2",
            name(&first.path)
        )));
    }
    for s in &slices[1..] {
        consistent(first, s)?;
    }
    let h = &first.header;
    let row = unit(&h.orientation[..3], "row", &first.path)?;
    let col = unit(&h.orientation[3..], "column", &first.path)?;
    if dot(row, col).abs() > 1e-3 {
        return Err(Error::format(format!(
            "{}: ImageOrientationPatient {:?} is not two orthogonal directions",
            name(&first.path),
            h.orientation
        )));
    }
    let normal = normalized(cross(row, col));
    let mut slices = slices;
    slices
        .sort_by(|a, b| dot(a.header.position, normal).total_cmp(&dot(b.header.position, normal)));
    check_steps(&slices, normal)?;
    let geometry = geometry(&slices, normal)?;
    Ok(Stack { geometry, slices })
}

/// Size, orientation, spacing, pixel format and rescale of `s` agree with `first`.
fn consistent(first: &Slice, s: &Slice) -> Result<()> {
    let (a, b) = (&first.header, &s.header);
    let differ = |what: &str, va: String, vb: String| {
        Err(Error::format(format!(
            "inconsistent {what} within the series: {} has {vb}, {} has {va}",
            name(&s.path),
            name(&first.path)
        )))
    };
    if a.rows != b.rows {
        return differ("Rows", a.rows.to_string(), b.rows.to_string());
    }
    if a.columns != b.columns {
        return differ("Columns", a.columns.to_string(), b.columns.to_string());
    }
    if first.format != s.format || a.bits_stored != b.bits_stored {
        return differ(
            "pixel format (BitsStored/PixelRepresentation)",
            format!("{:?}", first.format),
            format!("{:?}", s.format),
        );
    }
    let close = |x: &[f64], y: &[f64], tol: f64, rel: bool| {
        x.iter().zip(y).all(|(p, q)| {
            let scale = if rel { p.abs().max(q.abs()) } else { 1.0 };
            (p - q).abs() <= tol * scale
        })
    };
    if !close(&a.orientation, &b.orientation, ORIENTATION_TOLERANCE, false) {
        return differ(
            "ImageOrientationPatient",
            format!("{:?}", a.orientation),
            format!("{:?}", b.orientation),
        );
    }
    if !close(&a.pixel_spacing, &b.pixel_spacing, SPACING_TOLERANCE, true) {
        return differ(
            "PixelSpacing",
            format!("{:?}", a.pixel_spacing),
            format!("{:?}", b.pixel_spacing),
        );
    }
    if a.rescale != b.rescale {
        return differ(
            "RescaleSlope/RescaleIntercept (one rescale per volume)",
            format!("{:?}", a.rescale),
            format!("{:?}", b.rescale),
        );
    }
    Ok(())
}

/// Sorted slices: no duplicates, every step within [`STEP_TOLERANCE`] of the smallest (a step of
/// about m times it is m - 1 missing slices), and no in-plane drift (gantry tilt).
fn check_steps(slices: &[Slice], normal: [f64; 3]) -> Result<()> {
    let along = |s: &Slice| dot(s.header.position, normal);
    let pairs = || slices.windows(2).map(|w| (&w[0], &w[1]));
    for (a, b) in pairs() {
        if along(b) - along(a) < SAME_POSITION_MM {
            return Err(Error::format(format!(
                "duplicated position: {} and {} are both at {:.4} mm along the slice normal",
                name(&a.path),
                name(&b.path),
                along(a)
            )));
        }
    }
    let smallest = pairs()
        .map(|(a, b)| along(b) - along(a))
        .fold(f64::INFINITY, f64::min);
    for (a, b) in pairs() {
        let step = along(b) - along(a);
        let ratio = step / smallest;
        let m = ratio.round();
        if (ratio - 1.0).abs() <= STEP_TOLERANCE {
            // an even step
        } else if m >= 2.0 && (ratio - m).abs() <= STEP_TOLERANCE * m {
            return Err(Error::format(format!(
                "missing slice: {} missing between {} at {:.4} mm and {} at {:.4} mm along the \
                 slice normal (step {smallest:.4} mm)",
                m - 1.0,
                name(&a.path),
                along(a),
                name(&b.path),
                along(b)
            )));
        } else {
            return Err(Error::format(format!(
                "uneven slice spacing: {} to {} is {step:.4} mm along the slice normal, the \
                 smallest step is {smallest:.4} mm (tolerance {} % of the step; not resampled)",
                name(&a.path),
                name(&b.path),
                STEP_TOLERANCE * 100.0
            )));
        }
        let v = sub(b.header.position, a.header.position);
        let in_plane = norm(sub(v, scale(normal, step)));
        if in_plane > STEP_TOLERANCE * step {
            return Err(Error::unsupported(format!(
                "gantry tilt: {} is offset {in_plane:.4} mm in-plane from {} over a {step:.4} mm \
                 step ({:.2}°; tolerance {} % of the step); tilted series are not resampled",
                name(&b.path),
                name(&a.path),
                (in_plane / step).atan().to_degrees(),
                STEP_TOLERANCE * 100.0
            )));
        }
    }
    Ok(())
}

/// SimpleITK's `ImageSeriesReader` geometry: the first slice's orientation made orthonormal
/// as GDCM does it (normal = row × column; row = column × normal; column = normal × row, the
/// first two scaled to unit length), x along the rows, y along the columns, z along the normal;
/// z spacing the first-to-last distance over the number of steps; origin the first slice's
/// position. Each operation is the one that reproduces SimpleITK's numbers to the last bit.
fn geometry(slices: &[Slice], normal: [f64; 3]) -> Result<Geometry> {
    let first = &slices[0].header;
    let last = &slices[slices.len() - 1].header;
    let col = [
        first.orientation[3],
        first.orientation[4],
        first.orientation[5],
    ];
    let row = normalized(cross(col, normal));
    let col = cross(normal, row);
    let direction = [
        [row[0], col[0], normal[0]],
        [row[1], col[1], normal[1]],
        [row[2], col[2], normal[2]],
    ];
    let steps = (slices.len() - 1) as f64;
    let dz = norm(sub(last.position, first.position)) / steps;
    let [dy, dx] = first.pixel_spacing;
    let dims = [
        usize::from(first.columns),
        usize::from(first.rows),
        slices.len(),
    ];
    Geometry::new(dims, [dx, dy, dz], first.position, direction)
}

/// A direction cosine vector of the orientation, refused unless of unit length within 1e-3
/// (the geometry makes the pair exactly orthonormal).
fn unit(v: &[f64], which: &str, path: &Path) -> Result<[f64; 3]> {
    let v = [v[0], v[1], v[2]];
    if (norm(v) - 1.0).abs() > 1e-3 {
        return Err(Error::format(format!(
            "{}: ImageOrientationPatient {which} direction {v:?} is not a unit vector",
            name(path)
        )));
    }
    Ok(v)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn normalized(a: [f64; 3]) -> [f64; 3] {
    scale(a, 1.0 / norm(a))
}
