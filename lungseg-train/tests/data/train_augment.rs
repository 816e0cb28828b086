//! Augmentation keeps image and mask aligned, and its geometry is what it says.

use lungseg_train::train::augment::{augment, augmented_shape, crop, AugmentConfig, Geometry};
use lungseg_train::train::rng::Rng;

const SHAPE: [usize; 3] = [4, 6, 6];

fn idx(z: usize, y: usize, x: usize) -> usize {
    (z * SHAPE[1] + y) * SHAPE[2] + x
}

fn marked(z: usize, y: usize, x: usize) -> (Vec<f32>, Vec<u8>) {
    let n: usize = SHAPE.iter().product();
    let mut img = vec![0.0; n];
    let mut mask = vec![0; n];
    img[idx(z, y, x)] = 1.0;
    mask[idx(z, y, x)] = 1;
    (img, mask)
}

#[test]
fn flips_move_a_voxel_to_the_mirror_position() {
    let (img, _) = marked(1, 2, 5);
    let g = Geometry {
        flip: [true, false, true],
        rot90: 0,
    };
    let out = g.apply(&img, SHAPE);
    assert_eq!(out[idx(2, 2, 0)], 1.0);
}

#[test]
fn quarter_turns_compose() {
    let n: usize = SHAPE.iter().product();
    let img: Vec<u32> = (0..n as u32).collect();
    let r1 = Geometry {
        flip: [false; 3],
        rot90: 1,
    };
    let r2 = Geometry {
        flip: [false; 3],
        rot90: 2,
    };
    let twice = r1.apply(&r1.apply(&img, SHAPE), SHAPE);
    assert_eq!(twice, r2.apply(&img, SHAPE));
    let four = r2.apply(&twice, SHAPE);
    assert_eq!(four, img);
    assert_ne!(r1.apply(&img, SHAPE), img);
}

#[test]
fn image_and_mask_stay_aligned_under_random_augmentation() {
    let cfg = AugmentConfig {
        noise_std: 0.0,
        shift: 0.0,
        scale: 0.0,
        ..AugmentConfig::default()
    };
    let mut rng = Rng::new(7);
    let mut positions = std::collections::HashSet::new();
    for _ in 0..64 {
        let (img, mask) = marked(0, 1, 4);
        let (img, mask) = augment(&img, &mask, SHAPE, &cfg, &mut rng);
        let pi: Vec<usize> = (0..img.len()).filter(|&i| img[i] == 1.0).collect();
        let pm: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] == 1).collect();
        assert_eq!(pi.len(), 1);
        assert_eq!(pi, pm);
        positions.insert(pi[0]);
    }
    assert!(
        positions.len() >= 8,
        "flips × rotations reach many positions, got {}",
        positions.len()
    );
}

#[test]
fn intensity_changes_touch_the_image_only_and_are_seeded() {
    let (img, mask) = marked(3, 3, 3);
    let cfg = AugmentConfig::default();
    let a = augment(&img, &mask, SHAPE, &cfg, &mut Rng::new(1));
    let b = augment(&img, &mask, SHAPE, &cfg, &mut Rng::new(1));
    assert_eq!(a, b, "same seed, same augmentation");
    assert_eq!(a.1.iter().map(|&v| v as usize).sum::<usize>(), 1);
    assert!(a.0.iter().all(|v| v.is_finite()));
}

#[test]
fn crop_takes_the_cube_at_its_offset() {
    // Every voxel holds its own index, so the crop's values name where they came from.
    let n: usize = SHAPE.iter().product();
    let src: Vec<usize> = (0..n).collect();
    let out = crop(&src, SHAPE, [1, 2, 3], 3);
    assert_eq!(out.len(), 27);
    for z in 0..3 {
        for y in 0..3 {
            for x in 0..3 {
                assert_eq!(out[(z * 3 + y) * 3 + x], idx(1 + z, 2 + y, 3 + x));
            }
        }
    }
}

#[test]
fn random_crops_keep_image_and_mask_aligned_and_reach_every_offset() {
    let cfg = AugmentConfig {
        noise_std: 0.0,
        shift: 0.0,
        scale: 0.0,
        flips: false,
        rot90: false,
        crop: Some(3),
    };
    assert_eq!(augmented_shape(&cfg, SHAPE), [3, 3, 3]);
    let n: usize = SHAPE.iter().product();
    let img: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mask: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut rng = Rng::new(3);
    let mut corners = std::collections::HashSet::new();
    for _ in 0..400 {
        let (ci, cm) = augment(&img, &mask, SHAPE, &cfg, &mut rng);
        assert_eq!(ci.len(), 27);
        for (v, m) in ci.iter().zip(&cm) {
            assert_eq!(
                (*v as usize % 251) as u8,
                *m,
                "image and mask cropped alike"
            );
        }
        corners.insert(ci[0] as usize);
    }
    // offsets 0..=1 in z (4 - 3), 0..=3 in y and x (6 - 3): 2 × 4 × 4 corners
    assert_eq!(corners.len(), 32);
}
