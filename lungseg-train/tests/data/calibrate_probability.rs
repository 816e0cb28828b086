//! `calibrate-probability`: the Platt fit recovers a map it did not see, the collected sample
//! logits are the engine's own samples, and folding the map into the head calibrates every
//! sample the engine draws.

use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg_train::calibrate::platt::{self, logit, nll, MapKind, Platt, SampleLogits};
use lungseg_train::calibrate::probability::{
    self, apply, collect_logits, fit_probability, logit_probe, ProbabilityCalibration,
    ProbabilityOptions, OUTSIDE_STRIDE, PROVENANCE_KEY,
};
use lungseg_train::calibrate::score_split;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::patch_seed;
use lungseg_train::metrics::{predicted_mask, roi_mask, EvalConfig};
use lungseg_train::model_file::ModelFile;

use super::evaluate_calibrate::{dataset, fixture_model};

/// splitmix64 in [0, 1): the test's data must not depend on another crate's RNG stream.
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Voxels whose labels are drawn from the MC mean under `truth`: an over-confident,
/// shifted network as the default model is.
fn synthetic(truth: Platt, voxels: usize, samples: usize, seed: u64) -> SampleLogits {
    let mut u = Uniform(seed);
    let mut data = SampleLogits::new(samples);
    for _ in 0..voxels {
        let centre = (u.next() - 0.5) * 16.0;
        let zs: Vec<f32> = (0..samples)
            .map(|_| (centre + (u.next() - 0.5) * 4.0) as f32)
            .collect();
        let y = u.next() < truth.mean_prob(&zs);
        data.push(y, zs);
    }
    data
}

#[test]
fn platt_fit_recovers_the_map_the_labels_were_drawn_from() {
    let truth = Platt { a: 0.45, b: -1.3 };
    let data = synthetic(truth, 60_000, 6, 11);
    let f = platt::fit(&[&data], MapKind::Platt).unwrap();
    assert!(
        (f.map.a - truth.a).abs() < 0.03 && (f.map.b - truth.b).abs() < 0.08,
        "fitted {:?}, drawn from {truth:?}",
        f.map
    );
    assert!(f.nll_after < f.nll_before, "{f:?}");
    assert!((f.nll_after - nll(&[&data], f.map)).abs() < 1e-12);
    // The optimum: no nearby map explains the labels better.
    for (da, db) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.02), (0.0, -0.02)] {
        let near = Platt {
            a: f.map.a + da,
            b: f.map.b + db,
        };
        assert!(
            nll(&[&data], near) > f.nll_after,
            "{near:?} beats {:?}",
            f.map
        );
    }
    // Labels drawn from calibrated samples: the fit stays near the identity.
    let calibrated = synthetic(Platt::IDENTITY, 60_000, 6, 12);
    let g = platt::fit(&[&calibrated], MapKind::Platt).unwrap();
    assert!(
        (g.map.a - 1.0).abs() < 0.05 && g.map.b.abs() < 0.08,
        "{:?}",
        g.map
    );
}

#[test]
fn temperature_fit_keeps_the_boundary_and_finds_the_scale() {
    // Labels drawn under b = 0: the temperature fit recovers a; under b ≠ 0 it cannot move b
    // and fits worse than Platt scaling on the same voxels.
    let data = synthetic(Platt { a: 0.3, b: 0.0 }, 60_000, 6, 21);
    let t = platt::fit(&[&data], MapKind::Temperature).unwrap();
    assert_eq!(t.map.b, 0.0);
    assert!((t.map.a - 0.3).abs() < 0.02, "{:?}", t.map);
    let shifted = synthetic(Platt { a: 0.3, b: -1.0 }, 60_000, 6, 22);
    let t = platt::fit(&[&shifted], MapKind::Temperature).unwrap();
    let p = platt::fit(&[&shifted], MapKind::Platt).unwrap();
    assert_eq!(t.map.b, 0.0);
    assert!(p.nll_after < t.nll_after - 1e-3, "{p:?} vs {t:?}");
}

#[test]
fn platt_fit_refuses_data_without_both_classes() {
    let mut data = SampleLogits::new(2);
    for z in [-2.0, 0.7, 3.0] {
        data.push(false, [z, z]);
    }
    let e = platt::fit(&[&data], MapKind::Platt).unwrap_err();
    assert!(
        format!("{e:#}").contains("foreground and background"),
        "{e:#}"
    );
    assert!(platt::fit(&[&SampleLogits::new(3)], MapKind::Temperature).is_err());
}

#[test]
fn logit_inverts_the_sigmoid_and_clamps_saturated_probabilities() {
    for z in [-12.0f32, -3.5, 0.0, 0.25, 7.0] {
        let p = sigmoid(f64::from(z)) as f32;
        assert!((logit(p) - z).abs() < 1e-3 * z.abs().max(1.0), "{z}");
    }
    assert!((logit(1.0) - 16.635).abs() < 0.01);
    assert!((logit(0.0) + 16.635).abs() < 0.01);
}

fn options() -> ProbabilityOptions {
    ProbabilityOptions {
        split: "val".into(),
        samples: 4,
        seed: 9,
        kind: MapKind::Platt,
        region: probability::FitRegion::Roi,
        eval: EvalConfig::default(),
    }
}

#[test]
fn collected_logits_are_the_engine_samples_of_the_roi_voxels() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let model = Model::open(&model_path).unwrap();
    let probe = logit_probe(&ModelFile::read(&model_path).unwrap()).unwrap();
    let ds = PatchDataset::open(&data).unwrap();
    let opts = options();
    let c = collect_logits(&probe, &ds, &opts, || {}).unwrap();
    assert_eq!((c.patches, c.saturated), (10, 0));
    let got = &c.roi;
    let mut outside = 0;
    // Walk the patches as device software would: predict_uncertainty's mean and the
    // evaluation's ROI, voxel for voxel in the collected order.
    let mut offset = 0;
    for &i in &ds.split("val") {
        let patch = ds.load(i).unwrap();
        let n = patch.hu.len();
        let (mut mean, mut det) = (vec![0f32; n], vec![0f32; n]);
        let o = McOptions {
            n_samples: opts.samples,
            seed: patch_seed(opts.seed, &ds.records[i].id),
            threads: 0,
            review_threshold: None,
            review_score: None,
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            ..Default::default()
        };
        mc::predict_uncertainty(&model, &patch.hu, &o, maps).unwrap();
        mc::predict(&model, &patch.hu, &mut det, 0).unwrap();
        let grid = ds.records[i].grid(model.config().spacing_mm);
        let pred = predicted_mask(&mean, grid, &opts.eval).unwrap();
        let roi = roi_mask(&patch.mask, &pred, &det, ds.records[i].shape, &opts.eval).unwrap();
        for v in (0..n).filter(|&v| roi[v] == 0 && v % OUTSIDE_STRIDE == 0) {
            let zs = &c.outside.logits[outside * 4..(outside + 1) * 4];
            assert!((Platt::IDENTITY.mean_prob(zs) - f64::from(mean[v])).abs() < 1e-5);
            assert_eq!(c.outside.labels[outside], patch.mask[v]);
            outside += 1;
        }
        for v in (0..n).filter(|&v| roi[v] != 0) {
            let zs = &got.logits[offset * 4..(offset + 1) * 4];
            let m = Platt::IDENTITY.mean_prob(zs);
            assert!(
                (m - f64::from(mean[v])).abs() < 1e-5,
                "patch {i} voxel {v}: samples give {m}, the engine's mean {}",
                mean[v]
            );
            assert_eq!(got.labels[offset], patch.mask[v]);
            offset += 1;
        }
    }
    assert_eq!(offset, got.voxels());
    assert_eq!(outside, c.outside.voxels());
    assert!(outside > 0);
    assert!(got.labels.contains(&1) && got.labels.contains(&0));
}

fn calibration(a: f64, b: f64) -> ProbabilityCalibration {
    ProbabilityCalibration {
        method: "platt_per_sample_head",
        region: probability::FitRegion::Roi,
        fit: platt::PlattFit {
            kind: MapKind::Platt,
            map: Platt { a, b },
            nll_before: 0.5,
            nll_after: 0.4,
            iterations: 3,
        },
        data: "test".into(),
        split: "val".into(),
        seed: 0,
        samples: 4,
        patches: 1,
        roi_voxels: 1,
        saturated_samples: 0,
        ece_roi_before: 0.2,
        ece_roi_after: 0.1,
        ece_patch_before: 0.01,
        ece_patch_after: 0.02,
        brier_patch_before: 0.01,
        brier_patch_after: 0.02,
    }
}

#[test]
fn folded_head_calibrates_every_sample_and_is_recorded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let ds = PatchDataset::open(&data).unwrap();
    let patch = ds.load(ds.split("val")[0]).unwrap();
    let before = Model::open(&model_path).unwrap();
    let cal = calibration(0.5, -0.7);
    let after = probability::write_calibration(&model_path, &cal).unwrap();
    let n = patch.hu.len();
    let (mut p0, mut p1) = (vec![0f32; n], vec![0f32; n]);
    let mut worst = 0f64;
    // The mask threshold moves with the map: σ(0.5·z − 0.7) ≥ σ(−0.7) exactly when z ≥ 0.
    let t = after.config().mask_threshold;
    assert_eq!(t, sigmoid(-0.7) as f32);
    let (mut fg, mut flipped) = (0usize, 0usize);
    for sample in 0..3 {
        mc::predict_sample(&before, &patch.hu, sample_id(5, sample, 3), &mut p0, 0).unwrap();
        mc::predict_sample(&after, &patch.hu, sample_id(5, sample, 3), &mut p1, 0).unwrap();
        for (&a, &b) in p0.iter().zip(&p1) {
            let expected = sigmoid(0.5 * f64::from(logit(a)) - 0.7);
            worst = worst.max((expected - f64::from(b)).abs());
            fg += usize::from(a >= 0.5);
            flipped += usize::from((a >= 0.5) != (b >= t));
        }
    }
    // Rounding of the folded head may move a voxel whose logit is within f32 noise of 0.
    assert!(fg > 100, "{fg} foreground sample voxels: vacuous");
    assert!(
        flipped * 1000 <= fg,
        "{flipped} of {fg} sample-mask voxels moved"
    );
    // The calibrated head is F32; logit() of the f32 probabilities limits the comparison.
    assert!(
        worst < 1e-5,
        "calibrated samples differ from σ(a·z + b) by {worst}"
    );
    let file = ModelFile::read(&model_path).unwrap();
    let provenance = file.json_object("provenance").unwrap();
    assert_eq!(provenance[PROVENANCE_KEY]["a"], 0.5);
    assert_eq!(provenance[PROVENANCE_KEY]["b"], -0.7);
    let mut again = file.clone();
    let e = apply(&mut again, &cal).unwrap_err();
    assert!(format!("{e:#}").contains("calibrated already"), "{e:#}");
    // The review metadata and every other tensor survive.
    let orig = tmp.path().join("orig");
    std::fs::create_dir_all(&orig).unwrap();
    let original = ModelFile::read(&fixture_model(&orig)).unwrap();
    for (name, t) in &original.tensors {
        if !name.starts_with("head.") {
            assert_eq!(file.tensor(name), Some(t), "{name}");
        }
    }
    assert_eq!(file.metadata.get("review"), original.metadata.get("review"));
    // The config gains the mask threshold (format version 3, which older readers refuse).
    let mut config = file.json_object("config").unwrap();
    assert_eq!(config.remove("mask_threshold"), Some(serde_json::json!(t)));
    assert_eq!(config, original.json_object("config").unwrap());
    assert_eq!(file.metadata["format_version"], "3");
}

#[test]
fn fitting_on_the_split_lowers_its_loss_and_changes_the_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let model = Model::open(&model_path).unwrap();
    let c = fit_probability(&model_path, &data, &options(), || {}).unwrap();
    assert_eq!(c.patches, 10);
    assert!(c.fit.nll_after < c.fit.nll_before, "{c:?}");
    assert!(c.fit.map != Platt::IDENTITY);
    assert!(c.ece_roi_after < c.ece_roi_before, "{c:?}");
    let ds = PatchDataset::open(&data).unwrap();
    let s0 = score_split(&model, &ds, "val", 4, 1, || {}).unwrap();
    drop(model);
    let m1 = probability::write_calibration(&model_path, &c).unwrap();
    let s1 = score_split(&m1, &ds, "val", 4, 1, || {}).unwrap();
    assert_ne!(
        s0, s1,
        "review scores must be recalibrated after the probabilities"
    );
}

#[test]
fn the_probe_recovers_logits_beyond_f32_saturation() {
    let tmp = tempfile::tempdir().unwrap();
    let (model_path, data) = (fixture_model(tmp.path()), dataset(tmp.path()));
    let ds = PatchDataset::open(&data).unwrap();
    let patch = ds.load(ds.split("val")[0]).unwrap();
    let file = ModelFile::read(&model_path).unwrap();
    let mut steep = file.clone();
    probability::scale_head(&mut steep, Platt { a: 40.0, b: 0.0 }).unwrap();
    let (probe, steep_probe) = (logit_probe(&file).unwrap(), logit_probe(&steep).unwrap());
    let n = patch.hu.len();
    let (mut p, mut q) = (vec![0f32; n], vec![0f32; n]);
    mc::predict_sample(&probe, &patch.hu, sample_id(3, 1, 2), &mut p, 0).unwrap();
    mc::predict_sample(&steep_probe, &patch.hu, sample_id(3, 1, 2), &mut q, 0).unwrap();
    let z = |p: f32| probability::PROBE_SCALE * f64::from(logit(p));
    let mut beyond = 0;
    for (&a, &b) in p.iter().zip(&q) {
        let (za, zb) = (z(a), z(b));
        beyond += usize::from(zb.abs() > 17.0);
        assert!(
            (zb - 40.0 * za).abs() <= 1e-3 * zb.abs().max(1.0),
            "logit {zb} of the steep head, expected 40 × {za}"
        );
    }
    assert!(
        beyond > n / 10,
        "only {beyond} of {n} logits test saturation"
    );
}

#[test]
fn whole_patch_estimate_weights_each_outside_voxel_by_the_stride() {
    use lungseg_train::calibrate::probability::{patch_calibration, Collected};
    use lungseg_train::metrics::CalibrationAccumulator;
    let mut c = Collected {
        roi: SampleLogits::new(2),
        outside: SampleLogits {
            weight: OUTSIDE_STRIDE as f64,
            ..SampleLogits::new(2)
        },
        ..Collected::default()
    };
    c.roi.push(true, [2.0, 1.0]);
    c.roi.push(false, [0.5, -0.5]);
    c.outside.push(false, [-3.0, -2.0]);
    c.outside.push(true, [-1.0, -1.5]);
    let map = Platt { a: 0.5, b: 0.25 };
    let (ece, brier) = patch_calibration(&c, map, 15).unwrap();
    // The same voxels written out: each outside voxel OUTSIDE_STRIDE times.
    let mut acc = CalibrationAccumulator::new(15).unwrap();
    for (z, &y) in c.roi.logits.chunks_exact(2).zip(&c.roi.labels) {
        acc.add(map.mean_prob(z) as f32, y != 0);
    }
    for (z, &y) in c.outside.logits.chunks_exact(2).zip(&c.outside.labels) {
        for _ in 0..OUTSIDE_STRIDE {
            acc.add(map.mean_prob(z) as f32, y != 0);
        }
    }
    let s = acc.summary();
    assert!((ece - s.ece.unwrap()).abs() < 1e-12, "{ece} vs {:?}", s.ece);
    assert!(
        (brier - s.brier.unwrap()).abs() < 1e-12,
        "{brier} vs {:?}",
        s.brier
    );
}

#[test]
fn a_weighted_voxel_counts_as_that_many_copies() {
    let data = synthetic(Platt { a: 0.5, b: -0.5 }, 4000, 3, 31);
    // The second half written out 4 times, against the same half with weight 4.
    let half = data.voxels() / 2;
    let split = |from: usize, to: usize| {
        let mut d = SampleLogits::new(3);
        for v in from..to {
            d.push(
                data.labels[v] != 0,
                data.logits[v * 3..(v + 1) * 3].iter().copied(),
            );
        }
        d
    };
    let first = split(0, half);
    let mut copies = split(0, half);
    let second = split(half, data.voxels());
    for _ in 0..4 {
        for v in 0..second.voxels() {
            copies.push(
                second.labels[v] != 0,
                second.logits[v * 3..(v + 1) * 3].iter().copied(),
            );
        }
    }
    let weighted = SampleLogits {
        weight: 4.0,
        ..second
    };
    let a = platt::fit(&[&first, &weighted], MapKind::Platt).unwrap();
    let b = platt::fit(&[&copies], MapKind::Platt).unwrap();
    assert!(
        (a.map.a - b.map.a).abs() < 1e-6 && (a.map.b - b.map.b).abs() < 1e-6,
        "{a:?} {b:?}"
    );
    assert!((a.nll_after - b.nll_after).abs() < 1e-9);
    let zero = SampleLogits {
        weight: 0.0,
        ..SampleLogits::new(3)
    };
    assert!(platt::fit(&[&first, &zero], MapKind::Platt).is_err());
}

#[test]
fn a_map_that_worsens_the_whole_patch_is_not_written_unless_forced() {
    use lungseg_train::calibrate::probability::{check_whole_patch, WHOLE_PATCH_ECE_SLACK};
    let mut c = calibration(0.2, 0.0);
    (c.ece_patch_before, c.brier_patch_before) = (0.008, 0.007);
    // The ROI-fitted temperature of the default model: whole-patch ECE 0.008 -> 0.092.
    (c.ece_patch_after, c.brier_patch_after) = (0.092, 0.016);
    let e = check_whole_patch(&c, false).unwrap_err();
    assert!(
        format!("{e:#}").contains("worsens the whole patch"),
        "{e:#}"
    );
    check_whole_patch(&c, true).unwrap();
    // Within the estimate's slack and a better Brier: written.
    (c.ece_patch_after, c.brier_patch_after) = (0.008 + WHOLE_PATCH_ECE_SLACK * 0.9, 0.0069);
    check_whole_patch(&c, false).unwrap();
    // A worse Brier alone refuses it.
    c.brier_patch_after = 0.0071;
    assert!(check_whole_patch(&c, false).is_err());
}

fn sample_id(seed: u64, sample: u32, n_samples: u32) -> mc::SampleId {
    mc::SampleId {
        seed,
        sample,
        n_samples,
    }
}
