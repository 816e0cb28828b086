//! `lungseg_write_dicom_seg` exists in every build: without the `dicom` feature it checks its
//! arguments and answers `LUNGSEG_UNSUPPORTED` with the reason (with the feature, see
//! dicom_seg.rs).

mod ffi_common;

use lungseg::ffi::*;

#[cfg(not(feature = "dicom"))]
#[test]
fn write_dicom_seg_without_the_feature_is_unsupported() {
    use ffi_common::expect;
    use std::ffi::CString;
    use std::ptr::null;
    let mask = [1u8; 8];
    let label = CString::new("a").unwrap();
    let seg = lungseg_seg_segment {
        mask: mask.as_ptr(),
        mask_len: mask.len(),
        label: label.as_ptr(),
        ..Default::default()
    };
    let dir = CString::new(env!("CARGO_MANIFEST_DIR")).unwrap();
    let out_path = std::env::temp_dir().join(format!("lungseg-ffi-seg-{}.dcm", std::process::id()));
    let out = CString::new(out_path.to_str().unwrap()).unwrap();
    let st = unsafe { lungseg_write_dicom_seg(dir.as_ptr(), null(), &seg, 1, out.as_ptr()) };
    expect(
        st,
        lungseg_status::LUNGSEG_UNSUPPORTED,
        "without the `dicom` feature: it cannot write DICOM SEG",
    );
    assert!(!out_path.exists());
    let st = unsafe { lungseg_write_dicom_seg(dir.as_ptr(), null(), &seg, 0, out.as_ptr()) };
    expect(
        st,
        lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        "n_segments is 0",
    );
}

/// The V1 layout a C caller of 0.1 compiles against.
#[test]
fn the_segment_struct_is_versioned_from_v1() {
    assert_eq!(<lungseg_seg_segment as Versioned>::V1, 40);
    let s = lungseg_seg_segment::default();
    assert_eq!(
        s.struct_size as usize,
        std::mem::size_of::<lungseg_seg_segment>()
    );
    assert!(s.mask.is_null() && s.label.is_null() && s.description.is_null());
}
