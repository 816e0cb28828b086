//! Writing MetaImage through the C ABI. The outside oracle is SimpleITK: a patch cut by
//! `lungseg_volume_extract_patch` and written by `lungseg_write_patch_map` must equal
//! SimpleITK's own resampling of the CT onto the written file's grid, i.e. the map lands in world
//! space exactly where its voxels came from (oblique direction, anisotropic spacing).

mod ffi_common;
mod mhd_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::mhd::{self, WriteOptions};
use lungseg::{ElementType, Geometry, PixelData, Volume};
use mhd_common::{python, scratch, sitk_read};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

use lungseg_status::*;

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// An int16 CT rotated 30° about z, 0.7 × 0.9 × 2.5 mm, with a smooth ramp and a bright block.
fn write_ct(dir: &Path) -> PathBuf {
    let dims = [48, 40, 24];
    let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    let g = Geometry::new(
        dims,
        [0.7, 0.9, 2.5],
        [-12.0, 5.0, -40.0],
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
    )
    .unwrap();
    let mut v = vec![0i16; g.voxel_count()];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let block = (18..30).contains(&i) && (14..26).contains(&j) && (8..16).contains(&k);
                let ramp = -900 + 7 * i as i32 + 11 * j as i32 + 23 * k as i32;
                v[(k * dims[1] + j) * dims[0] + i] = if block { 60 } else { ramp as i16 };
            }
        }
    }
    let path = dir.join("ct.mhd");
    mhd::write(
        &path,
        &Volume::new(g, PixelData::I16(v)).unwrap(),
        &WriteOptions::default(),
    )
    .unwrap();
    path
}

fn open(p: &Path) -> *mut lungseg_volume {
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open(cpath(p).as_ptr(), &mut v) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    v
}

fn spec() -> lungseg_patch_spec {
    lungseg_patch_spec {
        struct_size: std::mem::size_of::<lungseg_patch_spec>() as u32,
        size: [20, 16, 12],
        spacing_mm: [0.8, 1.0, 1.5],
        outside_hu: f32::NAN,
    }
}

const RESAMPLE_PY: &str = r#"
import sys, json
import SimpleITK as sitk, numpy as np
ct, out = sitk.ReadImage(sys.argv[1]), sitk.ReadImage(sys.argv[2])
ref = sitk.Resample(ct, out, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
a, b = sitk.GetArrayFromImage(ref), sitk.GetArrayFromImage(out).astype(np.float32)
print(json.dumps({"max_diff": float(np.abs(a - b).max()), "mean_abs": float(np.abs(b).mean())}))
"#;

#[test]
fn patch_map_lands_where_its_voxels_came_from() {
    let dir = scratch("ffi_write_map");
    let ct = write_ct(&dir);
    let vol = open(&ct);
    let spec = spec();
    let n = (spec.size[0] * spec.size[1] * spec.size[2]) as usize;
    // Near the block, with part of the patch outside the scan (-1000 there on both sides).
    for (name, center, flags) in [
        ("inside.mhd", [0.0, 20.0, -20.0], 0),
        ("edge.mha", [-10.0, 8.0, -38.0], LUNGSEG_WRITE_COMPRESS),
    ] {
        let mut hu = vec![0f32; n];
        let st = unsafe {
            lungseg_volume_extract_patch(vol, center.as_ptr(), &spec, hu.as_mut_ptr(), n)
        };
        assert_eq!(st, LUNGSEG_OK, "{}", last_error());
        let out = dir.join(name);
        let st = unsafe {
            lungseg_write_patch_map(
                &spec,
                center.as_ptr(),
                hu.as_ptr(),
                n,
                cpath(&out).as_ptr(),
                flags,
            )
        };
        assert_eq!(st, LUNGSEG_OK, "{}", last_error());

        let seen = sitk_read(&out, ElementType::Float);
        assert_eq!(seen.size, [20, 16, 12]);
        assert_eq!(seen.spacing, [0.8, 1.0, 1.5]);
        assert_eq!(
            seen.direction,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        let origin: [f64; 3] =
            std::array::from_fn(|a| center[a] - (spec.size[a] / 2) as f64 * spec.spacing_mm[a]);
        for (got, want) in seen.origin.iter().zip(origin) {
            assert!((got - want).abs() < 1e-9, "{name}: {seen:?}");
        }
        let back: Vec<f32> = seen
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            back, hu,
            "{name}: SimpleITK reads other voxels than were written"
        );

        let r = python(RESAMPLE_PY, &[ct.to_str().unwrap(), out.to_str().unwrap()]);
        let r: serde_json::Value = serde_json::from_str(r.trim()).unwrap();
        let max_diff = r["max_diff"].as_f64().unwrap();
        assert!(
            max_diff < 0.05,
            "{name}: the written map differs from SimpleITK's resampling of the CT by {max_diff} HU"
        );
        assert!(r["mean_abs"].as_f64().unwrap() > 100.0, "{r}");
    }
    unsafe { lungseg_volume_free(vol) };
}

#[test]
fn patch_mask_and_volume_round_trip() {
    let dir = scratch("ffi_write_mask");
    let ct = write_ct(&dir);
    let spec = spec();
    let n = (spec.size[0] * spec.size[1] * spec.size[2]) as usize;
    let center = [1.0, 2.0, -20.0];
    let mut mask = vec![0u8; n];
    let st = unsafe {
        lungseg_sphere_mask(
            &spec,
            center.as_ptr(),
            center.as_ptr(),
            8.0,
            mask.as_mut_ptr(),
            n,
            null_mut(),
        )
    };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    let out = dir.join("mask.mhd");
    let st = unsafe {
        lungseg_write_patch_mask(
            &spec,
            center.as_ptr(),
            mask.as_ptr(),
            n,
            cpath(&out).as_ptr(),
            LUNGSEG_WRITE_COMPRESS,
        )
    };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    assert!(dir.join("mask.zraw").exists());
    let seen = sitk_read(&out, ElementType::UChar);
    assert_eq!(seen.bytes, mask);
    assert!(mask.contains(&1));

    // The CT written back as one compressed .mha reads identically.
    let vol = open(&ct);
    let copy = dir.join("copy.mha");
    let st = unsafe { lungseg_volume_write(vol, cpath(&copy).as_ptr(), LUNGSEG_WRITE_COMPRESS) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    let a = mhd::read(&ct, &Default::default()).unwrap();
    let b = mhd::read(&copy, &Default::default()).unwrap();
    assert_eq!(a.geometry, b.geometry);
    assert_eq!(a.data, b.data);
    unsafe { lungseg_volume_free(vol) };
}

#[test]
fn bad_arguments_get_a_status_and_a_message() {
    let dir = scratch("ffi_write_bad");
    let spec = spec();
    let n = (spec.size[0] * spec.size[1] * spec.size[2]) as usize;
    let data = vec![0f32; n];
    let c = [0.0f64; 3];
    let ok_path = cpath(&dir.join("x.mhd"));
    let write =
        |spec: *const lungseg_patch_spec,
         c: *const f64,
         d: *const f32,
         len: usize,
         p: *const libc::c_char,
         flags: u32| unsafe { lungseg_write_patch_map(spec, c, d, len, p, flags) };
    let st = write(&spec, null(), data.as_ptr(), n, ok_path.as_ptr(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "patch_center_world is NULL");
    let nan = [0.0, f64::NAN, 0.0];
    let st = write(&spec, nan.as_ptr(), data.as_ptr(), n, ok_path.as_ptr(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "not finite");
    let st = write(&spec, c.as_ptr(), null(), n, ok_path.as_ptr(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "data is NULL");
    let st = write(&spec, c.as_ptr(), data.as_ptr(), n - 1, ok_path.as_ptr(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "the patch has 3840 voxels");
    let st = write(&spec, c.as_ptr(), data.as_ptr(), n, null(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "path is NULL");
    let st = write(&spec, c.as_ptr(), data.as_ptr(), n, ok_path.as_ptr(), 6);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "unknown bits");
    let txt = cpath(&dir.join("x.txt"));
    let st = write(&spec, c.as_ptr(), data.as_ptr(), n, txt.as_ptr(), 0);
    expect(st, LUNGSEG_INVALID_ARGUMENT, ".mhd or .mha");
    let mut bad_spec = spec;
    bad_spec.spacing_mm[1] = -1.0;
    let st = write(&bad_spec, c.as_ptr(), data.as_ptr(), n, ok_path.as_ptr(), 0);
    assert_ne!(st, LUNGSEG_OK);
    assert!(last_error().contains("pacing"), "{}", last_error());
    let st = unsafe { lungseg_volume_write(null(), ok_path.as_ptr(), 0) };
    expect(st, LUNGSEG_INVALID_ARGUMENT, "volume is NULL");
    // A missing folder is an I/O error naming the path.
    let missing = cpath(&dir.join("no/such/dir/x.mha"));
    let st = write(&spec, c.as_ptr(), data.as_ptr(), n, missing.as_ptr(), 0);
    assert_eq!(st, LUNGSEG_IO, "{}", last_error());
    assert!(
        last_error().contains("no/such/dir/x.mha"),
        "{}",
        last_error()
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A failed write loses nothing: what stood at the path stays, and no temporary file is left.
#[test]
fn a_failed_write_leaves_no_partial_file() {
    let dir = scratch("ffi_write_atomic");
    let spec = spec();
    let n = (spec.size[0] * spec.size[1] * spec.size[2]) as usize;
    let data = vec![1f32; n];
    let c = [0.0f64; 3];
    // The target name is taken by a folder with a file in it: the final rename must fail.
    let target = dir.join("map.mha");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"keep").unwrap();
    let st = unsafe {
        lungseg_write_patch_map(
            &spec,
            c.as_ptr(),
            data.as_ptr(),
            n,
            cpath(&target).as_ptr(),
            0,
        )
    };
    assert_eq!(st, LUNGSEG_IO, "{}", last_error());
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"keep");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["map.mha"], "a temporary file was left behind");
}
