//! Training lowers the loss; the `train` command writes metrics, checkpoints and resumes.

use crate::common;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use lungseg_train::train::loss::dice_bce;
use lungseg_train::train::metrics::read_jsonl;
use lungseg_train::train::rng::Rng;
use lungseg_train::train::{checkpoint, train, TrainOptions};

#[test]
fn ten_adam_steps_lower_the_loss_on_a_sphere() {
    let _rng = common::rng_lock();
    let ad = Device::flex().autodiff();
    ad.seed(3);
    let config = common::tiny_config();
    let mut model = config.init(&ad);
    let mut rng = Rng::new(5);
    let (mut img, mut mask) = (Vec::new(), Vec::new());
    for c in [[7.5, 7.5, 7.5], [6.0, 9.0, 8.0]] {
        let (hu, m) = common::sphere_patch(16, c, 4.0, &mut rng);
        img.extend(hu.iter().map(|&h| config.normalize_hu(h)));
        mask.extend(m.iter().map(|&v| f32::from(v)));
    }
    let x = Tensor::<5>::from_data(TensorData::new(img, [2, 1, 16, 16, 16]), &ad);
    let y = Tensor::<5>::from_data(TensorData::new(mask, [2, 1, 16, 16, 16]), &ad);
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..10 {
        let loss = dice_bce(model.forward(x.clone()), y.clone()).total;
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        losses[9] < 0.8 * losses[0],
        "loss should drop by > 20% in 10 steps: {losses:?}"
    );
}

fn tiny_options(data: &std::path::Path, out: &std::path::Path) -> TrainOptions {
    common::tiny_train_options(data, out, 11)
}

#[test]
fn train_writes_metrics_and_checkpoints_and_resumes() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4, 2, 1);

    // Three epochs straight; checkpoints after epochs 2 and 3.
    let out = tmp.path().join("run");
    let straight = train(&tiny_options(&data, &out)).unwrap();
    assert_eq!(straight.epochs_run, 3);
    assert!(checkpoint::checkpoint_dir(&out, 2)
        .join(checkpoint::OPTIM_FILE)
        .exists());
    assert!(checkpoint::best_dir(&out)
        .join(checkpoint::MODEL_FILE)
        .exists());
    let straight_rows = read_jsonl(&out.join("metrics.jsonl")).unwrap();

    // A crash before the epoch-3 checkpoint: resuming redoes epoch 3 from epoch 2's model,
    // optimiser state and RNG streams, and must land where the uninterrupted run did.
    std::fs::remove_dir_all(checkpoint::checkpoint_dir(&out, 3)).unwrap();
    let resumed = train(&TrainOptions {
        resume: true,
        ..tiny_options(&data, &out)
    })
    .unwrap();
    assert_eq!(resumed.epochs_run, 3);
    let rows = read_jsonl(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + 3 epochs:\n{csv}");
    assert!(csv.starts_with("epoch,loss,train_bce,train_dice,val_loss,val_dice"));
    // `evaluate` draws its training curves from this file.
    let curves = lungseg_train::report::figures::parse_metrics_csv(&csv).unwrap();
    assert_eq!(curves.len(), 3);
    assert_eq!(curves[2].loss, (rows[2].train_loss * 1e6).round() / 1e6);
    for (a, b) in rows.iter().zip(&straight_rows) {
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-5,
            "epoch {}: {} vs {}",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert!(
            (a.val_dice - b.val_dice).abs() < 1e-6,
            "epoch {}: {} vs {}",
            a.epoch,
            a.val_dice,
            b.val_dice
        );
        assert_eq!(a.lr, b.lr);
    }
    for m in &rows {
        assert!(
            m.train_loss.is_finite() && m.val_loss.is_finite() && m.lr > 0.0 && m.seconds > 0.0
        );
        assert!((0.0..=1.0).contains(&m.val_dice) && (0.0..=1.0).contains(&m.train_dice));
    }
}

#[test]
fn bad_data_gives_clear_errors() {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let err = train(&tiny_options(&tmp.path().join("missing"), tmp.path())).unwrap_err();
    assert!(format!("{err:#}").contains("manifest.jsonl"), "{err:#}");
    let err = train(&TrainOptions {
        resume: true,
        ..tiny_options(tmp.path(), tmp.path())
    });
    assert!(err.is_err());
    std::fs::write(tmp.path().join("manifest.jsonl"), "{\"id\":\"a\"}\n").unwrap();
    let err = train(&tiny_options(tmp.path(), tmp.path())).unwrap_err();
    assert!(format!("{err:#}").contains("line 1"), "{err:#}");
}

/// A short `train` run learns to segment, not only to lower the loss: a run can lower
/// the BCE while predicting background everywhere (hard Dice 0), which the loss test missed.
#[test]
fn short_training_learns_to_segment_spheres() {
    learns_spheres(1);
}

/// The same run with every batch split over two (CPU) replicas: per-shard BatchNorm and Dice
/// change the trajectory, not whether it learns.
#[test]
fn short_data_parallel_training_learns_to_segment_spheres() {
    learns_spheres(2);
}

fn learns_spheres(devices: usize) {
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 24, 6, 21);
    let out = tmp.path().join("run");
    let mut config = common::tiny_config();
    config.dropout.p = 0.0;
    let summary = train(&TrainOptions {
        config,
        epochs: 16,
        batch_size: 4,
        lr: 1e-2,
        min_lr: 1e-3,
        augment: None,
        devices,
        ..tiny_options(&data, &out)
    })
    .unwrap();
    assert!(
        summary.best_val_dice > 0.8,
        "validation Dice {:.3} after 96 steps on {devices} device(s)",
        summary.best_val_dice
    );
}

/// The best checkpoint is chosen by validation Dice, ties broken by the lower validation loss
/// (otherwise a run whose epochs all tie at Dice 0 exports epoch 1).
#[test]
fn best_epoch_breaks_dice_ties_by_loss() {
    use lungseg_train::train::{is_better, Validation};
    let v = |dice, loss| Validation {
        loss,
        dice,
        dice_pooled: dice,
    };
    assert!(is_better(v(0.0, 1.0), -1.0, f64::INFINITY), "first epoch");
    assert!(is_better(v(0.0, 0.9), 0.0, 1.0), "same Dice, lower loss");
    assert!(!is_better(v(0.0, 1.1), 0.0, 1.0), "same Dice, higher loss");
    assert!(
        is_better(v(0.2, 5.0), 0.1, 0.5),
        "higher Dice wins whatever the loss"
    );
    assert!(
        !is_better(v(0.1, 0.1), 0.2, 0.5),
        "lower Dice loses whatever the loss"
    );
}

#[test]
fn crop_training_runs_on_crops_and_refuses_crops_the_net_cannot_pool() {
    use lungseg_train::train::augment::AugmentConfig;
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4, 2, 1);
    let with_crop = |edge: usize, out: &str| TrainOptions {
        augment: Some(AugmentConfig {
            crop: Some(edge),
            ..AugmentConfig::default()
        }),
        epochs: 1,
        ..tiny_options(&data, &tmp.path().join(out))
    };
    // Two levels pool once: an odd crop cannot be halved.
    let err = train(&with_crop(9, "odd")).unwrap_err();
    assert!(format!("{err:#}").contains("--crop 9"), "{err:#}");
    let err = train(&with_crop(18, "big")).unwrap_err();
    assert!(
        format!("{err:#}").contains("larger than the patches"),
        "{err:#}"
    );
    // The batches the steps see are crops; without augmentation, whole patches.
    let dataset = lungseg_train::dataset::PatchDataset::open(&data).unwrap();
    let config = common::tiny_config();
    let aug = with_crop(8, "unused").augment.unwrap();
    let mut rng = Rng::new(1);
    let batch =
        lungseg_train::train::load_batch(&dataset, &[0, 1], &config, Some((&aug, &mut rng)))
            .unwrap();
    assert_eq!(batch.shape, [2, 1, 8, 8, 8]);
    assert_eq!(batch.image.len(), 2 * 512);
    let whole = lungseg_train::train::load_batch(&dataset, &[0, 1], &config, None).unwrap();
    assert_eq!(whole.shape, [2, 1, 16, 16, 16]);
    let summary = train(&with_crop(8, "ok")).unwrap();
    assert_eq!(summary.epochs_run, 1);
    let options = std::fs::read_to_string(tmp.path().join("ok/options.json")).unwrap();
    assert!(options.contains("\"crop\": 8"), "{options}");
}

/// `--init` starts a fresh run from an exported model: at a vanishing learning rate the
/// fine-tuned run keeps the file's weights (BatchNorm running statistics aside, which training
/// passes update at any rate), while a random start differs; a file of another network is
/// refused with both configs named.
#[test]
fn init_starts_from_an_exported_model_and_refuses_another_network() {
    use lungseg_train::export::{export, named_tensors, ExportDtype, ExportOptions, Review};
    use lungseg_train::import::from_safetensors;
    let _rng = common::rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 16, 4, 2, 1);
    let first = tmp.path().join("first");
    train(&tiny_options(&data, &first)).unwrap();
    let exported = |run: &std::path::Path, name: &str| {
        let out = tmp.path().join(name);
        export(&ExportOptions {
            run: run.to_path_buf(),
            checkpoint: None,
            out: out.clone(),
            dtype: ExportDtype::F32,
            review: Review {
                score: "mean_mutual_info".into(),
                threshold: 0.5,
            },
            test_time_flips: 1,
            max_scan_spacing_mm: 0.0,
        })
        .unwrap();
        out
    };
    let weights = |file: &std::path::Path| {
        let (model, _) = from_safetensors(&std::fs::read(file).unwrap(), &Device::flex()).unwrap();
        named_tensors(&model)
            .into_iter()
            .filter(|t| !t.name.contains("running_") && !t.name.contains("num_batches"))
            .collect::<Vec<_>>()
    };
    let start = exported(&first, "first.safetensors");
    let still = |init: Option<std::path::PathBuf>, out: &str| {
        let out = tmp.path().join(out);
        train(&TrainOptions {
            init,
            epochs: 1,
            lr: 1e-12,
            min_lr: 1e-12,
            seed: 99,
            ..tiny_options(&data, &out)
        })
        .unwrap();
        let name = format!("{}.safetensors", out.display());
        exported(&out, &name)
    };
    let (a, fine, fresh) = (
        weights(&start),
        weights(&still(Some(start.clone()), "fine")),
        weights(&still(None, "fresh")),
    );
    let max_diff = |x: &[lungseg_train::export::NamedTensor]| {
        a.iter()
            .zip(x)
            .flat_map(|(p, q)| {
                assert_eq!(p.name, q.name);
                p.data.iter().zip(&q.data).map(|(u, v)| (u - v).abs())
            })
            .fold(0f32, f32::max)
    };
    assert!(
        max_diff(&fine) < 1e-6,
        "fine-tuned run moved: {}",
        max_diff(&fine)
    );
    assert!(
        max_diff(&fresh) > 1e-2,
        "a random start equals the file: {}",
        max_diff(&fresh)
    );

    let err = train(&TrainOptions {
        init: Some(start.clone()),
        config: lungseg_train::model::UNetConfig {
            channels: vec![4, 8, 16],
            ..common::tiny_config()
        },
        ..tiny_options(&data, &tmp.path().join("other"))
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("different network") && msg.contains("[4,8,16]"),
        "{msg}"
    );

    // Dropout has no weights: a run may move it to other levels. Its export names the levels,
    // is format_version 2, and the engine opens it with them.
    let mut config = common::tiny_config();
    config.dropout.levels = Some(vec![1]);
    let moved = tmp.path().join("moved");
    train(&TrainOptions {
        init: Some(start.clone()),
        config,
        epochs: 1,
        ..tiny_options(&data, &moved)
    })
    .unwrap();
    let file = exported(&moved, "moved.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format_version"], "2");
    assert!(
        meta["config"].contains(r#""levels":[1]"#),
        "{}",
        meta["config"]
    );
    let m = lungseg::model::Model::from_bytes(&bytes).unwrap();
    assert_eq!(m.config().dropout.levels, lungseg::model::LevelSet(0b10));
    // Without levels the file stays version 1, which older readers open.
    let bytes = std::fs::read(&start).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["format_version"], "1");
}
