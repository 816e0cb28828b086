//! The checked-in C header must be exactly what cbindgen generates from the current source.
//! Regenerate with `LUNGSEG_BLESS=1 cargo test -p lungseg-sys --test header`.

use std::path::PathBuf;

#[test]
fn header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/lungseg.h");
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    // Only the ffi module is the C ABI; parse its files, not the whole crate.
    let mut sources: Vec<PathBuf> = std::fs::read_dir(crate_dir.join("src/ffi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    sources.sort();
    let mut builder = cbindgen::Builder::new().with_config(config);
    for s in &sources {
        builder = builder.with_src(s);
    }
    builder
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    if std::env::var_os("LUNGSEG_BLESS").is_some() {
        std::fs::write(&header, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        current == generated,
        "include/lungseg.h is stale: run `LUNGSEG_BLESS=1 cargo test -p lungseg-sys --test header` and commit it"
    );
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/lungseg.h"),
    )
    .unwrap();
    for (name, value) in [
        ("LUNGSEG_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("LUNGSEG_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("LUNGSEG_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(line.split_whitespace().nth(2), Some(value), "{line}");
    }
}
