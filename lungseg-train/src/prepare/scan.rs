//! One scan: its labels (spheres, consensus outlines or label volumes) and every patch cut
//! from it, all in memory, so a damaged scan is skipped whole.

use std::collections::HashMap;

use anyhow::Result;
use lungseg::patch::{self, PatchSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::luna::{Annotation, Candidate, ScanFile};
use super::sampling::{self, Keepout, Outlines, Site, Source};
use super::{lidc, masks, split, LidcSummary, PrepareConfig};
use crate::dataset::PatchRecord;

pub(super) type Cut = (PatchRecord, Vec<f32>, Vec<u8>);

/// One scan's inputs.
pub(super) struct ScanJob<'a> {
    pub(super) scan: &'a ScanFile,
    pub(super) ann: &'a [&'a Annotation],
    pub(super) cand: &'a [&'a Candidate],
    pub(super) excluded: &'a [&'a Annotation],
    /// Its LIDC reads, with `--lidc-xml` and a file for its series.
    pub(super) lidc: Option<&'a lidc::xml::LidcFile>,
    pub(super) n_neg: usize,
}

/// Where a scan's labels came from.
#[derive(Debug, Default)]
pub(super) struct LabelSource {
    with_xml: bool,
    without_xml: bool,
    outlined: usize,
    sphere: usize,
    unmatched: usize,
    points: usize,
    reads_skipped: usize,
    pub(super) warnings: Vec<String>,
}

impl LidcSummary {
    pub(super) fn add(&mut self, l: &LabelSource) {
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

/// The scan's labels from its label volume (`--label-masks`), its LIDC clusters
/// (`--lidc-xml`), or the annotations' spheres.
fn scan_labels<'a>(
    job: &ScanJob<'a>,
    geometry: &lungseg::Geometry,
    cfg: &PrepareConfig,
) -> Result<ScanLabels<'a>> {
    let mut keep: Vec<Keepout> = job.ann.iter().map(|a| Keepout::of(a)).collect();
    keep.extend(job.excluded.iter().map(|a| Keepout::of(a)));
    if let Some(dir) = &cfg.label_masks {
        return labels_from_masks(job, geometry, dir, keep);
    }
    match job.lidc {
        Some(file) => labels_from_lidc(job, file, geometry, cfg, keep),
        None => {
            let mut source = LabelSource {
                without_xml: cfg.lidc_xml.is_some(),
                ..Default::default()
            };
            if source.without_xml && !job.ann.is_empty() {
                source.sphere = job.ann.len();
                source
                    .warnings
                    .push("no LIDC XML for this series: its nodules keep sphere labels".into());
            }
            Ok(ScanLabels {
                spheres: job.ann.to_vec(),
                nodules: Vec::new(),
                keep,
                source,
            })
        }
    }
}

/// Each annotation labelled by its shape in `<dir>/<seriesuid>.mhd`; one with no voxel there
/// keeps its sphere.
fn labels_from_masks<'a>(
    job: &ScanJob<'a>,
    geometry: &lungseg::Geometry,
    dir: &std::path::Path,
    keep: Vec<Keepout>,
) -> Result<ScanLabels<'a>> {
    let path = dir.join(format!("{}.mhd", job.scan.seriesuid));
    let masks = masks::scan_masks(&path, geometry, job.ann.len())?;
    let mut source = LabelSource::default();
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
    Ok(ScanLabels {
        spheres,
        nodules,
        keep,
        source,
    })
}

/// Matches the scan's annotations to its LIDC clusters: a matched one is labelled by the
/// consensus outline, an unmatched one keeps its sphere; clusters no annotation took and point
/// findings are kept clear of negatives.
fn labels_from_lidc<'a>(
    job: &ScanJob<'a>,
    file: &lidc::xml::LidcFile,
    geometry: &lungseg::Geometry,
    cfg: &PrepareConfig,
    mut keep: Vec<Keepout>,
) -> Result<ScanLabels<'a>> {
    let mut source = LabelSource {
        with_xml: true,
        ..Default::default()
    };
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
pub(super) fn cut_scan(
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
        |d| cfg.positives_for(d),
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
                    scan_spacing_mm: Some(volume.resolution_mm()),
                },
                hu,
                mask,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((cut, labels.source))
}
