//! `compare-reports`: a candidate model against a baseline from two evaluation reports of the
//! same patches (paired Dice difference with its by-scan interval, bad negatives, mean
//! false-positive volume on negatives, ROI ECE). `--require-gain` turns it into the rule a
//! candidate must pass before it replaces the shipped model: the interval of the paired gain
//! must lie above 0, with no more bad negative patches and no larger mean false-positive
//! volume over the negatives than the baseline. `--max-loss D` is the non-inferiority form
//! for scans a candidate is not meant to improve: the interval must lie above −D, the
//! negatives the same.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Report;
use crate::metrics::{
    paired_dice, BootstrapConfig, NegativeCost, PairedDice, PatchClass, PatchRecord,
};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The candidate's report.json (or the folder holding it).
    #[arg(long)]
    pub candidate: PathBuf,
    /// The baseline's report.json (or folder), evaluated on the same patches.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Fail (exit status 1) unless the paired gain's interval lies above 0 and the negatives
    /// cost no more (bad patches, mean false-positive volume).
    #[arg(long)]
    pub require_gain: bool,
    /// Fail (exit status 1) unless the paired difference's interval lies above −D (mean Dice
    /// lost at most D) and the negatives cost no more.
    #[arg(long, value_name = "D", conflicts_with = "require_gain")]
    pub max_loss: Option<f64>,
}

/// Reads a report written by `evaluate`.
pub fn read_report(path: &Path) -> Result<Report> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a report", file.display()))
}

impl CompareArgs {
    pub fn run(&self) -> Result<()> {
        let (c, b) = (read_report(&self.candidate)?, read_report(&self.baseline)?);
        let paired = paired_dice(
            &c.metrics.patches,
            &b.metrics.patches,
            &BootstrapConfig::default(),
        )?;
        println!("{}", describe(&c, &b, &paired));
        let floor = match (self.require_gain, self.max_loss) {
            (true, _) => 0.0,
            (false, Some(d)) if d.is_finite() && (0.0..1.0).contains(&d) => -d,
            (false, Some(d)) => bail!("--max-loss {d}: expected a Dice difference in [0, 1)"),
            (false, None) => return Ok(()),
        };
        if paired.difference.lo <= floor {
            bail!(
                "the interval of the paired difference reaches down to {:+.3}, not above {floor:+.3} \
                 ({})",
                paired.difference.lo,
                if self.require_gain { "no paired gain" } else { "more than --max-loss lost" }
            );
        }
        let (nc, nb) = (negative_cost(&c), negative_cost(&b));
        if !nc.within(&nb) {
            bail!(
                "the negatives cost more: {} bad patches and {:.1} mm³ of false positives on \
                 average, against {} and {:.1}",
                nc.bad,
                nc.mean_fp_mm3,
                nb.bad,
                nb.mean_fp_mm3
            );
        }
        Ok(())
    }
}

/// The cost of a report's negative patches.
pub fn negative_cost(r: &Report) -> NegativeCost {
    NegativeCost::of_patches(negatives(r).map(|p| (p.fp_volume_mm3, p.bad)))
}

fn negatives(r: &Report) -> impl Iterator<Item = &PatchRecord> {
    r.metrics
        .patches
        .iter()
        .filter(|p| p.class == PatchClass::Negative)
}

/// The comparison as the lines `compare-reports` prints.
pub fn describe(c: &Report, b: &Report, p: &PairedDice) -> String {
    let d = &p.difference;
    let (nc, nb) = (negative_cost(c), negative_cost(b));
    // With its by-scan interval where the report has one (the two sets of scans are the
    // same, but the intervals are not paired: they show how much one set can tell).
    let ece = |r: &Report| match (r.metrics.headline.ece_roi, r.metrics.calibration_roi.ece) {
        (Some(i), _) => format!("{:.3} [{:.3}, {:.3}]", i.estimate, i.lo, i.hi),
        (None, Some(e)) => format!("{e:.3}"),
        (None, None) => "n/a".into(),
    };
    format!(
        "nodule patches: {}; mean Dice candidate {:.3}, baseline {:.3}\n\
         paired difference (candidate - baseline): {:+.3} [{:+.3}, {:+.3}] ({:.0} %, {} resamples of {} scans)\n\
         bad negative patches (of {}): candidate {}, baseline {}\n\
         mean false-positive volume on negatives: candidate {:.1} mm³, baseline {:.1} mm³\n\
         ECE (ROI): candidate {}, baseline {}",
        p.nodule_patches,
        p.candidate,
        p.baseline,
        d.estimate,
        d.lo,
        d.hi,
        d.level * 100.0,
        d.resamples,
        d.groups,
        negatives(c).count(),
        nc.bad,
        nb.bad,
        nc.mean_fp_mm3,
        nb.mean_fp_mm3,
        ece(c),
        ece(b),
    )
}
