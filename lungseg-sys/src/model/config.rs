//! The JSON documents stored in the safetensors metadata: `config` (architecture, input
//! spec) and `review` (which patch score flags a case for a human). Missing keys take the
//! defaults of the starting project's network; unknown keys are ignored so that newer writers
//! can add fields without breaking older readers.

use serde::Deserialize;

use super::dropout::LevelSet;
use crate::error::{Error, Result};
use crate::ffi::{lungseg_dropout_kind, lungseg_review_score as abi};
use crate::probability_map::ProbabilityMap;
use crate::second_look::SecondLook;

/// Which elements a dropout layer zeroes; the discriminants are the C ABI's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DropoutKind {
    /// Whole channels per sample (PyTorch `Dropout3d`).
    Channel = lungseg_dropout_kind::LUNGSEG_DROPOUT_CHANNEL as u32,
    /// Single activations (PyTorch `Dropout`).
    Element = lungseg_dropout_kind::LUNGSEG_DROPOUT_ELEMENT as u32,
}

/// Dropout used by MC sampling; inverted scaling `1/(1-p)` on kept units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub kind: DropoutKind,
    /// The levels whose blocks drop (`dropout.levels`, format_version 2; default: all).
    pub levels: LevelSet,
}

/// Normalisation inside each conv block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// BatchNorm3d in eval mode, folded into the convolutions at load.
    Batch,
    /// No normalisation: conv → ReLU.
    None,
}

/// The network and input specification of a model file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Channels per U-Net level, shallowest first; the last is the bottleneck.
    pub channels: Vec<usize>,
    pub norm: Norm,
    /// BatchNorm ε, finite and > 0 (also with `norm = none`, where it is unused).
    pub bn_eps: f64,
    pub dropout: Dropout,
    /// Patch size in voxels, (x, y, z); buffers are z-major with x fastest.
    pub patch_size: [usize; 3],
    /// Voxel spacing in mm, (x, y, z).
    pub spacing_mm: [f64; 3],
    /// HU window (lo, hi); input is `clip((HU - lo) / (hi - lo), 0, 1)`.
    pub hu_window: (f32, f32),
    /// A voxel is foreground when its probability is at least this (`mask_threshold`, format
    /// version 3; default 0.5): the mean for the final mask, each sample's for the sample
    /// masks. A probability-calibrated model keeps its trained segmentation boundary by moving
    /// this with the calibration map instead of thresholding calibrated probabilities at 0.5.
    pub mask_threshold: f32,
    /// Orientations the MC samples cycle through (`test_time_flips`, format version 4; 1, 2, 4
    /// or 8; default 1): each sample sees the patch mirrored by its flip and is mirrored back
    /// (`crate::predict::flips`). Deterministic passes never flip.
    pub test_time_flips: u32,
    /// The final mask drops its 26-connected components smaller than this many mm³
    /// (`min_component_mm3`, format version 5; default 0: keeps every one); `crate::mask`.
    /// Sample masks are not filtered: the structure-wise measures compare them with it.
    pub min_component_mm3: f64,
    /// Components smaller than `min_component_mm3` are kept when a voxel of theirs is closer
    /// than this many mm to the patch centre, the point the caller asked about
    /// (`min_component_spare_radius_mm`, format version 6; default 0: spares none);
    /// `crate::mask::SmallComponents`.
    pub min_component_spare_radius_mm: f64,
    /// The final mask adds the 26-connected components of `mean >= point_mask_threshold` with
    /// a voxel closer than `point_radius_mm` to the patch centre (format version 7; default
    /// radius 0: adds none); `crate::mask::PointRule`. Sample masks stay cut at
    /// `mask_threshold`.
    pub point_mask_threshold: f32,
    pub point_radius_mm: f64,
    /// The coarsest voxel spacing (mm, any axis) of the scans the model is meant for
    /// (`max_scan_spacing_mm`, format version 8; default 0: any); a patch at a point of a
    /// coarser scan is flagged for review whatever its score (`crate::intended_use`).
    pub max_scan_spacing_mm: f64,
    /// Calibrated probabilities by distance band from the final mask (`probability_map`;
    /// default none: the mean is the probability); `crate::probability_map`. It changes no
    /// output an older reader gives (the mean, the masks, the scores), so it needs no newer
    /// `format_version`.
    pub probability_map: Option<ProbabilityMap>,
    /// A second look at half the spacing around the requested point, joined to the mask
    /// (`second_look`; default none); `crate::second_look`. It runs only in calls that ask for
    /// the final mask of a point of a scan, and changes no output an older reader gives (an
    /// older reader gives the model's own mask, the one this model is validated with alone), so
    /// it needs no newer `format_version`.
    pub second_look: Option<SecondLook>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            in_channels: 1,
            out_channels: 1,
            channels: vec![16, 32, 64, 128, 256],
            norm: Norm::Batch,
            bn_eps: 1e-5,
            dropout: Dropout {
                p: 0.2,
                kind: DropoutKind::Channel,
                levels: LevelSet::ALL,
            },
            patch_size: [64, 64, 64],
            spacing_mm: [1.0, 1.0, 1.0],
            hu_window: (-1000.0, 400.0),
            mask_threshold: DEFAULT_MASK_THRESHOLD,
            test_time_flips: 1,
            min_component_mm3: 0.0,
            min_component_spare_radius_mm: 0.0,
            point_mask_threshold: 0.0,
            point_radius_mm: 0.0,
            max_scan_spacing_mm: 0.0,
            probability_map: None,
            second_look: None,
        }
    }
}

/// The mask threshold of a model that does not name one.
pub const DEFAULT_MASK_THRESHOLD: f32 = 0.5;

impl ModelConfig {
    /// Voxels in one patch.
    pub fn patch_voxels(&self) -> usize {
        self.patch_size.iter().product()
    }

    /// Number of U-Net levels (encoder blocks including the bottleneck).
    pub fn levels(&self) -> usize {
        self.channels.len()
    }

    /// Parses the `config` metadata JSON and checks it.
    pub fn from_json(json: &str) -> Result<ModelConfig> {
        let raw: RawConfig = serde_json::from_str(json)
            .map_err(|e| Error::format(format!("metadata 'config' is not valid JSON: {e}")))?;
        let mut cfg = ModelConfig::default();
        if let Some(v) = raw.in_channels {
            cfg.in_channels = v;
        }
        if let Some(v) = raw.out_channels {
            cfg.out_channels = v;
        }
        if let Some(v) = raw.channels {
            cfg.channels = v;
        }
        if let Some(v) = raw.norm {
            cfg.norm = match v.as_str() {
                "batch" => Norm::Batch,
                "none" => Norm::None,
                other => {
                    return Err(Error::unsupported(format!(
                        "config.norm '{other}' (supported: batch, none)"
                    )))
                }
            };
        }
        if let Some(v) = raw.bn_eps {
            cfg.bn_eps = v;
        }
        if let Some(d) = raw.dropout {
            if let Some(p) = d.p {
                cfg.dropout.p = p as f32;
            }
            if let Some(k) = d.kind {
                cfg.dropout.kind = match k.as_str() {
                    "channel" => DropoutKind::Channel,
                    "element" => DropoutKind::Element,
                    other => {
                        return Err(Error::unsupported(format!(
                            "config.dropout.kind '{other}' (supported: channel, element)"
                        )))
                    }
                };
            }
            if let Some(levels) = d.levels {
                cfg.dropout.levels = dropout_levels(&levels, cfg.channels.len())?;
            }
        }
        if let Some(u) = raw.upsample {
            if u != "conv_transpose" {
                return Err(Error::unsupported(format!(
                    "config.upsample '{u}' (supported: conv_transpose)"
                )));
            }
        }
        if let Some(v) = raw.patch_size {
            cfg.patch_size = v;
        }
        if let Some(v) = raw.spacing_mm {
            cfg.spacing_mm = v;
        }
        if let Some([lo, hi]) = raw.hu_window {
            cfg.hu_window = (lo as f32, hi as f32);
        }
        if let Some(t) = raw.mask_threshold {
            cfg.mask_threshold = t as f32;
        }
        if let Some(f) = raw.test_time_flips {
            cfg.test_time_flips = crate::predict::flips::ALLOWED_FLIPS
                .into_iter()
                .find(|&a| f64::from(a) == f)
                .ok_or_else(|| {
                    Error::format(format!("config.test_time_flips = {f} must be 1, 2, 4 or 8"))
                })?;
        }
        if let Some(v) = raw.min_component_mm3 {
            cfg.min_component_mm3 = v;
        }
        if let Some(v) = raw.min_component_spare_radius_mm {
            cfg.min_component_spare_radius_mm = v;
        }
        if let Some(t) = raw.point_mask_threshold {
            cfg.point_mask_threshold = t as f32;
        }
        if let Some(v) = raw.point_radius_mm {
            cfg.point_radius_mm = v;
        }
        if let Some(v) = raw.max_scan_spacing_mm {
            cfg.max_scan_spacing_mm = v;
        }
        cfg.probability_map = raw.probability_map;
        cfg.second_look = raw.second_look;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.in_channels != 1 || self.out_channels != 1 {
            return Err(Error::unsupported(format!(
                "config in_channels {} / out_channels {} (only 1 / 1 is supported)",
                self.in_channels, self.out_channels
            )));
        }
        let levels = self.channels.len();
        if levels == 0 || levels > 8 {
            return Err(Error::unsupported(format!(
                "config.channels has {levels} levels (1..=8 supported)"
            )));
        }
        if let Some(&c) = self.channels.iter().find(|&&c| c == 0 || c > 4096) {
            return Err(Error::unsupported(format!(
                "config.channels contains {c} (1..=4096 supported)"
            )));
        }
        let div = 1usize << (levels - 1);
        for (axis, &n) in ["x", "y", "z"].iter().zip(&self.patch_size) {
            if n == 0 || n > 1024 || n % div != 0 {
                return Err(Error::unsupported(format!(
                    "config.patch_size {axis} = {n} must be in 1..=1024 and divisible by {div} (2^(levels-1))"
                )));
            }
        }
        let vox = self
            .patch_size
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n));
        if vox.is_none_or(|v| v > 1 << 24) {
            return Err(Error::unsupported(format!(
                "config.patch_size {:?} is too large",
                self.patch_size
            )));
        }
        let p = self.dropout.p;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::format(format!(
                "config.dropout.p = {p} must be in [0, 1)"
            )));
        }
        // ε keeps √(σ² + ε) away from 0 when a channel's running variance is 0.
        if !(self.bn_eps.is_finite() && self.bn_eps > 0.0) {
            return Err(Error::format(format!(
                "config.bn_eps = {} must be finite and > 0",
                self.bn_eps
            )));
        }
        if !self.spacing_mm.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(Error::format(format!(
                "config.spacing_mm {:?} must be finite and > 0",
                self.spacing_mm
            )));
        }
        let (lo, hi) = self.hu_window;
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(Error::format(format!(
                "config.hu_window [{lo}, {hi}] must be finite with hi > lo"
            )));
        }
        // 0 would call every voxel foreground and 1 none but exact ones: no segmentation.
        let t = self.mask_threshold;
        if !(t > 0.0 && t < 1.0) {
            return Err(Error::format(format!(
                "config.mask_threshold = {t} must be in (0, 1)"
            )));
        }
        let f = self.test_time_flips;
        if !crate::predict::flips::ALLOWED_FLIPS.contains(&f) {
            return Err(Error::format(format!(
                "config.test_time_flips = {f} must be 1, 2, 4 or 8"
            )));
        }
        // Above the patch's own volume every mask would come back empty.
        let v = self.min_component_mm3;
        let patch_mm3 = self.patch_voxels() as f64 * self.spacing_mm.iter().product::<f64>();
        if !(v.is_finite() && v >= 0.0 && v <= patch_mm3) {
            return Err(Error::format(format!(
                "config.min_component_mm3 = {v} must be in [0, {patch_mm3}] (the patch's volume)"
            )));
        }
        // Beyond the patch's diagonal every component would be spared.
        let r = self.min_component_spare_radius_mm;
        let diagonal_mm = self
            .patch_size
            .iter()
            .zip(&self.spacing_mm)
            .map(|(&n, s)| (n as f64 * s).powi(2))
            .sum::<f64>()
            .sqrt();
        if !(r.is_finite() && r >= 0.0 && r <= diagonal_mm) {
            return Err(Error::format(format!(
                "config.min_component_spare_radius_mm = {r} must be in [0, {diagonal_mm}] (the patch's diagonal)"
            )));
        }
        let (t, r) = (self.point_mask_threshold, self.point_radius_mm);
        if !((0.0..=1.0).contains(&t) && r.is_finite() && r >= 0.0 && r <= diagonal_mm) {
            return Err(Error::format(format!(
                "config.point_mask_threshold = {t} must be in [0, 1] and config.point_radius_mm = {r} in [0, {diagonal_mm}] (the patch's diagonal)"
            )));
        }
        // Coarser than 100 mm is no CT; 0 admits every scan.
        let v = self.max_scan_spacing_mm;
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return Err(Error::format(format!(
                "config.max_scan_spacing_mm = {v} must be in [0, 100] (0: any scan)"
            )));
        }
        if let Some(map) = &self.probability_map {
            map.check()?;
        }
        if let Some(look) = &self.second_look {
            look.check()
                .map_err(|e| Error::format(format!("config.second_look: {}", e.message)))?;
            // The second grid lands on the first only with a few voxels per axis.
            if self.patch_size.iter().any(|&n| n < 4) {
                return Err(Error::format(format!(
                    "config.second_look needs a patch of at least 4 voxels per axis, not {:?}",
                    self.patch_size
                )));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawConfig {
    in_channels: Option<usize>,
    out_channels: Option<usize>,
    channels: Option<Vec<usize>>,
    norm: Option<String>,
    bn_eps: Option<f64>,
    dropout: Option<RawDropout>,
    upsample: Option<String>,
    patch_size: Option<[usize; 3]>,
    spacing_mm: Option<[f64; 3]>,
    hu_window: Option<[f64; 2]>,
    mask_threshold: Option<f64>,
    test_time_flips: Option<f64>,
    min_component_mm3: Option<f64>,
    min_component_spare_radius_mm: Option<f64>,
    point_mask_threshold: Option<f64>,
    point_radius_mm: Option<f64>,
    max_scan_spacing_mm: Option<f64>,
    probability_map: Option<ProbabilityMap>,
    second_look: Option<SecondLook>,
}

#[derive(Deserialize)]
struct RawDropout {
    p: Option<f64>,
    kind: Option<String>,
    levels: Option<Vec<usize>>,
}

/// `dropout.levels` of a `levels`-level network: each listed level must exist.
fn dropout_levels(list: &[usize], levels: usize) -> Result<LevelSet> {
    match LevelSet::from_levels(list) {
        Some(set) if list.iter().all(|&l| l < levels) => Ok(set),
        _ => Err(Error::format(format!(
            "config.dropout.levels {list:?}: the network has levels 0..{levels}"
        ))),
    }
}

/// Which patch-level number is compared with the review threshold: every score grows with
/// the uncertainty (`needs_review = score > threshold`). The discriminants are the C ABI's
/// `lungseg_review_score` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ReviewScore {
    /// Mean mutual information (BALD, bits) over the voxels any sample calls foreground.
    MeanMutualInfo = abi::LUNGSEG_REVIEW_MEAN_MUTUAL_INFO as u32,
    /// Mean predictive entropy (bits) over the same voxels.
    MeanEntropy = abi::LUNGSEG_REVIEW_MEAN_ENTROPY as u32,
    /// Mean variance of the probability over the same voxels.
    MeanVariance = abi::LUNGSEG_REVIEW_MEAN_VARIANCE as u32,
    /// How much of the expected foreground volume lies on the other side of the 0.5 threshold:
    /// `|Σ mean − V| / (V + 10)` over the whole patch, `V` = voxels with mean ≥ 0.5. Unlike the
    /// region means it sees under-segmentation (probability mass just below 0.5 around a
    /// confident core) and misses (mass with no voxel above 0.5); see docs/training.md.
    VolumeDisagreement = abi::LUNGSEG_REVIEW_VOLUME_DISAGREEMENT as u32,
    /// `1 − dice_agreement` of [`crate::mc::StructureMeasures`] (Roy et al. 2019).
    DiceDisagreement = abi::LUNGSEG_REVIEW_DICE_DISAGREEMENT as u32,
    /// `1 − iou` of [`crate::mc::StructureMeasures`]: 1 − |∩ M_s| / |∪ M_s|.
    IouDisagreement = abi::LUNGSEG_REVIEW_IOU_DISAGREEMENT as u32,
    /// `volume_cv` of [`crate::mc::StructureMeasures`]: std / mean of the sample volumes.
    VolumeCv = abi::LUNGSEG_REVIEW_VOLUME_CV as u32,
    /// Mean predictive entropy (bits) over the final mask (mean ≥ the mask threshold), 0 when
    /// it is empty. The region scores above average over every voxel *any* sample calls
    /// foreground, where one sample's speck outweighs a confident mask; this one asks how
    /// sure the model is of what it returns (the deterministic baseline's region).
    MaskMeanEntropy = abi::LUNGSEG_REVIEW_MASK_MEAN_ENTROPY as u32,
}

/// Serialised by its model-file name (`"dice_disagreement"`), the one spelling.
impl serde::Serialize for ReviewScore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl ReviewScore {
    /// Every score, in the order error messages list them.
    pub const ALL: [ReviewScore; 8] = [
        ReviewScore::MeanMutualInfo,
        ReviewScore::MeanEntropy,
        ReviewScore::MeanVariance,
        ReviewScore::VolumeDisagreement,
        ReviewScore::DiceDisagreement,
        ReviewScore::IouDisagreement,
        ReviewScore::VolumeCv,
        ReviewScore::MaskMeanEntropy,
    ];

    /// The score called `name` in the model file's `review.score`.
    pub fn from_name(name: &str) -> Option<ReviewScore> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `"mean_mutual_info, mean_entropy, ..."`, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    pub fn name(self) -> &'static str {
        match self {
            ReviewScore::MeanMutualInfo => "mean_mutual_info",
            ReviewScore::MeanEntropy => "mean_entropy",
            ReviewScore::MeanVariance => "mean_variance",
            ReviewScore::VolumeDisagreement => "volume_disagreement",
            ReviewScore::DiceDisagreement => "dice_disagreement",
            ReviewScore::IouDisagreement => "iou_disagreement",
            ReviewScore::VolumeCv => "volume_cv",
            ReviewScore::MaskMeanEntropy => "mask_mean_entropy",
        }
    }
}

/// When a patch needs a human: `score > threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReviewConfig {
    pub score: ReviewScore,
    pub threshold: f32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            score: ReviewScore::MeanMutualInfo,
            threshold: 0.1,
        }
    }
}

impl ReviewConfig {
    /// Parses the `review` metadata JSON, e.g. `{"score":"mean_mutual_info","threshold":0.1}`.
    pub fn from_json(json: &str) -> Result<ReviewConfig> {
        #[derive(Deserialize)]
        struct Raw {
            score: Option<String>,
            threshold: Option<f64>,
        }
        let raw: Raw = serde_json::from_str(json)
            .map_err(|e| Error::format(format!("metadata 'review' is not valid JSON: {e}")))?;
        let mut r = ReviewConfig::default();
        if let Some(s) = raw.score {
            r.score = ReviewScore::from_name(&s).ok_or_else(|| {
                Error::unsupported(format!(
                    "review.score '{s}' (supported: {})",
                    ReviewScore::names()
                ))
            })?;
        }
        if let Some(t) = raw.threshold {
            if !t.is_finite() {
                return Err(Error::format(format!("review.threshold {t} is not finite")));
            }
            r.threshold = t as f32;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys() {
        let c = ModelConfig::from_json(r#"{"channels":[4,8],"patch_size":[16,16,16]}"#).unwrap();
        assert_eq!(c.channels, vec![4, 8]);
        assert_eq!(
            c.dropout,
            Dropout {
                p: 0.2,
                kind: DropoutKind::Channel,
                levels: LevelSet::ALL,
            }
        );
        assert_eq!(c.hu_window, (-1000.0, 400.0));
        assert_eq!(c.mask_threshold, 0.5);
        let c = ModelConfig::from_json(r#"{"mask_threshold":0.094}"#).unwrap();
        assert_eq!(c.mask_threshold, 0.094);
        assert_eq!(c.min_component_mm3, 0.0);
        let c = ModelConfig::from_json(r#"{"min_component_mm3":16}"#).unwrap();
        assert_eq!(c.min_component_mm3, 16.0);
        assert_eq!(c.min_component_spare_radius_mm, 0.0);
        let c = ModelConfig::from_json(r#"{"min_component_spare_radius_mm":12}"#).unwrap();
        assert_eq!(c.min_component_spare_radius_mm, 12.0);
        assert_eq!((c.point_mask_threshold, c.point_radius_mm), (0.0, 0.0));
        let c =
            ModelConfig::from_json(r#"{"point_mask_threshold":0.3,"point_radius_mm":8}"#).unwrap();
        assert_eq!((c.point_mask_threshold, c.point_radius_mm), (0.3, 8.0));
        assert_eq!(c.max_scan_spacing_mm, 0.0);
        let c = ModelConfig::from_json(r#"{"max_scan_spacing_mm":2.5}"#).unwrap();
        assert_eq!(c.max_scan_spacing_mm, 2.5);
        assert_eq!(c.probability_map, None);
        assert_eq!(c.second_look, None);
        let c = ModelConfig::from_json(
            r#"{"second_look":{"first_threshold":0.7,"threshold":0.6,"support":0.55,"max_scan_spacing_mm":2.5}}"#,
        )
        .unwrap();
        assert_eq!(
            c.second_look,
            Some(SecondLook {
                first_threshold: 0.7,
                threshold: 0.6,
                support: 0.55,
                max_scan_spacing_mm: 2.5
            })
        );
        let c = ModelConfig::from_json(
            r#"{"probability_map":{"band_max_voxels":[0],"knots":[0,1],"values":[[0.1,0.9],[0,0.5]]}}"#,
        )
        .unwrap();
        let map = c.probability_map.unwrap();
        assert_eq!((map.bands(), map.map(1, 0.5)), (2, 0.25));
        assert_eq!(
            ModelConfig::from_json("{}").unwrap(),
            ModelConfig::default()
        );
        assert_eq!(
            ReviewConfig::from_json("{}").unwrap(),
            ReviewConfig::default()
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            r#"{"patch_size":[30,32,32],"channels":[4,8,16]}"#,
            r#"{"dropout":{"p":1.0}}"#,
            r#"{"hu_window":[400,-1000]}"#,
            r#"{"channels":[]}"#,
            r#"{"bn_eps":0}"#,
            r#"{"bn_eps":-1e-5}"#,
            r#"{"mask_threshold":0}"#,
            r#"{"mask_threshold":1}"#,
            r#"{"mask_threshold":-0.2}"#,
            r#"{"min_component_mm3":-1}"#,
            r#"{"channels":[4],"patch_size":[4,4,4],"min_component_mm3":64.5}"#,
            r#"{"min_component_spare_radius_mm":-1}"#,
            r#"{"point_mask_threshold":1.5,"point_radius_mm":8}"#,
            r#"{"point_mask_threshold":-0.1}"#,
            r#"{"point_radius_mm":-1}"#,
            r#"{"channels":[4],"patch_size":[4,4,4],"point_radius_mm":7}"#,
            r#"{"channels":[4],"patch_size":[4,4,4],"min_component_spare_radius_mm":7}"#,
            r#"{"max_scan_spacing_mm":-1}"#,
            r#"{"max_scan_spacing_mm":101}"#,
            r#"{"probability_map":{"band_max_voxels":[0],"knots":[0,1],"values":[[0.9,0.1],[0,0.5]]}}"#,
            r#"{"probability_map":{"band_max_voxels":[0],"knots":[0,1],"values":[[0.1,0.9]]}}"#,
            r#"{"probability_map":{"band_max_voxels":[0],"knots":[0,1]}}"#,
            r#"{"second_look":{"first_threshold":0.7,"threshold":0.6,"support":0.55}}"#,
            r#"{"second_look":{"first_threshold":0,"threshold":0.6,"support":0.55,"max_scan_spacing_mm":2.5}}"#,
            r#"{"second_look":{"first_threshold":0.7,"threshold":1.5,"support":0.55,"max_scan_spacing_mm":2.5}}"#,
            r#"{"second_look":{"first_threshold":0.7,"threshold":0.6,"support":-1,"max_scan_spacing_mm":2.5}}"#,
            r#"{"second_look":{"first_threshold":0.7,"threshold":0.6,"support":0.5,"max_scan_spacing_mm":0}}"#,
            r#"{"channels":[1],"patch_size":[2,2,2],"second_look":{"first_threshold":0.7,"threshold":0.6,"support":0.5,"max_scan_spacing_mm":2}}"#,
        ] {
            assert!(ModelConfig::from_json(bad).is_err(), "{bad}");
        }
        let e = ModelConfig::from_json(r#"{"dropout":{"kind":"gaussian"}}"#).unwrap_err();
        assert!(e.message.contains("gaussian"));
    }
}
