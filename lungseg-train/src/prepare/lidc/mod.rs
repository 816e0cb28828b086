//! `prepare --lidc-xml DIR`: nodule labels from the LIDC-IDRI radiologists' outlines instead of
//! LUNA16's spheres.
//!
//! LUNA16's `annotations.csv` gives a centre and a diameter per nodule; its nodules are LIDC-IDRI
//! nodules marked by at least 3 of the 4 radiologists, whose reader XML files hold each
//! radiologist's outline on every slice. For a scan whose series has an XML file:
//! 1. every read of a nodule ≥ 3 mm is placed on the scan's slices ([`slices`], [`outline`]);
//! 2. reads of one nodule are clustered across readers as pylidc does ([`cluster`]);
//! 3. each cluster's 50 % consensus mask is rasterised as pylidc does ([`consensus`]);
//! 4. a LUNA16 annotation takes the consensus mask of the cluster whose centre lies within its
//!    radius ([`match_annotations`]) as its label, resampled into each patch ([`label`]).
//!
//! Clusters no annotation takes (nodules fewer than 3 readers marked), nodules < 3 mm and
//! non-nodules label nothing and are kept clear of negatives, as LUNA16's
//! `annotations_excluded.csv` points are. An annotation without a cluster keeps its sphere.

pub mod cluster;
pub mod consensus;
pub mod label;
pub mod outline;
pub mod slices;
pub mod xml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use lungseg::geometry::Geometry;
use serde::Serialize;

use consensus::BoxMask;
use outline::Outline;
use slices::SliceIndex;
use xml::{LidcFile, Limits, XmlErrorKind};

/// Deepest folder level searched under `--lidc-xml`.
const MAX_DEPTH: usize = 16;
/// pylidc's consensus level.
pub const CONSENSUS_LEVEL: f64 = 0.5;
/// An annotation takes a cluster whose consensus centre is within this distance (mm) of its
/// centre when its radius is smaller (LUNA16's centres average the readers' centres).
pub const MIN_MATCH_MM: f64 = 2.0;

/// An XML file that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadFile {
    pub path: PathBuf,
    pub reason: String,
}

/// The reader files found under `--lidc-xml`, by series.
#[derive(Debug, Default)]
pub struct LidcFolder {
    /// Series UID → (file, its reads), for the series `read_folder` was asked for.
    pub series: BTreeMap<String, (PathBuf, LidcFile)>,
    pub xml_files: usize,
    /// Chest X-ray reads (`IdriReadMessage`) and other non-CT files, skipped.
    pub not_ct: usize,
    /// CT reads of series with no scan here.
    pub other_series: usize,
    pub bad: Vec<BadFile>,
    /// A second file for a series already read (the first by path is used).
    pub duplicates: Vec<BadFile>,
}

/// Reads every `*.xml` under `root` (LIDC's `tcia-lidc-xml/<NNN>/<NNN>.xml` or any layout),
/// keeping the series `wanted` says yes to. A bad file is reported in `bad`, not fatal; a
/// folder with no XML file at all is an error.
pub fn read_folder(
    root: &Path,
    wanted: impl Fn(&str) -> bool,
    limits: &Limits,
) -> Result<LidcFolder> {
    ensure!(root.is_dir(), "--lidc-xml {}: not a folder", root.display());
    let mut out = LidcFolder::default();
    for path in xml_files(root)? {
        out.xml_files += 1;
        match read_file(&path, limits) {
            Ok(file) if !wanted(&file.series_uid) => out.other_series += 1,
            Ok(file) => {
                if let Some((first, _)) = out.series.get(&file.series_uid) {
                    out.duplicates.push(BadFile {
                        reason: format!(
                            "series {} is also in {}, which is used",
                            file.series_uid,
                            first.display()
                        ),
                        path,
                    });
                } else {
                    out.series.insert(file.series_uid.clone(), (path, file));
                }
            }
            Err(e) if e.kind == XmlErrorKind::NotCtRead => out.not_ct += 1,
            Err(e) => out.bad.push(BadFile {
                path,
                reason: e.message,
            }),
        }
    }
    ensure!(
        out.xml_files > 0,
        "--lidc-xml {}: no .xml file in it or its subfolders",
        root.display()
    );
    Ok(out)
}

/// Every `*.xml` file under `root`, sorted by path (so a duplicate series resolves the same
/// way on every file system).
fn xml_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = e.path();
            // Symlinked folders are not followed: a link loop would never end.
            let kind = e.file_type()?;
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            } else if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("xml"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn read_file(path: &Path, limits: &Limits) -> std::result::Result<LidcFile, xml::XmlError> {
    let fail = |message: String| xml::XmlError {
        kind: XmlErrorKind::Invalid,
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .len();
    if len > limits.max_bytes as u64 {
        return Err(fail(format!(
            "{len} bytes, more than the {} accepted",
            limits.max_bytes
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    xml::parse(&bytes, limits)
}

/// One nodule of a scan: a cluster of reads and its consensus mask.
#[derive(Clone, Debug)]
pub struct ScanNodule {
    pub mask: BoxMask,
    /// World centre of the consensus mask (of the reads' points when the mask is empty).
    pub center_world: [f64; 3],
    /// The box's diagonal (mm): no voxel of the nodule is farther than this from its centre.
    pub radius_mm: f64,
    pub reads: usize,
}

/// What a scan's XML gives.
#[derive(Clone, Debug, Default)]
pub struct ScanReads {
    pub nodules: Vec<ScanNodule>,
    /// Centres of nodules < 3 mm and of non-nodules (world mm).
    pub points: Vec<[f64; 3]>,
    /// Reads that could not be placed on the scan, with the reason.
    pub skipped: Vec<String>,
}

/// Clusters and consensus masks of a scan's reads; `z_tolerance` is a fraction of the slice
/// spacing ([`slices::DEFAULT_Z_TOLERANCE`]). The scan's z spacing stands in for pylidc's
/// `slice_thickness` (the DICOM tag LUNA16's `.mhd` does not keep) as the cluster tolerance.
pub fn scan_reads(file: &LidcFile, geometry: &Geometry, z_tolerance: f64) -> Result<ScanReads> {
    let slices = SliceIndex::new(geometry, z_tolerance)?;
    let mut out = ScanReads::default();
    let mut outlines = Vec::new();
    for (reader, s) in file.sessions.iter().enumerate() {
        for read in &s.nodules {
            if read.is_point() {
                let r = &read.rois[0];
                match point_world(geometry, &slices, r.z, r.points[0]) {
                    Some(p) => out.points.push(p),
                    None => out.skipped.push(format!(
                        "reader {reader} nodule '{}': point off the scan",
                        read.id
                    )),
                }
                continue;
            }
            match Outline::new(reader, read, &slices, geometry.dims) {
                Ok(o) => outlines.push(o),
                Err(e) => out
                    .skipped
                    .push(format!("reader {reader} nodule '{}': {e:#}", read.id)),
            }
        }
        for nn in &s.non_nodules {
            match point_world(geometry, &slices, nn.z, nn.point) {
                Some(p) => out.points.push(p),
                None => out.skipped.push(format!(
                    "reader {reader} non-nodule '{}': point off the scan",
                    nn.id
                )),
            }
        }
    }
    for members in cluster::cluster(&outlines, slices.slice_spacing_mm)? {
        let reads: Vec<&Outline> = members.iter().map(|&i| &outlines[i]).collect();
        let c = consensus::consensus(&reads, CONSENSUS_LEVEL)?;
        out.nodules.push(nodule(geometry, c.mask, &reads));
    }
    Ok(out)
}

fn point_world(geometry: &Geometry, slices: &SliceIndex, z: f64, p: [u32; 2]) -> Option<[f64; 3]> {
    let k = slices.slice_of(z)?;
    ((p[0] as usize) < geometry.dims[0] && (p[1] as usize) < geometry.dims[1])
        .then(|| geometry.index_to_world([f64::from(p[0]), f64::from(p[1]), k as f64]))
}

fn nodule(geometry: &Geometry, mask: BoxMask, reads: &[&Outline]) -> ScanNodule {
    let center_world = label::centroid_world(geometry, &mask).unwrap_or_else(|| {
        let c: Vec<[f64; 3]> = reads.iter().map(|r| r.centroid()).collect();
        let m: [f64; 3] =
            std::array::from_fn(|a| c.iter().map(|v| v[a]).sum::<f64>() / c.len() as f64);
        geometry.index_to_world([m[1], m[0], m[2]])
    });
    ScanNodule {
        radius_mm: box_diagonal_mm(geometry, &mask.bbox),
        mask,
        center_world,
        reads: reads.len(),
    }
}

/// The diagonal (mm) of a mask's box: no voxel of it is farther from any other.
fn box_diagonal_mm(geometry: &Geometry, bbox: &consensus::Bbox) -> f64 {
    let s = geometry.spacing;
    let [ni, nj, nk] = bbox.shape();
    [ni as f64 * s[1], nj as f64 * s[0], nk as f64 * s[2]]
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

impl ScanNodule {
    /// A nodule labelled by `mask` alone (no reads): centred on its centroid; `None` when the
    /// mask is empty.
    pub fn from_mask(geometry: &Geometry, mask: BoxMask) -> Option<ScanNodule> {
        let center_world = label::centroid_world(geometry, &mask)?;
        Some(ScanNodule {
            radius_mm: box_diagonal_mm(geometry, &mask.bbox),
            mask,
            center_world,
            reads: 0,
        })
    }
}

/// For each annotation `(centre, diameter)`, in order, the nearest cluster not yet taken whose
/// centre is within `max(diameter / 2, MIN_MATCH_MM)` of it.
pub fn match_annotations(ann: &[([f64; 3], f64)], nodules: &[ScanNodule]) -> Vec<Option<usize>> {
    let mut taken = vec![false; nodules.len()];
    ann.iter()
        .map(|&(c, d)| {
            let reach = (d / 2.0).max(MIN_MATCH_MM);
            let best = nodules
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken[*i])
                .map(|(i, n)| (i, dist(c, n.center_world)))
                .filter(|&(_, d)| d <= reach)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            if let Some(i) = best {
                taken[i] = true;
            }
            best
        })
        .collect()
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt()
}
