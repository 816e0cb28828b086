//! Where header and data files come from. The reader only sees names as written in the header;
//! a [`DataSource`] resolves them: [`DiskSource`] relative to the header's folder (with the path
//! safety rules), [`MemorySource`] from a map so fuzzing never touches the disk.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Resolves the file names a header mentions.
pub trait DataSource {
    /// Opens `name` (as written in the header, relative to the header's folder).
    fn open(&self, name: &str) -> Result<Box<dyn DataReader + '_>>;
}

/// Random access to one opened file.
pub trait DataReader {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`; fewer bytes available is an error, never a short read.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refuses names that could leave the header's folder (absolute, `~`, any `..` component)
/// unless `allow_outside`; NUL bytes are always refused (no OS accepts them, and C APIs would
/// truncate).
///
/// Symlink policy: the rule guards against the header's *text* pointing elsewhere. Symbolic
/// links inside the folder are followed, as ITK does: they are put there by whoever owns the
/// folder (datasets are often symlink farms onto another disk), not by the untrusted header.
/// `..` is refused even when it would stay inside textually (`a/../x.raw`): the OS applies `..`
/// to a link's *target*, so `link/../x.raw` would read beside wherever `link` points. With no
/// `..` and no absolute path, the header can only name files below its folder, and only links
/// the folder's owner placed there can lead elsewhere.
pub fn check_name(name: &str, allow_outside: bool) -> Result<()> {
    if name.contains('\0') {
        return Err(Error::format(format!(
            "data file name {:?} contains a NUL byte",
            name.replace('\0', "\\0")
        )));
    }
    if name.is_empty() {
        return Err(Error::format("data file name is empty"));
    }
    if allow_outside {
        return Ok(());
    }
    let refuse = |why: &str| {
        Error::format(format!(
            "data file {name:?} {why}; refused (set allow_outside_paths to follow it)"
        ))
    };
    let b = name.as_bytes();
    if b[0] == b'/' || b[0] == b'\\' || (b.len() > 1 && b[1] == b':' && b[0].is_ascii_alphabetic())
    {
        return Err(refuse("is an absolute path"));
    }
    if b[0] == b'~' {
        return Err(refuse("starts with '~'"));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(refuse(
            "has a '..' component, which could leave the header's folder (through a symlink too)",
        ));
    }
    Ok(())
}

/// Files on disk, relative to the header's folder.
#[derive(Debug, Clone)]
pub struct DiskSource {
    pub folder: PathBuf,
    pub allow_outside: bool,
}

impl DiskSource {
    fn resolve(&self, name: &str) -> Result<PathBuf> {
        check_name(name, self.allow_outside)?;
        let p = Path::new(name);
        if p.components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
        {
            return Ok(p.to_path_buf());
        }
        Ok(self.folder.join(p))
    }
}

struct DiskReader {
    file: File,
    len: u64,
    path: PathBuf,
}

impl DataSource for DiskSource {
    fn open(&self, name: &str) -> Result<Box<dyn DataReader + '_>> {
        let path = self.resolve(name)?;
        let (file, len) = crate::fsio::open_regular(&path)?;
        Ok(Box::new(DiskReader { file, len, path }))
    }
}

impl DataReader for DiskReader {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(
            offset,
            buf.len(),
            self.len,
            &self.path.display().to_string(),
        )?;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::from_io(self.path.display(), e))?;
        self.file
            .read_exact(buf)
            .map_err(|e| Error::from_io(self.path.display(), e))
    }
}

/// Named byte buffers: a header and its data files, for fuzzing and tests.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    pub files: HashMap<String, Vec<u8>>,
    pub allow_outside: bool,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.insert(name.to_string(), bytes.into());
        self
    }
}

struct MemoryReader<'a> {
    bytes: &'a [u8],
    name: &'a str,
}

impl DataSource for MemorySource {
    fn open(&self, name: &str) -> Result<Box<dyn DataReader + '_>> {
        check_name(name, self.allow_outside)?;
        let (name, bytes) = self
            .files
            .get_key_value(name)
            .ok_or_else(|| Error::io(format!("{name}: No such file or directory")))?;
        Ok(Box::new(MemoryReader { bytes, name }))
    }
}

impl DataReader for MemoryReader<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.len(), self.name)?;
        let start = offset as usize;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }
}

fn check_range(offset: u64, len: usize, file_len: u64, name: &str) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::format(format!(
            "{name}: needs bytes {offset}..{} but the file has {file_len}",
            offset as u128 + len as u128
        ))),
    }
}
