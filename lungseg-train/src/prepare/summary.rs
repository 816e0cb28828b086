//! What `prepare` reports: progress events as they happen, and the run's summary
//! (`prepare_report.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{lidc, split, PrepareConfig};

/// Progress, as it happens (the CLI turns it into a progress bar and stderr lines).
#[derive(Debug)]
pub enum Event<'a> {
    /// Scans about to be processed.
    Start { scans: usize },
    /// One scan done (written or skipped).
    ScanDone { seriesuid: &'a str },
    /// Something the user should know; also kept in the report.
    Warning(&'a str),
}

/// Patch and scan counts of one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SplitCounts {
    pub scans: usize,
    pub positives: usize,
    pub negatives: usize,
}

/// A scan that was not used, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkippedScan {
    pub seriesuid: String,
    pub path: PathBuf,
    pub reason: String,
}

/// What the LIDC reader files gave (`--lidc-xml`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LidcSummary {
    pub xml_dir: PathBuf,
    pub xml_files: usize,
    /// Chest X-ray and other non-CT files, skipped.
    pub not_ct_files: usize,
    /// CT reads of series with no scan in this run.
    pub other_series_files: usize,
    pub bad_files: Vec<lidc::BadFile>,
    pub duplicate_files: Vec<lidc::BadFile>,
    /// Scans (read without error) with / without an XML file.
    pub scans_with_xml: usize,
    pub scans_without_xml: usize,
    /// Annotations labelled by a consensus outline / by the sphere (no cluster matched).
    pub annotations_outlined: usize,
    pub annotations_sphere: usize,
    /// Clusters no annotation took: kept clear of negatives, not labelled.
    pub clusters_unmatched: usize,
    /// Nodules < 3 mm and non-nodules: kept clear of negatives.
    pub point_findings: usize,
    /// Reads that could not be placed on their scan.
    pub reads_skipped: usize,
}

/// What `prepare` did; written as `prepare_report.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrepareSummary {
    pub config: PrepareConfig,
    pub input: PathBuf,
    pub output: PathBuf,
    pub candidates_file: Option<PathBuf>,
    /// `.mhd` files found under `subset*/`.
    pub scans_found: usize,
    pub scans_ok: usize,
    /// Unreadable or damaged scans.
    pub scans_skipped: Vec<SkippedScan>,
    /// Scans in subsets no fold names (`--split-by-subset`), or beyond `max_scans`.
    pub scans_left_out: usize,
    pub annotations: usize,
    /// Annotations whose seriesuid has no scan under `subset*/`.
    pub unknown_annotations: usize,
    pub unknown_seriesuids: Vec<String>,
    /// Scans that got fewer negatives than asked (no lung or candidates found).
    pub negative_shortfall: usize,
    /// LUNA16's `annotations_excluded.csv`, when found: points kept clear of negatives.
    pub excluded_file: Option<PathBuf>,
    pub excluded: usize,
    /// What `--lidc-xml` gave.
    pub lidc: Option<LidcSummary>,
    pub splits: BTreeMap<String, SplitCounts>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl PrepareSummary {
    /// The summary before any scan is read.
    pub(super) fn start(
        cfg: &PrepareConfig,
        input: &Path,
        output: &Path,
        inputs: &super::Inputs,
    ) -> Self {
        PrepareSummary {
            config: cfg.clone(),
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            candidates_file: inputs.candidates_file.clone(),
            scans_found: inputs.scans.len(),
            scans_ok: 0,
            scans_skipped: Vec::new(),
            scans_left_out: 0,
            annotations: inputs.annotations.len(),
            unknown_annotations: 0,
            unknown_seriesuids: Vec::new(),
            negative_shortfall: 0,
            excluded_file: inputs.excluded_file.clone(),
            excluded: inputs.excluded.len(),
            lidc: None,
            splits: split::SPLITS
                .iter()
                .map(|s| (s.to_string(), SplitCounts::default()))
                .collect(),
            warnings: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn positives(&self) -> usize {
        self.splits.values().map(|s| s.positives).sum()
    }
    pub fn negatives(&self) -> usize {
        self.splits.values().map(|s| s.negatives).sum()
    }
    /// Scans per second over the scans that were read (ok or damaged).
    pub fn scans_per_second(&self) -> f64 {
        (self.scans_ok + self.scans_skipped.len()) as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for PrepareSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scans: {} found, {} ok, {} skipped (damaged), {} left out",
            self.scans_found,
            self.scans_ok,
            self.scans_skipped.len(),
            self.scans_left_out
        )?;
        for (name, c) in &self.splits {
            writeln!(
                f,
                "  {name:5}: {} scans, {} patches ({} positive, {} negative)",
                c.scans,
                c.positives + c.negatives,
                c.positives,
                c.negatives
            )?;
        }
        writeln!(
            f,
            "patches: {} positive, {} negative; annotations: {} ({} with unknown seriesuid)",
            self.positives(),
            self.negatives(),
            self.annotations,
            self.unknown_annotations
        )?;
        if let Some(p) = &self.excluded_file {
            writeln!(
                f,
                "excluded findings: {} from {} (kept clear of negatives)",
                self.excluded,
                p.display()
            )?;
        }
        if let Some(l) = &self.lidc {
            writeln!(
                f,
                "LIDC: {} xml files ({} bad, {} not CT, {} other series); scans with xml {}, without {}",
                l.xml_files,
                l.bad_files.len(),
                l.not_ct_files,
                l.other_series_files,
                l.scans_with_xml,
                l.scans_without_xml
            )?;
            writeln!(
                f,
                "  labels: {} consensus outlines, {} spheres; {} clusters unmatched and {} point findings kept clear; {} reads skipped",
                l.annotations_outlined,
                l.annotations_sphere,
                l.clusters_unmatched,
                l.point_findings,
                l.reads_skipped
            )?;
        }
        write!(
            f,
            "{:.1} s, {:.2} scans/s; dataset in {}",
            self.seconds,
            self.scans_per_second(),
            self.output.display()
        )
    }
}
