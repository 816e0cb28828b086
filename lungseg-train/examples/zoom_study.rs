//! Would a second, finer look at the requested point segment small nodules better? Nodules
//! below 6 mm hold most of the default model's Dice deficit (0.4–0.6 against 0.85 from 10 mm),
//! and a 4 mm nodule is 4 voxels across on the model's 1 mm grid. The network is fully
//! convolutional, so the same weights can read the point's neighbourhood at 0.5 mm, where the
//! nodule looks twice its size, and their mean can be brought back to the 1 mm grid.
//! Run on calibration patches to choose a setting, on a test seed only to test the one chosen.
//!
//! ```text
//! cargo run --release -p lungseg-train --example zoom_study -- dump MODEL COARSE FINE SPLIT SEED MEANS
//! cargo run --release -p lungseg-train --example zoom_study -- score MODEL COARSE SPLIT MEANS > z.csv
//! ```
//!
//! COARSE and FINE are `prepare` outputs of the same scans and seed at the model's spacing and
//! at half of it (the same points: `prepare`'s draws do not depend on the spacing; each pair is
//! checked). `dump` writes each patch's MC mean at both (`evaluate`'s samples and seeds) to
//! MEANS, the slow part; `score` reads them back and cuts masks, scored against the coarse
//! label with the model's component rule at first-look thresholds 0.5–0.7:
//! - `base`: the coarse mean alone;
//! - `union-t<T>-g<G>`: `lungseg::second_look::joined_mask`, the coarse mask joined by the
//!   components of the fine mean (on the coarse grid) at threshold `T` in which the coarse mean
//!   reaches `G` (0: all).
//!
//! The first variants studied (the fine mean replacing the coarse one in the central region, or
//! the larger of the two, with or without a cascade) are in this file's history (5136003).
//!
//! One CSV row per patch, variant and threshold (`scripts/zoom_study.py` scores them by scan).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::model::Model;
use lungseg::second_look::{joined_mask, onto_first_grid, SecondLook};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_patch, split_for_model};
use lungseg_train::metrics::{predicted_mask, Confusion, EvalConfig};

/// Mask thresholds every variant is cut at.
const THRESHOLDS: [f32; 4] = [0.5, 0.55, 0.6, 0.7];
/// Thresholds the fine mean is cut at.
const FINE_THRESHOLDS: [f32; 5] = [0.55, 0.6, 0.7, 0.8, 0.9];
/// Coarse support a fine component needs: a voxel where the coarse mean reaches it (0: none).
const GATES: [f32; 5] = [0.0, 0.2, 0.3, 0.4, 0.55];
/// MC samples per pass, as `evaluate`.
const SAMPLES: u32 = 20;

fn write_f32(path: &Path, v: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn read_f32(path: &Path, n: usize) -> Result<Vec<f32>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        b.len() == 4 * n,
        "{}: {} bytes, expected {}",
        path.display(),
        b.len(),
        4 * n
    );
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The MC means of every patch at both spacings, written to `out` (`<id>.coarse.f32`,
/// `<id>.fine.f32`, little-endian, the patch's voxel order).
fn dump(args: &[String]) -> Result<()> {
    let [model, coarse, fine, split, seed, out] = args else {
        bail!("usage: zoom_study dump MODEL COARSE FINE SPLIT SEED OUT");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let model = Model::open(Path::new(model))?;
    let (cds, fds) = (
        PatchDataset::open(Path::new(coarse))?,
        PatchDataset::open(Path::new(fine))?,
    );
    let out = Path::new(out);
    std::fs::create_dir_all(out)?;
    let idx = split_for_model(&model, &cds, split)?;
    for (k, &i) in idx.iter().enumerate() {
        let rec = &cds.records[i];
        let j = fds
            .records
            .iter()
            .position(|r| r.id == rec.id)
            .with_context(|| format!("{} is not in {fine}", rec.id))?;
        let frec = &fds.records[j];
        ensure!(
            frec.center_world == rec.center_world && rec.center_world.is_some(),
            "{}: the fine patch is centred elsewhere ({:?} vs {:?})",
            rec.id,
            frec.center_world,
            rec.center_world
        );
        let n = rec.shape[0];
        ensure!(
            rec.shape == [n; 3] && frec.shape == [n; 3],
            "{}: cubes only",
            rec.id
        );
        let base = run_patch(&model, rec, &cds.load(i)?, SAMPLES, seed)?.1.mean;
        let fine_mean = run_patch(&model, frec, &fds.load(j)?, SAMPLES, seed)?
            .1
            .mean;
        write_f32(&out.join(format!("{}.coarse.f32", rec.id)), &base)?;
        write_f32(&out.join(format!("{}.fine.f32", rec.id)), &fine_mean)?;
        if (k + 1) % 25 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    Ok(())
}

/// One CSV row per patch, variant and threshold from `dump`'s means.
fn score(args: &[String]) -> Result<()> {
    let [model, coarse, split, means] = args else {
        bail!("usage: zoom_study score MODEL COARSE SPLIT MEANS");
    };
    let model = Model::open(Path::new(model))?;
    let cds = PatchDataset::open(Path::new(coarse))?;
    let means = Path::new(means);
    let idx = split_for_model(&model, &cds, split)?;
    let rule = EvalConfig::default().for_model(&model);
    println!(
        "id,scan,centred_on_nodule,diameter_mm,gt_voxels,voxel_mm3,variant,threshold,tp,fp,fn"
    );
    for &i in &idx {
        let rec = &cds.records[i];
        let patch = cds.load(i)?;
        let n = rec.shape[0];
        let base = read_f32(&means.join(format!("{}.coarse.f32", rec.id)), n * n * n)?;
        let fine = read_f32(&means.join(format!("{}.fine.f32", rec.id)), n * n * n)?;
        let grid = rec.grid(model.config().spacing_mm);
        let on_first = onto_first_grid(&fine, grid.dims_zyx)?;
        let gt_voxels = patch.mask.iter().filter(|&&v| v != 0).count();
        for t in THRESHOLDS {
            let cut = EvalConfig {
                fg_threshold: t,
                ..rule.clone()
            };
            let mut variants = vec![(
                "base".to_string(),
                predicted_mask(&base, grid, &cut).map_err(anyhow::Error::msg)?,
            )];
            for threshold in FINE_THRESHOLDS {
                for support in GATES {
                    let look = SecondLook {
                        first_threshold: t,
                        threshold,
                        support,
                        // The study scores every patch; which scans to skip is its result.
                        max_scan_spacing_mm: 100.0,
                    };
                    let mut pred = vec![0u8; base.len()];
                    joined_mask(&base, &on_first, grid, cut.mask_rule(), look, &mut pred)?;
                    variants.push((format!("union-t{threshold}-g{support}"), pred));
                }
            }
            for (variant, pred) in &variants {
                let c = Confusion::from_masks(&patch.mask, pred).map_err(anyhow::Error::msg)?;
                println!(
                    "{},{},{},{},{gt_voxels},{},{variant},{t},{},{},{}",
                    rec.id,
                    rec.seriesuid,
                    rec.label == 1,
                    rec.diameter_mm.unwrap_or(0.0),
                    grid.voxel_mm3(),
                    c.tp,
                    c.fp,
                    c.fn_
                );
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") => dump(&args[1..]),
        Some("score") => score(&args[1..]),
        _ => bail!("usage: zoom_study dump|score ..."),
    }
}
