//! Would a second, finer look at the requested point segment small nodules better? Nodules
//! below 6 mm hold most of the default model's Dice deficit (0.4–0.6 against 0.85 from 10 mm),
//! and a 4 mm nodule is 4 voxels across on the model's 1 mm grid. The network is fully
//! convolutional, so the same weights can read the point's neighbourhood at 0.5 mm, where the
//! nodule looks twice its size, and their mean can be brought back to the 1 mm grid.
//! A study on calibration patches (never a test seed: it informs a choice).
//!
//! ```text
//! cargo run --release -p lungseg-train --example zoom_study -- dump MODEL COARSE FINE SPLIT SEED MEANS
//! cargo run --release -p lungseg-train --example zoom_study -- score MODEL COARSE SPLIT MEANS > z.csv
//! ```
//!
//! COARSE and FINE are `prepare` outputs of the same scans and seed at the model's spacing and
//! at half of it (the same points: `prepare`'s draws do not depend on the spacing; each pair is
//! checked). `dump` writes each patch's MC mean at both (`evaluate`'s samples and seeds) to
//! MEANS, the slow part; `score` reads them back. The fine mean is averaged onto the coarse
//! voxels it covers (the central 31³, weights ¼ ½ ¼ per axis: the fine grid has a voxel on
//! every coarse centre and one halfway between). Variants, each cut by the model's mask rule
//! (threshold, components) at thresholds 0.5–0.7 and scored against the coarse label:
//! - `base`: the coarse mean alone;
//! - `zoom-d<D>-g<G>`, `max-d<D>-g<G>`: inside the central region the fine mean replaces the
//!   coarse one, or the larger of the two is kept; only where the coarse mask (at the model's
//!   own rule) holds less than a ball of `D` mm there (a cascade the engine could run, paying
//!   for the second pass only when the first found nothing or something small; `inf`: always),
//!   and only the mask components holding a voxel where the coarse mean reaches `G`.
//!
//! One CSV row per patch, variant and threshold (`scripts/zoom_study.py` scores them by scan).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::mask::{Grid, PatchGrid};
use lungseg::model::Model;
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

/// The fine cube's mean on the coarse grid where it covers it: `None` outside the central region.
/// Both cubes have `n` voxels per axis and the same centre voxel `n / 2`; fine voxel
/// `2 i - n / 2` lies on coarse voxel `i`'s centre, its neighbours half a coarse voxel away.
fn fine_on_coarse(fine: &[f32], n: usize) -> Vec<Option<f32>> {
    const W: [(isize, f32); 3] = [(-1, 0.25), (0, 0.5), (1, 0.25)];
    let h = (n / 2) as isize;
    let centre_of = |i: usize| 2 * i as isize - h;
    let inside = |i: usize| centre_of(i) >= 1 && centre_of(i) + 1 < n as isize;
    let mut out = vec![None; n * n * n];
    for z in (0..n).filter(|&z| inside(z)) {
        for y in (0..n).filter(|&y| inside(y)) {
            for x in (0..n).filter(|&x| inside(x)) {
                let mut s = 0.0;
                for (dz, wz) in W {
                    for (dy, wy) in W {
                        for (dx, wx) in W {
                            let [fz, fy, fx] = [
                                (centre_of(z) + dz) as usize,
                                (centre_of(y) + dy) as usize,
                                (centre_of(x) + dx) as usize,
                            ];
                            s += wz * wy * wx * fine[(fz * n + fy) * n + fx];
                        }
                    }
                }
                out[(z * n + y) * n + x] = Some(s);
            }
        }
    }
    out
}

/// The coarse mean with the fine one, scaled by `scale`, where that is larger: cut at a
/// threshold `t`, the union of the coarse mask at `t` and the fine mask at `t / scale`.
fn union_mean(coarse: &[f32], fine: &[Option<f32>], scale: f32) -> Vec<f32> {
    coarse
        .iter()
        .zip(fine)
        .map(|(&c, f)| f.map_or(c, |f| c.max(f * scale)))
        .collect()
}

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

/// The mask of `mean` by `rule`, keeping only the components that hold a voxel where the
/// coarse mean reaches `gate` (0: every component).
fn gated_mask(
    mean: &[f32],
    coarse: &[f32],
    grid: PatchGrid,
    rule: &EvalConfig,
    gate: f32,
) -> Result<Vec<u8>> {
    let mut mask = predicted_mask(mean, grid, rule).map_err(anyhow::Error::msg)?;
    if gate > 0.0 {
        let g = Grid::new(mask.len(), grid.dims_zyx)?;
        let kept = g.components_where(
            |i| mask[i] != 0,
            |c| c.iter().any(|&i| coarse[i as usize] >= gate),
        )?;
        mask.fill(0);
        for i in kept {
            mask[i as usize] = 1;
        }
    }
    Ok(mask)
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
        let on_coarse = fine_on_coarse(&fine, n);
        let grid = rec.grid(model.config().spacing_mm);
        let gt_voxels = patch.mask.iter().filter(|&&v| v != 0).count();
        for t in THRESHOLDS {
            let cut = EvalConfig {
                fg_threshold: t,
                ..rule.clone()
            };
            let mut variants = vec![("base".to_string(), base.clone(), 0.0)];
            for tf in FINE_THRESHOLDS {
                for gate in GATES {
                    let mean = union_mean(&base, &on_coarse, t / tf);
                    variants.push((format!("union-t{tf}-g{gate}"), mean, gate));
                }
            }
            for (variant, mean, gate) in &variants {
                let pred = gated_mask(mean, &base, grid, &cut, *gate)?;
                let c = Confusion::from_masks(&patch.mask, &pred).map_err(anyhow::Error::msg)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_fine_cube_lands_unchanged_on_the_central_coarse_voxels() {
        let n = 8;
        let out = fine_on_coarse(&vec![0.7; n * n * n], n);
        // Coarse voxel i is covered when fine voxels 2i - 5 ..= 2i - 3 exist: i = 3..=5.
        let covered: Vec<usize> = (0..n)
            .filter(|&i| out[(i * n + i) * n + i].is_some())
            .collect();
        assert_eq!(covered, vec![3, 4, 5]);
        assert!(out.iter().flatten().all(|&v| (v - 0.7).abs() < 1e-6));
    }

    #[test]
    fn a_fine_voxel_on_a_coarse_centre_weighs_an_eighth() {
        let n = 8;
        let mut fine = vec![0.0; n * n * n];
        fine[(4 * n + 4) * n + 4] = 1.0; // coarse voxel 4's centre: 2 * 4 - 4
        let out = fine_on_coarse(&fine, n);
        assert_eq!(out[(4 * n + 4) * n + 4], Some(0.125));
        assert_eq!(out[(3 * n + 4) * n + 4], Some(0.0));
    }
}
