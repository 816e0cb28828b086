//! MetaImage (`.mhd` + `.raw`/`.zraw`, `.mha`) as ITK/SimpleITK read and write it, but refusing
//! what ITK gets wrong (unsafe paths, absurd sizes, corrupt or bomb-like compressed streams).
//!
//! [`header`] parses the text, [`source`] resolves data file names (disk or memory), `data`
//! decodes the voxels, `writer` writes SimpleITK-identical files, [`fuzzing`] holds the fuzz
//! target bodies so the stable seed-replay test runs exactly what the fuzzer runs.

pub mod fuzzing;
pub mod header;
pub mod source;

mod data;
pub(crate) mod writer;

pub use header::{parse_header, parse_header_with, DataFile, Header};
pub use source::{DataReader, DataSource, DiskSource, MemorySource};
pub use writer::g17;

use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::volume::{Layout, Volume};
use std::path::Path;

/// Knobs for reading untrusted headers.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Refuse volumes with more voxels than this (before any allocation).
    pub max_voxels: u64,
    /// Refuse data (decompressed) larger than this many bytes.
    pub max_bytes: u64,
    /// Allow absolute data file paths and `..` components (see [`source::check_name`] for the
    /// symlink policy).
    pub allow_outside_paths: bool,
    /// Refuse headers naming more data files than this (`LIST`, `%d` patterns), before any name
    /// is built: each file costs a name and an open. Default [`DEFAULT_MAX_DATA_FILES`].
    pub max_data_files: u64,
}

/// Default [`ReadOptions::max_data_files`]: far above one file per slice of any CT.
pub const DEFAULT_MAX_DATA_FILES: u64 = 65536;

impl Default for ReadOptions {
    fn default() -> Self {
        // Generous enough for a 1024×1024×2000 int16 scan.
        ReadOptions {
            max_voxels: 1024 * 1024 * 2000,
            max_bytes: 1024 * 1024 * 2000 * 8,
            allow_outside_paths: false,
            max_data_files: DEFAULT_MAX_DATA_FILES,
        }
    }
}

/// Headers longer than this are refused: real ones are < 1 KiB, and for `.mha` we must not
/// read the data to find the header's end.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Reads a `.mhd` or `.mha` file; data file names resolve relative to its folder.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::invalid(format!("{}: not a file name in UTF-8", path.display())))?;
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let source = DiskSource {
        folder,
        allow_outside: opts.allow_outside_paths,
    };
    read_from(&source, name, opts).map_err(|e| {
        if e.message.contains(name) {
            e
        } else {
            e.context(path.display())
        }
    })
}

/// Reads the header `header_name` and its data through `source` (disk, or memory for fuzzing).
pub fn read_from(source: &dyn DataSource, header_name: &str, opts: &ReadOptions) -> Result<Volume> {
    let mut file = source.open(header_name)?;
    let mut prefix = crate::error::try_vec(file.len().min(MAX_HEADER_BYTES) as usize, "header")?;
    file.read_at(0, &mut prefix)?;
    drop(file);
    let header = parse_header_with(&prefix, opts.max_data_files)?;
    if header.data_offset as u64 >= MAX_HEADER_BYTES && header.element_data_file == DataFile::Local
    {
        return Err(Error::format(format!(
            "{header_name}: header is longer than {MAX_HEADER_BYTES} bytes"
        )));
    }
    if header.ndims != 3 {
        return Err(Error::unsupported(format!(
            "NDims = {}: only 3-D volumes are supported",
            header.ndims
        )));
    }
    let (samples, _) = check_limits(&header, opts)?;
    let geometry = geometry(&header)?;
    let data = data::read_pixels(&header, header_name, source, samples, opts)?;
    Ok(Volume {
        geometry,
        element_type: header.element_type,
        channels: header.element_number_of_channels,
        data,
        layout: Layout::packed(geometry.dims, header.element_number_of_channels),
        anatomical_orientation: header.anatomical_orientation,
        extra: header.extra,
        slice_thickness_mm: None,
    })
}

/// Samples and bytes the data will take, refused (`Limit`) before anything is allocated.
fn check_limits(h: &Header, opts: &ReadOptions) -> Result<(usize, u64)> {
    let dims = &h.dim_size;
    let voxels = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let voxels = match voxels {
        Some(v) if v <= opts.max_voxels => v,
        _ => {
            return Err(Error::limit(format!(
                "DimSize {dims:?} is more than the limit of {} voxels",
                opts.max_voxels
            )))
        }
    };
    let width = h.element_type.size() as u64;
    let samples = voxels.checked_mul(h.element_number_of_channels as u64);
    let bytes = samples.and_then(|s| s.checked_mul(width));
    match (samples, bytes) {
        (Some(s), Some(b)) if b <= opts.max_bytes && usize::try_from(b).is_ok() => {
            Ok((s as usize, b))
        }
        _ => Err(Error::limit(format!(
            "DimSize {dims:?} × {} channels of {} is more than the limit of {} bytes",
            h.element_number_of_channels,
            h.element_type.met_name(),
            opts.max_bytes
        ))),
    }
}

/// Origin, spacing and direction with MetaIO's precedence; validated by `Geometry::new`.
fn geometry(h: &Header) -> Result<Geometry> {
    let dims = [
        h.dim_size[0] as usize,
        h.dim_size[1] as usize,
        h.dim_size[2] as usize,
    ];
    let s = h.spacing();
    let o = h.origin();
    let tm = h.direction_values();
    let mut d = [[0.0; 3]; 3];
    for (r, row) in d.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = tm[c * 3 + r];
        }
    }
    Geometry::new(dims, [s[0], s[1], s[2]], [o[0], o[1], o[2]], d)
}

/// How to write a volume.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// zlib-compress the data (`.zraw`, or compressed `.mha`), as SimpleITK's `useCompression`.
    pub compress: bool,
}

/// Writes `.mhd` + `.raw`/`.zraw` next to each other, or a single `.mha`, by the extension of `path`.
pub fn write(path: &Path, volume: &Volume, opts: &WriteOptions) -> Result<()> {
    writer::write(path, volume, opts)
}
