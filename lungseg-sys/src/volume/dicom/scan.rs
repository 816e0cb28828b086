//! The files of one folder (no recursion into subfolders: a series is one folder), bounded in
//! number and size; files that are not DICOM Part-10 (no `DICM` magic) are skipped.

use super::walk::{is_dicom, PREAMBLE};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The regular files of `dir` (symlinks followed), sorted by name; refuses (`Limit`) a folder
/// with more than `max_files` entries before reading any.
pub fn list(dir: &Path, max_files: u64) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::from_io(dir.display(), e))?;
    let mut files = Vec::new();
    for (n, entry) in entries.enumerate() {
        if n as u64 >= max_files {
            return Err(Error::limit(format!(
                "{}: more than {max_files} entries in the folder",
                dir.display()
            )));
        }
        let path = entry.map_err(|e| Error::from_io(dir.display(), e))?.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// All of a DICOM file's bytes; `None` when it is not one (checked on its first bytes, so a
/// large file of another kind is never read whole). A DICOM file over `max_bytes` is refused.
pub fn read(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>> {
    let (file, len) = crate::fsio::open_regular(path)?;
    let mut head = Vec::with_capacity(PREAMBLE + 4);
    file.take(PREAMBLE as u64 + 4)
        .read_to_end(&mut head)
        .map_err(|e| Error::from_io(path.display(), e))?;
    if !is_dicom(&head) {
        return Ok(None);
    }
    if len > max_bytes {
        return Err(Error::limit(format!(
            "{}: a DICOM file of {len} bytes exceeds the limit of {max_bytes}",
            path.display()
        )));
    }
    crate::fsio::read_bounded(path, max_bytes, "DICOM file").map(Some)
}
