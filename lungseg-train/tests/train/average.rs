//! `average` (model soup): every tensor of the result is the weighted mean of the members' in
//! the first member's dtype, the result is a model lungseg opens, a probability map fitted to a
//! member is not carried over, and files of other networks or bad weights are refused.

use std::path::PathBuf;

use lungseg_train::average::average;
use lungseg_train::model_file::{ModelFile, RawTensor};
use safetensors::Dtype;

use crate::widen::{random_model, uniform};

/// `file` with every value moved by a random amount of its own size, so no tensor matches.
fn perturbed(file: &ModelFile, seed: u64) -> ModelFile {
    let mut out = file.clone();
    let mut k = seed;
    for (_, t) in out.tensors.iter_mut() {
        let values: Vec<f32> = t
            .to_f32()
            .unwrap()
            .iter()
            .map(|v| v * (1.0 + 0.5 * uniform(&mut k)).abs() + 0.01 * uniform(&mut k))
            .collect();
        *t = RawTensor::from_f32(t.dtype, t.shape.clone(), &values).unwrap();
    }
    out
}

fn sources(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("m{i}")).collect()
}

#[test]
fn every_tensor_is_the_weighted_mean_in_the_first_members_dtype() {
    let a = random_model(vec![4, 8]);
    let b = perturbed(&a, 5);
    let c = perturbed(&a, 9);
    // Weights 1, 2, 5 normalise to 1/8, 2/8, 5/8.
    let avg = average(
        &[a.clone(), b.clone(), c.clone()],
        &[1.0, 2.0, 5.0],
        &sources(3),
    )
    .unwrap();
    assert_eq!(avg.tensors.len(), a.tensors.len());
    let mut differs = 0;
    for (k, (name, t)) in avg.tensors.iter().enumerate() {
        assert_eq!(name, &a.tensors[k].0);
        assert_eq!(t.dtype, Dtype::F32);
        let [va, vb, vc] = [&a, &b, &c].map(|f| f.tensors[k].1.to_f32().unwrap());
        for (i, got) in t.to_f32().unwrap().into_iter().enumerate() {
            let want = (f64::from(va[i]) + 2.0 * f64::from(vb[i]) + 5.0 * f64::from(vc[i])) / 8.0;
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "{name}[{i}]: {got} vs {want}"
            );
            differs += usize::from(got != va[i]);
        }
    }
    assert!(
        differs > 1000,
        "the average equals the first member ({differs} values differ)"
    );
    avg.to_bytes().expect("the average opens in lungseg");

    // Half-precision first member: the average is written in F16 (rounded to nearest).
    let mut half = a.clone();
    for (_, t) in half.tensors.iter_mut() {
        *t = RawTensor::from_f32(Dtype::F16, t.shape.clone(), &t.to_f32().unwrap()).unwrap();
    }
    let avg = average(&[half.clone(), b.clone()], &[], &sources(2)).unwrap();
    for (k, (name, t)) in avg.tensors.iter().enumerate() {
        assert_eq!(t.dtype, Dtype::F16, "{name}");
        let va = half.tensors[k].1.to_f32().unwrap();
        let vb = b.tensors[k].1.to_f32().unwrap();
        for (i, got) in t.to_f32().unwrap().into_iter().enumerate() {
            let want = ((f64::from(va[i]) + f64::from(vb[i])) / 2.0) as f32;
            assert_eq!(got, half::f16::from_f32(want).to_f32(), "{name}[{i}]");
        }
    }
}

#[test]
fn the_members_are_recorded_and_the_provenance_says_what_was_averaged() {
    let a = random_model(vec![4, 8]);
    let b = perturbed(&a, 5);
    let avg = average(&[a.clone(), b.clone()], &[3.0, 1.0], &sources(2)).unwrap();
    let averaged = &avg.json_object("provenance").unwrap()["averaged"];
    let members = averaged["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    for (m, (file, (source, weight))) in
        members.iter().zip([(&a, ("m1", 0.75)), (&b, ("m2", 0.25))])
    {
        assert_eq!(m["source"], source);
        assert_eq!(m["weight"], weight);
        assert_eq!(
            m["scoring_fingerprint"],
            file.scoring_fingerprint().unwrap()
        );
    }
    assert_ne!(
        avg.scoring_fingerprint().unwrap(),
        a.scoring_fingerprint().unwrap()
    );
}

/// The shipped model carries a probability map fitted to its own MC mean: the average of it
/// with itself keeps every tensor bit for bit and every other setting, and drops the map.
#[test]
fn a_members_probability_map_is_dropped_and_its_other_settings_kept() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/lungseg-default.safetensors");
    let shipped = ModelFile::read(&path).unwrap();
    let mut config = shipped.json_object("config").unwrap();
    assert!(
        config.contains_key("probability_map"),
        "the fixture has a map"
    );
    let avg = average(&[shipped.clone(), shipped.clone()], &[], &sources(2)).unwrap();
    assert_eq!(avg.tensors, shipped.tensors);
    config.remove("probability_map");
    assert_eq!(avg.json_object("config").unwrap(), config);
    assert_eq!(avg.metadata["review"], shipped.metadata["review"]);
    let (_, model) = avg.to_bytes().unwrap();
    assert!(model.network().config().probability_map.is_none());
    let (_, original) = shipped.to_bytes().unwrap();
    assert!(original.network().config().probability_map.is_some());
}

#[test]
fn other_networks_and_bad_weights_are_refused() {
    let a = random_model(vec![4, 8]);
    let err = |files: &[ModelFile], w: &[f64]| {
        average(files, w, &sources(files.len()))
            .unwrap_err()
            .to_string()
    };
    let wider = random_model(vec![4, 6]);
    assert!(err(&[a.clone(), wider], &[]).contains("channels"));
    let mut other_dropout = a.clone();
    let mut config = other_dropout.json_object("config").unwrap();
    config["dropout"]["p"] = serde_json::json!(0.3);
    other_dropout.set_json_object("config", config);
    assert!(err(&[a.clone(), other_dropout], &[]).contains("dropout"));
    assert!(err(std::slice::from_ref(&a), &[]).contains("at least two"));
    assert!(err(&[a.clone(), a.clone()], &[1.0]).contains("1 weights for 2 models"));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            err(&[a.clone(), a.clone()], &[1.0, bad]).contains("finite and > 0"),
            "{bad}"
        );
    }
}
