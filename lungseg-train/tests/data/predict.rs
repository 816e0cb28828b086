//! `predict`, the command-line predictor: points from a LUNA16-style CSV and `--point`, results
//! equal to the engine's on the same patches, maps around each point and on the scan's grid,
//! and NIfTI output whose geometry SimpleITK reads as the scan's (the outside oracle for the
//! LPS → RAS qform/sform).

use std::path::{Path, PathBuf};
use std::process::Command;

use lungseg::geometry::Geometry;
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::patch::{extract_hu, PatchSpec};
use lungseg::volume::{PixelData, Volume};
use lungseg_train::predict::{self, Format, PredictArgs};

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/small_f16_element.safetensors")
}

/// A 40×36×20 oblique, flipped scan at 0.8 × 0.8 × 2 mm with two bright blobs.
fn write_scan(dir: &Path) -> (PathBuf, Volume) {
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let direction = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]];
    let g = Geometry::new(
        [40, 36, 20],
        [0.8, 0.8, 2.0],
        [-12.0, -10.0, 25.0],
        direction,
    )
    .unwrap();
    let mut px = vec![-850i16; g.voxel_count()];
    for (i, v) in px.iter_mut().enumerate() {
        let (x, y, z) = (i % 40, i / 40 % 36, i / 1440);
        let near = |cx: f64, cy: f64, cz: f64| {
            let d = [
                (x as f64 - cx) * 0.8,
                (y as f64 - cy) * 0.8,
                (z as f64 - cz) * 2.0,
            ];
            d.iter().map(|v| v * v).sum::<f64>() < 16.0
        };
        if near(15.0, 14.0, 8.0) || near(28.0, 22.0, 12.0) {
            *v = 30;
        }
    }
    let v = Volume::new(g, PixelData::I16(px)).unwrap();
    let path = dir.join("1.2.3.scan.mhd");
    lungseg::mhd::write(&path, &v, &Default::default()).unwrap();
    (path, v)
}

/// The centres of [`write_scan`]'s two blobs, in world mm.
fn blob_points(volume: &Volume) -> Vec<[f64; 3]> {
    vec![
        volume.geometry.index_to_world([15.0, 14.0, 8.0]),
        volume.geometry.index_to_world([28.0, 22.0, 12.0]),
    ]
}

/// The predictor on `scan` at `points` with `model`, into `out`.
fn predict_at(scan: &Path, out: &Path, points: &[[f64; 3]], model: &Path) -> predict::Predictions {
    let mut a = args(scan, out);
    a.points = points.to_vec();
    a.model = Some(model.to_path_buf());
    predict::run(&a).unwrap()
}

fn args(scan: &Path, out: &Path) -> PredictArgs {
    PredictArgs {
        scan: scan.to_path_buf(),
        candidates: None,
        seriesuid: None,
        points: Vec::new(),
        model: Some(model_path()),
        out: out.to_path_buf(),
        samples: 4,
        seed: 9,
        threads: 1,
        format: Format::Mhd,
        no_patch_maps: false,
        dicom_seg: false,
        quiet: true,
    }
}

#[test]
fn predictions_are_the_engines_and_maps_land_on_both_grids() {
    let dir = tempfile::tempdir().unwrap();
    let (scan, volume) = write_scan(dir.path());
    let p0 = volume.geometry.index_to_world([15.0, 14.0, 8.0]);
    let p1 = volume.geometry.index_to_world([28.0, 22.0, 12.0]);
    let csv = dir.path().join("candidates.csv");
    std::fs::write(
        &csv,
        format!(
            "seriesuid,coordX,coordY,coordZ,class\n1.2.3.scan,{},{},{},1\nother,0,0,0,0\n",
            p0[0], p0[1], p0[2]
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut a = args(&scan, &out);
    a.candidates = Some(csv);
    a.points = vec![p1];
    let p = predict::run(&a).unwrap();
    assert_eq!(p.seriesuid, "1.2.3.scan");
    assert_eq!(p.points.len(), 2, "the other scan's row is skipped");
    assert!(p.points[0].origin.ends_with("candidates.csv line 2"));
    assert_eq!(p.points[1].origin, "--point");

    // Each point's result is the engine's on the same patch.
    let model = Model::open(&model_path()).unwrap();
    let c = model.config();
    let spec = PatchSpec {
        size: c.patch_size,
        spacing_mm: c.spacing_mm,
        outside_hu: -1000.0,
    };
    for (r, world) in p.points.iter().zip([p0, p1]) {
        let mut hu = vec![0f32; spec.len()];
        extract_hu(&volume, world, &spec, &mut hu).unwrap();
        let mut mean = vec![0f32; spec.len()];
        let opts = McOptions {
            n_samples: 4,
            seed: 9,
            ..McOptions::default()
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            ..Default::default()
        };
        let s = mc::predict_uncertainty(&model, &hu, &opts, maps).unwrap();
        assert_eq!(r.summary, s, "the engine's summary, bit for bit");
        let file = out.join(&r.maps["mean"]);
        let written = lungseg::mhd::read(&file, &Default::default()).unwrap();
        let w: Vec<f32> = (0..mean.len()).map(|i| written.data.get_f32(i)).collect();
        assert_eq!(w, mean, "{}", file.display());
        let v = r.voxel;
        assert!(v
            .iter()
            .zip(volume.geometry.world_to_index(world))
            .all(|(a, b)| (a - b).abs() < 1e-9));
    }

    // The scan-grid maps have the scan's geometry.
    for name in ["probability", "mutual_info", "mask"] {
        let m = lungseg::mhd::read(&out.join(&p.scan_maps[name]), &Default::default()).unwrap();
        assert_eq!(m.geometry, volume.geometry, "{name}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 2);
    let first = &json["points"][0];
    assert_eq!(first["needs_review"], p.points[0].summary.needs_review);
    assert_eq!(first["review_score"], p.review_score.as_str());
    assert!(first["structure"]["dice_agreement"].is_number());
    assert_eq!(json["review_score"], p.review_score.as_str());
}

const SITK_GEOMETRY: &str = r#"
import json, sys
try:
    import SimpleITK as sitk
except ImportError as e:
    sys.stderr.write("LUNGSEG_MISSING_PYTHON_DEPS %s\n" % e)
    sys.exit(3)
out = {}
for name in sys.argv[1:]:
    img = sitk.ReadImage(name)
    out[name] = {"size": list(img.GetSize()), "origin": list(img.GetOrigin()),
                 "spacing": list(img.GetSpacing()), "direction": list(img.GetDirection())}
print(json.dumps(out))
"#;

/// SimpleITK reads the NIfTI maps with the scan's LPS geometry: the qform/sform are right.
#[test]
fn nifti_maps_have_the_scans_geometry_in_simpleitk() {
    let dir = tempfile::tempdir().unwrap();
    let (scan, volume) = write_scan(dir.path());
    let out = dir.path().join("out");
    let mut a = args(&scan, &out);
    a.points = vec![volume.geometry.index_to_world([20.0, 18.0, 10.0])];
    a.format = Format::Nifti;
    let p = predict::run(&a).unwrap();
    let nii = out.join(&p.scan_maps["probability"]);
    let patch = out.join(&p.points[0].maps["mean"]);
    assert!(nii.to_string_lossy().ends_with(".nii.gz"));
    let run = Command::new("python3")
        .arg("-c")
        .arg(SITK_GEOMETRY)
        .args([&scan, &nii, &patch])
        .output()
        .expect("python3 is needed for this test");
    assert!(
        run.status.success(),
        "this test needs python3 with SimpleITK (`pip install SimpleITK numpy`): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let get = |p: &Path, k: &str| -> Vec<f64> {
        j[p.to_str().unwrap()][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    for k in ["size", "origin", "spacing", "direction"] {
        let (want, got) = (get(&scan, k), get(&nii, k));
        assert!(
            want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-4),
            "{k}: scan {want:?}, NIfTI {got:?}"
        );
    }
    // The patch map: SimpleITK's geometry is the patch grid's.
    let g = PatchSpec {
        size: Model::open(&model_path()).unwrap().config().patch_size,
        spacing_mm: Model::open(&model_path()).unwrap().config().spacing_mm,
        outside_hu: -1000.0,
    }
    .geometry(a.points[0])
    .unwrap();
    let origin = get(&patch, "origin");
    assert!(
        origin
            .iter()
            .zip(g.origin)
            .all(|(a, b)| (a - b).abs() < 1e-4),
        "{origin:?}"
    );
    // Read back by lungseg's own NIfTI reader: the same voxels as the MetaImage route.
    let back = predict::nifti::read(&nii).unwrap();
    assert_eq!(back.geometry.dims, volume.geometry.dims);
}

#[test]
fn missing_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (scan, _) = write_scan(dir.path());
    let out = dir.path().join("out");
    let e = predict::run(&args(&scan, &out)).unwrap_err();
    assert!(format!("{e:#}").contains("no points"), "{e:#}");
    let mut a = args(&scan, &out);
    a.points = vec![[0.0; 3]];
    a.model = None;
    if Path::new(predict::DEFAULT_MODEL).exists() {
        // Without --model the shipped default model runs.
        let p = predict::run(&a).unwrap();
        assert!(
            p.model.ends_with("lungseg-default.safetensors"),
            "{}",
            p.model
        );
        assert_eq!(p.points.len(), 1);
    } else {
        let e = predict::run(&a).unwrap_err();
        assert!(format!("{e:#}").contains("pass --model"), "{e:#}");
    }
    let mut a = args(&dir.path().join("missing.mhd"), &out);
    a.points = vec![[0.0; 3]];
    assert!(predict::run(&a).is_err());
}

/// A DICOM folder is read as its CT series: the scan-grid maps get the series' geometry.
#[test]
fn a_dicom_folder_is_a_scan() {
    let series = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/dicom/oblique_int16");
    let want = lungseg::volume::dicom::read_series(&series, &Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut a = args(&series, &out);
    a.points = vec![want.geometry.index_to_world([5.0, 4.0, 2.0])];
    let p = predict::run(&a).unwrap();
    let m =
        lungseg::mhd::read(&out.join(&p.scan_maps["probability"]), &Default::default()).unwrap();
    assert_eq!(m.geometry, want.geometry);
    // With a CSV, the series must be named (LUNA16's seriesuid is the SeriesInstanceUID).
    let csv = dir.path().join("c.csv");
    std::fs::write(&csv, "seriesuid,coordX,coordY,coordZ\nx,0,0,0\n").unwrap();
    a.candidates = Some(csv);
    let e = predict::run(&a).unwrap_err();
    assert!(format!("{e:#}").contains("--seriesuid"), "{e:#}");
}

const READ_SEG: &str = r#"
import json, sys
try:
    import highdicom as hd
except ImportError as e:
    sys.stderr.write("LUNGSEG_MISSING_PYTHON_DEPS %s\n" % e)
    sys.exit(3)
seg = hd.seg.segread(sys.argv[1])
print(json.dumps({
    "segments": [{"label": s.SegmentLabel, "description": s.SegmentDescription}
                 for s in seg.SegmentSequence],
    "series": seg.ReferencedSeriesSequence[0].SeriesInstanceUID,
    "frames": int(seg.NumberOfFrames),
}))
"#;

/// `--dicom-seg`: highdicom reads the SEG back with one segment per point, each described by
/// the point's review flag and score.
#[test]
fn dicom_seg_has_a_segment_per_point() {
    let series = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lungseg-sys/tests/fixtures/dicom/axial_int16");
    let v = lungseg::volume::dicom::read_series(&series, &Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut a = args(&series, &out);
    a.points = vec![
        v.geometry.index_to_world([4.0, 4.0, 2.0]),
        v.geometry.index_to_world([7.0, 5.0, 3.0]),
    ];
    a.dicom_seg = true;
    let p = predict::run(&a).unwrap();
    let file = out.join(p.dicom_seg.as_deref().unwrap());
    let run = Command::new("python3")
        .arg("-c")
        .arg(READ_SEG)
        .arg(&file)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        run.status.success(),
        "this test needs python3 with highdicom (`pip install highdicom pydicom`): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let segs = j["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 2);
    for (s, r) in segs.iter().zip(&p.points) {
        let d = s["description"].as_str().unwrap();
        let flag = if r.summary.needs_review { "yes" } else { "no" };
        assert!(d.starts_with(&format!("needs review: {flag};")), "{d}");
        assert!(
            d.contains(&format!(
                "{} {:.4}",
                p.review_score, r.summary.uncertainty_score
            )),
            "{d}"
        );
    }
    assert_eq!(segs[1]["label"], "Nodule 2");

    // Not a DICOM folder: refused before anything runs.
    let (scan, _) = write_scan(dir.path());
    let mut a = args(&scan, &out);
    a.points = vec![[0.0; 3]];
    a.dicom_seg = true;
    let e = predict::run(&a).unwrap_err();
    assert!(format!("{e:#}").contains("DICOM series folder"), "{e:#}");
}

/// `path`'s model with a probability map: inside the mask 0.5 + p/2, outside p/4.
fn with_probability_map(path: &Path, out: &Path) {
    use lungseg_train::model_file::{replace_file, ModelFile};
    let mut file = ModelFile::read(path).unwrap();
    let mut config = file.json_object("config").unwrap();
    config.insert(
        "probability_map".into(),
        serde_json::json!({"band_max_voxels": [0], "knots": [0, 1], "values": [[0.5, 1], [0, 0.25]]}),
    );
    file.set_json_object("config", config);
    replace_file(out, &file.to_bytes().unwrap().0).unwrap();
}

/// With a probability map the patch's and the scan's `probability` are the calibrated
/// probabilities (the library's `calibrated_probability` of the point's mean) and the MC mean
/// is written apart; without one there is no second map.
#[test]
fn probability_maps_are_calibrated_when_the_model_has_a_map() {
    let dir = tempfile::tempdir().unwrap();
    let (scan, volume) = write_scan(dir.path());
    let world = volume.geometry.index_to_world([15.0, 14.0, 8.0]);
    let plain = predict::run(&{
        let mut a = args(&scan, &dir.path().join("plain"));
        a.points = vec![world];
        a
    })
    .unwrap();
    assert!(!plain.probability_map);
    assert!(!plain.scan_maps.contains_key("mean"));
    assert!(!plain.points[0].maps.contains_key("probability"));

    let mapped = dir.path().join("mapped.safetensors");
    with_probability_map(&model_path(), &mapped);
    let out = dir.path().join("out");
    let mut a = args(&scan, &out);
    a.points = vec![world];
    a.model = Some(mapped.clone());
    let p = predict::run(&a).unwrap();
    assert!(p.probability_map);
    assert_eq!(
        p.points[0].summary, plain.points[0].summary,
        "the map changes no summary"
    );
    let read = |rel: &str| -> Vec<f32> {
        let v = lungseg::mhd::read(&out.join(rel), &Default::default()).unwrap();
        (0..v.geometry.voxel_count())
            .map(|i| v.data.get_f32(i))
            .collect()
    };
    let mean = read(&p.points[0].maps["mean"]);
    let mut want = vec![0f32; mean.len()];
    let model = Model::open(&mapped).unwrap();
    lungseg::probability_map::calibrated_probability(model.config(), &mean, &mut want).unwrap();
    assert_eq!(read(&p.points[0].maps["probability"]), want);
    assert_ne!(
        want, mean,
        "the map must change the patch for this test to mean anything"
    );

    // On the scan: `mean` is the unmapped run's probability, `probability` differs from it.
    let scan_mean = read(&p.scan_maps["mean"]);
    let plain_out = dir.path().join("plain");
    let plain_prob = lungseg::mhd::read(
        &plain_out.join(&plain.scan_maps["probability"]),
        &Default::default(),
    )
    .unwrap();
    let plain_prob: Vec<f32> = (0..scan_mean.len())
        .map(|i| plain_prob.data.get_f32(i))
        .collect();
    assert_eq!(scan_mean, plain_prob);
    assert_ne!(read(&p.scan_maps["probability"]), scan_mean);
}

/// `set-intended-use` writes the limit, its version and its reason; `predict` on a scan coarser
/// than the limit (2 mm slices against 1.5 mm) flags every point and changes nothing else, at
/// the limit it changes nothing, and 0 takes the key out again.
#[test]
fn a_scan_coarser_than_the_models_limit_needs_review_everywhere() {
    use lungseg_train::intended_use::SetIntendedUseArgs;
    use lungseg_train::model_file::ModelFile;
    let dir = tempfile::tempdir().unwrap();
    let (scan, volume) = write_scan(dir.path());
    let points = blob_points(&volume);
    let run = |model: &Path, name: &str| predict_at(&scan, &dir.path().join(name), &points, model);
    let plain = run(&model_path(), "plain");
    assert!(plain.scan_admitted && plain.max_scan_spacing_mm == 0.0);
    assert_eq!(
        plain.scan_resolution_mm, volume.geometry.spacing,
        "MetaImage: no thickness"
    );
    let limited = dir.path().join("limited.safetensors");
    std::fs::copy(model_path(), &limited).unwrap();
    let set = |mm: f64| {
        SetIntendedUseArgs {
            model: limited.clone(),
            max_scan_spacing_mm: mm,
            basis: "test scans 0.8-2 mm".into(),
        }
        .run()
        .unwrap();
        ModelFile::read(&limited).unwrap()
    };
    let file = set(1.5);
    assert_eq!(file.metadata["format_version"], "8");
    let provenance = file.json_object("provenance").unwrap();
    assert_eq!(provenance["intended_use"]["max_scan_spacing_mm"], 1.5);
    assert_eq!(provenance["intended_use"]["basis"], "test scans 0.8-2 mm");
    let p = run(&limited, "coarse");
    assert!(!p.scan_admitted);
    assert_eq!(p.max_scan_spacing_mm, 1.5);
    for (got, want) in p.points.iter().zip(&plain.points) {
        assert!(got.summary.needs_review && got.summary.outside_intended_use);
        let mut same = got.summary;
        (same.needs_review, same.outside_intended_use) =
            (want.summary.needs_review, want.summary.outside_intended_use);
        assert_eq!(same, want.summary, "only the flag changes");
    }
    assert!(
        plain.points.iter().any(|r| !r.summary.needs_review),
        "some point is unflagged without the limit, or the test shows nothing"
    );
    set(2.0);
    let p = run(&limited, "at-limit");
    assert!(p.scan_admitted);
    for (got, want) in p.points.iter().zip(&plain.points) {
        assert_eq!(got.summary, want.summary);
    }
    let file = set(0.0);
    assert!(!file
        .json_object("config")
        .unwrap()
        .contains_key("max_scan_spacing_mm"));
    let original = ModelFile::read(&model_path()).unwrap();
    assert_eq!(
        file.metadata["format_version"],
        original.metadata["format_version"]
    );
    let e = SetIntendedUseArgs {
        model: limited.clone(),
        max_scan_spacing_mm: 1.5,
        basis: " ".into(),
    }
    .run()
    .unwrap_err();
    assert!(e.to_string().contains("--basis"), "{e}");
}

/// `path`'s model with the second look `set-second-look` writes (support 0: every second-look
/// component joins, so the mask changes).
fn with_second_look(path: &Path, out: &Path) {
    use lungseg_train::second_look::SetSecondLookArgs;
    std::fs::copy(path, out).unwrap();
    SetSecondLookArgs {
        model: out.to_path_buf(),
        first_threshold: 0.55,
        threshold: 0.5,
        support: 0.0,
        max_scan_spacing_mm: 2.5,
        basis: "test".into(),
        remove: false,
    }
    .run()
    .unwrap();
}

/// With a second look the predictor's masks and volumes are the library's point call's with a
/// final mask (`lungseg_predict_uncertainty_at`), and differ from the model's own mask.
#[test]
fn the_predictor_runs_the_models_second_look_as_the_c_abi_does() {
    use lungseg::ffi::*;
    let dir = tempfile::tempdir().unwrap();
    let (scan, volume) = write_scan(dir.path());
    let looked = dir.path().join("looked.safetensors");
    with_second_look(&model_path(), &looked);
    let file = lungseg_train::model_file::ModelFile::read(&looked).unwrap();
    let provenance = file.json_object("provenance").unwrap();
    assert_eq!(
        provenance["second_look"]["setting"]["first_threshold"],
        0.55
    );
    let points = blob_points(&volume);
    let run = |model: &Path, name: &str| predict_at(&scan, &dir.path().join(name), &points, model);
    let plain = run(&model_path(), "plain");
    let p = run(&looked, "looked");
    let c_model = {
        let path = std::ffi::CString::new(looked.to_str().unwrap()).unwrap();
        let mut m = std::ptr::null_mut();
        assert_eq!(
            unsafe { lungseg_model_open(path.as_ptr(), std::ptr::null(), &mut m) },
            lungseg_status::LUNGSEG_OK
        );
        m
    };
    let path = std::ffi::CString::new(scan.to_str().unwrap()).unwrap();
    let mut v = std::ptr::null_mut();
    assert_eq!(
        unsafe { lungseg_volume_open(path.as_ptr(), &mut v) },
        lungseg_status::LUNGSEG_OK
    );
    let n = Model::open(&looked).unwrap().config().patch_voxels();
    let mut changed = false;
    for ((r, base), world) in p.points.iter().zip(&plain.points).zip(&points) {
        assert_eq!(r.mask_source, lungseg::mc::point::MaskSource::Joined);
        assert_eq!(base.mask_source, lungseg::mc::point::MaskSource::ModelMask);
        let (mut mask, mut source) = (vec![0u8; n], 0u32);
        let opts = lungseg_mc_options {
            n_samples: 4,
            seed: 9,
            final_mask: mask.as_mut_ptr(),
            final_mask_len: n,
            mask_source: &mut source,
            ..Default::default()
        };
        let mut out = lungseg_uncertainty::default();
        let st =
            unsafe { lungseg_predict_uncertainty_at(c_model, v, world.as_ptr(), &opts, &mut out) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK);
        assert_eq!(source, lungseg_mask_source::LUNGSEG_MASK_JOINED as u32);
        assert_eq!(r.summary.foreground_voxels, out.summary.foreground_voxels);
        assert_eq!(r.summary.volume_mm3, out.summary.volume_mm3);
        let written = lungseg::mhd::read(
            &dir.path().join("looked").join(&r.maps["mask"]),
            &Default::default(),
        )
        .unwrap();
        let w: Vec<u8> = (0..n).map(|i| written.data.get_f32(i) as u8).collect();
        assert_eq!(w, mask, "the mask map is the call's final mask");
        assert_eq!(r.summary.uncertainty_score, base.summary.uncertainty_score);
        changed |= r.summary.foreground_voxels != base.summary.foreground_voxels;
    }
    assert!(
        changed,
        "the second look changes some mask, or the test shows nothing"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("looked/predictions.json")).unwrap())
            .unwrap();
    assert_eq!(json["points"][0]["mask_source"], "joined");
    unsafe {
        lungseg_model_free(c_model);
        lungseg_volume_free(v);
    }
}

#[test]
fn set_second_look_refuses_bad_settings_and_removes_its_key() {
    use lungseg_train::second_look::SetSecondLookArgs;
    let dir = tempfile::tempdir().unwrap();
    let looked = dir.path().join("looked.safetensors");
    with_second_look(&model_path(), &looked);
    let base = SetSecondLookArgs {
        model: looked.clone(),
        first_threshold: 0.7,
        threshold: 0.7,
        support: 0.55,
        max_scan_spacing_mm: 2.5,
        basis: "calibration".into(),
        remove: false,
    };
    for bad in [
        SetSecondLookArgs {
            threshold: 1.5,
            ..base.clone()
        },
        SetSecondLookArgs {
            max_scan_spacing_mm: 0.0,
            ..base.clone()
        },
        SetSecondLookArgs {
            basis: " ".into(),
            ..base.clone()
        },
    ] {
        assert!(bad.run().is_err(), "{bad:?}");
    }
    base.run().unwrap();
    let look = Model::open(&looked).unwrap().config().second_look.unwrap();
    assert_eq!((look.first_threshold, look.support), (0.7, 0.55));
    SetSecondLookArgs {
        remove: true,
        ..base
    }
    .run()
    .unwrap();
    assert_eq!(Model::open(&looked).unwrap().config().second_look, None);
    let file = lungseg_train::model_file::ModelFile::read(&looked).unwrap();
    assert!(!file
        .json_object("provenance")
        .unwrap()
        .contains_key("second_look"));
    assert!(!file
        .json_object("config")
        .unwrap()
        .contains_key("second_look"));
}
