//! DICOM SEG (feature `dicom`) against the outside oracle: masks written on the committed
//! fixture series (axial, flipped, oblique) through the Rust API and the C entry point are read
//! back by tests/dicom_seg/oracle.py with highdicom and pydicom, which check the object, the
//! segments, each frame's source slice and position, and every decoded voxel. The oracle runs
//! with `python3` on PATH, or the interpreter `LUNGSEG_PYTHON` names; without highdicom, pydicom
//! or numpy there, these tests fail and say so. Refusals are checked here.

mod ffi_common;

use ffi_common::expect;
use lungseg::ffi::*;
use lungseg::volume::dicom::seg::{write_seg, Algorithm, SegRequest, Segment, MAX_SEGMENTS};
use lungseg::volume::dicom::{read_series, DicomOptions};
use lungseg::ErrorKind;
use serde_json::json;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::null;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dicom_seg")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The series' grid: columns, rows, slices.
fn dims(series: &str) -> [usize; 3] {
    read_series(&fixture(series), &DicomOptions::default())
        .unwrap()
        .geometry
        .dims
}

/// An ellipsoid off-centre on the middle slices (its first and last slices empty) and two
/// single voxels in opposite corners: a flip of any axis or a slice out of order shows.
fn masks([nx, ny, nz]: [usize; 3]) -> [Vec<u8>; 2] {
    let at = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
    let mut blob = vec![0u8; nx * ny * nz];
    for z in 1..nz - 2 {
        for y in 0..ny {
            for x in 0..nx {
                let (dx, dy) = (x as f64 - 3.0, y as f64 - 4.0);
                if dx * dx / 9.0 + dy * dy / 4.0 <= 1.0 + z as f64 * 0.2 {
                    blob[at(x, y, z)] = 1;
                }
            }
        }
    }
    let mut corners = vec![0u8; nx * ny * nz];
    corners[at(nx - 1, 0, nz - 1)] = 1;
    corners[at(0, ny - 1, 0)] = 1;
    [blob, corners]
}

fn segments<'a>(m: &'a [Vec<u8>; 2]) -> [Segment<'a>; 2] {
    [
        Segment {
            mask: &m[0],
            label: "Nodule 1",
            description: "needs review: yes; dice_disagreement 0.41 > 0.30; 1234 mm³",
            algorithm: Algorithm::LUNGSEG,
        },
        Segment {
            mask: &m[1],
            label: "Nodule 2 (corners)",
            description: "",
            algorithm: Algorithm {
                name: "corner finder",
                version: "2.0-rc1",
            },
        },
    ]
}

/// Runs the oracle on `seg` and fails with its output unless it says "ok".
fn oracle(dir: &Path, seg: &Path, series: &str, segments: &[Segment], frames: usize) {
    let source = fixture(series);
    let case = Case {
        source: &source,
        series_uid: None,
        stamped: false,
    };
    oracle_on(dir, seg, case, segments, frames)
}

/// The oracle on a SEG of the series in `source`: `series_uid` names it when the folder holds
/// more than one; `stamped`: the source has the Patient/Study attributes `oracle.py --stamp`
/// gives.
struct Case<'a> {
    source: &'a Path,
    series_uid: Option<&'a str>,
    stamped: bool,
}

fn oracle_on(dir: &Path, seg: &Path, case: Case, segments: &[Segment], frames: usize) {
    let Case {
        source,
        series_uid,
        stamped,
    } = case;
    let described: Vec<_> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mask = dir.join(format!("mask{}.raw", i + 1));
            std::fs::write(&mask, s.mask).unwrap();
            json!({
                "label": s.label,
                "description": s.description,
                "algorithm_name": s.algorithm.name,
                "algorithm_version": s.algorithm.version,
                "mask": mask,
            })
        })
        .collect();
    let case = json!({
        "seg": seg,
        "source_dir": source,
        "frames": frames,
        "stamped": stamped,
        "series_uid": series_uid,
        "segments": described,
    });
    let case_path = dir.join("case.json");
    std::fs::write(&case_path, case.to_string()).unwrap();
    let text = python(&[case_path.as_os_str()]);
    assert_eq!(
        text.trim(),
        "ok",
        "{}: the highdicom/pydicom oracle failed:\n{text}",
        source.display()
    );
}

/// Runs oracle.py with `args` under `LUNGSEG_PYTHON` (default `python3`); fails with its
/// output unless it exits 0, and returns that output.
fn python(args: &[&std::ffi::OsStr]) -> String {
    let python = std::env::var("LUNGSEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom_seg/oracle.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (set LUNGSEG_PYTHON): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "oracle.py failed:\n{text}");
    text
}

fn non_empty_frames(segments: &[Segment], per_slice: usize) -> usize {
    segments
        .iter()
        .flat_map(|s| s.mask.chunks(per_slice))
        .filter(|p| p.iter().any(|&v| v != 0))
        .count()
}

fn request<'a>(series: &'a Path, segments: &'a [Segment<'a>]) -> SegRequest<'a> {
    SegRequest {
        series_dir: series,
        read: DicomOptions::default(),
        segments,
    }
}

#[test]
fn seg_on_each_fixture_series_reads_back_in_highdicom() {
    for series in ["axial_int16", "flipped_uint16", "oblique_int16"] {
        let d = dims(series);
        let m = masks(d);
        let segs = segments(&m);
        let dir = scratch(series);
        let out = dir.join("seg.dcm");
        let src = fixture(series);
        let written = write_seg(&request(&src, &segs), &out).unwrap();
        let frames = non_empty_frames(&segs, d[0] * d[1]);
        assert_eq!(written.frames, frames, "{series}");
        assert!(frames < 2 * d[2], "{series}: empty frames are omitted");
        oracle(&dir, &out, series, &segs, frames);
    }
}

/// Patient and study attributes in Latin-1 (ISO_IR 100) reach the SEG, in UTF-8, unchanged.
#[test]
fn patient_and_study_attributes_are_copied_across_character_sets() {
    let series = "axial_int16";
    let dir = scratch("stamped");
    let source = dir.join("series");
    std::fs::create_dir(&source).unwrap();
    for f in std::fs::read_dir(fixture(series)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, source.join(f.file_name().unwrap())).unwrap();
    }
    python(&["--stamp".as_ref(), source.as_os_str()]);
    let m = masks(dims(series));
    let segs = segments(&m);
    let out = dir.join("seg.dcm");
    let written = write_seg(&request(&source, &segs), &out).unwrap();
    let case = Case {
        source: &source,
        series_uid: None,
        stamped: true,
    };
    oracle_on(&dir, &out, case, &segs, written.frames);
}

/// In a folder of two CT series, the one named is the one referenced.
#[test]
fn the_named_series_of_a_folder_is_the_one_referenced() {
    let source = fixture("two_ct");
    let mut uids: Vec<String> = lungseg::volume::dicom::scan::list(&source, 100)
        .unwrap()
        .iter()
        .filter_map(|p| lungseg::volume::dicom::scan::read(p, 1 << 20).unwrap())
        .filter_map(|b| lungseg::volume::dicom::header::read(&b).unwrap())
        .map(|h| h.series_uid)
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 2, "{uids:?}");
    for (i, uid) in uids.iter().enumerate() {
        let read = DicomOptions {
            series_uid: Some(uid.clone()),
            ..DicomOptions::default()
        };
        let d = read_series(&source, &read).unwrap().geometry.dims;
        let m = masks(d);
        let segs = segments(&m);
        let dir = scratch(&format!("two_ct_{i}"));
        let out = dir.join("seg.dcm");
        let req = SegRequest {
            series_dir: &source,
            read,
            segments: &segs,
        };
        let written = write_seg(&req, &out).unwrap();
        let case = Case {
            source: &source,
            series_uid: Some(uid),
            stamped: false,
        };
        oracle_on(&dir, &out, case, &segs, written.frames);
    }
}

#[test]
fn all_empty_masks_give_one_empty_frame_that_highdicom_reads() {
    let series = "axial_int16";
    let d = dims(series);
    let empty = vec![0u8; d.iter().product()];
    let segs = [Segment {
        mask: &empty,
        label: "nothing found",
        description: "needs review: no; 0 mm³",
        algorithm: Algorithm::LUNGSEG,
    }];
    let dir = scratch("empty");
    let out = dir.join("seg.dcm");
    let written = write_seg(&request(&fixture(series), &segs), &out).unwrap();
    assert_eq!(written.frames, 1);
    oracle(&dir, &out, series, &segs, 1);
}

#[test]
fn the_c_entry_point_writes_what_the_oracle_reads() {
    let series = "oblique_int16";
    let m = masks(dims(series));
    let segs = segments(&m);
    let dir = scratch("c_entry");
    let out = dir.join("seg.dcm");
    let labels = ["Nodule 1", "Nodule 2"].map(|s| CString::new(s).unwrap());
    let desc = CString::new(segs[0].description).unwrap();
    let c_segs = [0, 1].map(|i| lungseg_seg_segment {
        mask: m[i].as_ptr(),
        mask_len: m[i].len(),
        label: labels[i].as_ptr(),
        description: if i == 0 { desc.as_ptr() } else { null() },
        ..Default::default()
    });
    let cdir = CString::new(fixture(series).to_str().unwrap()).unwrap();
    let cout = CString::new(out.to_str().unwrap()).unwrap();
    let st = unsafe {
        lungseg_write_dicom_seg(cdir.as_ptr(), null(), c_segs.as_ptr(), 2, cout.as_ptr())
    };
    expect(st, lungseg_status::LUNGSEG_OK, "");
    // Through C every segment is lungseg's.
    let want = [
        Segment {
            label: "Nodule 1",
            algorithm: Algorithm::LUNGSEG,
            ..segs[0]
        },
        Segment {
            label: "Nodule 2",
            algorithm: Algorithm::LUNGSEG,
            ..segs[1]
        },
    ];
    let d = dims(series);
    oracle(
        &dir,
        &out,
        series,
        &want,
        non_empty_frames(&want, d[0] * d[1]),
    );
}

fn refused(segments: &[Segment], series: &str, kind: ErrorKind, words: &str) {
    let dir = scratch("refused");
    let out = dir.join("seg.dcm");
    let e = write_seg(&request(&fixture(series), segments), &out).unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    assert!(e.message.contains(words), "{e}");
    assert!(!out.exists(), "a refused SEG leaves no file");
}

#[test]
fn bad_segments_are_refused_before_anything_is_written() {
    let series = "axial_int16";
    let n: usize = dims(series).iter().product();
    let ok = vec![0u8; n];
    let seg = |mask, label| Segment {
        mask,
        label,
        description: "",
        algorithm: Algorithm::LUNGSEG,
    };
    refused(&[], series, ErrorKind::InvalidArgument, "no segment");
    let short = vec![0u8; n - 1];
    refused(
        &[seg(&ok, "a"), seg(&short, "b")],
        series,
        ErrorKind::InvalidArgument,
        &format!(
            "segment 2: the mask holds {} bytes, the series has {n} voxels",
            n - 1
        ),
    );
    let mut not_binary = ok.clone();
    not_binary[7] = 255;
    refused(
        &[seg(&not_binary, "a")],
        series,
        ErrorKind::InvalidArgument,
        "mask byte 7 is 255",
    );
    let long = "x".repeat(65);
    for label in ["", "back\\slash", &long] {
        refused(
            &[seg(&ok, label)],
            series,
            ErrorKind::InvalidArgument,
            "is not a valid LO",
        );
    }
    let many = vec![seg(&ok, "a"); MAX_SEGMENTS + 1];
    refused(&many, series, ErrorKind::Limit, "at most 65535");
    let full = vec![1u8; n];
    let frames = vec![seg(&full, "a"); MAX_SEGMENTS];
    refused(
        &frames,
        series,
        ErrorKind::Limit,
        "more than 65535 non-empty frames",
    );
}

#[test]
fn a_series_that_cannot_be_read_is_refused_with_the_readers_reason() {
    let n: usize = dims("axial_int16").iter().product();
    let ok = vec![0u8; n];
    let segs = [Segment {
        mask: &ok,
        label: "a",
        description: "",
        algorithm: Algorithm::LUNGSEG,
    }];
    refused(&segs, "missing_slice", ErrorKind::Format, "missing slice");
    refused(&segs, "not_dicom", ErrorKind::Format, "no DICOM image");
    refused(
        &segs,
        "two_ct",
        ErrorKind::InvalidArgument,
        "name the one to read",
    );
}

#[test]
fn a_failed_write_leaves_no_file() {
    let series = "axial_int16";
    let m = masks(dims(series));
    let segs = segments(&m);
    let out = scratch("no_folder").join("missing/seg.dcm");
    let e = write_seg(&request(&fixture(series), &segs), &out).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io, "{e}");
    assert!(!out.exists());
}

/// The C entry point checks its arguments: NULLs, no segment, a struct_size below V1 or
/// differing between elements, a label that is not UTF-8, a mask of the wrong length.
#[test]
fn the_c_entry_point_refuses_bad_arguments() {
    let series = fixture("axial_int16");
    let n: usize = dims("axial_int16").iter().product();
    let mask = vec![0u8; n];
    let label = CString::new("a").unwrap();
    let dir = CString::new(series.to_str().unwrap()).unwrap();
    let out_path = scratch("c_refused").join("seg.dcm");
    let out = CString::new(out_path.to_str().unwrap()).unwrap();
    let good = lungseg_seg_segment {
        mask: mask.as_ptr(),
        mask_len: n,
        label: label.as_ptr(),
        ..Default::default()
    };
    let call = |segs: &[lungseg_seg_segment], n_segs: usize| unsafe {
        lungseg_write_dicom_seg(dir.as_ptr(), null(), segs.as_ptr(), n_segs, out.as_ptr())
    };
    let invalid = lungseg_status::LUNGSEG_INVALID_ARGUMENT;
    expect(call(&[good], 0), invalid, "n_segments is 0");
    let st = unsafe { lungseg_write_dicom_seg(null(), null(), &good, 1, out.as_ptr()) };
    expect(st, invalid, "series_dir is NULL");
    let st = unsafe { lungseg_write_dicom_seg(dir.as_ptr(), null(), null(), 1, out.as_ptr()) };
    expect(st, invalid, "segments is NULL");
    let old = lungseg_seg_segment {
        struct_size: 8,
        ..good
    };
    expect(
        call(&[old], 1),
        invalid,
        "segments[0].struct_size is 8, at least 40",
    );
    let mixed = [
        good,
        lungseg_seg_segment {
            struct_size: 48,
            ..good
        },
    ];
    expect(
        call(&mixed, 2),
        invalid,
        "segments[1].struct_size is 48, segments[0].struct_size is 40",
    );
    let no_label = lungseg_seg_segment {
        label: null(),
        ..good
    };
    expect(
        call(&[good, no_label], 2),
        invalid,
        "segments[1].label is NULL",
    );
    let bad_utf8 = CString::new(vec![0xFFu8, 0x41]).unwrap();
    let latin = lungseg_seg_segment {
        label: bad_utf8.as_ptr(),
        ..good
    };
    expect(
        call(&[latin], 1),
        invalid,
        "segments[0].label is not valid UTF-8",
    );
    let short = lungseg_seg_segment {
        mask_len: n - 1,
        ..good
    };
    expect(call(&[short], 1), invalid, "the mask holds");
    assert!(!out_path.exists());
    expect(call(&[good], 1), lungseg_status::LUNGSEG_OK, "");
    assert!(out_path.exists());
}
