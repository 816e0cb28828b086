//! MetaImage (`.mhd` + `.raw`/`.zraw`, `.mha`) as ITK/SimpleITK read and write it.
//! (skeleton: owned by the mhd work; see issue 2)

use crate::error::{Error, Result};
use crate::volume::Volume;
use std::path::Path;

/// Knobs for reading untrusted headers.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Refuse volumes with more voxels than this (before any allocation).
    pub max_voxels: u64,
    /// Refuse data (decompressed) larger than this many bytes.
    pub max_bytes: u64,
    /// Allow absolute data file paths and `..` leaving the header's folder.
    pub allow_outside_paths: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        // Generous enough for a 1024×1024×2000 int16 scan.
        ReadOptions {
            max_voxels: 1024 * 1024 * 2000,
            max_bytes: 1024 * 1024 * 2000 * 8,
            allow_outside_paths: false,
        }
    }
}

pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let _ = (path, opts);
    Err(Error::unsupported("MetaImage reader not implemented yet"))
}

/// How to write a volume.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// zlib-compress the data (`.zraw`, or compressed `.mha`), as SimpleITK's `useCompression`.
    pub compress: bool,
}

/// Writes `.mhd` + `.raw`/`.zraw` next to each other, or a single `.mha`, by the extension of `path`.
pub fn write(path: &Path, volume: &Volume, opts: &WriteOptions) -> Result<()> {
    let _ = (path, volume, opts);
    Err(Error::unsupported("MetaImage writer not implemented yet"))
}
