//! Referral curve, its area, the review threshold and the needs-review confusion.

use lungseg_train::metrics::{referral_curve, review_confusion, threshold_for_refer_fraction};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

const DICE: [f64; 4] = [0.9, 0.2, 0.8, 0.6];

#[test]
fn referral_curve_worked_example() {
    // Refer order by score: p1 (0.2), p2 (0.8), p3 (0.6), p0 (0.9).
    let rc = referral_curve(&DICE, &[0.1, 0.9, 0.5, 0.3]).unwrap();
    let got: Vec<(f64, f64)> = rc
        .points
        .iter()
        .map(|p| (p.fraction_referred, p.retained_dice))
        .collect();
    let want = [(0.0, 0.625), (0.25, 2.3 / 3.0), (0.5, 0.75), (0.75, 0.9)];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(close(g.0, w.0) && close(g.1, w.1), "{got:?}");
    }
    // Trapezoids of width 0.25 over [0, 0.75], divided by 0.75.
    let area =
        0.25 * ((0.625 + 2.3 / 3.0) / 2.0 + (2.3 / 3.0 + 0.75) / 2.0 + (0.75 + 0.9) / 2.0) / 0.75;
    assert!(close(rc.auc, area), "{} vs {area}", rc.auc);
    assert!(close(rc.auc, 0.759_722_222_222_222_2));
    // Oracle refers 0.2, 0.6, 0.8: retained 0.625, 0.7667, 0.85, 0.9.
    let oracle =
        0.25 * ((0.625 + 2.3 / 3.0) / 2.0 + (2.3 / 3.0 + 0.85) / 2.0 + (0.85 + 0.9) / 2.0) / 0.75;
    assert!(close(rc.auc_oracle, oracle));
    assert!(close(rc.auc_random, 0.625));
    assert!(rc.auc_oracle >= rc.auc && rc.auc >= rc.auc_random);
}

#[test]
fn tied_scores_are_referred_together() {
    let rc = referral_curve(&[0.2, 0.8, 0.9, 0.6], &[0.5, 0.5, 0.1, 0.3]).unwrap();
    let f: Vec<f64> = rc.points.iter().map(|p| p.fraction_referred).collect();
    assert_eq!(f, [0.0, 0.5, 0.75]);
    assert!(close(rc.points[1].retained_dice, 0.75));
    // [0.5·(0.625 + 0.75)/2 + 0.25·(0.75 + 0.9)/2] / 0.75
    assert!(close(rc.auc, 0.55 / 0.75));
    // Same result whatever the patch order.
    let rc2 = referral_curve(&[0.8, 0.2, 0.6, 0.9], &[0.5, 0.5, 0.3, 0.1]).unwrap();
    assert!(close(rc.auc, rc2.auc));
    // All tied: one point, constant curve.
    let flat = referral_curve(&DICE, &[1.0; 4]).unwrap();
    assert_eq!(flat.points.len(), 1);
    assert!(close(flat.auc, 0.625));
    assert!(referral_curve(&[], &[]).is_err());
    assert!(close(referral_curve(&[0.7], &[0.1]).unwrap().auc, 0.7));
}

#[test]
fn threshold_refers_the_requested_fraction() {
    let scores: Vec<f32> = (1..=10).map(|i| i as f32 / 10.0).collect();
    let referred = |t: f32| scores.iter().filter(|&&s| s > t).count();
    let t = threshold_for_refer_fraction(&scores, 0.1).unwrap().unwrap();
    assert_eq!((t, referred(t)), (0.9, 1));
    assert_eq!(
        referred(
            threshold_for_refer_fraction(&scores, 0.25)
                .unwrap()
                .unwrap()
        ),
        3
    );
    let t0 = threshold_for_refer_fraction(&scores, 0.0).unwrap().unwrap();
    assert_eq!((t0, referred(t0)), (1.0, 0));
    let t1 = threshold_for_refer_fraction(&scores, 1.0).unwrap().unwrap();
    assert!(t1 < 0.1 && referred(t1) == 10);
    // 10 % of 30 is 3, not 4, despite 0.1 · 30 = 3.0000000000000004.
    let thirty: Vec<f32> = (0..30).map(|i| i as f32).collect();
    let t = threshold_for_refer_fraction(&thirty, 0.1).unwrap().unwrap();
    assert_eq!(thirty.iter().filter(|&&s| s > t).count(), 3);
    // Ties at the boundary are not split: fewer are referred.
    let t = threshold_for_refer_fraction(&[0.9, 0.5, 0.5, 0.1], 0.5)
        .unwrap()
        .unwrap();
    assert_eq!(t, 0.5);
    assert_eq!(threshold_for_refer_fraction(&[], 0.1).unwrap(), None);
    assert!(threshold_for_refer_fraction(&scores, 1.5).is_err());
    assert!(threshold_for_refer_fraction(&[f32::NAN], 0.1).is_err());
    assert!(threshold_for_refer_fraction(&[0.0], 1.0).unwrap().unwrap() < 0.0);
}

#[test]
fn review_confusion_against_bad_patches() {
    // Dice 0.3, 0.9, 0.4, 0.8, 0.5 against a 0.5 cut: bad, good, bad, good, good.
    let c = review_confusion(
        &[true, false, true, false, false],
        &[true, true, false, false, false],
    )
    .unwrap();
    assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 1, 1, 2));
    assert!(close(c.sensitivity.unwrap(), 0.5));
    assert!(close(c.specificity.unwrap(), 2.0 / 3.0));
    assert!(close(c.ppv.unwrap(), 0.5));
    assert!(close(c.npv.unwrap(), 2.0 / 3.0));
    assert!(close(c.referred_fraction, 0.4));
    let none_bad = review_confusion(&[false], &[false]).unwrap();
    assert_eq!((none_bad.sensitivity, none_bad.ppv), (None, None));
}
