//! `--dicom-seg`: the points' masks as one DICOM SEG on the source series (one segment per
//! point, its uncertainty summary in the segment description), through lungseg-sys's writer.

use std::path::Path;

use anyhow::{bail, Result};
use lungseg::patch::PatchSpec;
use lungseg::scan_map::{Merge, ScanMap};
use lungseg::volume::dicom::seg::{write_seg, Algorithm, SegRequest, Segment};
use lungseg::volume::dicom::DicomOptions;
use lungseg::volume::Volume;

use super::{PatchWork, PointResult};

/// Most bytes the per-point masks may take together (one byte per scan voxel per point).
pub const MAX_MASK_BYTES: usize = 2 << 30;

/// Each point's mask on the scan's grid, collected as the points are predicted.
pub(super) struct SegMasks {
    scan: lungseg::geometry::Geometry,
    masks: Vec<Vec<u8>>,
    scratch: Vec<f32>,
}

impl SegMasks {
    /// Refuses up front when `points` masks of the scan would exceed [`MAX_MASK_BYTES`].
    pub(super) fn new(volume: &Volume, points: usize) -> Result<Self> {
        let voxels = volume.geometry.voxel_count();
        if voxels.saturating_mul(points) > MAX_MASK_BYTES {
            bail!(
                "--dicom-seg keeps one mask of {voxels} voxels per point: {points} points exceed \
                 {MAX_MASK_BYTES} bytes; predict fewer points per run"
            );
        }
        Ok(SegMasks {
            scan: volume.geometry,
            masks: Vec::with_capacity(points),
            scratch: lungseg::error::try_vec(voxels, "scan mask")?,
        })
    }

    /// The point's mask (mean probability ≥ the model's mask threshold) resampled onto the
    /// scan grid (nearest; the 0/1 values merged by maximum, so ≥ 0.5 is 1).
    pub(super) fn add(&mut self, spec: &PatchSpec, world: [f64; 3], w: &PatchWork) -> Result<()> {
        let mut map = ScanMap::new(self.scan, Merge::Max);
        map.add(spec, world, &w.mask, 1.0)?;
        map.read(&mut self.scratch)?;
        self.masks
            .push(self.scratch.iter().map(|&v| u8::from(v >= 0.5)).collect());
        Ok(())
    }

    /// Writes `out`: segment i is point i, described by its result.
    pub(super) fn write(
        &self,
        series_dir: &Path,
        series_uid: Option<&str>,
        results: &[PointResult],
        out: &Path,
    ) -> Result<()> {
        let texts: Vec<(String, String)> = results.iter().map(describe).collect();
        let segments: Vec<Segment> = self
            .masks
            .iter()
            .zip(&texts)
            .map(|(mask, (label, description))| Segment {
                mask,
                label,
                description,
                algorithm: Algorithm::LUNGSEG,
            })
            .collect();
        let req = SegRequest {
            series_dir,
            read: DicomOptions {
                series_uid: series_uid.map(str::to_string),
                ..Default::default()
            },
            segments: &segments,
        };
        write_seg(&req, out)?;
        Ok(())
    }
}

/// Segment label and description of a point: the review flag and what it rests on.
fn describe(r: &PointResult) -> (String, String) {
    let s = &r.summary;
    let label = format!("Nodule {}", r.index + 1);
    let description = format!(
        "needs review: {}; {} {:.4} vs threshold {:.4}; {:.0} mm3, equivalent diameter {:.1} mm; \
         MC samples {}, Dice agreement {:.3}; point {:.1}, {:.1}, {:.1} mm (LPS)",
        if s.needs_review { "yes" } else { "no" },
        s.review_score.name(),
        s.uncertainty_score,
        r.review_threshold,
        s.volume_mm3,
        s.equivalent_diameter_mm,
        s.n_samples,
        s.structure.dice_agreement,
        r.world_mm[0],
        r.world_mm[1],
        r.world_mm[2],
    );
    (label, description)
}
