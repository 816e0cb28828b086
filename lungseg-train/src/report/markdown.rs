//! `report.md`: the numbers with the exact definition of each, for a reader who was not
//! in the room when the metrics were chosen.

use std::fmt::Write as _;
use std::path::Path;

use super::Report;
use crate::metrics::bootstrap::Interval;
use crate::metrics::overlap::MeanOverlap;
use crate::metrics::uncertainty::UncertaintySummary;
use crate::metrics::{bad_kinds, PatchRecord};

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.4}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{:.1} %", 100.0 * x))
}

fn mean_cols(m: &MeanOverlap) -> [String; 4] {
    [f(m.dice), f(m.iou), f(m.sensitivity), f(m.precision)]
}

fn uncertainty_rows(out: &mut String, region: &str, list: &[UncertaintySummary]) {
    for u in list {
        let auroc = u.auroc.map_or_else(
            || "n/a".into(),
            |a| {
                if a.max_abs_error > 0.0 {
                    format!("{:.4} (± {:.1e})", a.value, a.max_abs_error)
                } else {
                    format!("{:.4}", a.value)
                }
            },
        );
        let ueo = match (u.ueo_max, u.ueo_threshold) {
            (Some(v), Some(t)) => format!("{v:.4} at u ≥ {t:.4}"),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "| {region} | {} | {} | {} | {} | {} | {auroc} | {ueo} |",
            u.measure.label(),
            f(u.mean_correct),
            f(u.mean_incorrect),
            u.ratio.map_or_else(|| "n/a".into(), |r| format!("{r:.2}×")),
            u.n_incorrect,
        );
    }
}

/// The Markdown report.
pub fn render_markdown(r: &Report) -> String {
    let mut s = String::new();
    for section in [
        header_section,
        quality_section,
        headline_section,
        review_scores_section,
        overlap_section,
        calibration_section,
        uncertainty_section,
        referral_section,
        review_flag_section,
        worst_patches_section,
        figures_and_notes_section,
    ] {
        section(&mut s, r);
    }
    s
}

/// Title, model, data and the rules the report applies.
fn header_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let c = &r.metrics.config;
    let _ = writeln!(s, "# {}\n", r.title);
    let _ = writeln!(s, "- Model: {}", r.model);
    let _ = writeln!(s, "- Data: {} ({} patches)", r.dataset, m.n_patches);
    let _ = writeln!(s, "- MC-dropout samples per patch: {}", r.mc_samples);
    let _ = writeln!(
        s,
        "- Review rule: a patch is flagged when `{} > {}`",
        r.review_score, r.review_threshold
    );
    let point = c.point_rule();
    if point.is_active(c.fg_threshold) {
        let _ = writeln!(
            s,
            "- The lesion at the requested point is cut lower: the 26-connected components of \
             p ≥ {} that come closer than {} mm to the patch centre are predicted nodule too \
             (then the component rule below applies).",
            point.threshold, point.radius_mm
        );
    }
    let small = c.small_components().canonical();
    let _ = if small.spare_radius_mm > 0.0 {
        writeln!(
            s,
            "- A voxel is predicted nodule when its mean probability p ≥ {} and its \
             26-connected component holds at least {} mm³ or comes closer than {} mm to the \
             patch centre.\n",
            c.fg_threshold, small.min_mm3, small.spare_radius_mm
        )
    } else if small.min_mm3 > 0.0 {
        writeln!(
            s,
            "- A voxel is predicted nodule when its mean probability p ≥ {} and its \
             26-connected component holds at least {} mm³.\n",
            c.fg_threshold, small.min_mm3
        )
    } else {
        writeln!(
            s,
            "- A voxel is predicted nodule when its mean probability p ≥ {}.\n",
            c.fg_threshold
        )
    };
}

/// The quality bar, check by check.
fn quality_section(s: &mut String, r: &Report) {
    s.push_str("## Quality bar\n\n| check | target | value | result |\n|---|---|---|---|\n");
    for q in r.quality_checks() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            q.name,
            q.target,
            f(q.value),
            if q.passed { "pass" } else { "**not met**" }
        );
    }
}

/// Dice, IoU, sensitivity and precision, pooled and per patch.
fn overlap_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let o = &m.overlap;
    s.push_str("\n## Segmentation overlap\n\n");
    s.push_str(
        "Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), sensitivity = TP/(TP+FN), precision = TP/(TP+FP), \
         counted over voxels. *Pooled* sums the counts of all patches first; *mean* averages per-patch values. \
         A patch with empty ground truth and empty prediction has Dice = IoU = 1; with exactly one of them \
         empty, 0. Sensitivity is undefined without ground-truth nodule and precision without predicted \
         nodule: such patches are left out of those means.\n\n",
    );
    s.push_str("| | Dice | IoU | sensitivity | precision | patches |\n|---|---|---|---|---|---|\n");
    let p = o.pooled;
    let _ = writeln!(
        s,
        "| pooled | {:.4} | {:.4} | {} | {} | {} |",
        p.dice,
        p.iou,
        f(p.sensitivity),
        f(p.precision),
        m.n_patches
    );
    for (name, mo) in [
        ("mean, nodule patches", &o.mean_positive),
        ("mean, all patches", &o.mean_all),
    ] {
        let [d, j, se, pr] = mean_cols(mo);
        let _ = writeln!(
            s,
            "| {name} | {d} | {j} | {se} (n={}) | {pr} (n={}) | {} |",
            mo.n_sensitivity, mo.n_precision, mo.n
        );
    }
}

/// ECE and Brier score, in the ROI and over all voxels.
fn calibration_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let c = &r.metrics.config;
    s.push_str("\n## Calibration\n\n");
    let _ = writeln!(
        s,
        "Expected calibration error of the nodule probability: voxels binned by p into {} equal-width bins \
         over [0, 1]; ECE = Σ (n_bin/N)·|fraction of nodule voxels in bin − mean p in bin|. Brier = mean (p − y)². \
         ROI = ground truth dilated by a {}-voxel cube radius ∪ predicted nodule; whole-patch values are \
         dominated by easy background.\n",
        c.calibration_bins, c.roi_dilation
    );
    let mut rows = vec![
        ("ROI", &m.calibration_roi),
        ("all voxels", &m.calibration_all),
    ];
    if let (Some(roi), Some(all)) = (&m.calibration_roi_mean, &m.calibration_all_mean) {
        s.push_str(
            "The model has a probability map (`config.probability_map`): the first two rows are \
             its calibrated probabilities, the last two the MC mean it maps.\n\n",
        );
        rows.extend([("ROI, MC mean", roi), ("all voxels, MC mean", all)]);
    }
    s.push_str("| region | ECE | Brier | voxels |\n|---|---|---|---|\n");
    for (name, cal) in rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            f(cal.ece),
            f(cal.brier),
            cal.voxels
        );
    }
}

/// How much more uncertain the error voxels are.
fn uncertainty_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let c = &r.metrics.config;
    s.push_str("\n## Uncertainty versus error\n\n");
    let _ = writeln!(
        s,
        "An error voxel is one where prediction and ground truth differ. Ratio = mean uncertainty on error \
         voxels / mean on correct voxels. AUROC = probability that a random error voxel is more uncertain than \
         a random correct voxel (ties ½), from {}-bin histograms; ± is the largest possible deviation from the \
         exact value. UEO = Dice between {{uncertainty ≥ t}} and the error mask, maximised over t (the \
         maximising t is given).\n",
        c.hist_bins
    );
    s.push_str(
        "| region | measure | mean (correct) | mean (error) | ratio | error voxels | AUROC | UEO (max) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    uncertainty_rows(s, "ROI", &m.uncertainty_roi);
    uncertainty_rows(s, "all voxels", &m.uncertainty_all);
}

/// The referral curve: retained mean Dice by fraction referred.
fn referral_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    s.push_str("\n## Referral\n\n");
    if let Some(rc) = &m.referral {
        s.push_str(
            "Patches are referred most uncertain first (equal scores together); the curve gives the mean \
             Dice of the retained patches. AUC = area under it over the referred fraction [0, (n−1)/n], divided \
             by the interval width (an average retained Dice). Random referral keeps the overall mean Dice; \
             the oracle refers the worst patches first.\n\n",
        );
        let _ = writeln!(
            s,
            "| | area |\n|---|---|\n| model | {:.4} |\n| random | {:.4} |\n| oracle | {:.4} |\n",
            rc.auc, rc.auc_random, rc.auc_oracle
        );
        s.push_str(
            "| referred (at most) | retained patches | retained mean Dice |\n|---|---|---|\n",
        );
        for target in [0.0, 0.05, 0.1, 0.2, 0.3, 0.5] {
            if let Some(pt) = rc
                .points
                .iter()
                .rev()
                .find(|p| p.fraction_referred <= target + 1e-12)
            {
                let _ = writeln!(
                    s,
                    "| {:.0} % (actual {}) | {} | {:.4} |",
                    100.0 * target,
                    pct(Some(pt.fraction_referred)),
                    pt.n_retained,
                    pt.retained_dice
                );
            }
        }
    } else {
        s.push_str("No patches.\n");
    }
}

/// The needs-review flag against the bad patches.
fn review_flag_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let c = &r.metrics.config;
    let rv = &m.review;
    let _ = writeln!(
        s,
        "\n## Needs-review flag against bad segmentations\n\nA patch is bad when it is cut around a nodule \
         segmented with Dice < {}, or holds no nodule but a false positive above {:.1} mm³ (a patch cut \
         elsewhere that holds part of a nodule is neither: that nodule is judged on its own patch). {} of patches were flagged.\n\n| | bad | good |\n|---|---|---|\n| flagged | {} | {} |\n| not flagged | {} | {} |\n\n\
         Sensitivity (bad patches flagged) {}, specificity {}, PPV {}, NPV {}.",
        c.bad_dice,
        c.bad_fp_mm3,
        pct(Some(rv.referred_fraction)),
        rv.tp,
        rv.fp,
        rv.fn_,
        rv.tn,
        pct(rv.sensitivity),
        pct(rv.specificity),
        pct(rv.ppv),
        pct(rv.npv)
    );
    bad_kinds_table(s, &m.patches);
}

/// The bad patches by kind: a nodule with nothing segmented leaves a mask score nothing to read.
fn bad_kinds_table(s: &mut String, patches: &[PatchRecord]) {
    s.push_str(
        "\nThe bad patches by kind (a nodule with nothing segmented has no mask for a review score \
         to read: to a mask score it looks like a correct empty negative):\n\n\
         | kind | bad | flagged | not flagged |\n|---|---|---|---|\n",
    );
    for row in bad_kinds(patches) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            row.kind.label(),
            row.flagged + row.not_flagged,
            row.flagged,
            row.not_flagged
        );
    }
}

/// The ten patches with the lowest Dice.
fn worst_patches_section(s: &mut String, r: &Report) {
    let m = &r.metrics;
    let mut worst: Vec<_> = m.patches.iter().collect();
    worst.sort_by(|a, b| a.overlap.dice.total_cmp(&b.overlap.dice));
    if !worst.is_empty() {
        s.push_str("\n## Worst patches\n\n| patch | Dice | IoU | GT voxels | predicted voxels | score | flagged |\n|---|---|---|---|---|---|---|\n");
        for p in worst.iter().take(10) {
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.4} | {} | {} | {:.4} | {} |",
                p.id,
                p.overlap.dice,
                p.overlap.iou,
                p.confusion.gt_voxels(),
                p.confusion.pred_voxels(),
                p.score,
                if p.needs_review { "yes" } else { "no" }
            );
        }
    }
}

/// Figure links and notes.
fn figures_and_notes_section(s: &mut String, r: &Report) {
    if !r.figures.is_empty() {
        s.push_str("\n## Figures\n\n");
        for fig in &r.figures {
            let _ = writeln!(s, "### {}\n\n![{}]({})\n", fig.title, fig.title, fig.path);
        }
    }
    if !r.notes.is_empty() {
        s.push_str("\n## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
}

/// `estimate [lo, hi]`, or n/a.
fn ci(v: Option<Interval>, scale: f64, digits: usize) -> String {
    v.map_or_else(
        || "n/a".into(),
        |i| {
            format!(
                "{:.d$} [{:.d$}, {:.d$}]",
                i.estimate * scale,
                i.lo * scale,
                i.hi * scale,
                d = digits
            )
        },
    )
}

fn headline_section(s: &mut String, r: &Report) {
    let h = &r.metrics.headline;
    let b = &r.metrics.config.bootstrap;
    let groups = [h.dice_nodules, h.fp_volume_negatives_mm3]
        .iter()
        .flatten()
        .map(|i| i.groups)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "\n## Headline\n\nPoint estimates on all patches with {:.0} % percentile bootstrap intervals: {} \
         resamples of the {groups} scans with replacement (patches of a scan move together).\n\n\
         | quantity | value [{:.0} % CI] | patches |\n|---|---|---|",
        b.level * 100.0,
        b.resamples,
        b.level * 100.0
    );
    let rows = [
        (
            "mean Dice, all nodule patches",
            ci(h.dice_nodules, 1.0, 3),
            h.n_nodule_patches,
        ),
        (
            "mean IoU, all nodule patches",
            ci(h.iou_nodules, 1.0, 3),
            h.n_nodule_patches,
        ),
        (
            &*format!("mean Dice, nodules ≥ {} mm", h.min_diameter_mm),
            ci(h.dice_nodules_sized, 1.0, 3),
            h.n_sized_patches,
        ),
        (
            "false-positive volume on negatives, mm³",
            ci(h.fp_volume_negatives_mm3, 1.0, 1),
            h.n_negative_patches,
        ),
        (
            "bad patches flagged for review, %",
            ci(h.flag_catch_rate, 100.0, 1),
            h.n_bad,
        ),
        (
            "patches flagged for review, %",
            ci(h.flag_referred_fraction, 100.0, 1),
            h.n_nodule_patches + h.n_negative_patches + h.n_partial_patches,
        ),
        (
            "mean Dice, patches cut elsewhere holding part of a nodule (in no row above)",
            ci(h.dice_partial, 1.0, 3),
            h.n_partial_patches,
        ),
        (
            if h.ece_roi_mean.is_some() {
                "ECE (ROI), calibrated probabilities"
            } else {
                "ECE (ROI)"
            },
            ci(h.ece_roi, 1.0, 3),
            r.metrics.n_patches,
        ),
    ];
    for (name, v, n) in rows {
        let _ = writeln!(s, "| {name} | {v} | {n} |");
    }
    if h.ece_roi_mean.is_some() {
        let _ = writeln!(
            s,
            "| ECE (ROI), MC mean | {} | {} |",
            ci(h.ece_roi_mean, 1.0, 3),
            r.metrics.n_patches
        );
    }
    if h.dice_by_size.iter().any(|r| r.patches > 0) {
        let _ = writeln!(
            s,
            "\nMean Dice of the nodule patches by the nodule's equivalent diameter (same \
             intervals):\n\n| diameter | mean Dice [{:.0} % CI] | patches |\n|---|---|---|",
            b.level * 100.0
        );
        for r in &h.dice_by_size {
            let range = match r.hi_mm {
                Some(hi) => format!("{} – {hi} mm", r.lo_mm),
                None => format!("≥ {} mm", r.lo_mm),
            };
            let _ = writeln!(s, "| {range} | {} | {} |", ci(r.dice, 1.0, 3), r.patches);
        }
    }
}

fn review_scores_section(s: &mut String, r: &Report) {
    let list = &r.metrics.review_scores;
    let Some(first) = list.first() else {
        return;
    };
    let _ = writeln!(
        s,
        "\n## Review scores as detectors of bad patches\n\nEach candidate patch score, referring the \
         top {:.0} % of patches by score. Engine scores under their model-file names (MC dropout; the \
         `*_disagreement` and `volume_cv` ones structure-wise, Roy et al. 2019); `det_*`: the deterministic \
         baseline (summaries of the dropout-off probability, under the model's test-time flips), which MC dropout must beat to be worth its \
         cost. AUROC: a bad patch scores above a good one.\n\n| score | AUROC | bad caught [CI] |\n|---|---|---|",
        first.budget * 100.0
    );
    for e in list {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            e.name,
            f(e.auroc),
            ci(e.catch_rate, 100.0, 1)
        );
    }
}

/// Writes `report.md` (or any path).
pub fn write_markdown(report: &Report, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render_markdown(report))
}
