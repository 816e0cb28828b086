//! MC sampling: determinism across thread counts, p = 0 equals the deterministic pass, the
//! statistics on hand-computed values, the summary and review decision, concurrent use.

mod common;

use common::*;
use lungseg::mc::{predict, predict_uncertainty, voxel_stats, McOptions, UncertaintyMaps};
use lungseg::model::Model;

fn run(m: &Model, input: &[f32], opts: &McOptions) -> (Vec<[f32; 4]>, lungseg::mc::PatchSummary) {
    let n = input.len();
    let (mut a, mut b, mut c, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let maps = UncertaintyMaps {
        mean: Some(&mut a),
        variance: Some(&mut b),
        entropy: Some(&mut c),
        mutual_info: Some(&mut d),
    };
    let s = predict_uncertainty(m, input, opts, maps).unwrap();
    ((0..n).map(|i| [a[i], b[i], c[i], d[i]]).collect(), s)
}

#[test]
fn same_seed_is_bit_identical_on_any_thread_count() {
    for k in lungseg::nn::cpu_kernel::CpuKernel::available() {
        same_seed_is_bit_identical_on(&fixture_model_on("small", Some(k)));
    }
}

fn same_seed_is_bit_identical_on(m: &Model) {
    let input = read_f32("small.input.f32");
    let opts = |threads| McOptions {
        n_samples: 6,
        seed: 99,
        threads,
        review_threshold: None,
        review_score: None,
    };
    let (m1, s1) = run(m, &input, &opts(1));
    for t in [2, 3, 0] {
        let (mt, st) = run(m, &input, &opts(t));
        assert!(
            m1.iter()
                .zip(&mt)
                .all(|(a, b)| a.map(f32::to_bits) == b.map(f32::to_bits)),
            "threads {t} on {:?}",
            m.kernel()
        );
        assert_eq!(s1, st);
    }
    let (m2, _) = run(
        m,
        &input,
        &McOptions {
            seed: 100,
            ..opts(1)
        },
    );
    assert_ne!(m1, m2, "another seed gives other masks");
    assert!(
        m1.iter().any(|v| v[1] > 0.0 && v[3] > 0.0),
        "dropout makes samples differ"
    );
}

#[test]
fn zero_dropout_equals_deterministic_pass_exactly() {
    for kind in ["channel", "element"] {
        let cfg = format!(
            r#"{{"channels":[4,8,16],"patch_size":[16,16,16],"dropout":{{"p":0.0,"kind":"{kind}"}}}}"#
        );
        let m = Model::from_bytes(&synth_model_bytes(&cfg)).unwrap();
        let input = read_f32("small.input.f32");
        let mut prob = vec![0.0; input.len()];
        predict(&m, &input, &mut prob, 2).unwrap();
        let (maps, s) = run(
            &m,
            &input,
            &McOptions {
                n_samples: 5,
                seed: 3,
                threads: 2,
                review_threshold: None,
                review_score: None,
            },
        );
        for (v, p) in maps.iter().zip(&prob) {
            assert_eq!(v[0].to_bits(), p.to_bits());
            assert_eq!(v[1], 0.0);
            assert_eq!(v[3], 0.0);
        }
        assert_eq!(s.mean_mutual_info, 0.0);
        assert_eq!(
            s.foreground_voxels,
            prob.iter().filter(|&&p| p >= 0.5).count() as u64
        );
    }
}

#[test]
fn statistics_on_hand_computed_samples() {
    let v = voxel_stats(&[0.2, 0.8]);
    assert!((v.mean - 0.5).abs() < 1e-7 && (v.variance - 0.09).abs() < 1e-7);
    assert!((v.entropy - 1.0).abs() < 1e-6);
    let h02 = -(0.2f64 * 0.2f64.log2() + 0.8 * 0.8f64.log2());
    assert!(
        (f64::from(v.mutual_info) - (1.0 - h02)).abs() < 1e-6,
        "{v:?}"
    );
    assert!(v.any_foreground);
    let v = voxel_stats(&[1.0, 0.0]);
    assert_eq!(
        (v.mean, v.variance, v.entropy, v.mutual_info),
        (0.5, 0.25, 1.0, 1.0)
    );
    let v = voxel_stats(&[0.0, 0.0, 0.0]);
    assert_eq!(
        (
            v.mean,
            v.variance,
            v.entropy,
            v.mutual_info,
            v.any_foreground
        ),
        (0.0, 0.0, 0.0, 0.0, false)
    );
    let v = voxel_stats(&[0.1, 0.3, 0.2]);
    assert!((v.mean - 0.2).abs() < 1e-7 && (f64::from(v.variance) - 0.02 / 3.0).abs() < 1e-8);
    assert!(!v.any_foreground);
}

#[test]
fn summary_and_review_decision() {
    let m = fixture_model("small");
    let input = read_f32("small.input.f32");
    let opts = McOptions {
        n_samples: 4,
        seed: 0x1234_5678_9ABC_DEF0,
        threads: 2,
        review_threshold: None,
        review_score: None,
    };
    let (maps, s) = run(&m, &input, &opts);
    let fg = maps.iter().filter(|v| v[0] >= 0.5).count() as u64;
    assert_eq!(s.foreground_voxels, fg);
    assert_eq!(s.volume_mm3, fg as f64);
    assert!(
        (s.equivalent_diameter_mm - (6.0 * fg as f64 / std::f64::consts::PI).cbrt()).abs() < 1e-9
    );
    assert_eq!(s.uncertainty_score, s.mean_mutual_info);
    assert_eq!(s.needs_review, s.uncertainty_score > m.review().threshold);
    assert!(s.mean_probability > 0.0 && s.mean_entropy > 0.0);
    let (_, lo) = run(
        &m,
        &input,
        &McOptions {
            review_threshold: Some(-1.0),
            ..opts
        },
    );
    let (_, hi) = run(
        &m,
        &input,
        &McOptions {
            review_threshold: Some(1e9),
            ..opts
        },
    );
    assert!(lo.needs_review && !hi.needs_review);
    // Maps are optional.
    let s2 = predict_uncertainty(&m, &input, &opts, UncertaintyMaps::default()).unwrap();
    assert_eq!(s, s2);
}

#[test]
fn one_model_serves_many_threads() {
    let m = fixture_model("small");
    let input = read_f32("small.input.f32");
    let opts = McOptions {
        n_samples: 3,
        seed: 5,
        threads: 1,
        review_threshold: None,
        review_score: None,
    };
    let (want, _) = run(&m, &input, &opts);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..3 {
                    assert_eq!(run(&m, &input, &opts).0, want);
                }
            });
        }
    });
}

#[test]
fn single_level_and_odd_channel_networks_run() {
    for cfg in [
        r#"{"channels":[5],"patch_size":[8,6,4]}"#,
        r#"{"channels":[3,17,33],"patch_size":[8,12,4],"dropout":{"p":0.5,"kind":"element"}}"#,
    ] {
        let m = Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
        let n = m.config().patch_voxels();
        let input: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 15.0 - 900.0).collect();
        let mut prob = vec![0.0; n];
        predict(&m, &input, &mut prob, 2).unwrap();
        assert!(prob.iter().all(|p| (0.0..=1.0).contains(p)));
        let (maps, s) = run(
            &m,
            &input,
            &McOptions {
                n_samples: 3,
                seed: 1,
                threads: 2,
                review_threshold: None,
                review_score: None,
            },
        );
        assert!(maps.iter().all(|v| v.iter().all(|x| x.is_finite())));
        assert_eq!(s.n_samples, 3);
    }
}

/// `volume_disagreement` from the file's `review` metadata, checked against the formula on the
/// returned mean map; an unknown score name is refused with the list of supported ones.
#[test]
fn volume_disagreement_review_score() {
    let side = sidecar("small");
    let config = side["config"].to_string();
    let ch: Vec<usize> = serde_json::from_value(side["config"]["channels"].clone()).unwrap();
    let with_review = |review: &str| {
        let mut meta = standard_meta(&config);
        meta.push(("review", review.to_string()));
        Model::from_bytes(&write_safetensors(&synth_tensors(&ch), &meta))
    };
    let m = with_review(r#"{"score":"volume_disagreement","threshold":0.05}"#).unwrap();
    assert_eq!(m.review().score.name(), "volume_disagreement");
    let input = read_f32("small.input.f32");
    let opts = McOptions {
        n_samples: 4,
        seed: 7,
        threads: 2,
        review_threshold: None,
        review_score: None,
    };
    let (maps, s) = run(&m, &input, &opts);
    let v = maps.iter().filter(|x| x[0] >= 0.5).count() as f64;
    let sum: f64 = maps.iter().map(|x| f64::from(x[0])).sum();
    let want = (sum - v).abs() / (v + 10.0);
    assert!(
        (f64::from(s.uncertainty_score) - want).abs() <= 1e-6 * want.max(1.0),
        "score {} vs {want}",
        s.uncertainty_score
    );
    assert!(want > 0.0);
    assert_eq!(s.needs_review, s.uncertainty_score > 0.05);
    assert_eq!(lungseg::mc::volume_disagreement(30.0, 20), 10.0 / 30.0);
    assert_eq!(lungseg::mc::volume_disagreement(0.0, 0), 0.0);

    let err = match with_review(r#"{"score":"max_entropy"}"#) {
        Ok(_) => panic!("unknown review score accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("volume_disagreement"), "{err}");
}
