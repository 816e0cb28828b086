//! `widen` (Net2WiderNet) keeps what the network computes: lungseg's dropout-off probabilities
//! of the widened file equal the original's, for a 3-level net whose every tensor (BatchNorm
//! statistics included) is random and for the engine's F16 fixture; the copies are real copies
//! (not dead zero channels), and `train --init` reads the wider network.

use crate::common;

use burn::tensor::Device;
use lungseg_train::export::{to_safetensors, ExportDtype, Review};
use lungseg_train::model::UNetConfig;
use lungseg_train::model_file::{ModelFile, RawTensor};
use lungseg_train::widen::{tensor_values, widen};
use safetensors::Dtype;

/// The next value of a 64-bit LCG in `k`, uniform in [-1, 1).
pub fn uniform(k: &mut u64) -> f32 {
    *k = k
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*k >> 40) as f32 / 8_388_608.0 - 1.0
}

/// A model of `channels` (16³ patches) whose tensors are all random: weights scaled by their
/// fan-in so activations stay O(1), BatchNorm with non-trivial statistics (a fresh
/// initialisation has γ = 1, μ = 0, σ² = 1, which would not test their remapping).
pub fn random_model(channels: Vec<usize>) -> ModelFile {
    let config = UNetConfig {
        channels,
        ..common::tiny_config()
    };
    let net = config.init(&Device::flex());
    let bytes = to_safetensors(
        &net,
        &config,
        &Review::default(),
        &serde_json::json!({"seed": 1}),
        ExportDtype::F32,
    )
    .unwrap();
    let mut file = ModelFile::parse(&bytes).unwrap();
    let mut k = 11u64;
    for (name, t) in file.tensors.iter_mut() {
        let fan_in: usize = t.shape.iter().skip(1).product::<usize>().max(1);
        let scale = (3.0 / fan_in as f32).sqrt();
        let values: Vec<f32> = (0..t.shape.iter().product::<usize>())
            .map(|_| {
                let u = uniform(&mut k);
                match name.rsplit('.').next().unwrap() {
                    "running_var" => 0.5 + u.abs(),
                    "running_mean" => 0.2 * u,
                    _ if name.contains(".bn") => 1.0 + 0.3 * u,
                    "bias" => 0.1 * u,
                    _ => scale * u,
                }
            })
            .collect();
        *t = RawTensor::from_f32(Dtype::F32, t.shape.clone(), &values).unwrap();
    }
    file
}

/// A patch for `file`'s patch size: lung-like HU with noise and a brighter blob.
fn patch(file: &ModelFile) -> Vec<f32> {
    let (_, model) = file.to_bytes().unwrap();
    let n = model.network().config().patch_voxels();
    let mut k = 3u64;
    (0..n)
        .map(|i| {
            let blob = if i % 97 < 30 { 700.0 } else { 0.0 };
            -800.0 + blob + 150.0 * uniform(&mut k)
        })
        .collect()
}

fn probabilities(file: &ModelFile, hu: &[f32]) -> Vec<f32> {
    let (_, model) = file.to_bytes().unwrap();
    let mut prob = vec![0.0; hu.len()];
    lungseg::mc::predict(&model, hu, &mut prob, 1).unwrap();
    prob
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tensor(file: &ModelFile, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = file.tensor(name).unwrap();
    (t.to_f32().unwrap(), t.shape.clone())
}

#[test]
fn widened_random_net_computes_the_same_probabilities() {
    let _rng = common::rng_lock();
    let narrow = random_model(vec![3, 5, 7]);
    let hu = patch(&narrow);
    let before = probabilities(&narrow, &hu);
    // Not a vacuous comparison: the random net's probabilities are spread, not saturated.
    let open = before.iter().filter(|p| (0.02..0.98).contains(*p)).count();
    eprintln!("{open} of {} unsaturated", before.len());
    assert!(
        open > before.len() / 4,
        "{open} of {} unsaturated",
        before.len()
    );

    let wide = widen(&narrow, &[6, 8, 12], 5).unwrap();
    let after = probabilities(&wide, &hu);
    let diff = max_abs_diff(&before, &after);
    assert!(diff < 2e-5, "widened net differs by {diff}");

    // The size check counts what is written.
    let values: usize = wide
        .tensors
        .iter()
        .map(|(_, t)| t.shape.iter().product::<usize>())
        .sum();
    assert_eq!(tensor_values(1, &[6, 8, 12]), values as u128);
    // The network did change: shapes, and another seed draws other copies.
    assert_eq!(tensor(&wide, "dec.1.conv1.weight").1, vec![8, 16, 3, 3, 3]);
    assert_eq!(tensor(&wide, "dec.1.up.weight").1, vec![12, 8, 2, 2, 2]);
    assert_eq!(tensor(&wide, "head.weight").1, vec![1, 6, 1, 1, 1]);
    let other = widen(&narrow, &[6, 8, 12], 6).unwrap();
    assert_ne!(
        tensor(&wide, "enc.1.conv1.weight").0,
        tensor(&other, "enc.1.conv1.weight").0
    );
    let diff = max_abs_diff(&before, &probabilities(&other, &hu));
    assert!(diff < 2e-5, "widened net (seed 6) differs by {diff}");
}

#[test]
fn new_channels_are_copies_whose_outgoing_weights_split_the_original() {
    let _rng = common::rng_lock();
    let narrow = random_model(vec![3, 5, 7]);
    let wide = widen(&narrow, &[6, 8, 12], 5).unwrap();
    // enc.0.conv1 produces a_0 (3 → 6 channels) from the one input channel: every new row is
    // an old row, the first three unchanged, and its BatchNorm entries come along.
    let k = 27; // 3×3×3 taps
    let (rows_old, _) = tensor(&narrow, "enc.0.conv1.weight");
    let (rows_new, _) = tensor(&wide, "enc.0.conv1.weight");
    let (gamma_old, _) = tensor(&narrow, "enc.0.bn1.weight");
    let (gamma_new, _) = tensor(&wide, "enc.0.bn1.weight");
    let source: Vec<usize> = (0..6)
        .map(|i| {
            let row = &rows_new[i * k..(i + 1) * k];
            (0..3)
                .find(|&j| row == &rows_old[j * k..(j + 1) * k])
                .unwrap_or_else(|| panic!("new channel {i} copies no old channel"))
        })
        .collect();
    assert_eq!(&source[..3], &[0, 1, 2]);
    for (i, &j) in source.iter().enumerate() {
        assert_eq!(gamma_new[i], gamma_old[j], "bn1 weight of channel {i}");
    }
    // enc.0.conv2 consumes a_0: over the copies of an old channel its new input weights are
    // positive shares of the old weight, summing to it (rows 0..3 are the old output rows).
    let (cons_old, _) = tensor(&narrow, "enc.0.conv2.weight"); // [3, 3, k]
    let (cons_new, _) = tensor(&wide, "enc.0.conv2.weight"); // [6, 6, k]
    for out in 0..3 {
        for j in 0..3 {
            for t in 0..k {
                let old = cons_old[(out * 3 + j) * k + t];
                let shares: Vec<f32> = (0..6)
                    .filter(|&i| source[i] == j)
                    .map(|i| cons_new[(out * 6 + i) * k + t] / old)
                    .collect();
                let sum: f32 = shares.iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-5,
                    "out {out} in {j}: shares sum to {sum}"
                );
                assert!(
                    shares.iter().all(|&s| s > 0.1),
                    "a share near 0: {shares:?}"
                );
            }
        }
    }
}

#[test]
fn widened_f16_fixture_computes_the_same_probabilities() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/small_f16_element.safetensors");
    let narrow = ModelFile::read(&src).unwrap();
    let hu = patch(&narrow);
    let before = probabilities(&narrow, &hu);
    let wide = widen(&narrow, &[12, 24], 0).unwrap();
    let diff = max_abs_diff(&before, &probabilities(&wide, &hu));
    assert!(diff < 2e-5, "widened fixture differs by {diff}");
    // Everything but the channels is kept: the fixture's HU window, epsilon and dropout.
    let config = wide.json_object("config").unwrap();
    assert_eq!(config["channels"], serde_json::json!([12, 24]));
    assert_eq!(config["hu_window"], serde_json::json!([-1200.0, 600.0]));
    let provenance = wide.json_object("provenance").unwrap();
    assert_eq!(
        provenance["widened"]["from_channels"],
        serde_json::json!([8, 16])
    );
}

#[test]
fn train_init_reads_the_wider_network() {
    let _rng = common::rng_lock();
    let wide = widen(&random_model(vec![3, 5, 7]), &[4, 6, 9], 1).unwrap();
    let (bytes, _) = wide.to_bytes().unwrap();
    let (_, config) = lungseg_train::import::from_safetensors(&bytes, &Device::flex()).unwrap();
    assert_eq!(config.channels, vec![4, 6, 9]);
}

#[test]
fn narrowing_or_another_depth_is_refused() {
    let _rng = common::rng_lock();
    let narrow = random_model(vec![3, 5, 7]);
    let err = widen(&narrow, &[3, 4, 7], 0).unwrap_err().to_string();
    assert!(err.contains("narrows level 1"), "{err}");
    let err = widen(&narrow, &[3, 5], 0).unwrap_err().to_string();
    assert!(err.contains("levels"), "{err}");
    // A size no model file holds is refused before anything of it is allocated.
    let err = widen(&narrow, &[3, 5, 1 << 40], 0).unwrap_err().to_string();
    assert!(err.contains("lungseg opens model files up to"), "{err}");
    // Widening to the same channels is the identity.
    let same = widen(&narrow, &[3, 5, 7], 9).unwrap();
    for (name, t) in &narrow.tensors {
        assert_eq!(
            same.tensor(name).unwrap().to_f32().unwrap(),
            t.to_f32().unwrap(),
            "{name}"
        );
    }
}
