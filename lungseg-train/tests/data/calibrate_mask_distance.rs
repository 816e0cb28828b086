//! `calibrate-probability --map mask-distance`: the isotonic fit, a map recovered from labels
//! drawn from it, and a fitted map that the engine applies band for band as it was fitted.

use lungseg::model::Model;
use lungseg_train::calibrate::mask_distance::{
    fit_mask_distance, isotonic, write_mask_distance, BandHistogram, MaskDistanceOptions,
};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{score_patches, split_for_model, ScoreRun};
use lungseg_train::metrics::EvalConfig;
use lungseg_train::model_file::ModelFile;

use super::evaluate_calibrate::{dataset, fixture_model};

#[test]
fn isotonic_pools_adjacent_violators_by_weight() {
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
    let got = isotonic(&[1.0, 3.0, 2.0, 4.0], &[1.0; 4]);
    assert!(close(&got, &[1.0, 2.5, 2.5, 4.0]), "{got:?}");
    let got = isotonic(&[3.0, 1.0], &[1.0, 3.0]);
    assert!(close(&got, &[1.5, 1.5]), "{got:?}");
    // A violation that reaches back over an earlier pool.
    let got = isotonic(&[0.0, 2.0, 2.0, 0.5], &[1.0, 1.0, 1.0, 3.0]);
    assert!(close(&got, &[0.0, 1.1, 1.1, 1.1]), "{got:?}");
    let sorted = [0.1, 0.2, 0.2, 0.9];
    assert!(close(&isotonic(&sorted, &[2.0; 4]), &sorted));
}

/// splitmix64 in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn band_fit_recovers_the_frequencies_the_labels_were_drawn_from() {
    let truth = [|p: f64| 0.2 + 0.6 * p, |p: f64| p * p, |p: f64| 0.5 * p];
    let mut h = BandHistogram::new(&[0, 2]);
    let mut s = 7u64;
    for (band, f) in truth.iter().enumerate() {
        for _ in 0..400_000 {
            let p = uniform(&mut s);
            let y = uniform(&mut s) < f(p);
            h.add(band, p as f32, y);
        }
    }
    let map = h.fit().unwrap();
    assert_eq!(map.bands(), 3);
    for (band, f) in truth.iter().enumerate() {
        for p in [0.05, 0.2, 0.4, 0.6, 0.8, 0.95] {
            let got = f64::from(map.map(band, p as f32));
            assert!(
                (got - f(p)).abs() < 0.03,
                "band {band} at {p}: {got} vs {}",
                f(p)
            );
        }
    }
    // In-sample, the map's ECE is far below the identity's.
    let before = h.ece(None, 15).unwrap().unwrap();
    let after = h.ece(Some(&map), 15).unwrap().unwrap();
    assert!(before > 0.1 && after < 0.01, "{before} -> {after}");
}

#[test]
fn a_fitted_map_is_written_and_applied_by_the_engine_band_for_band() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let opts = MaskDistanceOptions {
        split: "val".into(),
        samples: 4,
        seed: 1,
        eval: EvalConfig::default(),
        replace: false,
    };
    let mut seen = 0;
    let fit = fit_mask_distance(&model_path, &data, &opts, || seen += 1).unwrap();
    assert_eq!((fit.patches, seen), (10, 10));
    let model = write_mask_distance(&model_path, &fit).unwrap();
    assert_eq!(model.config().probability_map.as_ref(), Some(&fit.map));
    let reread = Model::open(&model_path).unwrap();
    assert_eq!(reread.config().probability_map.as_ref(), Some(&fit.map));
    let again = fit_mask_distance(&model_path, &data, &opts, || {}).unwrap_err();
    assert!(
        again.to_string().contains("probability map already"),
        "{again}"
    );

    // The evaluation of the written model on the same split: the mean's calibration is the
    // fit's "before" exactly (same samples, seeds and ROI), and the engine's calibrated
    // probabilities score what the fit measured per fine bin.
    let ds = PatchDataset::open(&data).unwrap();
    let idx = split_for_model(&reread, &ds, "val").unwrap();
    let eval = EvalConfig::default().for_model(&reread);
    let run = ScoreRun {
        samples: 4,
        seed: 1,
        eval: &eval,
        second_look: None,
    };
    let m = score_patches(&reread, &ds, &idx, run, |_, _| {})
        .unwrap()
        .metrics;
    let mean_roi = m.calibration_roi_mean.as_ref().unwrap().ece;
    let mean_all = m.calibration_all_mean.as_ref().unwrap().ece;
    assert_eq!(
        (mean_roi, mean_all),
        (fit.ece_roi_before, fit.ece_patch_before)
    );
    let (all, roi) = (
        m.calibration_all.ece.unwrap(),
        m.calibration_roi.ece.unwrap(),
    );
    assert!(
        (all - fit.ece_patch_after.unwrap()).abs() < 0.01,
        "{all} vs {fit:?}"
    );
    assert!(
        (roi - fit.ece_roi_after.unwrap()).abs() < 0.02,
        "{roi} vs {fit:?}"
    );
    assert!(
        all < mean_all.unwrap(),
        "in-sample the map calibrates: {all} vs {mean_all:?}"
    );
}

#[test]
fn a_map_is_replaced_only_when_asked_and_the_replaced_fit_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let opts = |seed, replace| MaskDistanceOptions {
        split: "val".into(),
        samples: 4,
        seed,
        eval: EvalConfig::default(),
        replace,
    };
    let first = fit_mask_distance(&model_path, &data, &opts(1, false), || {}).unwrap();
    write_mask_distance(&model_path, &first).unwrap();
    let before = ModelFile::read(&model_path).unwrap();

    // The fit reads the MC mean, which the map leaves alone: the same seed refits the same map.
    let same = fit_mask_distance(&model_path, &data, &opts(1, true), || {}).unwrap();
    assert_eq!(same.map, first.map);
    assert_eq!(same.ece_roi_before, first.ece_roi_before);

    let second = fit_mask_distance(&model_path, &data, &opts(2, true), || {}).unwrap();
    assert_ne!(second.map, first.map, "other MC samples fit another map");
    let model = write_mask_distance(&model_path, &second).unwrap();
    assert_eq!(model.config().probability_map.as_ref(), Some(&second.map));

    let after = ModelFile::read(&model_path).unwrap();
    assert_eq!(
        after.scoring_fingerprint().unwrap(),
        before.scoring_fingerprint().unwrap(),
        "masks and scores are those of the same model"
    );
    let prov = after.json_object("provenance").unwrap();
    assert_eq!(prov["probability_map"]["seed"], 2);
    let replaced = prov["probability_map_replaced"].as_array().unwrap();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0]["seed"], 1);
    assert_eq!(
        replaced[0]["map"],
        before.json_object("config").unwrap()["probability_map"]
    );
}
