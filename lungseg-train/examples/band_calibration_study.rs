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
//!
//! `RINGS_MM` (optional, e.g. `4,8,12,16`) also splits each band by the voxel's distance from
//! the patch centre, the requested point (`PatchGrid::centre_distance_mm2`: ≤ 4, ≤ 8, ..., and
//! beyond the last): the histogram's band `b · rings + r` is mask band `b`, ring `r`
//! (`band_calibration_study.py --rings N`). Why: where the mask is empty or far, a voxel near
//! the point asked about is nodule far more often than one at the patch's edge (a missed
//! nodule), which a map by mask distance alone cannot tell apart.

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
    let (model, data, split, seed, rings_mm) = match args.as_slice() {
        [m, d, s, e] => (m, d, s, e, Vec::new()),
        [m, d, s, e, r] => (m, d, s, e, parse_rings(r)?),
        _ => anyhow::bail!("usage: band_calibration_study MODEL DATASET SPLIT SEED [RINGS_MM]"),
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let rings = rings_mm.len() + 1;
    // One histogram band per (mask band, ring); the edges only set the count.
    let edges: Vec<u32> = if rings == 1 {
        BAND_MAX_VOXELS.to_vec()
    } else {
        (0..((BAND_MAX_VOXELS.len() + 1) * rings - 1) as u32).collect()
    };
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
                    hist: RegionHistograms::new(&edges),
                });
                scans.len() - 1
            }
        };
        let hist = &mut scans[pos].hist;
        if rings == 1 {
            hist.add_patch(&m.mean, &pred, &patch.mask, &roi, rec.shape)?;
        } else {
            let index = lungseg::mask::Grid::new(pred.len(), rec.shape)?;
            let bands: Vec<usize> =
                lungseg::probability_map::bands(&BAND_MAX_VOXELS, &pred, rec.shape)?
                    .iter()
                    .enumerate()
                    .map(|(v, &b)| {
                        let d = grid.centre_distance_mm2(index.zyx(v)).sqrt();
                        usize::from(b) * rings + rings_mm.partition_point(|&r| r < d)
                    })
                    .collect();
            hist.add_voxels(&bands, &m.mean, &patch.mask, &roi)?;
        }
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    serde_json::to_writer(std::io::stdout(), &scans)?;
    Ok(())
}

/// `4,8,12` → increasing radii in mm.
fn parse_rings(s: &str) -> Result<Vec<f64>> {
    let r: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>().context("RINGS_MM"))
        .collect::<Result<_>>()?;
    anyhow::ensure!(
        r.windows(2).all(|w| w[0] < w[1]) && r.iter().all(|&x| x > 0.0),
        "RINGS_MM must increase from above 0"
    );
    Ok(r)
}
