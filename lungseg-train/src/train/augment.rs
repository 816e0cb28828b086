//! On-the-fly augmentation of one normalised patch and its mask.
//!
//! A random crop (optional) comes first: training on cubes smaller than the stored patch costs
//! (crop/patch)³ of the compute per step and adds translations, while validation and inference
//! keep the full patch (the U-Net is fully convolutional). Geometric transforms (flips on z/y/x, 90° rotations in the axial y–x plane) are one index
//! map applied to image and mask alike, so they cannot drift apart; intensity changes
//! (scale, shift, Gaussian noise) touch the image only.

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Augmentation strengths. `Default` is what `train` uses unless `--no-augment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Flip each of z, y, x with probability 1/2.
    pub flips: bool,
    /// Rotate by k·90° in the y–x plane, k uniform in 0..4 (square planes only).
    pub rot90: bool,
    /// Multiply the image by a factor uniform in [1 − scale, 1 + scale].
    pub scale: f32,
    /// Add an offset uniform in [−shift, shift] (normalised units; 0.1 ≈ 140 HU).
    pub shift: f32,
    /// Add N(0, σ²) per voxel with σ uniform in [0, noise_std].
    pub noise_std: f32,
    /// Train on a random `crop`³ cube of each patch (offset uniform per axis); `None` keeps the
    /// whole patch.
    #[serde(default)]
    pub crop: Option<usize>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            flips: true,
            rot90: true,
            scale: 0.1,
            shift: 0.05,
            noise_std: 0.03,
            crop: None,
        }
    }
}

/// One draw of the geometric part, kept separate so tests can pick it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Geometry {
    /// Flip z, y, x.
    pub flip: [bool; 3],
    /// Quarter turns in the y–x plane.
    pub rot90: u8,
}

impl Geometry {
    pub fn draw(cfg: &AugmentConfig, shape: [usize; 3], rng: &mut Rng) -> Self {
        let mut g = Geometry::default();
        if cfg.flips {
            g.flip = [rng.coin(), rng.coin(), rng.coin()];
        }
        if cfg.rot90 && shape[1] == shape[2] {
            g.rot90 = rng.below(4) as u8;
        }
        g
    }

    /// Applies the transform to a z-major, x-fastest volume of `shape` (y–x plane square if
    /// `rot90 != 0`).
    pub fn apply<T: Copy>(&self, src: &[T], shape: [usize; 3]) -> Vec<T> {
        let [d, h, w] = shape;
        assert_eq!(
            src.len(),
            d * h * w,
            "volume length does not match its shape"
        );
        assert!(
            self.rot90.is_multiple_of(4) || h == w,
            "90° rotation needs a square y–x plane"
        );
        if *self == Geometry::default() {
            return src.to_vec();
        }
        let mut out = Vec::with_capacity(src.len());
        for z in 0..d {
            let sz = if self.flip[0] { d - 1 - z } else { z };
            for y in 0..h {
                let fy = if self.flip[1] { h - 1 - y } else { y };
                for x in 0..w {
                    let fx = if self.flip[2] { w - 1 - x } else { x };
                    let (sy, sx) = match self.rot90 % 4 {
                        0 => (fy, fx),
                        1 => (fx, h - 1 - fy),
                        2 => (h - 1 - fy, w - 1 - fx),
                        _ => (w - 1 - fx, fy),
                    };
                    out.push(src[(sz * h + sy) * w + sx]);
                }
            }
        }
        out
    }
}

/// The `edge`³ cube at `offset` (z, y, x) of a z-major, x-fastest volume of `shape`.
pub fn crop<T: Copy>(src: &[T], shape: [usize; 3], offset: [usize; 3], edge: usize) -> Vec<T> {
    let [d, h, w] = shape;
    assert_eq!(
        src.len(),
        d * h * w,
        "volume length does not match its shape"
    );
    assert!(
        (0..3).all(|a| offset[a] + edge <= shape[a]),
        "crop {edge}³ at {offset:?} leaves the volume {shape:?}"
    );
    let mut out = Vec::with_capacity(edge * edge * edge);
    for z in offset[0]..offset[0] + edge {
        for y in offset[1]..offset[1] + edge {
            let row = (z * h + y) * w + offset[2];
            out.extend_from_slice(&src[row..row + edge]);
        }
    }
    out
}

/// The shape a patch of `shape` has after augmentation with `cfg`.
pub fn augmented_shape(cfg: &AugmentConfig, shape: [usize; 3]) -> [usize; 3] {
    cfg.crop.map_or(shape, |c| [c; 3])
}

/// Augments a normalised image and its mask in place of copies; returns the new pair, of
/// [`augmented_shape`].
pub fn augment(
    image: &[f32],
    mask: &[u8],
    shape: [usize; 3],
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<u8>) {
    let (image, mask, shape) = match cfg.crop {
        Some(edge) => {
            assert!(
                shape.iter().all(|&n| edge <= n),
                "crop {edge}³ does not fit the patch {shape:?}"
            );
            let offset = shape.map(|n| rng.below(n - edge + 1));
            let img = crop(image, shape, offset, edge);
            let m = crop(mask, shape, offset, edge);
            (img, m, [edge; 3])
        }
        None => (image.to_vec(), mask.to_vec(), shape),
    };
    let g = Geometry::draw(cfg, shape, rng);
    let mut img = g.apply(&image, shape);
    let mask = g.apply(&mask, shape);
    let s = 1.0 + rng.range(-1.0, 1.0) as f32 * cfg.scale;
    let t = rng.range(-1.0, 1.0) as f32 * cfg.shift;
    let sigma = rng.uniform() as f32 * cfg.noise_std;
    for v in &mut img {
        *v = *v * s + t;
    }
    if sigma > 0.0 {
        for v in &mut img {
            *v += sigma * rng.normal() as f32;
        }
    }
    (img, mask)
}
