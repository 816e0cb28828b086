//! Which frames the SEG holds and their bits: one frame per (segment, source slice) with any
//! voxel set, segment by segment, slices in volume order (empty frames are omitted, as highdicom
//! does by default); 1 bit per pixel, least significant bit first, frames packed back to back
//! with padding only at the end of the Pixel Data.

use super::source::Source;
use super::{Segment, MAX_FRAMES};
use crate::error::{try_vec, Error, Result};

/// One frame: its segment (index into the segments) and its source slice (z).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub segment: usize,
    pub slice: usize,
}

impl Frame {
    /// Segment Number: 1-based.
    pub fn segment_number(&self) -> u16 {
        // `segments::check` bounds the segments to MAX_SEGMENTS (65535).
        (self.segment + 1) as u16
    }
}

/// The frames with any voxel set; when every mask is empty, the first segment's first slice, as
/// one empty frame (a SEG without frames is not a valid image).
pub fn select(segments: &[Segment], source: &Source) -> Result<Vec<Frame>> {
    let per_slice = source.voxels_per_slice();
    if per_slice == 0 {
        // A stack's geometry has no zero dimension; a hand-made `Source` may.
        return Err(Error::invalid("the source has 0 rows or columns"));
    }
    let mut frames = Vec::new();
    for (segment, s) in segments.iter().enumerate() {
        for (slice, plane) in s.mask.chunks_exact(per_slice).enumerate() {
            if plane.iter().any(|&v| v != 0) {
                frames.push(Frame { segment, slice });
            }
        }
        if frames.len() > MAX_FRAMES {
            return Err(Error::limit(format!(
                "more than {MAX_FRAMES} non-empty frames (segment × slice): more than a SEG \
                 holds (Number of Frames); write fewer segments per object"
            )));
        }
    }
    if frames.is_empty() {
        frames.push(Frame {
            segment: 0,
            slice: 0,
        });
    }
    Ok(frames)
}

/// The Pixel Data: the frames' bits back to back, LSB first, padded with zero bits to an even
/// number of bytes.
pub fn pack(segments: &[Segment], source: &Source, frames: &[Frame]) -> Result<Vec<u8>> {
    let per_slice = source.voxels_per_slice();
    let bits = frames
        .len()
        .checked_mul(per_slice)
        .ok_or_else(|| Error::limit("the SEG's Pixel Data does not fit the address space"))?;
    let bytes = bits.div_ceil(8).next_multiple_of(2);
    let mut out = try_vec::<u8>(bytes, "SEG Pixel Data")?;
    let mut bit = 0usize;
    for f in frames {
        let plane = &segments[f.segment].mask[f.slice * per_slice..][..per_slice];
        for &v in plane {
            out[bit / 8] |= (v & 1) << (bit % 8);
            bit += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::source::synthetic;
    use super::super::Algorithm;
    use super::*;

    fn seg(mask: &[u8]) -> Segment<'_> {
        Segment {
            mask,
            label: "a",
            description: "",
            algorithm: Algorithm::LUNGSEG,
        }
    }

    #[test]
    fn empty_frames_are_omitted_and_bits_run_on_across_frames() {
        // 3 columns × 1 row × 3 slices: 3 bits per frame, so frames share bytes.
        let source = synthetic(1, 3, 3);
        let a = [1, 0, 1, /* empty */ 0, 0, 0, 0, 1, 1];
        let b = [0, 0, 0, 1, 1, 1, 0, 0, 0];
        let segs = [seg(&a), seg(&b)];
        let frames = select(&segs, &source).unwrap();
        let want = [(0, 0), (0, 2), (1, 1)].map(|(segment, slice)| Frame { segment, slice });
        assert_eq!(frames, want);
        let px = pack(&segs, &source, &frames).unwrap();
        // Bits in stream order 101 011 11|1, LSB first: byte 0 = 0b1111_0101, byte 1 = 0b1 (the
        // stream's 9th bit, then padding to an even length).
        assert_eq!(px, vec![0b1111_0101, 0b0000_0001]);
    }

    #[test]
    fn all_empty_masks_give_one_empty_frame() {
        let source = synthetic(2, 2, 2);
        let m = [0u8; 8];
        let segs = [seg(&m)];
        let frames = select(&segs, &source).unwrap();
        assert_eq!(
            frames,
            vec![Frame {
                segment: 0,
                slice: 0
            }]
        );
        assert_eq!(pack(&segs, &source, &frames).unwrap(), vec![0, 0]);
    }

    #[test]
    fn a_source_without_pixels_is_refused() {
        let e = select(&[seg(&[])], &synthetic(0, 3, 2)).unwrap_err();
        assert!(e.message.contains("0 rows or columns"), "{e}");
    }

    #[test]
    fn too_many_frames_are_refused() {
        let source = synthetic(1, 1, MAX_FRAMES + 1);
        let m = vec![1u8; MAX_FRAMES + 1];
        let e = select(&[seg(&m)], &source).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Limit);
        assert!(
            e.message.contains("more than 65535 non-empty frames"),
            "{e}"
        );
        let source = synthetic(1, 1, MAX_FRAMES);
        let m = vec![1u8; MAX_FRAMES];
        assert_eq!(select(&[seg(&m)], &source).unwrap().len(), MAX_FRAMES);
    }
}
