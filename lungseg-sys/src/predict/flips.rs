//! Test-time flips: each MC sample sees the patch mirrored along a set of axes and its output
//! is mirrored back before it is folded in, so the samples vary the input orientation as well
//! as the dropout masks (Wang et al. 2019, "Aleatoric uncertainty estimation with test-time
//! augmentation for medical image segmentation"). The network is trained with random flips on
//! every axis (lungseg-train `augment`), so every mirrored patch is one it was taught on.
//!
//! The model file says how many orientations its samples cycle through
//! (`config.test_time_flips`: 1, 2, 4 or 8; [`crate::model::ModelConfig`]). Flip `f` mirrors x
//! when bit 0 is set, y for bit 1, z for bit 2, so 2 flips are {none, x}, 4 add y and xy, 8
//! are all of them. Sample `s` of `n` gets flip `⌊s · flips / n⌋`: contiguous groups, so the
//! part of the network every sample shares (the encoder levels without dropout) runs once per
//! group, not once per sample. The choice depends on (s, n) only, never on the data.

/// A set of mirrored axes: bit 0 x, bit 1 y, bit 2 z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flip(u8);

/// The `test_time_flips` values a model may name.
pub const ALLOWED_FLIPS: [u32; 4] = [1, 2, 4, 8];

impl Flip {
    /// No axis mirrored.
    pub const NONE: Flip = Flip(0);

    /// The flip of sample `sample` of an `n_samples` call of a model with `flips`
    /// orientations (one of [`ALLOWED_FLIPS`]; `sample < n_samples`).
    pub fn of_sample(sample: u32, n_samples: u32, flips: u32) -> Flip {
        debug_assert!(sample < n_samples && ALLOWED_FLIPS.contains(&flips));
        let f = u64::from(sample) * u64::from(flips) / u64::from(n_samples.max(1));
        Flip((f & 7) as u8)
    }

    /// Which axes are mirrored, (x, y, z).
    pub fn axes(self) -> [bool; 3] {
        [self.0 & 1 != 0, self.0 & 2 != 0, self.0 & 4 != 0]
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// The mirrored axes as the CUDA head kernel takes them (bit 0 x, bit 1 y, bit 2 z).
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// `dst[v] = src[mirror(v)]` on a z-major grid of `size` (x, y, z) voxels. A flip is its
    /// own inverse: the same call maps a mirrored output back.
    pub fn apply(self, size: [usize; 3], src: &[f32], dst: &mut [f32]) {
        let [nx, ny, nz] = size;
        assert!(src.len() == nx * ny * nz && dst.len() == src.len());
        let [fx, fy, fz] = self.axes();
        for z in 0..nz {
            let sz = if fz { nz - 1 - z } else { z };
            for y in 0..ny {
                let sy = if fy { ny - 1 - y } else { y };
                let from = &src[(sz * ny + sy) * nx..][..nx];
                let to = &mut dst[(z * ny + y) * nx..][..nx];
                if fx {
                    for (d, s) in to.iter_mut().zip(from.iter().rev()) {
                        *d = *s;
                    }
                } else {
                    to.copy_from_slice(from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_form_contiguous_groups_covering_every_flip() {
        let f: Vec<u8> = (0..20).map(|s| Flip::of_sample(s, 20, 8).0).collect();
        assert_eq!(
            f,
            [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7]
        );
        // Fewer samples than flips spread over the orientations.
        let f: Vec<u8> = (0..4).map(|s| Flip::of_sample(s, 4, 8).0).collect();
        assert_eq!(f, [0, 2, 4, 6]);
        assert!((0..20).all(|s| Flip::of_sample(s, 20, 1).is_none()));
        assert!(Flip::of_sample(0, 1, 8).is_none());
        let two: Vec<u8> = (0..5).map(|s| Flip::of_sample(s, 5, 2).0).collect();
        assert_eq!(two, [0, 0, 0, 1, 1]);
    }

    #[test]
    fn apply_mirrors_the_named_axes_and_is_its_own_inverse() {
        let size = [4, 3, 2];
        let src: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 24];
        let at = |x: usize, y: usize, z: usize| (z * 3 + y) * 4 + x;
        for f in 0..8u8 {
            let flip = Flip(f);
            flip.apply(size, &src, &mut dst);
            let [fx, fy, fz] = flip.axes();
            for z in 0..2 {
                for y in 0..3 {
                    for x in 0..4 {
                        let sx = if fx { 3 - x } else { x };
                        let sy = if fy { 2 - y } else { y };
                        let sz = if fz { 1 - z } else { z };
                        assert_eq!(dst[at(x, y, z)], src[at(sx, sy, sz)], "flip {f}");
                    }
                }
            }
            let mut back = vec![0.0; 24];
            flip.apply(size, &dst, &mut back);
            assert_eq!(back, src, "flip {f} twice");
        }
    }
}
