//! Synthetic LUNA16-like CT (lungseg-train) → MetaImage reader, geometry, patches, masks and
//! the MC-dropout C ABI (lungseg-sys). Fixed seeds, so the outputs are snapshotted: a change in
//! any stage shows up as a reviewed snapshot diff.

use lungseg::ffi::*;
use lungseg::patch::{self, PatchSpec};
use lungseg_train::prepare::luna;
use lungseg_train::synth::{self, SynthConfig};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::null_mut;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("pipeline")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small() -> SynthConfig {
    SynthConfig {
        dims_xy: 128,
        z_extent_mm: 96.0,
        spacing_xy_mm: (1.4, 1.8),
        ..SynthConfig::default()
    }
}

fn r(v: f64, d: i32) -> f64 {
    let s = 10f64.powi(d);
    (v * s).round() / s
}

/// Scans with at least one nodule, as (uid, mhd path, nodule centre, diameter).
fn nodules(dir: &Path) -> Vec<(String, PathBuf, [f64; 3], f64)> {
    let s = synth::write_dataset(dir, &small(), 4, 2024, None, |_| {}).unwrap();
    let ann = luna::read_annotations(&dir.join("annotations.csv")).unwrap();
    ann.into_iter()
        .map(|a| {
            let path = s
                .scans
                .iter()
                .find(|x| x.0 == a.seriesuid)
                .unwrap()
                .1
                .clone();
            (a.seriesuid, path, a.world, a.diameter_mm)
        })
        .collect()
}

#[test]
fn synthetic_scans_read_back_with_geometry_and_nodules() {
    let dir = scratch("read");
    let found = nodules(&dir);
    assert!(!found.is_empty(), "seed 2024 must give at least one nodule");
    let mut lines = Vec::new();
    for (uid, path, c, d) in &found {
        let v = lungseg::mhd::read(path, &Default::default()).unwrap();
        let g = &v.geometry;
        let idx = g.world_to_index(*c);
        let spec = PatchSpec::cube(32, 1.0);
        let hu = patch::extract_patch(&v, *c, &spec).unwrap();
        let mut mask = vec![0u8; spec.len()];
        let set = patch::sphere_mask(&spec, *c, *c, *d, &mut mask).unwrap();
        // The nodule is denser than the lung around it: mean HU inside the mask vs the shell.
        let (mut inside, mut n_in) = (0.0f64, 0usize);
        for (h, m) in hu.iter().zip(&mask) {
            if *m == 1 {
                inside += *h as f64;
                n_in += 1;
            }
        }
        let centre = hu[(16 * 32 + 16) * 32 + 16];
        assert!(
            centre > -700.0,
            "{uid}: centre HU {centre} is not nodule-like"
        );
        lines.push(format!(
            "{}: dims {:?} spacing [{:.3}, {:.3}, {:.3}] flipped {} | nodule {:.1} mm at voxel [{:.2}, {:.2}, {:.2}] | mask {} voxels, mean HU inside {:.0}, centre {:.0}",
            &uid[uid.len() - 6..],
            g.dims,
            g.spacing[0],
            g.spacing[1],
            g.spacing[2],
            g.direction[0][0] < 0.0,
            d,
            r(idx[0], 2),
            r(idx[1], 2),
            r(idx[2], 2),
            set,
            inside / n_in.max(1) as f64,
            centre
        ));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn mc_dropout_at_a_synthetic_nodule_through_the_c_abi() {
    let dir = scratch("mc");
    let (_, path, c, _) = nodules(&dir).into_iter().next().unwrap();
    let model_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/small_f16_element.safetensors");
    let mp = CString::new(model_path.to_str().unwrap()).unwrap();
    let vp = CString::new(path.to_str().unwrap()).unwrap();
    let (mut m, mut v) = (null_mut(), null_mut());
    unsafe {
        assert_eq!(
            lungseg_model_open(mp.as_ptr(), std::ptr::null(), &mut m),
            lungseg_status::LUNGSEG_OK
        );
        assert_eq!(
            lungseg_volume_open(vp.as_ptr(), &mut v),
            lungseg_status::LUNGSEG_OK
        );
    }
    let mut info = lungseg_model_info::default();
    unsafe { lungseg_model_get_info(m, &mut info) };
    let n = info
        .patch_size
        .iter()
        .map(|&s| s as usize)
        .product::<usize>();
    let mut mean = vec![0f32; n];
    let mut out = lungseg_uncertainty {
        mean: mean.as_mut_ptr(),
        variance: null_mut(),
        entropy: null_mut(),
        mutual_info: null_mut(),
        len: n,
        ..Default::default()
    };
    let opts = lungseg_mc_options {
        struct_size: std::mem::size_of::<lungseg_mc_options>() as u32,
        n_samples: 10,
        seed: 99,
        ..Default::default()
    };
    let st = unsafe { lungseg_predict_uncertainty_at(m, v, c.as_ptr(), &opts, &mut out) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    let s = out.summary;
    // Same call through the Rust API on the same patch: identical.
    let vol = lungseg::mhd::read(&path, &Default::default()).unwrap();
    let model = lungseg::model::Model::open(&model_path).unwrap();
    let cfg = model.config();
    let spec = PatchSpec {
        size: cfg.patch_size,
        spacing_mm: cfg.spacing_mm,
        outside_hu: -1000.0,
    };
    let hu = patch::extract_patch(&vol, c, &spec).unwrap();
    let mut mean2 = vec![0f32; n];
    let s2 = lungseg::mc::predict_uncertainty(
        &model,
        &hu,
        &lungseg::mc::McOptions {
            n_samples: 10,
            seed: 99,
            threads: 1,
            review_threshold: None,
            review_score: None,
        },
        lungseg::mc::UncertaintyMaps {
            mean: Some(&mut mean2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(mean, mean2);
    assert_eq!(s.foreground_voxels, s2.foreground_voxels);
    insta::assert_snapshot!(format!(
        "samples {} foreground {} volume {:.1} mm3 diameter {:.2} mm | mean p {:.4} H {:.4} MI {:.4} | score {:.4} threshold {:.4} review {}",
        s.n_samples,
        s.foreground_voxels,
        s.volume_mm3,
        s.equivalent_diameter_mm,
        s.mean_probability,
        s.mean_entropy,
        s.mean_mutual_info,
        s.uncertainty_score,
        s.review_threshold,
        s.needs_review
    ));
    unsafe {
        lungseg_volume_free(v);
        lungseg_model_free(m);
    }
}
