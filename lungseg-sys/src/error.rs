//! One error type for the whole library. Its `kind` maps 1:1 onto the C status codes, so the
//! FFI layer never has to guess which status a failure deserves.

use crate::ffi::lungseg_status as Status;
use std::fmt;

/// What went wrong, coarse enough for a C caller to branch on. Each kind's discriminant is
/// the `lungseg_status` it is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorKind {
    InvalidArgument = Status::LUNGSEG_INVALID_ARGUMENT as u32,
    Io = Status::LUNGSEG_IO as u32,
    Format = Status::LUNGSEG_FORMAT as u32,
    Unsupported = Status::LUNGSEG_UNSUPPORTED as u32,
    Limit = Status::LUNGSEG_LIMIT as u32,
    Device = Status::LUNGSEG_DEVICE as u32,
    OutOfMemory = Status::LUNGSEG_OUT_OF_MEMORY as u32,
    Panic = Status::LUNGSEG_PANIC as u32,
    Cancelled = Status::LUNGSEG_CANCELLED as u32,
}

/// An error with a message meant for a human reading a device log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    pub fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Limit, message)
    }
    pub fn device(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Device, message)
    }
    pub fn oom(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OutOfMemory, message)
    }
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }
    /// Wraps an `std::io::Error` with the path or context it happened on.
    pub fn from_io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::io(format!("{context}: {err}"))
    }
    /// Prefixes the message with more context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `vec![0; n]` that gives `None` instead of aborting when the allocator says no. It uses
/// `alloc_zeroed`, so large buffers come as fresh zero pages from the OS, resident only once
/// written (no memset pass).
pub(crate) fn zeroed_vec<T: bytemuck::Zeroable>(n: usize) -> Option<Vec<T>> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    // SAFETY: `layout` has non-zero size; the pointer comes from the global allocator with
    // `T`'s layout for exactly `n` elements, all bytes zero, which is a valid `T` (Zeroable).
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut T;
        if ptr.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(ptr, n, n))
    }
}

/// Allocates a zeroed `Vec` without aborting the process when the allocator says no.
pub fn try_vec<T: Clone + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| Error::oom(format!("cannot allocate {len} elements for {what}")))?;
    v.resize(len, T::default());
    Ok(v)
}
