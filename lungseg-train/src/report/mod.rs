//! The evaluation report: `report.json` (machine-readable, every number), `report.md`
//! (radiologist- and engineer-facing, with definitions) and PNG figures.

pub mod compare;
pub mod figures;
pub mod json;
pub mod markdown;
mod panel;
pub mod pool;

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
    pub evaluation: EvaluationRun,
    pub figures: Vec<FigureRef>,
    /// Free-form remarks (run budget, known limitations).
    pub notes: Vec<String>,
}

/// How the evaluation ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRun {
    pub split: String,
    /// MC-dropout seed (each patch's seed derives from it and the patch id).
    pub seed: u64,
    pub patches: usize,
    /// The scoring pass (MC dropout and the deterministic baseline on every patch).
    pub seconds: f64,
    pub patches_per_second: f64,
    /// `.mhd` volumes for 3D Slicer, relative to the report's folder.
    pub slicer_volumes: Vec<String>,
    /// `ModelFile::scoring_fingerprint` of the evaluated file: `calibrate --from-report`
    /// takes the report's scores only for the model they came from.
    #[serde(default)]
    pub scored_model: Option<String>,
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
    /// Mean Dice over all nodule patches ≥ 0.80; ROI entropy AUROC ≥ 0.90; ROI ECE ≤ 0.03;
    /// ROI entropy incorrect/correct ratio ≥ 3; the review flag catches ≥ 80 % of bad patches
    /// while referring ≤ 15 % of all. Point estimates (the intervals are reported beside them).
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
        let dice = check(
            "Dice, mean over all nodule patches",
            ">= 0.80",
            m.headline.dice_nodules.map(|i| i.estimate),
            |v| v >= 0.80,
        );
        let h = &m.headline;
        let referred = h.flag_referred_fraction.map(|i| i.estimate);
        let catch = h.flag_catch_rate.map(|i| i.estimate);
        let flag = QualityCheck {
            name: "Bad patches flagged for review (at <= 15 % referred)".into(),
            target: ">= 0.80".into(),
            value: catch,
            passed: catch.is_some_and(|c| c >= 0.80) && referred.is_some_and(|r| r <= 0.15),
        };
        vec![
            dice,
            check(
                "Voxel AUROC of entropy for errors (ROI)",
                ">= 0.90",
                ent.and_then(|u| u.auroc).map(|a| a.value),
                |v| v >= 0.90,
            ),
            check("ECE (ROI)", "<= 0.03", m.calibration_roi.ece, |v| v <= 0.03),
            check(
                "Entropy incorrect/correct ratio (ROI)",
                ">= 3",
                ent.and_then(|u| u.ratio),
                |v| v >= 3.0,
            ),
            flag,
        ]
    }
}
