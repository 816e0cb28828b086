//! `mine-negatives`: hard-negative mining for fine-tuning a model on its own false positives.
//!
//! Input: a *pool* dataset prepared with many negatives per positive (`prepare --neg-ratio`),
//! and a model. Each training negative of the pool goes through one dropout-off pass of the
//! network (no test-time flips: the blobs worth mining are confident in every orientation,
//! and one pass is 1/8 of the shipped model's 8-flip cost, ~0.05 s per 64³ patch here) and is
//! charged the volume it paints outside the ground truth. Output: a dataset with every
//! positive of the pool and `neg_ratio` training negatives per training positive —
//! `hard_fraction` of them the negatives with the most false-positive volume (at least
//! `min_fp_mm3`), the rest drawn at random from the others, so the easy negatives the model
//! already gets right stay in the mix. Validation and test negatives are thinned to the same
//! ratio at random, never by the model.
//!
//! Random negatives alone rarely show the network its confident blobs (a diaphragm dome cut
//! as a 20 mm nodule, a crescent along the heart: docs/model-stages.md): the hard share puts them
//! in every epoch. Patch files are hard-linked from the pool (copied where a link fails), so
//! the output is a self-contained dataset folder without a second copy on the same disk.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use lungseg::model::Model;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::dataset::{PatchDataset, PatchRecord, MANIFEST};
use crate::evaluate::score::split_for_model;

/// File name of the mining report written next to the output manifest.
pub const REPORT: &str = "mining_report.json";

/// How many training negatives to keep, and how many of them hard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MineConfig {
    /// Training negatives per training positive in the output.
    pub neg_ratio: f64,
    /// Share of the kept negatives taken hardest-first.
    pub hard_fraction: f64,
    /// A negative is hard only with at least this false-positive volume (mm³).
    pub min_fp_mm3: f64,
    /// Seeds the draw of the random share.
    pub seed: u64,
}

impl Default for MineConfig {
    fn default() -> Self {
        MineConfig {
            neg_ratio: 1.0,
            hard_fraction: 0.5,
            // A 3 mm sphere: the evaluation's bad-negative volume (`EvalConfig::bad_fp_mm3`).
            min_fp_mm3: crate::metrics::EvalConfig::default().bad_fp_mm3,
            seed: 0,
        }
    }
}

impl MineConfig {
    /// A negative with this false-positive volume may be taken as hard.
    pub fn is_hard(&self, fp_mm3: f64) -> bool {
        fp_mm3 >= self.min_fp_mm3 && fp_mm3 > 0.0
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.neg_ratio.is_finite() && self.neg_ratio >= 0.0,
            "--neg-ratio {} must be finite and >= 0",
            self.neg_ratio
        );
        ensure!(
            (0.0..=1.0).contains(&self.hard_fraction),
            "--hard-fraction {} must be in [0, 1]",
            self.hard_fraction
        );
        ensure!(
            self.min_fp_mm3.is_finite() && self.min_fp_mm3 >= 0.0,
            "--min-fp-mm3 {} must be finite and >= 0",
            self.min_fp_mm3
        );
        Ok(())
    }
}

/// One candidate negative: its index in the pool and the volume the model paints on it
/// outside the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Charged {
    pub index: usize,
    pub fp_mm3: f64,
}

/// Which negatives are kept, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Selection {
    /// Hardest first.
    pub hard: Vec<usize>,
    /// In pool order.
    pub random: Vec<usize>,
}

/// Keeps `n_keep` of `negatives` (all of them when there are fewer): up to
/// `round(hard_fraction · n_keep)` with the largest `fp_mm3` of at least `min_fp_mm3` (ties by
/// pool order), then a seeded uniform draw from the rest.
pub fn select(negatives: &[Charged], n_keep: usize, cfg: &MineConfig) -> Selection {
    let n_keep = n_keep.min(negatives.len());
    let mut by_fp: Vec<&Charged> = negatives.iter().filter(|c| cfg.is_hard(c.fp_mm3)).collect();
    by_fp.sort_by(|a, b| b.fp_mm3.total_cmp(&a.fp_mm3).then(a.index.cmp(&b.index)));
    let n_hard = ((cfg.hard_fraction * n_keep as f64).round() as usize).min(by_fp.len());
    let hard: Vec<usize> = by_fp[..n_hard].iter().map(|c| c.index).collect();
    let taken: HashSet<usize> = hard.iter().copied().collect();
    let mut rest: Vec<usize> = negatives
        .iter()
        .map(|c| c.index)
        .filter(|i| !taken.contains(i))
        .collect();
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    rest.truncate(n_keep - n_hard);
    rest.sort_unstable();
    Selection { hard, random: rest }
}

/// What `mine-negatives` did (written as [`REPORT`]).
#[derive(Clone, Debug, Serialize)]
pub struct MineSummary {
    pub model: PathBuf,
    pub pool: PathBuf,
    pub config: MineConfig,
    pub train_positives: usize,
    pub pool_negatives: usize,
    /// Pool negatives with at least `min_fp_mm3` of false positives.
    pub pool_negatives_hard: usize,
    pub kept_hard: usize,
    pub kept_random: usize,
    /// Mean false-positive volume (mm³) over the pool's training negatives, and over the kept ones.
    pub pool_mean_fp_mm3: f64,
    pub kept_mean_fp_mm3: f64,
    /// Every charged negative: pool patch id and false-positive volume (mm³).
    pub charged: Vec<(String, f64)>,
}

/// Charges every training negative of `pool` under `model`, selects, and writes the output
/// dataset to `out` (which must not hold a manifest yet). `on_patch(done, total)` reports
/// progress.
pub fn mine_negatives(
    model_path: &Path,
    pool: &Path,
    out: &Path,
    cfg: &MineConfig,
    mut on_patch: impl FnMut(usize, usize),
) -> Result<MineSummary> {
    cfg.validate()?;
    ensure!(
        !out.join(MANIFEST).exists(),
        "{} already holds a dataset",
        out.display()
    );
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(pool)?;
    let train = split_for_model(&model, &ds, "train")?;
    let negatives: Vec<usize> = train
        .iter()
        .copied()
        .filter(|&i| ds.records[i].label == 0)
        .collect();
    let positives = train.len() - negatives.len();
    let mut charged = Vec::with_capacity(negatives.len());
    for (done, &i) in negatives.iter().enumerate() {
        charged.push(Charged {
            index: i,
            fp_mm3: false_positive_mm3(&model, &ds, i)?,
        });
        on_patch(done + 1, negatives.len());
    }
    let n_keep = (cfg.neg_ratio * positives as f64).round() as usize;
    let sel = select(&charged, n_keep, cfg);
    let mut kept: HashSet<usize> = sel.hard.iter().chain(&sel.random).copied().collect();
    for split in ["val", "test"] {
        kept.extend(thinned(&ds, split, cfg));
    }
    write_dataset(&ds, out, &kept_records(&ds, &kept))?;
    let summary = MineSummary {
        model: model_path.to_path_buf(),
        pool: pool.to_path_buf(),
        config: cfg.clone(),
        train_positives: positives,
        pool_negatives: charged.len(),
        pool_negatives_hard: charged.iter().filter(|c| cfg.is_hard(c.fp_mm3)).count(),
        kept_hard: sel.hard.len(),
        kept_random: sel.random.len(),
        pool_mean_fp_mm3: mean(charged.iter().map(|c| c.fp_mm3)),
        kept_mean_fp_mm3: mean(
            charged
                .iter()
                .filter(|c| kept.contains(&c.index))
                .map(|c| c.fp_mm3),
        ),
        charged: charged
            .iter()
            .map(|c| (ds.records[c.index].id.clone(), c.fp_mm3))
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&summary)?;
    fs::write(out.join(REPORT), json).with_context(|| format!("writing {REPORT}"))?;
    Ok(summary)
}

/// Voxels of the network's plain dropout-off mask (the model's final mask of that map,
/// `lungseg::mask::final_mask`) outside the patch's ground truth, in mm³.
fn false_positive_mm3(model: &Model, ds: &PatchDataset, i: usize) -> Result<f64> {
    let rec = &ds.records[i];
    let patch = ds.load(i)?;
    let mut prob = vec![0.0f32; patch.hu.len()];
    lungseg::mc::predict(model, &patch.hu, &mut prob, 0)
        .with_context(|| format!("patch {}", rec.id))?;
    let mut pred = vec![0u8; prob.len()];
    lungseg::mask::final_mask(model.config(), &prob, &mut pred)?;
    let fp = pred
        .iter()
        .zip(&patch.mask)
        .filter(|&(&p, &g)| p != 0 && g == 0)
        .count();
    let [sx, sy, sz] = rec.spacing_mm.unwrap_or(model.config().spacing_mm);
    Ok(fp as f64 * sx * sy * sz)
}

/// A seeded uniform draw of `neg_ratio` negatives per positive of `split`: held-out patches
/// never meet the model here, so the validation mix is what `prepare --neg-ratio` would cut.
fn thinned(ds: &PatchDataset, split: &str, cfg: &MineConfig) -> Vec<usize> {
    let idx = ds.split(split);
    let negatives: Vec<Charged> = idx
        .iter()
        .filter(|&&i| ds.records[i].label == 0)
        .map(|&index| Charged { index, fp_mm3: 0.0 })
        .collect();
    let n_keep = (cfg.neg_ratio * (idx.len() - negatives.len()) as f64).round() as usize;
    let random = MineConfig {
        hard_fraction: 0.0,
        ..cfg.clone()
    };
    select(&negatives, n_keep, &random).random
}

/// Every positive, and the negatives in `kept`, in pool order.
fn kept_records<'a>(ds: &'a PatchDataset, kept: &HashSet<usize>) -> Vec<&'a PatchRecord> {
    (0..ds.records.len())
        .filter(|&i| ds.records[i].label != 0 || kept.contains(&i))
        .map(|i| &ds.records[i])
        .collect()
}

/// `records` of `ds` as a dataset in `out`: files linked (or copied) under the same relative
/// paths, one manifest line each.
fn write_dataset(ds: &PatchDataset, out: &Path, records: &[&PatchRecord]) -> Result<()> {
    let mut manifest = Vec::new();
    for rec in records {
        for rel in [&rec.hu, &rec.mask] {
            link_or_copy(&ds.root().join(rel), &out.join(rel))?;
        }
        serde_json::to_writer(&mut manifest, rec)?;
        manifest.write_all(b"\n")?;
    }
    fs::write(out.join(MANIFEST), manifest).with_context(|| format!("{}", out.display()))
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if to.exists() {
        fs::remove_file(to).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Mean of `v`, 0 when empty.
fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// `mine-negatives` on the command line.
#[derive(clap::Args)]
pub struct MineArgs {
    /// The model whose false positives make a negative hard.
    #[arg(long)]
    pub model: PathBuf,
    /// The pool: a dataset prepared with more negatives than training should see.
    #[arg(long)]
    pub pool: PathBuf,
    /// Where the mined dataset goes (must not hold one yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Training negatives per training positive in the output.
    #[arg(long, default_value_t = MineConfig::default().neg_ratio)]
    pub neg_ratio: f64,
    /// Share of the kept negatives taken hardest-first.
    #[arg(long, default_value_t = MineConfig::default().hard_fraction)]
    pub hard_fraction: f64,
    /// Least false-positive volume (mm³) that makes a negative hard.
    #[arg(long, default_value_t = MineConfig::default().min_fp_mm3)]
    pub min_fp_mm3: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl MineArgs {
    pub fn run(&self) -> Result<()> {
        let cfg = MineConfig {
            neg_ratio: self.neg_ratio,
            hard_fraction: self.hard_fraction,
            min_fp_mm3: self.min_fp_mm3,
            seed: self.seed,
        };
        let s = mine_negatives(&self.model, &self.pool, &self.out, &cfg, |done, total| {
            if done % 200 == 0 || done == total {
                eprintln!("charged {done}/{total} negatives");
            }
        })?;
        println!(
            "{} training negatives charged ({} with >= {:.1} mm³ of false positives, mean {:.1} \
             mm³); kept {} hard + {} random for {} positives (mean {:.1} mm³); dataset in {}",
            s.pool_negatives,
            s.pool_negatives_hard,
            cfg.min_fp_mm3,
            s.pool_mean_fp_mm3,
            s.kept_hard,
            s.kept_random,
            s.train_positives,
            s.kept_mean_fp_mm3,
            self.out.display()
        );
        Ok(())
    }
}
