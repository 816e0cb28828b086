//! The paired Dice difference of two models on the same patches, against hand-computed values.

use std::collections::BTreeMap;

use lungseg_train::metrics::{
    paired_dice, BootstrapConfig, Confusion, OverlapScores, PatchClass, PatchRecord,
};

fn patch(id: &str, scan: &str, nodule: bool, dice: f64) -> PatchRecord {
    PatchRecord {
        id: id.into(),
        scan: scan.into(),
        class: if nodule {
            PatchClass::Nodule
        } else {
            PatchClass::Negative
        },
        diameter_mm: nodule.then_some(8.0),
        confusion: Confusion::default(),
        overlap: OverlapScores {
            dice,
            iou: dice / (2.0 - dice),
            sensitivity: None,
            precision: None,
        },
        fp_volume_mm3: 0.0,
        bad: false,
        score: 0.0,
        needs_review: false,
        mean_entropy: 0.0,
        scores: BTreeMap::new(),
        calibration_roi: None,
        calibration_roi_mean: None,
    }
}

/// Baseline Dice per patch of 10 scans × 2 nodule patches, widely spread, and one negative.
fn baseline() -> Vec<PatchRecord> {
    let mut v: Vec<PatchRecord> = (0..20)
        .map(|i| {
            patch(
                &format!("p{i}"),
                &format!("s{}", i / 2),
                true,
                (i as f64) / 20.0,
            )
        })
        .collect();
    v.push(patch("n0", "s0", false, 0.0));
    v
}

/// The patches of `b`, each with its Dice raised by `gain(patch)`.
fn with_gain(b: &[PatchRecord], gain: impl Fn(&PatchRecord) -> f64) -> Vec<PatchRecord> {
    b.iter()
        .map(|p| {
            let nodule = p.class == PatchClass::Nodule;
            patch(&p.id, &p.scan, nodule, p.overlap.dice + gain(p))
        })
        .collect()
}

#[test]
fn a_constant_gain_has_a_zero_width_interval() {
    let b = baseline();
    // Every nodule patch 0.05 better; the negative patch's Dice does not count.
    let mut c = with_gain(&b, |p| {
        if p.class == PatchClass::Nodule {
            0.05
        } else {
            1.0
        }
    });
    c.reverse(); // order does not matter: patches are matched by id
    let r = paired_dice(&c, &b, &BootstrapConfig::default()).unwrap();
    assert_eq!(r.nodule_patches, 20);
    assert!((r.baseline - 0.475).abs() < 1e-12, "{}", r.baseline);
    assert!((r.candidate - 0.525).abs() < 1e-12, "{}", r.candidate);
    // Unpaired, the two means' intervals would each span ~±0.12 here and overlap; paired,
    // every resample sees the same 0.05.
    let d = r.difference;
    assert!((d.estimate - 0.05).abs() < 1e-12);
    assert!(
        (d.lo - 0.05).abs() < 1e-12 && (d.hi - 0.05).abs() < 1e-12,
        "{d:?}"
    );
    assert_eq!(d.groups, 10);
}

#[test]
fn a_gain_on_one_scan_only_is_not_significant() {
    let b = baseline();
    // Scan s3's two patches gain 0.5 each, nothing else changes: mean gain 1.0 / 20.
    let c = with_gain(&b, |p| {
        if p.scan == "s3" && p.class == PatchClass::Nodule {
            0.5
        } else {
            0.0
        }
    });
    let d = paired_dice(&c, &b, &BootstrapConfig::default())
        .unwrap()
        .difference;
    assert!((d.estimate - 0.05).abs() < 1e-12);
    // Resamples without s3 show no gain at all (about (9/10)^10 = 35 % of them).
    assert!(d.lo.abs() < 1e-12, "{d:?}");
    assert!(d.hi > 0.1, "{d:?}");
}

#[test]
fn different_patch_sets_are_refused() {
    let b = baseline();
    let mut c = b.clone();
    c.pop();
    assert!(paired_dice(&c, &b, &BootstrapConfig::default()).is_err());
    let mut c = b.clone();
    c[0].id = "other".into();
    let e = paired_dice(&c, &b, &BootstrapConfig::default()).unwrap_err();
    assert!(e.to_string().contains("other"), "{e}");
    let mut c = b.clone();
    c[1].scan = "s9".into();
    assert!(paired_dice(&c, &b, &BootstrapConfig::default()).is_err());
}
