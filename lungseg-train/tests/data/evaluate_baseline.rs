//! The evaluation's deterministic baseline: the dropout-off inference under the model's
//! test-time flips, checked against mirrors written out by index here.

use lungseg::mc;
use lungseg::model::Model;
use lungseg_train::calibrate::mask_threshold::set_test_time_flips;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::deterministic;
use lungseg_train::model_file::ModelFile;

use super::evaluate_calibrate::{dataset, fixture_model};

/// `src` (x fastest, `[nx, ny, nz]`) mirrored along x (bit 0), y (bit 1), z (bit 2).
fn mirror(src: &[f32], [nx, ny, nz]: [usize; 3], bits: u32) -> Vec<f32> {
    let pick = |i: usize, n: usize, bit: u32| if bits & bit != 0 { n - 1 - i } else { i };
    let mut out = vec![0.0; src.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let from = (pick(z, nz, 4) * ny + pick(y, ny, 2)) * nx + pick(x, nx, 1);
                out[(z * ny + y) * nx + x] = src[from];
            }
        }
    }
    out
}

#[test]
fn the_baseline_averages_the_dropout_off_passes_of_every_flip() {
    let dir = tempfile::tempdir().unwrap();
    let plain_path = fixture_model(dir.path());
    let ds = PatchDataset::open(dataset(dir.path())).unwrap();
    let patch = ds.load(ds.split("val")[0]).unwrap();
    let n = patch.hu.len();

    let plain = Model::open(&plain_path).unwrap();
    let mut once = vec![0.0; n];
    mc::predict(&plain, &patch.hu, &mut once, 0).unwrap();
    let mut base = vec![0.0; n];
    deterministic(&plain, &patch.hu, &mut base).unwrap();
    assert_eq!(base, once, "without flips the baseline is the plain pass");

    let mut file = ModelFile::read(&plain_path).unwrap();
    set_test_time_flips(&mut file, 4).unwrap();
    let (_, flipping) = file.to_bytes().unwrap();
    let size = flipping.config().patch_size;
    let mut want = vec![0.0f64; n];
    for bits in 0..4 {
        let mut p = vec![0.0; n];
        mc::predict(&plain, &mirror(&patch.hu, size, bits), &mut p, 0).unwrap();
        for (w, v) in want.iter_mut().zip(mirror(&p, size, bits)) {
            *w += f64::from(v) / 4.0;
        }
    }
    deterministic(&flipping, &patch.hu, &mut base).unwrap();
    let worst = base
        .iter()
        .zip(&want)
        .map(|(&b, &w)| (f64::from(b) - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-6,
        "baseline differs from the mirrored passes by {worst}"
    );
    let moved = base
        .iter()
        .zip(&once)
        .map(|(&b, &o)| (b - o).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved > 1e-3,
        "the flips changed nothing ({moved}): the check proves little"
    );
}
