//! insta snapshot of the patch summary for fixed weights, input and seed (values rounded so
//! that the AVX-512 and portable kernels give the same text).

mod common;

use common::*;
use lungseg::mc::{predict_uncertainty, McOptions, UncertaintyMaps};

#[test]
fn small_fixture_summary() {
    let m = fixture_model("small");
    let input = read_f32("small.input.f32");
    let opts = McOptions {
        n_samples: 20,
        seed: 2026,
        threads: 2,
        review_threshold: None,
        review_score: None,
    };
    let s = predict_uncertainty(&m, &input, &opts, UncertaintyMaps::default()).unwrap();
    let text = format!(
        "foreground_voxels: {}\nvolume_mm3: {:.1}\nequivalent_diameter_mm: {:.4}\nmean_probability: {:.4}\n\
         mean_entropy: {:.4}\nmean_mutual_info: {:.4}\nuncertainty_score: {:.4}\nneeds_review: {}\nn_samples: {}\n",
        s.foreground_voxels,
        s.volume_mm3,
        s.equivalent_diameter_mm,
        s.mean_probability,
        s.mean_entropy,
        s.mean_mutual_info,
        s.uncertainty_score,
        s.needs_review,
        s.n_samples
    );
    insta::assert_snapshot!(text);
}
