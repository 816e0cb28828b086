//! `set-second-look`: writes a model's second look at half its spacing
//! (`config.second_look`, `lungseg::second_look`) into the file, with where its setting was
//! chosen and tested in the provenance. The setting comes from a study on calibration scans and
//! one test on a fresh seed (docs/model-stages.md, "A second look at half the spacing"); this
//! command records it, it chooses nothing.

use std::path::PathBuf;

use anyhow::{ensure, Result};
use lungseg::second_look::SecondLook;

use crate::calibrate::mask_threshold::{remove_config_key, set_config_key};
use crate::model_file::{replace_file, ModelFile};

/// The provenance key of the record.
pub const PROVENANCE_KEY: &str = "second_look";

#[derive(clap::Args, Debug, Clone)]
pub struct SetSecondLookArgs {
    /// The model file, rewritten in place (every tensor kept byte for byte).
    #[arg(long)]
    pub model: PathBuf,
    /// Mask threshold of the model's mean when the second look runs.
    #[arg(long)]
    pub first_threshold: f64,
    /// Mask threshold of the second look's mean.
    #[arg(long)]
    pub threshold: f64,
    /// A joined component is kept when the model's mean reaches this in one of its voxels.
    #[arg(long)]
    pub support: f64,
    /// The coarsest scan resolution (mm, any axis) the second look runs on.
    #[arg(long)]
    pub max_scan_spacing_mm: f64,
    /// Where the setting was chosen and tested, recorded in the provenance.
    #[arg(long)]
    pub basis: String,
    /// Removes the second look instead (the other values are then ignored).
    #[arg(long)]
    pub remove: bool,
}

impl SetSecondLookArgs {
    pub fn run(&self) -> Result<()> {
        ensure!(
            !self.basis.trim().is_empty(),
            "--basis must say where the setting was chosen and tested"
        );
        let mut file = ModelFile::read(&self.model)?;
        let mut provenance = file.json_object("provenance")?;
        if self.remove {
            remove_config_key(&mut file, "second_look")?;
            provenance.remove(PROVENANCE_KEY);
        } else {
            let look = SecondLook {
                first_threshold: self.first_threshold as f32,
                threshold: self.threshold as f32,
                support: self.support as f32,
                max_scan_spacing_mm: self.max_scan_spacing_mm,
            };
            look.check()?;
            // The decimals as given: the reader parses them to the same f32 values.
            let value = serde_json::json!({
                "first_threshold": self.first_threshold,
                "threshold": self.threshold,
                "support": self.support,
                "max_scan_spacing_mm": self.max_scan_spacing_mm,
            });
            set_config_key(&mut file, "second_look", value.clone())?;
            provenance.insert(
                PROVENANCE_KEY.into(),
                serde_json::json!({
                    "setting": value,
                    "basis": self.basis,
                    "date": crate::export::utc_now(),
                }),
            );
        }
        file.set_json_object("provenance", provenance);
        let (bytes, _) = file.to_bytes()?;
        replace_file(&self.model, &bytes)?;
        // The file must open with the setting written.
        lungseg::model::Model::open(&self.model)?;
        eprintln!("{}: second look written", self.model.display());
        Ok(())
    }
}
