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
