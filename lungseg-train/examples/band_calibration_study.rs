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
//! does, and writes per scan and per distance band (Chebyshev voxels from the mask: 0 inside,
//! 1, 2, 3, 4–6, ≥ 7 or no mask) a histogram over 100 probability bins of the voxel count,
//! summed probability and foreground count, for the whole patch and for the ROI.
//! `scripts/band_calibration_study.py` fits the maps by scan-level cross-fitting and scores them.

use std::path::Path;

use anyhow::{Context, Result};
use lungseg::model::Model;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_patch, split_for_model};
use lungseg_train::metrics::morphology::dilate_cube;
use lungseg_train::metrics::{predicted_mask, roi_mask, EvalConfig};
use serde::Serialize;

const FINE_BINS: usize = 100;
/// Upper Chebyshev distance (voxels) of each band but the last: 0 = inside the mask.
const BAND_MAX: [usize; 5] = [0, 1, 2, 3, 6];
const BANDS: usize = BAND_MAX.len() + 1;

/// Voxel count, summed probability and foreground count per (band, bin).
#[derive(Clone, Serialize)]
struct Hist {
    n: Vec<Vec<u64>>,
    sum_p: Vec<Vec<f64>>,
    pos: Vec<Vec<u64>>,
}

impl Hist {
    fn new() -> Self {
        Hist {
            n: vec![vec![0; FINE_BINS]; BANDS],
            sum_p: vec![vec![0.0; FINE_BINS]; BANDS],
            pos: vec![vec![0; FINE_BINS]; BANDS],
        }
    }

    fn add(&mut self, band: usize, p: f32, y: bool) {
        let b = ((p as f64 * FINE_BINS as f64) as usize).min(FINE_BINS - 1);
        self.n[band][b] += 1;
        self.sum_p[band][b] += f64::from(p);
        self.pos[band][b] += u64::from(y);
    }
}

#[derive(Serialize)]
struct ScanHist {
    scan: String,
    whole: Hist,
    roi: Hist,
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
        let band = bands(&pred, rec.shape)?;
        let pos = match scans.iter().position(|s| s.scan == rec.seriesuid) {
            Some(p) => p,
            None => {
                scans.push(ScanHist {
                    scan: rec.seriesuid.clone(),
                    whole: Hist::new(),
                    roi: Hist::new(),
                });
                scans.len() - 1
            }
        };
        let s = &mut scans[pos];
        for v in 0..m.mean.len() {
            let y = patch.mask[v] != 0;
            s.whole.add(band[v], m.mean[v], y);
            if roi[v] != 0 {
                s.roi.add(band[v], m.mean[v], y);
            }
        }
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    serde_json::to_writer(std::io::stdout(), &scans)?;
    Ok(())
}

/// Each voxel's band: the first `BAND_MAX` entry at least its Chebyshev distance to `pred`.
fn bands(pred: &[u8], dims: [usize; 3]) -> Result<Vec<usize>> {
    let mut band = vec![BANDS - 1; pred.len()];
    for (b, &r) in BAND_MAX.iter().enumerate().rev() {
        let within = dilate_cube(pred, dims, r).map_err(anyhow::Error::msg)?;
        for (o, &w) in band.iter_mut().zip(&within) {
            if w != 0 {
                *o = b;
            }
        }
    }
    Ok(band)
}
