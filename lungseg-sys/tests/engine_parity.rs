//! Parity with the PyTorch oracle (`scripts/make_model_fixtures.py`): deterministic forward
//! and MC maps with the documented Philox masks, on every CPU kernel this machine runs.

mod common;

use common::*;
use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::{Model, ModelOptions};
use lungseg::nn::cpu_kernel::CpuKernel;

/// Checks the deterministic pass against PyTorch; returns the probabilities.
fn check_forward(name: &str, model: &Model) -> Vec<f32> {
    let input = read_f32(&format!("{name}.input.f32"));
    let golden = read_f32(&format!("{name}.prob.f32"));
    let mut prob = vec![0.0; input.len()];
    predict(model, &input, &mut prob, 2).unwrap();
    let err = max_abs_diff(&prob, &golden);
    let kernel = model.kernel();
    assert!(err <= 1e-4, "{name} {kernel:?}: max abs error {err}");
    prob
}

/// Runs `check` on the model opened on each kernel; the FMA kernels' forward passes must
/// agree bit for bit.
fn on_every_kernel(open: impl Fn(Option<CpuKernel>) -> Model, check: impl Fn(&Model) -> Vec<f32>) {
    let mut fma: Option<Vec<f32>> = None;
    for k in CpuKernel::available() {
        let prob = check(&open(Some(k)));
        if k == CpuKernel::Portable {
            continue;
        }
        match &fma {
            None => fma = Some(prob),
            Some(f) => assert!(
                f.iter().zip(&prob).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{k:?} differs from another FMA kernel"
            ),
        }
    }
    assert!(fma.is_some() || CpuKernel::best() == CpuKernel::Portable);
}

fn check_mc(name: &str, model: &Model) {
    let side = sidecar(name);
    let input = read_f32(&format!("{name}.input.f32"));
    let n = input.len();
    let (mut mean, mut var, mut ent, mut mi) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let opts = McOptions {
        n_samples: side["n_samples"].as_u64().unwrap() as u32,
        seed: side["seed"].as_u64().unwrap(),
        threads: 2,
        review_threshold: None,
        review_score: None,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        variance: Some(&mut var),
        entropy: Some(&mut ent),
        mutual_info: Some(&mut mi),
    };
    let s = predict_uncertainty(model, &input, &opts, maps).unwrap();
    for (k, got, tol) in [
        ("mc_mean", &mean, 1e-4),
        ("mc_variance", &var, 1e-5),
        ("mc_entropy", &ent, 1e-3),
        ("mc_mutual_info", &mi, 1e-3),
    ] {
        let want = read_f32(&format!("{name}.{k}.f32"));
        let err = max_abs_diff(got, &want);
        let kernel = model.kernel();
        assert!(err <= tol, "{name} {k} {kernel:?}: max abs error {err}");
    }
    assert_eq!(
        s.foreground_voxels,
        side["foreground_voxels"].as_u64().unwrap()
    );
    assert_eq!(s.n_samples, opts.n_samples);
}

#[test]
fn small_channel_dropout_matches_pytorch() {
    on_every_kernel(
        |k| fixture_model_on("small", k),
        |m| {
            check_mc("small", m);
            check_forward("small", m)
        },
    );
}

#[test]
fn dropout_in_some_levels_only_matches_pytorch() {
    for name in ["small_levels", "small_element_levels"] {
        on_every_kernel(
            |k| fixture_model_on(name, k),
            |m| {
                check_mc(name, m);
                check_forward(name, m)
            },
        );
    }
}

#[test]
fn f16_file_written_by_python_element_dropout_matches_pytorch() {
    let path = fixture("small_f16_element.safetensors");
    let open = |k| {
        let opts = ModelOptions {
            cpu_kernel: k,
            ..ModelOptions::default()
        };
        Model::open_with(&path, &opts).unwrap()
    };
    let m = open(None);
    assert_eq!(m.review().threshold, 0.05);
    assert!(m.provenance().contains("synthetic"));
    on_every_kernel(open, |m| {
        check_mc("small_f16_element", m);
        check_forward("small_f16_element", m)
    });
}

#[test]
fn default_model_matches_pytorch() {
    let m = fixture_model("default");
    let params = m.parameter_count();
    assert!((5_500_000..5_700_000).contains(&params), "{params}");
    on_every_kernel(
        |k| fixture_model_on("default", k),
        |m| check_forward("default", m),
    );
}
