//! Hostile inputs through the C ABI, one child process each, and the table of what they cost
//! (`docs/hostile-inputs.md`): status, message and peak memory per input. The table is compared
//! with the checked-in file; regenerate it with
//! `LUNGSEG_BLESS=1 cargo test -p lungseg-sys --test hostile_inputs`.
//!
//! Each input runs in a re-execution of this test binary (selected by `LUNGSEG_HOSTILE_ROW`)
//! under an address-space cap, so a regression costs the child (a crash or timeout row, and a
//! failed test), never the machine running the tests. Peak memory is the child's `VmHWM`,
//! rounded up to a coarse bucket so the table is stable across machines.
//!
//! To add an input, add a [`Row`] to [`ROWS`]: a name, what it is, the status it must give and
//! a function that builds the input in a scratch folder and runs it.
#![cfg(target_os = "linux")]

mod common;
mod ffi_common;

use lungseg::ffi::*;
use std::ffi::{CStr, CString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

/// One hostile input.
struct Row {
    /// Selects the input in the child; also its scratch folder name.
    name: &'static str,
    /// What the input is, for the table.
    input: &'static str,
    /// The status it must give.
    expect: lungseg_status,
    /// Builds the input under the given folder and runs it through the C ABI (in the child).
    run: fn(&Path) -> lungseg_status,
}

const ROWS: &[Row] = &[
    Row {
        name: "pattern_2e9_files",
        input: "100-byte `.mhd`: `DimSize = 1 1 2000000000`, `MET_UCHAR`, `ElementDataFile = f%d.raw`",
        expect: lungseg_status::LUNGSEG_LIMIT,
        run: pattern_2e9_files,
    },
    Row {
        name: "list_100k_files",
        input: "`.mhd` with `ElementDataFile = LIST` and `DimSize = 1 1 100000` (no names follow)",
        expect: lungseg_status::LUNGSEG_LIMIT,
        run: list_100k_files,
    },
    Row {
        name: "huge_dimsize",
        input: "`.mhd` with `DimSize = 100000 100000 100000`",
        expect: lungseg_status::LUNGSEG_LIMIT,
        run: huge_dimsize,
    },
    Row {
        name: "header_1mb_unique_keys",
        input: "~1 MB `.mhd` header of unique unknown keys (valid, 1 voxel)",
        expect: lungseg_status::LUNGSEG_OK,
        run: header_1mb_unique_keys,
    },
    Row {
        name: "header_fifo",
        input: "`.mhd` path is a FIFO with no writer",
        expect: lungseg_status::LUNGSEG_IO,
        run: header_fifo,
    },
    Row {
        name: "data_fifo",
        input: "`ElementDataFile` is a FIFO with no writer",
        expect: lungseg_status::LUNGSEG_IO,
        run: data_fifo,
    },
    Row {
        name: "data_dev_zero",
        input: "`ElementDataFile` is a symlink to `/dev/zero`",
        expect: lungseg_status::LUNGSEG_IO,
        run: data_dev_zero,
    },
    Row {
        name: "ascii_1gb_sparse",
        input: "ASCII data (`BinaryData = False`, 2·10⁷ voxels): a 1 GiB sparse file of NUL bytes",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: ascii_1gb_sparse,
    },
    Row {
        name: "zlib_bomb",
        input: "`.zraw` for 64³ `MET_UCHAR` (256 KiB) that inflates to 64 MiB of zeros",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: zlib_bomb,
    },
    Row {
        name: "symlink_dotdot",
        input: "`ElementDataFile = link/../x.raw`, `link` a symlink to a folder elsewhere",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: symlink_dotdot,
    },
    Row {
        name: "writer_planted_symlinks",
        input: "`lungseg_volume_write` where every temporary name is a planted symlink to a victim file",
        expect: lungseg_status::LUNGSEG_IO,
        run: writer_planted_symlinks,
    },
    Row {
        name: "model_dev_zero",
        input: "model path `/dev/zero`",
        expect: lungseg_status::LUNGSEG_IO,
        run: model_dev_zero,
    },
    Row {
        name: "model_fifo",
        input: "model path is a FIFO with no writer",
        expect: lungseg_status::LUNGSEG_IO,
        run: model_fifo,
    },
    Row {
        name: "model_sparse_3gib",
        input: "model file of 3 GiB (sparse)",
        expect: lungseg_status::LUNGSEG_LIMIT,
        run: model_sparse_3gib,
    },
    Row {
        name: "model_truncated",
        input: "model file cut in half",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: model_truncated,
    },
    Row {
        name: "model_workspace_256",
        input: "small model (channels 8…128, a few MB) with `patch_size` 256³",
        expect: lungseg_status::LUNGSEG_LIMIT,
        run: model_workspace_256,
    },
    Row {
        name: "model_folded_overflow",
        input: "model whose BN folds to infinite weights (γ = 3·10³⁸, running_var = 0)",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: model_folded_overflow,
    },
    Row {
        name: "model_bn_eps_zero",
        input: "model with `bn_eps = 0`",
        expect: lungseg_status::LUNGSEG_FORMAT,
        run: model_bn_eps_zero,
    },
    Row {
        name: "predict_nan_patch",
        input: "`lungseg_predict_uncertainty` on a patch holding one NaN HU value",
        expect: lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        run: predict_nan_patch,
    },
    Row {
        name: "review_score_without_threshold",
        input: "`lungseg_predict_uncertainty` with `review_score = LUNGSEG_REVIEW_VOLUME_CV` (not the model's score) and no caller threshold",
        expect: lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        run: review_score_without_threshold,
    },
    Row {
        name: "structure_measures_short",
        input: "`lungseg_mc_options.structure_measures` with `struct_size = 8` (below its V1 of 56)",
        expect: lungseg_status::LUNGSEG_INVALID_ARGUMENT,
        run: structure_measures_short,
    },
];

// ---- inputs -------------------------------------------------------------------------------

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Opens a volume with default options and frees it on success.
fn open_volume(path: &Path) -> lungseg_status {
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open_ex(cpath(path).as_ptr(), null(), &mut v) };
    unsafe { lungseg_volume_free(v) };
    st
}

/// Opens a model with default options and frees it on success.
fn open_model(path: &Path) -> lungseg_status {
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(cpath(path).as_ptr(), null(), &mut m) };
    unsafe { lungseg_model_free(m) };
    st
}

/// Writes `header` as `h.mhd` in `dir` and opens it.
fn open_header(dir: &Path, header: &str) -> lungseg_status {
    let path = dir.join("h.mhd");
    std::fs::write(&path, header).unwrap();
    open_volume(&path)
}

fn mkfifo(p: &Path) {
    assert_eq!(unsafe { libc::mkfifo(cpath(p).as_ptr(), 0o600) }, 0);
}

const UCHAR: &str = "NDims = 3\nElementType = MET_UCHAR\n";

fn pattern_2e9_files(dir: &Path) -> lungseg_status {
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 1 1 2000000000\nElementDataFile = f%d.raw\n"),
    )
}

fn list_100k_files(dir: &Path) -> lungseg_status {
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 1 1 100000\nElementDataFile = LIST\n"),
    )
}

fn huge_dimsize(dir: &Path) -> lungseg_status {
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 100000 100000 100000\nElementDataFile = x.raw\n"),
    )
}

fn header_1mb_unique_keys(dir: &Path) -> lungseg_status {
    let mut h = format!("{UCHAR}DimSize = 1 1 1\n");
    let mut i = 0;
    while h.len() < 1_000_000 {
        h.push_str(&format!("Key{i} = v\n"));
        i += 1;
    }
    h.push_str("ElementDataFile = d.raw\n");
    std::fs::write(dir.join("d.raw"), [1u8]).unwrap();
    open_header(dir, &h)
}

fn header_fifo(dir: &Path) -> lungseg_status {
    mkfifo(&dir.join("h.mhd"));
    open_volume(&dir.join("h.mhd"))
}

fn data_fifo(dir: &Path) -> lungseg_status {
    mkfifo(&dir.join("d.raw"));
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 2 2 2\nElementDataFile = d.raw\n"),
    )
}

fn data_dev_zero(dir: &Path) -> lungseg_status {
    std::os::unix::fs::symlink("/dev/zero", dir.join("d.raw")).unwrap();
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 2 2 2\nElementDataFile = d.raw\n"),
    )
}

fn ascii_1gb_sparse(dir: &Path) -> lungseg_status {
    let f = std::fs::File::create(dir.join("a.txt")).unwrap();
    f.set_len(1 << 30).unwrap();
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 1000 1000 20\nBinaryData = False\nElementDataFile = a.txt\n"),
    )
}

fn zlib_bomb(dir: &Path) -> lungseg_status {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        z.write_all(&zeros).unwrap();
    }
    std::fs::write(dir.join("d.zraw"), z.finish().unwrap()).unwrap();
    open_header(
        dir,
        &format!("{UCHAR}DimSize = 64 64 64\nCompressedData = True\nElementDataFile = d.zraw\n"),
    )
}

fn symlink_dotdot(dir: &Path) -> lungseg_status {
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("deep")).unwrap();
    std::fs::write(elsewhere.join("x.raw"), [0u8; 8]).unwrap();
    let scan = dir.join("scan");
    std::fs::create_dir_all(&scan).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("deep"), scan.join("link")).unwrap();
    open_header(
        &scan,
        &format!("{UCHAR}DimSize = 2 2 2\nElementDataFile = link/../x.raw\n"),
    )
}

fn writer_planted_symlinks(dir: &Path) -> lungseg_status {
    std::fs::write(dir.join("d.raw"), [0u8; 8]).unwrap();
    let path = dir.join("h.mhd");
    std::fs::write(
        &path,
        format!("{UCHAR}DimSize = 2 2 2\nElementDataFile = d.raw\n"),
    )
    .unwrap();
    let mut v = null_mut();
    let st = unsafe { lungseg_volume_open_ex(cpath(&path).as_ptr(), null(), &mut v) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // This process's temporary names are `.out.mha.<pid>-<n>.tmp`, n counting from 0.
    for n in 0..1024 {
        let link = dir.join(format!(".out.mha.{}-{n}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, link).unwrap();
    }
    let out = cpath(&dir.join("out.mha"));
    let st = unsafe { lungseg_volume_write(v, out.as_ptr(), 0) };
    unsafe { lungseg_volume_free(v) };
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "the write followed a planted symlink"
    );
    st
}

fn model_dev_zero(_dir: &Path) -> lungseg_status {
    open_model(Path::new("/dev/zero"))
}

fn model_fifo(dir: &Path) -> lungseg_status {
    mkfifo(&dir.join("m.safetensors"));
    open_model(&dir.join("m.safetensors"))
}

fn model_sparse_3gib(dir: &Path) -> lungseg_status {
    let path = dir.join("m.safetensors");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    open_model(&path)
}

fn model_truncated(dir: &Path) -> lungseg_status {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_f16_element.safetensors");
    let bytes = std::fs::read(fixture).unwrap();
    let path = dir.join("m.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    open_model(&path)
}

/// Writes a synthetic model (weights of `tests/common`) with `config` and opens it.
fn open_synth_model(dir: &Path, tensors: &[common::RawTensor], config: &str) -> lungseg_status {
    let path = dir.join("m.safetensors");
    std::fs::write(
        &path,
        common::write_safetensors(tensors, &common::standard_meta(config)),
    )
    .unwrap();
    open_model(&path)
}

fn model_workspace_256(dir: &Path) -> lungseg_status {
    let cfg = r#"{"channels":[8,16,32,64,128],"patch_size":[256,256,256]}"#;
    open_synth_model(dir, &common::synth_tensors(&[8, 16, 32, 64, 128]), cfg)
}

fn model_folded_overflow(dir: &Path) -> lungseg_status {
    let mut t = common::synth_tensors(&[4, 8]);
    for (name, v) in [
        ("enc.1.bn2.weight", 3.0e38f32),
        ("enc.1.bn2.running_var", 0.0),
    ] {
        let e = t.iter_mut().find(|t| t.name == name).unwrap();
        *e = common::f32_tensor(name, &[8], &[v; 8]);
    }
    open_synth_model(dir, &t, r#"{"channels":[4,8],"patch_size":[8,8,8]}"#)
}

fn model_bn_eps_zero(dir: &Path) -> lungseg_status {
    let cfg = r#"{"channels":[4,8],"patch_size":[8,8,8],"bn_eps":0}"#;
    open_synth_model(dir, &common::synth_tensors(&[4, 8]), cfg)
}

fn predict_nan_patch(_dir: &Path) -> lungseg_status {
    predict_fixture(null(), |h| {
        let n = h.len();
        h[n / 2] = f32::NAN;
    })
}

/// A model that names `mean_mutual_info` asked for another score without a threshold for it.
fn review_score_without_threshold(_dir: &Path) -> lungseg_status {
    let opts = lungseg_mc_options {
        review_score: lungseg_review_score::LUNGSEG_REVIEW_VOLUME_CV as u32,
        ..Default::default()
    };
    predict_fixture(&opts, |_| {})
}

fn structure_measures_short(_dir: &Path) -> lungseg_status {
    let mut measures = lungseg_structure_measures {
        struct_size: 8,
        ..Default::default()
    };
    let opts = lungseg_mc_options {
        structure_measures: &mut measures,
        ..Default::default()
    };
    predict_fixture(&opts, |_| {})
}

/// `lungseg_predict_uncertainty` with the element-dropout fixture on a -600 HU patch that
/// `edit` may change.
fn predict_fixture(
    opts: *const lungseg_mc_options,
    edit: impl FnOnce(&mut [f32]),
) -> lungseg_status {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_f16_element.safetensors");
    let mut m = null_mut();
    let st = unsafe { lungseg_model_open(cpath(&fixture).as_ptr(), null(), &mut m) };
    assert_eq!(st, lungseg_status::LUNGSEG_OK);
    let mut info = lungseg_model_info::default();
    assert_eq!(
        unsafe { lungseg_model_get_info(m, &mut info) },
        lungseg_status::LUNGSEG_OK
    );
    let n = info
        .patch_size
        .iter()
        .map(|&s| s as usize)
        .product::<usize>();
    let mut hu = vec![-600.0f32; n];
    edit(&mut hu);
    let mut out = lungseg_uncertainty::default();
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), n, opts, &mut out) };
    unsafe { lungseg_model_free(m) };
    st
}

// ---- child ---------------------------------------------------------------------------------

const ROW_VAR: &str = "LUNGSEG_HOSTILE_ROW";
const DIR_VAR: &str = "LUNGSEG_HOSTILE_DIR";
/// Address-space cap of a child: a regression aborts the child instead of paging the host.
const CHILD_ADDRESS_SPACE: u64 = 3 << 30;
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);
const RESULT_MARK: &str = "HOSTILE-RESULT\t";

/// The child side: does nothing unless this process was started for one row.
#[test]
fn hostile_child() {
    let Some(name) = std::env::var_os(ROW_VAR) else {
        return;
    };
    let row = ROWS
        .iter()
        .find(|r| name.to_str() == Some(r.name))
        .expect("unknown row");
    let dir = PathBuf::from(std::env::var_os(DIR_VAR).unwrap());
    let limit = libc::rlimit {
        rlim_cur: CHILD_ADDRESS_SPACE,
        rlim_max: CHILD_ADDRESS_SPACE,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    let st = (row.run)(&dir);
    let msg = if st == lungseg_status::LUNGSEG_OK {
        String::new()
    } else {
        ffi_common::last_error()
    };
    let name = unsafe { CStr::from_ptr(lungseg_status_name(st as _)) };
    println!(
        "{RESULT_MARK}{}\t{}\t{}",
        name.to_str().unwrap(),
        peak_kib(),
        msg.replace(['\n', '\t'], " ")
    );
}

/// This process's peak resident memory (`VmHWM`), in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ---- parent --------------------------------------------------------------------------------

/// What one child reported (or how it died).
struct Outcome {
    status: String,
    peak_kib: Option<u64>,
    message: String,
}

fn run_child(row: &Row, root: &Path) -> Outcome {
    let dir = root.join(row.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROW_VAR, row.name)
        .env(DIR_VAR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints "test hostile_child ... " before the child's own output on the same line.
    let result = stdout
        .lines()
        .find_map(|l| l.find(RESULT_MARK).map(|i| &l[i + RESULT_MARK.len()..]));
    match (status, result) {
        (None, _) => Outcome {
            status: format!("TIMEOUT (killed after {} s)", CHILD_TIMEOUT.as_secs()),
            peak_kib: None,
            message: String::new(),
        },
        (Some(s), Some(line)) if s.success() => {
            let mut f = line.splitn(3, '\t');
            let status = f.next().unwrap().to_string();
            let peak_kib = f.next().unwrap().parse().ok();
            let message = f
                .next()
                .unwrap_or_default()
                .replace(dir.to_str().unwrap(), "<dir>");
            Outcome {
                status,
                peak_kib,
                message,
            }
        }
        (Some(s), _) => Outcome {
            status: format!("CRASH ({s})"),
            peak_kib: None,
            message: String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .replace(dir.to_str().unwrap(), "<dir>"),
        },
    }
}

/// Peak memory rounded up to a power-of-four bucket from 64 MiB: stable across machines and
/// build settings, still telling a bounded input from one that costs what the file claims.
fn bucket(kib: Option<u64>) -> String {
    let Some(kib) = kib else {
        return "—".into();
    };
    let mut mib = 64;
    while kib > mib * 1024 && mib < (1 << 20) {
        mib *= 4;
    }
    if mib >= 1024 {
        format!("≤ {} GiB", mib / 1024)
    } else {
        format!("≤ {mib} MiB")
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn table(rows: &[(&Row, Outcome)]) -> String {
    let mut t = String::from(
        "# Hostile inputs\n\n\
         Generated by `lungseg-sys/tests/hostile_inputs.rs` (do not edit; regenerate with\n\
         `LUNGSEG_BLESS=1 cargo test -p lungseg-sys --test hostile_inputs`). Each input runs through\n\
         the C ABI with default options in its own process; peak memory is that process's peak\n\
         resident set (test harness included), rounded up to a bucket. `<dir>` is the input's\n\
         scratch folder.\n\n\
         | input | status | message | peak memory |\n\
         |---|---|---|---|\n",
    );
    for (row, o) in rows {
        t.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            cell(row.input),
            o.status,
            cell(&o.message),
            bucket(o.peak_kib)
        ));
    }
    t
}

#[test]
fn hostile_inputs_table() {
    if std::env::var_os(ROW_VAR).is_some() {
        return;
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile_inputs");
    let results: Vec<(&Row, Outcome)> = ROWS.iter().map(|r| (r, run_child(r, &root))).collect();
    let generated = table(&results);
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/hostile-inputs.md");
    if std::env::var_os("LUNGSEG_BLESS").is_some() {
        std::fs::write(&doc, &generated).unwrap();
    }
    let mut failures = Vec::new();
    for (row, o) in &results {
        let want = unsafe { CStr::from_ptr(lungseg_status_name(row.expect as _)) };
        if o.status != want.to_str().unwrap() {
            failures.push(format!(
                "{}: {} ({}), expected {want:?}",
                row.name, o.status, o.message
            ));
        }
        if o.peak_kib.is_none_or(|k| k > 256 * 1024) {
            failures.push(format!(
                "{}: peak memory {}, expected at most 256 MiB",
                row.name,
                bucket(o.peak_kib)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let current = std::fs::read_to_string(&doc).unwrap_or_default();
    assert!(
        current == generated,
        "docs/hostile-inputs.md is stale: run `LUNGSEG_BLESS=1 cargo test -p lungseg-sys --test hostile_inputs` and commit it\n{generated}"
    );
}
