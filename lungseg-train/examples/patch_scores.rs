//! Candidate patch-level review scores, one CSV row per patch, for choosing what the
//! needs-review flag should look at (docs/training.md, "Patch-level referral").
//!
//! `cargo run --release -p lungseg-train --example patch_scores -- MODEL DATASET SPLIT > s.csv`
//! then `python3 scripts/patch_score_auroc.py s.csv` gives each score's AUROC for patches with
//! Dice < 0.5. MC-20 through lungseg-sys, seeds as `evaluate` uses them.

use std::path::Path;

use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::Model;
use lungseg_train::calibrate::{patch_seed, split_for_model};
use lungseg_train::dataset::PatchDataset;

/// Voxels within this distance (voxels) of the patch centre form the "centre" ball.
const CENTER_RADIUS: f64 = 4.0;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, split] = args.as_slice() else {
        anyhow::bail!("usage: patch_scores MODEL DATASET SPLIT");
    };
    let model = Model::open(Path::new(model))?;
    let ds = PatchDataset::open(Path::new(data))?;
    println!(
        "id,label,diameter_mm,dice,mi_region,entropy_region,v50,v10,v02,sum_p,sum_h,max_p,center_p,center_h"
    );
    for i in split_for_model(&model, &ds, split)? {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let n = patch.hu.len();
        let (mut mean, mut entropy) = (vec![0f32; n], vec![0f32; n]);
        let opts = McOptions {
            n_samples: 20,
            seed: patch_seed(0, &rec.id),
            threads: 0,
            review_threshold: None,
            review_score: None,
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            variance: None,
            entropy: Some(&mut entropy),
            mutual_info: None,
        };
        let s = mc::predict_uncertainty(&model, &patch.hu, &opts, maps)?;
        let [d, h, w] = rec.shape;
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        let (mut v50, mut v10, mut v02) = (0u64, 0u64, 0u64);
        let (mut sum_p, mut sum_h, mut max_p) = (0f64, 0f64, 0f32);
        let (mut cp, mut ch, mut cn) = (0f64, 0f64, 0u64);
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let k = (z * h + y) * w + x;
                    let (p, e) = (mean[k], entropy[k]);
                    let (pred, gt) = (p >= 0.5, patch.mask[k] > 0);
                    tp += u64::from(pred && gt);
                    fp += u64::from(pred && !gt);
                    fn_ += u64::from(!pred && gt);
                    v50 += u64::from(pred);
                    v10 += u64::from(p >= 0.1);
                    v02 += u64::from(p >= 0.02);
                    sum_p += f64::from(p);
                    sum_h += f64::from(e);
                    max_p = max_p.max(p);
                    let r2: f64 = [(z, d), (y, h), (x, w)]
                        .iter()
                        .map(|&(i, n)| (i as f64 - n as f64 / 2.0).powi(2))
                        .sum();
                    if r2 <= CENTER_RADIUS * CENTER_RADIUS {
                        cp += f64::from(p);
                        ch += f64::from(e);
                        cn += 1;
                    }
                }
            }
        }
        let dice = if tp + fp + fn_ == 0 {
            1.0
        } else {
            2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
        };
        println!(
            "{},{},{},{dice},{},{},{v50},{v10},{v02},{sum_p},{sum_h},{max_p},{},{}",
            rec.id,
            rec.label,
            rec.diameter_mm.unwrap_or(0.0),
            s.uncertainty_score,
            s.mean_entropy,
            cp / cn as f64,
            ch / cn as f64
        );
    }
    Ok(())
}
