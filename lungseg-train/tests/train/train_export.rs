//! `export` writes the issue-3 safetensors file: PyTorch names and shapes, metadata.

use crate::common;

use std::collections::BTreeMap;

use burn::tensor::Device;
use lungseg_train::export::{
    export, format_utc, to_safetensors, ExportDtype, ExportOptions, Review,
};
use lungseg_train::model::UNetConfig;
use lungseg_train::train::{train, TrainOptions};
use safetensors::{Dtype, SafeTensors};

/// Every tensor name the format requires for `config`, with its shape.
fn expected(config: &UNetConfig) -> BTreeMap<String, Vec<usize>> {
    let ch = &config.channels;
    let mut m = BTreeMap::new();
    let mut block = |p: String, cin: usize, c: usize| {
        for (conv, bn, ci) in [("conv1", "bn1", cin), ("conv2", "bn2", c)] {
            m.insert(format!("{p}.{conv}.weight"), vec![c, ci, 3, 3, 3]);
            m.insert(format!("{p}.{conv}.bias"), vec![c]);
            for t in ["weight", "bias", "running_mean", "running_var"] {
                m.insert(format!("{p}.{bn}.{t}"), vec![c]);
            }
        }
    };
    for l in 0..ch.len() {
        block(
            format!("enc.{l}"),
            if l == 0 { 1 } else { ch[l - 1] },
            ch[l],
        );
    }
    for (l, &c) in ch[..ch.len() - 1].iter().enumerate() {
        block(format!("dec.{l}"), 2 * c, c);
    }
    for (l, w) in ch.windows(2).enumerate() {
        m.insert(format!("dec.{l}.up.weight"), vec![w[1], w[0], 2, 2, 2]);
        m.insert(format!("dec.{l}.up.bias"), vec![w[0]]);
    }
    m.insert("head.weight".into(), vec![1, ch[0], 1, 1, 1]);
    m.insert("head.bias".into(), vec![1]);
    m
}

/// Every tensor name in the file, with its shape.
fn shapes(st: &SafeTensors) -> BTreeMap<String, Vec<usize>> {
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect()
}

#[test]
fn default_model_exports_every_name_and_shape() {
    let _rng = common::rng_lock();
    let config = UNetConfig::default();
    let model = config.init(&Device::flex());
    let bytes = to_safetensors(
        &model,
        &config,
        &Review::default(),
        &serde_json::json!({}),
        ExportDtype::F32,
    )
    .unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(shapes(&st), expected(&config));
    assert!(st.tensors().iter().all(|(_, t)| t.dtype() == Dtype::F32));
    // BN starts at γ = 1, running_var = 1.
    let g = st.tensor("enc.0.bn1.weight").unwrap();
    assert_eq!(&g.data()[..4], &1f32.to_le_bytes());
}

#[test]
fn trained_run_exports_with_metadata_and_f16() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 2, 2, 4);
    let run = tmp.path().join("run");
    train(&TrainOptions {
        data: data.clone(),
        out: run.clone(),
        config: common::tiny_config(),
        epochs: 1,
        progress: false,
        ..TrainOptions::default()
    })
    .unwrap();

    for dtype in [ExportDtype::F32, ExportDtype::F16] {
        let out = tmp.path().join(format!("model-{dtype:?}.safetensors"));
        let review = Review {
            score: "mean_mutual_info".into(),
            threshold: 0.25,
        };
        export(&ExportOptions {
            run: run.clone(),
            checkpoint: None,
            out: out.clone(),
            dtype,
            review,
            test_time_flips: 1,
            max_scan_spacing_mm: 0.0,
        })
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(meta["format"], "lungseg-unet3d");
        assert_eq!(meta["format_version"], "1");
        let config: UNetConfig = serde_json::from_str(&meta["config"]).unwrap();
        assert_eq!(config.channels, [4, 8]);
        assert_eq!(config.patch_size, [16, 16, 16]);
        let review: serde_json::Value = serde_json::from_str(&meta["review"]).unwrap();
        assert_eq!(
            review,
            serde_json::json!({"score": "mean_mutual_info", "threshold": 0.25})
        );
        let prov: serde_json::Value = serde_json::from_str(&meta["provenance"]).unwrap();
        assert_eq!(prov["epochs"], 1);
        assert!(prov["best_val_dice"].as_f64().is_some());
        assert!(prov["data"].as_str().unwrap().ends_with("data"));
        assert_eq!(shapes(&st), expected(&config));
        let conv = st.tensor("enc.0.conv1.weight").unwrap().dtype();
        let bn = st.tensor("enc.0.bn1.running_var").unwrap().dtype();
        match dtype {
            ExportDtype::F32 => assert_eq!((conv, bn), (Dtype::F32, Dtype::F32)),
            ExportDtype::F16 => assert_eq!((conv, bn), (Dtype::F16, Dtype::F32)),
        }
    }
    // Flips other than 1 are written with the format version they need; others are refused.
    let flipped = tmp.path().join("model-flips.safetensors");
    let with = |test_time_flips, max_scan_spacing_mm| ExportOptions {
        run: run.clone(),
        checkpoint: None,
        out: flipped.clone(),
        dtype: ExportDtype::F16,
        review: Review::default(),
        test_time_flips,
        max_scan_spacing_mm,
    };
    let version = || {
        let (_, header) = SafeTensors::read_metadata(&std::fs::read(&flipped).unwrap()).unwrap();
        header.metadata().clone().unwrap()["format_version"].clone()
    };
    export(&with(8, 0.0)).unwrap();
    let m = lungseg::model::Model::open(&flipped).unwrap();
    assert_eq!(m.config().test_time_flips, 8);
    assert_eq!(m.config().max_scan_spacing_mm, 0.0);
    assert_eq!(version(), "4");
    assert!(export(&with(3, 0.0)).is_err());
    // A spacing limit is written with version 8; a negative one is refused.
    export(&with(1, 2.5)).unwrap();
    let m = lungseg::model::Model::open(&flipped).unwrap();
    assert_eq!(m.config().max_scan_spacing_mm, 2.5);
    assert_eq!(version(), "8");
    assert!(export(&with(1, -1.0)).is_err());
}

#[test]
fn utc_dates() {
    assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format_utc(1_798_761_599), "2026-12-31T23:59:59Z");
}

/// `import::from_safetensors` reads back exactly what `export` wrote (F32 bit for bit, F16 to
/// its rounding), and refuses a file that is not a lungseg model.
#[test]
fn exported_model_imports_back() {
    let _rng = common::rng_lock();
    use lungseg_train::export::named_tensors;
    use lungseg_train::import::from_safetensors;
    let config = common::tiny_config();
    let device = Device::flex();
    let model = config.init(&device);
    let want = named_tensors(&model);
    for dtype in [ExportDtype::F32, ExportDtype::F16] {
        let bytes = to_safetensors(
            &model,
            &config,
            &Review::default(),
            &serde_json::json!({}),
            dtype,
        )
        .unwrap();
        let (back, cfg) = from_safetensors(&bytes, &device).unwrap();
        assert_eq!(cfg, config);
        let got = named_tensors(&back);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.name, &g.shape), (&w.name, &w.shape));
            for (a, b) in g.data.iter().zip(&w.data) {
                let tol = if dtype == ExportDtype::F32 {
                    0.0
                } else {
                    1e-3 * b.abs().max(1e-4)
                };
                assert!((a - b).abs() <= tol, "{}: {a} vs {b} ({dtype:?})", g.name);
            }
        }
    }
    let err = from_safetensors(b"not a model", &device).unwrap_err();
    assert!(err.to_string().contains("safetensors"), "{err}");
}

/// `fg_prior` sets the head's bias to the prior's logit, so that an untrained net already
/// predicts the background rate.
#[test]
fn prior_bias_sets_head_bias() {
    let _rng = common::rng_lock();
    use lungseg_train::train::with_prior_bias;
    let model = common::tiny_config().init(&Device::flex());
    let model = with_prior_bias(model, 0.01).unwrap();
    let b = model
        .head
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert!((b[0] - (0.01f32 / 0.99).ln()).abs() < 1e-6, "{b:?}");
    assert!(with_prior_bias(common::tiny_config().init(&Device::flex()), 1.5).is_err());
    // On an autodiff device the bias stays a trainable parameter.
    let ad = Device::flex().autodiff();
    let model = with_prior_bias(common::tiny_config().init(&ad), 0.01).unwrap();
    assert!(model.head.bias.as_ref().unwrap().val().is_require_grad());
}
