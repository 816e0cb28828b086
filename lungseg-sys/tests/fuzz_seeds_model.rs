//! Replays the committed seeds and saved crash inputs of the `model_load` and `c_api` fuzz
//! targets on stable, through the same bodies the fuzzer runs.

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
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
