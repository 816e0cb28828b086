//! Tiny synthetic data for the training tests: a bright sphere in noisy lung-like background.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use lungseg_train::dataset::{DatasetWriter, PatchRecord};
use lungseg_train::model::{DropoutKind, DropoutSpec, UNetConfig};
use lungseg_train::train::rng::Rng;
use lungseg_train::train::TrainOptions;

/// Burn's flex backend keeps one process-wide RNG (`Device::seed` sets it), so tests that
/// check seeded reproducibility hold this lock to keep other tests' draws out of their stream.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small config the tests can afford: two levels, 16³ patches.
pub fn tiny_config() -> UNetConfig {
    UNetConfig {
        channels: vec![4, 8],
        patch_size: [16, 16, 16],
        dropout: DropoutSpec {
            p: 0.1,
            kind: DropoutKind::Channel,
            levels: None,
        },
        ..UNetConfig::default()
    }
}

/// HU and mask of an `n³` patch with a sphere of `radius` voxels at `center` (z, y, x);
/// radius 0 gives a negative patch.
pub fn sphere_patch(n: usize, center: [f64; 3], radius: f64, rng: &mut Rng) -> (Vec<f32>, Vec<u8>) {
    let mut hu = Vec::with_capacity(n * n * n);
    let mut mask = Vec::with_capacity(n * n * n);
    for z in 0..n {
        for y in 0..n {
            for x in 0..n {
                let d2 = (z as f64 - center[0]).powi(2)
                    + (y as f64 - center[1]).powi(2)
                    + (x as f64 - center[2]).powi(2);
                let inside = d2 <= radius * radius;
                let base = if inside { 20.0 } else { -820.0 };
                hu.push((base + 60.0 * rng.normal()) as f32);
                mask.push(u8::from(inside));
            }
        }
    }
    (hu, mask)
}

/// Writes a dataset of `n_train` + `n_val` + 2 test patches (alternating positive/negative).
pub fn write_dataset(dir: &Path, n: usize, n_train: usize, n_val: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut w = DatasetWriter::create(dir).unwrap();
    let splits = std::iter::repeat_n("train", n_train)
        .chain(std::iter::repeat_n("val", n_val))
        .chain(std::iter::repeat_n("test", 2));
    for (i, split) in splits.enumerate() {
        let positive = i % 3 != 2;
        let c = n as f64 / 2.0 - 0.5;
        let center = [
            c + rng.range(-2.0, 2.0),
            c + rng.range(-2.0, 2.0),
            c + rng.range(-2.0, 2.0),
        ];
        let radius = if positive { rng.range(2.5, 4.5) } else { 0.0 };
        let (hu, mask) = sphere_patch(n, center, radius, &mut rng);
        let rec = PatchRecord {
            id: format!("p{i:03}"),
            hu: String::new(),
            mask: String::new(),
            seriesuid: format!("scan{}", i / 2),
            split: split.to_string(),
            label: u8::from(positive),
            shape: [n, n, n],
            diameter_mm: positive.then_some(2.0 * radius),
            spacing_mm: None,
            center_world: None,
            scan_spacing_mm: None,
        };
        w.add(rec, &hu, &mask).unwrap();
    }
    w.finish().unwrap();
}

/// A three-epoch run of [`tiny_config`] on `data` (checkpoints every 2 epochs), seeded.
pub fn tiny_train_options(data: &Path, out: &Path, seed: u64) -> TrainOptions {
    TrainOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config: tiny_config(),
        epochs: 3,
        batch_size: 2,
        lr: 3e-3,
        warmup_epochs: 1,
        patience: 0,
        checkpoint_every: 2,
        seed,
        progress: false,
        ..TrainOptions::default()
    }
}

/// `report.json` reads back into a `Report` equal to `expected`, up to one rounding of each
/// float (serde_json parses without its `float_roundtrip` feature, which is off here because it
/// would rebuild Burn; values may differ in the last bit).
pub fn assert_report_reads_back(path: &Path, expected: &lungseg_train::report::Report) {
    let text = std::fs::read_to_string(path).unwrap();
    let back: lungseg_train::report::Report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a Report: {e}", path.display()));
    let (a, b) = (
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(expected).unwrap(),
    );
    assert_json_close(&a, &b, "report");
}

fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                "{at}: {x} != {y}"
            );
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_json_close(u, v, &format!("{at}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}: keys"
            );
            for (k, u) in x {
                assert_json_close(u, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}
