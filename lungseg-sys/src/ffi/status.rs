//! The status every entry point returns; the values are ABI and never change.

use crate::error::ErrorKind;

/// Result of a lungseg call. `LUNGSEG_OK` is 0; anything else has a message in
/// `lungseg_last_error()` on the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lungseg_status {
    LUNGSEG_OK = 0,
    /// A NULL pointer, a wrong length, an out-of-range option.
    LUNGSEG_INVALID_ARGUMENT = 1,
    /// A file could not be opened or read.
    LUNGSEG_IO = 2,
    /// A file is malformed (header, data, model).
    LUNGSEG_FORMAT = 3,
    /// Valid but not supported (e.g. NDims != 3, an unsupported dtype).
    LUNGSEG_UNSUPPORTED = 4,
    /// A configured size limit was exceeded before any allocation.
    LUNGSEG_LIMIT = 5,
    /// The requested compute device is not usable.
    LUNGSEG_DEVICE = 6,
    /// An allocation failed.
    LUNGSEG_OUT_OF_MEMORY = 7,
    /// An internal error was caught at the boundary; the handle involved stays valid.
    LUNGSEG_PANIC = 8,
}

impl lungseg_status {
    pub(crate) fn from_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => Self::LUNGSEG_INVALID_ARGUMENT,
            ErrorKind::Io => Self::LUNGSEG_IO,
            ErrorKind::Format => Self::LUNGSEG_FORMAT,
            ErrorKind::Unsupported => Self::LUNGSEG_UNSUPPORTED,
            ErrorKind::Limit => Self::LUNGSEG_LIMIT,
            ErrorKind::Device => Self::LUNGSEG_DEVICE,
            ErrorKind::OutOfMemory => Self::LUNGSEG_OUT_OF_MEMORY,
            ErrorKind::Panic => Self::LUNGSEG_PANIC,
        }
    }
}

/// A short constant name for a status (`"LUNGSEG_FORMAT"`), for logs. Never NULL.
#[no_mangle]
pub extern "C" fn lungseg_status_name(status: libc::c_int) -> *const libc::c_char {
    // Takes a plain int: a C caller may pass any value, and an out-of-range Rust enum is UB.
    let s: &'static str = match status {
        0 => "LUNGSEG_OK\0",
        1 => "LUNGSEG_INVALID_ARGUMENT\0",
        2 => "LUNGSEG_IO\0",
        3 => "LUNGSEG_FORMAT\0",
        4 => "LUNGSEG_UNSUPPORTED\0",
        5 => "LUNGSEG_LIMIT\0",
        6 => "LUNGSEG_DEVICE\0",
        7 => "LUNGSEG_OUT_OF_MEMORY\0",
        8 => "LUNGSEG_PANIC\0",
        _ => "LUNGSEG_UNKNOWN_STATUS\0",
    };
    s.as_ptr().cast()
}
