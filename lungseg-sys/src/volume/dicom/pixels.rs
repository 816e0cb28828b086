//! A slice's pixel format and the decoding of its native (uncompressed) Pixel Data: 16-bit
//! samples, signed or unsigned, one per pixel, little endian.

use super::header::SliceHeader;
use super::walk::{DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE};
use crate::error::{Error, Result};

/// How the stored samples of a slice are laid out: what a series must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub signed: bool,
    /// Bits that carry the value (BitsStored); the bits above are masked off.
    pub bits_stored: u16,
}

impl PixelFormat {
    /// The format of a slice, refusing what this reader does not decode.
    pub fn of(h: &SliceHeader) -> Result<PixelFormat> {
        if h.frames != 1 {
            return Err(Error::unsupported(format!(
                "multi-frame image (NumberOfFrames = {}): only one slice per file is supported",
                h.frames
            )));
        }
        if h.transfer_syntax != IMPLICIT_LE && h.transfer_syntax != EXPLICIT_LE {
            return Err(Error::unsupported(format!(
                "transfer syntax {} ({}) is not supported: only uncompressed little endian \
                 ({IMPLICIT_LE}, {EXPLICIT_LE})",
                h.transfer_syntax,
                ts_name(&h.transfer_syntax)
            )));
        }
        if h.samples_per_pixel != 1 || h.photometric != "MONOCHROME2" {
            return Err(Error::unsupported(format!(
                "SamplesPerPixel = {}, PhotometricInterpretation = {}: only MONOCHROME2 with one \
                 sample per pixel is supported",
                h.samples_per_pixel, h.photometric
            )));
        }
        if h.bits_allocated != 16 {
            return Err(Error::unsupported(format!(
                "BitsAllocated = {}: only 16-bit samples are supported",
                h.bits_allocated
            )));
        }
        if h.pixel_representation > 1 {
            return Err(Error::unsupported(format!(
                "PixelRepresentation = {}: 0 (unsigned) or 1 (signed) expected",
                h.pixel_representation
            )));
        }
        // HighBit comes from the file: 65535 + 1 must not overflow.
        if !(1..=16).contains(&h.bits_stored) || h.high_bit.checked_add(1) != Some(h.bits_stored) {
            return Err(Error::unsupported(format!(
                "BitsStored = {}, HighBit = {}: HighBit must be BitsStored - 1, at most 15",
                h.bits_stored, h.high_bit
            )));
        }
        if h.rows == 0 || h.columns == 0 {
            return Err(Error::format(format!(
                "Rows = {}, Columns = {}: an empty image",
                h.rows, h.columns
            )));
        }
        Ok(PixelFormat {
            signed: h.pixel_representation == 1,
            bits_stored: h.bits_stored,
        })
    }
}

/// Bytes of Pixel Data a slice must have.
fn slice_bytes(h: &SliceHeader) -> usize {
    usize::from(h.rows) * usize::from(h.columns) * 2
}

/// Where the slice's Pixel Data lies in `bytes`, checked against Rows × Columns.
pub fn pixel_bytes<'a>(h: &SliceHeader, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let range = h.pixel_data.clone().ok_or_else(|| {
        Error::unsupported("encapsulated (compressed) Pixel Data is not supported")
    })?;
    let data = bytes
        .get(range)
        .ok_or_else(|| Error::format("Pixel Data lies outside the file"))?;
    if data.len() != slice_bytes(h) {
        return Err(Error::format(format!(
            "Pixel Data holds {} bytes, Rows {} × Columns {} × 2 bytes need {}",
            data.len(),
            h.rows,
            h.columns,
            slice_bytes(h)
        )));
    }
    Ok(data)
}

/// A stored 16-bit sample type.
pub trait Stored: Copy {
    fn from_bits(bits: u16, f: PixelFormat) -> Self;
}

impl Stored for u16 {
    #[inline]
    fn from_bits(bits: u16, f: PixelFormat) -> Self {
        bits & mask(f)
    }
}

impl Stored for i16 {
    #[inline]
    fn from_bits(bits: u16, f: PixelFormat) -> Self {
        // Sign-extend from bit BitsStored - 1: shift it to bit 15, then back arithmetically.
        let unused = 16 - f.bits_stored;
        ((bits << unused) as i16) >> unused
    }
}

fn mask(f: PixelFormat) -> u16 {
    (u32::from(u16::MAX) >> (16 - f.bits_stored)) as u16
}

/// Decodes little-endian samples into `dst` (exactly one per pixel).
pub fn decode<T: Stored>(data: &[u8], f: PixelFormat, dst: &mut [T]) -> Result<()> {
    if data.len() != dst.len() * 2 {
        return Err(Error::format(format!(
            "Pixel Data holds {} bytes for {} pixels",
            data.len(),
            dst.len()
        )));
    }
    for (d, b) in dst.iter_mut().zip(data.chunks_exact(2)) {
        *d = T::from_bits(u16::from_le_bytes([b[0], b[1]]), f);
    }
    Ok(())
}

/// A name for the transfer syntaxes callers meet most.
fn ts_name(uid: &str) -> &'static str {
    match uid {
        EXPLICIT_BE => "Explicit VR Big Endian",
        DEFLATED_LE => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "JPEG-LS",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        _ => "compressed or unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bits_stored: u16, high_bit: u16) -> SliceHeader {
        SliceHeader {
            rows: 2,
            columns: 3,
            pixel_spacing: [0.7, 0.6],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            position: [0.0; 3],
            bits_allocated: 16,
            bits_stored,
            high_bit,
            pixel_representation: 1,
            samples_per_pixel: 1,
            photometric: "MONOCHROME2".into(),
            frames: 1,
            rescale: [1.0, -1024.0],
            slice_thickness: None,
            transfer_syntax: IMPLICIT_LE.into(),
            pixel_data: Some(0..12),
            identity: Default::default(),
        }
    }

    /// Found by the `dicom_file` fuzz target (fuzz/regressions/dicom_file/
    /// high_bit_65535_overflows_bits_check): HighBit 65535 overflowed `high_bit + 1`.
    #[test]
    fn any_high_bit_is_checked_without_overflow() {
        for (bits, high) in [(16, u16::MAX), (0, u16::MAX), (16, 14), (12, 12)] {
            let e = PixelFormat::of(&header(bits, high)).unwrap_err();
            assert!(e.message.contains("HighBit"), "{e}");
        }
        assert!(PixelFormat::of(&header(12, 11)).is_ok());
        assert!(PixelFormat::of(&header(16, 15)).is_ok());
    }

    #[test]
    fn bits_above_bits_stored_are_masked_and_signs_extended() {
        let f12u = PixelFormat {
            signed: false,
            bits_stored: 12,
        };
        let f12s = PixelFormat {
            signed: true,
            bits_stored: 12,
        };
        let f16s = PixelFormat {
            signed: true,
            bits_stored: 16,
        };
        assert_eq!(u16::from_bits(0xF123, f12u), 0x0123);
        assert_eq!(i16::from_bits(0x0FFF, f12s), -1);
        assert_eq!(i16::from_bits(0xF7FF, f12s), 2047);
        assert_eq!(i16::from_bits(0x0800, f12s), -2048);
        assert_eq!(i16::from_bits(0x8000, f16s), i16::MIN);
        let mut out = [0u16; 2];
        decode(&[0x34, 0x12, 0xff, 0xff], f12u, &mut out).unwrap();
        assert_eq!(out, [0x0234, 0x0fff]);
        assert!(decode(&[0u8; 3], f12u, &mut out).is_err());
    }
}
