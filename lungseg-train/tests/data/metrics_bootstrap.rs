//! Bootstrap intervals resampled by scan, and review scores judged as bad-patch detectors.

use lungseg_train::metrics::bootstrap::{
    bootstrap_by_group, group_ids, mean_where, quantile, BootstrapConfig,
};
use lungseg_train::metrics::review_scores::{
    best_score, evaluate_score, is_bad, referred_at_budget, DEFAULT_BAD_FP_MM3,
};
use lungseg_train::metrics::PatchClass;

fn mean_of(values: &[f64]) -> impl Fn(&[usize]) -> Option<f64> + '_ {
    move |s: &[usize]| mean_where(s, |_| true, |i| values[i])
}

#[test]
fn patches_of_a_scan_move_together() {
    // Two scans of 50 patches each, all 0 in one and all 1 in the other. Resampling scans
    // gives means of 0, 0.5 or 1 (a quarter of the resamples at each end), so the 95 %
    // interval is [0, 1]; resampling patches would give about 0.5 ± 0.1.
    let values: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i >= 50))).collect();
    let scans: Vec<String> = (0..100).map(|i| format!("scan{}", i / 50)).collect();
    let group = group_ids(&scans);
    let ci = bootstrap_by_group(&group, &BootstrapConfig::default(), mean_of(&values))
        .unwrap()
        .unwrap();
    assert_eq!(ci.estimate, 0.5);
    assert_eq!((ci.lo, ci.hi), (0.0, 1.0), "{ci:?}");
    assert_eq!(ci.groups, 2);
}

#[test]
fn independent_items_match_normal_theory_and_are_reproducible() {
    // 200 scans of one patch each with values 0..199 mod 10: sd ≈ 2.87, so the 95 %
    // interval of the mean is about ±1.96 · 2.87 / √200 ≈ ±0.40.
    let values: Vec<f64> = (0..200).map(|i| f64::from(i % 10)).collect();
    let group: Vec<usize> = (0..200).collect();
    let cfg = BootstrapConfig::default();
    let ci = bootstrap_by_group(&group, &cfg, mean_of(&values))
        .unwrap()
        .unwrap();
    assert_eq!(ci.estimate, 4.5);
    let half = (ci.hi - ci.lo) / 2.0;
    assert!((half - 0.40).abs() < 0.06, "half-width {half}");
    assert!(ci.lo < 4.5 && 4.5 < ci.hi);
    let again = bootstrap_by_group(&group, &cfg, mean_of(&values))
        .unwrap()
        .unwrap();
    assert_eq!(ci, again);
    let other = BootstrapConfig { seed: 7, ..cfg };
    assert_ne!(
        bootstrap_by_group(&group, &other, mean_of(&values))
            .unwrap()
            .unwrap(),
        ci
    );
}

#[test]
fn undefined_statistics_and_bad_parameters() {
    let group = [0, 1, 2];
    // Only item 2 is "nodule": resamples without scan 2 are undefined and skipped.
    let values = [0.0, 0.0, 0.8];
    let stat = |s: &[usize]| mean_where(s, |i| i == 2, |i| values[i]);
    let ci = bootstrap_by_group(&group, &BootstrapConfig::default(), stat)
        .unwrap()
        .unwrap();
    assert!(
        ci.resamples < 2000 && ci.resamples > 1000,
        "{}",
        ci.resamples
    );
    assert!(
        (ci.lo - 0.8).abs() < 1e-12 && (ci.hi - 0.8).abs() < 1e-12,
        "{ci:?}"
    );
    let none = bootstrap_by_group(&group, &BootstrapConfig::default(), |_| None).unwrap();
    assert_eq!(none, None);
    let bad = BootstrapConfig {
        resamples: 0,
        ..Default::default()
    };
    assert!(bootstrap_by_group(&group, &bad, mean_of(&values)).is_err());
    let bad = BootstrapConfig {
        level: 1.0,
        ..Default::default()
    };
    assert!(bootstrap_by_group(&group, &bad, mean_of(&values)).is_err());
}

#[test]
fn quantile_is_numpys_linear_one() {
    // numpy.quantile([1, 2, 4, 8], [0, 0.025, 0.5, 0.975, 1]) = 1, 1.075, 3, 7.7, 8.
    let v = [1.0, 2.0, 4.0, 8.0];
    for (q, want) in [
        (0.0, 1.0),
        (0.025, 1.075),
        (0.5, 3.0),
        (0.975, 7.7),
        (1.0, 8.0),
    ] {
        assert!(
            (quantile(&v, q) - want).abs() < 1e-12,
            "q {q}: {}",
            quantile(&v, q)
        );
    }
}

#[test]
fn bad_patches_are_defined_per_kind() {
    use PatchClass::{Negative, Nodule, Partial};
    assert!(is_bad(Nodule, 0.49, 1e6, 0.5, DEFAULT_BAD_FP_MM3));
    assert!(!is_bad(Nodule, 0.5, 1e6, 0.5, DEFAULT_BAD_FP_MM3));
    // A negative patch is judged by its false-positive volume, not by Dice (which is 0 as
    // soon as one voxel is predicted).
    assert!(!is_bad(Negative, 0.0, 14.0, 0.5, DEFAULT_BAD_FP_MM3));
    assert!(is_bad(Negative, 0.0, 14.2, 0.5, DEFAULT_BAD_FP_MM3));
    assert!((DEFAULT_BAD_FP_MM3 - 14.137).abs() < 1e-3);
    // A patch cut elsewhere holding part of a nodule is judged on neither.
    assert!(!is_bad(Partial, 0.0, 1e6, 0.5, DEFAULT_BAD_FP_MM3));
}

#[test]
fn patch_class_needs_both_the_cut_and_the_ground_truth() {
    assert_eq!(PatchClass::of(true, 1), PatchClass::Nodule);
    assert_eq!(PatchClass::of(false, 1), PatchClass::Partial);
    assert_eq!(PatchClass::of(true, 0), PatchClass::Negative);
    assert_eq!(PatchClass::of(false, 0), PatchClass::Negative);
}

#[test]
fn referral_takes_the_top_of_the_budget() {
    let s = [0.1, 0.9, 0.5, 0.5, f32::NAN, 0.2];
    // ⌈0.5 · 6⌉ = 3: NaN first (most uncertain), 0.9, then the first of the tied 0.5s.
    assert_eq!(
        referred_at_budget(&s, 0.5),
        [false, true, true, false, true, false]
    );
    assert_eq!(referred_at_budget(&s, 0.0), [false; 6]);
    assert_eq!(referred_at_budget(&s, 1.0), [true; 6]);
}

#[test]
fn scores_are_judged_and_the_best_chosen() {
    // 20 patches, one per scan, 3 bad (items 2, 9, 15).
    let bad: Vec<bool> = (0..20).map(|i| [2, 9, 15].contains(&i)).collect();
    let group: Vec<usize> = (0..20).collect();
    let perfect: Vec<f32> = bad.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let inverse: Vec<f32> = perfect.iter().map(|v| 1.0 - v).collect();
    let cfg = BootstrapConfig::default();
    let p = evaluate_score("perfect", &perfect, &bad, &group, 0.15, &cfg).unwrap();
    assert_eq!(p.auroc, Some(1.0));
    assert_eq!(p.catch_rate.unwrap().estimate, 1.0);
    let q = evaluate_score("inverse", &inverse, &bad, &group, 0.15, &cfg).unwrap();
    assert_eq!(q.auroc, Some(0.0));
    assert_eq!(q.catch_rate.unwrap().estimate, 0.0);
    // Half the budget catches at most ⌈0.075 · 20⌉ = 2 of 3.
    let h = evaluate_score("perfect", &perfect, &bad, &group, 0.075, &cfg).unwrap();
    assert!((h.catch_rate.unwrap().estimate - 2.0 / 3.0).abs() < 1e-12);
    let list = [q.clone(), p.clone(), h];
    assert_eq!(best_score(&list).unwrap().name, "perfect");
    assert!(evaluate_score("x", &perfect, &bad[1..], &group, 0.15, &cfg).is_err());
    assert!(evaluate_score("x", &perfect, &bad, &group, 1.5, &cfg).is_err());
}
