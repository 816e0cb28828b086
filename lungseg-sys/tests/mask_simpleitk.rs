//! The final mask's component filter (`lungseg::mask::drop_small_components`) checked against
//! SimpleITK: `ConnectedComponent` with full connectivity (26 neighbours in 3-D) and
//! `RelabelComponent` with `minimumObjectSize`, on random masks; components below the minimum
//! are kept back when a voxel of theirs lies closer than the spare radius to the centre voxel,
//! measured from SimpleITK's physical points of the spaced image. SimpleITK and numpy are
//! required: when python3 cannot import them the test fails (never skips).

use lungseg::mask::{drop_small_components, PatchGrid, SmallComponents};
use serde_json::json;

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
out = []
for job in req["jobs"]:
    arr = np.array(job["mask"], dtype=np.uint8).reshape(job["dims"])
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(job["spacing"])
    cc = sitk.ConnectedComponent(img, True)
    kept = sitk.GetArrayFromImage(sitk.RelabelComponent(cc, minimumObjectSize=job["min_voxels"])) > 0
    labels = sitk.GetArrayFromImage(cc)
    nz, ny, nx = job["dims"]
    centre = np.array(cc.TransformIndexToPhysicalPoint((nx // 2, ny // 2, nz // 2)))
    r2 = job["radius"] ** 2
    for label in range(1, int(labels.max()) + 1):
        zyx = np.argwhere(labels == label)
        points = np.array([cc.TransformIndexToPhysicalPoint((int(x), int(y), int(z))) for z, y, x in zyx])
        if (((points - centre) ** 2).sum(axis=1) < r2).any():
            kept |= labels == label
    out.append(kept.astype(int).ravel().tolist())
json.dump(out, sys.stdout)
"#;

/// Random 0/1 masks of `dims` (z, y, x) with about `percent` % foreground.
fn random_mask(dims: [usize; 3], percent: u64, state: &mut u64) -> Vec<u8> {
    (0..dims.iter().product::<usize>())
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            u8::from(*state % 100 < percent)
        })
        .collect()
}

#[test]
fn small_components_are_dropped_as_simpleitk_drops_them() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    // (dims, foreground %, spacing x y z mm, minimum mm³, spare radius mm): sparse and dense
    // masks (dense ones join into large diagonal-linked components), isotropic and anisotropic
    // voxels, with and without a radius.
    let cases = [
        ([12, 13, 14], 8, [1.0, 1.0, 1.0], 2.0, 0.0),
        ([12, 13, 14], 8, [1.0, 1.0, 1.0], 4.0, 0.0),
        ([12, 13, 14], 8, [1.0, 1.0, 1.0], 4.0, 4.5),
        ([10, 11, 9], 20, [1.0, 1.0, 1.0], 8.0, 0.0),
        ([10, 11, 9], 20, [1.0, 0.5, 1.0], 3.0, 0.0),
        ([10, 11, 9], 20, [0.7, 0.5, 2.0], 3.0, 3.3),
        ([8, 16, 16], 30, [0.5, 2.0, 2.5], 40.0, 0.0),
        ([8, 16, 16], 12, [0.5, 2.0, 2.5], 40.0, 6.3),
    ];
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    for (dims, percent, spacing, min_mm3, radius) in cases {
        let mask = random_mask(dims, percent, &mut state);
        let grid = PatchGrid {
            dims_zyx: dims,
            spacing_xyz: spacing,
        };
        let rule = SmallComponents {
            min_mm3,
            spare_radius_mm: radius,
        };
        let mut filtered = mask.clone();
        let kept = drop_small_components(&mut filtered, grid, rule).unwrap();
        assert_eq!(kept, filtered.iter().map(|&m| u64::from(m)).sum::<u64>());
        let before = mask.iter().map(|&m| u64::from(m)).sum::<u64>();
        assert!(kept < before, "{dims:?} at {min_mm3} mm³ drops something");
        if radius > 0.0 {
            let mut unspared = mask.clone();
            let no_radius = SmallComponents {
                spare_radius_mm: 0.0,
                ..rule
            };
            let dropped = drop_small_components(&mut unspared, grid, no_radius).unwrap();
            assert!(
                kept > dropped,
                "{dims:?}: the radius {radius} mm spares something"
            );
        }
        // SimpleITK counts objects in voxels: the smallest kept is ⌈min / voxel⌉ voxels.
        let min_voxels = (min_mm3 / grid.voxel_mm3()).ceil() as u64;
        jobs.push(json!({
            "dims": dims, "mask": mask, "min_voxels": min_voxels,
            "spacing": spacing, "radius": radius,
        }));
        ours.push(filtered);
    }
    let theirs = common::python_oracle(
        ORACLE,
        &json!({ "jobs": jobs }),
        "this test needs python3 with SimpleITK and numpy: run `pip install SimpleITK numpy`",
    );
    for (k, ours) in ours.iter().enumerate() {
        let theirs: Vec<u8> = theirs[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(&theirs, ours, "case {k}");
        assert!(ours.iter().any(|&m| m != 0), "case {k} keeps something");
    }
}
