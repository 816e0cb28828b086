//! `calibrate-mask-threshold`: the table is the overlap of the engine's own MC mean at each
//! candidate (checked against a direct count), the rule picks the best mean Dice without adding
//! bad negatives or false-positive volume, and writing changes the threshold and nothing else.

use lungseg::mask::PointRule;
use lungseg::mc::{self, McOptions, PatchSummary, UncertaintyMaps};
use lungseg::model::Model;
use lungseg_train::calibrate::mask_threshold::{
    choose, choose_mask_threshold, choose_within, write_mask_threshold, MaskThresholdOptions,
    Setting, ThresholdRow, PROVENANCE_KEY,
};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::patch_seed;
use lungseg_train::metrics::{NegativeCost, PatchClass};
use lungseg_train::model_file::ModelFile;

use super::evaluate_calibrate::{dataset, dataset_with, fixture_model};

/// The engine's MC mean map of `hu` (one thread) and its summary.
fn mc_mean(model: &Model, hu: &[f32], n_samples: u32, seed: u64) -> (Vec<f32>, PatchSummary) {
    let mut mean = vec![0.0f32; hu.len()];
    let o = McOptions {
        n_samples,
        seed,
        threads: 1,
        review_threshold: None,
        review_score: None,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..UncertaintyMaps::default()
    };
    let s = mc::predict_uncertainty(model, hu, &o, maps).unwrap();
    (mean, s)
}

fn row(threshold: f32, mean_dice: f64, bad_negatives: usize) -> ThresholdRow {
    flips_row(1, threshold, mean_dice, bad_negatives)
}

fn flips_row(flips: u32, threshold: f32, mean_dice: f64, bad_negatives: usize) -> ThresholdRow {
    ThresholdRow {
        test_time_flips: flips,
        threshold,
        min_component_mm3: 0.0,
        min_component_spare_radius_mm: 0.0,
        point_mask_threshold: 0.0,
        point_radius_mm: 0.0,
        mean_dice,
        bad_negatives,
        mean_fp_mm3: 0.0,
    }
}

/// The setting of `flips` and `threshold` without a minimum component.
fn set(test_time_flips: u32, threshold: f32) -> Setting {
    Setting {
        test_time_flips,
        threshold,
        min_component_mm3: 0.0,
        spare_radius_mm: 0.0,
        point: PointRule::default(),
    }
}

#[test]
fn the_rule_takes_the_best_dice_that_adds_no_bad_negative() {
    let rows = [
        row(0.2, 0.80, 3), // best Dice, but two more false alarms than the current cut
        row(0.3, 0.70, 1),
        row(0.35, 0.7015, 1), // a tie with 0.3 (within 0.002): the nearer one to 0.5 wins
        row(0.5, 0.60, 1),
        row(0.7, 0.50, 0),
    ];
    assert_eq!(choose(&rows, &rows[3]), Some(set(1, 0.35)));
    // Without the constraint's victims the best Dice wins outright.
    assert_eq!(choose(&rows[1..], &rows[3]), Some(set(1, 0.35)));
    assert_eq!(
        choose(&[row(0.2, 0.80, 1), rows[3].clone()], &rows[3]),
        Some(set(1, 0.2))
    );
    // Moving up is allowed too, and the current cut is kept when nothing beats it.
    assert_eq!(
        choose(&[row(0.5, 0.6, 2), row(0.6, 0.65, 0)], &row(0.5, 0.6, 2)),
        Some(set(1, 0.6))
    );
    assert_eq!(
        choose(&[row(0.4, 0.6, 0), row(0.5, 0.6, 0)], &row(0.5, 0.6, 0)),
        Some(set(1, 0.5))
    );
}

#[test]
fn flips_are_chosen_with_the_threshold_under_the_same_rule() {
    let current = flips_row(1, 0.5, 0.70, 2);
    // More flips win on Dice when they add no bad negative ...
    let rows = [
        current.clone(),
        flips_row(8, 0.5, 0.72, 1),
        flips_row(8, 0.4, 0.73, 3),
    ];
    assert_eq!(choose(&rows, &current), Some(set(8, 0.5)));
    // ... a tie keeps the current flips even at another threshold ...
    let rows = [
        current.clone(),
        flips_row(1, 0.45, 0.7105, 2),
        flips_row(8, 0.5, 0.711, 0),
    ];
    assert_eq!(choose(&rows, &current), Some(set(1, 0.45)));
    // ... fewer flips win a tie at the same threshold, listed in any order ...
    let rows = [
        current.clone(),
        flips_row(8, 0.5, 0.7215, 2),
        flips_row(4, 0.5, 0.7205, 1),
    ];
    assert_eq!(choose(&rows, &current), Some(set(4, 0.5)));
    // ... and the reference is the current flips' row, not the best of the current threshold.
    let eight = flips_row(8, 0.5, 0.60, 0);
    let rows = [eight.clone(), flips_row(1, 0.5, 0.65, 1)];
    assert_eq!(choose(&rows, &eight), Some(set(8, 0.5)));
}

/// A bound on bad negatives other than the current row's: rows above it are out, the current
/// row included, and the rest is the same rule.
#[test]
fn a_given_bad_negative_bound_replaces_the_current_rows() {
    let current = flips_row(1, 0.5, 0.736, 13);
    let rows = [
        current.clone(),
        flips_row(8, 0.45, 0.759, 7),
        flips_row(8, 0.8, 0.721, 4),
        flips_row(4, 0.9, 0.691, 4),
    ];
    assert_eq!(choose(&rows, &current), Some(set(8, 0.45)));
    let bound = |bad| NegativeCost {
        bad,
        mean_fp_mm3: 0.0,
    };
    assert_eq!(choose_within(&rows, &current, bound(4)), Some(set(8, 0.8)));
    assert_eq!(choose_within(&rows, &current, bound(3)), None);
}

/// The mean false-positive volume is bounded too: a lower cut that keeps the count of bad
/// negatives but grows their blobs is out (as 4 flips at 0.35 against 8 at 0.5 on the shipped
/// model's calibration scans: 8 bad negatives each, 287 against 214 mm³).
#[test]
fn a_larger_false_positive_volume_is_out_even_with_no_more_bad_negatives() {
    let fp_row = |flips, t, dice, bad, fp| ThresholdRow {
        mean_fp_mm3: fp,
        ..flips_row(flips, t, dice, bad)
    };
    let current = fp_row(8, 0.5, 0.751, 8, 214.3);
    let rows = [
        current.clone(),
        fp_row(4, 0.35, 0.759, 8, 287.2),
        fp_row(4, 0.5, 0.750, 8, 251.0),
        fp_row(8, 0.55, 0.748, 7, 190.0),
    ];
    assert_eq!(choose(&rows, &current), Some(set(8, 0.5)));
    // A bound given explicitly lets the larger volume in.
    let lax = NegativeCost {
        bad: 8,
        mean_fp_mm3: 300.0,
    };
    assert_eq!(choose_within(&rows, &current, lax), Some(set(4, 0.35)));
    // Equal volume is allowed: the current row always satisfies its own bound.
    assert!(current.negative_cost().within(&current.negative_cost()));
}

/// Dice of `mean >= t` against `gt` (1 when both are empty) and the predicted voxels.
fn direct(gt: &[u8], mean: &[f32], t: f32) -> (f64, u64, u64) {
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    for (&g, &p) in gt.iter().zip(mean) {
        match (g != 0, p >= t) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            _ => {}
        }
    }
    let denom = 2 * tp + fp + fneg;
    let dice = if denom == 0 {
        1.0
    } else {
        2.0 * tp as f64 / denom as f64
    };
    (dice, fp, tp + fneg)
}

#[test]
fn the_table_is_the_overlap_of_the_engines_mean_at_each_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture_model(dir.path());
    let ds_path = dataset_with(dir.path(), true);
    let opts = MaskThresholdOptions {
        samples: 4,
        seed: 9,
        candidates: vec![0.2, 0.45, 0.7],
        ..Default::default()
    };
    let mut seen = 0;
    let c = choose_mask_threshold(&model_path, &ds_path, &opts, || seen += 1).unwrap();
    let model = Model::open(&model_path).unwrap();
    let current = model.config().mask_threshold;
    assert_eq!(c.previous, current);
    let thresholds: Vec<f32> = c.rows.iter().map(|r| r.threshold).collect();
    assert_eq!(
        thresholds,
        vec![0.2, 0.45, current, 0.7],
        "the current cut is judged too"
    );

    let ds = PatchDataset::open(&ds_path).unwrap();
    let idx = ds.split("val");
    assert_eq!(seen, idx.len());
    // The partial patch is in neither count.
    assert_eq!(c.nodule_patches + c.negative_patches, idx.len() - 1);
    let voxel_mm3: f64 = model.config().spacing_mm.iter().product();
    for r in &c.rows {
        let (mut dice, mut fp, mut bad, mut nodules, mut negatives) = (0.0, 0.0, 0, 0, 0);
        for &i in &idx {
            let p = ds.load(i).unwrap();
            let (mean, _) = mc_mean(&model, &p.hu, 4, patch_seed(9, &ds.records[i].id));
            let (d, f, gt_voxels) = direct(&p.mask, &mean, r.threshold);
            let class = PatchClass::of(ds.records[i].label == 1, gt_voxels);
            if class == PatchClass::Partial {
                continue;
            }
            if class == PatchClass::Nodule {
                nodules += 1;
                dice += d;
            } else {
                negatives += 1;
                fp += f as f64 * voxel_mm3;
                bad += usize::from(f as f64 * voxel_mm3 > opts.eval.bad_fp_mm3);
            }
        }
        assert_eq!((c.nodule_patches, c.negative_patches), (nodules, negatives));
        assert!((r.mean_dice - dice / nodules as f64).abs() < 1e-12, "{r:?}");
        assert!(
            (r.mean_fp_mm3 - fp / negatives as f64).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(r.bad_negatives, bad, "{r:?}");
    }
    let current_row = c.rows.iter().find(|r| r.threshold == current).unwrap();
    assert_eq!(Some(c.chosen_setting()), choose(&c.rows, current_row));
}

#[test]
fn writing_changes_the_threshold_and_keeps_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture_model(dir.path());
    let ds_path = dataset(dir.path());
    let before = ModelFile::read(&model_path).unwrap();
    let opts = MaskThresholdOptions {
        samples: 2,
        candidates: vec![0.3],
        ..Default::default()
    };
    let mut c = choose_mask_threshold(&model_path, &ds_path, &opts, || {}).unwrap();
    c.chosen = 0.3;
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().mask_threshold, 0.3);
    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(after.metadata["format_version"], "3");
    let provenance = after.json_object("provenance").unwrap();
    assert_eq!(
        provenance[PROVENANCE_KEY]["chosen"],
        serde_json::json!(0.3f32)
    );
    assert_eq!(before.tensors.len(), after.tensors.len());
    for (name, t) in &before.tensors {
        assert_eq!(Some(t), after.tensor(name), "{name}");
    }
    // The engine masks at the written threshold.
    let ds = PatchDataset::open(&ds_path).unwrap();
    let p = ds.load(ds.split("val")[0]).unwrap();
    let (mean, s) = mc_mean(&model, &p.hu, 2, 1);
    let above = mean.iter().filter(|&&v| v >= 0.3).count() as u64;
    assert_eq!(s.foreground_voxels, above);
    // A threshold outside (0, 1) is refused before anything is written.
    c.chosen = 1.0;
    assert!(write_mask_threshold(&model_path, &c).is_err());
    assert_eq!(
        Model::open(&model_path).unwrap().config().mask_threshold,
        0.3
    );
}

/// Flips candidates: each is judged on the MC mean of the model with those flips (checked
/// against a model whose config was edited by hand), and writing stores them (version 4).
#[test]
fn flips_candidates_are_judged_on_their_own_samples_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture_model(dir.path());
    let ds_path = dataset(dir.path());
    let opts = MaskThresholdOptions {
        samples: 4,
        seed: 9,
        candidates: vec![0.45],
        flips: vec![8],
        ..Default::default()
    };
    let mut c = choose_mask_threshold(&model_path, &ds_path, &opts, || {}).unwrap();
    assert_eq!(c.previous_flips, 1);
    let keys: Vec<(u32, f32)> = c
        .rows
        .iter()
        .map(|r| (r.test_time_flips, r.threshold))
        .collect();
    assert_eq!(keys, vec![(1, 0.45), (1, 0.5), (8, 0.45), (8, 0.5)]);

    let mut file = ModelFile::read(&model_path).unwrap();
    let mut cfg = file.json_object("config").unwrap();
    cfg.insert("test_time_flips".into(), serde_json::json!(8));
    file.set_json_object("config", cfg);
    file.metadata.insert("format_version".into(), "4".into());
    let (_, flipping) = file.to_bytes().unwrap();
    let ds = PatchDataset::open(&ds_path).unwrap();
    let (mut dice, mut nodules) = (0.0, 0);
    for &i in &ds.split("val") {
        let p = ds.load(i).unwrap();
        let (mean, _) = mc_mean(&flipping, &p.hu, 4, patch_seed(9, &ds.records[i].id));
        let (d, _, gt_voxels) = direct(&p.mask, &mean, 0.45);
        if gt_voxels > 0 {
            nodules += 1;
            dice += d;
        }
    }
    assert!((c.rows[2].mean_dice - dice / nodules as f64).abs() < 1e-12);
    assert_ne!(
        c.rows[2].mean_dice, c.rows[0].mean_dice,
        "the flips changed nothing: the check proves little"
    );

    c.chosen_flips = 8;
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().test_time_flips, 8);
    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(after.metadata["format_version"], "4");
    c.chosen_flips = 3;
    assert!(write_mask_threshold(&model_path, &c).is_err());
    assert_eq!(
        Model::open(&model_path).unwrap().config().test_time_flips,
        8
    );
}

/// Minimum-component and spare-radius candidates: each row is the overlap of the engine's mean
/// at the threshold with the components its rule drops removed (checked against
/// `lungseg::mask` on the drawn mask), and writing stores the rule (version 5 for a minimum,
/// 6 with a radius) so that the engine's summary counts the filtered mask.
#[test]
fn minimum_components_are_judged_on_the_filtered_masks_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture_model(dir.path());
    let ds_path = dataset_with(dir.path(), true);
    let opts = MaskThresholdOptions {
        samples: 4,
        seed: 9,
        candidates: vec![0.3],
        min_components_mm3: vec![3.0, 40.0],
        spare_radii_mm: vec![3.0, 9.0],
        ..Default::default()
    };
    let mut c = choose_mask_threshold(&model_path, &ds_path, &opts, || {}).unwrap();
    assert_eq!(c.previous_min_component_mm3, 0.0);
    let model = Model::open(&model_path).unwrap();
    let ds = PatchDataset::open(&ds_path).unwrap();
    // At the candidate threshold and the model's own (0.5): every minimum with every radius
    // (the model's own, 0, among them), and no minimum only without one.
    assert_eq!(c.rows.len(), 2 * (1 + 2 * 3));
    let (mut moved, mut spared) = (false, false);
    for r in &c.rows {
        let (dice, fp) = direct_row(&model, &ds, r, |mean, _| {
            mean.iter().map(|&v| u8::from(v >= r.threshold)).collect()
        });
        assert!((r.mean_dice - dice).abs() < 1e-12, "{r:?}");
        assert!((r.mean_fp_mm3 - fp).abs() < 1e-9, "{r:?}");
        let unfiltered = c
            .rows
            .iter()
            .find(|u| u.threshold == r.threshold && u.min_component_mm3 == 0.0)
            .unwrap();
        moved |= r.mean_fp_mm3 != unfiltered.mean_fp_mm3;
        let unspared = c
            .rows
            .iter()
            .find(|u| {
                u.threshold == r.threshold
                    && u.min_component_mm3 == r.min_component_mm3
                    && u.min_component_spare_radius_mm == 0.0
            })
            .unwrap();
        spared |= (r.mean_fp_mm3, r.mean_dice) != (unspared.mean_fp_mm3, unspared.mean_dice);
    }
    assert!(moved, "no minimum changed a row: the check proves little");
    assert!(spared, "no radius changed a row: the check proves little");

    c.chosen_min_component_mm3 = 3.0;
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().min_component_mm3, 3.0);
    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(after.metadata["format_version"], "5");
    c.chosen_min_component_spare_radius_mm = 9.0;
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().min_component_spare_radius_mm, 9.0);
    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(after.metadata["format_version"], "6");
    let p = ds.load(ds.split("val")[0]).unwrap();
    let (mean, s) = mc_mean(&model, &p.hu, 2, 1);
    let mut pred = vec![0u8; mean.len()];
    let n = lungseg::mask::final_mask(model.config(), &mean, &mut pred).unwrap();
    assert_eq!(s.foreground_voxels, n);
    c.chosen_min_component_mm3 = -1.0;
    assert!(write_mask_threshold(&model_path, &c).is_err());
}

/// A row's mean Dice over the nodule patches and mean false-positive volume over the negative
/// ones of the validation split, computed directly: `cut` draws the mask before the row's
/// small-component rule (applied here by `lungseg::mask`), from the MC mean of 4 samples, seed 9.
fn direct_row(
    model: &Model,
    ds: &PatchDataset,
    r: &ThresholdRow,
    cut: impl Fn(&[f32], lungseg::mask::PatchGrid) -> Vec<u8>,
) -> (f64, f64) {
    let spacing = model.config().spacing_mm;
    let voxel_mm3: f64 = spacing.iter().product();
    let (mut dice, mut fp, mut nodules, mut negatives) = (0.0, 0.0, 0, 0);
    for &i in &ds.split("val") {
        let rec = &ds.records[i];
        let p = ds.load(i).unwrap();
        let (mean, _) = mc_mean(model, &p.hu, 4, patch_seed(9, &rec.id));
        let grid = rec.grid(spacing);
        let mut pred = cut(&mean, grid);
        let rule = lungseg::mask::SmallComponents {
            min_mm3: r.min_component_mm3,
            spare_radius_mm: r.min_component_spare_radius_mm,
        };
        lungseg::mask::drop_small_components(&mut pred, grid, rule).unwrap();
        let pred_f: Vec<f32> = pred.iter().map(|&b| f32::from(b)).collect();
        let (d, f, gt_voxels) = direct(&p.mask, &pred_f, 0.5);
        match PatchClass::of(rec.label == 1, gt_voxels) {
            PatchClass::Nodule => {
                nodules += 1;
                dice += d;
            }
            PatchClass::Negative => {
                negatives += 1;
                fp += f as f64 * voxel_mm3;
            }
            PatchClass::Partial => {}
        }
    }
    (dice / nodules as f64, fp / negatives as f64)
}

/// The point rule's mask by a direct computation: from the voxels of `mean >= tp` closer than
/// `radius` mm to the patch centre, grown through 26-neighbours of `mean >= tp` until nothing
/// changes, joined to `mean >= t`.
fn point_mask_directly(
    mean: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
    t: f32,
    tp: f32,
    radius: f64,
) -> Vec<u8> {
    let [nz, ny, nx] = dims;
    let idx = |z: usize, y: usize, x: usize| (z * ny + y) * nx + x;
    let mut grown = vec![false; mean.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d2 = ((z as f64 - (nz / 2) as f64) * spacing[2]).powi(2)
                    + ((y as f64 - (ny / 2) as f64) * spacing[1]).powi(2)
                    + ((x as f64 - (nx / 2) as f64) * spacing[0]).powi(2);
                let i = idx(z, y, x);
                grown[i] = mean[i] >= tp && d2 < radius * radius;
            }
        }
    }
    loop {
        let mut changed = false;
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let i = idx(z, y, x);
                    if grown[i] || mean[i] < tp {
                        continue;
                    }
                    let near = |c: usize, n: usize| c.saturating_sub(1)..=(c + 1).min(n - 1);
                    let touches = near(z, nz).any(|zz| {
                        near(y, ny).any(|yy| near(x, nx).any(|xx| grown[idx(zz, yy, xx)]))
                    });
                    if touches {
                        grown[i] = true;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    mean.iter()
        .zip(&grown)
        .map(|(&p, &g)| u8::from(p >= t || g))
        .collect()
}

/// Point-rule candidates: each row is the overlap of the mask with the point's components of
/// the lower threshold added (checked against a direct region growing), judged with the small
/// rules; a point threshold at or above a mask threshold is not a candidate there; writing
/// stores the rule (version 7) so that the engine's summary counts that mask, and writing no
/// rule removes the keys again.
#[test]
fn point_rules_are_judged_on_the_grown_masks_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = fixture_model(dir.path());
    let ds_path = dataset_with(dir.path(), true);
    let opts = MaskThresholdOptions {
        samples: 4,
        seed: 9,
        candidates: vec![0.3],
        min_components_mm3: vec![3.0],
        spare_radii_mm: vec![2.0],
        point_thresholds: vec![0.1, 0.4],
        point_radii_mm: vec![2.0, 6.0],
        ..Default::default()
    };
    let mut c = choose_mask_threshold(&model_path, &ds_path, &opts, || {}).unwrap();
    let model = Model::open(&model_path).unwrap();
    let ds = PatchDataset::open(&ds_path).unwrap();
    let spacing = model.config().spacing_mm;
    // Small rules: none, and 3 mm³ with radius 0 (the model's) and 2 mm. Point rules: none,
    // and at 0.3 the two radii of 0.1; at 0.5 both thresholds with both radii.
    assert_eq!(c.rows.len(), 3 * (1 + 2) + 3 * (1 + 4));
    assert!(!c
        .rows
        .iter()
        .any(|r| r.point_radius_mm > 0.0 && r.point_mask_threshold >= r.threshold));
    let mut moved = false;
    for r in &c.rows {
        let (dice, fp) = direct_row(&model, &ds, r, |mean, grid| {
            if r.point_radius_mm > 0.0 {
                let (t, tp, radius) = (r.threshold, r.point_mask_threshold, r.point_radius_mm);
                point_mask_directly(mean, grid.dims_zyx, spacing, t, tp, radius)
            } else {
                mean.iter().map(|&v| u8::from(v >= r.threshold)).collect()
            }
        });
        assert!((r.mean_dice - dice).abs() < 1e-12, "{r:?}");
        assert!((r.mean_fp_mm3 - fp).abs() < 1e-9, "{r:?}");
        let plain = c
            .rows
            .iter()
            .find(|u| {
                u.threshold == r.threshold
                    && u.point_radius_mm == 0.0
                    && u.min_component_mm3 == r.min_component_mm3
                    && u.min_component_spare_radius_mm == r.min_component_spare_radius_mm
            })
            .unwrap();
        moved |= (r.mean_fp_mm3, r.mean_dice) != (plain.mean_fp_mm3, plain.mean_dice);
    }
    assert!(
        moved,
        "no point rule changed a row: the check proves little"
    );

    (c.chosen_point_mask_threshold, c.chosen_point_radius_mm) = (0.1, 6.0);
    (
        c.chosen_min_component_mm3,
        c.chosen_min_component_spare_radius_mm,
    ) = (0.0, 0.0);
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().point_mask_threshold, 0.1);
    assert_eq!(model.config().point_radius_mm, 6.0);
    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(after.metadata["format_version"], "7");
    let first = ds.split("val")[0];
    let p = ds.load(first).unwrap();
    let (mean, s) = mc_mean(&model, &p.hu, 2, 1);
    let mut pred = vec![0u8; mean.len()];
    let n = lungseg::mask::final_mask(model.config(), &mean, &mut pred).unwrap();
    assert_eq!(s.foreground_voxels, n);
    let dims = ds.records[first].grid(spacing).dims_zyx;
    let direct_mask = point_mask_directly(&mean, dims, spacing, c.chosen, 0.1, 6.0);
    assert_eq!(n, direct_mask.iter().map(|&v| u64::from(v)).sum::<u64>());

    (c.chosen_point_mask_threshold, c.chosen_point_radius_mm) = (0.0, 0.0);
    let model = write_mask_threshold(&model_path, &c).unwrap();
    assert_eq!(model.config().point_radius_mm, 0.0);
    let after = ModelFile::read(&model_path).unwrap();
    assert!(!after
        .json_object("config")
        .unwrap()
        .contains_key("point_radius_mm"));
    assert_ne!(after.metadata["format_version"], "7");
    c.chosen_point_radius_mm = -1.0;
    c.chosen_point_mask_threshold = 0.1;
    assert!(write_mask_threshold(&model_path, &c).is_err());
}

/// A point rule the model does not have must gain more than a tie: within `DICE_TIE` the
/// current rule stays, beyond it the point rule is chosen; among tied point rules the higher
/// threshold and then the smaller radius win.
#[test]
fn a_new_point_rule_must_gain_more_than_a_tie() {
    let point_row = |t: f32, pt: f32, r: f64, dice: f64| ThresholdRow {
        point_mask_threshold: pt,
        point_radius_mm: r,
        ..flips_row(8, t, dice, 1)
    };
    let with_point = |t: f32, pt: f32, r: f64| Setting {
        point: PointRule {
            threshold: pt,
            radius_mm: r,
        },
        ..set(8, t)
    };
    let current = point_row(0.6, 0.0, 0.0, 0.750);
    let tied = [current.clone(), point_row(0.6, 0.3, 8.0, 0.7515)];
    assert_eq!(choose(&tied, &current), Some(set(8, 0.6)));
    let rows = [
        current.clone(),
        point_row(0.6, 0.3, 8.0, 0.760),
        point_row(0.6, 0.4, 8.0, 0.7595),
        point_row(0.6, 0.4, 4.0, 0.7590),
        point_row(0.6, 0.2, 4.0, 0.7500),
    ];
    assert_eq!(choose(&rows, &current), Some(with_point(0.6, 0.4, 4.0)));
}
