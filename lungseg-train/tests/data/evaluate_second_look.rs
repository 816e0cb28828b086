//! `evaluate --second-look-patches`: the masks scored for a model with a second look are the
//! joined masks of the patch's MC mean and an independent MC mean of its half-spacing twin
//! (same seed), on thin scans only; twins that are not the same point at half the spacing are
//! refused.

use std::path::{Path, PathBuf};

use lungseg::mask::{MaskRule, PatchGrid};
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::second_look::{joined_mask, onto_first_grid, SecondLook};
use lungseg_train::dataset::{DatasetWriter, PatchDataset, PatchRecord};
use lungseg_train::evaluate::score::patch_seed;
use lungseg_train::evaluate::{evaluate, EvaluateOptions};
use lungseg_train::metrics::Confusion;
use lungseg_train::second_look::SetSecondLookArgs;

use super::evaluate_calibrate::{fixture_model, noise};

const SHAPE: [usize; 3] = [8, 12, 16]; // z, y, x
const THIN: [f64; 3] = [0.7, 0.7, 1.25];
const THICK: [f64; 3] = [0.7, 0.7, 5.0];
const SAMPLES: u32 = 4;
const SEED: u64 = 3;

/// How the twin of patch `i` is made.
#[derive(Clone, Copy, PartialEq)]
enum Twin {
    Right,
    Elsewhere,
    WrongSpacing,
}

/// Six test patches (a ball of varying size, every other patch from a thick scan) at
/// `spacing`; a ball twice as large in the twins (`spacing` half the model's).
fn write(dir: &Path, name: &str, spacing: f64, twin: Twin) -> PathBuf {
    let root = dir.join(name);
    let mut w = DatasetWriter::create(&root).unwrap();
    let [d, h, wd] = SHAPE;
    let scale = 1.0 / spacing;
    let mut k = 7u64;
    for i in 0..6usize {
        let r = (2.0 + i as f64 * 0.5) * scale;
        let c = [wd as f64 / 2.0, h as f64 / 2.0, d as f64 / 2.0];
        let (mut hu, mut mask) = (Vec::new(), Vec::new());
        for z in 0..d {
            for y in 0..h {
                for x in 0..wd {
                    let r2 = (x as f64 - c[0]).powi(2)
                        + (y as f64 - c[1]).powi(2)
                        + (z as f64 - c[2]).powi(2);
                    let inside = r2 <= r * r;
                    hu.push(if inside { 30.0 } else { -850.0 } + noise(&mut k));
                    mask.push(u8::from(inside));
                }
            }
        }
        let shift = if twin == Twin::Elsewhere && i == 2 {
            1.0
        } else {
            0.0
        };
        let recorded = if twin == Twin::WrongSpacing {
            1.0
        } else {
            spacing
        };
        let rec = PatchRecord {
            id: format!("test{i:02}"),
            hu: String::new(),
            mask: String::new(),
            seriesuid: format!("1.2.{i}"),
            split: "test".into(),
            label: 1,
            shape: SHAPE,
            diameter_mm: Some(2.0 * r * spacing),
            spacing_mm: Some([recorded; 3]),
            center_world: Some([10.0 * i as f64 + shift, -20.0, -100.5]),
            scan_spacing_mm: Some(if i % 2 == 0 { THIN } else { THICK }),
        };
        w.add(rec, &hu, &mask).unwrap();
    }
    w.finish().unwrap();
    root
}

fn look() -> SecondLook {
    SecondLook {
        first_threshold: 0.5,
        threshold: 0.45,
        support: 0.0,
        max_scan_spacing_mm: 2.5,
    }
}

fn model_with_second_look(dir: &Path) -> PathBuf {
    let path = fixture_model(dir);
    let l = look();
    SetSecondLookArgs {
        model: path.clone(),
        first_threshold: f64::from(l.first_threshold),
        threshold: f64::from(l.threshold),
        support: f64::from(l.support),
        max_scan_spacing_mm: l.max_scan_spacing_mm,
        basis: "test".into(),
        remove: false,
    }
    .run()
    .unwrap();
    path
}

fn options(out: PathBuf, twins: Option<PathBuf>) -> EvaluateOptions {
    EvaluateOptions {
        split: "test".into(),
        samples: SAMPLES,
        seed: SEED,
        out,
        // One shown patch each way: the panels re-run the points with the twins.
        samples_shown: 1,
        second_look_patches: twins,
        ..EvaluateOptions::default()
    }
}

/// The MC mean of `hu` with evaluate's seed for patch `id`.
fn mean(model: &Model, hu: &[f32], id: &str) -> Vec<f32> {
    let mut m = vec![0.0; hu.len()];
    let opts = McOptions {
        n_samples: SAMPLES,
        seed: patch_seed(SEED, id),
        ..McOptions::default()
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut m),
        ..UncertaintyMaps::default()
    };
    mc::predict_uncertainty(model, hu, &opts, maps).unwrap();
    m
}

#[test]
fn thin_scans_are_scored_on_the_joined_mask_and_thick_ones_on_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = model_with_second_look(dir.path());
    let model = Model::open(&model_path).unwrap();
    let data = write(dir.path(), "coarse", 1.0, Twin::Right);
    let twins = write(dir.path(), "fine", 0.5, Twin::Right);
    let out = evaluate(
        &model_path,
        &data,
        &options(dir.path().join("report"), Some(twins.clone())),
        |_, _| {},
    )
    .unwrap();
    let notes = out.report.notes.join("\n");
    assert!(
        notes.contains("final masks: 3 scan too coarse, 3 joined"),
        "{notes}"
    );
    let (ds, fine) = (
        PatchDataset::open(&data).unwrap(),
        PatchDataset::open(&twins).unwrap(),
    );
    let grid = PatchGrid::of(model.config());
    let mut joined_differs = false;
    for (i, rec) in out.report.metrics.patches.iter().enumerate() {
        let patch = ds.load(i).unwrap();
        let first = mean(&model, &patch.hu, &rec.id);
        let mut want = vec![0u8; first.len()];
        if i % 2 == 0 {
            let second = mean(&model, &fine.load(i).unwrap().hu, &rec.id);
            let on_first = onto_first_grid(&second, grid.dims_zyx).unwrap();
            let rule = MaskRule::of(model.config());
            joined_mask(&first, &on_first, grid, rule, look(), &mut want).unwrap();
            let mut plain = vec![0u8; first.len()];
            lungseg::mask::final_mask(model.config(), &first, &mut plain).unwrap();
            joined_differs |= plain != want;
        } else {
            lungseg::mask::final_mask(model.config(), &first, &mut want).unwrap();
        }
        let direct = Confusion::from_masks(&patch.mask, &want).unwrap();
        assert_eq!(rec.confusion, direct, "patch {}", rec.id);
    }
    assert!(
        joined_differs,
        "the second look changes some mask, or the test shows nothing"
    );

    // Without the twins the same model is scored on its own masks, and the report says why.
    let plain = evaluate(
        &model_path,
        &data,
        &options(dir.path().join("plain"), None),
        |_, _| {},
    )
    .unwrap();
    let notes = plain.report.notes.join("\n");
    assert!(notes.contains("final masks: 6 no scan"), "{notes}");
    let cut: Vec<_> = plain
        .report
        .metrics
        .patches
        .iter()
        .map(|r| r.confusion)
        .collect();
    for (i, c) in cut.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        assert_eq!(
            *c, out.report.metrics.patches[i].confusion,
            "thick patch {i}"
        );
    }
}

#[test]
fn twins_that_are_not_the_same_point_at_half_the_spacing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = model_with_second_look(dir.path());
    let data = write(dir.path(), "coarse", 1.0, Twin::Right);
    for (twin, needle) in [
        (Twin::Elsewhere, "centred elsewhere"),
        (Twin::WrongSpacing, "spacing"),
    ] {
        let twins = write(dir.path(), "fine", 0.5, twin);
        let e = evaluate(
            &model_path,
            &data,
            &options(dir.path().join("report"), Some(twins)),
            |_, _| {},
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{e:#}");
        std::fs::remove_dir_all(dir.path().join("fine")).unwrap();
    }
}
