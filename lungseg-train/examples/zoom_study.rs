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
//! cargo run --release -p lungseg-train --example zoom_study -- wide MODEL COARSE SPLIT MEANS WIDE > w.csv
//! cargo run --release -p lungseg-train --example zoom_study -- looks MODEL COARSE SPLIT MEANS > l.csv
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
//!
//! Two later studies of the shipped second look read the same dumps: `wide` joins the engine's
//! final mask with a look at *twice* the spacing (WIDE: `dump` with 2 mm patches as FINE; the
//! masses the 64 mm patch cuts off), `looks` gives the two looks' disagreement per patch as a
//! review-score candidate (`scripts/look_disagreement_study.py`). docs/model-stages.md has both.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use lungseg::model::Model;
use lungseg::second_look::{can_change, joined_mask, onto_first_grid, SecondLook};
use lungseg::wide_look::{self, WideLook};
use lungseg_train::dataset::{PatchDataset, PatchRecord};
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

/// `dump`'s mean of `kind` (`coarse` or `fine`) for `rec` in `dir`.
fn read_mean(dir: &str, rec: &PatchRecord, kind: &str) -> Result<Vec<f32>> {
    let n = rec.shape.iter().product();
    read_f32(&Path::new(dir).join(format!("{}.{kind}.f32", rec.id)), n)
}

/// The columns of `score`'s and `wide`'s rows.
const CONFUSION_HEADER: &str =
    "id,scan,centred_on_nodule,diameter_mm,gt_voxels,voxel_mm3,variant,threshold,tp,fp,fn";

/// One row per variant: its mask's confusion against `gt`, the patch cut at `threshold`.
fn print_confusions(
    rec: &PatchRecord,
    gt: &[u8],
    voxel_mm3: f64,
    threshold: f32,
    variants: &[(String, Vec<u8>)],
) -> Result<()> {
    let gt_voxels = gt.iter().filter(|&&v| v != 0).count();
    for (variant, pred) in variants {
        let c = Confusion::from_masks(gt, pred).map_err(anyhow::Error::msg)?;
        println!(
            "{},{},{},{},{gt_voxels},{voxel_mm3},{variant},{threshold},{},{},{}",
            rec.id,
            rec.seriesuid,
            rec.label == 1,
            rec.diameter_mm.unwrap_or(0.0),
            c.tp,
            c.fp,
            c.fn_
        );
    }
    Ok(())
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
        // A coarse mean already in `out` (the same patch, seed and samples) is kept: a
        // second spacing can then be dumped beside a first without running it again.
        let coarse_path = out.join(format!("{}.coarse.f32", rec.id));
        if !coarse_path.exists() {
            let base = run_patch(&model, rec, &cds.load(i)?, SAMPLES, seed)?.1.mean;
            write_f32(&coarse_path, &base)?;
        }
        let fine_mean = run_patch(&model, frec, &fds.load(j)?, SAMPLES, seed)?
            .1
            .mean;
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
    let idx = split_for_model(&model, &cds, split)?;
    let rule = EvalConfig::default().for_model(&model);
    println!("{CONFUSION_HEADER}");
    for &i in &idx {
        let rec = &cds.records[i];
        let patch = cds.load(i)?;
        let (base, fine) = (
            read_mean(means, rec, "coarse")?,
            read_mean(means, rec, "fine")?,
        );
        let grid = rec.grid(model.config().spacing_mm);
        let on_first = onto_first_grid(&fine, grid.dims_zyx)?;
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
            print_confusions(rec, &patch.mask, grid.voxel_mm3(), t, &variants)?;
        }
    }
    Ok(())
}

/// Wide-look thresholds, supports and least component volumes (mm³: none, a 20 mm ball, a
/// 30 mm ball) of the `wide` variants.
const WIDE_THRESHOLDS: [f32; 3] = [0.5, 0.6, 0.7];
const WIDE_SUPPORTS: [f32; 2] = [0.55, 0.3];
const WIDE_MIN_MM3: [f64; 3] = [0.0, 4188.8, 14137.2];

/// A model with a second look and the patches of a split at its spacing.
struct Shipped {
    model: Model,
    look: SecondLook,
    cds: PatchDataset,
    idx: Vec<usize>,
}

impl Shipped {
    fn open(model: &str, coarse: &str, split: &str) -> Result<Shipped> {
        let model = Model::open(Path::new(model))?;
        let look = model
            .config()
            .second_look
            .context("the model has no second look")?;
        let cds = PatchDataset::open(Path::new(coarse))?;
        let idx = split_for_model(&model, &cds, split)?;
        Ok(Shipped {
            model,
            look,
            cds,
            idx,
        })
    }
}

/// One CSV row per patch and variant: `current` (the engine's final mask: with the second look
/// on scans it runs on, the model's own mask on coarser ones) and `wide-T<T>-G<G>-V<V>`, the
/// current mask joined by the components of a look at twice the spacing (WIDE's `<id>.fine.f32`, `dump` with the 2 mm patches) at threshold `T` in which the
/// first mean reaches `G` and that hold at least `V` mm³ of the patch.
fn wide(args: &[String]) -> Result<()> {
    let [model, coarse, split, means, wide] = args else {
        bail!("usage: zoom_study wide MODEL COARSE SPLIT MEANS WIDE_MEANS");
    };
    let Shipped {
        model,
        look,
        cds,
        idx,
    } = Shipped::open(model, coarse, split)?;
    let rule = EvalConfig::default().for_model(&model);
    println!("{CONFUSION_HEADER}");
    for &i in &idx {
        let rec = &cds.records[i];
        let patch = cds.load(i)?;
        let (base, wide_mean) = (
            read_mean(means, rec, "coarse")?,
            read_mean(wide, rec, "fine")?,
        );
        let grid = rec.grid(model.config().spacing_mm);
        // The engine's final mask: the second look joined on scans it runs on, the model's
        // own mask on coarser ones (and where the manifest does not say).
        let runs = rec.scan_spacing_mm.is_some_and(|s| look.runs_on(s));
        let current = if runs {
            let mut joined = vec![0u8; base.len()];
            let on_first = onto_first_grid(&read_mean(means, rec, "fine")?, grid.dims_zyx)?;
            joined_mask(&base, &on_first, grid, rule.mask_rule(), look, &mut joined)?;
            joined
        } else {
            predicted_mask(&base, grid, &rule).map_err(anyhow::Error::msg)?
        };
        let wide_first = wide_look::onto_first_grid(&wide_mean, grid.dims_zyx)?;
        let mut variants = vec![("current".to_string(), current.clone())];
        for threshold in WIDE_THRESHOLDS {
            for support in WIDE_SUPPORTS {
                for min_component_mm3 in WIDE_MIN_MM3 {
                    let look = WideLook {
                        threshold,
                        support,
                        min_component_mm3,
                    };
                    let mut pred = current.clone();
                    wide_look::join(&base, &wide_first, grid, look, &mut pred)?;
                    variants.push((
                        format!("wide-T{threshold}-G{support}-V{min_component_mm3}"),
                        pred,
                    ));
                }
            }
        }
        let threshold = if runs {
            look.first_threshold
        } else {
            rule.fg_threshold
        };
        print_confusions(rec, &patch.mask, grid.voxel_mm3(), threshold, &variants)?;
    }
    Ok(())
}

/// Mask voxels (first-grid mm³) at which the looks' disagreement counts in full in
/// `looks`' weighted disagreement: below it the disagreement is scaled by the masks' size, so
/// one look's speck does not count as a whole disagreement.
const LOOKS_FULL_VOXELS: f64 = 50.0;

/// One CSV row per patch: how much the two looks' masks disagree on the voxels both see
/// (`1 − Dice` of the first mean at the second look's first threshold and the second mean at
/// its threshold, 0 where both are empty; `weighted` scales it by the masks' voxels up to
/// [`LOOKS_FULL_VOXELS`]) and whether the engine runs the second look there
/// (`lungseg::second_look::can_change`). Review-score candidates for
/// `scripts/look_disagreement_study.py`.
fn looks(args: &[String]) -> Result<()> {
    let [model, coarse, split, means] = args else {
        bail!("usage: zoom_study looks MODEL COARSE SPLIT MEANS");
    };
    let Shipped {
        model,
        look,
        cds,
        idx,
    } = Shipped::open(model, coarse, split)?;
    println!("id,first_voxels,second_voxels,both_voxels,disagreement,weighted,engine_runs");
    for &i in &idx {
        let rec = &cds.records[i];
        let (base, fine) = (
            read_mean(means, rec, "coarse")?,
            read_mean(means, rec, "fine")?,
        );
        let dims = rec.grid(model.config().spacing_mm).dims_zyx;
        let on_first = onto_first_grid(&fine, dims)?;
        let (mut a, mut b, mut both) = (0u64, 0u64, 0u64);
        for (&c, s) in base.iter().zip(&on_first) {
            let Some(s) = s else { continue };
            let (in_a, in_b) = (c >= look.first_threshold, *s >= look.threshold);
            a += u64::from(in_a);
            b += u64::from(in_b);
            both += u64::from(in_a && in_b);
        }
        let disagreement = if a + b == 0 {
            0.0
        } else {
            1.0 - 2.0 * both as f64 / (a + b) as f64
        };
        let weighted = disagreement * ((a + b) as f64 / LOOKS_FULL_VOXELS).min(1.0);
        let runs = can_change(&base, dims, look.support)?;
        println!("{},{a},{b},{both},{disagreement},{weighted},{runs}", rec.id);
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") => dump(&args[1..]),
        Some("score") => score(&args[1..]),
        Some("wide") => wide(&args[1..]),
        Some("looks") => looks(&args[1..]),
        _ => bail!("usage: zoom_study dump|score|wide|looks ..."),
    }
}
