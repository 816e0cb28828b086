//! Helpers shared by the C-ABI tests: read the thread's last error as C would, and assert a
//! status together with what its message says.
#![allow(dead_code)]

use lungseg::ffi::{lungseg_last_error, lungseg_status};
use std::ffi::CStr;
use std::ptr::null_mut;

/// The calling thread's last error message, fetched with the length query first.
pub fn last_error() -> String {
    let n = unsafe { lungseg_last_error(null_mut(), 0) };
    let mut buf = vec![0 as libc::c_char; n + 1];
    let m = unsafe { lungseg_last_error(buf.as_mut_ptr(), buf.len()) };
    assert_eq!(m, n);
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts a status and that the message mentions `needle`.
pub fn expect(st: lungseg_status, want: lungseg_status, needle: &str) {
    assert_eq!(st, want, "message: {}", last_error());
    let msg = last_error();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

/// Opens the test fixture `name` (in tests/fixtures) with its `config` JSON edited by `edit`
/// and, when given, its `format_version` replaced; written to a file of its own (tests run in
/// parallel threads of one process) and opened through the C ABI.
pub fn open_fixture_with(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
    format_version: Option<&str>,
) -> *mut lungseg::ffi::lungseg_model {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&fixture).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    edit(&mut cfg);
    meta.insert("config".into(), cfg.to_string());
    if let Some(v) = format_version {
        meta.insert("format_version".into(), v.into());
    }
    let bytes = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("lungseg-fixture-{}-{call}.st", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let st = unsafe { lungseg::ffi::lungseg_model_open(p.as_ptr(), std::ptr::null(), &mut m) };
    std::fs::remove_file(&path).unwrap();
    assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error());
    m
}
