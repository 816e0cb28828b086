//! Models that would give non-finite numbers or huge workspaces are refused at open; a
//! prediction never reports a non-finite result as a confident one.

mod common;

use common::*;
use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::{Model, ModelOptions};
use lungseg::ErrorKind;

const SMALL: &str = r#"{"channels":[4,8],"patch_size":[8,8,8]}"#;

/// The small formula model with tensor `name` replaced by `value` everywhere.
fn with_constant(config: &str, name: &str, value: f32) -> Vec<u8> {
    let mut t = synth_tensors(&[4, 8]);
    let e = t.iter_mut().find(|t| t.name == name).unwrap();
    let n = e.shape.iter().product();
    *e = f32_tensor(name, &e.shape.clone(), &vec![value; n]);
    write_safetensors(&t, &standard_meta(config))
}

fn open_err(bytes: &[u8]) -> lungseg::Error {
    Model::from_bytes(bytes).unwrap_err()
}

#[test]
fn overflowing_folded_weights_are_refused_at_open() {
    // γ/√(σ²+ε) with γ = 3e38, σ² = 0, ε = 1e-5 is ~1e41: finite in f64, inf in f32.
    let mut t = synth_tensors(&[4, 8]);
    for (name, v) in [
        ("enc.1.bn2.weight", 3.0e38f32),
        ("enc.1.bn2.running_var", 0.0),
    ] {
        let e = t.iter_mut().find(|t| t.name == name).unwrap();
        *e = f32_tensor(name, &[8], &[v; 8]);
    }
    let e = open_err(&write_safetensors(&t, &standard_meta(SMALL)));
    assert_eq!(e.kind, ErrorKind::Format, "{e}");
    assert!(
        e.message.contains("enc.1.conv2.weight") && e.message.contains("enc.1.bn2"),
        "{e}"
    );
    assert!(e.message.contains("not finite"), "{e}");
}

#[test]
fn non_positive_bn_eps_is_refused() {
    for eps in ["0", "-1e-5", "0.0"] {
        let cfg = format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"bn_eps":{eps}}}"#);
        let e = open_err(&synth_model_bytes(&cfg));
        assert_eq!(e.kind, ErrorKind::Format, "{eps}: {e}");
        assert!(e.message.contains("bn_eps"), "{e}");
    }
    // bn_eps = 0 with a zero running variance would divide by zero.
    let cfg = r#"{"channels":[4,8],"patch_size":[8,8,8],"bn_eps":0}"#;
    let e = open_err(&with_constant(cfg, "enc.0.bn1.running_var", 0.0));
    assert!(e.message.contains("bn_eps"), "{e}");
}

/// Finite weights whose activations overflow f32 (positive convs, γ = 1e15 per layer): the
/// prediction must fail instead of returning a probability map and `needs_review = false`.
#[test]
fn non_finite_activations_are_an_error_not_a_certain_answer() {
    let mut t = synth_tensors(&[4, 8]);
    for e in t.iter_mut() {
        let bn_gamma = e.name.contains(".bn") && e.name.ends_with(".weight");
        let conv_w = e.name.contains(".conv") && e.name.ends_with(".weight");
        if bn_gamma || conv_w {
            let v: Vec<f32> = e
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()).abs())
                .map(|x| if bn_gamma { 1.0e15 } else { x })
                .collect();
            *e = f32_tensor(&e.name.clone(), &e.shape.clone(), &v);
        }
    }
    let m = Model::from_bytes(&write_safetensors(&t, &standard_meta(SMALL))).unwrap();
    let n = m.config().patch_voxels();
    let input: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 100.0 - 600.0).collect();
    let mut prob = vec![0.0; n];
    let e = predict(&m, &input, &mut prob, 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format, "{e}");
    assert!(e.message.contains("not finite"), "{e}");
    for p in [0.0, 0.3] {
        let cfg = format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"dropout":{{"p":{p}}}}}"#);
        let m = Model::from_bytes(&write_safetensors(&t, &standard_meta(&cfg))).unwrap();
        let r = predict_uncertainty(
            &m,
            &input,
            &McOptions {
                n_samples: 3,
                threads: 2,
                ..McOptions::default()
            },
            UncertaintyMaps::default(),
        );
        let e = r.expect_err("a non-finite network must not give a summary");
        assert!(e.message.contains("not finite"), "{e}");
    }
}

#[test]
fn non_finite_input_patches_are_refused() {
    let m = Model::from_bytes(&synth_model_bytes(SMALL)).unwrap();
    let n = m.config().patch_voxels();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut input = vec![-500.0; n];
        input[17] = bad;
        let mut prob = vec![0.0; n];
        let e = predict(&m, &input, &mut prob, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
        let e = predict_uncertainty(
            &m,
            &input,
            &McOptions::default(),
            UncertaintyMaps::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("voxel 17"), "{e}");
    }
}

/// A few-MB model with a 256³ patch would ask for gigabytes at its first prediction.
#[test]
fn oversized_workspace_is_refused_at_open_unless_allowed() {
    let cfg = r#"{"channels":[8,16,32,64,128],"patch_size":[256,256,256]}"#;
    let bytes = synth_model_bytes(cfg);
    assert!(bytes.len() < 8 << 20, "{} bytes", bytes.len());
    let e = open_err(&bytes);
    assert_eq!(e.kind, ErrorKind::Limit, "{e}");
    assert!(
        e.message.contains("workspace") && e.message.contains("max_workspace_bytes"),
        "{e}"
    );
    let roomy = ModelOptions {
        max_workspace_bytes: 1 << 40,
        ..ModelOptions::default()
    };
    let m = Model::from_bytes_with(&bytes, &roomy).unwrap();
    let need = m.workspace_bytes();
    assert!(need > lungseg::model::DEFAULT_MAX_WORKSPACE_BYTES, "{need}");
    // The limit is inclusive, and one byte less refuses.
    let exact = ModelOptions {
        max_workspace_bytes: need,
        ..ModelOptions::default()
    };
    assert!(Model::from_bytes_with(&bytes, &exact).is_ok());
    let short = ModelOptions {
        max_workspace_bytes: need - 1,
        ..ModelOptions::default()
    };
    assert_eq!(
        Model::from_bytes_with(&bytes, &short).unwrap_err().kind,
        ErrorKind::Limit
    );
}

#[test]
fn default_model_workspace_fits_the_default_limit() {
    let m = Model::from_bytes(&synth_model_bytes(
        r#"{"channels":[4,8,16],"patch_size":[64,64,64]}"#,
    ))
    .unwrap();
    let b = m.workspace_bytes();
    assert!(
        b > 0 && b < lungseg::model::DEFAULT_MAX_WORKSPACE_BYTES,
        "{b}"
    );
}
