//! Writes MetaImage the way SimpleITK does (same key order, `%.17g` numbers, zlib for `.zraw`),
//! so files we produce diff cleanly against SimpleITK's and any ITK tool reads them.

use super::WriteOptions;
use crate::error::{Error, Result};
use crate::volume::{PixelData, Volume};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// Keys the reader interprets: never copied from `Volume::extra`, so a stale entry cannot
/// contradict what we write.
const RESERVED: [&str; 24] = [
    "ObjectType",
    "NDims",
    "DimSize",
    "ElementSpacing",
    "ElementSize",
    "Offset",
    "Position",
    "Origin",
    "TransformMatrix",
    "Rotation",
    "Orientation",
    "CenterOfRotation",
    "AnatomicalOrientation",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "ElementByteOrderMSB",
    "CompressedData",
    "CompressedDataSize",
    "HeaderSize",
    "ElementNumberOfChannels",
    "ElementType",
    "ElementDataFile",
    "Comment",
    "ObjectSubType",
];

pub(crate) fn write(path: &Path, volume: &Volume, opts: &WriteOptions) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let local = match ext.as_deref() {
        Some("mha") => true,
        Some("mhd") => false,
        _ => {
            return Err(Error::invalid(format!(
                "{}: MetaImage files must end in .mhd or .mha",
                path.display()
            )))
        }
    };
    let volume = &*volume.packed()?;
    check_storage(volume)?;
    let raw = volume.data.as_bytes();
    let compressed = opts.compress.then(|| compress(raw)).transpose()?;
    let payload: &[u8] = compressed.as_deref().unwrap_or(raw);

    let data_name = if local {
        "LOCAL".to_string()
    } else {
        let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| {
            Error::invalid(format!("{}: file name is not valid UTF-8", path.display()))
        })?;
        format!("{stem}.{}", if opts.compress { "zraw" } else { "raw" })
    };
    let header = header_text(volume, compressed.as_ref().map(|c| c.len()), &data_name);

    if local {
        write_replacing(path, &[header.as_bytes(), payload])
    } else {
        // Data first: a header never points at a data file that is not there yet.
        write_replacing(&path.with_file_name(&data_name), &[payload])?;
        write_replacing(path, &[header.as_bytes()])
    }
}

/// Writes `parts` to a temporary file beside `path` and renames it over `path`, so a failed
/// write (full disk, bad folder) leaves any earlier file whole and no partial one behind.
pub(crate) fn write_replacing(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let io = |p: &Path, e| Error::from_io(p.display(), e);
    let (tmp, mut f) = create_temp(path)?;
    let result = (|| {
        for part in parts {
            f.write_all(part).map_err(|e| io(path, e))?;
        }
        f.sync_all().map_err(|e| io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Names tried before giving up when temporary names are already taken.
const TEMP_ATTEMPTS: u32 = 16;

/// Creates `.name.PID-N.tmp` beside `path`, exclusively (`O_EXCL`): the name is predictable,
/// so in a shared folder someone may have planted a file or symlink there, and opening it
/// would write wherever the link points. A taken name is skipped, never opened.
fn create_temp(path: &Path) -> Result<(std::path::PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: no file name", path.display())))?;
    // Unique per process and call: two threads writing the same path never share a temp file.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}-{call}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(Error::from_io(path.display(), e)),
        }
    }
    let e = last.expect("TEMP_ATTEMPTS > 0");
    Err(Error::io(format!(
        "{}: {TEMP_ATTEMPTS} temporary names beside it are already taken ({e})",
        path.display()
    )))
}

/// The data must match the geometry and be stored in the element type's natural type.
fn check_storage(volume: &Volume) -> Result<()> {
    use crate::volume::ElementType as T;
    let want = volume
        .geometry
        .voxel_count()
        .checked_mul(volume.channels)
        .ok_or_else(|| Error::invalid("voxel count × channels overflows"))?;
    if volume.channels == 0 || volume.data.len() != want {
        return Err(Error::invalid(format!(
            "volume has {} samples, dims {:?} × {} channels need {want}",
            volume.data.len(),
            volume.geometry.dims,
            volume.channels
        )));
    }
    let stored = volume.data.element_type();
    let ok = stored == volume.element_type
        || matches!(
            (volume.element_type, &volume.data),
            (T::Long, PixelData::I32(_)) | (T::ULong, PixelData::U32(_))
        );
    if !ok {
        return Err(Error::invalid(format!(
            "element_type {} does not match the stored {} samples",
            volume.element_type.met_name(),
            stored.met_name()
        )));
    }
    Ok(())
}

/// One zlib stream at level 2, as SimpleITK's `useCompression`.
fn compress(raw: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(raw.len() / 2),
        flate2::Compression::new(2),
    );
    enc.write_all(raw)
        .and_then(|_| enc.finish())
        .map_err(|e| Error::io(format!("zlib compression failed: {e}")))
}

/// The header in SimpleITK's key order.
pub(crate) fn header_text(
    volume: &Volume,
    compressed_size: Option<usize>,
    data_name: &str,
) -> String {
    let g = &volume.geometry;
    let nums = |v: &[f64]| v.iter().map(|&x| g17(x)).collect::<Vec<_>>().join(" ");
    // Row i of TransformMatrix is the direction of axis i, i.e. column i of D.
    let tm: Vec<f64> = (0..3)
        .flat_map(|c| (0..3).map(move |r| g.direction[r][c]))
        .collect();
    let orientation = volume
        .anatomical_orientation
        .as_deref()
        .filter(|s| is_safe_value(s) && !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| anatomical_orientation(&g.direction));

    let mut h = String::new();
    let mut kv = |k: &str, v: &str| {
        let _ = writeln!(h, "{k} = {v}");
    };
    kv("ObjectType", "Image");
    kv("NDims", "3");
    kv("BinaryData", "True");
    kv(
        "BinaryDataByteOrderMSB",
        if cfg!(target_endian = "big") {
            "True"
        } else {
            "False"
        },
    );
    match compressed_size {
        Some(n) => {
            kv("CompressedData", "True");
            kv("CompressedDataSize", &n.to_string());
        }
        None => kv("CompressedData", "False"),
    }
    kv("TransformMatrix", &nums(&tm));
    kv("Offset", &nums(&g.origin));
    kv("CenterOfRotation", "0 0 0");
    kv("AnatomicalOrientation", &orientation);
    kv("ElementSpacing", &nums(&g.spacing));
    for (k, v) in &volume.extra {
        if !RESERVED.contains(&k.as_str()) && is_safe_key(k) && is_safe_value(v) {
            kv(k, v);
        }
    }
    kv("DimSize", &g.dims.map(|d| d.to_string()).join(" "));
    if volume.channels > 1 {
        kv("ElementNumberOfChannels", &volume.channels.to_string());
    }
    kv("ElementType", volume.element_type.met_name());
    kv("ElementDataFile", data_name);
    h
}

fn is_safe_key(k: &str) -> bool {
    !k.is_empty() && !k.contains(['=', ':', '\n', '\r']) && k.trim() == k
}

fn is_safe_value(v: &str) -> bool {
    !v.contains(['\n', '\r', '\0'])
}

/// ITK's letters for the closest world axis of each index axis (identity = `RAI`).
fn anatomical_orientation(d: &[[f64; 3]; 3]) -> String {
    (0..3)
        .map(|c| {
            let r = (0..3).fold(0, |best, r| {
                if d[r][c].abs() > d[best][c].abs() {
                    r
                } else {
                    best
                }
            });
            let letters = [['R', 'L'], ['A', 'P'], ['I', 'S']];
            letters[r][usize::from(d[r][c] < 0.0)]
        })
        .collect()
}

/// C's `%.17g`: 17 significant digits, trailing zeros removed, exponent form outside 1e-4..1e17.
pub fn g17(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..17).contains(&exp) {
        trim(&format!("{x:.*}", (16 - exp) as usize))
    } else {
        format!(
            "{}e{}{:02}",
            trim(mantissa),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_printf() {
        for (x, s) in [
            (-198.100006, "-198.10000600000001"),
            (-335.209991, "-335.209991"),
            (0.1, "0.10000000000000001"),
            (0.7617189884185791, "0.7617189884185791"),
            (1e-5, "1.0000000000000001e-05"),
            (1e20, "1e+20"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (-195.0, "-195"),
            (2.5, "2.5"),
            (-0.0, "-0"),
        ] {
            assert_eq!(g17(x), s, "{x:e}");
        }
    }

    /// Every temporary name this process could use is a planted symlink to a victim file: the
    /// write must skip or refuse them, never write through one.
    #[cfg(unix)]
    #[test]
    fn planted_symlinks_at_temp_names_are_not_followed() {
        let dir = std::env::temp_dir().join(format!("lungseg-tmp-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let target = dir.join("out.raw");
        for n in 0..4096 {
            let link = dir.join(format!(".out.raw.{}-{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&victim, link).unwrap();
        }
        let r = write_replacing(&target, &[b"payload"]);
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        match r {
            Err(e) => assert!(e.message.contains("already taken"), "{e}"),
            Ok(()) => assert_eq!(std::fs::read(&target).unwrap(), b"payload"),
        }
        assert!(std::fs::symlink_metadata(&victim).unwrap().is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn orientation_letters_like_itk() {
        let id = crate::geometry::IDENTITY;
        assert_eq!(anatomical_orientation(&id), "RAI");
        let flip = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(anatomical_orientation(&flip), "LPI");
    }
}
