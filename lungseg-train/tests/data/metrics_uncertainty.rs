//! AUROC (exact and histogram), UEO and uncertainty means.

use lungseg_train::metrics::uncertainty::{ueo, ueo_max_exact};
use lungseg_train::metrics::{auroc_exact, ScoreHistogram, UncertaintyMeasure};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Small deterministic generator (xorshift64*), uniform in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn auc(s: &[f32], l: &[bool]) -> f64 {
    auroc_exact(s, l).unwrap().unwrap().value
}

#[test]
fn auroc_perfect_inverted_and_worked() {
    let l = [false, false, true, true];
    assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &l), 1.0);
    assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &l), 0.0);
    // Pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, ·) two wins → 3/4.
    assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &l), 0.75);
}

#[test]
fn auroc_ties_count_half() {
    assert_eq!(auc(&[0.5; 4], &[true, false, true, false]), 0.5);
    // pos {0.5, 0.9} vs neg {0.2, 0.5}: 1 + ½ + 1 + 1 = 3.5 of 4.
    assert_eq!(
        auc(&[0.2, 0.5, 0.5, 0.9], &[false, true, false, true]),
        0.875
    );
}

#[test]
fn auroc_random_is_about_half_and_undefined_for_one_class() {
    let mut r = Rng(42);
    let s: Vec<f32> = (0..100_000).map(|_| r.next()).collect();
    let l: Vec<bool> = (0..100_000).map(|_| r.next() < 0.3).collect();
    assert!(close(auc(&s, &l), 0.5, 0.01));
    assert!(auroc_exact(&[0.1, 0.2], &[true, true]).unwrap().is_none());
    assert!(auroc_exact(&[0.1], &[true, false]).is_err());
}

#[test]
fn histogram_auroc_matches_exact_within_its_bound() {
    let mut r = Rng(7);
    let n = 200_000;
    let err: Vec<bool> = (0..n).map(|_| r.next() < 0.05).collect();
    // Errors are more uncertain on average; many exact zeros (confident background) tie.
    let u: Vec<f32> = err
        .iter()
        .map(|&e| {
            let x = r.next();
            if e {
                (0.3 + 0.7 * x).min(1.0)
            } else if x < 0.5 {
                0.0
            } else {
                x * x * 0.6
            }
        })
        .collect();
    let exact = auroc_exact(&u, &err).unwrap().unwrap();
    let mut h = ScoreHistogram::for_measure(UncertaintyMeasure::Entropy);
    for (&v, &e) in u.iter().zip(&err) {
        h.add(v, e);
    }
    let a = h.auroc().unwrap();
    assert!(exact.value > 0.85);
    assert!(
        (a.value - exact.value).abs() <= a.max_abs_error + 1e-12,
        "{a:?} vs {exact:?}"
    );
    assert!(a.max_abs_error < 1e-3, "bound {}", a.max_abs_error);
    assert!(close(a.value, exact.value, 1e-4));
    // A coarse histogram has a larger bound, and still honours it.
    let mut coarse = ScoreHistogram::new(0.0, 1.0, 4).unwrap();
    for (&v, &e) in u.iter().zip(&err) {
        coarse.add(v, e);
    }
    let c = coarse.auroc().unwrap();
    assert!((c.value - exact.value).abs() <= c.max_abs_error + 1e-12);
    assert!(c.max_abs_error > a.max_abs_error);
}

#[test]
fn histogram_ties_and_out_of_range_values() {
    let mut h = ScoreHistogram::new(0.0, 1.0, 10).unwrap();
    for (v, e) in [(0.55, true), (0.55, false), (2.0, true), (-1.0, false)] {
        h.add(v, e);
    }
    // pos {0.55, 1(clamped)} vs neg {0.55, 0(clamped)}: 0.5 + 1 + 1 + 1.
    assert_eq!(h.auroc().unwrap().value, 0.875);
}

// unc = [0.95, 0.85, 0.15, 0.75, 0.25, 0.05], errors at 0, 1, 4 (3 errors).
const U: [f32; 6] = [0.95, 0.85, 0.15, 0.75, 0.25, 0.05];
const E: [bool; 6] = [true, true, false, false, true, false];

#[test]
fn ueo_at_a_stated_threshold() {
    // u ≥ 0.5 flags {0, 1, 3}: overlap 2 → 2·2 / (3 + 3).
    assert!(close(ueo(&U, &E, 0.5).unwrap().unwrap(), 4.0 / 6.0, 1e-12));
    assert_eq!(ueo(&U, &[false; 6], 0.5).unwrap(), None);
}

#[test]
fn ueo_maximised_over_thresholds() {
    // t = 0.95: 2/4, 0.85: 4/5, 0.75: 4/6, 0.25: 6/7 (max), 0.15: 6/8, 0.05: 6/9.
    let (v, t) = ueo_max_exact(&U, &E).unwrap().unwrap();
    assert!(close(v, 6.0 / 7.0, 1e-12));
    assert_eq!(t, 0.25);
    let mut h = ScoreHistogram::new(0.0, 1.0, 10).unwrap();
    for (&u, &e) in U.iter().zip(&E) {
        h.add(u, e);
    }
    let (hv, ht) = h.ueo_max().unwrap();
    assert!(close(hv, 6.0 / 7.0, 1e-12));
    assert!(close(f64::from(ht), 0.2, 1e-6));
    assert!(close(h.ueo_at_bin(5).unwrap(), 4.0 / 6.0, 1e-12));
}

#[test]
fn means_and_ratio() {
    let mut h = ScoreHistogram::for_measure(UncertaintyMeasure::Variance);
    for (v, e) in [(0.2, true), (0.1, true), (0.01, false), (0.03, false)] {
        h.add(v, e);
    }
    let s = h.summary(UncertaintyMeasure::Variance);
    assert!(close(s.mean_incorrect.unwrap(), 0.15, 1e-7));
    assert!(close(s.mean_correct.unwrap(), 0.02, 1e-7));
    assert!(close(s.ratio.unwrap(), 7.5, 1e-5));
    assert_eq!((s.n_incorrect, s.n_correct), (2, 2));
    assert_eq!(s.auroc.unwrap().value, 1.0);
}

#[test]
fn density_is_normalised() {
    let mut h = ScoreHistogram::for_measure(UncertaintyMeasure::Entropy);
    for (v, e) in [(0.11, false), (0.12, false), (0.95, true)] {
        h.add(v, e);
    }
    let d = h.density(UncertaintyMeasure::Entropy, 10);
    assert_eq!(d.edges.len(), 11);
    assert!(close(d.correct.iter().sum(), 1.0, 1e-12));
    assert_eq!(d.correct[1], 1.0);
    assert_eq!(d.incorrect[9], 1.0);
}
