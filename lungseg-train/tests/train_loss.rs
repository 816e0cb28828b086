//! Dice + BCE, the hard Dice metric and the learning-rate schedule against hand-computed values.

use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::train::learning_rate;
use lungseg_train::train::loss::{dice_bce, Overlap};

fn t5(v: &[f32]) -> Tensor<5> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), [1, 1, 1, 2, 2]),
        &Device::flex(),
    )
}

#[test]
fn dice_bce_matches_hand_computed_values() {
    // σ(logits) = 0.5, 0.75, 0.25, 0.5; targets 1, 1, 0, 0.
    let ln3 = 3f32.ln();
    let loss = dice_bce(t5(&[0.0, ln3, -ln3, 0.0]), t5(&[1.0, 1.0, 0.0, 0.0]));
    // BCE: (ln 2 + ln 4/3 + ln 4/3 + ln 2) / 4.
    let bce = (2.0 * 2f64.ln() + 2.0 * (4.0f64 / 3.0).ln()) / 4.0;
    // Soft Dice with smoothing 1: (2·1.25 + 1) / (2 + 2 + 1) = 0.7.
    let dice = 1.0 - 0.7;
    let close = |t: Tensor<1>, want: f64| {
        let got = f64::from(t.into_scalar::<f32>());
        assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
    };
    close(loss.bce, bce);
    close(loss.dice, dice);
    close(loss.total, bce + dice);
}

#[test]
fn bce_is_finite_for_huge_logits() {
    let loss = dice_bce(
        t5(&[200.0, -200.0, 200.0, -200.0]),
        t5(&[1.0, 0.0, 0.0, 1.0]),
    );
    let bce = f64::from(loss.bce.into_scalar::<f32>());
    assert!(
        (bce - 100.0).abs() < 1e-3,
        "two of four voxels wrong by 200 nats each: mean {bce}"
    );
}

#[test]
fn hard_dice_counts() {
    let o = Overlap::count(&[1.0, 1.0, -1.0, -1.0, 0.5], &[1.0, 0.0, 1.0, 0.0, 1.0]);
    assert_eq!(
        o,
        Overlap {
            tp: 2,
            pred: 3,
            truth: 3
        }
    );
    assert!((o.dice() - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(
        Overlap::count(&[-1.0], &[0.0]).dice(),
        1.0,
        "both empty is a perfect match"
    );
}

#[test]
fn schedule_warms_up_then_decays_by_cosine() {
    let lr = |s| learning_rate(s, 110, 10, 1e-3, 1e-5);
    assert!((lr(0) - 1e-4).abs() < 1e-12);
    assert!((lr(9) - 1e-3).abs() < 1e-12);
    assert!((lr(10) - 1e-3).abs() < 1e-12);
    assert!((lr(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
    assert!((lr(110) - 1e-5).abs() < 1e-12);
    assert!((1..110).all(|s| s <= 10 || lr(s) <= lr(s - 1)));
}
