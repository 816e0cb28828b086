//! Dice + BCE, the hard Dice metric and the learning-rate schedule against hand-computed values.

use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::metrics::Confusion;
use lungseg_train::train::learning_rate;
use lungseg_train::train::loss::dice_bce;

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
    // Training validation counts through the metrics layer: logit >= 0 is p >= 0.5.
    let o = Confusion::from_logits(
        &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        &[1.0, 1.0, -1.0, -1.0, 0.5, 0.0],
    )
    .unwrap();
    assert_eq!(
        o,
        Confusion {
            tp: 2,
            fp: 2,
            fn_: 1,
            tn: 1
        }
    );
    assert!((o.dice() - 4.0 / 7.0).abs() < 1e-12);
    assert_eq!(
        Confusion::from_logits(&[0.0], &[-1.0]).unwrap().dice(),
        1.0,
        "both empty is a perfect match"
    );
    assert!(Confusion::from_logits(&[0.0], &[]).is_err());
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
