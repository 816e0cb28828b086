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

/// An element whose `struct_size` is larger than the array's stride is refused before it is
/// read: the array ends at a guard page, and reading the larger size would cross it.
#[cfg(all(unix, not(miri)))]
#[test]
fn a_larger_struct_size_in_a_later_element_is_refused_before_reading_past_the_array() {
    use std::mem::size_of;
    let stride = size_of::<lungseg_seg_segment>();
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    assert_eq!(
        unsafe { libc::mprotect(base.cast::<u8>().add(page).cast(), page, libc::PROT_NONE) },
        0
    );
    let label = std::ffi::CString::new("a").unwrap();
    let mask = [0u8; 4];
    let good = lungseg_seg_segment {
        mask: mask.as_ptr(),
        mask_len: mask.len(),
        label: label.as_ptr(),
        ..Default::default()
    };
    let larger = lungseg_seg_segment {
        struct_size: (stride + 64) as u32,
        ..good
    };
    let array = unsafe {
        base.cast::<u8>()
            .add(page - 2 * stride)
            .cast::<lungseg_seg_segment>()
    };
    unsafe {
        array.write(good);
        array.add(1).write(larger);
    }
    let dir = std::ffi::CString::new("/nonexistent").unwrap();
    let out = std::ffi::CString::new("/nonexistent/seg.dcm").unwrap();
    let st =
        unsafe { lungseg_write_dicom_seg(dir.as_ptr(), std::ptr::null(), array, 2, out.as_ptr()) };
    assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
    let msg = ffi_common::last_error();
    assert!(
        msg.contains(&format!(
            "segments[1].struct_size is {}, segments[0].struct_size is {stride}",
            stride + 64
        )),
        "{msg}"
    );
    unsafe { libc::munmap(base, 2 * page) };
}
