//! The streaming accumulator agrees with the direct, all-voxels-in-memory computations.

use lungseg_train::metrics::{
    auroc_exact, Confusion, EvalAccumulator, EvalConfig, EvalMetrics, PatchClass, PatchInput,
    UncertaintyMeasure,
};

const N: usize = 16;
const DIMS: [usize; 3] = [N, N, N];

struct Patch {
    gt: Vec<u8>,
    prob: Vec<f32>,
    ent: Vec<f32>,
    mi: Vec<f32>,
    var: Vec<f32>,
}

fn bits(p: f32) -> f32 {
    let h = |q: f32| if q <= 0.0 { 0.0 } else { -q * q.log2() };
    (h(p) + h(1.0 - p)).clamp(0.0, 1.0)
}

/// Sphere of radius `r` (none if 0); the model's probability is a sigmoid of the
/// distance to a sphere of radius `r_pred`, offset by `shift` voxels.
fn patch(r: f32, r_pred: f32, shift: f32) -> Patch {
    let c = N as f32 / 2.0;
    let mut p = Patch {
        gt: vec![],
        prob: vec![],
        ent: vec![],
        mi: vec![],
        var: vec![],
    };
    for i in 0..N * N * N {
        let (z, y, x) = ((i / (N * N)) as f32, ((i / N) % N) as f32, (i % N) as f32);
        let d = ((z - c).powi(2) + (y - c).powi(2) + (x - c - shift).powi(2)).sqrt();
        let dg = ((z - c).powi(2) + (y - c).powi(2) + (x - c).powi(2)).sqrt();
        p.gt.push(u8::from(r > 0.0 && dg <= r));
        let q = if r_pred > 0.0 {
            1.0 / (1.0 + (2.0 * (d - r_pred)).exp())
        } else {
            0.001
        };
        p.prob.push(q);
        p.ent.push(bits(q));
        p.mi.push(0.5 * bits(q));
        p.var.push(q * (1.0 - q) * 0.5);
    }
    p
}

/// The accumulator's input for `p`: 1 mm³ voxels, no diameter, the mean entropy as score
/// (flagged above 0.02), the MC map as the deterministic one.
fn input<'a>(p: &'a Patch, id: &'a str, scan: &'a str, centred_on_nodule: bool) -> PatchInput<'a> {
    let score = p.ent.iter().sum::<f32>() / p.ent.len() as f32;
    PatchInput {
        id,
        scan,
        dims: DIMS,
        spacing_mm: [1.0; 3],
        centred_on_nodule,
        diameter_mm: None,
        gt: &p.gt,
        prob: &p.prob,
        mask: None,
        calibrated: None,
        entropy: &p.ent,
        mutual_info: &p.mi,
        variance: &p.var,
        score,
        needs_review: score > 0.02,
        det_prob: &p.prob,
        scores: &[],
    }
}

fn run(patches: &[Patch], cfg: EvalConfig) -> EvalMetrics {
    let mut acc = EvalAccumulator::new(cfg).unwrap();
    for (k, p) in patches.iter().enumerate() {
        let rec = acc
            .add_patch(&input(p, &format!("p{k}"), "scan", true))
            .unwrap();
        assert_eq!(
            rec.confusion,
            Confusion::from_probs(&p.gt, &p.prob, 0.5).unwrap()
        );
    }
    acc.finish().unwrap()
}

fn patches() -> Vec<Patch> {
    vec![
        patch(4.0, 4.0, 0.0),
        patch(3.0, 3.5, 1.5),
        patch(0.0, 0.0, 0.0),
        patch(2.0, 0.0, 0.0),
    ]
}

/// Voxels within Chebyshev distance `r` of a ground-truth voxel, or predicted foreground.
fn chebyshev_roi(gt: &[u8], prob: &[f32], r: i64) -> Vec<bool> {
    let n = N as i64;
    let at = |z: i64, y: i64, x: i64| ((z * n + y) * n + x) as usize;
    let mut roi: Vec<bool> = prob.iter().map(|&q| q >= 0.5).collect();
    for z in 0..n {
        for y in 0..n {
            for x in 0..n {
                let near = (-r..=r).any(|dz| {
                    (-r..=r).any(|dy| {
                        (-r..=r).any(|dx| {
                            let (zz, yy, xx) = (z + dz, y + dy, x + dx);
                            (0..n).contains(&zz)
                                && (0..n).contains(&yy)
                                && (0..n).contains(&xx)
                                && gt[at(zz, yy, xx)] != 0
                        })
                    })
                });
                roi[at(z, y, x)] |= near;
            }
        }
    }
    roi
}

/// ECE (foreground probability, equal-width bins, p = 1 in the last bin), Brier score and
/// bin counts of (probability, label) pairs.
fn direct_calibration(py: &[(f64, f64)], bins: usize) -> (f64, f64, Vec<u64>) {
    let mut members: Vec<Vec<(f64, f64)>> = vec![vec![]; bins];
    for &(p, y) in py {
        members[((p * bins as f64) as usize).min(bins - 1)].push((p, y));
    }
    let n = py.len() as f64;
    let ece = members
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let k = b.len() as f64;
            let conf = b.iter().map(|v| v.0).sum::<f64>() / k;
            let freq = b.iter().map(|v| v.1).sum::<f64>() / k;
            k / n * (freq - conf).abs()
        })
        .sum();
    let brier = py.iter().map(|(p, y)| (p - y).powi(2)).sum::<f64>() / n;
    (ece, brier, members.iter().map(|b| b.len() as u64).collect())
}

#[test]
fn streaming_matches_direct_computation() {
    let ps = patches();
    let m = run(&ps, EvalConfig::default());
    assert_eq!(m.n_patches, 4);
    assert_eq!(m.patches[2].overlap.dice, 1.0); // clean negative
    assert_eq!(m.patches[3].overlap.dice, 0.0); // missed nodule
    assert!(m.overlap.pooled.dice != m.overlap.pooled.iou);

    // Direct: all voxels of all patches in memory, with the ROI (ground truth within a
    // Chebyshev distance of 3 voxels, or predicted foreground) and the calibration
    // formulas written out here rather than through the helpers under test.
    let (mut u, mut e, mut u_roi, mut e_roi) = (vec![], vec![], vec![], vec![]);
    let mut roi_py: Vec<(f64, f64)> = vec![];
    for p in &ps {
        let roi = chebyshev_roi(&p.gt, &p.prob, 3);
        for (i, &g) in p.gt.iter().enumerate() {
            let err = (g != 0) != (p.prob[i] >= 0.5);
            u.push(p.ent[i]);
            e.push(err);
            if roi[i] {
                u_roi.push(p.ent[i]);
                e_roi.push(err);
                roi_py.push((f64::from(p.prob[i]), f64::from(g != 0)));
            }
        }
    }
    let (ece, brier, counts) = direct_calibration(&roi_py, 15);
    let c = &m.calibration_roi;
    assert_eq!(c.voxels as usize, roi_py.len());
    assert!(
        (c.ece.unwrap() - ece).abs() < 1e-9,
        "ECE {:?} vs {ece}",
        c.ece
    );
    assert!(
        (c.brier.unwrap() - brier).abs() < 1e-9,
        "Brier {:?} vs {brier}",
        c.brier
    );
    assert_eq!(c.bins.iter().map(|b| b.count).collect::<Vec<_>>(), counts);
    assert!(ece > 0.0 && counts.iter().filter(|&&n| n > 0).count() > 3);
    for (roi, uu, ee) in [(false, &u, &e), (true, &u_roi, &e_roi)] {
        let exact = auroc_exact(uu, ee).unwrap().unwrap();
        let s = m.uncertainty(UncertaintyMeasure::Entropy, roi).unwrap();
        let a = s.auroc.unwrap();
        assert!((a.value - exact.value).abs() <= a.max_abs_error + 1e-12);
        assert!(
            (a.value - exact.value).abs() < 1e-3,
            "{roi}: {} vs {}",
            a.value,
            exact.value
        );
        assert_eq!(s.n_incorrect as usize, ee.iter().filter(|&&x| x).count());
        let mean_err = uu
            .iter()
            .zip(ee.iter())
            .filter(|p| *p.1)
            .map(|p| f64::from(*p.0))
            .sum::<f64>()
            / s.n_incorrect as f64;
        assert!((s.mean_incorrect.unwrap() - mean_err).abs() < 1e-9);
    }
    assert_eq!(m.calibration_all.voxels as usize, 4 * N * N * N);
    assert_eq!(m.referral.as_ref().unwrap().points[0].n_retained, 4);
    assert_eq!(m.review.tp + m.review.fp + m.review.fn_ + m.review.tn, 4);
    assert_eq!(m.histograms_roi.len(), 4);
}

#[test]
fn metrics_round_trip_through_json() {
    let m = run(
        &patches(),
        EvalConfig {
            hist_bins: 1024,
            ..EvalConfig::default()
        },
    );
    let text = serde_json::to_string(&m).unwrap();
    let back: EvalMetrics = serde_json::from_str(&text).unwrap();
    assert_eq!(back.n_patches, m.n_patches);
    assert_eq!(back.overlap, m.overlap);
}

#[test]
fn wrong_sizes_are_rejected() {
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    let p = patch(3.0, 3.0, 0.0);
    let short = &p.var[..10];
    let input = PatchInput {
        variance: short,
        ..input(&p, "bad", "scan", true)
    };
    assert!(acc.add_patch(&input).is_err());
    let input = PatchInput {
        variance: &p.var,
        det_prob: short,
        ..input
    };
    assert!(acc.add_patch(&input).is_err());
    assert!(EvalAccumulator::new(EvalConfig {
        calibration_bins: 0,
        ..EvalConfig::default()
    })
    .is_err());
}

/// `dice_by_size` bins the nodule patches by diameter (lower edge inclusive), leaves out
/// patches without a nodule or a diameter, and averages each bin's Dice.
#[test]
fn dice_by_size_bins_nodule_patches_by_diameter() {
    let cases: [(Patch, Option<f64>); 6] = [
        (patch(4.0, 4.0, 0.0), Some(8.0)),
        (patch(2.0, 0.0, 0.0), Some(4.0)),
        (patch(3.0, 3.5, 1.5), Some(20.0)),
        (patch(3.0, 3.0, 1.0), Some(29.9)),
        (patch(4.0, 3.0, 0.0), Some(35.0)),
        (patch(0.0, 0.0, 0.0), None),
    ];
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    let mut dice = Vec::new();
    for (k, (p, diameter_mm)) in cases.iter().enumerate() {
        let rec = acc
            .add_patch(&PatchInput {
                diameter_mm: *diameter_mm,
                ..input(p, &format!("p{k}"), &format!("scan{}", k % 3), true)
            })
            .unwrap();
        dice.push(rec.overlap.dice);
    }
    let rows = acc.finish().unwrap().headline.dice_by_size;
    let edges: Vec<(f64, Option<f64>)> = rows.iter().map(|r| (r.lo_mm, r.hi_mm)).collect();
    assert_eq!(
        edges,
        [
            (0.0, Some(6.0)),
            (6.0, Some(10.0)),
            (10.0, Some(20.0)),
            (20.0, Some(30.0)),
            (30.0, None)
        ]
    );
    let n: Vec<usize> = rows.iter().map(|r| r.patches).collect();
    assert_eq!(n, [1, 1, 0, 2, 1]);
    let est = |b: usize| rows[b].dice.map(|i| i.estimate);
    assert_eq!(est(0), Some(dice[1]));
    assert_eq!(est(1), Some(dice[0]));
    assert_eq!(est(2), None);
    assert!((est(3).unwrap() - (dice[2] + dice[3]) / 2.0).abs() < 1e-12);
    assert_eq!(est(4), Some(dice[4]));
    assert!(dice[2] != dice[3] && dice[0] > 0.9 && dice[1] == 0.0);
}

/// A patch cut away from any nodule whose ground truth clips one (a sliver the model misses)
/// is neither a missed nodule nor a negative with a false positive: it is kept out of the
/// nodule Dice, the negatives' false-positive volume and the bad patches, and counted apart.
/// Counted as a nodule patch, it would pull the mean Dice from 0.9+ towards 0.5 here.
#[test]
fn partial_patches_are_in_no_nodule_or_negative_statistic() {
    let (nodule, negative, sliver) = (
        patch(4.0, 4.0, 0.0),
        patch(0.0, 2.0, 0.0),
        patch(2.0, 0.0, 0.0),
    );
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    let classes: Vec<PatchClass> = [
        ("nodule", &nodule, true),
        ("negative", &negative, false),
        ("sliver", &sliver, false),
    ]
    .iter()
    .map(|&(id, p, centred)| acc.add_patch(&input(p, id, id, centred)).unwrap().class)
    .collect();
    assert_eq!(
        classes,
        [
            PatchClass::Nodule,
            PatchClass::Negative,
            PatchClass::Partial
        ]
    );
    let m = acc.finish().unwrap();
    let h = &m.headline;
    let dice_of = |id: &str| m.patches.iter().find(|p| p.id == id).unwrap().overlap.dice;
    let fp_of = |id: &str| m.patches.iter().find(|p| p.id == id).unwrap().fp_volume_mm3;
    assert!(dice_of("nodule") > 0.9 && dice_of("sliver") == 0.0);
    assert!(fp_of("negative") > 14.2);
    assert_eq!(
        (
            h.n_nodule_patches,
            h.n_negative_patches,
            h.n_partial_patches
        ),
        (1, 1, 1)
    );
    assert_eq!(h.dice_nodules.unwrap().estimate, dice_of("nodule"));
    assert_eq!(
        h.fp_volume_negatives_mm3.unwrap().estimate,
        fp_of("negative")
    );
    assert_eq!(h.dice_partial.unwrap().estimate, 0.0);
    // The negative's false positive is bad; the missed sliver is not.
    let bad: Vec<&str> = m
        .patches
        .iter()
        .filter(|p| p.bad)
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(bad, ["negative"]);
    assert_eq!(h.n_bad, 1);
    assert_eq!(m.review.tp + m.review.fn_, 1);
}

/// A map that halves every probability: anything but the identity.
fn halved(ps: &[Patch]) -> Vec<Vec<f32>> {
    ps.iter()
        .map(|p| p.prob.iter().map(|q| q * 0.5).collect())
        .collect()
}

/// The metrics of `ps` with `halved` as their calibrated probabilities; `at(k)` gives patch
/// `k`'s scan and whether it is cut around a nodule.
fn run_halved(
    ps: &[Patch],
    halved: &[Vec<f32>],
    at: impl Fn(usize) -> (&'static str, bool),
) -> EvalMetrics {
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    for (k, p) in ps.iter().enumerate() {
        let (id, (scan, centred)) = (format!("p{k}"), at(k));
        let with = PatchInput {
            calibrated: Some(&halved[k]),
            ..input(p, &id, scan, centred)
        };
        acc.add_patch(&with).unwrap();
    }
    acc.finish().unwrap()
}

/// With calibrated probabilities, calibration is measured on them (over the same ROI, which
/// the mean's mask draws) and the mean's own calibration is kept apart; the masks, and so the
/// overlap, stay the mean's. Mixing patches with and without is refused.
#[test]
fn calibrated_probabilities_are_what_calibration_measures() {
    let ps = patches();
    let halved = halved(&ps);
    let m = run_halved(&ps, &halved, |_| ("scan", true));
    let plain = run(&ps, EvalConfig::default());
    assert_eq!(m.overlap, plain.overlap, "masks are the mean's");
    assert_eq!(
        m.calibration_roi_mean.as_ref(),
        Some(&plain.calibration_roi)
    );
    assert_eq!(
        m.calibration_all_mean.as_ref(),
        Some(&plain.calibration_all)
    );
    assert_eq!(plain.calibration_roi_mean, None);
    let mut roi_py: Vec<(f64, f64)> = vec![];
    for (p, h) in ps.iter().zip(&halved) {
        let roi = chebyshev_roi(&p.gt, &p.prob, 3);
        for (i, &g) in p.gt.iter().enumerate() {
            if roi[i] {
                roi_py.push((f64::from(h[i]), f64::from(g != 0)));
            }
        }
    }
    let (ece, _, _) = direct_calibration(&roi_py, 15);
    let got = m.calibration_roi.ece.unwrap();
    assert!((got - ece).abs() < 1e-9, "ECE {got} vs {ece}");
    assert!((got - plain.calibration_roi.ece.unwrap()).abs() > 1e-3);
    let json = serde_json::to_string(&m).unwrap();
    let back: EvalMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.calibration_roi_mean.map(|c| c.voxels),
        Some(plain.calibration_roi.voxels)
    );
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("calibration_roi_mean"));

    let mut mixed = EvalAccumulator::new(EvalConfig::default()).unwrap();
    mixed.add_patch(&input(&ps[0], "a", "scan", true)).unwrap();
    let with = PatchInput {
        calibrated: Some(&halved[1]),
        ..input(&ps[1], "b", "scan", true)
    };
    assert!(mixed.add_patch(&with).is_err());
}

/// The ROI ECE's interval resamples scans. With two scans A and B every resample is AA, AB or
/// BB (each drawn about 25, 50 and 25 % of the time), so the percentile interval runs from
/// the least to the largest of ECE(A), ECE(A ∪ B) and ECE(B), computed here directly from the
/// voxels. The mean's interval is kept apart once a map gives the reported probabilities.
#[test]
fn roi_ece_interval_resamples_scans() {
    let ps = patches();
    let scans = ["a", "a", "b", "b"];
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    for (k, p) in ps.iter().enumerate() {
        acc.add_patch(&input(p, &format!("p{k}"), scans[k], k < 2))
            .unwrap();
    }
    let m = acc.finish().unwrap();
    let roi_py = |which: &[usize]| {
        let mut v: Vec<(f64, f64)> = vec![];
        for &k in which {
            let p = &ps[k];
            let roi = chebyshev_roi(&p.gt, &p.prob, 3);
            for (i, &g) in p.gt.iter().enumerate() {
                if roi[i] {
                    v.push((f64::from(p.prob[i]), f64::from(g != 0)));
                }
            }
        }
        direct_calibration(&v, 15).0
    };
    let (a, b, ab) = (roi_py(&[0, 1]), roi_py(&[2, 3]), roi_py(&[0, 1, 2, 3]));
    let i = m.headline.ece_roi.expect("an interval");
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    assert!(close(i.estimate, ab), "{i:?} vs {ab}");
    assert!(close(i.lo, a.min(b).min(ab)), "{i:?}: {a} {ab} {b}");
    assert!(close(i.hi, a.max(b).max(ab)), "{i:?}: {a} {ab} {b}");
    assert!(i.hi - i.lo > 0.01, "the two scans differ: {a} vs {b}");
    assert_eq!((i.groups, i.resamples), (2, 2000));
    assert_eq!(m.headline.ece_roi_mean, None, "no map, no second row");

    // With a map, the reported interval is the map's and the mean's is the plain one.
    let mapped = run_halved(&ps, &halved(&ps), |k| (scans[k], k < 2));
    assert_eq!(mapped.headline.ece_roi_mean, Some(i));
    let reported = mapped.headline.ece_roi.unwrap();
    assert!(close(
        reported.estimate,
        mapped.calibration_roi.ece.unwrap()
    ));
    assert!((reported.estimate - i.estimate).abs() > 1e-3);
}

/// The engine's final mask, when given, is the mask scored (a second look's), not a cut of
/// the mean; a mask of the wrong length is refused.
#[test]
fn a_given_final_mask_is_what_is_scored() {
    let p = patch(4.0, 3.0, 0.0);
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    let cut = acc
        .add_patch(&input(&p, "cut", "scan", true))
        .unwrap()
        .confusion;
    assert_eq!(cut, Confusion::from_probs(&p.gt, &p.prob, 0.5).unwrap());
    assert!(cut.fn_ > 0, "the mean's cut misses part of the nodule");
    let given = PatchInput {
        mask: Some(&p.gt),
        ..input(&p, "given", "scan", true)
    };
    let rec = acc.add_patch(&given).unwrap().confusion;
    assert_eq!((rec.fp, rec.fn_), (0, 0));
    assert_eq!(rec, Confusion::from_masks(&p.gt, &p.gt).unwrap());
    let short = PatchInput {
        mask: Some(&p.gt[1..]),
        ..input(&p, "short", "scan", true)
    };
    assert!(acc.add_patch(&short).is_err());
}
