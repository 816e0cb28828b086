//! Would a post-processing of the mask pay on held-out patches, and at which mask threshold?
//! Keeping only the components near the requested point
//! (`lungseg_train::components::keep_near_centre`), dropping the small components that
//! come no closer than a radius to it (the engine's `lungseg::mask::SmallComponents`), or,
//! on top of that, a lower threshold at the point (the components of `mean >= low` that reach
//! within a radius of the centre join the mask: a small nodule the mean sees only faintly).
//! A study on calibration patches (never a test seed: it informs a choice).
//!
//! `cargo run --release -p lungseg-train --example mask_filter_study -- MODEL DATASET SPLIT SEED`
//!
//! Runs MC dropout on every patch of the split as `evaluate` does (the model's samples,
//! flips and seeds), then for each mask threshold and filter prints the mean Dice over the
//! nodule patches (all, < 6 mm, 6–10 mm, ≥ 10 mm) and the negatives' cost (bad patches, mean
//! false-positive volume), from the one metrics layer. The threshold cuts the mean map itself:
//! the model's own `min_component_mm3` is not applied.

use std::path::Path;

use anyhow::{Context, Result};
use lungseg::mask::{drop_small_components, PatchGrid, SmallComponents};
use lungseg::model::Model;
use lungseg_train::calibrate::mask_threshold::mc_mean;
use lungseg_train::calibrate::{patch_seed, split_for_model};
use lungseg_train::components::keep_near_centre;
use lungseg_train::dataset::PatchDataset;
use lungseg_train::metrics::referral::DEFAULT_BAD_DICE;
use lungseg_train::metrics::review_scores::DEFAULT_BAD_FP_MM3;
use lungseg_train::metrics::{is_bad, Confusion, NegativeCost, PatchClass};

const THRESHOLDS: [f32; 11] = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7];
/// A post-processing of the thresholded mask.
#[derive(Clone, Copy)]
enum Filter {
    /// Every component.
    None,
    /// The components within this many mm of the centre.
    NearCentre(f64),
    /// Without the components below `min_mm3` that come no closer than `radius_mm` to the
    /// centre (the engine's rule).
    SmallAway { min_mm3: f64, radius_mm: f64 },
    /// `SmallAway` (256 mm³, 12 mm, the shipped model's), joined by the components of
    /// `mean >= low` with a voxel within `radius_mm` of the centre.
    LowAtPoint { low: f32, radius_mm: f64 },
}

const FILTERS: [Filter; 16] = [
    Filter::None,
    Filter::NearCentre(4.0),
    Filter::NearCentre(8.0),
    Filter::NearCentre(12.0),
    Filter::NearCentre(16.0),
    Filter::NearCentre(24.0),
    Filter::SmallAway {
        min_mm3: 32.0,
        radius_mm: 12.0,
    },
    Filter::SmallAway {
        min_mm3: 64.0,
        radius_mm: 12.0,
    },
    Filter::SmallAway {
        min_mm3: 64.0,
        radius_mm: 8.0,
    },
    Filter::SmallAway {
        min_mm3: 256.0,
        radius_mm: 12.0,
    },
    Filter::LowAtPoint {
        low: 0.2,
        radius_mm: 10.0,
    },
    Filter::LowAtPoint {
        low: 0.3,
        radius_mm: 10.0,
    },
    Filter::LowAtPoint {
        low: 0.4,
        radius_mm: 10.0,
    },
    Filter::LowAtPoint {
        low: 0.2,
        radius_mm: 6.0,
    },
    Filter::LowAtPoint {
        low: 0.3,
        radius_mm: 6.0,
    },
    Filter::LowAtPoint {
        low: 0.4,
        radius_mm: 6.0,
    },
];

impl Filter {
    /// Filters `pred` (the mean cut at the row's threshold) of the mean map `mean`.
    fn apply(
        self,
        pred: &mut [bool],
        mean: &[f32],
        dims: [usize; 3],
        spacing: [f64; 3],
    ) -> Result<()> {
        match self {
            Filter::None => {}
            Filter::LowAtPoint { low, radius_mm } => {
                let shipped = Filter::SmallAway {
                    min_mm3: 256.0,
                    radius_mm: 12.0,
                };
                shipped.apply(pred, mean, dims, spacing)?;
                let mut faint: Vec<bool> = mean.iter().map(|&p| p >= low).collect();
                keep_near_centre(&mut faint, dims, spacing, radius_mm)?;
                for (p, f) in pred.iter_mut().zip(faint) {
                    *p |= f;
                }
            }
            Filter::NearCentre(r) => {
                keep_near_centre(pred, dims, spacing, r)?;
            }
            Filter::SmallAway { min_mm3, radius_mm } => {
                let mut m: Vec<u8> = pred.iter().map(|&b| u8::from(b)).collect();
                let grid = PatchGrid {
                    dims_zyx: dims,
                    spacing_xyz: spacing,
                };
                let rule = SmallComponents {
                    min_mm3,
                    spare_radius_mm: radius_mm,
                };
                drop_small_components(&mut m, grid, rule)?;
                for (p, &v) in pred.iter_mut().zip(&m) {
                    *p = v != 0;
                }
            }
        }
        Ok(())
    }

    fn name(self) -> String {
        match self {
            Filter::None => "none".into(),
            Filter::NearCentre(r) => format!("within {r} mm"),
            Filter::SmallAway { min_mm3, radius_mm } => {
                format!("< {min_mm3} mm³ beyond {radius_mm} mm dropped")
            }
            Filter::LowAtPoint { low, radius_mm } => {
                format!("< 256 mm³ beyond 12 mm dropped; p >= {low} within {radius_mm} mm joins")
            }
        }
    }
}
const SIZE_EDGES_MM: [f64; 2] = [6.0, 10.0];

/// One patch's outcome under one (threshold, radius) setting.
#[derive(Clone, Copy)]
struct Outcome {
    dice: f64,
    fp_mm3: f64,
}

struct PatchInfo {
    class: PatchClass,
    diameter_mm: Option<f64>,
    /// Indexed `[threshold][filter]`.
    outcomes: Vec<Vec<Outcome>>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, split, seed] = args.as_slice() else {
        anyhow::bail!("usage: mask_filter_study MODEL DATASET SPLIT SEED");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let model = Model::open(Path::new(model))?;
    let ds = PatchDataset::open(Path::new(data))?;
    let idx = split_for_model(&model, &ds, split)?;
    let mut patches = Vec::with_capacity(idx.len());
    for (k, &i) in idx.iter().enumerate() {
        patches.push(study_patch(&model, &ds, i, seed)?);
        if (k + 1) % 50 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    print_table(&patches);
    Ok(())
}

fn study_patch(model: &Model, ds: &PatchDataset, i: usize, seed: u64) -> Result<PatchInfo> {
    let rec = &ds.records[i];
    let patch = ds.load(i)?;
    let mean = mc_mean(model, &patch.hu, 20, patch_seed(seed, &rec.id))?;
    let spacing = model.config().spacing_mm;
    let voxel_mm3: f64 = spacing.iter().product();
    let gt_voxels = patch.mask.iter().filter(|&&m| m != 0).count() as u64;
    let class = PatchClass::of(rec.label == 1, gt_voxels);
    let mut outcomes = Vec::with_capacity(THRESHOLDS.len());
    for &t in &THRESHOLDS {
        let mut row = Vec::with_capacity(FILTERS.len());
        for filter in FILTERS {
            let mut pred: Vec<bool> = mean.iter().map(|&p| p >= t).collect();
            filter.apply(&mut pred, &mean, patch.shape, spacing)?;
            let pred: Vec<u8> = pred.into_iter().map(u8::from).collect();
            let c = Confusion::from_masks(&patch.mask, &pred)?;
            row.push(Outcome {
                dice: c.dice(),
                fp_mm3: c.fp as f64 * voxel_mm3,
            });
        }
        outcomes.push(row);
    }
    Ok(PatchInfo {
        class,
        diameter_mm: rec.diameter_mm,
        outcomes,
    })
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n > 0 {
        s / n as f64
    } else {
        f64::NAN
    }
}

fn print_table(patches: &[PatchInfo]) {
    let nodules: Vec<&PatchInfo> = patches
        .iter()
        .filter(|p| p.class == PatchClass::Nodule)
        .collect();
    let bin = |p: &PatchInfo| {
        let d = p.diameter_mm.unwrap_or(f64::NAN);
        SIZE_EDGES_MM.iter().filter(|&&e| d >= e).count()
    };
    println!(
        "{} nodule patches (< 6 mm: {}, 6-10 mm: {}, >= 10 mm: {}), {} negatives",
        nodules.len(),
        nodules.iter().filter(|p| bin(p) == 0).count(),
        nodules.iter().filter(|p| bin(p) == 1).count(),
        nodules.iter().filter(|p| bin(p) == 2).count(),
        patches
            .iter()
            .filter(|p| p.class == PatchClass::Negative)
            .count()
    );
    println!("| threshold | filter | mean Dice | < 6 mm | 6-10 mm | >= 10 mm | bad negatives | mean FP mm³ |");
    println!("|---|---|---|---|---|---|---|---|");
    for (ti, t) in THRESHOLDS.iter().enumerate() {
        for (ri, filter) in FILTERS.iter().enumerate() {
            let dice_of = |keep: &dyn Fn(&PatchInfo) -> bool| {
                mean(
                    nodules
                        .iter()
                        .filter(|p| keep(p))
                        .map(|p| p.outcomes[ti][ri].dice),
                )
            };
            let cost = NegativeCost::of_patches(
                patches
                    .iter()
                    .filter(|p| p.class == PatchClass::Negative)
                    .map(|p| {
                        let o = p.outcomes[ti][ri];
                        let bad = is_bad(
                            p.class,
                            o.dice,
                            o.fp_mm3,
                            DEFAULT_BAD_DICE,
                            DEFAULT_BAD_FP_MM3,
                        );
                        (o.fp_mm3, bad)
                    }),
            );
            println!(
                "| {t} | {} | {:.4} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
                filter.name(),
                dice_of(&|_| true),
                dice_of(&|p| bin(p) == 0),
                dice_of(&|p| bin(p) == 1),
                dice_of(&|p| bin(p) == 2),
                cost.bad,
                cost.mean_fp_mm3
            );
        }
    }
}
