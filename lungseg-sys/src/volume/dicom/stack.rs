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
    let geometry = geometry(&slices)?;
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
fn geometry(slices: &[Slice]) -> Result<Geometry> {
    let first = &slices[0].header;
    let last = &slices[slices.len() - 1].header;
    let o = first.orientation;
    let (row, col) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let normal = normalized(cross(row, col));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn slice(z: f64) -> Slice {
        Slice {
            path: PathBuf::from(format!("z{z}")),
            header: SliceHeader {
                rows: 2,
                columns: 3,
                pixel_spacing: [0.7, 0.6],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                position: [0.0, 0.0, z],
                bits_allocated: 16,
                bits_stored: 16,
                high_bit: 15,
                pixel_representation: 1,
                samples_per_pixel: 1,
                photometric: "MONOCHROME2".into(),
                frames: 1,
                rescale: [1.0, -1024.0],
                slice_thickness: None,
                transfer_syntax: "1.2.840.10008.1.2.1".into(),
                pixel_data: Some(0..12),
                identity: Default::default(),
            },
            format: PixelFormat {
                signed: true,
                bits_stored: 16,
            },
        }
    }

    fn refused(slices: Vec<Slice>, kind: ErrorKind, words: &str) {
        let e = stack(slices).unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(words), "{e}");
    }

    #[test]
    fn sorted_along_the_normal_whatever_the_input_order() {
        let s = stack(vec![slice(5.0), slice(-5.0), slice(0.0)]).unwrap();
        let z: Vec<f64> = s.slices.iter().map(|s| s.header.position[2]).collect();
        assert_eq!(z, [-5.0, 0.0, 5.0]);
        assert_eq!(s.geometry.dims, [3, 2, 3]);
        assert_eq!(s.geometry.spacing, [0.6, 0.7, 5.0]);
        assert_eq!(s.geometry.origin, [0.0, 0.0, -5.0]);
    }

    #[test]
    fn what_a_series_must_agree_on() {
        refused(vec![slice(0.0)], ErrorKind::Unsupported, "at least 2");
        let mut b = slice(1.0);
        b.header.pixel_spacing = [0.7, 0.61];
        refused(
            vec![slice(0.0), b],
            ErrorKind::Format,
            "inconsistent PixelSpacing",
        );
        let mut b = slice(1.0);
        b.header.orientation = [1.0, 0.0, 0.0, 0.0, 0.999, 0.0447];
        refused(
            vec![slice(0.0), b],
            ErrorKind::Format,
            "inconsistent ImageOrientation",
        );
        let mut b = slice(1.0);
        b.header.rescale = [1.0, -1000.0];
        refused(
            vec![slice(0.0), b],
            ErrorKind::Format,
            "one rescale per volume",
        );
        let mut b = slice(1.0);
        b.format.signed = false;
        refused(vec![slice(0.0), b], ErrorKind::Format, "pixel format");
        let bent = |z| {
            let mut s = slice(z);
            s.header.orientation = [1.0, 0.0, 0.0, 0.1, 1.0, 0.0];
            s
        };
        refused(
            vec![bent(0.0), bent(1.0)],
            ErrorKind::Format,
            "not a unit vector",
        );
        let skew = |z| {
            let mut s = slice(z);
            let c = std::f64::consts::FRAC_1_SQRT_2;
            s.header.orientation = [1.0, 0.0, 0.0, c, c, 0.0];
            s
        };
        refused(vec![skew(0.0), skew(1.0)], ErrorKind::Format, "orthogonal");
    }

    #[test]
    fn steps_tolerate_one_percent_and_count_missing_slices() {
        assert!(stack(vec![slice(0.0), slice(2.5), slice(5.02)]).is_ok());
        refused(
            vec![slice(0.0), slice(2.5), slice(5.1)],
            ErrorKind::Format,
            "uneven slice spacing",
        );
        refused(
            vec![slice(0.0), slice(2.5), slice(10.0)],
            ErrorKind::Format,
            "2 missing between z2.5",
        );
        refused(
            vec![slice(0.0), slice(0.0005), slice(1.0)],
            ErrorKind::Format,
            "duplicated position",
        );
        let mut tilted = slice(2.5);
        tilted.header.position[1] = 0.02;
        assert!(stack(vec![slice(0.0), tilted.clone()]).is_ok());
        tilted.header.position[1] = 0.03;
        refused(
            vec![slice(0.0), tilted],
            ErrorKind::Unsupported,
            "gantry tilt",
        );
    }
}
