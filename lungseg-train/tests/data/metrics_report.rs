//! report.json / report.md and every figure, from synthetic inputs.

use std::path::{Path, PathBuf};

use lungseg_train::metrics::{
    bad_kinds, EvalAccumulator, EvalConfig, EvalMetrics, PatchClass, PatchInput,
};
use lungseg_train::report::figures::{self, EpochRow, PanelInput};
use lungseg_train::report::{
    render_markdown, to_json_string, write_json, write_markdown, EvaluationRun, FigureRef, Report,
};
use plotters::prelude::*;

const N: usize = 24;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lungseg-metrics-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Checks the PNG signature, decodes it and returns (width, height, distinct colours > 2).
fn check_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 1000,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = &buf[..info.buffer_size()];
    let first = &px[..3];
    assert!(
        px.chunks(3).any(|c| c != first),
        "{} is blank",
        path.display()
    );
    (info.width, info.height)
}

struct Vol {
    ct: Vec<f32>,
    gt: Vec<u8>,
    prob: Vec<f32>,
    ent: Vec<f32>,
}

fn volume(r: f32, shift: f32) -> Vol {
    let c = N as f32 / 2.0;
    let mut v = Vol {
        ct: vec![],
        gt: vec![],
        prob: vec![],
        ent: vec![],
    };
    for i in 0..N * N * N {
        let (z, y, x) = ((i / (N * N)) as f32, ((i / N) % N) as f32, (i % N) as f32);
        let dg = ((z - c).powi(2) + (y - c).powi(2) + (x - c).powi(2)).sqrt();
        let dp = ((z - c).powi(2) + (y - c).powi(2) + (x - c - shift).powi(2)).sqrt();
        v.gt.push(u8::from(dg <= r));
        v.ct.push(if dg <= r { 20.0 } else { -850.0 });
        let p = 1.0 / (1.0 + (1.5 * (dp - r)).exp());
        v.prob.push(p);
        let h = |q: f32| if q <= 0.0 { 0.0 } else { -q * q.log2() };
        v.ent.push((h(p) + h(1.0 - p)).clamp(0.0, 1.0));
    }
    v
}

fn metrics() -> EvalMetrics {
    let mut acc = EvalAccumulator::new(EvalConfig::default()).unwrap();
    for (k, (r, s)) in [(5.0, 0.0), (4.0, 1.0), (3.0, 2.5), (6.0, 0.5), (2.0, 3.0)]
        .into_iter()
        .enumerate()
    {
        let v = volume(r, s);
        let mi: Vec<f32> = v.ent.iter().map(|e| e * 0.3).collect();
        let var: Vec<f32> = v.prob.iter().map(|p| p * (1.0 - p) * 0.4).collect();
        let score = s / 10.0;
        let det: Vec<f32> = v
            .prob
            .iter()
            .map(|p| if *p >= 0.5 { 0.9 } else { 0.1 })
            .collect();
        acc.add_patch(&PatchInput {
            id: &format!("patch-{k}"),
            scan: &format!("scan-{}", k / 2),
            dims: [N; 3],
            spacing_mm: [1.0; 3],
            centred_on_nodule: true,
            diameter_mm: Some(2.0 * r as f64),
            gt: &v.gt,
            prob: &v.prob,
            mask: None,
            calibrated: None,
            entropy: &v.ent,
            mutual_info: &mi,
            variance: &var,
            score,
            needs_review: score > 0.2,
            det_prob: &det,
            scores: &[("mc_review_score", score), ("det_constant", 0.5)],
        })
        .unwrap();
    }
    acc.finish().unwrap()
}

fn report(m: EvalMetrics) -> Report {
    Report {
        title: "Test report".into(),
        model: "synthetic.safetensors".into(),
        dataset: "synthetic spheres".into(),
        mc_samples: 20,
        review_score: "mean_mutual_info".into(),
        review_threshold: 0.2,
        metrics: m,
        evaluation: EvaluationRun {
            split: "test".into(),
            seed: 3,
            patches: 5,
            seconds: 1.5,
            patches_per_second: 5.0 / 1.5,
            slicer_volumes: vec!["slicer/patch-0_hu.mhd".into()],
            scored_model: Some("0123abcd".into()),
        },
        figures: vec![FigureRef {
            title: "Referral".into(),
            path: "referral.png".into(),
        }],
        notes: vec!["unit test".into()],
    }
}

#[test]
fn json_and_markdown_reports() {
    let r = report(metrics());
    let dir = out_dir("report");
    write_json(&r, &dir.join("report.json")).unwrap();
    write_markdown(&r, &dir.join("report.md")).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let pooled = &v["metrics"]["overlap"]["pooled"];
    assert_ne!(pooled["dice"], pooled["iou"]);
    assert_eq!(v["quality_checks"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["quality_checks"][0]["name"],
        "Dice, mean over all nodule patches"
    );
    // report.json is the typed report, serialised once: it reads back into `Report`.
    crate::common::assert_report_reads_back(&dir.join("report.json"), &r);
    let h = &r.metrics.headline;
    assert_eq!(h.n_nodule_patches, 5);
    let d = h.dice_nodules.unwrap();
    assert_eq!(d.groups, 3);
    assert!(
        d.lo <= d.estimate && d.estimate <= d.hi && d.lo < d.hi,
        "{d:?}"
    );
    assert_eq!(r.metrics.review_scores.len(), 2);
    assert_eq!(v["metrics"]["patches"].as_array().unwrap().len(), 5);
    assert!(to_json_string(&r).unwrap().contains("\"auroc\""));
    let md = render_markdown(&r);
    for needle in [
        "## Quality bar",
        "| pooled |",
        "ECE",
        "AUROC",
        "UEO",
        "## Referral",
        "## Headline",
        "## Review scores as detectors of bad patches",
        "| det_constant |",
        "| flagged |",
        "![Referral](referral.png)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}");
    }
    // The bad patches by kind: one row per kind, together every bad patch.
    let rows = bad_kinds(&r.metrics.patches);
    let bad: usize = rows.iter().map(|k| k.flagged + k.not_flagged).sum();
    assert_eq!(bad, r.metrics.headline.n_bad);
    assert!(
        bad > 0,
        "the fixture must hold bad patches for the table to be checked"
    );
    for k in &rows {
        let line = format!(
            "| {} | {} | {} | {} |",
            k.kind.label(),
            k.flagged + k.not_flagged,
            k.flagged,
            k.not_flagged
        );
        assert!(md.contains(&line), "report.md lacks {line}");
    }
    assert_eq!(std::fs::read_to_string(dir.join("report.md")).unwrap(), md);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn embedded_font_renders_text_without_fontconfig() {
    figures::ensure_font().unwrap();
    let (w, h) = (200u32, 40u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.draw_text(
            "Dice 0.81",
            &("sans-serif", 24).into_font().color(&BLACK),
            (5, 5),
        )
        .unwrap();
        root.present().unwrap();
    }
    let dark = buf.chunks(3).filter(|c| c[0] < 128).count();
    assert!(dark > 50, "text drew only {dark} dark pixels");
}

#[test]
fn every_figure_writes_a_decodable_png() {
    let m = metrics();
    let dir = out_dir("figures");
    let rel = dir.join("reliability.png");
    figures::reliability_diagram(&rel, &m.calibration_roi, "Reliability (ROI)").unwrap();
    assert_eq!(check_png(&rel), (640, 560));
    let refp = dir.join("referral.png");
    figures::referral_curve(&refp, m.referral.as_ref().unwrap()).unwrap();
    assert_eq!(check_png(&refp), (640, 480));
    let hist = dir.join("hist.png");
    figures::uncertainty_histograms(&hist, &m.histograms_roi, "Uncertainty (ROI)").unwrap();
    // One panel per measure: entropy, mutual information, variance, deterministic entropy.
    assert_eq!(check_png(&hist), (4 * 420, 400));

    let csv = "epoch,loss,train_dice,val_dice,lr,seconds\n1,0.9,0.2,0.1,0.001,3.5\n2,0.6,0.5,0.4,0.001,3.4\n3,0.4,0.7,,0.0005,3.6\n";
    let rows = figures::parse_metrics_csv(csv).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1],
        EpochRow {
            epoch: 2.0,
            loss: 0.6,
            train_dice: 0.5,
            val_dice: 0.4,
            lr: 0.001,
            seconds: 3.4
        }
    );
    assert!(rows[2].val_dice.is_nan());
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    let tc = dir.join("training.png");
    figures::training_curves_from_csv(&dir.join("metrics.csv"), &tc).unwrap();
    assert_eq!(check_png(&tc), (1260, 400));
    let one = figures::parse_metrics_csv(
        "seconds,lr,val_dice,train_dice,loss,epoch\n1,0.1,0.5,0.5,1.0,0\n",
    )
    .unwrap();
    figures::training_curves(&dir.join("one.png"), &one).unwrap();
    check_png(&dir.join("one.png"));

    let v = volume(5.0, 1.5);
    let pred: Vec<u8> = v.prob.iter().map(|&p| u8::from(p >= 0.5)).collect();
    let panel = dir.join("panel.png");
    figures::sample_panel(
        &panel,
        &PanelInput {
            title: "patch-1",
            dims: [N; 3],
            ct: &v.ct,
            gt: &v.gt,
            prob: &v.prob,
            uncertainty: &v.ent,
            unc_max: 1.0,
            high_unc: 0.5,
            pred: &pred,
            ct_window: (-1000.0, 400.0),
            centre: None,
        },
    )
    .unwrap();
    let (w, h) = check_png(&panel);
    assert!(w > 5 * 64 && h > 3 * 64, "{w}×{h}");
    // LUNGSEG_KEEP_FIGURES=1 keeps the PNGs for a visual check.
    if std::env::var_os("LUNGSEG_KEEP_FIGURES").is_none() {
        std::fs::remove_dir_all(dir).ok();
    } else {
        eprintln!("figures kept in {}", dir.display());
    }
}

#[test]
fn bad_figure_inputs_give_clear_errors() {
    let e = figures::parse_metrics_csv("epoch,loss\n1,2\n").unwrap_err();
    assert!(e.to_string().contains("train_dice"), "{e}");
    let e = figures::parse_metrics_csv("epoch,loss,train_dice,val_dice,lr,seconds\n1,x,0,0,0,0\n")
        .unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(figures::training_curves(Path::new("/nonexistent/x.png"), &[]).is_err());
    let v = volume(3.0, 0.0);
    let short = &v.prob[..5];
    let pred = vec![0u8; v.prob.len()];
    let input = PanelInput {
        title: "bad",
        dims: [N; 3],
        ct: &v.ct,
        gt: &v.gt,
        prob: short,
        uncertainty: &v.ent,
        unc_max: 1.0,
        high_unc: 0.5,
        pred: &pred,
        ct_window: (-1000.0, 400.0),
        centre: None,
    };
    assert!(figures::sample_panel(Path::new("/tmp/never.png"), &input).is_err());
}

#[test]
fn compare_reports_reads_two_reports_and_requires_a_gain() {
    use lungseg_train::report::compare::{read_report, CompareArgs};
    let dir = out_dir("compare");
    let mut base = report(metrics());
    // One negative patch per report, with a false-positive speck under the bad-patch volume.
    let mut negative = base.metrics.patches[0].clone();
    negative.id = "negative-0".into();
    negative.class = PatchClass::Negative;
    negative.fp_volume_mm3 = 10.0;
    negative.bad = false;
    base.metrics.patches.push(negative);
    let mut better = base.clone();
    for p in better
        .metrics
        .patches
        .iter_mut()
        .filter(|p| p.class == PatchClass::Nodule)
    {
        p.overlap.dice = (p.overlap.dice + 0.1).min(1.0);
    }
    let (b_dir, c_dir) = (dir.join("baseline"), dir.join("candidate"));
    for (d, r) in [(&b_dir, &base), (&c_dir, &better)] {
        std::fs::create_dir_all(d).unwrap();
        write_json(r, &d.join("report.json")).unwrap();
    }
    // A folder or its report.json, read back as written (to the JSON's float precision).
    for (path, want) in [(b_dir.clone(), &base), (c_dir.join("report.json"), &better)] {
        let got = read_report(&path).unwrap();
        assert_eq!(got.metrics.patches.len(), want.metrics.patches.len());
        for (g, w) in got.metrics.patches.iter().zip(&want.metrics.patches) {
            assert_eq!(g.id, w.id);
            assert!((g.overlap.dice - w.overlap.dice).abs() < 1e-12);
        }
    }
    assert!(read_report(&dir).is_err(), "a folder without report.json");
    let args = |candidate: &Path, baseline: &Path| CompareArgs {
        candidate: candidate.to_path_buf(),
        baseline: baseline.to_path_buf(),
        require_gain: true,
        max_loss: None,
    };
    // A model against itself gains nothing: the rule refuses it.
    assert!(args(&b_dir, &b_dir).run().is_err());
    // No nodule patch lost Dice and every scan has one that gained, so every resample of
    // scans shows a gain: the interval lies above 0.
    let pairs = || better.metrics.patches.iter().zip(&base.metrics.patches);
    assert!(pairs().all(|(c, b)| c.overlap.dice >= b.overlap.dice));
    for scan in ["scan-0", "scan-1", "scan-2"] {
        assert!(pairs().any(|(c, b)| c.scan == scan && c.overlap.dice > b.overlap.dice));
    }
    args(&c_dir, &b_dir).run().unwrap();
    assert!(args(&b_dir, &c_dir).run().is_err());
    // The printout gives each side's ROI ECE with its by-scan interval.
    let paired = lungseg_train::metrics::paired_dice(
        &better.metrics.patches,
        &base.metrics.patches,
        &Default::default(),
    )
    .unwrap();
    let text = lungseg_train::report::compare::describe(&better, &base, &paired);
    let i = base.metrics.headline.ece_roi.expect("an ECE interval");
    let shown = format!("baseline {:.3} [{:.3}, {:.3}]", i.estimate, i.lo, i.hi);
    assert!(text.contains(&shown), "{text}");
    // The same gain with the negative's speck grown, or turned into a bad patch, is refused.
    let worse_negative = |fp: f64, bad: bool, name: &str| {
        let mut r = better.clone();
        let n = r.metrics.patches.last_mut().unwrap();
        (n.fp_volume_mm3, n.bad) = (fp, bad);
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        write_json(&r, &d.join("report.json")).unwrap();
        d
    };
    let e = args(&worse_negative(12.0, false, "blobby"), &b_dir)
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("negatives cost more"), "{e}");
    assert!(args(&worse_negative(10.0, true, "bad"), &b_dir)
        .run()
        .is_err());
    args(&worse_negative(8.0, false, "cleaner"), &b_dir)
        .run()
        .unwrap();

    // Non-inferiority: the baseline, judged against the better model, loses up to 0.1 on each
    // nodule patch, so a margin of 0.01 refuses it and 0.15 lets it pass; a model against
    // itself passes a small margin; the negatives rule holds as well.
    let no_loss = |candidate: &Path, baseline: &Path, d: f64| CompareArgs {
        candidate: candidate.to_path_buf(),
        baseline: baseline.to_path_buf(),
        require_gain: false,
        max_loss: Some(d),
    };
    let lost = pairs()
        .map(|(c, b)| c.overlap.dice - b.overlap.dice)
        .fold(0.0, f64::max);
    assert!(lost <= 0.1 + 1e-12);
    let e = no_loss(&b_dir, &c_dir, 0.01).run().unwrap_err();
    assert!(e.to_string().contains("--max-loss"), "{e}");
    no_loss(&b_dir, &c_dir, 0.15).run().unwrap();
    no_loss(&b_dir, &b_dir, 0.01).run().unwrap();
    assert!(no_loss(&worse_negative(10.0, true, "bad2"), &b_dir, 0.15)
        .run()
        .is_err());
    assert!(
        no_loss(&b_dir, &b_dir, 1.5).run().is_err(),
        "margin out of range"
    );
}

#[test]
fn negative_cost_counts_bad_patches_and_averages_the_volume_over_every_negative() {
    use lungseg_train::metrics::NegativeCost;
    let c = NegativeCost::of_patches([(0.0, false), (30.0, true), (6.0, false)]);
    assert_eq!(c.bad, 1);
    assert!((c.mean_fp_mm3 - 12.0).abs() < 1e-12, "{c:?}");
    assert_eq!(NegativeCost::of_patches([]).mean_fp_mm3, 0.0);
    // Either measure alone breaks the bound.
    let more_bad = NegativeCost { bad: 2, ..c };
    let more_fp = NegativeCost {
        mean_fp_mm3: 12.5,
        ..c
    };
    assert!(c.within(&c));
    assert!(!more_bad.within(&c) && !more_fp.within(&c));
    assert!(c.within(&more_bad) && c.within(&more_fp));
}

#[test]
fn pool_reports_keeps_each_reports_scans_apart_and_refuses_other_rules() {
    use lungseg_train::metrics::PatchClass;
    use lungseg_train::report::pool::{describe, pool};
    let one = report(metrics());
    // One report pooled alone is the report's own headline, read back from its JSON too, so
    // `evaluate` and `pool-reports` share their statistics (the ROI ECE from the patches'
    // calibration sums included).
    let dir = out_dir("pool");
    write_json(&one, &dir.join("report.json")).unwrap();
    let read = lungseg_train::report::compare::read_report(&dir).unwrap();
    let alone = pool(std::slice::from_ref(&one)).unwrap();
    assert_eq!(alone.headline, one.metrics.headline);
    assert_eq!(alone.review_scores, one.metrics.review_scores);
    // Read back, to the JSON's float precision.
    let (h, r) = (&one.metrics.headline, pool(&[read]).unwrap().headline);
    for (want, got) in [(h.dice_nodules, r.dice_nodules), (h.ece_roi, r.ece_roi)] {
        let (want, got) = (want.unwrap(), got.unwrap());
        assert!(
            (want.estimate - got.estimate).abs() < 1e-9,
            "{want:?} {got:?}"
        );
        assert!((want.lo - got.lo).abs() < 1e-9 && (want.hi - got.hi).abs() < 1e-9);
    }
    // Without the sums (reports written before them) the pooled ECE is unknown.
    let mut bare = one.clone();
    for p in &mut bare.metrics.patches {
        p.calibration_roi = None;
    }
    assert_eq!(
        pool(std::slice::from_ref(&bare)).unwrap().headline.ece_roi,
        None
    );

    // A second set whose scans carry the same names but other Dice: twice the scans to
    // resample, and the mean over every nodule patch of both.
    let mut other = one.clone();
    for p in &mut other.metrics.patches {
        p.overlap.dice *= 0.5;
    }
    let both = pool(&[one.clone(), other.clone()]).unwrap();
    let dice: Vec<f64> = [&one, &other]
        .iter()
        .flat_map(|r| &r.metrics.patches)
        .filter(|p| p.class == PatchClass::Nodule)
        .map(|p| p.overlap.dice)
        .collect();
    let d = both.headline.dice_nodules.unwrap();
    assert!((d.estimate - dice.iter().sum::<f64>() / dice.len() as f64).abs() < 1e-12);
    let single = one.metrics.headline.dice_nodules.unwrap();
    assert_eq!(d.groups, 2 * single.groups);
    assert_eq!(both.headline.n_nodule_patches, dice.len());
    // The pooled ROI ECE is that of every patch's sums merged.
    let mut merged = lungseg_train::metrics::CalibrationAccumulator::new(15).unwrap();
    for p in one.metrics.patches.iter().chain(&other.metrics.patches) {
        merged.merge(p.calibration_roi.as_ref().unwrap()).unwrap();
    }
    let e = both.headline.ece_roi.unwrap().estimate;
    assert!((e - merged.ece().unwrap()).abs() < 1e-12, "{e}");
    let text = describe(&both);
    assert!(text.starts_with("2 reports, 6 scans"), "{text}");
    let i = one.metrics.headline.ece_roi.unwrap();
    let ece = format!(
        "ECE (ROI) synthetic spheres: {:.3} [{:.3}, {:.3}]",
        i.estimate, i.lo, i.hi
    );
    assert_eq!(text.matches(&ece).count(), 2, "{text}");

    // Flags and bad patches must mean the same in every report.
    let mut stricter = one.clone();
    stricter.review_threshold = 0.1;
    let e = pool(&[one.clone(), stricter]).unwrap_err();
    assert!(e.to_string().contains("different review rules"), "{e}");
    let mut redefined = one.clone();
    redefined.metrics.config.bad_dice = 0.3;
    assert!(pool(&[one.clone(), redefined]).is_err());
    let mut wider_roi = one.clone();
    wider_roi.metrics.config.roi_dilation += 1;
    let e = pool(&[one, wider_roi]).unwrap_err();
    assert!(
        e.to_string()
            .contains("define their statistics differently"),
        "{e}"
    );
}
