//! Would two models whose MC means are averaged (an ensemble of their outputs, each running
//! half the samples) segment better than one model with all the samples? Averaging their
//! weights (`lungseg-train average`, stages 23 and 23b in docs/model-stages.md) gained half a
//! point of mean Dice on the calibration scans; an output ensemble keeps both networks whole,
//! and is what the engine would have to run (two weight sets, the samples split between them).
//! A study on calibration patches (never a test seed: it informs a choice).
//!
//! `cargo run --release -p lungseg-train --example ensemble_study -- A B DATASET SPLIT SEED > e.csv`
//!
//! Per patch: model A with 20 samples, A with 10 and B with 10 (`evaluate`'s samples, flips and
//! seeds); the ensemble's mean is the mean of A's and B's 10-sample means. Each mean is cut
//! by A's mask rule (threshold, components) at thresholds 0.45–0.6 and written as a confusion
//! against the ground truth: one CSV row per patch, variant and threshold
//! (`scripts/ensemble_study.py` scores them by scan).

use std::path::Path;

use anyhow::{Context, Result};
use lungseg::model::Model;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_patch, split_for_model};
use lungseg_train::metrics::{predicted_mask, Confusion, EvalConfig};

/// Mask thresholds every variant is cut at.
const THRESHOLDS: [f32; 4] = [0.45, 0.5, 0.55, 0.6];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, data, split, seed] = args.as_slice() else {
        anyhow::bail!("usage: ensemble_study MODEL_A MODEL_B DATASET SPLIT SEED");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let (a, b) = (Model::open(Path::new(a))?, Model::open(Path::new(b))?);
    let ds = PatchDataset::open(Path::new(data))?;
    let idx = split_for_model(&a, &ds, split)?;
    let rule = EvalConfig::default().for_model(&a);
    println!("id,scan,centred_on_nodule,gt_voxels,voxel_mm3,variant,threshold,tp,fp,fn");
    for (k, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let a20 = run_patch(&a, rec, &patch, 20, seed)?.1.mean;
        let a10 = run_patch(&a, rec, &patch, 10, seed)?.1.mean;
        let b10 = run_patch(&b, rec, &patch, 10, seed)?.1.mean;
        let ens: Vec<f32> = a10.iter().zip(&b10).map(|(x, y)| 0.5 * (x + y)).collect();
        let grid = rec.grid(a.config().spacing_mm);
        let gt_voxels = patch.mask.iter().filter(|&&v| v != 0).count();
        for (variant, mean) in [("a20", &a20), ("a10", &a10), ("b10", &b10), ("ens", &ens)] {
            for t in THRESHOLDS {
                let cut = EvalConfig {
                    fg_threshold: t,
                    ..rule.clone()
                };
                let pred = predicted_mask(mean, grid, &cut).map_err(anyhow::Error::msg)?;
                let c = Confusion::from_masks(&patch.mask, &pred).map_err(anyhow::Error::msg)?;
                println!(
                    "{},{},{},{gt_voxels},{},{variant},{t},{},{},{}",
                    rec.id,
                    rec.seriesuid,
                    rec.label == 1,
                    grid.voxel_mm3(),
                    c.tp,
                    c.fp,
                    c.fn_
                );
            }
        }
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    Ok(())
}
