//! The caller's segments against what a SEG can hold: their number, their texts as the value
//! representations they are written in, and their masks against the source grid.

use super::{Segment, MAX_SEGMENTS};
use crate::error::{Error, Result};

/// LO: Long String.
const LO_MAX_CHARS: usize = 64;
/// ST: Short Text.
const ST_MAX_CHARS: usize = 1024;

/// Number of segments, labels, descriptions and algorithm names and versions.
pub fn check(segments: &[Segment]) -> Result<()> {
    if segments.is_empty() {
        return Err(Error::invalid(
            "no segment to write: a SEG needs at least one",
        ));
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(Error::limit(format!(
            "{} segments: a SEG holds at most {MAX_SEGMENTS} (Segment Number is 16-bit)",
            segments.len()
        )));
    }
    for (i, s) in segments.iter().enumerate() {
        let at = |e: Error| e.context(format_args!("segment {}", i + 1));
        long_string(s.label, "label").map_err(at)?;
        long_string(s.algorithm.name, "algorithm name").map_err(at)?;
        long_string(s.algorithm.version, "algorithm version").map_err(at)?;
        short_text(s.description, "description").map_err(at)?;
    }
    Ok(())
}

/// Every mask holds `voxels` bytes of 0 or 1.
pub fn check_masks(segments: &[Segment], voxels: usize) -> Result<()> {
    for (i, s) in segments.iter().enumerate() {
        if s.mask.len() != voxels {
            return Err(Error::invalid(format!(
                "segment {}: the mask holds {} bytes, the series has {voxels} voxels",
                i + 1,
                s.mask.len()
            )));
        }
        if let Some(at) = s.mask.iter().position(|&v| v > 1) {
            return Err(Error::invalid(format!(
                "segment {}: mask byte {at} is {}; a binary mask holds 0 or 1",
                i + 1,
                s.mask[at]
            )));
        }
    }
    Ok(())
}

/// A non-empty LO: at most 64 characters, none a backslash (the value separator) or a control
/// character.
fn long_string(s: &str, what: &str) -> Result<()> {
    let bad = s.chars().find(|&c| c == '\\' || c.is_control());
    if s.trim().is_empty() || s.chars().count() > LO_MAX_CHARS || bad.is_some() {
        return Err(Error::invalid(format!(
            "the {what} {:?} is not a valid LO: 1 to {LO_MAX_CHARS} characters, not only \
             spaces, without backslash or control characters",
            s.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// An ST: at most 1024 characters; of the control characters only CR, LF and FF.
fn short_text(s: &str, what: &str) -> Result<()> {
    let bad = s
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\r' | '\n' | '\x0c'));
    if s.chars().count() > ST_MAX_CHARS || bad.is_some() {
        return Err(Error::invalid(format!(
            "the {what} is not a valid ST: at most {ST_MAX_CHARS} characters, of the control \
             characters only CR, LF and FF"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Algorithm;
    use super::*;
    use crate::error::ErrorKind;

    fn seg<'a>(mask: &'a [u8], label: &'a str, description: &'a str) -> Segment<'a> {
        Segment {
            mask,
            label,
            description,
            algorithm: Algorithm::LUNGSEG,
        }
    }

    #[test]
    fn labels_must_be_lo() {
        let ok = seg(&[], "Nodule 1", "needs review: no\r\n12 mm³");
        check(&[ok]).unwrap();
        for label in ["", "  ", "a\\b", "tab\there", &"x".repeat(65)] {
            let e = check(&[seg(&[], label, "")]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains("segment 1: the label"), "{e}");
        }
        check(&[seg(&[], &"é".repeat(64), "")]).unwrap();
    }

    #[test]
    fn descriptions_must_be_st() {
        let e = check(&[seg(&[], "a", &"x".repeat(1025))]).unwrap_err();
        assert!(e.message.contains("not a valid ST"), "{e}");
        let e = check(&[seg(&[], "a", "bell\x07")]).unwrap_err();
        assert!(e.message.contains("not a valid ST"), "{e}");
    }

    #[test]
    fn masks_must_fit_the_grid_and_be_binary() {
        let s = [seg(&[0, 1, 1], "a", "")];
        check_masks(&s, 3).unwrap();
        let e = check_masks(&s, 4).unwrap_err();
        assert_eq!(
            e.message,
            "segment 1: the mask holds 3 bytes, the series has 4 voxels"
        );
        let e = check_masks(&[seg(&[0, 255], "a", "")], 2).unwrap_err();
        assert!(e.message.contains("mask byte 1 is 255"), "{e}");
    }
}
