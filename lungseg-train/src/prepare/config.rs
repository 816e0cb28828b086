//! What `prepare` can be told, and its checks.

use anyhow::{ensure, Context, Result};
use lungseg::patch::PatchSpec;
use serde::Serialize;
use std::path::PathBuf;

use super::{lidc, SplitRule};

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
    /// More positives for the small nodules: a nodule below `below_mm` gets `per_nodule`
    /// patches instead of `positives_per_nodule`.
    pub small_nodule_positives: Option<SmallNodulePositives>,
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

/// Positives per nodule below a size (`--small-nodule-positives D:K`). A per-patch loss weighs
/// every positive patch alike, so the small nodules, where the Dice is lost, get as much of the
/// training signal as a mass only when they are cut more often.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SmallNodulePositives {
    /// Annotated diameter (mm) below which a nodule counts as small.
    pub below_mm: f64,
    pub per_nodule: usize,
}

impl std::str::FromStr for SmallNodulePositives {
    type Err = anyhow::Error;

    /// `D:K`: nodules below D mm get K positives.
    fn from_str(s: &str) -> Result<Self> {
        let (d, k) = s
            .split_once(':')
            .with_context(|| format!("{s:?} is not DIAMETER_MM:POSITIVES"))?;
        let below_mm: f64 = d
            .trim()
            .parse()
            .with_context(|| format!("diameter {d:?}"))?;
        let per_nodule: usize = k.trim().parse().with_context(|| format!("count {k:?}"))?;
        ensure!(
            below_mm.is_finite() && below_mm > 0.0,
            "small-nodule diameter {below_mm} must be finite and > 0"
        );
        Ok(SmallNodulePositives {
            below_mm,
            per_nodule,
        })
    }
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
            small_nodule_positives: None,
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
    /// Positive patches cut around a nodule of this annotated diameter.
    pub fn positives_for(&self, diameter_mm: f64) -> usize {
        match self.small_nodule_positives {
            Some(small) if diameter_mm < small.below_mm => small.per_nodule,
            _ => self.positives_per_nodule,
        }
    }

    pub fn spec(&self) -> PatchSpec {
        PatchSpec {
            size: self.patch_size,
            spacing_mm: self.spacing_mm,
            outside_hu: -1000.0,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
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
