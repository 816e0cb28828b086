//! `compare-reports`: a candidate model against a baseline from two evaluation reports of the
//! same patches (paired Dice difference with its by-scan interval, bad negatives, ROI ECE).
//! `--require-gain` turns it into the rule a candidate must pass before it replaces the
//! shipped model: the interval of the paired gain must lie above 0.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Report;
use crate::metrics::{paired_dice, BootstrapConfig, PairedDice, PatchClass};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The candidate's report.json (or the folder holding it).
    #[arg(long)]
    pub candidate: PathBuf,
    /// The baseline's report.json (or folder), evaluated on the same patches.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Fail (exit status 1) unless the paired gain's interval lies above 0.
    #[arg(long)]
    pub require_gain: bool,
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
        if self.require_gain && paired.difference.lo <= 0.0 {
            bail!("no paired gain: the interval of the difference reaches down to or below 0");
        }
        Ok(())
    }
}

/// The comparison as the lines `compare-reports` prints.
pub fn describe(c: &Report, b: &Report, p: &PairedDice) -> String {
    let d = &p.difference;
    let bad_negatives = |r: &Report| {
        r.metrics
            .patches
            .iter()
            .filter(|p| p.class == PatchClass::Negative && p.bad)
            .count()
    };
    let negatives = c
        .metrics
        .patches
        .iter()
        .filter(|p| p.class == PatchClass::Negative)
        .count();
    let ece = |r: &Report| {
        r.metrics
            .calibration_roi
            .ece
            .map_or("n/a".into(), |e| format!("{e:.3}"))
    };
    format!(
        "nodule patches: {}; mean Dice candidate {:.3}, baseline {:.3}\n\
         paired difference (candidate - baseline): {:+.3} [{:+.3}, {:+.3}] ({:.0} %, {} resamples of {} scans)\n\
         bad negative patches (of {negatives}): candidate {}, baseline {}\n\
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
        bad_negatives(c),
        bad_negatives(b),
        ece(c),
        ece(b),
    )
}
