//! Can the review flag catch a nodule the final mask misses entirely? Every score built from
//! the returned mask or the sample masks is 0 when no sample calls a voxel foreground, as on a
//! correct empty negative, so those misses cap the flag's catch rate (docs/model-stages.md). The
//! requested point is known at inference, and the MC mean below the mask threshold is not
//! always 0 there. A study on calibration patches (never a test seed: it informs a choice).
//!
//! `cargo run -p lungseg-train --example point_evidence_study -- MODEL DATASET SPLIT SEED > p.csv`
//!
//! Runs MC dropout on every patch of the split as `evaluate` does (same samples, flips and
//! seeds, and the dropout-off baseline), and writes per patch: the largest MC mean and the
//! largest dropout-off probability within 3, 5 and 8 mm of the patch centre (the requested
//! point), and the distance (mm) from the centre to the nearest voxel of the final mask (-1
//! when empty). `scripts/point_evidence_study.py` joins it with the `evaluate` report of the
//! same model, patches and seed (bad patches, review scores) and scores the candidates.

use std::path::Path;

use anyhow::{Context, Result};
use lungseg::model::Model;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_patch, split_for_model};

/// Ball radii (mm) around the patch centre.
const RADII_MM: [f64; 3] = [3.0, 5.0, 8.0];

/// Largest value of `map` within each radius of the patch centre, and the distance from the
/// centre to the nearest non-zero `mask` voxel (-1 without one); `spacing` is (x, y, z).
fn near_point(map: &[f32], mask: &[u8], shape: [usize; 3], spacing: [f64; 3]) -> ([f32; 3], f64) {
    let [d, h, w] = shape;
    // The centre voxel as `lungseg::mask` takes it (`dims / 2`).
    let c = [d, h, w].map(|n| (n / 2) as f64);
    let (mut peak, mut nearest) = ([0f32; 3], f64::INFINITY);
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let k = (z * h + y) * w + x;
                let r = [(z, 2), (y, 1), (x, 0)]
                    .iter()
                    .zip(c)
                    .map(|(&(i, axis), ci)| ((i as f64 - ci) * spacing[axis]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                for (p, &radius) in peak.iter_mut().zip(&RADII_MM) {
                    if r <= radius {
                        *p = p.max(map[k]);
                    }
                }
                if mask[k] > 0 {
                    nearest = nearest.min(r);
                }
            }
        }
    }
    (peak, if nearest.is_finite() { nearest } else { -1.0 })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, split, seed] = args.as_slice() else {
        anyhow::bail!("usage: point_evidence_study MODEL DATASET SPLIT SEED");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let model = Model::open(Path::new(model))?;
    let ds = PatchDataset::open(Path::new(data))?;
    let idx = split_for_model(&model, &ds, split)?;
    let spacing = model.config().spacing_mm;
    println!("id,mean_peak_3,mean_peak_5,mean_peak_8,det_peak_3,det_peak_5,det_peak_8,mask_mm");
    for (k, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let (_, m) = run_patch(&model, rec, &patch, 20, seed)?;
        let mut mask = vec![0u8; m.mean.len()];
        lungseg::mask::final_mask(model.config(), &m.mean, &mut mask)?;
        let (mean_peak, mask_mm) = near_point(&m.mean, &mask, rec.shape, spacing);
        let (det_peak, _) = near_point(&m.det, &mask, rec.shape, spacing);
        println!(
            "{},{},{},{},{},{},{},{mask_mm:.2}",
            rec.id, mean_peak[0], mean_peak[1], mean_peak[2], det_peak[0], det_peak[1], det_peak[2]
        );
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    Ok(())
}
