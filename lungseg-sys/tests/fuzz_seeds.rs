//! Replays every committed fuzz seed and saved crash input (MetaImage, model, model config,
//! C API targets; DICOM in a build with the `dicom` feature) through the fuzz target bodies on stable, so CI catches regressions without a
//! fuzzer. Seeds must also still parse/read successfully: a seed that errors out early no longer
//! guides the fuzzer anywhere useful. Every folder must exist: a missing one (a renamed target,
//! a typo) would otherwise replay nothing and pass.

use lungseg::mhd::fuzzing;
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/` (a README.md excepted), sorted; panics when the
/// folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every fuzz target needs it)", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name() != Some("README.md".as_ref()))
        .collect();
    files.sort();
    files
}

/// Every target in `fuzz/fuzz_targets/` has a seed folder and a regression folder.
#[test]
fn every_target_has_seed_and_regression_folders() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut n = 0;
    for entry in std::fs::read_dir(targets).unwrap() {
        let path = entry.unwrap().path();
        let target = path.file_stem().unwrap().to_str().unwrap();
        inputs("seeds", target);
        inputs("regressions", target);
        n += 1;
    }
    assert!(n >= 5, "only {n} fuzz targets found");
}

#[test]
fn mhd_header_seeds_and_regressions() {
    let seeds = inputs("seeds", "mhd_header");
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/mhd_header has only {} seeds",
        seeds.len()
    );
    for p in &seeds {
        let data = std::fs::read(p).unwrap();
        fuzzing::mhd_header(&data);
        lungseg::mhd::parse_header(&data).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()));
    }
    for p in inputs("regressions", "mhd_header") {
        fuzzing::mhd_header(&std::fs::read(p).unwrap());
    }
}

#[test]
fn mhd_volume_seeds_and_regressions() {
    let seeds = inputs("seeds", "mhd_volume");
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/mhd_volume has only {} seeds",
        seeds.len()
    );
    for p in &seeds {
        let data = std::fs::read(p).unwrap();
        fuzzing::mhd_volume(&data);
        let (name, source) = fuzzing::split_files(&data);
        lungseg::mhd::read_from(&source, &name, &fuzzing::fuzz_options())
            .unwrap_or_else(|e| panic!("seed {}: {e}", p.display()));
    }
    for p in inputs("regressions", "mhd_volume") {
        fuzzing::mhd_volume(&std::fs::read(p).unwrap());
    }
}

fn model_bytes() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_f16_element.safetensors"),
    )
    .unwrap()
}

#[test]
fn model_load_seeds_and_regressions() {
    let seeds = inputs("seeds", "model_load");
    assert!(
        seeds.len() >= 5,
        "fuzz/seeds/model_load has only {} seeds",
        seeds.len()
    );
    let mut loaded = 0;
    for p in seeds.iter().chain(&inputs("regressions", "model_load")) {
        let data = std::fs::read(p).unwrap();
        lungseg::fuzzing::model_load(&data);
        loaded += lungseg::model::Model::from_bytes(&data).is_ok() as usize;
    }
    assert!(
        loaded >= 2,
        "seeds should include loadable models, {loaded} loaded"
    );
}

#[test]
fn c_api_seeds_and_regressions() {
    let seeds = inputs("seeds", "c_api");
    assert!(
        seeds.len() >= 5,
        "fuzz/seeds/c_api has only {} seeds",
        seeds.len()
    );
    let model = model_bytes();
    for p in seeds.iter().chain(&inputs("regressions", "c_api")) {
        lungseg::fuzzing::c_api(&model, &std::fs::read(p).unwrap());
    }
}

#[test]
fn model_config_seeds_and_regressions() {
    let seeds = inputs("seeds", "model_config");
    assert!(
        seeds.len() >= 5,
        "fuzz/seeds/model_config has only {} seeds",
        seeds.len()
    );
    let model = model_bytes();
    let (mut loaded, mut with_map, mut with_point, mut with_limit) = (0, 0, 0, 0);
    let mut with_second_look = 0;
    for p in &seeds {
        let data = std::fs::read(p).unwrap();
        lungseg::fuzzing::model_config(&model, &data);
        let bytes = lungseg::fuzzing::with_config(&model, &data).unwrap();
        if let Ok(m) = lungseg::model::Model::from_bytes(&bytes) {
            loaded += 1;
            with_map += m.config().probability_map.is_some() as usize;
            let c = m.config();
            with_point += lungseg::mask::PointRule::of(c).is_active(c.mask_threshold) as usize;
            with_limit += (c.max_scan_spacing_mm > 0.0) as usize;
            with_second_look += c.second_look.is_some() as usize;
        }
    }
    assert!(
        loaded >= 4,
        "seeds should mostly be loadable models, {loaded} loaded"
    );
    // The fuzzer reaches the map's checks and `calibrated_probability` from a loading model.
    assert!(with_map >= 1, "no loadable seed has a probability map");
    // ... and the final mask's point rule, through the summary and that map.
    assert!(with_point >= 1, "no loadable seed has a point rule");
    // ... and the scan-spacing limit's parse and checks.
    assert!(with_limit >= 1, "no loadable seed has a scan-spacing limit");
    // ... and the second look's parse, checks and join.
    assert!(with_second_look >= 1, "no loadable seed has a second look");
    for p in inputs("regressions", "model_config") {
        lungseg::fuzzing::model_config(&model, &std::fs::read(p).unwrap());
    }
}

/// `dicom_file` (feature `dicom`): seeds are one file of each fixture folder of
/// tests/fixtures/dicom (copied by make_dicom_fixtures.py); each must still get through the
/// walk and the header reader, and most must decode to pixels.
#[cfg(feature = "dicom")]
#[test]
fn dicom_file_seeds_and_regressions() {
    use lungseg::volume::dicom::{fuzzing, header, pixels};
    let seeds = inputs("seeds", "dicom_file");
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/dicom_file has only {} seeds",
        seeds.len()
    );
    let mut decoded = 0;
    for p in &seeds {
        let data = std::fs::read(p).unwrap();
        fuzzing::dicom_file(&data);
        let file = header::read(&data).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()));
        decoded += file
            .and_then(|f| f.slice.ok())
            .is_some_and(|s| pixels::pixel_bytes(&s, &data).is_ok()) as usize;
    }
    assert!(decoded >= 8, "only {decoded} seeds decode to pixels");
    for p in inputs("regressions", "dicom_file") {
        fuzzing::dicom_file(&std::fs::read(p).unwrap());
    }
}
