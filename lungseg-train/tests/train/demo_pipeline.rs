//! The demo (`lungseg-train demo`, the README's main job) end to end at a tiny size: every
//! stage runs, the model it writes opens in lungseg-sys with the review rule the calibration
//! chose, the report it writes reads back as a `Report` whose headline the demo prints, and
//! an earlier run's outputs are cleared first.

use lungseg_train::demo::{headline, run, DemoOptions};
use lungseg_train::report::Report;
use lungseg_train::synth::SynthConfig;

use crate::common;

#[test]
fn a_tiny_demo_runs_every_stage_and_its_outputs_read_back() {
    let _burn = common::rng_lock();
    let out = std::env::temp_dir().join(format!("lungseg-demo-{}", std::process::id()));
    let o = DemoOptions {
        out: out.clone(),
        // 0–3 nodules a scan, ~1.1 on average at this size, and the split goes by scan: with 5
        // scans one draw of the generator left a single nodule, in the training split, and
        // nothing to validate on.
        scans: 8,
        test_scans: 3,
        patch: 16,
        channels: vec![4, 8],
        epochs: 1,
        batch_size: 4,
        positives_per_nodule: 1,
        mc_samples: 3,
        synth: SynthConfig {
            dims_xy: 128,
            z_extent_mm: 60.0,
            ..Default::default()
        },
        progress: false,
        ..DemoOptions::default()
    };
    // What an earlier run left is cleared, not mixed into this run's outputs.
    let stale = out.join("report").join("stale.png");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"earlier run").unwrap();
    let done = run(&o).unwrap();

    let model = lungseg::model::Model::open(&done.model).unwrap();
    assert_eq!(model.config().patch_size, [16; 3]);
    assert_eq!(model.review().score.name(), done.review_score);
    assert_eq!(model.review().threshold, done.review_threshold);

    let text = std::fs::read_to_string(&done.report_json).unwrap();
    let report: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(report.mc_samples, 3);
    assert_eq!(report.review_score, done.review_score);
    assert!(report.metrics.headline.n_nodule_patches > 0);
    let md = std::fs::read_to_string(&done.report_md).unwrap();
    assert!(md.contains("## Quality bar"), "{md}");
    let h = headline(&done.report_json).unwrap();
    assert!(
        h.contains(&format!(
            "{} nodule patches",
            report.metrics.headline.n_nodule_patches
        )),
        "{h}"
    );
    assert!(!stale.exists(), "an earlier run's file survived in report/");
    std::fs::remove_dir_all(out).ok();
}
