//! Data-parallel training: the summed gradient is the batch-weighted mean of the shards'
//! gradients computed the ordinary way, BatchNorm statistics reach the main model, dropout masks
//! do not depend on thread timing, and `train --devices 2` runs and reproduces itself.

use crate::common;

use burn::module::Module;
use burn::tensor::Device;
use lungseg_train::export::{named_tensors, NamedTensor};
use lungseg_train::import::named_grads;
use lungseg_train::model::UNet;
use lungseg_train::train::loss::dice_bce;
use lungseg_train::train::parallel::{shard_sizes, DataParallel};
use lungseg_train::train::rng::Rng;
use lungseg_train::train::{checkpoint, train, Batch, TrainOptions};

/// Three 16³ sphere patches of different sizes.
fn batch(config: &lungseg_train::model::UNetConfig) -> Batch {
    let mut rng = Rng::new(9);
    let (mut image, mut mask) = (Vec::new(), Vec::new());
    for (c, r) in [
        ([7.5, 7.5, 7.5], 4.0),
        ([6.0, 9.0, 8.0], 2.5),
        ([9.0, 6.0, 7.0], 5.0),
    ] {
        let (hu, m) = common::sphere_patch(16, c, r, &mut rng);
        image.extend(hu.iter().map(|&h| config.normalize_hu(h)));
        mask.extend(m.iter().map(|&v| f32::from(v)));
    }
    Batch {
        shape: [3, 1, 16, 16, 16],
        image,
        mask,
    }
}

/// The ordinary single-device gradient of the mean loss on `b`.
fn plain_grads(model: &UNet, b: &Batch, device: &Device) -> Vec<NamedTensor> {
    let (x, y) = b.tensors(device);
    let loss = dice_bce(model.forward(x), y).total;
    named_grads(model, &loss.backward())
}

fn max_rel_diff(a: &[NamedTensor], b: &[NamedTensor]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.name, b.name);
        // The floor keeps rounding noise in the conv biases before BatchNorm (true gradient 0,
        // |noise| ~ 1e-8) from counting as a relative error.
        let scale = a
            .data
            .iter()
            .fold(1e-3f64, |m, &v| m.max(f64::from(v.abs())));
        for (&x, &y) in a.data.iter().zip(&b.data) {
            worst = worst.max(f64::from(x - y).abs() / scale);
        }
    }
    worst
}

#[test]
fn shard_sizes_are_even_and_cover_the_batch() {
    assert_eq!(shard_sizes(8, 2), vec![4, 4]);
    assert_eq!(shard_sizes(7, 3), vec![3, 2, 2]);
    assert_eq!(shard_sizes(2, 4), vec![1, 1]);
    assert_eq!(shard_sizes(1, 1), vec![1]);
}

#[test]
fn summed_gradient_is_the_batch_weighted_mean_of_shard_gradients() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    ad.seed(4);
    let mut config = common::tiny_config();
    config.dropout.p = 0.0;
    let model = config.init(&ad);
    let b = batch(&config);

    // Oracle: shards [2, 1] the ordinary way, weighted 2/3 and 1/3.
    let g1 = plain_grads(&model, &b.slice(0, 2), &ad);
    let g2 = plain_grads(&model, &b.slice(2, 3), &ad);
    let expected: Vec<NamedTensor> = g1
        .iter()
        .zip(&g2)
        .map(|(a, c)| NamedTensor {
            name: a.name.clone(),
            shape: a.shape.clone(),
            data: a
                .data
                .iter()
                .zip(&c.data)
                .map(|(&x, &y)| (2.0 * f64::from(x) + f64::from(y)) as f32 / 3.0)
                .collect(),
        })
        .collect();

    let dp = DataParallel::new(vec![ad.clone(), ad.clone()]).unwrap();
    let out = dp.step(&model, &b, |i| i as u64).unwrap();
    assert_eq!(out.shards.iter().map(|s| s.n).collect::<Vec<_>>(), [2, 1]);
    let got = named_grads(&model, &out.grads);
    let err = max_rel_diff(&expected, &got);
    assert!(err < 1e-4, "data-parallel gradient differs by {err:.2e}");
    // Not trivially equal to the full-batch gradient: BatchNorm and Dice are per shard.
    let full = plain_grads(&model, &b, &ad);
    assert!(max_rel_diff(&full, &got) > 1e-3);

    // One device is the ordinary full-batch step.
    let one = DataParallel::new(vec![ad.clone()]).unwrap();
    let out1 = one.step(&model, &b, |_| 0).unwrap();
    let err = max_rel_diff(&full, &named_grads(&model, &out1.grads));
    assert!(err < 1e-5, "one-device step differs by {err:.2e}");
}

/// Workers update BatchNorm's running statistics on their own threads; the main model must see
/// them once it goes to eval mode.
#[test]
fn batchnorm_statistics_from_workers_reach_the_main_model() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    ad.seed(5);
    let config = common::tiny_config();
    let model = config.init(&ad);
    let before = model.enc[0].bn1.running_mean.value().into_data();
    let dp = DataParallel::new(vec![ad.clone(), ad.clone()]).unwrap();
    dp.step(&model, &batch(&config), |i| 10 + i as u64).unwrap();
    let after = model.valid().enc[0].bn1.running_mean.value().into_data();
    let (before, after): (Vec<f32>, Vec<f32>) = (
        before.try_into_vec().unwrap(),
        after.try_into_vec().unwrap(),
    );
    assert!(
        before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-6),
        "running mean unchanged after a data-parallel step"
    );
}

#[test]
fn dropout_masks_depend_on_the_seed_not_on_thread_timing() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    ad.seed(6);
    let mut config = common::tiny_config();
    config.dropout.p = 0.3;
    let model = config.init(&ad);
    let b = batch(&config);
    let dp = DataParallel::new(vec![ad.clone(), ad.clone(), ad.clone()]).unwrap();
    let grads = |seed: u64| {
        let out = dp.step(&model, &b, |i| seed * 10 + i as u64).unwrap();
        named_grads(&model, &out.grads)
    };
    let first = grads(1);
    for _ in 0..3 {
        assert_eq!(max_rel_diff(&first, &grads(1)), 0.0);
    }
    assert!(
        max_rel_diff(&first, &grads(2)) > 1e-3,
        "the seed must matter"
    );
}

#[test]
fn a_worker_error_is_reported_not_a_hang() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    let config = common::tiny_config();
    let model = config.init(&ad);
    // An odd size cannot be pooled and upsampled back: the workers panic inside Burn.
    let bad = Batch {
        shape: [2, 1, 15, 15, 15],
        image: vec![0.0; 2 * 15 * 15 * 15],
        mask: vec![0.0; 2 * 15 * 15 * 15],
    };
    let dp = DataParallel::new(vec![ad.clone(), ad.clone()]).unwrap();
    let err = match dp.step(&model, &bad, |_| 0) {
        Ok(_) => panic!("a 15³ batch must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("device 0") && err.contains("device 1"),
        "{err}"
    );
    // The workers survive a failed step.
    dp.step(&model, &batch(&config), |_| 0).unwrap();
}

#[test]
fn train_on_two_devices_runs_and_reproduces_itself() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 10, 4, 3);
    let run = |name: &str| {
        let out = tmp.path().join(name);
        let summary = train(&TrainOptions {
            data: data.clone(),
            out: out.clone(),
            config: common::tiny_config(),
            epochs: 2,
            batch_size: 4,
            lr: 3e-3,
            patience: 0,
            checkpoint_every: 1,
            seed: 8,
            devices: 2,
            progress: false,
            ..TrainOptions::default()
        })
        .unwrap();
        assert!(summary.final_train_loss.is_finite());
        let options = std::fs::read_to_string(out.join("options.json")).unwrap();
        assert!(options.contains("\"devices\": 2"), "{options}");
        // Compare weights, not files: a model file also stores (random) parameter ids.
        let dir = checkpoint::checkpoint_dir(&out, 2);
        let config = lungseg_train::train::read_config(&out).unwrap();
        let model = checkpoint::load_model(&dir, &config, &Device::flex()).unwrap();
        named_tensors(&model)
            .into_iter()
            .map(|t| (t.name, t.data))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run("a"), run("b"));
    assert!(a == b, "two seeded data-parallel runs differ");
}
