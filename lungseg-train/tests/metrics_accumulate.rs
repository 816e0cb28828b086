//! The streaming accumulator agrees with the direct, all-voxels-in-memory computations.

mod metrics_accumulate {
    use lungseg_train::metrics::morphology::dilate_cube;
    use lungseg_train::metrics::{
        auroc_exact, CalibrationAccumulator, Confusion, EvalAccumulator, EvalConfig, EvalMetrics,
        PatchInput, UncertaintyMeasure,
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

    fn run(patches: &[Patch], cfg: EvalConfig) -> EvalMetrics {
        let mut acc = EvalAccumulator::new(cfg).unwrap();
        for (k, p) in patches.iter().enumerate() {
            let score = p.ent.iter().sum::<f32>() / p.ent.len() as f32;
            let rec = acc
                .add_patch(&PatchInput {
                    id: &format!("p{k}"),
                    dims: DIMS,
                    gt: &p.gt,
                    prob: &p.prob,
                    entropy: &p.ent,
                    mutual_info: &p.mi,
                    variance: &p.var,
                    score,
                    needs_review: score > 0.02,
                })
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

    #[test]
    fn streaming_matches_direct_computation() {
        let ps = patches();
        let m = run(&ps, EvalConfig::default());
        assert_eq!(m.n_patches, 4);
        assert_eq!(m.patches[2].overlap.dice, 1.0); // clean negative
        assert_eq!(m.patches[3].overlap.dice, 0.0); // missed nodule
        assert!(m.overlap.pooled.dice != m.overlap.pooled.iou);

        // Direct: all voxels of all patches in memory.
        let (mut u, mut e, mut u_roi, mut e_roi) = (vec![], vec![], vec![], vec![]);
        let mut cal = CalibrationAccumulator::new(15).unwrap();
        for p in &ps {
            let mut roi = dilate_cube(&p.gt, DIMS, 3).unwrap();
            for (r, &q) in roi.iter_mut().zip(&p.prob) {
                *r |= u8::from(q >= 0.5);
            }
            cal.add_patch(&p.gt, &p.prob, Some(&roi)).unwrap();
            for (i, &g) in p.gt.iter().enumerate() {
                let err = (g != 0) != (p.prob[i] >= 0.5);
                u.push(p.ent[i]);
                e.push(err);
                if roi[i] != 0 {
                    u_roi.push(p.ent[i]);
                    e_roi.push(err);
                }
            }
        }
        assert_eq!(m.calibration_roi, cal.summary());
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
        assert_eq!(m.histograms_roi.len(), 3);
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
            id: "bad",
            dims: DIMS,
            gt: &p.gt,
            prob: &p.prob,
            entropy: &p.ent,
            mutual_info: &p.mi,
            variance: short,
            score: 0.0,
            needs_review: false,
        };
        assert!(acc.add_patch(&input).is_err());
        assert!(EvalAccumulator::new(EvalConfig {
            calibration_bins: 0,
            ..EvalConfig::default()
        })
        .is_err());
    }
}
