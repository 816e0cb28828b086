//! Structure-wise MC measures (Dice agreement, IoU, volume CV): the reduction's bitsets against
//! a direct computation from each sample's probability map (`predict_sample`, the same dropout
//! masks) at the model's mask threshold, the review score selection, and the refusal of a score
//! without its threshold.

mod common;

use common::*;
use lungseg::error::ErrorKind;
use lungseg::mc::{
    predict_sample, predict_uncertainty, McOptions, PatchSummary, SampleId, UncertaintyMaps,
};
use lungseg::model::{Model, ReviewScore};

/// The measures recomputed from stored per-sample masks, written out plainly (no bitsets).
struct Direct {
    dice_agreement: f64,
    iou: f64,
    volume_cv: f64,
    intersection: u64,
    union: u64,
    empty: u32,
    volumes: Vec<u64>,
    /// `|F|`, the final mask.
    final_voxels: u64,
}

fn direct(m: &Model, input: &[f32], opts: &McOptions) -> Direct {
    let n = input.len();
    let t = m.config().mask_threshold;
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let mut sum = vec![0f64; n];
    for s in 0..opts.n_samples {
        let mut p = vec![0f32; n];
        let id = SampleId {
            seed: opts.seed,
            sample: s,
            n_samples: opts.n_samples,
        };
        predict_sample(m, input, id, &mut p, 1).unwrap();
        masks.push(p.iter().map(|&x| x >= t).collect());
        for (a, &x) in sum.iter_mut().zip(&p) {
            *a += f64::from(x);
        }
    }
    // The final mask from the reduction's own mean map (f32, as the summary counts it).
    let mut mean = vec![0f32; n];
    predict_uncertainty(
        m,
        input,
        opts,
        UncertaintyMaps {
            mean: Some(&mut mean),
            ..Default::default()
        },
    )
    .unwrap();
    for (i, (&mu, s)) in mean.iter().zip(&sum).enumerate() {
        let plain = s / f64::from(opts.n_samples);
        assert!(
            (f64::from(mu) - plain).abs() < 1e-5,
            "voxel {i}: the samples are the MC samples"
        );
    }
    let f: Vec<bool> = mean.iter().map(|&x| x >= t).collect();
    let size = |v: &[bool]| v.iter().filter(|&&b| b).count() as u64;
    let fsize = size(&f);
    let mut dice = 0.0;
    for mk in &masks {
        let both = mk.iter().zip(&f).filter(|(a, b)| **a && **b).count() as f64;
        let denom = (size(mk) + fsize) as f64;
        dice += if denom == 0.0 {
            1.0
        } else {
            2.0 * both / denom
        };
    }
    let intersection = (0..n).filter(|&i| masks.iter().all(|mk| mk[i])).count() as u64;
    let union = (0..n).filter(|&i| masks.iter().any(|mk| mk[i])).count() as u64;
    let volumes: Vec<u64> = masks.iter().map(|mk| size(mk)).collect();
    let k = volumes.len() as f64;
    let mv = volumes.iter().map(|&v| v as f64).sum::<f64>() / k;
    let sd = (volumes
        .iter()
        .map(|&v| (v as f64 - mv) * (v as f64 - mv))
        .sum::<f64>()
        / k)
        .sqrt();
    Direct {
        dice_agreement: dice / k,
        iou: if union == 0 {
            1.0
        } else {
            intersection as f64 / union as f64
        },
        volume_cv: if mv == 0.0 { 0.0 } else { sd / mv },
        intersection,
        union,
        empty: volumes.iter().filter(|&&v| v == 0).count() as u32,
        volumes,
        final_voxels: fsize,
    }
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-6 * b.abs().max(1.0)
}

fn summary(m: &Model, input: &[f32], opts: &McOptions) -> PatchSummary {
    predict_uncertainty(m, input, opts, UncertaintyMaps::default()).unwrap()
}

/// An element-dropout network at p = 0.5 on the small fixture's input: samples disagree.
fn uncertain_model() -> Model {
    uncertain_model_at(0.5)
}

/// [`uncertain_model`] with the mask threshold `t` (`config.mask_threshold`).
fn uncertain_model_at(t: f32) -> Model {
    let cfg = format!(
        r#"{{"channels":[4,8,16],"patch_size":[16,16,16],"dropout":{{"p":0.5,"kind":"element"}},"mask_threshold":{t}}}"#
    );
    Model::from_bytes(&synth_model_bytes(&cfg)).unwrap()
}

#[test]
fn measures_equal_a_direct_computation_from_the_sample_masks() {
    let input = read_f32("small.input.f32");
    let mut nontrivial = 0;
    for (name, m) in [
        ("small", fixture_model("small")),
        ("p=0.5", uncertain_model()),
        ("p=0.5, mask threshold 0.3", uncertain_model_at(0.3)),
    ] {
        for (seed, n_samples) in [(7u64, 1u32), (11, 6), (0xDEAD_BEEF, 13)] {
            let opts = McOptions {
                n_samples,
                seed,
                threads: 2,
                ..McOptions::default()
            };
            let full = summary(&m, &input, &opts);
            let s = full.structure;
            let d = direct(&m, &input, &opts);
            let what = format!("{name} seed {seed} n {n_samples}: {s:?}");
            assert_eq!(full.foreground_voxels, d.final_voxels, "{what}");
            assert_eq!(
                (s.intersection_voxels, s.union_voxels),
                (d.intersection, d.union),
                "{what}"
            );
            assert_eq!(s.empty_samples, d.empty, "{what}");
            assert!(
                close(s.dice_agreement, d.dice_agreement),
                "{what} vs {}",
                d.dice_agreement
            );
            assert!(close(s.iou, d.iou), "{what} vs {}", d.iou);
            assert!(close(s.volume_cv, d.volume_cv), "{what} vs {}", d.volume_cv);
            let mean = d.volumes.iter().sum::<u64>() as f64 / d.volumes.len() as f64;
            assert!((s.sample_voxels_mean - mean).abs() < 1e-9, "{what}");
            if n_samples == 1 {
                assert_eq!(
                    (s.dice_agreement, s.iou, s.volume_cv),
                    (1.0, 1.0, 0.0),
                    "{what}"
                );
            }
            if s.iou > 0.0 && s.iou < 1.0 && s.dice_agreement < 1.0 && s.volume_cv > 0.0 {
                nontrivial += 1;
            }
        }
    }
    assert!(
        nontrivial >= 2,
        "no patch where the samples disagree: the test would prove little"
    );
}

/// The same network with a lower mask threshold calls more voxels foreground, in the final mask
/// and in the samples, and reports the same probabilities: the threshold moves the masks only.
#[test]
fn the_mask_threshold_moves_the_masks_not_the_probabilities() {
    let input = read_f32("small.input.f32");
    let opts = McOptions {
        n_samples: 8,
        seed: 3,
        threads: 2,
        ..McOptions::default()
    };
    let run = |m: &Model| {
        let mut mean = vec![0f32; input.len()];
        let s = predict_uncertainty(
            m,
            &input,
            &opts,
            UncertaintyMaps {
                mean: Some(&mut mean),
                ..Default::default()
            },
        )
        .unwrap();
        (s, mean)
    };
    let (at_half, mean_half) = run(&uncertain_model());
    let (at_03, mean_03) = run(&uncertain_model_at(0.3));
    assert_eq!(mean_half, mean_03);
    let count = |t: f32| mean_half.iter().filter(|&&p| p >= t).count() as u64;
    assert_eq!(at_half.foreground_voxels, count(0.5));
    assert_eq!(at_03.foreground_voxels, count(0.3));
    assert!(
        count(0.3) > count(0.5),
        "no voxel between 0.3 and 0.5: vacuous"
    );
    assert!(
        at_03.structure.sample_voxels_mean > at_half.structure.sample_voxels_mean,
        "{:?} vs {:?}",
        at_03.structure,
        at_half.structure
    );
}

#[test]
fn measures_are_bit_identical_across_thread_counts() {
    let m = uncertain_model();
    let input = read_f32("small.input.f32");
    let opts = |threads| McOptions {
        n_samples: 9,
        seed: 5,
        threads,
        ..McOptions::default()
    };
    let one = summary(&m, &input, &opts(1));
    for t in [2, 3, 0] {
        assert_eq!(summary(&m, &input, &opts(t)), one, "threads {t}");
    }
}

#[test]
fn the_selected_score_is_compared_with_the_caller_threshold() {
    let m = uncertain_model();
    let input = read_f32("small.input.f32");
    let base = McOptions {
        n_samples: 8,
        seed: 3,
        threads: 1,
        ..McOptions::default()
    };
    let model_default = summary(&m, &input, &base);
    assert_eq!(model_default.review_score, m.review().score);
    let st = model_default.structure;
    for score in ReviewScore::ALL {
        let o = McOptions {
            review_score: Some(score),
            review_threshold: Some(0.25),
            ..base
        };
        let s = summary(&m, &input, &o);
        let want = match score {
            ReviewScore::MeanMutualInfo => s.mean_mutual_info,
            ReviewScore::MeanEntropy => s.mean_entropy,
            ReviewScore::DiceDisagreement => 1.0 - st.dice_agreement,
            ReviewScore::IouDisagreement => 1.0 - st.iou,
            ReviewScore::VolumeCv => st.volume_cv,
            // Checked against its maps in mask_mean_entropy_is_the_entropy_over_the_final_mask.
            ReviewScore::MaskMeanEntropy => model_default.scores.mask_mean_entropy,
            // Checked against their formulas in engine_mc.rs; here: reported as selected.
            ReviewScore::MeanVariance | ReviewScore::VolumeDisagreement => s.uncertainty_score,
        };
        assert_eq!(s.review_score, score);
        assert_eq!(s.uncertainty_score, want, "{}", score.name());
        assert_eq!(s.needs_review, want > 0.25, "{}", score.name());
        assert_eq!(
            s.structure, st,
            "the measures do not depend on the selected score"
        );
    }
    // The model's own score, named explicitly, keeps the model's threshold.
    let own = McOptions {
        review_score: Some(m.review().score),
        ..base
    };
    assert_eq!(summary(&m, &input, &own), model_default);
}

#[test]
fn another_score_than_the_models_without_a_threshold_is_refused() {
    let m = uncertain_model();
    assert_eq!(m.review().score, ReviewScore::MeanMutualInfo);
    let input = read_f32("small.input.f32");
    let o = McOptions {
        n_samples: 2,
        review_score: Some(ReviewScore::VolumeCv),
        ..McOptions::default()
    };
    let e = predict_uncertainty(&m, &input, &o, UncertaintyMaps::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(
        e.message.contains("volume_cv") && e.message.contains("mean_mutual_info"),
        "{}",
        e.message
    );
}

/// A model file naming a structure score uses it with its threshold; the name round-trips.
#[test]
fn a_model_file_names_a_structure_score() {
    let side = sidecar("small");
    let config = side["config"].to_string();
    let ch: Vec<usize> = serde_json::from_value(side["config"]["channels"].clone()).unwrap();
    for score in [
        ReviewScore::DiceDisagreement,
        ReviewScore::IouDisagreement,
        ReviewScore::VolumeCv,
    ] {
        let mut meta = standard_meta(&config);
        let review = format!(r#"{{"score":"{}","threshold":0.125}}"#, score.name());
        meta.push(("review", review));
        let m = Model::from_bytes(&write_safetensors(&synth_tensors(&ch), &meta)).unwrap();
        assert_eq!((m.review().score, m.review().threshold), (score, 0.125));
        let input = read_f32("small.input.f32");
        let s = summary(
            &m,
            &input,
            &McOptions {
                n_samples: 4,
                ..McOptions::default()
            },
        );
        assert_eq!(s.review_score, score);
        assert_eq!(s.needs_review, s.uncertainty_score > 0.125);
    }
}

/// `mask_mean_entropy` against the call's own maps: the mean of the entropy map over the
/// voxels whose mean reaches the model's mask threshold, not over the samples' union that
/// `mean_entropy` averages.
#[test]
fn mask_mean_entropy_is_the_entropy_over_the_final_mask() {
    let m = uncertain_model();
    let input = read_f32("small.input.f32");
    let n = input.len();
    let (mut mean, mut entropy) = (vec![0.0f32; n], vec![0.0f32; n]);
    let opts = McOptions {
        n_samples: 8,
        seed: 11,
        threads: 1,
        ..McOptions::default()
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        entropy: Some(&mut entropy),
        ..UncertaintyMaps::default()
    };
    let s = predict_uncertainty(&m, &input, &opts, maps).unwrap();
    let inside: Vec<f64> = (0..n)
        .filter(|&i| mean[i] >= 0.5)
        .map(|i| f64::from(entropy[i]))
        .collect();
    assert!(
        !inside.is_empty() && inside.len() < n,
        "vacuous mask: {} of {n}",
        inside.len()
    );
    let want = (inside.iter().sum::<f64>() / inside.len() as f64) as f32;
    assert_eq!(s.scores.mask_mean_entropy, want);
    assert_eq!(s.scores.get(ReviewScore::MaskMeanEntropy), want);
    assert_ne!(want, s.mean_entropy, "the two regions coincide: vacuous");
}
