//! The synthetic dataset: LUNA16's layout, determinism, and annotations that are right in world
//! mm (flipped scans included), checked through the library's own reader and patch sampler.

use lungseg::patch::{extract_hu, PatchSpec};
use lungseg::volume::Volume;
use lungseg_train::synth::{self, generate_scan, ScanPlan, SynthConfig, FLIPPED, UID_PREFIX};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Small enough for a debug-ish test build, large enough for every nodule size.
fn small() -> SynthConfig {
    SynthConfig {
        z_extent_mm: 110.0,
        ..Default::default()
    }
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn hu_at(vol: &Volume, world: [f64; 3]) -> f32 {
    let spec = PatchSpec {
        size: [1, 1, 1],
        ..Default::default()
    };
    let mut v = [0f32];
    extract_hu(vol, world, &spec, &mut v).unwrap();
    v[0]
}

#[test]
fn same_seed_same_bytes_and_luna16_layout() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = SynthConfig {
        z_extent_mm: 40.0,
        dims_xy: 160,
        ..Default::default()
    };
    let sa = synth::write_dataset(a.path(), &cfg, 3, 11, Some(2), |_| {}).unwrap();
    synth::write_dataset(b.path(), &cfg, 3, 11, Some(2), |_| {}).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(
            v == &fb[k],
            "{} differs between two runs with the same seed",
            k.display()
        );
    }
    // 3 scans × (.mhd + .raw) in subset0 (2) and subset1 (1), plus the three CSVs.
    assert_eq!(fa.len(), 9, "{:?}", fa.keys().collect::<Vec<_>>());
    for (i, (uid, mhd, _)) in sa.scans.iter().enumerate() {
        assert!(
            uid.starts_with(UID_PREFIX) && uid.len() == UID_PREFIX.len() + 30,
            "{uid}"
        );
        assert!(uid[UID_PREFIX.len()..].bytes().all(|c| c.is_ascii_digit()));
        let rel = mhd.strip_prefix(a.path()).unwrap();
        assert_eq!(
            rel,
            Path::new(&format!("subset{}", i / 2)).join(format!("{uid}.mhd"))
        );
        let header = String::from_utf8(fa[rel].clone()).unwrap();
        assert!(header.contains("ElementType = MET_SHORT"), "{header}");
        assert!(
            header.ends_with(&format!("ElementDataFile = {uid}.raw\n")),
            "{header}"
        );
    }
    let head = |name: &str| {
        String::from_utf8(fa[Path::new(name)].clone())
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        head("annotations.csv"),
        "seriesuid,coordX,coordY,coordZ,diameter_mm"
    );
    assert_eq!(
        head("candidates.csv"),
        "seriesuid,coordX,coordY,coordZ,class"
    );
    // Another seed gives other scans.
    let c = tempfile::tempdir().unwrap();
    synth::write_dataset(c.path(), &cfg, 1, 12, None, |_| {}).unwrap();
    assert_ne!(
        files(c.path())[Path::new("annotations.csv")],
        fa[Path::new("annotations.csv")]
    );
}

#[test]
fn plans_cover_the_documented_ranges() {
    let cfg = SynthConfig::default();
    let plans: Vec<_> = (0..400)
        .map(|i| ScanPlan::draw(&cfg, 5, i).unwrap())
        .collect();
    let flipped = plans.iter().filter(|p| p.flipped).count();
    assert!(
        (70..130).contains(&flipped),
        "{flipped} of 400 flipped, expected about a quarter"
    );
    for p in &plans {
        assert!((0.6..=0.9).contains(&p.spacing[0]) && p.spacing[0] == p.spacing[1]);
        assert!((1.0..=2.5).contains(&p.spacing[2]));
        assert_eq!(&p.dims[..2], &[256, 256]);
        assert!((64..=160).contains(&p.dims[2]), "{:?}", p.dims);
        let g = p.geometry().unwrap();
        assert_eq!(
            g.direction,
            if p.flipped {
                FLIPPED
            } else {
                lungseg::geometry::IDENTITY
            }
        );
    }
    // Scan i does not depend on how many scans are generated (streams per scan).
    assert_eq!(ScanPlan::draw(&cfg, 5, 3).unwrap(), plans[3]);
}

#[test]
fn flipping_keeps_the_anatomy_in_world_mm() {
    let cfg = small();
    let plain = generate_scan(
        &SynthConfig {
            flip_fraction: 0.0,
            ..cfg.clone()
        },
        3,
        0,
    )
    .unwrap();
    let flipped = generate_scan(
        &SynthConfig {
            flip_fraction: 1.0,
            ..cfg
        },
        3,
        0,
    )
    .unwrap();
    assert!(!plain.flipped && flipped.flipped);
    assert_eq!(flipped.volume.geometry.direction, FLIPPED);
    assert_eq!(plain.annotations, flipped.annotations);
    // Same HU at the same world points, though the voxel arrays are mirrored.
    let g = &plain.volume.geometry;
    for idx in [
        [10.0, 20.0, 5.0],
        [128.3, 100.7, 30.2],
        [200.0, 131.0, 45.5],
        [3.0, 250.0, 1.0],
    ] {
        let w = g.index_to_world(idx);
        let (a, b) = (hu_at(&plain.volume, w), hu_at(&flipped.volume, w));
        assert!((a - b).abs() < 1e-3, "at {w:?}: {a} vs {b}");
    }
    assert_ne!(plain.volume.data, flipped.volume.data);
}

/// Diameter measured like a reader with a ruler: in-plane profiles from the centre to where
/// the HU falls below the midpoint between lung and nodule; the wall side of juxtapleural
/// nodules (and the odd touching vessel) are discarded by using the lower-middle extents.
fn measured_diameter(vol: &Volume, c: [f64; 3], d: f64, threshold: f32) -> f64 {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let dirs = [
        [1.0, 0.0],
        [-1.0, 0.0],
        [0.0, 1.0],
        [0.0, -1.0],
        [s, s],
        [s, -s],
        [-s, s],
        [-s, -s],
    ];
    let mut half: Vec<f64> = dirs
        .iter()
        .map(|u| {
            let mut t = 0.0;
            while t < d + 5.0 && hu_at(vol, [c[0] + t * u[0], c[1] + t * u[1], c[2]]) >= threshold {
                t += 0.1;
            }
            t
        })
        .collect();
    half.sort_by(f64::total_cmp);
    half[2] + half[3]
}

#[test]
fn annotations_point_at_nodules_of_the_annotated_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        flip_fraction: 0.5,
        ..small()
    };
    let (scans, seed) = (6, 21);
    let summary = synth::write_dataset(dir.path(), &cfg, scans, seed, None, |_| {}).unwrap();
    let annotations = synth::read_annotations(&dir.path().join("annotations.csv")).unwrap();
    let mut checked = (0, 0, 0); // nodules, in flipped scans, subsolid
    for (i, (uid, mhd, n)) in summary.scans.iter().enumerate() {
        // The reader sees what the generator drew; the truth (type, HU) comes from regenerating.
        let truth = generate_scan(&cfg, seed, i as u64).unwrap();
        let vol = lungseg::mhd::read(mhd, &Default::default()).unwrap();
        assert_eq!(vol.geometry, truth.volume.geometry);
        let rows: Vec<_> = annotations.iter().filter(|a| &a.0 == uid).collect();
        assert_eq!(rows.len(), *n);
        for ((_, world, d), a) in rows.into_iter().zip(&truth.annotations) {
            assert_eq!((*world, *d), (a.world, a.nodule.diameter_mm));
            let lung = -850.0;
            let hu = hu_at(&vol, *world);
            let contrast = (hu - lung) / (a.nodule.hu - lung);
            assert!(
                contrast > 0.4,
                "{uid} {a:?}: HU {hu} at the annotation is not nodule-like"
            );
            // Slices thicker than the nodule cut it off-centre: allow for the chord lost there.
            let r = d / 2.0;
            let half_slice = vol.geometry.spacing[2] / 2.0;
            let chord = d - 2.0 * (r * r - half_slice * half_slice).max(0.0).sqrt();
            let measured = measured_diameter(&vol, *world, *d, (lung + a.nodule.hu) / 2.0);
            let tol = (0.15 * d).max(1.5) + chord;
            assert!(
                (measured - d).abs() <= tol,
                "{uid} {a:?}: measured {measured:.2} mm vs {d:.2} ± {tol:.2}"
            );
            checked.0 += 1;
            checked.1 += truth.flipped as usize;
            checked.2 += (a.nodule.kind != synth::NoduleKind::Solid) as usize;
        }
        // Candidates: class 1 within the nodule, class 0 well away from every nodule.
        for c in &truth.candidates {
            let near = truth.annotations.iter().any(|a| {
                let d2: f64 = (0..3).map(|k| (c.world[k] - a.world[k]).powi(2)).sum();
                d2.sqrt() <= a.nodule.diameter_mm / 2.0
            });
            assert_eq!(near, c.class == 1, "{uid} {c:?}");
        }
    }
    assert!(
        checked.0 >= 4 && checked.1 >= 1 && checked.2 >= 1,
        "too few cases covered (nodules, flipped, subsolid) = {checked:?}; pick another seed"
    );
}
