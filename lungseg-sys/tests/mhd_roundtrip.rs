//! Writer → our reader → SimpleITK, and SimpleITK's own files → our reader: values and geometry
//! must be identical. Needs `pip install SimpleITK numpy` (fails loudly without it).

mod mhd_common;

use lungseg::geometry::IDENTITY;
use lungseg::mhd::{self, ReadOptions, WriteOptions};
use lungseg::ElementType;
use mhd_common::*;

const FLIPPED: [[f64; 3]; 3] = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
/// A rotation about z by asin(0.6) combined with a flip of z.
const ROTATED: [[f64; 3]; 3] = [[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, -1.0]];

#[test]
fn our_files_read_identically_by_us_and_simpleitk() {
    let dir = scratch("roundtrip");
    let cases = [
        (ElementType::Short, 1, FLIPPED),
        (ElementType::UChar, 1, IDENTITY),
        (ElementType::Char, 1, ROTATED),
        (ElementType::UShort, 1, IDENTITY),
        (ElementType::Int, 1, ROTATED),
        (ElementType::UInt, 1, FLIPPED),
        (ElementType::Long, 1, IDENTITY),
        (ElementType::ULong, 1, IDENTITY),
        (ElementType::LongLong, 1, IDENTITY),
        (ElementType::ULongLong, 1, IDENTITY),
        (ElementType::Float, 1, ROTATED),
        (ElementType::Double, 1, FLIPPED),
        (ElementType::Float, 3, IDENTITY),
    ];
    let mut written = Vec::new();
    for (t, channels, dir_m) in cases {
        let v = sample_volume(t, channels, dir_m);
        for (ext, compress) in [("mhd", false), ("mhd", true), ("mha", false), ("mha", true)] {
            let what = format!("{} x{channels} .{ext} compress={compress}", t.met_name());
            let path = dir.join(format!("{}_{channels}_{compress}.{ext}", t.met_name()));
            mhd::write(&path, &v, &WriteOptions { compress }).unwrap();
            let ours = mhd::read(&path, &ReadOptions::default()).unwrap();
            assert_eq!(ours.geometry, v.geometry, "{what}: our geometry");
            assert_eq!(ours.data, v.data, "{what}: our values");
            assert_eq!(ours.element_type, t, "{what}: element type");
            assert_eq!(ours.channels, channels, "{what}");
            written.push((path, t, ours, what));
        }
    }
    let files: Vec<_> = written.iter().map(|(p, t, _, _)| (p.clone(), *t)).collect();
    for ((_, _, ours, what), theirs) in written.iter().zip(sitk_read_many(&files)) {
        assert_same(ours, &theirs, what);
    }
}

#[test]
fn header_matches_simpleitk_byte_for_byte() {
    let dir = scratch("header_bytes");
    let v = sample_volume(ElementType::Short, 1, FLIPPED);
    mhd::write(&dir.join("ours.mhd"), &v, &WriteOptions::default()).unwrap();
    python(
        r#"
import sys, SimpleITK as sitk
d = sys.argv[1]
im = sitk.ReadImage(d + "/ours.mhd")
for k in im.GetMetaDataKeys():
    im.EraseMetaData(k)
sitk.WriteImage(im, d + "/theirs.mhd")
"#,
        &[dir.to_str().unwrap()],
    );
    let ours = std::fs::read_to_string(dir.join("ours.mhd")).unwrap();
    let theirs = std::fs::read_to_string(dir.join("theirs.mhd"))
        .unwrap()
        .replace("theirs.raw", "ours.raw");
    assert_eq!(ours, theirs);
    assert_eq!(
        std::fs::read(dir.join("ours.raw")).unwrap(),
        std::fs::read(dir.join("theirs.raw")).unwrap()
    );
}

const SITK_WRITE_PY: &str = r#"
import sys, numpy as np, SimpleITK as sitk
d = sys.argv[1]
rng = np.random.default_rng(7)
cases = [("short", np.int16, False), ("ushort", np.uint16, False), ("float", np.float32, False),
         ("double", np.float64, False), ("uchar", np.uint8, False), ("int", np.int32, False)]
for name, dt, vec in cases:
    a = (rng.normal(0, 300, size=(4, 6, 5))).astype(dt)
    im = sitk.GetImageFromArray(a)
    im.SetSpacing((0.6914060115814209, 0.6914060115814209, 1.25))
    im.SetOrigin((-172.89999389648438, -180.5, -356.75))
    im.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1) if name != "float" else (0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1))
    sitk.WriteImage(im, f"{d}/{name}.mhd")
    sitk.WriteImage(im, f"{d}/{name}_z.mhd", True)
    sitk.WriteImage(im, f"{d}/{name}.mha")
    sitk.WriteImage(im, f"{d}/{name}_z.mha", True)
v = sitk.GetImageFromArray(rng.normal(size=(3, 4, 5, 2)).astype(np.float32), isVector=True)
sitk.WriteImage(v, f"{d}/vector.mhd", True)
"#;

#[test]
fn simpleitk_files_read_identically() {
    let dir = scratch("from_sitk");
    python(SITK_WRITE_PY, &[dir.to_str().unwrap()]);
    let types = [
        ("short", ElementType::Short),
        ("ushort", ElementType::UShort),
        ("float", ElementType::Float),
        ("double", ElementType::Double),
        ("uchar", ElementType::UChar),
        ("int", ElementType::Int),
    ];
    let mut read = Vec::new();
    for (name, t) in types {
        for file in [
            format!("{name}.mhd"),
            format!("{name}_z.mhd"),
            format!("{name}.mha"),
            format!("{name}_z.mha"),
        ] {
            let path = dir.join(&file);
            let ours =
                mhd::read(&path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(ours.element_type, t, "{file}");
            read.push((path, t, ours, file));
        }
    }
    let files: Vec<_> = read.iter().map(|(p, t, _, _)| (p.clone(), *t)).collect();
    for ((_, _, ours, file), theirs) in read.iter().zip(sitk_read_many(&files)) {
        assert_same(ours, &theirs, file);
    }
    let path = dir.join("vector.mhd");
    let ours = mhd::read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(ours.channels, 2);
    assert_same(&ours, &sitk_read(&path, ElementType::Float), "vector.mhd");
    let e = ours.require_scalar().unwrap_err();
    assert_eq!(e.kind, lungseg::ErrorKind::Unsupported);
    assert!(e.message.contains("ElementNumberOfChannels"), "{e}");
}
