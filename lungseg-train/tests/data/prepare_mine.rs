//! `mine-negatives`: which negatives are kept (the selection rule on its own), and the whole
//! command with the engine's fixture model against false positives counted here from the
//! engine's plain dropout-off pass.

use std::path::{Path, PathBuf};

use lungseg::model::Model;
use lungseg_train::dataset::{DatasetWriter, PatchDataset, PatchRecord};
use lungseg_train::prepare::mine::{mine_negatives, select, Charged, MineConfig, REPORT};

use crate::evaluate_calibrate::{fixture_model, noise};

fn charged(fp: &[f64]) -> Vec<Charged> {
    fp.iter()
        .enumerate()
        .map(|(i, &fp_mm3)| Charged {
            index: 10 + i,
            fp_mm3,
        })
        .collect()
}

fn cfg(hard_fraction: f64, min_fp_mm3: f64, seed: u64) -> MineConfig {
    MineConfig {
        neg_ratio: 1.0,
        hard_fraction,
        min_fp_mm3,
        seed,
    }
}

#[test]
fn the_hard_share_is_the_largest_false_positives_above_the_floor() {
    let negs = charged(&[0.0, 50.0, 3.0, 900.0, 50.0, 20.0, 0.0, 14.0, 0.0, 1.0]);
    let s = select(&negs, 6, &cfg(0.5, 10.0, 1));
    // round(0.5 · 6) = 3 hard: 900, then the tie at 50 in pool order.
    assert_eq!(s.hard, vec![13, 11, 14]);
    assert_eq!(s.random.len(), 3);
    for i in &s.random {
        assert!(!s.hard.contains(i) && (10..20).contains(i), "{i}");
    }
    assert!(s.random.windows(2).all(|w| w[0] < w[1]), "{:?}", s.random);
    // The floor: four negatives reach 20 mm³, so a 0.8 share (5 of 6) takes four hard.
    let s = select(&negs, 6, &cfg(0.8, 20.0, 1));
    assert_eq!(s.hard, vec![13, 11, 14, 15]);
    let s = select(&negs, 6, &cfg(0.8, 60.0, 1));
    assert_eq!((s.hard.clone(), s.random.len()), (vec![13], 5));
    // No hard share: a plain random draw; a zero floor never makes a clean negative hard.
    assert!(select(&negs, 6, &cfg(0.0, 10.0, 1)).hard.is_empty());
    let s = select(&negs, 10, &cfg(1.0, 0.0, 1));
    assert_eq!(s.hard.len(), 7, "{:?}", s.hard);
}

#[test]
fn the_random_share_is_seeded_and_never_exceeds_the_pool() {
    let negs = charged(&[0.0; 40]);
    let a = select(&negs, 10, &cfg(0.5, 10.0, 7));
    assert_eq!(a, select(&negs, 10, &cfg(0.5, 10.0, 7)));
    assert_ne!(a.random, select(&negs, 10, &cfg(0.5, 10.0, 8)).random);
    let all = select(&negs[..5], 10, &cfg(0.5, 10.0, 7));
    assert_eq!(all.random, vec![10, 11, 12, 13, 14]);
}

const SHAPE: [usize; 3] = [8, 12, 16]; // z, y, x

/// Train patches: 4 positives (a labelled soft-tissue ball) and 16 negatives, some holding an
/// unlabelled ball or a bright slab (what a model may call a nodule), plus 2 validation
/// positives and 4 negatives, which mining thins at random.
fn pool(dir: &Path) -> PathBuf {
    let root = dir.join("pool");
    let mut w = DatasetWriter::create(&root).unwrap();
    let [d, h, wd] = SHAPE;
    let mut k = 7u64;
    let mut add = |id: String, split: &str, label: u8, kind: usize, labelled: bool| {
        let (mut hu, mut mask) = (Vec::new(), Vec::new());
        for z in 0..d {
            for y in 0..h {
                for x in 0..wd {
                    let noise = noise(&mut k);
                    let r2 = (x as f64 - 8.0).powi(2)
                        + (y as f64 - 6.0).powi(2)
                        + (z as f64 - 4.0).powi(2);
                    let ball = r2 <= (1.5 + kind as f64 * 0.7).powi(2);
                    let tissue = match kind % 4 {
                        0 => false,
                        1 | 2 => ball,
                        _ => x < 2 + kind / 2,
                    };
                    hu.push(if tissue { 40.0 } else { -850.0 } + noise);
                    mask.push(u8::from(labelled && tissue));
                }
            }
        }
        let rec = PatchRecord {
            id,
            hu: String::new(),
            mask: String::new(),
            seriesuid: format!("1.2.{split}"),
            split: split.into(),
            label,
            shape: SHAPE,
            diameter_mm: None,
            spacing_mm: Some([1.0, 1.0, 2.0]),
            center_world: None,
            scan_spacing_mm: None,
        };
        w.add(rec, &hu, &mask).unwrap();
    };
    for i in 0..4 {
        add(format!("pos{i}"), "train", 1, 1 + 4 * i, true);
    }
    for i in 0..16 {
        // neg05 clips a labelled ball although it was not cut around one: only what the
        // model paints outside that ball is a false positive.
        add(format!("neg{i:02}"), "train", 0, i, i == 5);
    }
    for i in 0..6 {
        let label = u8::from(i % 3 == 1);
        add(format!("val{i}"), "val", label, i, label == 1);
    }
    w.finish().unwrap();
    root
}

/// Voxels of the plain dropout-off pass at the model's mask threshold outside the ground
/// truth, × the patch's voxel volume.
fn fp_mm3(model: &Model, ds: &PatchDataset, i: usize) -> f64 {
    let p = ds.load(i).unwrap();
    let mut prob = vec![0.0f32; p.hu.len()];
    lungseg::mc::predict(model, &p.hu, &mut prob, 1).unwrap();
    let t = model.config().mask_threshold;
    let n = prob
        .iter()
        .zip(&p.mask)
        .filter(|&(&q, &g)| q >= t && g == 0)
        .count();
    2.0 * n as f64
}

#[test]
fn mining_keeps_every_other_patch_and_the_negatives_the_model_gets_most_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, pool) = (fixture_model(tmp.path()), pool(tmp.path()));
    let model = Model::open(&model_path).unwrap();
    let ds = PatchDataset::open(&pool).unwrap();
    let mut expected: Vec<(String, f64)> = (0..ds.records.len())
        .filter(|&i| ds.records[i].split == "train" && ds.records[i].label == 0)
        .map(|i| (ds.records[i].id.clone(), fp_mm3(&model, &ds, i)))
        .collect();
    let out = tmp.path().join("mined");
    let c = MineConfig {
        neg_ratio: 1.5,
        hard_fraction: 0.5,
        min_fp_mm3: 1.0,
        seed: 3,
    };
    let s = mine_negatives(&model_path, &pool, &out, &c, |_, _| {}).unwrap();
    assert_eq!(s.charged, expected);
    // The fixture must paint on more negatives than the hard share takes, or the ranking is
    // never tested.
    let painted = expected.iter().filter(|e| e.1 >= 1.0).count();
    assert!(painted > 3, "{expected:?}");
    assert_eq!((s.train_positives, s.kept_hard, s.kept_random), (4, 3, 3));

    let mined = PatchDataset::open(&out).unwrap();
    let ids: Vec<&str> = mined.records.iter().map(|r| r.id.as_str()).collect();
    for keep in ["pos0", "pos1", "pos2", "pos3", "val1", "val4"] {
        assert!(ids.contains(&keep), "{keep} missing from {ids:?}");
    }
    // round(1.5 · 4) = 6 training negatives, round(1.5 · 2) = 3 of the 4 validation ones.
    let val_negatives = ids
        .iter()
        .filter(|id| ["val0", "val2", "val3", "val5"].contains(id));
    assert_eq!(val_negatives.count(), 3, "{ids:?}");
    assert_eq!(ids.len(), 4 + 6 + 2 + 3);
    let kept_fp: Vec<f64> = expected
        .iter()
        .filter(|(id, _)| ids.contains(&id.as_str()))
        .map(|e| e.1)
        .collect();
    assert_eq!(kept_fp.len(), 6);
    assert!((s.kept_mean_fp_mm3 - kept_fp.iter().sum::<f64>() / 6.0).abs() < 1e-9);
    let pool_fp = expected.iter().map(|e| e.1).sum::<f64>() / expected.len() as f64;
    assert!((s.pool_mean_fp_mm3 - pool_fp).abs() < 1e-9);
    assert_eq!(s.pool_negatives_hard, painted);
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (id, fp) in &expected[..3] {
        assert!(
            ids.contains(&id.as_str()),
            "hard {id} ({fp} mm³) not kept: {ids:?}"
        );
    }
    // Same records, same bytes, read through the output folder.
    for (j, r) in mined.records.iter().enumerate() {
        let i = ds.records.iter().position(|p| p.id == r.id).unwrap();
        assert_eq!(&ds.records[i], r);
        assert_eq!(ds.load(i).unwrap(), mined.load(j).unwrap());
    }
    assert!(out.join(REPORT).is_file());
    let again = mine_negatives(&model_path, &pool, &out, &c, |_, _| {}).unwrap_err();
    assert!(
        format!("{again:#}").contains("already holds a dataset"),
        "{again:#}"
    );
}
