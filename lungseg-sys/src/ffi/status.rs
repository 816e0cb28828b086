//! The status every entry point returns; the values are ABI and never change.

use super::abi_enum::abi_enum;
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
    /// The host cancelled the call (`lungseg_run_options.cancel`); no result was written for
    /// the work it stopped.
    LUNGSEG_CANCELLED = 9,
}

abi_enum!(lungseg_status {
    LUNGSEG_OK,
    LUNGSEG_INVALID_ARGUMENT,
    LUNGSEG_IO,
    LUNGSEG_FORMAT,
    LUNGSEG_UNSUPPORTED,
    LUNGSEG_LIMIT,
    LUNGSEG_DEVICE,
    LUNGSEG_OUT_OF_MEMORY,
    LUNGSEG_PANIC,
    LUNGSEG_CANCELLED,
});

impl lungseg_status {
    /// `ErrorKind`'s discriminants are status values, so this cannot fail; `LUNGSEG_PANIC`
    /// keeps it total without a panic outside the boundary.
    pub(crate) fn from_kind(kind: ErrorKind) -> Self {
        Self::try_from(kind as u32).unwrap_or(Self::LUNGSEG_PANIC)
    }
}

/// A short constant name for a status (`"LUNGSEG_FORMAT"`), for logs. Never NULL.
#[no_mangle]
pub extern "C" fn lungseg_status_name(status: libc::c_int) -> *const libc::c_char {
    // Takes a plain int: a C caller may pass any value, and an out-of-range Rust enum is UB.
    u32::try_from(status)
        .ok()
        .and_then(|s| lungseg_status::try_from(s).ok())
        .map_or(c"LUNGSEG_UNKNOWN_STATUS".as_ptr(), lungseg_status::c_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// Every error kind becomes the status of the same name (`Io` → `LUNGSEG_IO`), and every
    /// status but `LUNGSEG_OK` comes from exactly one kind.
    #[test]
    fn every_error_kind_has_the_status_of_its_name() {
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::Io,
            ErrorKind::Format,
            ErrorKind::Unsupported,
            ErrorKind::Limit,
            ErrorKind::Device,
            ErrorKind::OutOfMemory,
            ErrorKind::Panic,
            ErrorKind::Cancelled,
        ];
        let mut seen: Vec<lungseg_status> = kinds
            .iter()
            .map(|&k| lungseg_status::from_kind(k))
            .collect();
        for (k, s) in kinds.iter().zip(&seen) {
            let snake: String = format!("{k:?}")
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let sep = (i > 0 && c.is_uppercase()).then_some('_');
                    sep.into_iter().chain(c.to_uppercase())
                })
                .collect();
            assert_eq!(s.name(), format!("LUNGSEG_{snake}"), "{k:?}");
        }
        seen.push(lungseg_status::LUNGSEG_OK);
        seen.sort_by_key(|s| *s as u32);
        seen.dedup();
        assert_eq!(seen, lungseg_status::ALL);
    }

    #[test]
    fn status_names_for_any_int() {
        for s in lungseg_status::ALL {
            let n = unsafe { CStr::from_ptr(lungseg_status_name(*s as libc::c_int)) };
            assert_eq!(n.to_str().unwrap(), s.name());
        }
        for bad in [-1, 10, libc::c_int::MAX, libc::c_int::MIN] {
            let n = unsafe { CStr::from_ptr(lungseg_status_name(bad)) };
            assert_eq!(n.to_str().unwrap(), "LUNGSEG_UNKNOWN_STATUS");
        }
    }
}
