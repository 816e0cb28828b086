//! The thread-local message of the last failure, errno-style: only meaningful right after a
//! call returned something other than `LUNGSEG_OK`.

use std::cell::RefCell;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn set_last_error(msg: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        // Interior NULs would truncate the C string; replace them.
        e.extend(msg.chars().map(|c| if c == '\0' { ' ' } else { c }));
    });
}

#[cfg(test)]
pub(crate) fn last_error_string() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Copies the calling thread's last error message into `buf` (NUL-terminated, truncated to
/// `buf_len - 1` bytes) and returns the message's full length in bytes, without the NUL.
/// Pass `buf = NULL, buf_len = 0` to ask for the length. Returns 0 when there is no message.
#[no_mangle]
pub unsafe extern "C" fn lungseg_last_error(buf: *mut libc::c_char, buf_len: usize) -> usize {
    std::panic::catch_unwind(|| LAST_ERROR.with(|e| copy_c_string(&e.borrow(), buf, buf_len)))
        .unwrap_or(0)
}

/// Copies `text` into `buf` as `lungseg_last_error` does (NUL-terminated, truncated on a UTF-8
/// boundary to `buf_len - 1` bytes; nothing for `buf = NULL` or `buf_len = 0`) and returns its
/// full length in bytes.
pub(crate) unsafe fn copy_c_string(text: &str, buf: *mut libc::c_char, buf_len: usize) -> usize {
    let bytes = text.as_bytes();
    if !buf.is_null() && buf_len > 0 {
        let mut n = bytes.len().min(buf_len - 1);
        while n > 0 && !text.is_char_boundary(n) {
            n -= 1;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    bytes.len()
}
