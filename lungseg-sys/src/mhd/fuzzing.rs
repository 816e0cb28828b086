//! Bodies of the `mhd_*` fuzz targets, shared with the stable seed-replay test so that CI runs
//! every seed and saved crash exactly as the fuzzer did.
//!
//! `mhd_volume` input framing (text-friendly, so seeds stay readable): the bytes up to the first
//! `\n@@FILE <name>\n` are the header, named `image.mhd` (`image.mha` when it says `LOCAL`);
//! each marker starts one more in-memory file holding the bytes up to the next marker.

use super::{parse_header, read_from, MemorySource, ReadOptions};
use crate::volume::Volume;

/// Separates in-memory files in `mhd_volume` inputs.
pub const FILE_MARKER: &[u8] = b"\n@@FILE ";

/// The library's real defaults: smaller caps hid unbounded allocations (a `%d` pattern naming
/// 2·10⁹ files fit under none of them). `scripts/fuzz.sh` bounds the process's memory instead.
pub fn fuzz_options() -> ReadOptions {
    ReadOptions::default()
}

/// `mhd_header`: the parser must return, never panic, on any bytes.
pub fn mhd_header(data: &[u8]) {
    if let Ok(h) = parse_header(data) {
        assert!(h.dim_size.len() == h.ndims);
        assert!(h.data_offset <= data.len());
    }
}

/// `mhd_volume`: header plus data files through the in-memory source.
pub fn mhd_volume(data: &[u8]) {
    let (name, source) = split_files(data);
    if let Ok(v) = read_from(&source, &name, &fuzz_options()) {
        check_volume(&v);
    }
}

/// Splits a `mhd_volume` input into the header's name and an in-memory source.
pub fn split_files(data: &[u8]) -> (String, MemorySource) {
    let mut parts = split(data, FILE_MARKER).into_iter();
    let header = parts.next().unwrap_or_default();
    let local = header.windows(5).any(|w| w == b"LOCAL");
    let name = if local { "image.mha" } else { "image.mhd" }.to_string();
    let mut source = MemorySource::new().with(&name, header);
    for part in parts {
        let (file, body) = match part.iter().position(|&b| b == b'\n') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        source = source.with(&String::from_utf8_lossy(file), body);
    }
    (name, source)
}

fn split<'a>(data: &'a [u8], marker: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + marker.len() <= data.len() {
        if &data[i..i + marker.len()] == marker {
            out.push(&data[start..i]);
            i += marker.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fn check_volume(v: &Volume) {
    let want = v.geometry.voxel_count() * v.channels;
    assert_eq!(v.data.len(), want, "decoded sample count");
    assert!(v.channels >= 1);
}
