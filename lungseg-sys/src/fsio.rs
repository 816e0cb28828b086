//! Opening and reading files named by callers or by untrusted headers, so that no path can hang
//! or exhaust the host: one open that never blocks, only regular files, reads bounded by a limit.
//!
//! A FIFO opened for reading blocks until a writer appears, and a device such as `/dev/zero`
//! never reaches end-of-file; both are refused by type, checked on the opened handle (fstat), so
//! a path swapped between a check and the open cannot slip through.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Opens `path` for reading; anything but a regular file (after following symlinks) is an
/// `Io` error. Returns the handle and its size in bytes.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting forever.
        // It changes nothing for regular files. O_NOCTTY: a terminal never becomes ours.
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts
        .open(path)
        .map_err(|e| Error::from_io(path.display(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::from_io(path.display(), e))?;
    if !meta.is_file() {
        return Err(Error::io(format!(
            "{}: not a regular file ({})",
            path.display(),
            file_kind(&meta.file_type())
        )));
    }
    Ok((file, meta.len()))
}

/// Reads all of the regular file `path`, refusing (`Limit`) files over `limit` bytes: the size
/// is checked before anything is allocated, and the read stops after `limit + 1` bytes in case
/// the file grows meanwhile. The buffer is allocated fallibly.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    let too_big = |n: u64| {
        Error::limit(format!(
            "{}: {what} of {n} bytes exceeds the limit of {limit}",
            path.display()
        ))
    };
    if len > limit {
        return Err(too_big(len));
    }
    let mut buf = Vec::new();
    // One spare byte: a file that grew past `len` is noticed without growing the buffer.
    let want = usize::try_from(len + 1).map_err(|_| too_big(len))?;
    buf.try_reserve_exact(want)
        .map_err(|_| Error::oom(format!("{}: cannot allocate {len} bytes", path.display())))?;
    let mut handle = file.take(limit + 1);
    read_into_capacity(&mut handle, &mut buf).map_err(|e| Error::from_io(path.display(), e))?;
    if buf.len() as u64 > limit {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// Reads to end of file without ever growing `buf` past its reserved capacity, growing it only
/// fallibly when the file turns out longer than its size said.
fn read_into_capacity(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.try_reserve(n)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "out of memory"))?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn read_bounded_refuses_over_the_limit_and_non_files() {
        let dir = std::env::temp_dir().join(format!("lungseg-fsio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ten");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_bounded(&f, 10, "file").unwrap(), b"0123456789");
        let e = read_bounded(&f, 9, "file").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Limit, "{e}");
        assert!(e.message.contains("limit of 9"), "{e}");
        let e = read_bounded(&dir, 100, "file").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io, "{e}");
        assert!(e.message.contains("a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
