//! The C ABI for volumes, called as C would: every bad input gets its status and a message.

mod ffi_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::mhd::{self, WriteOptions};
use lungseg::{Geometry, PixelData, Volume};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("ffi_volume")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A flipped, anisotropic int16 scan with a bright cube; returns its path.
fn write_scan(dir: &Path) -> PathBuf {
    let dims = [40, 30, 20];
    let g = Geometry::new(
        dims,
        [0.8, 0.7, 2.5],
        [10.0, -20.0, -100.0],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    )
    .unwrap();
    let mut v = vec![-1000i16; g.voxel_count()];
    for k in 8..12 {
        for j in 10..20 {
            for i in 15..25 {
                v[(k * dims[1] + j) * dims[0] + i] = 50;
            }
        }
    }
    let vol = Volume::new(g, PixelData::I16(v)).unwrap();
    let path = dir.join("scan.mhd");
    mhd::write(&path, &vol, &WriteOptions::default()).unwrap();
    path
}

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn open(p: &Path) -> *mut lungseg_volume {
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open(cpath(p).as_ptr(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    v
}

#[test]
fn open_info_map_and_patch() {
    let dir = scratch("happy");
    let path = write_scan(&dir);
    let v = open(&path);
    let mut info = lungseg_volume_info::default();
    assert_eq!(
        unsafe { lungseg_volume_get_info(v, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(info.dims, [40, 30, 20]);
    assert_eq!(info.spacing, [0.8, 0.7, 2.5]);
    assert_eq!(info.origin, [10.0, -20.0, -100.0]);
    assert_eq!(
        info.direction,
        [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(info.element_type, 4); // MET_SHORT
    assert_eq!(info.channels, 1);

    // Voxel (20, 15, 10) centre of the cube: world = origin + D·(s·i).
    let world = [10.0 - 20.0 * 0.8, -20.0 - 15.0 * 0.7, -100.0 + 10.0 * 2.5];
    let mut vox = [0.0; 3];
    assert_eq!(
        unsafe { lungseg_world_to_voxel(v, world.as_ptr(), vox.as_mut_ptr()) },
        lungseg_status::LUNGSEG_OK
    );
    for (a, b) in vox.iter().zip([20.0, 15.0, 10.0]) {
        assert!((a - b).abs() < 1e-9, "{vox:?}");
    }
    let mut back = [0.0; 3];
    assert_eq!(
        unsafe { lungseg_voxel_to_world(v, vox.as_ptr(), back.as_mut_ptr()) },
        lungseg_status::LUNGSEG_OK
    );
    for (a, b) in back.iter().zip(world) {
        assert!((a - b).abs() < 1e-9);
    }

    let mut hu = vec![0f32; 40 * 30 * 20];
    assert_eq!(
        unsafe { lungseg_volume_copy_hu(v, hu.as_mut_ptr(), hu.len()) },
        lungseg_status::LUNGSEG_OK
    );
    assert_eq!(hu[(10 * 30 + 15) * 40 + 20], 50.0);
    assert_eq!(hu[0], -1000.0);

    let spec = lungseg_patch_spec {
        struct_size: std::mem::size_of::<lungseg_patch_spec>() as u32,
        size: [8, 8, 8],
        spacing_mm: [1.0; 3],
        outside_hu: -1000.0,
    };
    let mut patch = vec![0f32; 512];
    let st =
        unsafe { lungseg_volume_extract_patch(v, world.as_ptr(), &spec, patch.as_mut_ptr(), 512) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(
        patch[(4 * 8 + 4) * 8 + 4],
        50.0,
        "centre voxel sits on the cube"
    );
    // NULL spec = the 64³ default.
    let mut big = vec![0f32; 64 * 64 * 64];
    let st = unsafe {
        lungseg_volume_extract_patch(v, world.as_ptr(), null(), big.as_mut_ptr(), big.len())
    };
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    assert_eq!(big[(32 * 64 + 32) * 64 + 32], 50.0);
    assert_eq!(big[0], -1000.0, "outside the scan is air");

    let mut norm = patch.clone();
    assert_eq!(
        unsafe { lungseg_normalize_hu(norm.as_ptr(), 512, -1000.0, 400.0, norm.as_mut_ptr()) },
        lungseg_status::LUNGSEG_OK
    );
    assert!((norm[(4 * 8 + 4) * 8 + 4] - 1050.0 / 1400.0).abs() < 1e-6);

    let mut mask = vec![0u8; 512];
    let mut set = 0u64;
    let st = unsafe {
        lungseg_sphere_mask(
            &spec,
            world.as_ptr(),
            world.as_ptr(),
            3.0,
            mask.as_mut_ptr(),
            512,
            &mut set,
        )
    };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    assert_eq!(
        set, 19,
        "centre, 6 face and 12 edge neighbours (√2 mm) lie within 1.5 mm"
    );
    assert_eq!(mask.iter().map(|&m| m as u64).sum::<u64>(), set);
    unsafe { lungseg_volume_free(v) };
    unsafe { lungseg_volume_free(null_mut()) };
}

#[test]
fn bad_arguments() {
    use lungseg_status::*;
    let dir = scratch("bad_args");
    let path = write_scan(&dir);
    let v = open(&path);
    let w = [0.0f64; 3];
    let mut out = std::ptr::dangling_mut::<lungseg_volume>();
    expect(
        unsafe { lungseg_volume_open(null(), &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "path is NULL",
    );
    assert!(out.is_null(), "out is reset on failure");
    expect(
        unsafe { lungseg_volume_open(cpath(&path).as_ptr(), null_mut()) },
        LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    let empty = CString::new("").unwrap();
    expect(
        unsafe { lungseg_volume_open(empty.as_ptr(), &mut out) },
        LUNGSEG_INVALID_ARGUMENT,
        "path is empty",
    );
    expect(
        unsafe { lungseg_volume_get_info(null(), &mut Default::default()) },
        LUNGSEG_INVALID_ARGUMENT,
        "volume is NULL",
    );
    expect(
        unsafe { lungseg_volume_get_info(v, null_mut()) },
        LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    let mut buf = vec![0f32; 10];
    expect(
        unsafe { lungseg_volume_copy_hu(v, buf.as_mut_ptr(), 10) },
        LUNGSEG_INVALID_ARGUMENT,
        "24000",
    );
    expect(
        unsafe { lungseg_volume_copy_hu(v, null_mut(), 24000) },
        LUNGSEG_INVALID_ARGUMENT,
        "dst is NULL",
    );
    let mut vox = [0.0; 3];
    let nan = [f64::NAN, 0.0, 0.0];
    expect(
        unsafe { lungseg_world_to_voxel(v, nan.as_ptr(), vox.as_mut_ptr()) },
        LUNGSEG_INVALID_ARGUMENT,
        "not finite",
    );
    expect(
        unsafe { lungseg_world_to_voxel(v, null(), vox.as_mut_ptr()) },
        LUNGSEG_INVALID_ARGUMENT,
        "world is NULL",
    );
    let mut p = vec![0f32; 64 * 64 * 64];
    expect(
        unsafe { lungseg_volume_extract_patch(v, w.as_ptr(), null(), p.as_mut_ptr(), p.len() - 1) },
        LUNGSEG_INVALID_ARGUMENT,
        "262143",
    );
    let small = lungseg_patch_spec {
        struct_size: 4,
        ..Default::default()
    };
    expect(
        unsafe { lungseg_volume_extract_patch(v, w.as_ptr(), &small, p.as_mut_ptr(), p.len()) },
        LUNGSEG_INVALID_ARGUMENT,
        "struct_size",
    );
    let neg = lungseg_patch_spec {
        struct_size: std::mem::size_of::<lungseg_patch_spec>() as u32,
        spacing_mm: [-1.0, 1.0, 1.0],
        ..Default::default()
    };
    expect(
        unsafe { lungseg_volume_extract_patch(v, w.as_ptr(), &neg, p.as_mut_ptr(), p.len()) },
        LUNGSEG_INVALID_ARGUMENT,
        "spacing",
    );
    let hu = [f32::NAN];
    let mut d = [0f32];
    expect(
        unsafe { lungseg_normalize_hu(hu.as_ptr(), 1, -1000.0, 400.0, d.as_mut_ptr()) },
        LUNGSEG_INVALID_ARGUMENT,
        "NaN",
    );
    expect(
        unsafe { lungseg_normalize_hu(d.as_ptr(), 1, 400.0, -1000.0, d.as_mut_ptr()) },
        LUNGSEG_INVALID_ARGUMENT,
        "window",
    );
    let o = [0.0; 3];
    let mut m = [0u8; 8];
    expect(
        unsafe {
            lungseg_sphere_mask(
                null(),
                o.as_ptr(),
                o.as_ptr(),
                -1.0,
                m.as_mut_ptr(),
                8,
                null_mut(),
            )
        },
        LUNGSEG_INVALID_ARGUMENT,
        "mask destination",
    );
    unsafe { lungseg_volume_free(v) };
}

#[test]
fn bad_files() {
    use lungseg_status::*;
    let dir = scratch("bad_files");
    let mut out = null_mut();
    let open = |p: &Path, out: &mut *mut lungseg_volume| unsafe {
        lungseg_volume_open(cpath(p).as_ptr(), out)
    };
    expect(
        open(&dir.join("missing.mhd"), &mut out),
        LUNGSEG_IO,
        "missing.mhd",
    );
    let hdr = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let base = "ObjectType = Image\nElementSpacing = 1 1 1\nElementType = MET_SHORT\n";
    expect(
        open(&hdr("2d.mhd", "NDims = 2\nDimSize = 4 4\nElementSpacing = 1 1\nElementType = MET_SHORT\nElementDataFile = x.raw\n"), &mut out),
        LUNGSEG_UNSUPPORTED,
        "NDims",
    );
    expect(
        open(
            &hdr(
                "huge.mhd",
                &format!(
                    "NDims = 3\nDimSize = 100000 100000 100000\n{base}ElementDataFile = x.raw\n"
                ),
            ),
            &mut out,
        ),
        LUNGSEG_LIMIT,
        "",
    );
    expect(
        open(&hdr("garbage.mhd", "NDims = three\n"), &mut out),
        LUNGSEG_FORMAT,
        "NDims",
    );
    expect(
        open(
            &hdr(
                "escape.mhd",
                &format!("NDims = 3\nDimSize = 2 2 2\n{base}ElementDataFile = ../../etc/passwd\n"),
            ),
            &mut out,
        ),
        LUNGSEG_FORMAT,
        "..",
    );
    std::fs::write(dir.join("short.raw"), [0u8; 7]).unwrap();
    expect(
        open(
            &hdr(
                "short.mhd",
                &format!("NDims = 3\nDimSize = 2 2 2\n{base}ElementDataFile = short.raw\n"),
            ),
            &mut out,
        ),
        LUNGSEG_FORMAT,
        "short.raw",
    );
    assert!(out.is_null());
    // The message is truncated safely and the full length is still returned.
    let mut tiny = [0 as libc::c_char; 5];
    let full = unsafe { lungseg_last_error(tiny.as_mut_ptr(), tiny.len()) };
    assert!(full > 4);
    assert_eq!(unsafe { CStr::from_ptr(tiny.as_ptr()) }.to_bytes().len(), 4);
}

#[test]
fn status_names() {
    let name = |s: i32| {
        unsafe { CStr::from_ptr(lungseg_status_name(s)) }
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(name(0), "LUNGSEG_OK");
    assert_eq!(name(5), "LUNGSEG_LIMIT");
    assert_eq!(name(8), "LUNGSEG_PANIC");
    assert_eq!(name(-3), "LUNGSEG_UNKNOWN_STATUS");
}

/// `max_data_files` reaches the reader: 0 keeps the default, a smaller cap refuses a pattern
/// naming more files before any is opened.
#[test]
fn max_data_files_option() {
    let dir = scratch("max_data_files");
    std::fs::write(
        dir.join("p.mhd"),
        "NDims = 3\nDimSize = 1 1 3\nElementType = MET_UCHAR\nElementDataFile = f%d.raw\n",
    )
    .unwrap();
    for i in 1..=3u8 {
        std::fs::write(dir.join(format!("f{i}.raw")), [i]).unwrap();
    }
    let path = cpath(&dir.join("p.mhd"));
    let mut opts = lungseg_open_options {
        struct_size: std::mem::size_of::<lungseg_open_options>() as u32,
        ..Default::default()
    };
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open_ex(path.as_ptr(), &opts, &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    unsafe { lungseg_volume_free(v) };
    opts.max_data_files = 2;
    let st = unsafe { lungseg_volume_open_ex(path.as_ptr(), &opts, &mut v) };
    expect(st, lungseg_status::LUNGSEG_LIMIT, "max_data_files");
    assert!(v.is_null());
}

/// The DICOM entry point exists in every build: without the `dicom` feature it checks its
/// arguments, leaves `*out` NULL and says why it cannot read.
#[cfg(not(feature = "dicom"))]
#[test]
fn open_dicom_without_the_feature_is_unsupported() {
    let dir = cpath(&scratch("no_dicom_feature"));
    let mut v = std::ptr::dangling_mut::<lungseg_volume>();
    let st = unsafe { lungseg_volume_open_dicom(dir.as_ptr(), null(), &mut v) };
    expect(
        st,
        lungseg_status::LUNGSEG_UNSUPPORTED,
        "without the `dicom` feature",
    );
    assert!(v.is_null());
    let st = unsafe { lungseg_volume_open_dicom(null(), null(), &mut v) };
    expect(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT, "dir is NULL");
}
