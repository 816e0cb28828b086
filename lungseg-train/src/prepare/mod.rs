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

pub mod lidc;
pub mod luna;
pub mod masks;
pub mod mine;
pub mod sampling;
pub mod split;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use lungseg::patch::{self, PatchSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dataset::{DatasetWriter, PatchRecord};
use luna::{Annotation, Candidate, ScanFile};
use sampling::{Keepout, Outlines, Site, Source};
pub use split::SplitRule;

/// File name of the run report written next to the manifest.
pub const REPORT: &str = "prepare_report.json";

/// Everything `prepare` can be told.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrepareConfig {
    /// Patch size in voxels (x, y, z); the model's `patch_size`.
    pub patch_size: [usize; 3],
    /// Voxel spacing (mm, x y z) patches are resampled to; the model's `spacing_mm`.
    pub spacing_mm: [f64; 3],
    /// Largest random shift (mm, per axis) of a positive patch centre from its nodule.
    pub jitter_mm: f64,
    pub positives_per_nodule: usize,
    /// Negatives per positive, over the whole dataset (spread evenly over the scans, so
    /// nodule-free scans contribute negatives too).
    pub neg_ratio: f64,
    /// Share of negatives taken from class-0 candidates; the rest are random lung points.
    pub candidate_fraction: f64,
    /// Share of negatives cut on the lung's border (`sampling::border_point`: chest wall,
    /// diaphragm, mediastinum), taken before `candidate_fraction` splits the rest. 0 keeps the
    /// sampling (and so every dataset of a seed) as it is without the option.
    pub border_fraction: f64,
    #[serde(serialize_with = "ser_rule")]
    pub split: SplitRule,
    pub seed: u64,
    /// Process only the first N scans (by seriesuid), for quick runs.
    pub max_scans: Option<usize>,
    /// Folder of LIDC-IDRI reader XML files: labels from the radiologists' outlines.
    pub lidc_xml: Option<PathBuf>,
    /// Folder of label volumes `<seriesuid>.mhd` (value = annotation row + 1, as synth's
    /// `seg-nodules/`): each nodule labelled by its own shape ([`masks`]).
    pub label_masks: Option<PathBuf>,
    /// Largest distance of an outline's `imageZposition` from its slice, as a fraction of the
    /// slice spacing.
    pub lidc_z_tolerance: f64,
}

fn ser_rule<S: serde::Serializer>(r: &SplitRule, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{r:?}"))
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            patch_size: [64; 3],
            spacing_mm: [1.0; 3],
            jitter_mm: 8.0,
            positives_per_nodule: 1,
            neg_ratio: 2.0,
            candidate_fraction: 0.5,
            border_fraction: 0.0,
            split: SplitRule::default(),
            seed: 0,
            max_scans: None,
            lidc_xml: None,
            label_masks: None,
            lidc_z_tolerance: lidc::slices::DEFAULT_Z_TOLERANCE,
        }
    }
}

impl PrepareConfig {
    pub fn spec(&self) -> PatchSpec {
        PatchSpec {
            size: self.patch_size,
            spacing_mm: self.spacing_mm,
            outside_hu: -1000.0,
        }
    }

    fn validate(&self) -> Result<()> {
        self.spec()
            .validate()
            .context("invalid --patch-size / --spacing-mm")?;
        ensure!(
            self.jitter_mm.is_finite() && self.jitter_mm >= 0.0,
            "--jitter-mm {} must be finite and >= 0",
            self.jitter_mm
        );
        ensure!(
            self.neg_ratio.is_finite() && self.neg_ratio >= 0.0,
            "--neg-ratio {} must be finite and >= 0",
            self.neg_ratio
        );
        ensure!(
            (0.0..=1.0).contains(&self.candidate_fraction),
            "--candidate-fraction {} must be in [0, 1]",
            self.candidate_fraction
        );
        ensure!(
            (0.0..=1.0).contains(&self.border_fraction),
            "--border-fraction {} must be in [0, 1]",
            self.border_fraction
        );
        ensure!(
            self.lidc_xml.is_none() || self.label_masks.is_none(),
            "--lidc-xml and --label-masks are two sources of the same labels: give one"
        );
        ensure!(
            self.lidc_z_tolerance > 0.0 && self.lidc_z_tolerance <= 0.5,
            "--lidc-z-tolerance {} must be in (0, 0.5]",
            self.lidc_z_tolerance
        );
        Ok(())
    }
}

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

/// Runs `prepare` from the LUNA16 folder `input` into the dataset folder `output`.
pub fn prepare(
    input: &Path,
    output: &Path,
    cfg: &PrepareConfig,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<PrepareSummary> {
    let t0 = Instant::now();
    cfg.validate()?;
    let spec = cfg.spec();
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

    let mut summary = PrepareSummary {
        config: cfg.clone(),
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        candidates_file: candidates_file.clone(),
        scans_found: scans.len(),
        scans_ok: 0,
        scans_skipped: Vec::new(),
        scans_left_out: 0,
        annotations: annotations.len(),
        unknown_annotations: 0,
        unknown_seriesuids: Vec::new(),
        negative_shortfall: 0,
        excluded_file: excluded_file.clone(),
        excluded: excluded.len(),
        lidc: None,
        splits: split::SPLITS
            .iter()
            .map(|s| (s.to_string(), SplitCounts::default()))
            .collect(),
        warnings: Vec::new(),
        seconds: 0.0,
    };
    let warn = |summary: &mut PrepareSummary, msg: String, on: &mut dyn FnMut(Event<'_>)| {
        on(Event::Warning(&msg));
        summary.warnings.push(msg);
    };
    if candidates_file.is_none() {
        let msg = format!(
            "{}: no candidates_V2.csv or candidates.csv; all negatives are random lung points",
            input.display()
        );
        warn(&mut summary, msg, &mut on_event);
    }

    let by_uid = group(&annotations, |a| &a.seriesuid);
    let cand_by_uid = group(&candidates, |c| &c.seriesuid);
    let excl_by_uid = group(&excluded, |c| &c.seriesuid);
    let known: HashMap<&str, ()> = scans.iter().map(|s| (s.seriesuid.as_str(), ())).collect();
    for (uid, list) in &by_uid {
        if !known.contains_key(uid) {
            summary.unknown_annotations += list.len();
            summary.unknown_seriesuids.push(uid.to_string());
        }
    }
    if summary.unknown_annotations > 0 {
        let first = by_uid[summary.unknown_seriesuids[0].as_str()][0];
        let msg = format!(
            "annotations.csv: {} annotation(s) name {} seriesuid(s) with no scan under subset*/ \
             (first: {} on line {}); they are ignored",
            summary.unknown_annotations,
            summary.unknown_seriesuids.len(),
            first.seriesuid,
            first.line
        );
        warn(&mut summary, msg, &mut on_event);
    }

    // Which scans, into which split; then the negatives each gets (even spread of the total).
    let assigned: Vec<(&ScanFile, &'static str)> = scans
        .iter()
        .zip(cfg.split.assign(&scans, cfg.seed))
        .filter_map(|(s, k)| k.map(|k| (s, k)))
        .take(cfg.max_scans.unwrap_or(usize::MAX))
        .collect();
    summary.scans_left_out = scans.len() - assigned.len();
    ensure!(
        !assigned.is_empty(),
        "none of the {} scans is in a split (check --split-by-subset folds against the subset* folders)",
        scans.len()
    );
    let total_pos: usize = assigned
        .iter()
        .map(|(s, _)| {
            by_uid.get(s.seriesuid.as_str()).map_or(0, Vec::len) * cfg.positives_per_nodule
        })
        .sum();
    let total_neg = (total_pos as f64 * cfg.neg_ratio).round() as usize;
    let n_scans = assigned.len();
    let neg_quota = |i: usize| total_neg * (i + 1) / n_scans - total_neg * i / n_scans;

    let folder = match &cfg.lidc_xml {
        Some(dir) => {
            let wanted: HashMap<&str, ()> = assigned
                .iter()
                .map(|(s, _)| (s.seriesuid.as_str(), ()))
                .collect();
            let f = lidc::read_folder(dir, |uid| wanted.contains_key(uid), &Default::default())?;
            for b in f.bad.iter().chain(&f.duplicates) {
                let msg = format!("--lidc-xml: {}: {}", b.path.display(), b.reason);
                warn(&mut summary, msg, &mut on_event);
            }
            summary.lidc = Some(LidcSummary {
                xml_dir: dir.clone(),
                xml_files: f.xml_files,
                not_ct_files: f.not_ct,
                other_series_files: f.other_series,
                bad_files: f.bad.clone(),
                duplicate_files: f.duplicates.clone(),
                ..Default::default()
            });
            Some(f)
        }
        None => None,
    };

    let mut writer = DatasetWriter::create(output)?;
    on_event(Event::Start { scans: n_scans });
    for (i, (scan, split)) in assigned.iter().enumerate() {
        let ann = by_uid
            .get(scan.seriesuid.as_str())
            .cloned()
            .unwrap_or_default();
        let cand = cand_by_uid
            .get(scan.seriesuid.as_str())
            .cloned()
            .unwrap_or_default();
        let excl = excl_by_uid
            .get(scan.seriesuid.as_str())
            .cloned()
            .unwrap_or_default();
        let job = ScanJob {
            scan,
            ann: &ann,
            cand: &cand,
            excluded: &excl,
            lidc: folder
                .as_ref()
                .and_then(|f| f.series.get(&scan.seriesuid))
                .map(|(_, file)| file),
            n_neg: neg_quota(i),
        };
        match cut_scan(&job, cfg, &spec) {
            Ok((cut, labels)) => {
                if let Some(l) = summary.lidc.as_mut() {
                    l.add(&labels);
                }
                for msg in labels.warnings {
                    warn(
                        &mut summary,
                        format!("{}: {msg}", scan.seriesuid),
                        &mut on_event,
                    );
                }
                let counts = summary.splits.get_mut(*split).expect("known split");
                counts.scans += 1;
                let wanted = neg_quota(i);
                let got = cut.iter().filter(|p| p.0.label == 0).count();
                for (mut rec, hu, mask) in cut {
                    rec.split = split.to_string();
                    if rec.label == 1 {
                        counts.positives += 1;
                    } else {
                        counts.negatives += 1;
                    }
                    writer.add(rec, &hu, &mask)?;
                }
                summary.scans_ok += 1;
                if got < wanted {
                    summary.negative_shortfall += 1;
                    let msg = format!(
                        "{}: only {got} of {wanted} negatives (no lung voxels or candidates found)",
                        scan.seriesuid
                    );
                    warn(&mut summary, msg, &mut on_event);
                }
            }
            Err(e) => {
                let reason = format!("{e:#}");
                let msg = format!("skipping {}: {reason}", scan.path.display());
                warn(&mut summary, msg, &mut on_event);
                summary.scans_skipped.push(SkippedScan {
                    seriesuid: scan.seriesuid.clone(),
                    path: scan.path.clone(),
                    reason,
                });
            }
        }
        on_event(Event::ScanDone {
            seriesuid: &scan.seriesuid,
        });
    }
    writer.finish()?;
    summary.seconds = t0.elapsed().as_secs_f64();
    let report = output.join(REPORT);
    std::fs::write(&report, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", report.display()))?;
    Ok(summary)
}

fn group<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> HashMap<&'a str, Vec<&'a T>> {
    let mut m: HashMap<&str, Vec<&T>> = HashMap::new();
    for it in items {
        m.entry(key(it)).or_default().push(it);
    }
    m
}

type Cut = (PatchRecord, Vec<f32>, Vec<u8>);

/// One scan's inputs.
struct ScanJob<'a> {
    scan: &'a ScanFile,
    ann: &'a [&'a Annotation],
    cand: &'a [&'a Candidate],
    excluded: &'a [&'a Annotation],
    /// Its LIDC reads, with `--lidc-xml` and a file for its series.
    lidc: Option<&'a lidc::xml::LidcFile>,
    n_neg: usize,
}

/// Where a scan's labels came from.
#[derive(Debug, Default)]
struct LabelSource {
    with_xml: bool,
    without_xml: bool,
    outlined: usize,
    sphere: usize,
    unmatched: usize,
    points: usize,
    reads_skipped: usize,
    warnings: Vec<String>,
}

impl LidcSummary {
    fn add(&mut self, l: &LabelSource) {
        self.scans_with_xml += usize::from(l.with_xml);
        self.scans_without_xml += usize::from(l.without_xml);
        self.annotations_outlined += l.outlined;
        self.annotations_sphere += l.sphere;
        self.clusters_unmatched += l.unmatched;
        self.point_findings += l.points;
        self.reads_skipped += l.reads_skipped;
    }
}

/// A scan's labels: annotations drawn as spheres, consensus masks, and the keepouts of
/// negatives.
struct ScanLabels<'a> {
    spheres: Vec<&'a Annotation>,
    nodules: Vec<lidc::ScanNodule>,
    keep: Vec<Keepout>,
    source: LabelSource,
}

/// Matches the scan's annotations to its LIDC clusters (when `--lidc-xml` was given).
fn scan_labels<'a>(
    job: &ScanJob<'a>,
    geometry: &lungseg::Geometry,
    cfg: &PrepareConfig,
) -> Result<ScanLabels<'a>> {
    let mut keep: Vec<Keepout> = job.ann.iter().map(|a| Keepout::of(a)).collect();
    keep.extend(job.excluded.iter().map(|a| Keepout::of(a)));
    let mut source = LabelSource::default();
    if let Some(dir) = &cfg.label_masks {
        let path = dir.join(format!("{}.mhd", job.scan.seriesuid));
        let masks = masks::scan_masks(&path, geometry, job.ann.len())?;
        let (mut spheres, mut nodules) = (Vec::new(), Vec::new());
        for (a, m) in job.ann.iter().zip(masks) {
            match m {
                Some(n) => nodules.push(n),
                None => {
                    spheres.push(*a);
                    source.warnings.push(format!(
                        "annotations.csv line {}: no voxel of {} has its label; sphere label",
                        a.line,
                        path.display()
                    ));
                }
            }
        }
        source.sphere = spheres.len();
        source.outlined = nodules.len();
        return Ok(ScanLabels {
            spheres,
            nodules,
            keep,
            source,
        });
    }
    let Some(file) = job.lidc else {
        source.without_xml = cfg.lidc_xml.is_some();
        if source.without_xml && !job.ann.is_empty() {
            source.sphere = job.ann.len();
            source
                .warnings
                .push("no LIDC XML for this series: its nodules keep sphere labels".into());
        }
        return Ok(ScanLabels {
            spheres: job.ann.to_vec(),
            nodules: Vec::new(),
            keep,
            source,
        });
    };
    source.with_xml = true;
    let reads = lidc::scan_reads(file, geometry, cfg.lidc_z_tolerance)?;
    source.reads_skipped = reads.skipped.len();
    source.warnings.extend(
        reads
            .skipped
            .iter()
            .map(|r| format!("LIDC read skipped: {r}")),
    );
    source.points = reads.points.len();
    keep.extend(reads.points.iter().map(|&world| Keepout {
        world,
        radius_mm: 0.0,
    }));
    let pairs: Vec<([f64; 3], f64)> = job.ann.iter().map(|a| (a.world, a.diameter_mm)).collect();
    let matched = lidc::match_annotations(&pairs, &reads.nodules);
    let mut spheres = Vec::new();
    for (a, m) in job.ann.iter().zip(&matched) {
        if m.is_none() {
            spheres.push(*a);
            source.warnings.push(format!(
                "annotations.csv line {}: no LIDC cluster within reach of its centre; sphere label",
                a.line
            ));
        }
    }
    source.sphere = spheres.len();
    source.outlined = job.ann.len() - spheres.len();
    let mut nodules = Vec::new();
    for (i, n) in reads.nodules.into_iter().enumerate() {
        if matched.contains(&Some(i)) {
            nodules.push(n);
        } else {
            source.unmatched += 1;
            keep.push(Keepout {
                world: n.center_world,
                radius_mm: n.radius_mm,
            });
        }
    }
    Ok(ScanLabels {
        spheres,
        nodules,
        keep,
        source,
    })
}

/// Reads one scan and cuts all its patches in memory (the split is filled in by the caller);
/// any error leaves nothing written, so a damaged scan is skipped whole.
fn cut_scan(
    job: &ScanJob<'_>,
    cfg: &PrepareConfig,
    spec: &PatchSpec,
) -> Result<(Vec<Cut>, LabelSource)> {
    let scan = job.scan;
    let volume = lungseg::mhd::read(&scan.path, &Default::default())?;
    volume.require_scalar()?;
    let labels = scan_labels(job, &volume.geometry, cfg)?;
    let outlines = (!labels.nodules.is_empty()).then_some(Outlines {
        geometry: &volume.geometry,
        nodules: &labels.nodules,
    });
    let mut rng = ChaCha8Rng::seed_from_u64(split::uid_hash(&scan.seriesuid, cfg.seed));
    let mut sites = sampling::positives(
        job.ann,
        cfg.positives_per_nodule,
        cfg.jitter_mm,
        spec,
        &mut rng,
    );
    let n_border = (job.n_neg as f64 * cfg.border_fraction).round() as usize;
    sites.extend(sampling::negatives(
        &volume,
        &labels.keep,
        job.cand,
        job.n_neg - n_border,
        cfg.candidate_fraction,
        &mut rng,
    ));
    sites.extend(sampling::border_negatives(
        &volume,
        &labels.keep,
        n_border,
        &mut rng,
    ));
    let mut counters: HashMap<char, usize> = HashMap::new();
    let cut = sites
        .iter()
        .map(|site: &Site| {
            let tag = site.source.tag();
            let n = counters.entry(tag).or_default();
            let id = format!("{}_{tag}{:03}", scan.seriesuid, *n);
            *n += 1;
            let hu = patch::extract_patch(&volume, site.center, spec)?;
            let mask = sampling::label_mask(spec, site.center, &labels.spheres, outlines)?;
            let (label, diameter_mm) = match site.source {
                Source::Nodule { diameter_mm, .. } => (1, Some(diameter_mm)),
                _ => (0, None),
            };
            let [x, y, z] = spec.size;
            Ok((
                PatchRecord {
                    id,
                    hu: String::new(),
                    mask: String::new(),
                    seriesuid: scan.seriesuid.clone(),
                    split: String::new(),
                    label,
                    shape: [z, y, x],
                    diameter_mm,
                    spacing_mm: Some(spec.spacing_mm),
                    center_world: Some(site.center),
                },
                hu,
                mask,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((cut, labels.source))
}
