//! Would a recalibration of the MC mean that also knows how far a voxel lies from the returned
//! mask reach the ROI calibration goal without spoiling the whole patch's? A map of `p` alone
//! cannot (`scripts/calibration_map_bound.py`): the ROI is drawn around the ground truth, so its
//! low-probability voxels are boundary voxels, the whole patch's are background. The distance
//! to the predicted mask is known at inference and separates the two. A study on calibration
//! patches (never a test seed: it informs a choice).
//!
//! `cargo run -p lungseg-train --example band_calibration_study -- MODEL DATASET SPLIT SEED > hist.json`
//!
//! Runs MC dropout on every patch of the split as `evaluate` does (the model's samples, flips
//! and seeds, and the dropout-off baseline for the ROI), cuts the final mask as the library
//! does, and writes per scan and per distance band (`calibrate::mask_distance`'s: Chebyshev
//! voxels from the mask, 0 inside, 1, 2, 3, 4–6, ≥ 7 or no mask) a `BandHistogram` over 100
//! probability bins (voxel count, foreground count, summed probability) for the whole patch
//! and for the ROI (`RegionHistograms`).
//! `scripts/band_calibration_study.py` fits the maps by scan-level cross-fitting and scores them.

use std::path::Path;

use anyhow::{Context, Result};
use lungseg::model::Model;
use lungseg_train::calibrate::mask_distance::{RegionHistograms, BAND_MAX_VOXELS};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_patch, split_for_model};
use lungseg_train::metrics::{predicted_mask, roi_mask, EvalConfig};
use serde::Serialize;

#[derive(Serialize)]
struct ScanHist {
    scan: String,
    #[serde(flatten)]
    hist: RegionHistograms,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, split, seed] = args.as_slice() else {
        anyhow::bail!("usage: band_calibration_study MODEL DATASET SPLIT SEED");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let model = Model::open(Path::new(model))?;
    let ds = PatchDataset::open(Path::new(data))?;
    let idx = split_for_model(&model, &ds, split)?;
    let eval = EvalConfig::default().for_model(&model);
    let mut scans: Vec<ScanHist> = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (_, m) = run_patch(&model, rec, &patch, 20, seed)?;
        let grid = rec.grid(model.config().spacing_mm);
        let pred = predicted_mask(&m.mean, grid, &eval).map_err(anyhow::Error::msg)?;
        let roi =
            roi_mask(&patch.mask, &pred, &m.det, rec.shape, &eval).map_err(anyhow::Error::msg)?;
        let pos = match scans.iter().position(|s| s.scan == rec.seriesuid) {
            Some(p) => p,
            None => {
                scans.push(ScanHist {
                    scan: rec.seriesuid.clone(),
                    hist: RegionHistograms::new(&BAND_MAX_VOXELS),
                });
                scans.len() - 1
            }
        };
        scans[pos]
            .hist
            .add_patch(&m.mean, &pred, &patch.mask, &roi, rec.shape)?;
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    serde_json::to_writer(std::io::stdout(), &scans)?;
    Ok(())
}
