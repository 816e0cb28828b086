//! DICOM series (feature `dicom`) against the outside oracle: the folders under
//! tests/fixtures/dicom/ were written with pydicom and read with SimpleITK's
//! `ImageSeriesReader` by make_dicom_fixtures.py, which stored the expected geometry and every
//! voxel (HU) in expected.json. Each valid series must match voxel for voxel and in geometry to
//! 1e-9; each broken one must be refused with its error kind and a message naming the problem.

mod ffi_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::patch::{self, PatchSpec};
use lungseg::volume::dicom::{self, read_series, DicomOptions};
use lungseg::{ErrorKind, Result, Volume};
use serde_json::Value;
use std::ffi::CString;
use std::ops::Not;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn open(folder: &str, series_uid: Option<&str>) -> Result<Volume> {
    read_series(
        &fixtures().join(folder),
        &DicomOptions {
            series_uid: series_uid.map(str::to_string),
            ..DicomOptions::default()
        },
    )
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn assert_close(name: &str, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: {what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-9,
            "{name}: {what} {got:?}, SimpleITK {want:?}"
        );
    }
}

/// The volume matches SimpleITK's reading of the same series: geometry and every voxel.
fn assert_matches(name: &str, v: &Volume, exp: &Value) {
    let g = &v.geometry;
    let dims: Vec<usize> = floats(&exp["dims"]).iter().map(|&d| d as usize).collect();
    assert_eq!(g.dims.to_vec(), dims, "{name}: dims");
    assert_close(name, "spacing", &g.spacing, &floats(&exp["spacing"]));
    assert_close(name, "origin", &g.origin, &floats(&exp["origin"]));
    let direction = g.direction_row_major();
    assert_close(name, "direction", &direction, &floats(&exp["direction"]));
    assert_eq!(
        v.slice_thickness_mm,
        exp["slice_thickness_mm"].as_f64(),
        "{name}: slice thickness (GDCM's 0018|0050, thickest slice)"
    );
    let mut hu = vec![0f32; g.voxel_count()];
    v.copy_f32(&mut hu).unwrap();
    let want = floats(&exp["hu"]);
    assert_eq!(hu.len(), want.len(), "{name}: voxel count");
    for (i, (h, w)) in hu.iter().zip(&want).enumerate() {
        assert_eq!(f64::from(*h), *w, "{name}: voxel {i} (x fastest)");
    }
}

#[test]
fn every_valid_series_matches_simpleitk() {
    let exp = expected();
    let valid = exp["valid"].as_object().unwrap();
    assert!(
        valid.len() >= 8,
        "expected.json holds {} series",
        valid.len()
    );
    for (name, e) in valid {
        let uid = e["series_uid"].as_str().unwrap();
        let v = open(e["folder"].as_str().unwrap(), Some(uid))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_matches(name, &v, e);
    }
}

#[test]
fn stored_type_and_rescale_are_kept() {
    let v = open("axial_int16", None).unwrap();
    assert_eq!(v.element_type, lungseg::ElementType::Short);
    assert_eq!(v.layout.rescale.intercept, -1024.0);
    let v = open("flipped_uint16", None).unwrap();
    assert_eq!(v.element_type, lungseg::ElementType::UShort);
    assert_eq!(
        (v.layout.rescale.slope, v.layout.rescale.intercept),
        (0.5, -1024.0)
    );
    assert!(open("no_rescale", None)
        .unwrap()
        .layout
        .rescale
        .is_identity());
}

#[test]
fn without_a_uid_the_one_ct_series_is_read() {
    let exp = expected();
    // Beside an MR series, a README and a DICOMDIR.
    let v = open("two_series", None).unwrap();
    assert_matches("two_series default", &v, &exp["valid"]["two_series_ct"]);
}

#[test]
fn several_or_no_ct_series_need_a_uid_and_the_message_lists_them() {
    let exp = expected();
    let e = open("two_ct", None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert!(e.message.contains("2 CT series"), "{e}");
    for key in ["two_ct_first", "two_ct_second"] {
        let uid = exp["valid"][key]["series_uid"].as_str().unwrap();
        assert!(e.message.contains(uid), "{e} lacks {uid}");
    }
    let e = open("two_series", Some("1.2.3.4")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    let mr = exp["valid"]["two_series_mr"]["series_uid"]
        .as_str()
        .unwrap();
    assert!(
        e.message.contains("no series 1.2.3.4") && e.message.contains(mr),
        "{e}"
    );
    assert!(e.message.contains("(MR, 4 files)"), "{e}");
    // Only the MR series left: no CT to choose.
    let only_mr = scratch("only_mr");
    for f in std::fs::read_dir(fixtures().join("two_series")).unwrap() {
        let p = f.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if !bytes.windows(2).any(|w| w == b"CT") {
            std::fs::copy(&p, only_mr.join(p.file_name().unwrap())).unwrap();
        }
    }
    let e = read_series(&only_mr, &DicomOptions::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format, "{e}");
    assert!(
        e.message.contains("no CT series") && e.message.contains(mr),
        "{e}"
    );
}

/// Each broken folder: (name, kind, words the message must hold).
const BROKEN: &[(&str, ErrorKind, &[&str])] = &[
    (
        "gantry_tilt",
        ErrorKind::Unsupported,
        &["gantry tilt", "in-plane", "1 %"],
    ),
    (
        "uneven_spacing",
        ErrorKind::Format,
        &["uneven slice spacing", "3.0000 mm", "2.5000 mm"],
    ),
    (
        "missing_slice",
        ErrorKind::Format,
        &["missing slice", "1 missing between"],
    ),
    (
        "duplicate_position",
        ErrorKind::Format,
        &["duplicated position", "IM"],
    ),
    (
        "inconsistent_rows",
        ErrorKind::Format,
        &["inconsistent Rows", "has 11", "has 10"],
    ),
    (
        "multi_frame",
        ErrorKind::Unsupported,
        &["multi-frame", "NumberOfFrames = 6"],
    ),
    (
        "compressed",
        ErrorKind::Unsupported,
        &["1.2.840.10008.1.2.4.50", "JPEG Baseline"],
    ),
    (
        "bits_allocated_8",
        ErrorKind::Unsupported,
        &["BitsAllocated = 8"],
    ),
    (
        "missing_position",
        ErrorKind::Format,
        &["missing required tag ImagePositionPatient", "IM"],
    ),
    (
        "not_dicom",
        ErrorKind::Format,
        &["no DICOM image", "subfolders are not searched"],
    ),
    (
        "negative_thickness",
        ErrorKind::Format,
        &[
            "SliceThickness (0018,0050) = \"-5\" is not a valid value",
            "IM",
        ],
    ),
];

/// 5 mm slices every 2.5 mm: the spacing is the step, the resolution along z the thickness,
/// and through the C ABI the thickness reads back.
#[test]
fn an_overlapping_reconstruction_resolves_its_thickness() {
    let v = open("thick_overlapping", None).unwrap();
    assert_eq!(v.geometry.spacing[2], 2.5);
    assert_eq!(v.slice_thickness_mm, Some(5.0));
    assert_eq!(v.resolution_mm(), [0.6, 0.7, 5.0]);
    let none = open("no_thickness", None).unwrap();
    assert_eq!(none.slice_thickness_mm, None);
    assert_eq!(none.resolution_mm(), none.geometry.spacing);

    for (folder, want) in [("thick_overlapping", 5.0), ("no_thickness", 0.0)] {
        let dir = CString::new(fixtures().join(folder).to_str().unwrap()).unwrap();
        let mut v = null_mut();
        let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), null(), &mut v) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
        let mut t = f64::NAN;
        assert_eq!(
            unsafe { lungseg_volume_get_slice_thickness(v, &mut t) },
            lungseg_status::LUNGSEG_OK
        );
        assert_eq!(t, want, "{folder}");
        unsafe { lungseg_volume_free(v) };
    }
}

#[test]
fn broken_series_are_refused_with_the_reason() {
    let listed: Vec<String> = expected()["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for name in &listed {
        assert!(
            BROKEN.iter().any(|b| b.0 == name),
            "{name} has no expectation here"
        );
    }
    for (name, kind, words) in BROKEN {
        let e = open(name, None).unwrap_err();
        assert_eq!(e.kind, *kind, "{name}: {e}");
        for w in *words {
            assert!(e.message.contains(w), "{name}: {e:?} lacks {w:?}");
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dicom_series")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_folder(from: &str, to: &Path) {
    for f in std::fs::read_dir(fixtures().join(from)).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn limits_refuse_before_reading_and_subfolders_are_not_searched() {
    let dir = fixtures().join("axial_int16");
    let with = |o: DicomOptions| read_series(&dir, &o).unwrap_err();
    let e = with(DicomOptions {
        max_voxels: 12 * 10 * 6 - 1,
        ..DicomOptions::default()
    });
    assert_eq!(e.kind, ErrorKind::Limit, "{e}");
    assert!(e.message.contains("[12, 10, 6]"), "{e}");
    let e = with(DicomOptions {
        max_bytes: 12 * 10 * 6 * 2 - 1,
        ..DicomOptions::default()
    });
    assert_eq!(e.kind, ErrorKind::Limit, "{e}");
    let e = with(DicomOptions {
        max_files: 5,
        ..DicomOptions::default()
    });
    assert_eq!(e.kind, ErrorKind::Limit, "{e}");
    assert!(e.message.contains("more than 5 entries"), "{e}");
    let e = with(DicomOptions {
        max_file_bytes: 1000,
        ..DicomOptions::default()
    });
    assert_eq!(e.kind, ErrorKind::Limit, "{e}");
    assert!(e.message.contains("limit of 1000"), "{e}");

    let parent = scratch("nested");
    std::fs::create_dir_all(parent.join("series")).unwrap();
    copy_folder("axial_int16", &parent.join("series"));
    let e = read_series(&parent, &DicomOptions::default()).unwrap_err();
    assert!(e.message.contains("subfolders are not searched"), "{e}");
    assert!(read_series(&parent.join("series"), &DicomOptions::default()).is_ok());
}

/// The first file (by name) of a fixture folder.
fn first_file(folder: &str) -> (PathBuf, Vec<u8>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let bytes = std::fs::read(&files[0]).unwrap();
    (files[0].clone(), bytes)
}

/// Offset of the first occurrence of `needle`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn declared_lengths_past_the_end_and_deep_nesting_are_refused_before_parsing() {
    let (_, good) = first_file("axial_int16");
    // Pixel Data (7FE0,0010) OW: its 32-bit length follows 2 reserved bytes.
    let at = find(&good, &[0xe0, 0x7f, 0x10, 0x00, b'O', b'W']) + 8;
    let mut huge = good.clone();
    huge[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let e = dicom::header::read(&huge).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format, "{e}");
    assert!(e.message.contains("declares 4294967280 bytes"), "{e}");
    dicom::fuzzing::dicom_file(&huge);

    // A private OB element declaring 4 GB just before Pixel Data (dicom-rs would allocate and
    // zero-fill it before finding the file too short).
    let start = find(&good, &[0xe0, 0x7f, 0x10, 0x00]);
    let mut private = good[..start].to_vec();
    private.extend_from_slice(&[0x29, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    private.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    private.extend_from_slice(&good[start..]);
    let e = dicom::header::read(&private).unwrap_err();
    assert!(e.message.contains("(0029,1010) at byte"), "{e}");
    assert!(e.message.contains("declares 4294967280 bytes"), "{e}");

    // Found by the fuzzer: BitsAllocated as `SL` of 2 bytes. dicom-rs read 0 items of 4 bytes
    // and the next header 2 bytes early, as a `UN` of 4 GB, which it allocated.
    let desync = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/dicom_file/sl_of_2_bytes_desyncs_dicom_rs"),
    )
    .unwrap();
    let e = dicom::header::read(&desync).unwrap_err();
    assert!(
        e.message
            .contains("(0028,0100) (SL) has 2 bytes, not a multiple of 4"),
        "{e}"
    );

    // 40 nested undefined-length sequences before Pixel Data.
    let mut deep = good[..start].to_vec();
    for _ in 0..40 {
        deep.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'S', b'Q', 0, 0]);
        deep.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        deep.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
    }
    deep.extend_from_slice(&good[start..]);
    let e = dicom::header::read(&deep).unwrap_err();
    assert!(e.message.contains("deeper than 16"), "{e}");

    // No truncation of a valid file gives a slice with its pixels (nor a panic).
    for n in 0..good.len() {
        let cut = &good[..n];
        dicom::fuzzing::dicom_file(cut);
        if let Ok(Some(file)) = dicom::header::read(cut) {
            assert!(
                file.slice
                    .is_ok_and(|s| dicom::pixels::pixel_bytes(&s, cut).is_ok())
                    .not(),
                "cut at {n}"
            );
        }
    }
    // A broken file in the series folder is an error naming it, not a silent gap.
    let dir = scratch("truncated");
    copy_folder("axial_int16", &dir);
    let (victim, bytes) = first_file("axial_int16");
    let name = victim.file_name().unwrap();
    std::fs::write(dir.join(name), &bytes[..400]).unwrap();
    let e = read_series(&dir, &DicomOptions::default()).unwrap_err();
    assert!(e.message.contains(name.to_str().unwrap()), "{e}");
}

/// The geometry and patches of a series equal those of SimpleITK's own MetaImage of it, bit for
/// bit (the rotated series has cosines with no short decimal form).
#[test]
fn patches_equal_those_of_the_simpleitk_metaimage_of_the_same_scan() {
    for name in ["oblique_int16", "rotated_int16"] {
        let from_dicom = open(name, None).unwrap();
        let from_mhd = lungseg::mhd::read(
            &fixtures().join(format!("mhd/{name}.mhd")),
            &lungseg::mhd::ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(from_dicom.geometry, from_mhd.geometry, "{name}");
        let spec = PatchSpec {
            size: [9, 8, 7],
            spacing_mm: [0.4, 0.5, 0.6],
            outside_hu: -1000.0,
        };
        let n = 9 * 8 * 7;
        for index in [
            [5.5, 4.5, 2.5],
            [0.0, 0.0, 0.0],
            [11.0, 9.0, 5.0],
            [3.25, 7.75, 1.5],
        ] {
            let centre = from_dicom.geometry.index_to_world(index);
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            patch::extract_hu(&from_dicom, centre, &spec, &mut a).unwrap();
            patch::extract_hu(&from_mhd, centre, &spec, &mut b).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{name}: patch at voxel {index:?}");
            assert!(
                a.iter().any(|&x| x != -1000.0),
                "{name}: patch at {index:?} misses the scan"
            );
        }
    }
}

#[test]
fn the_c_entry_point_opens_series_and_reports_refusals() {
    let exp = expected();
    let dir = CString::new(fixtures().join("two_series").to_str().unwrap()).unwrap();
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), null(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    let mut info = std::mem::MaybeUninit::<lungseg_volume_info>::uninit();
    assert_eq!(
        unsafe { lungseg_volume_get_info(v, info.as_mut_ptr()) },
        lungseg_status::LUNGSEG_OK
    );
    let info = unsafe { info.assume_init() };
    assert_eq!(info.dims, [12, 10, 6]);
    assert_eq!(
        info.element_type,
        lungseg_element_type::LUNGSEG_MET_SHORT as u32
    );
    let mut hu = vec![0f32; 720];
    assert_eq!(
        unsafe { lungseg_volume_copy_hu(v, hu.as_mut_ptr(), hu.len()) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(
        f64::from(hu[0]),
        exp["valid"]["two_series_ct"]["hu"][0].as_f64().unwrap()
    );
    unsafe { lungseg_volume_free(v) };

    let mr = CString::new(
        exp["valid"]["two_series_mr"]["series_uid"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), mr.as_ptr(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    unsafe { lungseg_volume_free(v) };

    let broken = CString::new(fixtures().join("gantry_tilt").to_str().unwrap()).unwrap();
    let mut v = std::ptr::dangling_mut::<lungseg_volume>();
    let st = unsafe { lungseg_volume_open_dicom(broken.as_ptr(), null(), &mut v) };
    expect(st, lungseg_status::LUNGSEG_UNSUPPORTED, "gantry tilt");
    assert!(v.is_null());

    let mut v = std::ptr::dangling_mut::<lungseg_volume>();
    let st = unsafe { lungseg_volume_open_dicom(null(), null(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
    assert!(v.is_null() && last_error().contains("dir is NULL"));
    let empty = CString::new("").unwrap();
    let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), empty.as_ptr(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
    assert!(
        last_error().contains("series_uid is empty"),
        "{}",
        last_error()
    );
    let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), null(), null_mut()) };
    assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
}

/// Every valid fixture file decodes through the fuzz body (its seeds come from here).
#[test]
fn fixture_files_pass_the_fuzz_body() {
    for e in std::fs::read_dir(fixtures()).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            dicom::fuzzing::dicom_file(&std::fs::read(f.unwrap().path()).unwrap());
        }
    }
}
