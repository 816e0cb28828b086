//! Where `prepare` cuts its border negatives, on a phantom whose border is known exactly.

use lungseg::geometry::Geometry;
use lungseg::volume::{PixelData, Volume};
use lungseg_train::prepare::sampling::{border_point, lung_point, BODY_HU};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const N: usize = 48;
const LUNG_RADIUS: f64 = 16.0;

/// Soft tissue (40 HU) with a ball of lung (−850 HU) of radius [`LUNG_RADIUS`] at the centre,
/// crossed along x by a vessel 2 mm across (40 HU).
fn phantom() -> Volume {
    let c = N as f64 / 2.0;
    let mut hu = Vec::with_capacity(N * N * N);
    for k in 0..N {
        for j in 0..N {
            for i in 0..N {
                let d = [i, j, k].map(|v| v as f64 - c);
                let lung = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() <= LUNG_RADIUS;
                let vessel = d[1].abs() < 1.0 && d[2].abs() < 1.0;
                hu.push(if lung && !vessel { -850.0f32 } else { 40.0 });
            }
        }
    }
    let geometry = Geometry::axis_aligned([N; 3], [1.0; 3], [0.0; 3]).unwrap();
    Volume::new(geometry, PixelData::F32(hu)).unwrap()
}

/// Every border point lies on the lung's surface (within the 1 mm step and the rounding to the
/// nearest voxel), never on the vessel inside it.
#[test]
fn border_points_lie_on_the_lung_surface_not_on_vessels() {
    let v = phantom();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = N as f64 / 2.0;
    // A start is a random voxel that must fall in the lung (15 % of this phantom); nearly
    // every walk from one reaches the surface (the scan edge is beyond the walk's reach).
    let found: Vec<[f64; 3]> = (0..2000)
        .filter_map(|_| border_point(&v, &mut rng))
        .collect();
    assert!(
        found.len() > 200,
        "{} of 2000 tries found the border",
        found.len()
    );
    for p in &found {
        let r = p.iter().map(|x| (x - c).powi(2)).sum::<f64>().sqrt();
        assert!(
            (LUNG_RADIUS - 1.0..=LUNG_RADIUS + 2.0).contains(&r),
            "{p:?} at {r} mm"
        );
        let idx = v.geometry.world_to_index(*p).map(|x| x.round() as usize);
        assert!(
            v.value(idx[0], idx[1], idx[2]) > BODY_HU,
            "{p:?} is not tissue"
        );
    }
}

/// Lung enclosed by a one-voxel tissue shell (as thin as a vessel wall): every start is lung
/// and every walk crosses tissue, but never 6 mm of it before leaving the scan, so there is no
/// border point — and the search ends.
#[test]
fn a_thin_shell_is_no_border() {
    let n = 24;
    let shell = |v: usize| v == 0 || v == n - 1;
    let mut hu = Vec::with_capacity(n * n * n);
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                hu.push(if shell(i) || shell(j) || shell(k) {
                    40.0f32
                } else {
                    -850.0
                });
            }
        }
    }
    let geometry = Geometry::axis_aligned([n; 3], [1.0; 3], [0.0; 3]).unwrap();
    let v = Volume::new(geometry, PixelData::F32(hu)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert!((0..50).any(|_| lung_point(&v, &mut rng).is_some()));
    assert!((0..200).all(|_| border_point(&v, &mut rng).is_none()));
}
