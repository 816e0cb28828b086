//! Geometry and patch extraction checked against SimpleITK, the reference LUNA16 tooling uses.
//!
//! Images are built in memory on both sides (the voxels travel through a temporary raw file and
//! numpy), so this test does not depend on the MetaImage reader. SimpleITK and numpy are required:
//! when python3 cannot import them the tests fail (never skip) and say `pip install SimpleITK numpy`.

use lungseg::geometry::{Geometry, IDENTITY};
use lungseg::patch::{extract_patch, sphere_mask, PatchSpec};
use lungseg::volume::{PixelData, Volume};
use serde_json::{json, Value};
use std::path::PathBuf;

mod common;

const ORACLE: &str = r#"
import json, sys
try:
    import numpy as np
    import SimpleITK as sitk
except ImportError as e:
    sys.stderr.write("LUNGSEG_MISSING_PYTHON_DEPS %s\n" % e)
    sys.exit(3)

req = json.load(sys.stdin)

def image(g, pixel=sitk.sitkUInt8, array=None):
    img = sitk.GetImageFromArray(array) if array is not None else sitk.Image(g["dims"], pixel)
    img.SetSpacing(g["spacing"])
    img.SetOrigin(g["origin"])
    img.SetDirection(g["direction"])  # row-major D[r][c], as ours
    return img

out = {}
if req["mode"] == "geometry":
    img = image(req["geometry"])
    out["to_index"] = [img.TransformPhysicalPointToContinuousIndex(p) for p in req["world"]]
    out["to_world"] = [img.TransformContinuousIndexToPhysicalPoint(i) for i in req["index"]]
elif req["mode"] == "resample":
    for job in req["jobs"]:
        g = job["geometry"]
        dims = g["dims"]
        arr = np.fromfile(job["input"], dtype=job["dtype"]).reshape(dims[2], dims[1], dims[0])
        img = image(g, array=arr)
        p = job["patch"]
        res = sitk.Resample(img, p["size"], sitk.Transform(), sitk.sitkLinear, p["origin"],
                            p["spacing"], [1, 0, 0, 0, 1, 0, 0, 0, 1], p["default"], sitk.sitkFloat32)
        sitk.GetArrayFromImage(res).astype("<f4").tofile(job["output"])
elif req["mode"] == "sphere":
    p = req["patch"]
    ax = [p["origin"][a] + np.arange(p["size"][a]) * p["spacing"][a] - req["center"][a] for a in range(3)]
    z, y, x = np.meshgrid(ax[2], ax[1], ax[0], indexing="ij")
    mask = (x * x + y * y + z * z <= (req["diameter"] / 2.0) ** 2).astype(np.uint8)
    mask.tofile(req["output"])
json.dump(out, sys.stdout)
"#;

/// Runs the oracle with a JSON request; fails loudly if python3/SimpleITK/numpy are missing.
fn oracle(request: Value) -> Value {
    common::python_oracle(
        ORACLE,
        &request,
        "these tests need python3 with SimpleITK and numpy: run `pip install SimpleITK numpy`",
    )
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("geometry_simpleitk-{}-{name}", std::process::id()))
}

fn geometry_json(g: &Geometry) -> Value {
    json!({ "dims": g.dims, "spacing": g.spacing, "origin": g.origin, "direction": g.direction_row_major() })
}

fn vec3(v: &Value) -> [f64; 3] {
    std::array::from_fn(|i| v[i].as_f64().unwrap())
}

/// Rotation about an arbitrary axis (Rodrigues), to get directions with no zero entries.
fn rotation(axis: [f64; 3], angle_deg: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|v| v / n);
    let (s, c) = angle_deg.to_radians().sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

/// Identity, LUNA16's flip, rotations, an axis permutation and an oblique reflection.
fn directions() -> Vec<(&'static str, [[f64; 3]; 3])> {
    let mut reflected = rotation([1.0, 2.0, 3.0], 37.0);
    for row in reflected.iter_mut() {
        row[1] = -row[1];
    }
    vec![
        ("identity", IDENTITY),
        (
            "luna16-flip",
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        ),
        ("rot-z-30", rotation([0.0, 0.0, 1.0], 30.0)),
        ("oblique", rotation([0.3, -0.5, 0.8], 71.0)),
        (
            "permutation",
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
        ),
        ("oblique-reflection", reflected),
    ]
}

fn geometry(direction: [[f64; 3]; 3]) -> Geometry {
    Geometry::new(
        [40, 36, 20],
        [0.703125, 0.8, 2.5],
        [-12.25, 30.5, -101.75],
        direction,
    )
    .unwrap()
}

#[test]
fn world_index_transforms_match_simpleitk() {
    let world: Vec<[f64; 3]> = vec![
        [0.0; 3],
        [-12.25, 30.5, -101.75],
        [17.3, -4.9, -60.1],
        [-250.0, 300.0, 1000.5],
        [1e-3, 2e4, -3.3],
    ];
    let index: Vec<[f64; 3]> = vec![
        [0.0; 3],
        [39.0, 35.0, 19.0],
        [-0.5, 17.25, 3.125],
        [12.7, -3.3, 100.0],
        [1000.0, 0.001, -7.0],
    ];
    for (name, dir) in directions() {
        let g = geometry(dir);
        let r = oracle(
            json!({ "mode": "geometry", "geometry": geometry_json(&g), "world": world, "index": index }),
        );
        for (w, expect) in world.iter().zip(r["to_index"].as_array().unwrap()) {
            let (got, expect) = (g.world_to_index(*w), vec3(expect));
            for a in 0..3 {
                assert!(
                    (got[a] - expect[a]).abs() <= 1e-9,
                    "{name} world {w:?}: {got:?} vs SimpleITK {expect:?}"
                );
            }
        }
        for (i, expect) in index.iter().zip(r["to_world"].as_array().unwrap()) {
            let (got, expect) = (g.index_to_world(*i), vec3(expect));
            for a in 0..3 {
                assert!(
                    (got[a] - expect[a]).abs() <= 1e-9,
                    "{name} index {i:?}: {got:?} vs SimpleITK {expect:?}"
                );
            }
        }
    }
}

/// Deterministic non-smooth voxel values (a hash), so that interpolation errors cannot hide.
fn voxels(n: usize) -> Vec<i16> {
    (0..n as u64)
        .map(|i| {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xDEAD_BEEF;
            ((h % 3000) as i16) - 1200
        })
        .collect()
}

/// One patch to compare: our extraction against SimpleITK's `Resample` of the same raw voxels.
struct Case<'a> {
    name: String,
    volume: &'a Volume,
    raw: PathBuf,
    dtype: &'static str,
    center: [f64; 3],
    spec: PatchSpec,
}

impl Case<'_> {
    fn out(&self) -> PathBuf {
        tmp(&format!("{}-out.raw", self.name))
    }

    fn job(&self) -> Value {
        json!({
            "geometry": geometry_json(&self.volume.geometry), "input": self.raw, "dtype": self.dtype,
            "output": self.out(),
            "patch": { "size": self.spec.size, "spacing": self.spec.spacing_mm, "default": self.spec.outside_hu,
                       "origin": self.spec.voxel_world(self.center, [0, 0, 0]) },
        })
    }

    /// Returns how many patch voxels SimpleITK put outside the scan.
    fn check(&self) -> usize {
        let (name, spec) = (&self.name, &self.spec);
        let bytes = std::fs::read(self.out()).unwrap();
        std::fs::remove_file(self.out()).ok();
        let expect: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let got = extract_patch(self.volume, self.center, spec).unwrap();
        assert_eq!(got.len(), expect.len());
        let bad: Vec<_> = got
            .iter()
            .zip(&expect)
            .enumerate()
            .filter(|(_, (g, e))| (*g - *e).abs() > 1e-3 * (1.0 + e.abs()))
            .take(5)
            .collect();
        assert!(
            bad.is_empty(),
            "{name} centre {:?} {spec:?}: (index, (ours, SimpleITK)) {bad:?}",
            self.center
        );
        expect.iter().filter(|&&v| v == spec.outside_hu).count()
    }
}

#[test]
fn patches_match_simpleitk_resample() {
    let mut volumes = Vec::new();
    for (name, dir) in directions() {
        let g = geometry(dir);
        let data = voxels(g.voxel_count());
        let raw_i16 = tmp(&format!("{name}-i16.raw"));
        std::fs::write(&raw_i16, bytemuck::cast_slice::<i16, u8>(&data)).unwrap();
        let as_f32: Vec<f32> = data.iter().map(|&v| v as f32 * 0.37 + 0.1).collect();
        let raw_f32 = tmp(&format!("{name}-f32.raw"));
        std::fs::write(&raw_f32, bytemuck::cast_slice::<f32, u8>(&as_f32)).unwrap();
        volumes.push((
            name,
            Volume::new(g, PixelData::I16(data)).unwrap(),
            raw_i16,
            "<i2",
        ));
        volumes.push((
            name,
            Volume::new(g, PixelData::F32(as_f32)).unwrap(),
            raw_f32,
            "<f4",
        ));
    }
    let mut cases = Vec::new();
    for (name, volume, raw, dtype) in &volumes {
        let g = &volume.geometry;
        let middle = g.index_to_world([19.37, 17.61, 9.43]);
        let corner = g.index_to_world([1.13, 33.9, 0.71]);
        let cube = PatchSpec::cube(24, 1.0);
        let aniso = PatchSpec {
            size: [20, 15, 12],
            spacing_mm: [0.61, 1.13, 1.7],
            outside_hu: -1000.0,
        };
        let wide = PatchSpec {
            size: [17, 19, 9],
            spacing_mm: [3.1, 2.9, 7.3],
            outside_hu: -2048.5,
        };
        for (case, center, spec) in [
            ("middle-cube", middle, cube),
            ("middle-aniso", middle, aniso),
            ("corner-cube", corner, cube),
            ("corner-aniso", corner, aniso),
            ("middle-wide", middle, wide),
        ] {
            let name = format!("{name}-{case}-{}", &dtype[1..]);
            cases.push(Case {
                name,
                volume,
                raw: raw.clone(),
                dtype,
                center,
                spec,
            });
        }
    }
    oracle(json!({ "mode": "resample", "jobs": cases.iter().map(Case::job).collect::<Vec<_>>() }));
    for case in &cases {
        let outside = case.check();
        // Corner and wide patches straddle the scan border: both paths (and the border) are hit.
        if !case.name.contains("middle-cube") && !case.name.contains("middle-aniso") {
            assert!(
                outside > 0 && outside < case.spec.len(),
                "{}: {outside} outside voxels",
                case.name
            );
        }
    }
    for (_, _, raw, _) in &volumes {
        std::fs::remove_file(raw).ok();
    }
}

#[test]
fn sphere_mask_matches_numpy_and_ball_volume() {
    let spec = PatchSpec {
        size: [64, 60, 40],
        spacing_mm: [0.9, 1.0, 1.3],
        outside_hu: -1000.0,
    };
    let patch_center = [10.0, -20.0, 30.0];
    for (nodule, diameter) in [
        ([10.3, -19.6, 31.1], 20.0),
        ([12.0, -21.7, 29.2], 7.5),
        ([40.0, -20.0, 30.0], 30.0),
    ] {
        let mut ours = vec![0u8; spec.len()];
        let n = sphere_mask(&spec, patch_center, nodule, diameter, &mut ours).unwrap();
        let out = tmp("sphere.raw");
        oracle(json!({
            "mode": "sphere", "center": nodule, "diameter": diameter, "output": &out,
            "patch": { "size": spec.size, "spacing": spec.spacing_mm, "origin": spec.voxel_world(patch_center, [0, 0, 0]) },
        }));
        let expect = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).ok();
        assert!(
            ours == expect,
            "mask for {nodule:?} d={diameter} differs from numpy"
        );
        if nodule[0] < 20.0 {
            // Fully inside the patch: voxel count × voxel volume ≈ 4/3·π·r³.
            let vol = n as f64 * spec.spacing_mm.iter().product::<f64>();
            let ball = 4.0 / 3.0 * std::f64::consts::PI * (diameter / 2.0).powi(3);
            assert!(
                (vol - ball).abs() / ball < 0.06,
                "d={diameter}: {vol} mm³ vs {ball} mm³"
            );
        }
    }
    // Centred on voxel size/2 of an odd-sized patch: symmetric under all three mirrors.
    let spec = PatchSpec {
        size: [33, 31, 29],
        spacing_mm: [0.7, 0.7, 1.1],
        outside_hu: -1000.0,
    };
    let mut m = vec![0u8; spec.len()];
    sphere_mask(&spec, patch_center, patch_center, 15.0, &mut m).unwrap();
    let [nx, ny, nz] = spec.size;
    let at = |i: usize, j: usize, k: usize| m[(k * ny + j) * nx + i];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let v = at(i, j, k);
                assert_eq!(v, at(nx - 1 - i, j, k));
                assert_eq!(v, at(i, ny - 1 - j, k));
                assert_eq!(v, at(i, j, nz - 1 - k));
            }
        }
    }
}
