//! The C ABI as a C99 compiler sees it: `include/lungseg.h` compiled with
//! `cc -std=c99 -Wall -Wextra -Werror -pedantic`.
//! - Every enum in the header is an ABI enum of the library, with the same names and values.
//! - Every struct's `sizeof` in C is the Rust `size_of`, and a versioned struct's first
//!   `V1` bytes are exactly its frozen first layout (no field added into its tail padding).
//! - `tests/c/abi_usage.c` uses every enum value, every options struct with `struct_size = sizeof`, the output structs, the
//!   const handle calls, and runs against the library; `tests/c/dicom_open.c` opens DICOM series,
//!   `tests/c/dicom_seg.c` writes a DICOM SEG.

use lungseg::ffi::*;
use std::collections::BTreeMap;
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::process::Command;

const CFLAGS: [&str; 5] = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header() -> String {
    std::fs::read_to_string(crate_dir().join("../include/lungseg.h")).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("c_abi")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles C sources with the strict flags against the header; `link` adds the static library.
fn compile(src: &Path, exe: &Path, link: bool) {
    compile_std(src, exe, link, &CFLAGS)
}

/// [`compile`] with other flags (the C11 programs that use threads and atomics).
fn compile_std(src: &Path, exe: &Path, link: bool, flags: &[&str]) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(flags)
        .arg("-I")
        .arg(crate_dir().join("../include"))
        .arg(src)
        .arg("-o")
        .arg(exe);
    if link {
        cmd.arg(static_lib()).args(["-lpthread", "-ldl", "-lm"]);
    }
    if cfg!(feature = "cuda") {
        // A CUDA build may run on a GPU: the C side must not expect LUNGSEG_DEVICE then.
        cmd.arg("-DLUNGSEG_WITH_CUDA");
    }
    if cfg!(feature = "dicom") {
        // With the feature the DICOM entry point reads; without, it answers UNSUPPORTED.
        cmd.arg("-DLUNGSEG_WITH_DICOM");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("the C compiler `{cc}` is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(exe: &Path, args: &[&Path]) -> String {
    let out = Command::new(exe).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        exe.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The staticlib cargo built with the rlib this test links (`target/<profile>/deps`: the crate's
/// `crate-type` list makes every build of the library produce it).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.with_file_name("liblungseg.a");
    assert!(lib.exists(), "{} is missing", lib.display());
    lib
}

/// `typedef enum|struct NAME { body } NAME;` blocks of the header: name → body lines (code only).
fn blocks(header: &str, kind: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut lines = header.lines();
    let open = format!("typedef {kind} ");
    while let Some(l) = lines.next() {
        let Some(rest) = l.strip_prefix(&open) else {
            continue;
        };
        let Some(name) = rest.strip_suffix(" {") else {
            continue;
        };
        let body: Vec<String> = lines
            .by_ref()
            .take_while(|l| !l.starts_with('}'))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(String::from)
            .collect();
        out.insert(name.to_string(), body);
    }
    out
}

/// Every ABI enum of the library: (name, value) of each variant, from the enum itself.
fn rust_enums() -> BTreeMap<&'static str, Vec<(&'static str, u32)>> {
    fn values<T: Copy>(
        all: &[T],
        name: fn(T) -> &'static str,
        raw: fn(T) -> u32,
    ) -> Vec<(&'static str, u32)> {
        all.iter().map(|&v| (name(v), raw(v))).collect()
    }
    BTreeMap::from([
        (
            "lungseg_status",
            values(lungseg_status::ALL, lungseg_status::name, |v| v as u32),
        ),
        (
            "lungseg_device",
            values(lungseg_device::ALL, lungseg_device::name, |v| v as u32),
        ),
        (
            "lungseg_dropout_kind",
            values(lungseg_dropout_kind::ALL, lungseg_dropout_kind::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_element_type",
            values(lungseg_element_type::ALL, lungseg_element_type::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_pixel_type",
            values(lungseg_pixel_type::ALL, lungseg_pixel_type::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_scan_map_kind",
            values(
                lungseg_scan_map_kind::ALL,
                lungseg_scan_map_kind::name,
                |v| v as u32,
            ),
        ),
        (
            "lungseg_review_score",
            values(lungseg_review_score::ALL, lungseg_review_score::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_cpu_kernel",
            values(lungseg_cpu_kernel::ALL, lungseg_cpu_kernel::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_log_level",
            values(lungseg_log_level::ALL, lungseg_log_level::name, |v| {
                v as u32
            }),
        ),
        (
            "lungseg_mask_source",
            values(lungseg_mask_source::ALL, lungseg_mask_source::name, |v| {
                v as u32
            }),
        ),
    ])
}

#[test]
fn header_enums_are_the_library_enums() {
    let header = header();
    let c_enums = blocks(&header, "enum");
    let rust = rust_enums();
    assert_eq!(
        c_enums.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "every ABI enum, and only those, is in the header"
    );
    for (name, body) in &c_enums {
        let parsed: Vec<(String, u32)> = body
            .iter()
            .map(|l| {
                let (n, v) = l.trim_end_matches(',').split_once(" = ").unwrap();
                (n.to_string(), v.parse().unwrap())
            })
            .collect();
        let want: Vec<(String, u32)> = rust[name.as_str()]
            .iter()
            .map(|(n, v)| (n.to_string(), *v))
            .collect();
        assert_eq!(parsed, want, "{name}");
    }
    // And a C compiler agrees on every value.
    let dir = scratch("enums");
    let mut c = String::from("#include <stdio.h>\n#include \"lungseg.h\"\nint main(void) {\n");
    for (name, values) in &rust {
        for (v, _) in values {
            c += &format!("    printf(\"{name} {v} %d\\n\", (int){v});\n");
        }
    }
    c += "    return 0;\n}\n";
    std::fs::write(dir.join("enums.c"), c).unwrap();
    compile(&dir.join("enums.c"), &dir.join("enums"), false);
    let printed = run(&dir.join("enums"), &[]);
    let want: String = rust
        .iter()
        .flat_map(|(e, vs)| vs.iter().map(move |(n, v)| format!("{e} {n} {v}\n")))
        .collect();
    assert_eq!(printed, want);
}

/// A field as a C compiler lays it out: name, offset, size.
type Field = (&'static str, usize, usize);

/// One struct of the ABI: its Rust size and, when versioned, its frozen V1 size and fields.
struct Abi {
    size: usize,
    v1: Option<(usize, &'static [Field])>,
}

fn versioned<T: Versioned>(v1_fields: &'static [Field]) -> Abi {
    Abi {
        size: size_of::<T>(),
        v1: Some((T::V1, v1_fields)),
    }
}

/// An output struct frozen at its published layout: all of it is "V1".
fn frozen<T: FrozenOutput>(fields: &'static [Field]) -> Abi {
    assert_eq!(size_of::<T>(), T::SIZE);
    Abi {
        size: T::SIZE,
        v1: Some((T::SIZE, fields)),
    }
}

/// Every struct in the header. The V1 field lists (for frozen output structs: every field) are
/// the layouts published in 0.1.0, (name, offset,
/// size) as a C compiler lays them out: frozen, never edited.
fn rust_structs() -> BTreeMap<&'static str, Abi> {
    BTreeMap::from([
        (
            "lungseg_model_options",
            versioned::<lungseg_model_options>(&[
                ("struct_size", 0, 4),
                ("device", 4, 4),
                ("threads", 8, 4),
            ]),
        ),
        (
            "lungseg_mc_options",
            versioned::<lungseg_mc_options>(&[
                ("struct_size", 0, 4),
                ("n_samples", 4, 4),
                ("seed", 8, 8),
                ("override_review_threshold", 16, 4),
                ("review_threshold", 20, 4),
            ]),
        ),
        (
            "lungseg_run_options",
            versioned::<lungseg_run_options>(&[
                ("struct_size", 0, 4),
                ("log_level", 4, 4),
                ("cancel", 8, 8),
                ("progress", 16, 8),
                ("log", 24, 8),
                ("user", 32, 8),
            ]),
        ),
        (
            "lungseg_open_options",
            versioned::<lungseg_open_options>(&[
                ("struct_size", 0, 4),
                ("allow_outside_paths", 4, 4),
                ("max_voxels", 8, 8),
                ("max_bytes", 16, 8),
            ]),
        ),
        (
            "lungseg_patch_spec",
            versioned::<lungseg_patch_spec>(&[
                ("struct_size", 0, 4),
                ("size", 4, 12),
                ("spacing_mm", 16, 24),
                ("outside_hu", 40, 4),
            ]),
        ),
        (
            "lungseg_volume_desc",
            versioned::<lungseg_volume_desc>(&[
                ("struct_size", 0, 4),
                ("pixel_type", 4, 4),
                ("dims", 8, 24),
                ("spacing", 32, 24),
                ("origin", 56, 24),
                ("direction", 80, 72),
                ("row_stride_bytes", 152, 8),
                ("slice_stride_bytes", 160, 8),
                ("rescale_slope", 168, 8),
                ("rescale_intercept", 176, 8),
                ("max_voxels", 184, 8),
            ]),
        ),
        (
            "lungseg_volume_info",
            frozen::<lungseg_volume_info>(&[
                ("dims", 0, 24),
                ("spacing", 24, 24),
                ("origin", 48, 24),
                ("direction", 72, 72),
                ("element_type", 144, 4),
                ("channels", 148, 4),
            ]),
        ),
        (
            "lungseg_model_info",
            frozen::<lungseg_model_info>(&[
                ("patch_size", 0, 12),
                ("spacing_mm", 16, 24),
                ("hu_window", 40, 8),
                ("levels", 48, 4),
                ("channels", 52, 32),
                ("dropout_p", 84, 4),
                ("dropout_kind", 88, 4),
                ("review_threshold", 92, 4),
                ("parameter_count", 96, 8),
                ("device", 104, 4),
                ("device_name", 108, 64),
            ]),
        ),
        (
            "lungseg_uncertainty",
            frozen::<lungseg_uncertainty>(&[
                ("mean", 0, 8),
                ("variance", 8, 8),
                ("entropy", 16, 8),
                ("mutual_info", 24, 8),
                ("len", 32, 8),
                ("summary", 40, 56),
            ]),
        ),
        (
            "lungseg_structure_measures",
            versioned::<lungseg_structure_measures>(&[
                ("struct_size", 0, 4),
                ("review_score", 4, 4),
                ("dice_agreement", 8, 4),
                ("iou", 12, 4),
                ("volume_cv", 16, 4),
                ("empty_samples", 20, 4),
                ("intersection_voxels", 24, 8),
                ("union_voxels", 32, 8),
                ("sample_voxels_mean", 40, 8),
                ("sample_voxels_std", 48, 8),
            ]),
        ),
        (
            "lungseg_seg_segment",
            versioned::<lungseg_seg_segment>(&[
                ("struct_size", 0, 4),
                ("mask", 8, 8),
                ("mask_len", 16, 8),
                ("label", 24, 8),
                ("description", 32, 8),
            ]),
        ),
        (
            "lungseg_second_look",
            versioned::<lungseg_second_look>(&[
                ("struct_size", 0, 4),
                ("present", 4, 4),
                ("max_scan_spacing_mm", 8, 8),
                ("first_threshold", 16, 4),
                ("threshold", 20, 4),
                ("support", 24, 4),
            ]),
        ),
        (
            "lungseg_patch_summary",
            Abi {
                size: size_of::<lungseg_patch_summary>(),
                v1: None,
            },
        ),
    ])
}

/// The field name of a struct body line: `uint32_t size[3];` → `size`.
fn field_name(line: &str) -> &str {
    let decl = line.trim_end_matches(';');
    let decl = decl.split('[').next().unwrap();
    decl.rsplit([' ', '*']).next().unwrap()
}

#[test]
fn header_structs_match_rust_and_keep_their_v1_layout() {
    assert_eq!(
        size_of::<usize>(),
        8,
        "the frozen layouts are those of a 64-bit target"
    );
    let header = header();
    let structs = blocks(&header, "struct");
    let rust = rust_structs();
    assert_eq!(
        structs.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "every struct in the header is listed here"
    );
    let dir = scratch("layout");
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"lungseg.h\"\nint main(void) {\n",
    );
    for (name, body) in &structs {
        c += &format!("    printf(\"{name} %lu\\n\", (unsigned long)sizeof({name}));\n");
        for line in body {
            let f = field_name(line);
            c += &format!(
                "    printf(\"{name}.{f} %lu %lu\\n\", (unsigned long)offsetof({name}, {f}), \
                 (unsigned long)sizeof((({name} *)0)->{f}));\n"
            );
        }
    }
    c += "    return 0;\n}\n";
    std::fs::write(dir.join("layout.c"), c).unwrap();
    compile(&dir.join("layout.c"), &dir.join("layout"), false);
    let printed = run(&dir.join("layout"), &[]);

    let mut sizes = BTreeMap::new();
    let mut fields: BTreeMap<&str, Vec<(String, usize, usize)>> = BTreeMap::new();
    for line in printed.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            [name, size] => {
                sizes.insert(name, size.parse::<usize>().unwrap());
            }
            [field, off, size] => {
                let (s, f) = field.split_once('.').unwrap();
                fields.entry(s).or_default().push((
                    f.to_string(),
                    off.parse().unwrap(),
                    size.parse().unwrap(),
                ));
            }
            _ => panic!("{line}"),
        }
    }
    for (name, abi) in &rust {
        assert_eq!(sizes[name], abi.size, "sizeof({name}) in C vs Rust");
        let Some((v1, v1_fields)) = abi.v1 else {
            continue;
        };
        let below: Vec<(&str, usize, usize)> = fields[name]
            .iter()
            .filter(|(_, off, _)| *off < v1)
            .map(|(f, o, s)| (f.as_str(), *o, *s))
            .collect();
        assert_eq!(
            below, v1_fields,
            "{name}: the first {v1} bytes are the frozen V1 layout; fields are only appended, \
             at offsets >= V1"
        );
        let end = v1_fields.iter().map(|(_, o, s)| o + s).max().unwrap();
        assert!(
            end <= v1 && v1 - end < 8 && v1 <= abi.size,
            "{name}: V1 {v1} is sizeof of the V1 layout (fields end at {end})"
        );
    }
}

#[test]
fn c99_program_uses_every_enum_and_struct_against_the_library() {
    let dir = scratch("usage");
    let exe = dir.join("abi_usage");
    compile(&crate_dir().join("tests/c/abi_usage.c"), &exe, true);
    let model = crate_dir().join("tests/fixtures/small_f16_element.safetensors");
    let out = run(&exe, &[&model, &dir]);
    assert_eq!(out, "ok\n");
}

/// A host's use of the run options from C11 with pthreads: a long call cancelled from another
/// thread through an `atomic_int`, progress and log callbacks, and a batch of points.
#[test]
fn c11_program_cancels_from_another_thread_and_runs_a_batch() {
    let dir = scratch("run_control");
    let exe = dir.join("run_control");
    let flags = [
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-pthread",
    ];
    compile_std(
        &crate_dir().join("tests/c/run_control.c"),
        &exe,
        true,
        &flags,
    );
    let model = crate_dir().join("tests/fixtures/small_f16_element.safetensors");
    assert_eq!(run(&exe, &[&model]), "ok\n");
}

/// `tests/c/dicom_open.c`: `lungseg_volume_open_dicom` reads the fixture series in a build with
/// the `dicom` feature, and answers `LUNGSEG_UNSUPPORTED` with its reason in one without.
#[test]
fn c99_program_opens_a_dicom_series_or_says_why_not() {
    let dir = scratch("dicom");
    let exe = dir.join("dicom_open");
    compile(&crate_dir().join("tests/c/dicom_open.c"), &exe, true);
    let fixtures = crate_dir().join("tests/fixtures/dicom");
    assert_eq!(run(&exe, &[&fixtures]), "ok\n");
}

/// `tests/c/dicom_seg.c`: `lungseg_write_dicom_seg` writes a SEG from C in a build with the
/// `dicom` feature, and answers `LUNGSEG_UNSUPPORTED` with its reason in one without.
#[test]
fn c99_program_writes_a_dicom_seg_or_says_why_not() {
    let dir = scratch("dicom_seg");
    let exe = dir.join("dicom_seg");
    compile(&crate_dir().join("tests/c/dicom_seg.c"), &exe, true);
    let fixtures = crate_dir().join("tests/fixtures/dicom");
    assert_eq!(run(&exe, &[&fixtures, &dir]), "ok\n");
}
