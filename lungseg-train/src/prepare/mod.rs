//! `prepare`: a LUNA16 folder → the patch dataset of `docs/dataset-format.md`.
//!
//! Scans are processed one at a time (read, cut every patch, write, drop), so memory is one
//! scan plus its patches whatever the dataset size. A scan that cannot be read or cut is
//! reported and skipped; bad CSV input stops the run before any scan is read, with the file,
//! line and column in the message. Everything random is seeded per scan from
//! `(seed, seriesuid)`, so a scan's patches do not depend on which other scans exist.
//! With `lidc_xml`, nodule labels are the LIDC-IDRI radiologists' consensus outlines ([`lidc`]);
//! with `label_masks`, the shapes of label volumes on the scans' grids ([`masks`], e.g. the
//! painted lesions of synthetic scans).

mod config;
pub mod lidc;
pub mod luna;
pub mod masks;
pub mod mine;
pub mod sampling;
mod scan;
pub mod split;
mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use crate::dataset::DatasetWriter;
use luna::{Annotation, Candidate, ScanFile};
use scan::{cut_scan, Cut, LabelSource, ScanJob};

pub use config::{PrepareConfig, SmallNodulePositives};
pub use split::SplitRule;
pub use summary::{Event, LidcSummary, PrepareSummary, SkippedScan, SplitCounts};

/// File name of the run report written next to the manifest.
pub const REPORT: &str = "prepare_report.json";

/// Runs `prepare` from the LUNA16 folder `input` into the dataset folder `output`.
pub fn prepare(
    input: &Path,
    output: &Path,
    cfg: &PrepareConfig,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<PrepareSummary> {
    let t0 = Instant::now();
    cfg.validate()?;
    let inputs = Inputs::read(input)?;
    let mut run = Run {
        summary: PrepareSummary::start(cfg, input, output, &inputs),
        on_event: &mut on_event,
    };
    if inputs.candidates_file.is_none() {
        run.warn(format!(
            "{}: no candidates_V2.csv or candidates.csv; all negatives are random lung points",
            input.display()
        ));
    }
    let by_uid = ByScan::of(&inputs);
    run.note_unknown_annotations(&by_uid.annotations, &inputs.scans);

    let assigned = assign_scans(&inputs.scans, cfg)?;
    run.summary.scans_left_out = inputs.scans.len() - assigned.len();
    let quota = NegativeQuota::new(&assigned, &by_uid.annotations, cfg);
    let folder = run.read_lidc(cfg, &assigned)?;

    let mut writer = DatasetWriter::create(output)?;
    (run.on_event)(Event::Start {
        scans: assigned.len(),
    });
    let spec = cfg.spec();
    for (i, &(scan, split)) in assigned.iter().enumerate() {
        let uid = scan.seriesuid.as_str();
        let job = ScanJob {
            scan,
            ann: by_uid.annotations.get(uid).map_or(&[], Vec::as_slice),
            cand: by_uid.candidates.get(uid).map_or(&[], Vec::as_slice),
            excluded: by_uid.excluded.get(uid).map_or(&[], Vec::as_slice),
            lidc: folder
                .as_ref()
                .and_then(|f| f.series.get(uid))
                .map(|(_, file)| file),
            n_neg: quota.of(i),
        };
        match cut_scan(&job, cfg, &spec) {
            Ok((cut, labels)) => run.add_scan(&job, split, cut, labels, &mut writer)?,
            Err(e) => run.skip_scan(scan, e),
        }
        (run.on_event)(Event::ScanDone { seriesuid: uid });
    }
    writer.finish()?;
    let mut summary = run.summary;
    summary.seconds = t0.elapsed().as_secs_f64();
    let report = output.join(REPORT);
    std::fs::write(&report, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", report.display()))?;
    Ok(summary)
}

/// The LUNA16 folder's CSV files and scans, read before any scan is cut.
struct Inputs {
    annotations: Vec<Annotation>,
    candidates_file: Option<PathBuf>,
    candidates: Vec<Candidate>,
    excluded_file: Option<PathBuf>,
    excluded: Vec<Annotation>,
    scans: Vec<ScanFile>,
}

impl Inputs {
    fn read(input: &Path) -> Result<Inputs> {
        let annotations = luna::read_annotations(&input.join("annotations.csv"))?;
        let candidates_file = luna::find_candidates(input);
        let candidates = match &candidates_file {
            Some(p) => luna::read_candidates(p)?,
            None => Vec::new(),
        };
        let excluded_file = luna::find_excluded(input);
        let excluded = match &excluded_file {
            Some(p) => luna::read_excluded(p)?,
            None => Vec::new(),
        };
        let scans = luna::find_scans(input)?;
        ensure!(
            !scans.is_empty(),
            "no scans: {} has no subset*/<seriesuid>.mhd",
            input.display()
        );
        Ok(Inputs {
            annotations,
            candidates_file,
            candidates,
            excluded_file,
            excluded,
            scans,
        })
    }
}

/// The CSV rows of each seriesuid.
struct ByScan<'a> {
    annotations: HashMap<&'a str, Vec<&'a Annotation>>,
    candidates: HashMap<&'a str, Vec<&'a Candidate>>,
    excluded: HashMap<&'a str, Vec<&'a Annotation>>,
}

impl<'a> ByScan<'a> {
    fn of(inputs: &'a Inputs) -> Self {
        ByScan {
            annotations: group(&inputs.annotations, |a| &a.seriesuid),
            candidates: group(&inputs.candidates, |c| &c.seriesuid),
            excluded: group(&inputs.excluded, |c| &c.seriesuid),
        }
    }
}

fn group<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> HashMap<&'a str, Vec<&'a T>> {
    let mut m: HashMap<&str, Vec<&T>> = HashMap::new();
    for it in items {
        m.entry(key(it)).or_default().push(it);
    }
    m
}

/// The scans of the run, each with its split: the split rule's choice, then `max_scans`.
fn assign_scans<'a>(
    scans: &'a [ScanFile],
    cfg: &PrepareConfig,
) -> Result<Vec<(&'a ScanFile, &'static str)>> {
    let assigned: Vec<_> = scans
        .iter()
        .zip(cfg.split.assign(scans, cfg.seed))
        .filter_map(|(s, k)| k.map(|k| (s, k)))
        .take(cfg.max_scans.unwrap_or(usize::MAX))
        .collect();
    ensure!(
        !assigned.is_empty(),
        "none of the {} scans is in a split (check --split-by-subset folds against the subset* folders)",
        scans.len()
    );
    Ok(assigned)
}

/// Negatives per scan: `neg_ratio` times the run's positives, spread evenly over the scans,
/// so nodule-free scans contribute negatives too.
struct NegativeQuota {
    total: usize,
    scans: usize,
}

impl NegativeQuota {
    fn new(
        assigned: &[(&ScanFile, &str)],
        annotations: &HashMap<&str, Vec<&Annotation>>,
        cfg: &PrepareConfig,
    ) -> Self {
        let positives: usize = assigned
            .iter()
            .flat_map(|(s, _)| annotations.get(s.seriesuid.as_str()).into_iter().flatten())
            .map(|a| cfg.positives_for(a.diameter_mm))
            .sum();
        NegativeQuota {
            total: (positives as f64 * cfg.neg_ratio).round() as usize,
            scans: assigned.len(),
        }
    }

    /// The `i`-th scan's share.
    fn of(&self, i: usize) -> usize {
        self.total * (i + 1) / self.scans - self.total * i / self.scans
    }
}

/// The summary being filled, and where its events go.
struct Run<'e> {
    summary: PrepareSummary,
    on_event: &'e mut dyn FnMut(Event<'_>),
}

impl Run<'_> {
    /// Tells the user and keeps the message in the report.
    fn warn(&mut self, msg: String) {
        (self.on_event)(Event::Warning(&msg));
        self.summary.warnings.push(msg);
    }

    fn note_unknown_annotations(
        &mut self,
        by_uid: &HashMap<&str, Vec<&Annotation>>,
        scans: &[ScanFile],
    ) {
        let known: HashMap<&str, ()> = scans.iter().map(|s| (s.seriesuid.as_str(), ())).collect();
        for (uid, list) in by_uid {
            if !known.contains_key(uid) {
                self.summary.unknown_annotations += list.len();
                self.summary.unknown_seriesuids.push(uid.to_string());
            }
        }
        if self.summary.unknown_annotations > 0 {
            let first = by_uid[self.summary.unknown_seriesuids[0].as_str()][0];
            self.warn(format!(
                "annotations.csv: {} annotation(s) name {} seriesuid(s) with no scan under subset*/ \
                 (first: {} on line {}); they are ignored",
                self.summary.unknown_annotations,
                self.summary.unknown_seriesuids.len(),
                first.seriesuid,
                first.line
            ));
        }
    }

    /// Reads `--lidc-xml` for the run's scans (none without it).
    fn read_lidc(
        &mut self,
        cfg: &PrepareConfig,
        assigned: &[(&ScanFile, &str)],
    ) -> Result<Option<lidc::LidcFolder>> {
        let Some(dir) = &cfg.lidc_xml else {
            return Ok(None);
        };
        let wanted: HashMap<&str, ()> = assigned
            .iter()
            .map(|(s, _)| (s.seriesuid.as_str(), ()))
            .collect();
        let f = lidc::read_folder(dir, |uid| wanted.contains_key(uid), &Default::default())?;
        for b in f.bad.iter().chain(&f.duplicates) {
            self.warn(format!("--lidc-xml: {}: {}", b.path.display(), b.reason));
        }
        self.summary.lidc = Some(LidcSummary {
            xml_dir: dir.clone(),
            xml_files: f.xml_files,
            not_ct_files: f.not_ct,
            other_series_files: f.other_series,
            bad_files: f.bad.clone(),
            duplicate_files: f.duplicates.clone(),
            ..Default::default()
        });
        Ok(Some(f))
    }

    /// Writes a scan's patches into `split` and counts them.
    fn add_scan(
        &mut self,
        job: &ScanJob<'_>,
        split: &str,
        cut: Vec<Cut>,
        labels: LabelSource,
        writer: &mut DatasetWriter,
    ) -> Result<()> {
        let uid = &job.scan.seriesuid;
        if let Some(l) = self.summary.lidc.as_mut() {
            l.add(&labels);
        }
        for msg in labels.warnings {
            self.warn(format!("{uid}: {msg}"));
        }
        let got = cut.iter().filter(|p| p.0.label == 0).count();
        let counts = self.summary.splits.get_mut(split).expect("known split");
        counts.scans += 1;
        for (mut rec, hu, mask) in cut {
            rec.split = split.to_string();
            if rec.label == 1 {
                counts.positives += 1;
            } else {
                counts.negatives += 1;
            }
            writer.add(rec, &hu, &mask)?;
        }
        self.summary.scans_ok += 1;
        if got < job.n_neg {
            self.summary.negative_shortfall += 1;
            self.warn(format!(
                "{uid}: only {got} of {} negatives (no lung voxels or candidates found)",
                job.n_neg
            ));
        }
        Ok(())
    }

    fn skip_scan(&mut self, scan: &ScanFile, e: anyhow::Error) {
        let reason = format!("{e:#}");
        self.warn(format!("skipping {}: {reason}", scan.path.display()));
        self.summary.scans_skipped.push(SkippedScan {
            seriesuid: scan.seriesuid.clone(),
            path: scan.path.clone(),
            reason,
        });
    }
}
