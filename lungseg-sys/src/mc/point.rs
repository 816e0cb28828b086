//! The final mask of a point of a scan: the model's mask of the MC mean, joined with a second
//! look at half the spacing where the model has one and the scan is thin enough
//! (`crate::second_look`). The summary's mask size (`foreground_voxels`, `volume_mm3`,
//! `equivalent_diameter_mm`) then describes the mask written; the maps, the uncertainty
//! measures and the review score stay those of the first look (the model's patch), which the
//! model's review rule was chosen on.

use super::{predict_uncertainty_with, McOptions, PatchSummary, RunControl, UncertaintyMaps};
use crate::error::{try_vec, Error, Result};
use crate::ffi::lungseg_mask_source as abi;
use crate::mask::{final_mask, MaskRule, PatchGrid};
use crate::model::Model;
use crate::second_look::{can_change, joined_mask, onto_first_grid, SecondLook};

/// How a point's final mask was made; the discriminants are the C ABI's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u32)]
pub enum MaskSource {
    /// The model's mask of the mean (`crate::mask::final_mask`): the model has no second look.
    ModelMask = abi::LUNGSEG_MASK_MODEL as u32,
    /// The model's mask: the patch came without its scan, so there is nothing to look at again.
    NoScan = abi::LUNGSEG_MASK_NO_SCAN as u32,
    /// The model's mask: the scan is coarser than the second look's limit.
    ScanTooCoarse = abi::LUNGSEG_MASK_SCAN_TOO_COARSE as u32,
    /// The second look applies, but the first mean reaches its support nowhere it covers: the
    /// first mean cut at the second look's first threshold, no second pass run.
    FirstLookOnly = abi::LUNGSEG_MASK_FIRST_LOOK_ONLY as u32,
    /// The first look's mask joined with the second look's supported components.
    Joined = abi::LUNGSEG_MASK_JOINED as u32,
}

impl MaskSource {
    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            MaskSource::ModelMask => "model mask",
            MaskSource::NoScan => "no scan",
            MaskSource::ScanTooCoarse => "scan too coarse",
            MaskSource::FirstLookOnly => "first look only",
            MaskSource::Joined => "joined",
        }
    }
}

/// A point's scan, for the second look.
pub struct Scan<'a> {
    /// The scan's resolution, mm per axis (x, y, z): `Volume::resolution_mm`.
    pub resolution_mm: [f64; 3],
    /// Fills a buffer with the model's patch (its voxel count) at half the model's spacing
    /// around the same point ([`SecondLook::spacing_mm`]).
    pub second_patch: &'a mut dyn FnMut(&mut [f32]) -> Result<()>,
}

/// One point: its patch at the model's spacing and, when known, its scan.
pub struct Point<'a> {
    pub patch_hu: &'a [f32],
    pub scan: Option<Scan<'a>>,
}

/// MC dropout on the point's patch into `maps` (as [`super::predict_uncertainty_with`]) and
/// its final mask into `mask` (0/1, the patch's voxel count), the second look included where
/// it applies ([`MaskSource`]). The second look draws its samples with the same options.
pub fn predict_point(
    model: &Model,
    point: Point<'_>,
    opts: &McOptions,
    mut maps: UncertaintyMaps<'_>,
    mask: &mut [u8],
    ctl: &mut RunControl<'_>,
) -> Result<(PatchSummary, MaskSource)> {
    let cfg = model.config();
    let n = cfg.patch_voxels();
    if mask.len() != n {
        return Err(Error::invalid(format!(
            "the mask has {} elements, the model's patch {n}",
            mask.len()
        )));
    }
    let mut own_mean: Vec<f32>;
    let mean: &mut [f32] = match maps.mean.take() {
        Some(m) => m,
        None => {
            own_mean = try_vec(n, "the mean map")?;
            &mut own_mean
        }
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut *mean),
        ..maps
    };
    let mut summary = predict_uncertainty_with(model, point.patch_hu, opts, maps, ctl)?;
    let (voxels, source) = match (cfg.second_look, point.scan) {
        (None, _) => (final_mask(cfg, mean, mask)?, MaskSource::ModelMask),
        (Some(_), None) => (final_mask(cfg, mean, mask)?, MaskSource::NoScan),
        (Some(look), Some(scan)) if !look.runs_on(scan.resolution_mm) => {
            (final_mask(cfg, mean, mask)?, MaskSource::ScanTooCoarse)
        }
        (Some(look), Some(scan)) => {
            let look = Look { model, look, opts };
            look.join(mean, scan, mask, ctl)?
        }
    };
    set_mask_size(&mut summary, model, voxels);
    Ok((summary, source))
}

/// A second look about to run.
struct Look<'a> {
    model: &'a Model,
    look: SecondLook,
    opts: &'a McOptions,
}

impl Look<'_> {
    /// The joined mask of the first look's `mean` and, where it can change it, the second
    /// look's mean, into `mask`; its voxel count and source.
    fn join(
        &self,
        mean: &[f32],
        scan: Scan<'_>,
        mask: &mut [u8],
        ctl: &mut RunControl<'_>,
    ) -> Result<(u64, MaskSource)> {
        let cfg = self.model.config();
        let grid = PatchGrid::of(cfg);
        let (second, source) = if can_change(mean, grid.dims_zyx, self.look.support)? {
            let fine = self.second_mean(scan, ctl)?;
            (onto_first_grid(&fine, grid.dims_zyx)?, MaskSource::Joined)
        } else {
            (
                try_vec(mean.len(), "the second look")?,
                MaskSource::FirstLookOnly,
            )
        };
        let voxels = joined_mask(mean, &second, grid, MaskRule::of(cfg), self.look, mask)?;
        Ok((voxels, source))
    }

    /// The MC mean of the second look's patch.
    fn second_mean(&self, scan: Scan<'_>, ctl: &mut RunControl<'_>) -> Result<Vec<f32>> {
        let n = self.model.config().patch_voxels();
        let mut hu = try_vec(n, "the second look's patch")?;
        (scan.second_patch)(&mut hu)?;
        let mut fine = try_vec(n, "the second look's mean")?;
        ctl.log(super::LogLevel::Debug, || {
            "second look at half the spacing".to_string()
        });
        ctl.expect_more(u64::from(self.opts.n_samples));
        let maps = UncertaintyMaps {
            mean: Some(&mut fine),
            ..UncertaintyMaps::default()
        };
        predict_uncertainty_with(self.model, &hu, self.opts, maps, ctl)?;
        Ok(fine)
    }
}

/// The summary's mask size from the mask written.
fn set_mask_size(summary: &mut PatchSummary, model: &Model, voxels: u64) {
    let (volume, diameter) = crate::predict::mask_size(model.config(), voxels);
    summary.foreground_voxels = voxels;
    summary.volume_mm3 = volume;
    summary.equivalent_diameter_mm = diameter;
}
