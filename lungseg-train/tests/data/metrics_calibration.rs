//! ECE, Brier and reliability bins against a worked example.

use lungseg_train::metrics::calibration::{brier, ece};
use lungseg_train::metrics::CalibrationAccumulator;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

// Two bins, [0, 0.5) and [0.5, 1]:
//   bin 0: p = 0.1, 0.2, y = 0, 1 → conf 0.15, freq 0.5, |gap| 0.35, weight 2/6
//   bin 1: p = 0.7, 0.8, 0.9, 0.95, y = 1, 1, 0, 1 → conf 0.8375, freq 0.75, |gap| 0.0875, weight 4/6
//   ECE = 0.35·2/6 + 0.0875·4/6 = 0.175
//   Brier = (0.01 + 0.64 + 0.09 + 0.04 + 0.81 + 0.0025) / 6 = 0.2654166…
const P: [f32; 6] = [0.1, 0.2, 0.7, 0.8, 0.9, 0.95];
const Y: [u8; 6] = [0, 1, 1, 1, 0, 1];

#[test]
fn ece_worked_example() {
    assert!(close(ece(&Y, &P, 2).unwrap().unwrap(), 0.175));
}

#[test]
fn brier_worked_example() {
    assert!(close(brier(&Y, &P).unwrap().unwrap(), 1.5925 / 6.0));
}

#[test]
fn reliability_bins() {
    let mut acc = CalibrationAccumulator::new(2).unwrap();
    acc.add_patch(&Y, &P, None).unwrap();
    let s = acc.summary();
    assert_eq!(s.voxels, 6);
    assert_eq!((s.bins[0].count, s.bins[1].count), (2, 4));
    assert!(close(s.bins[0].mean_prob.unwrap(), 0.15));
    assert!(close(s.bins[1].observed_freq.unwrap(), 0.75));
    assert_eq!((s.bins[1].lower, s.bins[1].upper), (0.5, 1.0));
}

#[test]
fn roi_restricts_voxels_and_p_one_lands_in_last_bin() {
    let mut acc = CalibrationAccumulator::new(10).unwrap();
    acc.add_patch(&[1, 0, 0], &[1.0, 0.0, 0.9], Some(&[1, 1, 0]))
        .unwrap();
    let s = acc.summary();
    assert_eq!(s.voxels, 2);
    assert_eq!(s.bins[9].count, 1);
    assert!(close(s.ece.unwrap(), 0.0));
    assert!(close(s.brier.unwrap(), 0.0));
}

#[test]
fn perfectly_calibrated_and_badly_calibrated() {
    // p = 0.25 with a quarter positives: ECE 0.
    let y: Vec<u8> = (0..400).map(|i| u8::from(i % 4 == 0)).collect();
    assert!(close(ece(&y, &vec![0.25; 400], 10).unwrap().unwrap(), 0.0));
    // Always 0.9 but a quarter positives: ECE 0.65.
    assert!(close(ece(&y, &vec![0.9; 400], 10).unwrap().unwrap(), 0.65));
}

#[test]
fn no_voxels_gives_none() {
    assert_eq!(ece(&[], &[], 10).unwrap(), None);
    assert!(CalibrationAccumulator::new(0).is_err());
}

#[test]
fn calibration_sums_round_trip_through_json_and_inconsistent_ones_are_refused() {
    let mut acc = CalibrationAccumulator::new(4).unwrap();
    for (p, y) in [(0.1, false), (0.3, true), (0.9, true), (0.95, false)] {
        acc.add(p, y);
    }
    let text = serde_json::to_string(&acc).unwrap();
    let back: CalibrationAccumulator = serde_json::from_str(&text).unwrap();
    assert_eq!(back, acc);
    assert_eq!(back.ece(), acc.ece());
    for bad in [
        r#"{"count":[1,2],"sum_p":[0.1],"sum_y":[0.0,1.0],"sum_sq":0.5}"#,
        r#"{"count":[],"sum_p":[],"sum_y":[],"sum_sq":0.0}"#,
    ] {
        let e = serde_json::from_str::<CalibrationAccumulator>(bad).unwrap_err();
        assert!(e.to_string().contains("calibration sums"), "{e}");
    }
}
