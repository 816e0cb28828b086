//! `calibrate` and `evaluate` with the engine's small fixture model on a tiny hand-made
//! dataset: the threshold refers the requested fraction, the metadata rewrite round-trips,
//! and evaluation writes every report file with sane values.

use crate::common;

use std::path::{Path, PathBuf};

use lungseg::model::Model;
use lungseg_train::calibrate::{self, calibrate_review_threshold, set_review_threshold};
use lungseg_train::dataset::{DatasetWriter, PatchDataset, PatchRecord};
use lungseg_train::evaluate::{self, EvaluateOptions};
use lungseg_train::metrics::PatchClass;
use safetensors::SafeTensors;

/// The engine's small F16 model: patch 16×12×8 (x, y, z), element dropout.
pub(crate) fn fixture_model(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/small_f16_element.safetensors");
    let dst = dir.join("model.safetensors");
    std::fs::copy(src, &dst).unwrap();
    dst
}

const SHAPE: [usize; 3] = [8, 12, 16]; // z, y, x

/// The next value of a 64-bit LCG in `k`, as ±30 HU of noise: reproducible patches without
/// an RNG crate.
pub(crate) fn noise(k: &mut u64) -> f32 {
    *k = k
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*k >> 40) as f32 / 16_777_216.0 - 0.5) * 60.0
}

/// Lung-like background with a soft-tissue ball (positives) of varying size and position.
pub(crate) fn dataset(dir: &Path) -> PathBuf {
    dataset_with(dir, false)
}

/// [`dataset`]; with `partial`, the validation negative `val01` holds a nodule in its ground
/// truth although it was not cut around one (a [`PatchClass::Partial`] patch).
pub(crate) fn dataset_with(dir: &Path, partial: bool) -> PathBuf {
    let root = dir.join("ds");
    let mut w = DatasetWriter::create(&root).unwrap();
    let [d, h, wd] = SHAPE;
    let mut k = 0u64;
    for (split, n) in [("val", 10), ("test", 6)] {
        for i in 0..n {
            let label = u8::from(i % 2 == 0);
            let diameter = 3.0 + i as f64;
            let c = [8.0 + (i % 3) as f64, 6.0, 4.0];
            let mut hu = Vec::with_capacity(d * h * wd);
            let mut mask = Vec::with_capacity(d * h * wd);
            for z in 0..d {
                for y in 0..h {
                    for x in 0..wd {
                        let noise = noise(&mut k);
                        let r2 = (x as f64 - c[0]).powi(2)
                            + (y as f64 - c[1]).powi(2)
                            + (z as f64 - c[2]).powi(2);
                        let clipped = partial && split == "val" && i == 1;
                        let inside = (label == 1 || clipped) && r2 <= (diameter / 2.0).powi(2);
                        hu.push(if inside { 40.0 } else { -850.0 } + noise);
                        mask.push(u8::from(inside));
                    }
                }
            }
            let rec = PatchRecord {
                id: format!("{split}{i:02}"),
                hu: String::new(),
                mask: String::new(),
                seriesuid: format!("1.2.{split}.{}", i / 2),
                split: split.into(),
                label,
                shape: SHAPE,
                diameter_mm: (label == 1).then_some(diameter),
                spacing_mm: Some([1.0; 3]),
                center_world: Some([10.0 * i as f64, -20.0, -100.5]),
                scan_spacing_mm: None,
            };
            w.add(rec, &hu, &mask).unwrap();
        }
    }
    w.finish().unwrap();
    root
}

#[test]
fn threshold_refers_the_requested_fraction() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let model = Model::open(&model_path).unwrap();
    let ds = PatchDataset::open(&data).unwrap();
    let mut scores = calibrate::score_split(&model, &ds, "val", 4, 1, || {}).unwrap();
    assert_eq!(scores.len(), 10);
    scores.sort_by(|a, b| b.total_cmp(a));
    for fraction in [0.0, 0.2, 0.5, 1.0] {
        let t = calibrate_review_threshold(&model_path, &data, "val", fraction, 4, 1).unwrap();
        let referred = scores.iter().filter(|&&s| s > t).count();
        let k = (fraction * 10.0).round() as usize;
        // The documented rule: the top k lie strictly above the threshold, except that a tie
        // straddling the cut stays below together, so exactly the scores above s_(k+1) are
        // referred (all of them for k = n).
        let expected = if k == scores.len() {
            k
        } else {
            scores.iter().filter(|&&s| s > scores[k]).count()
        };
        assert_eq!(
            referred, expected,
            "fraction {fraction}, threshold {t}, scores {scores:?}"
        );
        assert!(referred <= k);
    }
    // The fixture must exercise the untied case, or the rule above is never checked at k.
    assert!(
        [2, 5].iter().any(|&k| scores[k - 1] != scores[k]),
        "every cut is tied: {scores:?}"
    );
    let e = calibrate_review_threshold(&model_path, &data, "train", 0.1, 4, 1).unwrap_err();
    assert!(
        format!("{e:#}").contains("split 'train' has no patches"),
        "{e:#}"
    );
}

/// Review-score choice on the fixture's validation patches: 4 samples, seed 2, 30 % referred.
fn choosing_options() -> calibrate::CalibrateOptions {
    calibrate::CalibrateOptions {
        refer_fraction: 0.3,
        samples: 4,
        seed: 2,
        choose_score: true,
        ..Default::default()
    }
}

#[test]
fn calibration_chooses_the_score_on_validation_patches() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let opts = choosing_options();
    let c = calibrate::calibrate(&model_path, &data, &opts, || {}).unwrap();
    let names: Vec<&str> = c.candidates.iter().map(|e| e.name.as_str()).collect();
    for k in lungseg::model::ReviewScore::ALL {
        assert!(names.contains(&k.name()), "{names:?} lacks {}", k.name());
    }
    assert!(names.contains(&"det_mean_entropy"));
    // The choice is the engine score with the highest catch rate (then AUROC), never a baseline.
    let key = |e: &lungseg_train::metrics::ScoreEvaluation| {
        (
            e.catch_rate.map_or(-1.0, |c| c.estimate),
            e.auroc.unwrap_or(-1.0),
        )
    };
    let chosen = c.candidates.iter().find(|e| e.name == c.score).unwrap();
    for e in c.candidates.iter().filter(|e| !e.name.starts_with("det_")) {
        assert!(
            key(e) <= key(chosen),
            "{} beats the chosen {}",
            e.name,
            c.score
        );
    }
    assert_eq!(c.patches, 10);
    assert!(c.referred <= 3);
    // Written into the model, the engine then flags by that score and threshold.
    let score = lungseg::model::ReviewScore::from_name(&c.score).unwrap();
    calibrate::set_review(&model_path, score, c.threshold).unwrap();
    let m = Model::open(&model_path).unwrap();
    assert_eq!(
        (m.review().score, m.review().threshold),
        (score, c.threshold)
    );
}

/// `calibrate --from-report` makes the choice the MC pass makes, from an `evaluate` report of
/// the same model file, patches, samples and seed; it still does after the review is written
/// (the fingerprint leaves the review out) and refuses a report of other mask settings or
/// another seed.
#[test]
fn calibration_from_an_evaluate_report_is_the_passes_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let opts = choosing_options();
    let out = tmp.path().join("report");
    let eval = EvaluateOptions {
        split: "val".into(),
        samples: 4,
        seed: 2,
        out: out.clone(),
        samples_shown: 0,
        ..Default::default()
    };
    evaluate::evaluate(&model_path, &data, &eval, |_, _| {}).unwrap();
    let from = calibrate::CalibrateOptions {
        from_report: Some(out.clone()),
        ..opts.clone()
    };
    let pass = calibrate::calibrate(&model_path, &data, &opts, || {}).unwrap();
    let mut calls = 0;
    let read = calibrate::calibrate(&model_path, &data, &from, || calls += 1).unwrap();
    assert_eq!(read, pass);
    assert_eq!(calls, 0, "no MC pass");
    let plain = calibrate::CalibrateOptions {
        choose_score: false,
        ..from.clone()
    };
    let kept = calibrate::calibrate(&model_path, &data, &plain, || {}).unwrap();
    let pass_kept = calibrate::calibrate(
        &model_path,
        &data,
        &calibrate::CalibrateOptions {
            choose_score: false,
            ..opts.clone()
        },
        || {},
    )
    .unwrap();
    assert_eq!(
        kept, pass_kept,
        "the model's own score, read from the report"
    );

    let score = lungseg::model::ReviewScore::from_name(&pass.score).unwrap();
    calibrate::set_review(&model_path, score, pass.threshold).unwrap();
    assert_eq!(
        calibrate::calibrate(&model_path, &data, &from, || {}).unwrap(),
        pass
    );

    let other_seed = calibrate::CalibrateOptions {
        seed: 3,
        ..from.clone()
    };
    let e = calibrate::calibrate(&model_path, &data, &other_seed, || {}).unwrap_err();
    assert!(e.to_string().contains("seed"), "{e:#}");
    // Other mask settings (format version 3 for a threshold other than 0.5).
    let mut file = lungseg_train::model_file::ModelFile::read(&model_path).unwrap();
    let mut config = file.json_object("config").unwrap();
    config.insert("mask_threshold".into(), serde_json::json!(0.4));
    file.set_json_object("config", config);
    let version: u32 = file.metadata["format_version"].parse().unwrap();
    file.metadata
        .insert("format_version".into(), version.max(3).to_string());
    let (bytes, _) = file.to_bytes().unwrap();
    lungseg_train::model_file::replace_file(&model_path, &bytes).unwrap();
    let e = calibrate::calibrate(&model_path, &data, &from, || {}).unwrap_err();
    assert!(e.to_string().contains("another model"), "{e:#}");
}

#[test]
fn set_review_threshold_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let path = fixture_model(tmp.path());
    let before = std::fs::read(&path).unwrap();
    let old = Model::open(&path).unwrap();
    set_review_threshold(&path, 0.0625).unwrap();
    let after = std::fs::read(&path).unwrap();
    let new = Model::open(&path).unwrap();
    assert_eq!(new.review().threshold, 0.0625);
    assert_eq!(new.review().score, old.review().score);
    assert_eq!(new.config(), old.config());
    assert_eq!(new.provenance(), old.provenance());

    let (a, b) = (
        SafeTensors::deserialize(&before).unwrap(),
        SafeTensors::deserialize(&after).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut names_b = b.names();
    names_b.sort();
    assert_eq!(names, names_b);
    for n in names {
        let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
        assert_eq!(
            (x.dtype(), x.shape(), x.data()),
            (y.dtype(), y.shape(), y.data()),
            "{n}"
        );
    }
    let meta = |bytes: &[u8]| {
        SafeTensors::read_metadata(bytes)
            .unwrap()
            .1
            .metadata()
            .clone()
            .unwrap()
    };
    let (ma, mb) = (meta(&before), meta(&after));
    for (k, v) in &ma {
        if k != "review" {
            assert_eq!(mb.get(k), Some(v), "metadata {k}");
        }
    }
    let review: serde_json::Value = serde_json::from_str(&mb["review"]).unwrap();
    assert_eq!(review["threshold"], 0.0625);
    assert_eq!(review["score"], old.review().score.name());
    // Same predictions, and no temporary file left behind.
    let hu = vec![-500.0f32; old.config().patch_voxels()];
    let (mut p1, mut p2) = (vec![0.0; hu.len()], vec![0.0; hu.len()]);
    lungseg::mc::predict(&old, &hu, &mut p1, 1).unwrap();
    lungseg::mc::predict(&new, &hu, &mut p2, 1).unwrap();
    assert_eq!(p1, p2);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    assert!(set_review_threshold(&path, f32::NAN).is_err());
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    assert!(
        format!("{:#}", set_review_threshold(&junk, 0.1).unwrap_err())
            .contains("not a safetensors file")
    );
    assert_eq!(std::fs::read(&junk).unwrap(), b"not a model");
}

#[test]
fn evaluate_writes_report_figures_and_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let csv = tmp.path().join("metrics.csv");
    std::fs::write(&csv, "epoch,loss,train_dice,val_dice,lr,seconds\n1,0.9,0.1,0.1,0.001,3\n2,0.7,0.3,0.25,0.001,3\n").unwrap();
    let out = tmp.path().join("report");
    let opts = EvaluateOptions {
        samples: 3,
        seed: 4,
        out: out.clone(),
        training_metrics: None, // found next to the model
        samples_shown: 2,
        ..Default::default()
    };
    let mut calls = 0;
    let r = evaluate::evaluate(&model_path, &data, &opts, |done, total| {
        calls += 1;
        assert_eq!(total, 6);
        assert_eq!(done, calls);
    })
    .unwrap();
    assert_eq!(calls, 6);
    for f in [
        "report.json",
        "report.md",
        "reliability.png",
        "referral.png",
        "uncertainty_histograms.png",
        "training_curves.png",
    ] {
        let p = out.join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{f} missing"
        );
    }
    let panels = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("panel_")
        })
        .count();
    assert!((2..=4).contains(&panels), "{panels} panels");
    assert_eq!(r.volumes.len(), panels * 5);

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&r.report_json).unwrap()).unwrap();
    for key in [
        "title",
        "model",
        "dataset",
        "mc_samples",
        "review_score",
        "review_threshold",
        "metrics",
        "figures",
        "notes",
        "quality_checks",
        "evaluation",
    ] {
        assert!(v.get(key).is_some(), "report.json lacks {key}");
    }
    let m = &v["metrics"];
    assert_eq!(m["n_patches"], 6);
    assert_eq!(m["patches"].as_array().unwrap().len(), 6);
    let pooled = &m["overlap"]["pooled"];
    let (dice, iou) = (
        pooled["dice"].as_f64().unwrap(),
        pooled["iou"].as_f64().unwrap(),
    );
    assert!((0.0..=1.0).contains(&dice) && (0.0..=1.0).contains(&iou));
    assert!(
        iou <= dice && (dice == 0.0 || iou < dice),
        "Dice {dice}, IoU {iou}"
    );
    assert_eq!(v["mc_samples"], 3);
    assert_eq!(v["quality_checks"].as_array().unwrap().len(), 5);
    // Positives in test: i = 0, 2, 4 → diameters 3, 5, 7 mm; two are ≥ 5 mm.
    common::assert_report_reads_back(&r.report_json, &r.report);
    let back = &r.report;
    let h = &back.metrics.headline;
    assert_eq!((h.n_nodule_patches, h.n_negative_patches), (3, 3));
    let sized: Vec<f64> = back
        .metrics
        .patches
        .iter()
        .filter(|p| p.class == PatchClass::Nodule && p.diameter_mm.unwrap() >= 5.0)
        .map(|p| p.overlap.dice)
        .collect();
    assert_eq!((sized.len(), h.n_sized_patches), (2, 2));
    assert_eq!(
        h.dice_nodules_sized.unwrap().estimate,
        (sized[0] + sized[1]) / 2.0
    );
    // The deterministic baseline is reported beside the MC measures.
    let names: Vec<&str> = back
        .metrics
        .review_scores
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        names.contains(&"det_mean_entropy") && names.contains(&"dice_disagreement"),
        "{names:?}"
    );
    assert!(back
        .metrics
        .uncertainty(
            lungseg_train::metrics::UncertaintyMeasure::DeterministicEntropy,
            true
        )
        .is_some());
    let headline = lungseg_train::demo::headline(&r.report_json).unwrap();
    assert!(headline.contains("3 nodule patches"), "{headline}");
    assert_eq!(
        v["review_threshold"].as_f64().unwrap() as f32,
        Model::open(&model_path).unwrap().review().threshold
    );
    assert_eq!(v["figures"].as_array().unwrap().len(), 4 + panels);
    let md = std::fs::read_to_string(&r.report_md).unwrap();
    assert!(md.contains("mean Dice, nodules ≥ 5 mm"), "{md}");

    // The Slicer volumes sit where the patch was cut, and hold the patch.
    let hu_path = r
        .volumes
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_hu.mhd"))
        .unwrap();
    let id = hu_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches("_hu.mhd")
        .to_string();
    let ds = PatchDataset::open(&data).unwrap();
    let i = ds.records.iter().position(|r| r.id == id).unwrap();
    let vol = lungseg::mhd::read(hu_path, &Default::default()).unwrap();
    let c = ds.records[i].center_world.unwrap();
    assert_eq!(vol.geometry.dims, [16, 12, 8]);
    assert_eq!(vol.geometry.origin, [c[0] - 8.0, c[1] - 6.0, c[2] - 4.0]);
    let mut hu = vec![0.0; 16 * 12 * 8];
    vol.copy_f32(&mut hu).unwrap();
    assert_eq!(hu, ds.load(i).unwrap().hu);
    let prob = lungseg::mhd::read(
        &hu_path.with_file_name(format!("{id}_prob.mhd")),
        &Default::default(),
    )
    .unwrap();
    let mut p = vec![0.0; hu.len()];
    prob.copy_f32(&mut p).unwrap();
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));

    // Each map is the quantity its name says, not just something in range: the written mean
    // equals an independent engine run with the patch's seed, and entropy / mutual
    // information are computed here from that run (a swapped or mislabelled map fails).
    let read = |suffix: &str| {
        let v = lungseg::mhd::read(
            &hu_path.with_file_name(format!("{id}_{suffix}.mhd")),
            &Default::default(),
        )
        .unwrap();
        let mut out = vec![0.0; hu.len()];
        v.copy_f32(&mut out).unwrap();
        out
    };
    let model = Model::open(&model_path).unwrap();
    let n = hu.len();
    let (mut mean, mut var, mut ent, mut mi) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let opts = lungseg::mc::McOptions {
        n_samples: 3,
        seed: calibrate::patch_seed(4, &id),
        threads: 1,
        review_threshold: None,
        review_score: None,
    };
    lungseg::mc::predict_uncertainty(
        &model,
        &hu,
        &opts,
        lungseg::mc::UncertaintyMaps {
            mean: Some(&mut mean),
            variance: Some(&mut var),
            entropy: Some(&mut ent),
            mutual_info: Some(&mut mi),
        },
    )
    .unwrap();
    assert_eq!(p, mean, "prob map is not the MC mean");
    let entropy = read("entropy");
    for (i, (&h, &m)) in entropy.iter().zip(&mean).enumerate() {
        let direct = lungseg::mc::entropy_bits(m);
        assert!(
            (h - direct).abs() <= 1e-6,
            "voxel {i}: entropy {h}, H(mean) {direct}"
        );
    }
    assert_eq!(
        read("mi"),
        mi,
        "mi map is not the engine's mutual information"
    );
    assert!(
        mi.iter().zip(&entropy).all(|(m, h)| *m <= *h + 1e-6),
        "mutual information exceeds entropy"
    );
    assert!(
        mean.iter().any(|&m| m > 0.05 && m < 0.95),
        "fixture has no uncertain voxel: the entropy check is vacuous"
    );
}

#[test]
fn evaluate_refuses_patches_of_another_size() {
    let tmp = tempfile::tempdir().unwrap();
    let model_path = fixture_model(tmp.path());
    let root = tmp.path().join("ds");
    let mut w = DatasetWriter::create(&root).unwrap();
    let rec = PatchRecord {
        id: "a".into(),
        hu: String::new(),
        mask: String::new(),
        seriesuid: "1.2".into(),
        split: "test".into(),
        label: 0,
        shape: [16, 16, 16],
        diameter_mm: None,
        spacing_mm: None,
        center_world: None,
        scan_spacing_mm: None,
    };
    w.add(rec, &vec![-800.0; 4096], &[0; 4096]).unwrap();
    w.finish().unwrap();
    let opts = EvaluateOptions {
        out: tmp.path().join("rep"),
        ..Default::default()
    };
    let e = format!(
        "{:#}",
        evaluate::evaluate(&model_path, &root, &opts, |_, _| {}).unwrap_err()
    );
    assert!(
        e.contains("the model expects [8, 12, 16]") && e.contains("--patch-size 16,12,8"),
        "{e}"
    );
}

/// Patches whose manifest gives their scan's spacing are flagged as the library flags a point
/// of that scan: with the model's limit below the spacing, every patch of the coarse scans
/// needs review and nothing else changes; patches without a spacing, and scans within the
/// limit, keep the score's decision.
#[test]
fn evaluation_flags_the_patches_of_scans_outside_the_intended_use() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    // The first scan of each split 5 mm apart, the next 1 mm, the rest without a spacing.
    let manifest = data.join("manifest.jsonl");
    let mut ds = PatchDataset::open(&data).unwrap();
    for r in &mut ds.records {
        r.scan_spacing_mm = match r.seriesuid.rsplit('.').next() {
            Some("0") => Some([0.7, 0.7, 5.0]),
            Some("1") => Some([0.7, 0.7, 1.0]),
            _ => None,
        };
    }
    let lines: Vec<String> = ds
        .records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let run = |model: &Path, name: &str| {
        let opts = EvaluateOptions {
            split: "val".into(),
            samples: 3,
            seed: 4,
            out: tmp.path().join(name),
            samples_shown: 0,
            ..Default::default()
        };
        evaluate::evaluate(model, &data, &opts, |_, _| {})
            .unwrap()
            .report
    };
    let plain_report = run(&model_path, "plain");
    let plain = plain_report.metrics.patches.clone();
    let limited = tmp.path().join("limited.safetensors");
    std::fs::copy(&model_path, &limited).unwrap();
    let mut file = lungseg_train::model_file::ModelFile::read(&limited).unwrap();
    lungseg_train::intended_use::set_max_scan_spacing(&mut file, 2.5).unwrap();
    lungseg_train::model_file::replace_file(&limited, &file.to_bytes().unwrap().0).unwrap();
    let got_report = run(&limited, "limited");
    let noted = |r: &lungseg_train::report::Report| {
        r.notes
            .iter()
            .any(|n| n.contains("coarser than the 2.5 mm"))
    };
    assert!(noted(&got_report) && !noted(&plain_report));
    let got = got_report.metrics.patches;
    let spacing: std::collections::HashMap<_, _> = ds
        .records
        .iter()
        .map(|r| (r.id.clone(), r.scan_spacing_mm))
        .collect();
    let mut coarse = 0;
    for (g, p) in got.iter().zip(&plain) {
        assert_eq!((&g.id, g.score, g.overlap), (&p.id, p.score, p.overlap));
        if spacing[&g.id].is_some_and(|s| s[2] > 2.5) {
            coarse += 1;
            assert!(g.needs_review, "{}", g.id);
        } else {
            assert_eq!(g.needs_review, p.needs_review, "{}", g.id);
        }
    }
    assert!(
        coarse > 0,
        "no patch of a coarse scan: the test shows nothing"
    );
    assert!(
        plain
            .iter()
            .any(|p| !p.needs_review && spacing[&p.id].is_some_and(|s| s[2] > 2.5)),
        "every coarse patch is flagged by its score alone: the test shows nothing"
    );
}
