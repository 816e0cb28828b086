//! The data set as a Part-10 file (explicit VR little endian), written under a temporary name
//! and renamed over the target.

use crate::error::{Error, Result};
use crate::mhd::writer::write_replacing;
use dicom_dictionary_std::uids;
use dicom_object::mem::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use std::path::Path;

/// Encodes `obj` with its file meta information and writes it to `path`.
pub fn write(obj: InMemDicomObject, path: &Path) -> Result<()> {
    let bytes = encode(obj)?;
    write_replacing(path, &[&bytes])
}

/// The file's bytes: preamble, `DICM`, file meta group, data set.
pub fn encode(obj: InMemDicomObject) -> Result<Vec<u8>> {
    let fail = |e: &dyn std::fmt::Display| Error::format(format!("cannot encode the SEG: {e}"));
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| fail(&e))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| fail(&e))?;
    Ok(bytes)
}
