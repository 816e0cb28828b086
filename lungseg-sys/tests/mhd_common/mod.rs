//! Helpers shared by the MetaImage integration tests: scratch folders and SimpleITK via python3.
#![allow(dead_code)]

use lungseg::{ElementType, Geometry, PixelData, Volume};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty folder under cargo's per-target temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("mhd")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a python3 snippet that uses SimpleITK; fails (never skips) when it is not installed.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); these tests need it: pip install SimpleITK numpy")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("No module named") {
            panic!("python3 lacks SimpleITK or numpy: pip install SimpleITK numpy\n{stderr}");
        }
        panic!("python3 failed: {stderr}");
    }
    String::from_utf8(out.stdout).unwrap()
}

/// numpy dtype of our storage for an element type.
pub fn numpy_dtype(t: ElementType) -> &'static str {
    match t {
        ElementType::Char => "int8",
        ElementType::UChar => "uint8",
        ElementType::Short => "int16",
        ElementType::UShort => "uint16",
        ElementType::Int | ElementType::Long => "int32",
        ElementType::UInt | ElementType::ULong => "uint32",
        ElementType::LongLong => "int64",
        ElementType::ULongLong => "uint64",
        ElementType::Float => "float32",
        ElementType::Double => "float64",
    }
}

/// What SimpleITK sees in a file, and its voxels as raw bytes in our storage type.
#[derive(Debug)]
pub struct SitkImage {
    pub size: [usize; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
    /// Row-major `D[r][c]`, as `GetDirection()`.
    pub direction: [f64; 9],
    pub channels: usize,
    pub bytes: Vec<u8>,
}

const READ_PY: &str = r#"
import sys, json
import SimpleITK as sitk, numpy as np
args = sys.argv[1:]
for path, dtype, dump in zip(args[0::3], args[1::3], args[2::3]):
    im = sitk.ReadImage(path)
    a = sitk.GetArrayViewFromImage(im)
    np.ascontiguousarray(a.astype(dtype)).tofile(dump)
    print(json.dumps({"size": im.GetSize(), "spacing": im.GetSpacing(), "origin": im.GetOrigin(),
                      "direction": im.GetDirection(), "channels": im.GetNumberOfComponentsPerPixel()}))
"#;

/// Reads `path` with `SimpleITK.ReadImage`.
pub fn sitk_read(path: &Path, t: ElementType) -> SitkImage {
    sitk_read_many(&[(path.to_path_buf(), t)]).pop().unwrap()
}

/// Reads several files in one python process (each start costs ~0.5 s of SimpleITK import).
pub fn sitk_read_many(files: &[(PathBuf, ElementType)]) -> Vec<SitkImage> {
    let mut args = Vec::new();
    for (path, t) in files {
        let dump = path.with_extension("sitk.bin");
        args.extend([
            path.to_str().unwrap().to_string(),
            numpy_dtype(*t).to_string(),
            dump.to_str().unwrap().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(READ_PY, &args);
    assert_eq!(
        out.lines().count(),
        files.len(),
        "SimpleITK answered for fewer files:\n{out}"
    );
    out.lines()
        .zip(files)
        .map(|(line, (path, _))| {
            let j: serde_json::Value = serde_json::from_str(line).unwrap();
            let arr = |k: &str| -> Vec<f64> {
                j[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            };
            let size = arr("size");
            let (sp, or, di) = (arr("spacing"), arr("origin"), arr("direction"));
            SitkImage {
                size: [size[0] as usize, size[1] as usize, size[2] as usize],
                spacing: [sp[0], sp[1], sp[2]],
                origin: [or[0], or[1], or[2]],
                direction: di.try_into().unwrap(),
                channels: j["channels"].as_u64().unwrap() as usize,
                bytes: std::fs::read(path.with_extension("sitk.bin")).unwrap(),
            }
        })
        .collect()
}

/// Asserts our volume and SimpleITK's view of a file agree exactly.
pub fn assert_same(v: &Volume, s: &SitkImage, what: &str) {
    let g = &v.geometry;
    assert_eq!(g.dims, s.size, "{what}: size");
    assert_eq!(g.spacing, s.spacing, "{what}: spacing");
    assert_eq!(g.origin, s.origin, "{what}: origin");
    assert_eq!(g.direction_row_major(), s.direction, "{what}: direction");
    assert_eq!(v.channels, s.channels, "{what}: channels");
    assert!(
        v.data.as_bytes() == s.bytes.as_slice(),
        "{what}: voxel values differ"
    );
}

/// Deterministic test data of `n` samples in the storage type of `t`, spanning its range.
pub fn sample_data(t: ElementType, n: usize) -> PixelData {
    let f = |i: usize| ((i as u64).wrapping_mul(2654435761) >> 7) as i64 - (1 << 20);
    match t {
        ElementType::Char => PixelData::I8((0..n).map(|i| f(i) as i8).collect()),
        ElementType::UChar => PixelData::U8((0..n).map(|i| f(i) as u8).collect()),
        ElementType::Short => PixelData::I16((0..n).map(|i| f(i) as i16).collect()),
        ElementType::UShort => PixelData::U16((0..n).map(|i| f(i) as u16).collect()),
        ElementType::Int | ElementType::Long => {
            PixelData::I32((0..n).map(|i| (f(i) as i32).wrapping_mul(1000)).collect())
        }
        ElementType::UInt | ElementType::ULong => {
            PixelData::U32((0..n).map(|i| (f(i) as u32).wrapping_mul(1000)).collect())
        }
        ElementType::LongLong => PixelData::I64((0..n).map(|i| f(i) << 30).collect()),
        ElementType::ULongLong => PixelData::U64((0..n).map(|i| (f(i) as u64) << 30).collect()),
        ElementType::Float => PixelData::F32((0..n).map(|i| f(i) as f32 * 0.37).collect()),
        ElementType::Double => PixelData::F64((0..n).map(|i| f(i) as f64 * 1e-3 + 0.1).collect()),
    }
}

/// A small volume with an awkward geometry (anisotropic, non-round origin, given direction).
pub fn sample_volume(t: ElementType, channels: usize, direction: [[f64; 3]; 3]) -> Volume {
    let dims = [7, 5, 3];
    let g = Geometry::new(
        dims,
        [0.7617189884185791, 0.1, 2.5],
        [-198.100006, 0.3, -335.209991],
        direction,
    )
    .unwrap();
    Volume {
        geometry: g,
        element_type: t,
        channels,
        data: sample_data(t, 7 * 5 * 3 * channels),
        layout: lungseg::volume::Layout::packed(dims, channels),
        anatomical_orientation: None,
        extra: Vec::new(),
        slice_thickness_mm: None,
    }
}

/// A LUNA16-style header (SimpleITK's key order) for a 4×3×2 MET_SHORT volume in `d.raw`.
pub const BASIC: &str = "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n\
CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = -198.10000600000001 -195 -335.209991\n\
CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\nElementSpacing = 0.7617189884185791 0.7617189884185791 2.5\n\
DimSize = 4 3 2\nElementType = MET_SHORT\nElementDataFile = d.raw\n";

/// 24 int16 values 0, -1, 2, -3, … as little-endian bytes.
pub fn basic_values() -> Vec<i16> {
    (0..24)
        .map(|i: i16| if i % 2 == 0 { i * 10 } else { -i * 10 })
        .collect()
}

pub fn le_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads `header` (named `h.mhd`, or `h.mha` if `LOCAL`) with `files` in memory.
pub fn mem_read(header: &[u8], files: &[(&str, &[u8])]) -> lungseg::Result<Volume> {
    mem_read_opts(header, files, &lungseg::mhd::ReadOptions::default())
}

pub fn mem_read_opts(
    header: &[u8],
    files: &[(&str, &[u8])],
    opts: &lungseg::mhd::ReadOptions,
) -> lungseg::Result<Volume> {
    let mut src = lungseg::mhd::MemorySource::new().with("h.mhd", header);
    for (name, bytes) in files {
        src = src.with(name, *bytes);
    }
    lungseg::mhd::read_from(&src, "h.mhd", opts)
}

/// Asserts an error of `kind` whose message contains every one of `needles`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    r: lungseg::Result<T>,
    kind: lungseg::ErrorKind,
    needles: &[&str],
) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.kind, kind, "wrong kind for: {}", e.message);
    for n in needles {
        assert!(e.message.contains(n), "message {:?} lacks {n:?}", e.message);
    }
}

pub fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
