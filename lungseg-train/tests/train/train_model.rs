//! The Burn U-Net: shared config JSON, parameter count, shapes, pooling and dropout.

use crate::common;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use lungseg_train::export::named_tensors;
use lungseg_train::model::{max_pool2, UNetConfig};

#[test]
fn default_config_serialises_as_documented() {
    let documented = r#"{"in_channels":1,"out_channels":1,"channels":[16,32,64,128,256],"norm":"batch","bn_eps":1e-5,"dropout":{"p":0.2,"kind":"channel"},"upsample":"conv_transpose","patch_size":[64,64,64],"spacing_mm":[1.0,1.0,1.0],"hu_window":[-1000.0,400.0]}"#;
    let json = serde_json::to_string(&UNetConfig::default()).unwrap();
    // Same keys, order and values; serde_json spells 1e-5 as 0.00001.
    assert_eq!(json, documented.replace("1e-5", "0.00001"));
    let a: serde_json::Value = serde_json::from_str(&json).unwrap();
    let b: serde_json::Value = serde_json::from_str(documented).unwrap();
    assert_eq!(a, b);
    let back: UNetConfig = serde_json::from_str(documented).unwrap();
    assert_eq!(back, UNetConfig::default());
}

#[test]
fn default_model_has_5_647_857_learnable_parameters() {
    let _rng = common::rng_lock();
    let model = UNetConfig::default().init(&Device::flex());
    // Conv weights + biases, transposed-conv weights + biases, BN γ/β, head; the
    // 2 944 BatchNorm running statistics are buffers, not parameters.
    assert_eq!(model.num_learnable_params(), 5_647_857);
    let stored: usize = named_tensors(&model).iter().map(|t| t.data.len()).sum();
    assert_eq!(stored, 5_647_857 + 2_944);
}

#[test]
fn forward_keeps_the_spatial_shape() {
    let _rng = common::rng_lock();
    let device = Device::flex();
    let model = common::tiny_config().init(&device);
    let x = Tensor::<5>::random([2, 1, 16, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
    assert_eq!(model.valid().forward(x).dims(), [2, 1, 16, 16, 16]);
    let three = UNetConfig {
        channels: vec![2, 4, 8],
        ..common::tiny_config()
    }
    .init(&device);
    let x = Tensor::<5>::random([1, 1, 16, 8, 16], Distribution::Uniform(0.0, 1.0), &device);
    assert_eq!(three.forward(x).dims(), [1, 1, 16, 8, 16]);
}

#[test]
fn max_pool_matches_a_naive_loop() {
    let _rng = common::rng_lock();
    let device = Device::flex();
    let (b, c, d, h, w) = (2, 3, 4, 6, 8);
    let x = Tensor::<5>::random([b, c, d, h, w], Distribution::Normal(0.0, 1.0), &device);
    let v = x.to_data().try_to_vec::<f32>().unwrap();
    let got = max_pool2(x).into_data().try_into_vec::<f32>().unwrap();
    let mut want = Vec::new();
    for bc in 0..b * c {
        for z in 0..d / 2 {
            for y in 0..h / 2 {
                for xx in 0..w / 2 {
                    let mut m = f32::NEG_INFINITY;
                    for (dz, dy, dx) in (0..8).map(|k| (k >> 2, (k >> 1) & 1, k & 1)) {
                        m = m.max(v[((bc * d + 2 * z + dz) * h + 2 * y + dy) * w + 2 * xx + dx]);
                    }
                    want.push(m);
                }
            }
        }
    }
    assert_eq!(got, want);
}

#[test]
fn eval_mode_is_deterministic_and_training_mode_drops() {
    let _rng = common::rng_lock();
    let device = Device::flex();
    let config = UNetConfig {
        dropout: lungseg_train::model::DropoutSpec {
            p: 0.5,
            ..common::tiny_config().dropout
        },
        ..common::tiny_config()
    };
    let ad = device.clone().autodiff();
    let model = config.init(&ad);
    let x = Tensor::<5>::random([1, 1, 16, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
    let eval = model.valid();
    let a = eval
        .forward(x.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let b = eval
        .forward(x.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    let xa = Tensor::<5>::from_data(x.to_data(), &ad);
    let c = model
        .forward(xa.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let d = model.forward(xa).into_data().try_into_vec::<f32>().unwrap();
    assert_ne!(
        c, d,
        "training-mode forward passes should draw different dropout masks"
    );
}

#[test]
fn channel_dropout_drops_whole_channels() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    let drop = &common::tiny_config().init(&ad).enc[0].drop;
    let drop = lungseg_train::model::Dropout3d {
        prob: 0.5,
        channel: true,
        training: drop.training.clone(),
    };
    let y = drop
        .forward(Tensor::<5>::ones([2, 16, 3, 3, 3], &ad))
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let (mut kept, mut dropped) = (0, 0);
    for ch in y.chunks(27) {
        assert!(
            ch.iter().all(|&v| v == ch[0]),
            "a channel is all kept or all dropped"
        );
        match ch[0] {
            0.0 => dropped += 1,
            2.0 => kept += 1,
            v => panic!("kept values are scaled by 1/(1-p) = 2, got {v}"),
        }
    }
    assert!(kept > 0 && dropped > 0);
}

/// `dropout.levels` sets each block's dropout: p in the listed levels (encoder and decoder),
/// 0 elsewhere; `with_dropout` moves it on an existing network.
#[test]
fn dropout_levels_set_each_blocks_probability() {
    let device = Device::flex();
    let mut config = UNetConfig {
        channels: vec![2, 3, 4],
        patch_size: [8, 8, 8],
        ..UNetConfig::default()
    };
    config.dropout.levels = Some(vec![1, 2]);
    config.validate().unwrap();
    let net = config.init(&device);
    let probs = |n: &lungseg_train::model::UNet| {
        let enc: Vec<f64> = n.enc.iter().map(|b| b.drop.prob).collect();
        let dec: Vec<f64> = n.dec.iter().map(|b| b.drop.prob).collect();
        (enc, dec)
    };
    assert_eq!(probs(&net), (vec![0.0, 0.2, 0.2], vec![0.0, 0.2]));
    let all = net.with_dropout(&UNetConfig::default().dropout);
    assert_eq!(probs(&all), (vec![0.2; 3], vec![0.2; 2]));
    config.dropout.levels = Some(vec![3]);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("dropout.levels [3]"), "{err}");
}
