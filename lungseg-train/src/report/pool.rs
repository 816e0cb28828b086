//! `pool-reports`: one model's evaluation reports on several independent sets of scans (fresh
//! seeds), pooled into one headline. Each report's scans stay distinct (a scan id is
//! qualified by its report), so the by-scan intervals resample every scan of every set. The
//! reports must share the review rule and the metrics' definitions. The ROI ECE pools from
//! the patches' calibration sums where every report keeps them (reports written before
//! `PatchRecord::calibration_roi` do not: then only each report's own is listed).

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::compare::read_report;
use super::Report;
use crate::metrics::{
    records_headline, records_review_scores, EvalConfig, Headline, Interval, PatchRecord,
    ScoreEvaluation,
};

#[derive(clap::Args)]
pub struct PoolArgs {
    /// Two or more report.json files (or the folders holding them) of one model on
    /// different scans.
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,
}

/// The pooled statistics of several reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooled {
    pub headline: Headline,
    pub review_scores: Vec<ScoreEvaluation>,
    /// Per report: its dataset line, scored model and ROI ECE interval (as it reported them).
    pub parts: Vec<PoolPart>,
}

/// What one pooled report contributes besides its patches.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolPart {
    pub dataset: String,
    pub scored_model: Option<String>,
    pub ece_roi: Option<Interval>,
}

impl PoolArgs {
    pub fn run(&self) -> Result<()> {
        let reports = self
            .reports
            .iter()
            .map(|p| read_report(p))
            .collect::<Result<Vec<_>>>()?;
        println!("{}", describe(&pool(&reports)?));
        Ok(())
    }
}

/// The patches of every report as one evaluation (scan ids qualified by report index).
pub fn pool(reports: &[Report]) -> Result<Pooled> {
    let Some(first) = reports.first() else {
        bail!("no report to pool");
    };
    for r in &reports[1..] {
        check_same_rules(first, r)?;
    }
    let patches: Vec<PatchRecord> = reports
        .iter()
        .enumerate()
        .flat_map(|(k, r)| {
            r.metrics.patches.iter().map(move |p| PatchRecord {
                scan: format!("{k}:{}", p.scan),
                ..p.clone()
            })
        })
        .collect();
    let stats = first.metrics.config.record_stats();
    Ok(Pooled {
        headline: records_headline(&patches, &stats)?,
        review_scores: records_review_scores(&patches, &stats)?,
        parts: reports
            .iter()
            .map(|r| PoolPart {
                dataset: r.dataset.clone(),
                scored_model: r.evaluation.scored_model.clone(),
                ece_roi: r.metrics.headline.ece_roi,
            })
            .collect(),
    })
}

/// Pooling mixes flags and bad patches: both must mean the same in every report.
fn check_same_rules(a: &Report, b: &Report) -> Result<()> {
    if (&a.review_score, a.review_threshold) != (&b.review_score, b.review_threshold) {
        bail!(
            "different review rules: {} > {} against {} > {}",
            a.review_score,
            a.review_threshold,
            b.review_score,
            b.review_threshold
        );
    }
    let (ca, cb) = (&a.metrics.config, &b.metrics.config);
    let key = |c: &EvalConfig| {
        (
            c.bootstrap,
            c.min_diameter_mm,
            c.refer_budget,
            (c.bad_dice, c.bad_fp_mm3),
            (c.roi_dilation, c.calibration_bins),
        )
    };
    if key(ca) != key(cb) {
        bail!(
            "the reports define their statistics differently (bootstrap, budget, bad patch, \
             ROI or calibration bins)"
        );
    }
    Ok(())
}

/// `estimate [lo, hi]` with `digits` decimals, the interval multiplied by `scale`.
fn interval(i: Option<Interval>, scale: f64, digits: usize) -> String {
    match i {
        Some(i) => format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            i.estimate * scale,
            i.lo * scale,
            i.hi * scale,
            d = digits
        ),
        None => "n/a".into(),
    }
}

fn value(i: Option<Interval>) -> String {
    interval(i, 1.0, 3)
}

fn percent(i: Option<Interval>) -> String {
    interval(i, 100.0, 1)
}

/// The lines `pool-reports` prints.
pub fn describe(p: &Pooled) -> String {
    let h = &p.headline;
    let scans = |i: Option<Interval>| i.map_or(0, |i| i.groups);
    let mut s = format!(
        "{} reports, {} scans\n\
         mean Dice, {} nodule patches: {}\n\
         mean Dice, {} nodule patches >= {} mm: {}\n",
        p.parts.len(),
        scans(h.dice_nodules),
        h.n_nodule_patches,
        value(h.dice_nodules),
        h.n_sized_patches,
        h.min_diameter_mm,
        value(h.dice_nodules_sized),
    );
    for row in &h.dice_by_size {
        let hi = row.hi_mm.map_or("".into(), |h| format!("{h}"));
        s += &format!(
            "  {}-{} mm ({} patches): {}\n",
            row.lo_mm,
            hi,
            row.patches,
            value(row.dice)
        );
    }
    s += &format!(
        "mean false-positive volume on {} negatives, mm3: {}\n\
         bad patches: {}; flagged: {} %; patches referred: {} %\n",
        h.n_negative_patches,
        interval(h.fp_volume_negatives_mm3, 1.0, 1),
        h.n_bad,
        percent(h.flag_catch_rate),
        percent(h.flag_referred_fraction),
    );
    for e in &p.review_scores {
        s += &format!(
            "caught at {:.0} % referral by {}: {} % (AUROC {})\n",
            e.budget * 100.0,
            e.name,
            percent(e.catch_rate),
            e.auroc.map_or("n/a".into(), |a| format!("{a:.3}")),
        );
    }
    s += &format!(
        "ECE (ROI), pooled: {}; of the MC mean: {}\n",
        value(h.ece_roi),
        value(h.ece_roi_mean)
    );
    for part in &p.parts {
        s += &format!(
            "ECE (ROI) {}: {} (model {})\n",
            part.dataset,
            value(part.ece_roi),
            part.scored_model.as_deref().unwrap_or("unknown"),
        );
    }
    s.trim_end().to_string()
}
