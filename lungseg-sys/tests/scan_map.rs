//! Patch results on the scan grid (`lungseg_scan_map_*`). The outside oracle is SimpleITK: a
//! patch map written with `lungseg_write_patch_map` (placed in world space) and resampled with
//! `sitk.Resample(patch, scan, sitk.Transform(), sitk.sitkLinear, 0.0)` onto an oblique,
//! anisotropic scan must equal the library's scan-grid map; masks likewise with
//! `sitkNearestNeighbor`. Merging is checked against values computed by hand.

mod ffi_common;
mod mhd_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::mhd::{self, WriteOptions};
use lungseg::{Geometry, PixelData, Volume};
use mhd_common::{python, scratch};
use std::ffi::CString;
use std::path::Path;
use std::ptr::{null, null_mut};

use lungseg_scan_map_kind::*;
use lungseg_status::*;

const DIMS: [usize; 3] = [56, 48, 22];

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

/// Rotated 30° about z and 20° about x: no axis of the scan is a world axis.
fn oblique() -> [[f64; 3]; 3] {
    let (sz, cz) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    let (sx, cx) = (20f64.to_radians().sin(), 20f64.to_radians().cos());
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| rz[r][k] * rx[k][c]).sum()))
}

const FLIPPED: [[f64; 3]; 3] = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]];

/// Writes a scan with `direction` and opens it.
fn scan(dir: &Path, name: &str, direction: [[f64; 3]; 3]) -> (*mut lungseg_volume, Geometry) {
    let g = Geometry::new(DIMS, [0.7, 0.9, 2.5], [-3.3, -20.1, -25.7], direction).unwrap();
    let v = Volume::new(g, PixelData::I16(vec![0; g.voxel_count()])).unwrap();
    let path = dir.join(format!("{name}.mhd"));
    mhd::write(&path, &v, &WriteOptions::default()).unwrap();
    let mut out = null_mut();
    assert_eq!(
        unsafe { lungseg_volume_open(cpath(&path).as_ptr(), &mut out) },
        LUNGSEG_OK
    );
    (out, g)
}

fn spec() -> lungseg_patch_spec {
    lungseg_patch_spec {
        size: [20, 16, 12],
        spacing_mm: [0.8, 1.0, 1.5],
        outside_hu: f32::NAN,
        ..Default::default()
    }
}

/// A smooth field with curvature, so trilinear interpolation is not exact by accident.
fn field(n: usize) -> Vec<f32> {
    let s = spec().size.map(|v| v as usize);
    (0..n)
        .map(|i| {
            let (x, y, z) = (i % s[0], i / s[0] % s[1], i / (s[0] * s[1]));
            let (x, y, z) = (x as f32, y as f32, z as f32);
            0.5 + 0.4 * (0.3 * x).sin() * (0.25 * y).cos() + 0.01 * z * z
        })
        .collect()
}

fn new_map(v: *const lungseg_volume, kind: lungseg_scan_map_kind) -> *mut lungseg_scan_map {
    let mut m = null_mut();
    assert_eq!(
        unsafe { lungseg_scan_map_new(v, kind as u32, &mut m) },
        LUNGSEG_OK,
        "{}",
        last_error()
    );
    m
}

fn add(m: *mut lungseg_scan_map, centre: [f64; 3], values: &[f32], weight: f32) {
    let st = unsafe {
        lungseg_scan_map_add_patch(
            m,
            &spec(),
            centre.as_ptr(),
            values.as_ptr(),
            values.len(),
            weight,
        )
    };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
}

fn read(m: *const lungseg_scan_map) -> Vec<f32> {
    let mut out = vec![f32::NAN; DIMS.iter().product()];
    let st = unsafe { lungseg_scan_map_read(m, out.as_mut_ptr(), out.len()) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    out
}

const SITK_PY: &str = r#"
import sys
import SimpleITK as sitk, numpy as np
scan, patch, out, interp = sys.argv[1:5]
method = sitk.sitkLinear if interp == "linear" else sitk.sitkNearestNeighbor
r = sitk.Resample(sitk.ReadImage(patch, sitk.sitkFloat32), sitk.ReadImage(scan),
                  sitk.Transform(), method, 0.0, sitk.sitkFloat32)
sitk.GetArrayFromImage(r).astype("<f4").tofile(out)
print("ok")
"#;

fn sitk_resample(scan: &Path, patch: &Path, interp: &str) -> Vec<f32> {
    let out = patch.with_extension("sitk.f32");
    let args = [scan, patch, &out].map(|p| p.to_str().unwrap().to_string());
    let printed = python(SITK_PY, &[&args[0], &args[1], &args[2], interp]);
    assert_eq!(printed.trim(), "ok");
    std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn maps_and_masks_match_simpleitk_resampling() {
    let dir = scratch("scan_map_sitk");
    for (name, direction) in [("oblique", oblique()), ("flipped", FLIPPED)] {
        let (v, g) = scan(&dir, name, direction);
        let centre = g.index_to_world([25.3, 20.6, 9.4]);
        let values = field(20 * 16 * 12);
        let patch = dir.join(format!("{name}_patch.mha"));
        let st = unsafe {
            lungseg_write_patch_map(
                &spec(),
                centre.as_ptr(),
                values.as_ptr(),
                values.len(),
                cpath(&patch).as_ptr(),
                0,
            )
        };
        assert_eq!(st, LUNGSEG_OK);
        let m = new_map(v, LUNGSEG_SCAN_MAP_MEAN);
        add(m, centre, &values, 1.0);
        let ours = read(m);
        let want = sitk_resample(&dir.join(format!("{name}.mhd")), &patch, "linear");
        let diff = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let covered = want.iter().filter(|&&x| x != 0.0).count();
        println!("{name} linear: max diff {diff:e}, {covered} voxels covered");
        assert!(diff < 1e-4, "{name}: max diff {diff}");
        assert!(
            covered > 1000 && covered < want.len() / 2,
            "{name}: {covered}"
        );
        unsafe { lungseg_scan_map_free(m) };

        // A 0/1 mask: a ball on the patch grid, nearest neighbour.
        let mut mask = vec![0u8; values.len()];
        let nodule = [centre[0] + 2.0, centre[1] - 1.0, centre[2]];
        let st = unsafe {
            lungseg_sphere_mask(
                &spec(),
                centre.as_ptr(),
                nodule.as_ptr(),
                9.0,
                mask.as_mut_ptr(),
                mask.len(),
                null_mut(),
            )
        };
        assert_eq!(st, LUNGSEG_OK);
        let mask_path = dir.join(format!("{name}_mask.mha"));
        let st = unsafe {
            lungseg_write_patch_mask(
                &spec(),
                centre.as_ptr(),
                mask.as_ptr(),
                mask.len(),
                cpath(&mask_path).as_ptr(),
                0,
            )
        };
        assert_eq!(st, LUNGSEG_OK);
        let m = new_map(v, LUNGSEG_SCAN_MAP_MAX);
        add(
            m,
            centre,
            &mask.iter().map(|&b| b as f32).collect::<Vec<_>>(),
            1.0,
        );
        let ours = read(m);
        let want = sitk_resample(&dir.join(format!("{name}.mhd")), &mask_path, "nearest");
        let wrong = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
        let set = want.iter().filter(|&&x| x == 1.0).count();
        println!("{name} nearest: {wrong} voxels differ, {set} set");
        assert_eq!(wrong, 0, "{name}");
        assert!(set > 50, "{name}: {set}");
        unsafe { lungseg_scan_map_free(m) };
        unsafe { lungseg_volume_free(v) };
    }
}

/// Continuous patch index of a world point for a patch centred at `c` (the patch convention).
fn patch_index(c: [f64; 3], w: [f64; 3]) -> [f64; 3] {
    let s = spec();
    std::array::from_fn(|a| (w[a] - c[a]) / s.spacing_mm[a] + (s.size[a] / 2) as f64)
}

fn interior(u: [f64; 3]) -> bool {
    let s = spec().size;
    (0..3).all(|a| u[a] >= 0.0 && u[a] <= (s[a] - 1) as f64)
}

fn outside(u: [f64; 3]) -> bool {
    let s = spec().size;
    (0..3).any(|a| u[a] < -0.5 || u[a] >= s[a] as f64 - 0.5)
}

/// Two overlapping patches: the weighted mean of linear ramps (which trilinear interpolation
/// reproduces exactly) and the maximum of masks, at voxels covered by both, by one, by none.
#[test]
fn overlapping_patches_merge_by_weighted_mean_and_max() {
    let dir = scratch("scan_map_merge");
    let (v, g) = scan(&dir, "axis", lungseg::geometry::IDENTITY);
    let s = spec().size.map(|n| n as usize);
    let (ca, cb) = (
        g.index_to_world([20.2, 22.3, 10.1]),
        g.index_to_world([30.4, 25.2, 12.3]),
    );
    // Ramps in patch index space: a(u) = 0.1 + 0.01·x + 0.02·y, b(u) = 0.9 - 0.015·z.
    let ramp = |f: &dyn Fn([f64; 3]) -> f64| -> Vec<f32> {
        (0..s.iter().product::<usize>())
            .map(|i| {
                f([
                    (i % s[0]) as f64,
                    (i / s[0] % s[1]) as f64,
                    (i / (s[0] * s[1])) as f64,
                ]) as f32
            })
            .collect()
    };
    let fa = |u: [f64; 3]| 0.1 + 0.01 * u[0] + 0.02 * u[1];
    let fb = |u: [f64; 3]| 0.9 - 0.015 * u[2];
    let (wa, wb) = (1.0f32, 3.0f32);
    let mean = new_map(v, LUNGSEG_SCAN_MAP_MEAN);
    add(mean, ca, &ramp(&fa), wa);
    add(mean, cb, &ramp(&fb), wb);
    let got = read(mean);
    // Masks: a is 1 where patch x < 10, b is 1 where patch y >= 8.
    let ma = ramp(&|u| (u[0] < 10.0) as u8 as f64);
    let mb = ramp(&|u| (u[1] >= 8.0) as u8 as f64);
    let max = new_map(v, LUNGSEG_SCAN_MAP_MAX);
    add(max, ca, &ma, 1.0);
    add(max, cb, &mb, 1.0);
    let got_max = read(max);
    let nearest = |u: [f64; 3]| u.map(|c| (c + 0.5).floor());
    let (mut both, mut one, mut none) = (0, 0, 0);
    for k in 0..DIMS[2] {
        for j in 0..DIMS[1] {
            for i in 0..DIMS[0] {
                let w = g.index_to_world([i as f64, j as f64, k as f64]);
                let (ua, ub) = (patch_index(ca, w), patch_index(cb, w));
                let at = (k * DIMS[1] + j) * DIMS[0] + i;
                let (m, x) = (got[at], got_max[at]);
                let (na, nb) = (nearest(ua), nearest(ub));
                let (mask_a, mask_b) = ((na[0] < 10.0) as u8 as f32, (nb[1] >= 8.0) as u8 as f32);
                if interior(ua) && interior(ub) {
                    let want = (wa as f64 * fa(ua) + wb as f64 * fb(ub)) / (wa + wb) as f64;
                    assert!(
                        (m as f64 - want).abs() < 1e-5,
                        "({i},{j},{k}): {m} vs {want}"
                    );
                    assert_eq!(x, mask_a.max(mask_b), "({i},{j},{k})");
                    both += 1;
                } else if interior(ua) && outside(ub) {
                    assert!((m as f64 - fa(ua)).abs() < 1e-5, "({i},{j},{k}): {m}");
                    assert_eq!(x, mask_a, "({i},{j},{k})");
                    one += 1;
                } else if outside(ua) && interior(ub) {
                    assert!((m as f64 - fb(ub)).abs() < 1e-5, "({i},{j},{k}): {m}");
                    assert_eq!(x, mask_b, "({i},{j},{k})");
                    one += 1;
                } else if outside(ua) && outside(ub) {
                    assert_eq!((m, x), (0.0, 0.0), "({i},{j},{k}) is covered by no patch");
                    none += 1;
                }
            }
        }
    }
    println!("{both} voxels in both patches, {one} in one, {none} in none");
    assert!(both > 100 && one > 100 && none > 100, "{both} {one} {none}");
    assert!(got_max.contains(&1.0) && got_max.contains(&0.0));
    unsafe {
        lungseg_scan_map_free(mean);
        lungseg_scan_map_free(max);
        lungseg_volume_free(v);
    }
}

#[test]
fn empty_and_missing_maps_are_zero() {
    let dir = scratch("scan_map_empty");
    let (v, g) = scan(&dir, "axis", oblique());
    let m = new_map(v, LUNGSEG_SCAN_MAP_MEAN);
    assert!(read(m).iter().all(|&x| x == 0.0));
    // Far outside the scan: no voxel covered.
    let far = g.index_to_world([-500.0, 20.0, 10.0]);
    add(m, far, &vec![1.0; 20 * 16 * 12], 1.0);
    assert!(read(m).iter().all(|&x| x == 0.0));
    unsafe { lungseg_scan_map_free(m) };
    unsafe { lungseg_volume_free(v) };
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = scratch("scan_map_errors");
    let (v, g) = scan(&dir, "axis", oblique());
    let mut m = std::ptr::dangling_mut::<lungseg_scan_map>();
    expect(
        unsafe { lungseg_scan_map_new(v, 0, &mut m) },
        LUNGSEG_INVALID_ARGUMENT,
        "lungseg_scan_map_kind",
    );
    assert!(m.is_null());
    expect(
        unsafe { lungseg_scan_map_new(v, 3, &mut m) },
        LUNGSEG_INVALID_ARGUMENT,
        "LUNGSEG_SCAN_MAP_MAX = 2",
    );
    expect(
        unsafe { lungseg_scan_map_new(null(), 1, &mut m) },
        LUNGSEG_INVALID_ARGUMENT,
        "volume is NULL",
    );
    expect(
        unsafe { lungseg_scan_map_new(v, 1, null_mut()) },
        LUNGSEG_INVALID_ARGUMENT,
        "out is NULL",
    );
    let m = new_map(v, LUNGSEG_SCAN_MAP_MEAN);
    let c = g.index_to_world([20.0, 20.0, 10.0]);
    let good = vec![0.5f32; 20 * 16 * 12];
    let sp = spec();
    let add_raw = |values: &[f32], len: usize, weight: f32, centre: [f64; 3]| unsafe {
        lungseg_scan_map_add_patch(m, &sp, centre.as_ptr(), values.as_ptr(), len, weight)
    };
    expect(
        add_raw(&good, good.len() - 1, 1.0, c),
        LUNGSEG_INVALID_ARGUMENT,
        "has 3840 voxels",
    );
    expect(
        add_raw(&good, good.len(), 0.0, c),
        LUNGSEG_INVALID_ARGUMENT,
        "weight 0",
    );
    expect(
        add_raw(&good, good.len(), f32::NAN, c),
        LUNGSEG_INVALID_ARGUMENT,
        "weight NaN",
    );
    expect(
        add_raw(&good, good.len(), 1.0, [f64::NAN, 0.0, 0.0]),
        LUNGSEG_INVALID_ARGUMENT,
        "center_world",
    );
    let mut nan = good.clone();
    nan[7] = f32::INFINITY;
    expect(
        add_raw(&nan, nan.len(), 1.0, c),
        LUNGSEG_INVALID_ARGUMENT,
        "patch value 7 is inf",
    );
    let st = unsafe {
        lungseg_scan_map_add_patch(null_mut(), &sp, c.as_ptr(), good.as_ptr(), good.len(), 1.0)
    };
    expect(st, LUNGSEG_INVALID_ARGUMENT, "map is NULL");
    let bad_spec = lungseg_patch_spec {
        size: [2000, 1, 1],
        ..spec()
    };
    let st =
        unsafe { lungseg_scan_map_add_patch(m, &bad_spec, c.as_ptr(), good.as_ptr(), 2000, 1.0) };
    expect(st, LUNGSEG_INVALID_ARGUMENT, "patch size");
    let mut out = vec![0f32; DIMS.iter().product::<usize>() - 1];
    expect(
        unsafe { lungseg_scan_map_read(m, out.as_mut_ptr(), out.len()) },
        LUNGSEG_INVALID_ARGUMENT,
        "the scan [56, 48, 22] has 59136 voxels",
    );
    // Refused patches left the map empty.
    assert!(read(m).iter().all(|&x| x == 0.0));
    unsafe { lungseg_scan_map_free(m) };
    unsafe { lungseg_scan_map_free(null_mut()) };
    unsafe { lungseg_volume_free(v) };
}
