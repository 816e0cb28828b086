//! The final mask's component filter (`lungseg::mask::drop_small_components`) checked against
//! SimpleITK: `ConnectedComponent` with full connectivity (26 neighbours in 3-D) and
//! `RelabelComponent` with `minimumObjectSize`, on random masks. SimpleITK and numpy are
//! required: when python3 cannot import them the test fails (never skips).

use lungseg::mask::drop_small_components;
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
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(arr), True)
    kept = sitk.RelabelComponent(cc, minimumObjectSize=job["min_voxels"])
    out.append((sitk.GetArrayFromImage(kept) > 0).astype(int).ravel().tolist())
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
    // (dims, foreground %, voxel mm³, minimum mm³): sparse and dense masks (dense ones join
    // into large diagonal-linked components), isotropic and anisotropic voxels.
    let cases = [
        ([12, 13, 14], 8, 1.0, 2.0),
        ([12, 13, 14], 8, 1.0, 4.0),
        ([10, 11, 9], 20, 1.0, 8.0),
        ([10, 11, 9], 20, 0.5, 3.0),
        ([8, 16, 16], 30, 2.5, 40.0),
    ];
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    for (dims, percent, voxel_mm3, min_mm3) in cases {
        let mask = random_mask(dims, percent, &mut state);
        let mut filtered = mask.clone();
        let kept = drop_small_components(&mut filtered, dims, voxel_mm3, min_mm3).unwrap();
        assert_eq!(kept, filtered.iter().map(|&m| u64::from(m)).sum::<u64>());
        let before = mask.iter().map(|&m| u64::from(m)).sum::<u64>();
        assert!(kept < before, "{dims:?} at {min_mm3} mm³ drops something");
        // SimpleITK counts objects in voxels: the smallest kept is ⌈min / voxel⌉ voxels.
        let min_voxels = (min_mm3 / voxel_mm3).ceil() as u64;
        jobs.push(json!({ "dims": dims, "mask": mask, "min_voxels": min_voxels }));
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
