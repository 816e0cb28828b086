//! Test-time flips (`config.test_time_flips`): every MC sample of a flipping model is, by
//! definition, the same network's sample on the mirrored patch, mirrored back. Checked here
//! against that definition with the mirror written out plainly (not the library's `Flip`), on
//! a model whose encoder levels without dropout are shared by the samples (recomputed per
//! flip) and on one without.

mod common;

use common::*;
use lungseg::mc::{predict_sample, predict_uncertainty, McOptions, SampleId, UncertaintyMaps};
use lungseg::model::Model;

const SIZE: usize = 16;

/// The same weights with `flips` orientations; `levels`: the dropout levels (JSON list).
fn model(flips: u32, levels: &str) -> Model {
    let cfg = format!(
        r#"{{"channels":[4,8,16],"patch_size":[16,16,16],"dropout":{{"p":0.3,"kind":"channel","levels":{levels}}},"test_time_flips":{flips}}}"#
    );
    Model::from_bytes(&synth_model_bytes(&cfg)).unwrap()
}

/// The patch mirrored along x (bit 0), y (bit 1), z (bit 2) of `f`.
fn mirror(v: &[f32], f: u32) -> Vec<f32> {
    let m = |i: usize, bit: u32| if f & bit != 0 { SIZE - 1 - i } else { i };
    let mut out = vec![0.0; v.len()];
    for z in 0..SIZE {
        for y in 0..SIZE {
            for x in 0..SIZE {
                out[(z * SIZE + y) * SIZE + x] = v[(m(z, 4) * SIZE + m(y, 2)) * SIZE + m(x, 1)];
            }
        }
    }
    out
}

/// An asymmetric patch: a bright blob off centre on a lung-like background.
fn patch() -> Vec<f32> {
    let mut hu = vec![-850.0f32; SIZE * SIZE * SIZE];
    for z in 0..SIZE {
        for y in 0..SIZE {
            for x in 0..SIZE {
                let d2 =
                    (x as f32 - 5.0).powi(2) + (y as f32 - 9.0).powi(2) + (z as f32 - 7.0).powi(2);
                if d2 < 12.0 {
                    hu[(z * SIZE + y) * SIZE + x] = 40.0 - 10.0 * x as f32;
                }
            }
        }
    }
    hu
}

fn sample(m: &Model, hu: &[f32], seed: u64, s: u32, n: u32) -> Vec<f32> {
    let mut p = vec![0f32; hu.len()];
    let id = SampleId {
        seed,
        sample: s,
        n_samples: n,
    };
    predict_sample(m, hu, id, &mut p, 1).unwrap();
    p
}

#[test]
fn each_sample_is_the_plain_sample_of_the_mirrored_patch() {
    let hu = patch();
    for levels in ["[0,1,2]", "[1,2]"] {
        let (flipping, plain) = (model(8, levels), model(1, levels));
        let n = 8;
        let mut sum = vec![0f64; hu.len()];
        for s in 0..n {
            // Eight samples of an eight-flip model: sample s gets flip s.
            let want = mirror(&sample(&plain, &mirror(&hu, s), 5, s, n), s);
            let got = sample(&flipping, &hu, 5, s, n);
            assert_eq!(got, want, "levels {levels} sample {s}");
            for (a, &p) in sum.iter_mut().zip(&got) {
                *a += f64::from(p);
            }
        }
        let mut mean = vec![0f32; hu.len()];
        let opts = McOptions {
            n_samples: n,
            seed: 5,
            threads: 2,
            ..McOptions::default()
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            ..UncertaintyMaps::default()
        };
        predict_uncertainty(&flipping, &hu, &opts, maps).unwrap();
        let worst = mean
            .iter()
            .zip(&sum)
            .map(|(&m, &s)| (f64::from(m) - s / f64::from(n)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "levels {levels}: MC mean off by {worst}");

        // The flips change the result: the test would prove nothing on a symmetric network.
        let mut plain_mean = vec![0f32; hu.len()];
        let maps = UncertaintyMaps {
            mean: Some(&mut plain_mean),
            ..UncertaintyMaps::default()
        };
        predict_uncertainty(&plain, &hu, &opts, maps).unwrap();
        assert!(
            max_abs_diff(&mean, &plain_mean) > 1e-3,
            "levels {levels}: flips did not change the mean"
        );
    }
}

/// Sample s of n gets flip ⌊s · flips / n⌋: a 2-flip model's first half is unflipped, its
/// second half mirrored along x; a deterministic pass never flips.
#[test]
fn samples_split_into_contiguous_flip_groups_and_single_passes_do_not_flip() {
    let hu = patch();
    let (two, plain) = (model(2, "[1,2]"), model(1, "[1,2]"));
    let n = 5;
    for s in 0..n {
        let f = if s < 3 { 0 } else { 1 };
        let want = mirror(&sample(&plain, &mirror(&hu, f), 9, s, n), f);
        assert_eq!(sample(&two, &hu, 9, s, n), want, "sample {s}");
    }
    let (mut a, mut b) = (vec![0f32; hu.len()], vec![0f32; hu.len()]);
    lungseg::mc::predict(&two, &hu, &mut a, 1).unwrap();
    lungseg::mc::predict(&plain, &hu, &mut b, 1).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_sample_outside_its_call_is_refused() {
    let hu = patch();
    let m = model(8, "[1,2]");
    let mut p = vec![0f32; hu.len()];
    for (s, n) in [(3, 3), (0, 0), (0, 2000)] {
        let id = SampleId {
            seed: 1,
            sample: s,
            n_samples: n,
        };
        let e = predict_sample(&m, &hu, id, &mut p, 1).unwrap_err();
        assert_eq!(e.kind, lungseg::error::ErrorKind::InvalidArgument, "{e}");
    }
}
