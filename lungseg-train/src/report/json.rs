//! `report.json`: the [`Report`] as pretty JSON, quality checks included.

use std::path::Path;

use serde::Serialize;

use super::{QualityCheck, Report};

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    quality_checks: Vec<QualityCheck>,
}

/// The report as pretty-printed JSON (`None`/undefined metrics become `null`).
pub fn to_json_string(report: &Report) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&JsonReport {
        report,
        quality_checks: report.quality_checks(),
    })
}

/// Writes `report.json` (or any path).
pub fn write_json(report: &Report, path: &Path) -> std::io::Result<()> {
    let text = to_json_string(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
