//! Overlap metrics and dilation against hand-computed values.

use lungseg_train::metrics::morphology::dilate_cube;
use lungseg_train::metrics::overlap::summarize_overlap;
use lungseg_train::metrics::PatchClass;
use lungseg_train::metrics::{Confusion, MetricsError};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn dice_iou_sensitivity_precision_hand_values() {
    let gt = [1, 1, 1, 1, 0, 0, 0, 0];
    let pred = [1, 1, 0, 0, 1, 0, 0, 0];
    let c = Confusion::from_masks(&gt, &pred).unwrap();
    assert_eq!(
        c,
        Confusion {
            tp: 2,
            fp: 1,
            fn_: 2,
            tn: 3
        }
    );
    assert!(close(c.dice(), 4.0 / 7.0));
    assert!(close(c.iou(), 2.0 / 5.0));
    // The starting project printed equal Dice and IoU: they must differ here.
    assert!(c.dice() > c.iou() + 0.1);
    assert!(close(c.iou(), c.dice() / (2.0 - c.dice())));
    assert!(close(c.sensitivity().unwrap(), 0.5));
    assert!(close(c.precision().unwrap(), 2.0 / 3.0));
}

#[test]
fn thresholding_probabilities_is_inclusive() {
    let gt = [1, 1, 0, 0];
    let prob = [0.5, 0.49, 0.51, 0.0];
    let c = Confusion::from_probs(&gt, &prob, 0.5).unwrap();
    assert_eq!(
        c,
        Confusion {
            tp: 1,
            fp: 1,
            fn_: 1,
            tn: 1
        }
    );
}

#[test]
fn empty_mask_conventions() {
    let both_empty = Confusion::from_masks(&[0, 0], &[0, 0]).unwrap();
    assert_eq!((both_empty.dice(), both_empty.iou()), (1.0, 1.0));
    assert_eq!(
        (both_empty.sensitivity(), both_empty.precision()),
        (None, None)
    );
    let missed = Confusion::from_masks(&[1, 0], &[0, 0]).unwrap();
    assert_eq!(
        (
            missed.dice(),
            missed.iou(),
            missed.sensitivity(),
            missed.precision()
        ),
        (0.0, 0.0, Some(0.0), None)
    );
    let false_alarm = Confusion::from_masks(&[0, 0], &[0, 1]).unwrap();
    assert_eq!(
        (
            false_alarm.dice(),
            false_alarm.sensitivity(),
            false_alarm.precision()
        ),
        (0.0, None, Some(0.0))
    );
}

#[test]
fn pooled_differs_from_mean_of_patches() {
    // Big nodule segmented well, small one missed, one clean negative patch.
    let big = Confusion {
        tp: 90,
        fp: 10,
        fn_: 10,
        tn: 0,
    };
    let small = Confusion {
        tp: 0,
        fp: 0,
        fn_: 10,
        tn: 0,
    };
    let neg = Confusion {
        tp: 0,
        fp: 0,
        fn_: 0,
        tn: 100,
    };
    // `clipped` holds part of a nodule but was cut elsewhere: in the mean over all patches,
    // not in the nodule patches' mean.
    let clipped = small;
    let s = summarize_overlap(&[
        (big, PatchClass::Nodule),
        (small, PatchClass::Nodule),
        (neg, PatchClass::Negative),
        (clipped, PatchClass::Partial),
    ]);
    // Pooled: every patch, the clipped one's 10 missed voxels too.
    assert!(close(s.pooled.dice, 180.0 / 220.0));
    assert!(close(s.pooled.iou, 90.0 / 130.0));
    assert!(close(s.mean_positive.dice.unwrap(), (0.9 + 0.0) / 2.0));
    assert!(close(
        s.mean_all.dice.unwrap(),
        (0.9 + 0.0 + 1.0 + 0.0) / 4.0
    ));
    assert_eq!(s.mean_positive.n, 2);
    assert_eq!(
        (
            s.mean_all.n,
            s.mean_all.n_sensitivity,
            s.mean_all.n_precision
        ),
        (4, 3, 1)
    );
    assert!(close(s.mean_all.precision.unwrap(), 0.9));
    assert!(close(s.mean_positive.iou.unwrap(), (90.0 / 110.0) / 2.0));
}

#[test]
fn length_mismatch_is_an_error() {
    assert!(matches!(
        Confusion::from_masks(&[1, 0], &[1]),
        Err(MetricsError::LengthMismatch { .. })
    ));
}

fn at([_, ny, nx]: [usize; 3], z: usize, y: usize, x: usize) -> usize {
    (z * ny + y) * nx + x
}

#[test]
fn cube_dilation() {
    let dims = [5, 5, 5];
    let mut m = vec![0u8; 125];
    m[at(dims, 2, 2, 2)] = 1;
    let d = dilate_cube(&m, dims, 1).unwrap();
    assert_eq!(d.iter().filter(|&&v| v == 1).count(), 27);
    assert_eq!(d[at(dims, 1, 1, 1)], 1);
    assert_eq!(d[at(dims, 0, 2, 2)], 0);
    assert_eq!(dilate_cube(&m, dims, 0).unwrap(), m);
    let mut corner = vec![0u8; 125];
    corner[0] = 7;
    assert_eq!(
        dilate_cube(&corner, dims, 2)
            .unwrap()
            .iter()
            .filter(|&&v| v == 1)
            .count(),
        27
    );
    assert_eq!(
        dilate_cube(&corner, dims, 10)
            .unwrap()
            .iter()
            .filter(|&&v| v == 1)
            .count(),
        125
    );
    // Anisotropic dims: 2 × 3 × 4, voxel at (1, 2, 3), radius 1 → 2 · 2 · 2.
    let mut a = vec![0u8; 24];
    a[at([2, 3, 4], 1, 2, 3)] = 1;
    assert_eq!(
        dilate_cube(&a, [2, 3, 4], 1)
            .unwrap()
            .iter()
            .filter(|&&v| v == 1)
            .count(),
        8
    );
}
