//! Body of the `dicom_file` fuzz target, shared with the stable seed-replay test: one file's
//! bytes through the structure walk, the header reader and the pixel decoder.
#![doc(hidden)]

use super::pixels::{self, PixelFormat};
use super::{header, walk};

/// `dicom_file`: any bytes give a header and pixels or an error; never a panic, never an
/// allocation larger than the input.
pub fn dicom_file(data: &[u8]) {
    if !walk::is_dicom(data) {
        return;
    }
    let Ok(Some(file)) = header::read(data) else {
        return;
    };
    let Ok(h) = file.slice else {
        return;
    };
    let Ok(format) = PixelFormat::of(&h) else {
        return;
    };
    let Ok(px) = pixels::pixel_bytes(&h, data) else {
        return;
    };
    // `pixel_bytes` checked Rows × Columns × 2 against bytes that are in the input.
    let n = usize::from(h.rows) * usize::from(h.columns);
    assert_eq!(px.len(), n * 2);
    if format.signed {
        let mut out = vec![0i16; n];
        pixels::decode(px, format, &mut out).expect("sizes checked");
    } else {
        let mut out = vec![0u16; n];
        pixels::decode(px, format, &mut out).expect("sizes checked");
        let max = (1u32 << format.bits_stored) - 1;
        assert!(out.iter().all(|&v| u32::from(v) <= max), "unmasked bits");
    }
}
