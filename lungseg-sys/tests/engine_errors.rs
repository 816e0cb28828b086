//! Bad model files and bad arguments: each gives its error kind and a message naming the
//! problem; no bytes make the loader panic.

mod common;

use common::*;
use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::ErrorKind;

const SMALL: &str = r#"{"channels":[4,8],"patch_size":[8,8,8]}"#;

fn load_err(tensors: &[RawTensor], meta: &[(&str, String)]) -> lungseg::Error {
    Model::from_bytes(&write_safetensors(tensors, meta)).unwrap_err()
}

#[test]
fn truncated_and_corrupt_bytes_are_format_errors() {
    let bytes = std::fs::read(fixture("small_f16_element.safetensors")).unwrap();
    assert!(Model::from_bytes(&bytes).is_ok());
    for cut in [0, 1, 7, 8, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = Model::from_bytes(&bytes[..cut]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format, "cut {cut}: {e}");
    }
    // Cheap fuzz: flipped bytes never panic.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % b.len().min(2048) as u64) as usize;
            b[i] ^= (x >> 32) as u8 | 1;
        }
        let _ = Model::from_bytes(&b);
    }
    assert_eq!(
        Model::from_bytes(b"garbage").unwrap_err().kind,
        ErrorKind::Format
    );
}

#[test]
fn tensor_problems_name_the_tensor() {
    let good = synth_tensors(&[4, 8]);
    let meta = standard_meta(SMALL);
    assert!(Model::from_bytes(&write_safetensors(&good, &meta)).is_ok());

    let missing: Vec<RawTensor> = synth_tensors(&[4, 8])
        .into_iter()
        .filter(|t| t.name != "dec.0.conv2.weight")
        .collect();
    let e = load_err(&missing, &meta);
    assert_eq!(e.kind, ErrorKind::Format);
    assert!(
        e.message.contains("dec.0.conv2.weight") && e.message.contains("missing"),
        "{e}"
    );

    let mut shaped = synth_tensors(&[4, 8]);
    let t = shaped
        .iter_mut()
        .find(|t| t.name == "enc.1.conv1.weight")
        .unwrap();
    *t = f32_tensor(
        "enc.1.conv1.weight",
        &[8, 5, 3, 3, 3],
        &vec![0.0; 8 * 5 * 27],
    );
    let e = load_err(&shaped, &meta);
    assert_eq!(e.kind, ErrorKind::Format);
    assert!(
        e.message.contains("enc.1.conv1.weight")
            && e.message.contains("[8, 4, 3, 3, 3]")
            && e.message.contains("[8, 5, 3, 3, 3]"),
        "{e}"
    );

    let mut extra = synth_tensors(&[4, 8]);
    extra.push(f32_tensor("enc.9.conv1.weight", &[1], &[0.0]));
    let e = load_err(&extra, &meta);
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("enc.9.conv1.weight"),
        "{e}"
    );

    let mut int = synth_tensors(&[4, 8]);
    let t = int.iter_mut().find(|t| t.name == "head.weight").unwrap();
    t.dtype = "I32".into();
    let e = load_err(&int, &meta);
    assert!(
        e.kind == ErrorKind::Unsupported
            && e.message.contains("head.weight")
            && e.message.contains("I32"),
        "{e}"
    );

    let mut nan = synth_tensors(&[4, 8]);
    nan[0] = f32_tensor(
        &nan[0].name.clone(),
        &nan[0].shape.clone(),
        &vec![f32::NAN; 4 * 27],
    );
    let e = load_err(&nan, &meta);
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("enc.0.conv1.weight"),
        "{e}"
    );
}

#[test]
fn metadata_problems() {
    let t = synth_tensors(&[4, 8]);
    let cfg = ("config", SMALL.to_string());
    let e = load_err(&t, &[("format_version", "1".into()), cfg.clone()]);
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("format"),
        "{e}"
    );
    let e = load_err(
        &t,
        &[
            ("format", "onnx".into()),
            ("format_version", "1".into()),
            cfg.clone(),
        ],
    );
    assert!(
        e.kind == ErrorKind::Unsupported && e.message.contains("onnx"),
        "{e}"
    );
    let e = load_err(
        &t,
        &[
            ("format", "lungseg-unet3d".into()),
            ("format_version", "9".into()),
            cfg.clone(),
        ],
    );
    assert!(
        e.kind == ErrorKind::Unsupported && e.message.contains("format_version '9'"),
        "{e}"
    );
    // Dropout levels are version 2: a version-1 file naming them is refused (an old reader
    // would ignore them and sample another network), a version-2 file opens, and a level the
    // network lacks is refused.
    let levels = r#"{"channels":[4,8],"patch_size":[8,8,8],"dropout":{"levels":[1]}}"#;
    let meta = |version: &str, config: &str| {
        vec![
            ("format", "lungseg-unet3d".to_string()),
            ("format_version", version.to_string()),
            ("config", config.to_string()),
        ]
    };
    let e = load_err(&t, &meta("1", levels));
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("format_version '2'"),
        "{e}"
    );
    let bytes = write_safetensors(&t, &meta("2", levels));
    let m = Model::from_bytes(&bytes).unwrap();
    assert_eq!(m.config().dropout.levels, lungseg::model::LevelSet(0b10));
    let bytes = write_safetensors(&t, &meta("2", SMALL));
    Model::from_bytes(&bytes).unwrap();
    let e = load_err(
        &t,
        &meta(
            "2",
            r#"{"channels":[4,8],"patch_size":[8,8,8],"dropout":{"levels":[2]}}"#,
        ),
    );
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("dropout.levels [2]"),
        "{e}"
    );
    // A mask threshold other than 0.5 is version 3 (an older reader would draw the masks at
    // 0.5); 0.5 itself needs nothing newer than the rest of the file.
    let at = |t: &str| format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"mask_threshold":{t}}}"#);
    for old in ["1", "2"] {
        let e = load_err(&t, &meta(old, &at("0.094")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("mask_threshold")
                && e.message.contains("format_version '3'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("3", &at("0.094")))).unwrap();
    assert_eq!(m.config().mask_threshold, 0.094);
    let m = Model::from_bytes(&write_safetensors(&t, &meta("1", &at("0.5")))).unwrap();
    assert_eq!(m.config().mask_threshold, 0.5);
    let e = load_err(&t, &meta("3", &at("1.0")));
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("mask_threshold"),
        "{e}"
    );
    // Test-time flips other than 1 are version 4 (an older reader would sample without them
    // and its review threshold would belong to other samples); only 1, 2, 4 and 8 exist.
    let flips =
        |f: &str| format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"test_time_flips":{f}}}"#);
    for old in ["1", "2", "3"] {
        let e = load_err(&t, &meta(old, &flips("8")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("test_time_flips")
                && e.message.contains("format_version '4'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("4", &flips("8")))).unwrap();
    assert_eq!(m.config().test_time_flips, 8);
    let m = Model::from_bytes(&write_safetensors(&t, &meta("1", &flips("1")))).unwrap();
    assert_eq!(m.config().test_time_flips, 1);
    for bad in ["0", "3", "16", "-1", "4294967297"] {
        let e = load_err(&t, &meta("4", &flips(bad)));
        assert!(
            e.kind == ErrorKind::Format && e.message.contains("test_time_flips"),
            "{bad}: {e}"
        );
    }
    // A minimum mask component is version 5 (an older reader would return the specks the
    // file's calibration dropped); it cannot exceed the patch's volume (512 mm³ here).
    let min_c =
        |v: &str| format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"min_component_mm3":{v}}}"#);
    for old in ["1", "2", "3", "4"] {
        let e = load_err(&t, &meta(old, &min_c("16")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("min_component_mm3")
                && e.message.contains("format_version '5'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("5", &min_c("16")))).unwrap();
    assert_eq!(m.config().min_component_mm3, 16.0);
    let m = Model::from_bytes(&write_safetensors(&t, &meta("1", &min_c("0")))).unwrap();
    assert_eq!(m.config().min_component_mm3, 0.0);
    for bad in ["-1", "512.5", "1e308"] {
        let e = load_err(&t, &meta("5", &min_c(bad)));
        assert!(
            e.kind == ErrorKind::Format && e.message.contains("min_component_mm3"),
            "{bad}: {e}"
        );
    }
    // A spare radius with a minimum is version 6 (an older reader would drop the small nodule
    // at the point); without a minimum it changes no mask and needs nothing. It cannot exceed
    // the patch's diagonal (√192 ≈ 13.9 mm here).
    let spare = |min: &str, r: &str| {
        format!(
            r#"{{"channels":[4,8],"patch_size":[8,8,8],"min_component_mm3":{min},"min_component_spare_radius_mm":{r}}}"#
        )
    };
    for old in ["1", "2", "3", "4", "5"] {
        let e = load_err(&t, &meta(old, &spare("16", "3")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("min_component_spare_radius_mm")
                && e.message.contains("format_version '6'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("6", &spare("16", "3")))).unwrap();
    assert_eq!(m.config().min_component_spare_radius_mm, 3.0);
    let m = Model::from_bytes(&write_safetensors(&t, &meta("1", &spare("0", "3")))).unwrap();
    assert_eq!(m.config().min_component_spare_radius_mm, 3.0);
    for bad in ["-1", "14", "1e308"] {
        let e = load_err(&t, &meta("6", &spare("16", bad)));
        assert!(
            e.kind == ErrorKind::Format && e.message.contains("min_component_spare_radius_mm"),
            "{bad}: {e}"
        );
    }
    // A point rule that adds anything (radius above 0, threshold below the mask threshold) is
    // version 7 (an older reader would return the mask without the lesion at the point);
    // one that adds nothing needs nothing. Its radius cannot exceed the patch's diagonal.
    let point = |t: &str, r: &str| {
        format!(
            r#"{{"channels":[4,8],"patch_size":[8,8,8],"mask_threshold":0.5,"point_mask_threshold":{t},"point_radius_mm":{r}}}"#
        )
    };
    for old in ["1", "2", "3", "4", "5", "6"] {
        let e = load_err(&t, &meta(old, &point("0.3", "4")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("point_mask_threshold")
                && e.message.contains("format_version '7'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("7", &point("0.3", "4")))).unwrap();
    assert_eq!(m.config().point_mask_threshold, 0.3);
    assert_eq!(m.config().point_radius_mm, 4.0);
    for inactive in [point("0.3", "0"), point("0.5", "4"), point("0.7", "4")] {
        assert!(Model::from_bytes(&write_safetensors(&t, &meta("1", &inactive))).is_ok());
    }
    for bad in [point("0.3", "14"), point("1.2", "4"), point("0.3", "-1")] {
        let e = load_err(&t, &meta("7", &bad));
        assert!(
            e.kind == ErrorKind::Format && e.message.contains("point_"),
            "{bad}: {e}"
        );
    }
    // A spacing limit is version 8 (an older reader would leave a thick-slice scan's patches
    // unflagged); 0 (any scan) needs nothing.
    let limit =
        |v: &str| format!(r#"{{"channels":[4,8],"patch_size":[8,8,8],"max_scan_spacing_mm":{v}}}"#);
    for old in ["1", "2", "3", "4", "5", "6", "7"] {
        let e = load_err(&t, &meta(old, &limit("2.5")));
        assert!(
            e.kind == ErrorKind::Format
                && e.message.contains("max_scan_spacing_mm")
                && e.message.contains("format_version '8'"),
            "{e}"
        );
    }
    let m = Model::from_bytes(&write_safetensors(&t, &meta("8", &limit("2.5")))).unwrap();
    assert_eq!(m.config().max_scan_spacing_mm, 2.5);
    assert!(Model::from_bytes(&write_safetensors(&t, &meta("1", &limit("0")))).is_ok());
    for bad in ["-1", "1e308", "150"] {
        let e = load_err(&t, &meta("8", &limit(bad)));
        assert!(
            e.kind == ErrorKind::Format && e.message.contains("max_scan_spacing_mm"),
            "{bad}: {e}"
        );
    }
    let e = load_err(
        &t,
        &[
            ("format", "lungseg-unet3d".into()),
            ("format_version", "1".into()),
            ("config", "{".into()),
        ],
    );
    assert!(
        e.kind == ErrorKind::Format && e.message.contains("config"),
        "{e}"
    );
    // The default config expects 16 channels: the message says which tensor disagrees.
    let e = load_err(
        &t,
        &[
            ("format", "lungseg-unet3d".into()),
            ("format_version", "1".into()),
        ],
    );
    assert!(e.message.contains("enc.0.conv1.weight"), "{e}");
}

#[test]
fn bf16_and_f16_weights_load() {
    for dtype in ["BF16", "F16"] {
        let t: Vec<RawTensor> = synth_tensors(&[4, 8])
            .into_iter()
            .map(|t| {
                let v: Vec<f32> = t
                    .data
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let data = if dtype == "BF16" {
                    v.iter()
                        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                        .collect()
                } else {
                    v.iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect()
                };
                RawTensor {
                    dtype: dtype.into(),
                    data,
                    ..t
                }
            })
            .collect();
        let m = Model::from_bytes(&write_safetensors(&t, &standard_meta(SMALL))).unwrap();
        assert_eq!(m.config().channels, vec![4, 8]);
    }
}

#[test]
fn bad_arguments_are_invalid() {
    let m = Model::from_bytes(&synth_model_bytes(SMALL)).unwrap();
    let good = vec![-500.0f32; 512];
    let mut prob = vec![0.0; 512];
    let inv = |r: lungseg::Result<()>, needle: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
        assert!(e.message.contains(needle), "{e} lacks {needle}");
    };
    inv(predict(&m, &good[..511], &mut prob, 1), "511");
    inv(predict(&m, &good, &mut prob[..10], 1), "prob");
    let mut nan = good.clone();
    nan[17] = f32::NAN;
    inv(predict(&m, &nan, &mut prob, 1), "voxel 17");
    nan[17] = f32::INFINITY;
    inv(predict(&m, &nan, &mut prob, 1), "voxel 17");
    inv(predict(&m, &good, &mut prob, 100_000), "threads");
    let mc = |opts: McOptions, maps: UncertaintyMaps<'_>| {
        predict_uncertainty(&m, &good, &opts, maps).map(|_| ())
    };
    let o = McOptions::default();
    inv(
        mc(McOptions { n_samples: 0, ..o }, UncertaintyMaps::default()),
        "n_samples",
    );
    inv(
        mc(
            McOptions {
                n_samples: 1025,
                ..o
            },
            UncertaintyMaps::default(),
        ),
        "n_samples",
    );
    inv(
        mc(McOptions { threads: 5000, ..o }, UncertaintyMaps::default()),
        "threads",
    );
    inv(
        mc(
            McOptions {
                review_threshold: Some(f32::NAN),
                ..o
            },
            UncertaintyMaps::default(),
        ),
        "review_threshold",
    );
    let mut short = vec![0.0; 3];
    inv(
        mc(
            o,
            UncertaintyMaps {
                entropy: Some(&mut short),
                ..Default::default()
            },
        ),
        "entropy",
    );
    assert!(predict(&m, &good, &mut prob, 0).is_ok());
}
