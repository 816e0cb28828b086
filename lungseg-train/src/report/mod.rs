//! The evaluation report: `report.json` (machine-readable, every number), `report.md`
//! (radiologist- and engineer-facing, with definitions) and PNG figures.

pub mod figures;
pub mod json;
pub mod markdown;
mod panel;

use serde::{Deserialize, Serialize};

use crate::metrics::EvalMetrics;

pub use figures::FigureError;
pub use json::{to_json_string, write_json};
pub use markdown::{render_markdown, write_markdown};

/// A figure written next to the report, path relative to the report's folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FigureRef {
    pub title: String,
    pub path: String,
}

/// Everything `report.json` and `report.md` contain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// Model file and provenance, as the evaluate command knows it.
    pub model: String,
    /// What was evaluated, e.g. "synthetic test split, seed 7, 120 patches".
    pub dataset: String,
    /// MC-dropout samples per patch.
    pub mc_samples: u32,
    /// Name of the patch score compared with the review threshold.
    pub review_score: String,
    /// A patch is flagged for review when `score > review_threshold`.
    pub review_threshold: f32,
    pub metrics: EvalMetrics,
    /// Mean Dice over nodule patches with an annotated diameter ≥ 5 mm, the population the
    /// quality bar is stated for; `None` when the dataset has no diameters.
    #[serde(default)]
    pub dice_nodules_ge_5mm: Option<f64>,
    pub figures: Vec<FigureRef>,
    /// Free-form remarks (run budget, known limitations).
    pub notes: Vec<String>,
}

/// The quality bar, judged on the stricter region-of-interest numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityCheck {
    pub name: String,
    pub target: String,
    pub value: Option<f64>,
    pub passed: bool,
}

impl Report {
    /// Mean Dice of nodule patches ≥ 5 mm (of every nodule patch when no diameters are
    /// known) ≥ 0.80; ROI entropy AUROC ≥ 0.90; ROI ECE ≤ 0.05; ROI entropy
    /// incorrect/correct ratio ≥ 3.
    pub fn quality_checks(&self) -> Vec<QualityCheck> {
        use crate::metrics::UncertaintyMeasure::Entropy;
        let m = &self.metrics;
        let ent = m.uncertainty(Entropy, true);
        let check =
            |name: &str, target: &str, value: Option<f64>, ok: fn(f64) -> bool| QualityCheck {
                name: name.into(),
                target: target.into(),
                value,
                passed: value.is_some_and(ok),
            };
        let dice = match self.dice_nodules_ge_5mm {
            Some(d) => check(
                "Dice, mean over nodule patches >= 5 mm",
                ">= 0.80",
                Some(d),
                |v| v >= 0.80,
            ),
            None => check(
                "Dice, mean over nodule patches",
                ">= 0.80",
                m.overlap.mean_positive.dice,
                |v| v >= 0.80,
            ),
        };
        vec![
            dice,
            check(
                "Voxel AUROC of entropy for errors (ROI)",
                ">= 0.90",
                ent.and_then(|u| u.auroc).map(|a| a.value),
                |v| v >= 0.90,
            ),
            check("ECE (ROI)", "<= 0.05", m.calibration_roi.ece, |v| v <= 0.05),
            check(
                "Entropy incorrect/correct ratio (ROI)",
                ">= 3",
                ent.and_then(|u| u.ratio),
                |v| v >= 3.0,
            ),
        ]
    }
}
