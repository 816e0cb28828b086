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
    // Only the ffi module is the C ABI. cbindgen follows `mod` items from `ffi/mod.rs`, so that
    // one file is the whole input (adding the submodules too declared everything twice).
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/ffi/mod.rs"))
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

/// Every exported function is declared once: redeclarations are legal C, so no compiler catches
/// a generator that emits the API twice (the header once did).
#[test]
fn header_declares_every_entry_point_exactly_once() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(crate_dir.join("../include/lungseg.h")).unwrap();
    let mut exported = Vec::new();
    for entry in std::fs::read_dir(crate_dir.join("src/ffi")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "#[no_mangle]" {
                let sig = lines.next().unwrap_or_default();
                let name = sig
                    .split("fn ")
                    .nth(1)
                    .and_then(|s| s.split('(').next())
                    .unwrap_or_else(|| panic!("no function after #[no_mangle]: {sig}"));
                exported.push(name.to_string());
            }
        }
    }
    assert!(exported.len() >= 19, "{exported:?}");
    // Declaration lines only (comments mention functions too); `name(` after a space or `*`.
    let code: Vec<&str> = header
        .lines()
        .filter(|l| {
            !["//", "/*", "*"]
                .iter()
                .any(|c| l.trim_start().starts_with(c))
        })
        .collect();
    for name in &exported {
        let declared = code
            .iter()
            .filter(|l| {
                l.match_indices(&format!("{name}("))
                    .any(|(i, _)| i > 0 && matches!(l.as_bytes()[i - 1], b' ' | b'*'))
            })
            .count();
        assert_eq!(
            declared, 1,
            "{name} is declared {declared} times in lungseg.h"
        );
    }
}
