//! `set-intended-use`: the coarsest scan spacing a model file is meant for
//! (`config.max_scan_spacing_mm`, `lungseg::intended_use`), written into the file with the
//! reason in its provenance. The limit is the range the model was trained and tested on, a
//! fact about its data rather than a setting tuned on results: `export --max-scan-spacing-mm`
//! writes it at export, this command on a file that exists.

use std::path::PathBuf;

use anyhow::{ensure, Result};

use crate::calibrate::mask_threshold::{remove_config_key, set_config_key};
use crate::model_file::{replace_file, ModelFile};

/// The provenance key of the record.
pub const PROVENANCE_KEY: &str = "intended_use";

/// Sets `config.max_scan_spacing_mm` of `file` (0 removes the key: any scan) and the
/// `format_version` the config then needs.
pub fn set_max_scan_spacing(file: &mut ModelFile, max_mm: f64) -> Result<()> {
    if max_mm == 0.0 {
        remove_config_key(file, "max_scan_spacing_mm")
    } else {
        set_config_key(file, "max_scan_spacing_mm", serde_json::json!(max_mm))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SetIntendedUseArgs {
    /// The model file, rewritten in place (every tensor kept byte for byte).
    #[arg(long)]
    pub model: PathBuf,
    /// The coarsest voxel spacing, in mm along any axis, of the scans the model is meant for;
    /// 0: any scan.
    #[arg(long)]
    pub max_scan_spacing_mm: f64,
    /// Why this limit, recorded in the provenance (e.g. "trained and tested on slices 1-2.5 mm
    /// apart").
    #[arg(long)]
    pub basis: String,
}

impl SetIntendedUseArgs {
    pub fn run(&self) -> Result<()> {
        ensure!(
            !self.basis.trim().is_empty(),
            "--basis must say why the limit holds"
        );
        let mut file = ModelFile::read(&self.model)?;
        set_max_scan_spacing(&mut file, self.max_scan_spacing_mm)?;
        let mut provenance = file.json_object("provenance")?;
        provenance.insert(
            PROVENANCE_KEY.into(),
            serde_json::json!({
                "max_scan_spacing_mm": self.max_scan_spacing_mm,
                "basis": self.basis,
                "date": crate::export::utc_now(),
            }),
        );
        file.set_json_object("provenance", provenance);
        let (bytes, _) = file.to_bytes()?;
        replace_file(&self.model, &bytes)?;
        eprintln!(
            "{}: max_scan_spacing_mm = {}",
            self.model.display(),
            self.max_scan_spacing_mm
        );
        Ok(())
    }
}
