//! Burn's eval-mode forward and lungseg-sys's forward on the exported file agree.

use crate::common;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::export::{to_safetensors, ExportDtype, Review};
use lungseg_train::train::{checkpoint, train, TrainOptions};

#[test]
fn burn_eval_forward_matches_lungseg_sys() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4, 2, 9);
    let run = tmp.path().join("run");
    // Two epochs so that BatchNorm running statistics and weights are far from their init.
    let opts = TrainOptions {
        data: data.clone(),
        out: run.clone(),
        config: common::tiny_config(),
        epochs: 2,
        patience: 0,
        progress: false,
        ..TrainOptions::default()
    };
    train(&opts).unwrap();
    let dir = checkpoint::checkpoint_dir(&run, 2);
    let state = checkpoint::load_state(&dir).unwrap();
    let device = Device::flex();
    let model = checkpoint::load_model(&dir, &state.config, &device).unwrap();
    let bytes = to_safetensors(
        &model,
        &state.config,
        &Review::default(),
        &serde_json::json!({}),
        ExportDtype::F32,
    )
    .unwrap();
    let engine = lungseg::model::Model::from_bytes(&bytes).unwrap();

    let ds = PatchDataset::open(&data).unwrap();
    for i in ds.split("test") {
        let patch = ds.load(i).unwrap();
        let x: Vec<f32> = patch
            .hu
            .iter()
            .map(|&h| state.config.normalize_hu(h))
            .collect();
        let x = Tensor::<5>::from_data(TensorData::new(x, [1, 1, 16, 16, 16]), &device);
        let burn = sigmoid(model.valid().forward(x))
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mut prob = vec![0.0f32; burn.len()];
        lungseg::mc::predict(&engine, &patch.hu, &mut prob, 1).unwrap();
        let err = burn
            .iter()
            .zip(&prob)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err <= 1e-4, "patch {i}: max |Burn − lungseg-sys| = {err}");
    }
}
