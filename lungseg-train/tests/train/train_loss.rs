//! Dice + BCE, the hard Dice metric and the learning-rate schedule against hand-computed values.

use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::metrics::Confusion;
use lungseg_train::train::learning_rate;
use lungseg_train::train::loss::{dice_bce, dice_bce_with, DiceLoss};

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

/// `b` patches of 1×1×2×2 voxels.
fn batch(v: &[f32], b: usize) -> Tensor<5> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), [b, 1, 1, 2, 2]),
        &Device::flex(),
    )
}

/// One 1×1×2×2 patch: logits and target.
type Patch = ([f32; 4], [f32; 4]);

/// The Dice term of the loss on the batch of `patches`.
fn dice_term(patches: &[Patch], kind: DiceLoss) -> f64 {
    let l: Vec<f32> = patches.iter().flat_map(|p| p.0).collect();
    let t: Vec<f32> = patches.iter().flat_map(|p| p.1).collect();
    let b = patches.len();
    let loss = dice_bce_with(batch(&l, b), batch(&t, b), kind);
    f64::from(loss.dice.into_scalar::<f32>())
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

/// σ = 0.5, 0.75, 0.25, 0.5 against 1, 1, 0, 0: soft Dice (2·1.25 + 1) / (4 + 1) = 0.7.
fn patch_a() -> Patch {
    let ln3 = 3f32.ln();
    ([0.0, ln3, -ln3, 0.0], [1.0, 1.0, 0.0, 0.0])
}

/// σ = 0.5 everywhere, empty target: Σσ = 2.
const PATCH_B: Patch = ([0.0; 4], [0.0; 4]);

#[test]
fn per_patch_dice_averages_the_patches_with_foreground() {
    let (a, b) = (patch_a(), PATCH_B);
    // Patch C: σ = 0.5 everywhere against one voxel: (2·0.5 + 1) / (2 + 1 + 1) = 0.5.
    let c = ([0.0; 4], [1.0, 0.0, 0.0, 0.0]);
    // The empty patch does not count per patch; pooled, its probabilities join the
    // denominator: (2·1.25 + 1) / (2 + 2 + 2 + 1) = 0.5.
    close(dice_term(&[a, b], DiceLoss::PerPatch), 1.0 - 0.7);
    close(dice_term(&[a, b], DiceLoss::Pooled), 1.0 - 0.5);
    // Two lesions count once each: mean of 0.3 and 0.5; pooled they are one ratio,
    // (2·1.75 + 1) / (6 + 3 + 1) = 0.45.
    close(dice_term(&[a, b, c], DiceLoss::PerPatch), (0.3 + 0.5) / 2.0);
    close(dice_term(&[a, b, c], DiceLoss::Pooled), 1.0 - 0.45);
    // No foreground in the batch: no Dice term (BCE alone), not a division by zero.
    close(dice_term(&[b, b], DiceLoss::PerPatch), 0.0);
    // One patch: both forms are the same ratio.
    close(
        dice_term(&[a], DiceLoss::PerPatch),
        dice_term(&[a], DiceLoss::Pooled),
    );
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

#[test]
fn per_patch_fp_charges_the_blob_on_a_negative_patch() {
    use lungseg_train::train::loss::NEGATIVE_FP_SCALE_VOXELS as V0;
    // Patch A: 1 − 0.7 = 0.3; patch B: S = 2.
    let (a, b) = (patch_a(), PATCH_B);
    // Patch E: σ = 0.75 everywhere, empty target: a larger blob, S = 3.
    let e = ([3f32.ln(); 4], [0.0; 4]);
    close(
        dice_term(&[a, b], DiceLoss::PerPatchFp),
        (0.3 + 2.0 / (2.0 + V0)) / 2.0,
    );
    // The larger blob costs more; the per-patch Dice does not see either.
    close(
        dice_term(&[a, e], DiceLoss::PerPatchFp),
        (0.3 + 3.0 / (3.0 + V0)) / 2.0,
    );
    close(dice_term(&[a, e], DiceLoss::PerPatch), 0.3);
    // A blob of V₀ voxels costs its patch what a nodule at soft Dice 0.5 costs.
    assert!((V0 - std::f64::consts::PI / 6.0 * 27.0).abs() < 1e-12);
    // Only negatives: the mean of their fractions.
    close(
        dice_term(&[b, e], DiceLoss::PerPatchFp),
        (2.0 / (2.0 + V0) + 3.0 / (3.0 + V0)) / 2.0,
    );
    // Only positives: the per-patch Dice.
    close(
        dice_term(&[a, a], DiceLoss::PerPatchFp),
        dice_term(&[a, a], DiceLoss::PerPatch),
    );
}
