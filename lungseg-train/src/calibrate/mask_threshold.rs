//! The model's mask threshold (`config.mask_threshold`) chosen on calibration patches, and
//! with it, when candidates are given, the test-time flips of its MC samples
//! (`config.test_time_flips`: how many mirrored orientations the samples cycle through) and
//! the small-component rule of the final mask (`config.min_component_mm3` and
//! `config.min_component_spare_radius_mm`, `lungseg::mask::SmallComponents`) and the lower
//! threshold of the lesion at the point (`config.point_mask_threshold` and
//! `config.point_radius_mm`, `lungseg::mask::PointRule`).
//!
//! The threshold the network was trained for (0.5: BCE + soft Dice) is not the one that
//! segments its MC mean best: averaging dropout samples spreads a small nodule's probability
//! over its border, so a 0.5 cut can shrink or lose it. One MC pass over the split gives each
//! patch's mean map (the probabilities do not depend on the threshold; one pass per flips
//! candidate, since the flips do change them); every (flips, threshold, point rule, minimum
//! component, spare radius) is then judged on those maps by the evaluation's own overlap and
//! bad-patch definitions:
//!
//! - objective: mean Dice over the nodule patches (the headline of the evaluation);
//! - constraint ([`NegativeCost::within`]): no more bad negative patches (false-positive
//!   volume above `EvalConfig::bad_fp_mm3`) and no larger mean false-positive volume over the
//!   negative patches than at the model's current flips and threshold, so a lower cut cannot
//!   buy Dice with false alarms the review flag would then have to catch — or, with
//!   `max_bad_negatives` / `max_mean_fp_mm3`, than those numbers (e.g. the shipped model's, when the model is a candidate to replace it: its own
//!   current setting is then no reference);
//! - ties (mean Dice within [`DICE_TIE`]) go to the model's current flips, then to the
//!   model's current point rule (a new one must gain more than a tie), then to the threshold
//!   nearest the current one, then to the minimum component nearest the current one, then to
//!   the spare radius nearest the current one, then to fewer flips (fewer reruns of the
//!   shared encoder, larger batches on a GPU), then to the point rule with the higher
//!   threshold and the smaller radius.
//!
//! Validation data only: the calibration scans, never the test split.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use lungseg::mc::{self, McOptions, UncertaintyMaps};
use lungseg::model::{Model, ModelConfig};
use serde::Serialize;

use crate::dataset::PatchDataset;
use crate::evaluate::score::{patch_seed, split_for_model};
use crate::metrics::review_scores::is_bad;
use crate::metrics::{Confusion, EvalConfig, NegativeCost, PatchClass};
use crate::model_file::{replace_file, ModelFile};
use lungseg::mask::{ComponentScratch, Grid, MaskRule, PatchGrid, PointRule, SmallComponents};

/// Mean-Dice differences below this count as ties.
pub const DICE_TIE: f64 = 0.002;

/// Provenance key of the recorded choice.
pub const PROVENANCE_KEY: &str = "mask_threshold_choice";

/// The candidates tried by default: 0.10, 0.15, …, 0.90.
pub fn default_candidates() -> Vec<f32> {
    (2..=18).map(|k| k as f32 * 0.05).collect()
}

/// What to choose on.
#[derive(Clone, Debug)]
pub struct MaskThresholdOptions {
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub candidates: Vec<f32>,
    /// Candidate `test_time_flips` (1, 2, 4, 8); the model's own is always judged, so empty
    /// keeps it.
    pub flips: Vec<u32>,
    /// Candidate `min_component_mm3` (mm³, ≥ 0); the model's own is always judged, so empty
    /// keeps it.
    pub min_components_mm3: Vec<f64>,
    /// Candidate `min_component_spare_radius_mm` (mm, ≥ 0), judged with every non-zero
    /// minimum; the model's own is always judged, so empty keeps it.
    pub spare_radii_mm: Vec<f64>,
    /// Candidate `point_mask_threshold` (in [0, 1]), each judged with every candidate radius
    /// and every mask threshold above it; the model's own rule and no rule are always judged.
    pub point_thresholds: Vec<f32>,
    /// Candidate `point_radius_mm` (mm, > 0) of the point rules.
    pub point_radii_mm: Vec<f64>,
    /// The constraint's bound on bad negatives; `None`: the count at the model's current
    /// setting.
    pub max_bad_negatives: Option<usize>,
    /// The constraint's bound on the mean false-positive volume over the negative patches,
    /// mm³; `None`: the mean at the model's current setting.
    pub max_mean_fp_mm3: Option<f64>,
    /// Bad-patch definition (`bad_fp_mm3`); its `fg_threshold` is ignored.
    pub eval: EvalConfig,
}

impl Default for MaskThresholdOptions {
    fn default() -> Self {
        MaskThresholdOptions {
            split: "val".into(),
            samples: 20,
            seed: 0,
            candidates: default_candidates(),
            flips: Vec::new(),
            min_components_mm3: Vec::new(),
            spare_radii_mm: Vec::new(),
            point_thresholds: Vec::new(),
            point_radii_mm: Vec::new(),
            max_bad_negatives: None,
            max_mean_fp_mm3: None,
            eval: EvalConfig::default(),
        }
    }
}

/// One candidate (flips, threshold, point rule, minimum component, spare radius) judged on
/// the split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdRow {
    pub test_time_flips: u32,
    pub threshold: f32,
    pub min_component_mm3: f64,
    pub min_component_spare_radius_mm: f64,
    /// The point rule (both 0: none; canonical, `PointRule::canonical`).
    pub point_mask_threshold: f32,
    pub point_radius_mm: f64,
    /// Mean Dice over the nodule patches.
    pub mean_dice: f64,
    /// Negative patches whose false-positive volume exceeds the bad-patch limit.
    pub bad_negatives: usize,
    /// Mean false-positive volume over the negative patches, mm³.
    pub mean_fp_mm3: f64,
}

impl ThresholdRow {
    pub fn negative_cost(&self) -> NegativeCost {
        NegativeCost {
            bad: self.bad_negatives,
            mean_fp_mm3: self.mean_fp_mm3,
        }
    }
}

/// The result, recorded in the model's provenance when written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MaskThresholdChoice {
    pub previous: f32,
    pub chosen: f32,
    pub previous_flips: u32,
    pub chosen_flips: u32,
    pub previous_min_component_mm3: f64,
    pub chosen_min_component_mm3: f64,
    pub previous_min_component_spare_radius_mm: f64,
    pub chosen_min_component_spare_radius_mm: f64,
    pub previous_point_mask_threshold: f32,
    pub chosen_point_mask_threshold: f32,
    pub previous_point_radius_mm: f64,
    pub chosen_point_radius_mm: f64,
    pub nodule_patches: usize,
    pub negative_patches: usize,
    pub bad_fp_mm3: f64,
    pub data: String,
    pub split: String,
    pub samples: u32,
    pub seed: u64,
    pub rows: Vec<ThresholdRow>,
}

/// One candidate cut of the mean map: threshold, point rule and small-component rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cut {
    pub threshold: f32,
    pub point: PointRule,
    pub small: SmallComponents,
}

impl Cut {
    /// The mask before the small-component rule, whose components are labelled once for all
    /// the small rules of a (threshold, point rule).
    fn labelling(&self) -> MaskRule {
        MaskRule {
            threshold: self.threshold,
            point: self.point,
            small: SmallComponents::default(),
        }
    }
}

impl MaskThresholdChoice {
    /// The setting the model had.
    pub fn previous_setting(&self) -> Setting {
        Setting {
            test_time_flips: self.previous_flips,
            threshold: self.previous,
            min_component_mm3: self.previous_min_component_mm3,
            spare_radius_mm: self.previous_min_component_spare_radius_mm,
            point: PointRule {
                threshold: self.previous_point_mask_threshold,
                radius_mm: self.previous_point_radius_mm,
            },
        }
    }

    /// The setting chosen.
    pub fn chosen_setting(&self) -> Setting {
        Setting {
            test_time_flips: self.chosen_flips,
            threshold: self.chosen,
            min_component_mm3: self.chosen_min_component_mm3,
            spare_radius_mm: self.chosen_min_component_spare_radius_mm,
            point: PointRule {
                threshold: self.chosen_point_mask_threshold,
                radius_mm: self.chosen_point_radius_mm,
            },
        }
    }
}

/// Per-patch overlap of every candidate cut, accumulated over the split.
struct Tally {
    flips: u32,
    cuts: Vec<Cut>,
    bad_fp_mm3: f64,
    dice_sum: Vec<f64>,
    /// Per cut, each negative patch's (false-positive volume in mm³, bad).
    negative: Vec<Vec<(f64, bool)>>,
    nodules: usize,
    negatives: usize,
}

impl Tally {
    fn new(flips: u32, cuts: &[Cut], bad_fp_mm3: f64) -> Self {
        let n = cuts.len();
        Tally {
            flips,
            cuts: cuts.to_vec(),
            bad_fp_mm3,
            dice_sum: vec![0.0; n],
            negative: vec![Vec::new(); n],
            nodules: 0,
            negatives: 0,
        }
    }

    /// One nodule or negative patch ([`PatchClass::Partial`] ones are in no statistic).
    fn add(&mut self, class: PatchClass, gt: &[u8], mean: &[f32], grid: PatchGrid) -> Result<()> {
        let nodule = class == PatchClass::Nodule;
        if nodule {
            self.nodules += 1;
        } else {
            self.negatives += 1;
        }
        let mut components: Option<(MaskRule, Vec<ComponentOverlap>)> = None;
        let mut cut_mask = vec![0u8; mean.len()];
        let mut scratch = ComponentScratch::new(mean.len())?;
        for (k, cut) in self.cuts.iter().enumerate() {
            let labelling = cut.labelling();
            if components.as_ref().map(|c| c.0) != Some(labelling) {
                labelling.cut(mean, grid, &mut cut_mask, &mut scratch)?;
                let c = component_overlaps(gt, &cut_mask, grid)?;
                components = Some((labelling, c));
            }
            let (_, comps) = components.as_ref().expect("set above");
            let c = confusion_of_kept(gt, comps, grid.voxel_mm3(), cut.small);
            if nodule {
                self.dice_sum[k] += c.dice();
            } else {
                let fp = c.fp as f64 * grid.voxel_mm3();
                let bad = is_bad(class, c.dice(), fp, 0.0, self.bad_fp_mm3);
                self.negative[k].push((fp, bad));
            }
        }
        Ok(())
    }

    fn rows(&self) -> Vec<ThresholdRow> {
        (0..self.cuts.len())
            .map(|k| {
                let cost = NegativeCost::of_patches(self.negative[k].iter().copied());
                ThresholdRow {
                    test_time_flips: self.flips,
                    threshold: self.cuts[k].threshold,
                    min_component_mm3: self.cuts[k].small.min_mm3,
                    min_component_spare_radius_mm: self.cuts[k].small.spare_radius_mm,
                    point_mask_threshold: self.cuts[k].point.threshold,
                    point_radius_mm: self.cuts[k].point.radius_mm,
                    mean_dice: if self.nodules > 0 {
                        self.dice_sum[k] / self.nodules as f64
                    } else {
                        0.0
                    },
                    bad_negatives: cost.bad,
                    mean_fp_mm3: cost.mean_fp_mm3,
                }
            })
            .collect()
    }
}

/// One 26-connected component of a thresholded map: its voxels, those inside the truth, and
/// the squared distance (mm²) of its voxel nearest to the patch centre.
#[derive(Clone, Copy, Debug)]
struct ComponentOverlap {
    voxels: u64,
    in_truth: u64,
    nearest_mm2: f64,
}

/// The components of `cut` (0/1; `lungseg::mask`'s labelling) with their overlap.
fn component_overlaps(gt: &[u8], cut: &[u8], grid: PatchGrid) -> Result<Vec<ComponentOverlap>> {
    ensure!(gt.len() == cut.len(), "mask and mean map differ in length");
    let labels = Grid::new(cut.len(), grid.dims_zyx)?;
    let mut out = Vec::new();
    labels.components_where(
        |i| cut[i] != 0,
        |c| {
            out.push(ComponentOverlap {
                voxels: c.len() as u64,
                in_truth: c.iter().filter(|&&i| gt[i as usize] != 0).count() as u64,
                nearest_mm2: grid.nearest_centre_mm2(&labels, c),
            });
            false
        },
    )?;
    Ok(out)
}

/// The confusion of the mask that keeps the components `rule` keeps: what
/// `lungseg::mask::drop_small_components` leaves, counted without redrawing it.
fn confusion_of_kept(
    gt: &[u8],
    comps: &[ComponentOverlap],
    voxel_mm3: f64,
    rule: SmallComponents,
) -> Confusion {
    let (mut tp, mut pred) = (0u64, 0u64);
    for c in comps
        .iter()
        .filter(|c| !rule.drops(c.voxels as f64 * voxel_mm3, c.nearest_mm2))
    {
        tp += c.in_truth;
        pred += c.voxels;
    }
    let truth = foreground_voxels(gt);
    Confusion {
        tp,
        fp: pred - tp,
        fn_: truth - tp,
        tn: gt.len() as u64 - truth - (pred - tp),
    }
}

/// A model's mask setting: test-time flips, threshold, minimum component, spare radius and
/// point rule (canonical: `PointRule::canonical`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setting {
    pub test_time_flips: u32,
    pub threshold: f32,
    pub min_component_mm3: f64,
    pub spare_radius_mm: f64,
    pub point: PointRule,
}

impl Setting {
    fn of(r: &ThresholdRow) -> Setting {
        Setting {
            test_time_flips: r.test_time_flips,
            threshold: r.threshold,
            min_component_mm3: r.min_component_mm3,
            spare_radius_mm: r.min_component_spare_radius_mm,
            point: PointRule {
                threshold: r.point_mask_threshold,
                radius_mm: r.point_radius_mm,
            },
        }
    }

    /// `config`'s setting, its small-component rule canonical (no radius without a minimum,
    /// `SmallComponents::canonical`), as the candidate rows hold it.
    pub fn of_config(config: &ModelConfig) -> Setting {
        let small = SmallComponents::of(config).canonical();
        Setting {
            test_time_flips: config.test_time_flips,
            threshold: config.mask_threshold,
            min_component_mm3: small.min_mm3,
            spare_radius_mm: small.spare_radius_mm,
            point: PointRule::of(config).canonical(config.mask_threshold),
        }
    }

    fn small(&self) -> SmallComponents {
        SmallComponents {
            min_mm3: self.min_component_mm3,
            spare_radius_mm: self.spare_radius_mm,
        }
    }

    /// `r` is this setting's row.
    pub fn is(&self, r: &ThresholdRow) -> bool {
        Setting::of(r) == *self
    }
}

/// The rule of the module doc on the judged candidates; `current` is the row of the model's
/// flips and threshold (the constraint's reference). The chosen (flips, threshold); `None`
/// when no row satisfies the constraint.
pub fn choose(rows: &[ThresholdRow], current: &ThresholdRow) -> Option<Setting> {
    choose_within(rows, current, current.negative_cost())
}

/// [`choose`] with the constraint `bound` instead of the current row's costs (`current`
/// still breaks ties).
pub fn choose_within(
    rows: &[ThresholdRow],
    current: &ThresholdRow,
    bound: NegativeCost,
) -> Option<Setting> {
    let allowed: Vec<&ThresholdRow> = rows
        .iter()
        .filter(|r| r.negative_cost().within(&bound))
        .collect();
    let best = allowed
        .iter()
        .map(|r| r.mean_dice)
        .fold(f64::NEG_INFINITY, f64::max);
    allowed
        .iter()
        .filter(|r| r.mean_dice >= best - DICE_TIE)
        .min_by(|a, b| {
            let point_of = |r: &ThresholdRow| (r.point_mask_threshold, r.point_radius_mm);
            let key = |r: &ThresholdRow| {
                (
                    r.test_time_flips != current.test_time_flips,
                    point_of(r) != point_of(current),
                    (r.threshold - current.threshold).abs(),
                    (r.min_component_mm3 - current.min_component_mm3).abs(),
                    (r.min_component_spare_radius_mm - current.min_component_spare_radius_mm).abs(),
                    r.test_time_flips,
                    -r.point_mask_threshold,
                    r.point_radius_mm,
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(ka.2.total_cmp(&kb.2))
                .then(ka.3.total_cmp(&kb.3))
                .then(ka.4.total_cmp(&kb.4))
                .then(ka.5.cmp(&kb.5))
                .then(ka.6.total_cmp(&kb.6))
                .then(ka.7.total_cmp(&kb.7))
        })
        .map(|r| Setting::of(r))
}

/// One MC pass over `split` of `dataset` per flips candidate and the choice among
/// `opts.flips` × `opts.candidates` (the model's current flips and threshold are always judged
/// too); `on_patch` after each patch.
pub fn choose_mask_threshold(
    model_path: &Path,
    dataset: &Path,
    opts: &MaskThresholdOptions,
    on_patch: impl FnMut(),
) -> Result<MaskThresholdChoice> {
    check_candidates(opts)?;
    let model = Model::open(model_path)?;
    let ds = PatchDataset::open(dataset)?;
    let idx = split_for_model(&model, &ds, &opts.split)?;
    let previous = Setting::of_config(model.config());
    let previous_flips = previous.test_time_flips;
    let cuts = candidate_cuts(opts, previous);
    let flips = with_current(&opts.flips, previous_flips, u32::cmp);
    let mut variants = Vec::with_capacity(flips.len());
    for &f in &flips {
        let m = if f == previous_flips {
            Model::open(model_path)?
        } else {
            with_flips(model_path, f).with_context(|| format!("test_time_flips {f}"))?
        };
        variants.push((m, Tally::new(f, &cuts, opts.eval.bad_fp_mm3)));
    }
    let spacing = model.config().spacing_mm;
    tally_patches(&ds, &idx, spacing, opts, &mut variants, on_patch)?;
    let (nodules, negatives) = (variants[0].1.nodules, variants[0].1.negatives);
    ensure!(nodules > 0, "split '{}' has no nodule patches", opts.split);
    let rows: Vec<ThresholdRow> = variants.iter().flat_map(|(_, t)| t.rows()).collect();
    let current = rows
        .iter()
        .find(|r| previous.is(r))
        .expect("the current setting is a candidate");
    let bound = NegativeCost {
        bad: opts.max_bad_negatives.unwrap_or(current.bad_negatives),
        mean_fp_mm3: opts.max_mean_fp_mm3.unwrap_or(current.mean_fp_mm3),
    };
    let chosen = choose_within(&rows, current, bound).with_context(|| {
        format!(
            "no candidate has at most {} bad negative patches and a mean false-positive \
             volume of at most {} mm³",
            bound.bad, bound.mean_fp_mm3
        )
    })?;
    Ok(MaskThresholdChoice {
        previous: previous.threshold,
        chosen: chosen.threshold,
        previous_flips,
        chosen_flips: chosen.test_time_flips,
        previous_min_component_mm3: previous.min_component_mm3,
        chosen_min_component_mm3: chosen.min_component_mm3,
        previous_min_component_spare_radius_mm: previous.spare_radius_mm,
        chosen_min_component_spare_radius_mm: chosen.spare_radius_mm,
        previous_point_mask_threshold: previous.point.threshold,
        chosen_point_mask_threshold: chosen.point.threshold,
        previous_point_radius_mm: previous.point.radius_mm,
        chosen_point_radius_mm: chosen.point.radius_mm,
        nodule_patches: nodules,
        negative_patches: negatives,
        bad_fp_mm3: opts.eval.bad_fp_mm3,
        data: dataset.display().to_string(),
        split: opts.split.clone(),
        samples: opts.samples,
        seed: opts.seed,
        rows,
    })
}

fn check_candidates(opts: &MaskThresholdOptions) -> Result<()> {
    for &t in &opts.candidates {
        ensure!(
            t > 0.0 && t < 1.0,
            "candidate mask threshold {t} is not in (0, 1)"
        );
    }
    for &v in &opts.min_components_mm3 {
        ensure!(
            v.is_finite() && v >= 0.0,
            "candidate minimum component {v} mm³ is not finite and >= 0"
        );
    }
    for &r in &opts.spare_radii_mm {
        ensure!(
            r.is_finite() && r >= 0.0,
            "candidate spare radius {r} mm is not finite and >= 0"
        );
    }
    for &t in &opts.point_thresholds {
        ensure!(
            (0.0..=1.0).contains(&t),
            "candidate point mask threshold {t} is not in [0, 1]"
        );
    }
    for &r in &opts.point_radii_mm {
        ensure!(
            r.is_finite() && r > 0.0,
            "candidate point radius {r} mm is not finite and > 0"
        );
    }
    ensure!(
        opts.point_thresholds.is_empty() == opts.point_radii_mm.is_empty(),
        "point thresholds and point radii go together"
    );
    Ok(())
}

/// Every (threshold, point rule, minimum component, spare radius) of the options and the
/// model's own, (threshold, point rule)-major (their components are labelled once for all
/// the small rules); a minimum of 0 only with radius 0 (the radius changes nothing there),
/// and with each threshold only the point rules that add something to it, and none.
fn candidate_cuts(opts: &MaskThresholdOptions, previous: Setting) -> Vec<Cut> {
    let thresholds = with_current(&opts.candidates, previous.threshold, f32::total_cmp);
    let mins = with_current(
        &opts.min_components_mm3,
        previous.min_component_mm3,
        f64::total_cmp,
    );
    let radii = with_current(
        &opts.spare_radii_mm,
        previous.spare_radius_mm,
        f64::total_cmp,
    );
    let rules: Vec<SmallComponents> = mins
        .iter()
        .flat_map(|&min_mm3| {
            let radii: &[f64] = if min_mm3 > 0.0 { &radii } else { &[0.0] };
            radii.iter().map(move |&spare_radius_mm| SmallComponents {
                min_mm3,
                spare_radius_mm,
            })
        })
        .collect();
    let mut points = vec![PointRule::default(), previous.point];
    for &threshold in &opts.point_thresholds {
        for &radius_mm in &opts.point_radii_mm {
            points.push(PointRule {
                threshold,
                radius_mm,
            });
        }
    }
    let mut cuts = Vec::new();
    for &threshold in &thresholds {
        let mut here: Vec<PointRule> = points.iter().map(|p| p.canonical(threshold)).collect();
        here.sort_by(|a, b| {
            a.threshold
                .total_cmp(&b.threshold)
                .then(a.radius_mm.total_cmp(&b.radius_mm))
        });
        here.dedup();
        for &point in &here {
            cuts.extend(rules.iter().map(|&small| Cut {
                threshold,
                point,
                small,
            }));
        }
    }
    cuts
}

/// The candidates with the model's current value among them, sorted, each once.
fn with_current<T: Copy + PartialEq>(
    candidates: &[T],
    current: T,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    let mut all = candidates.to_vec();
    all.push(current);
    all.sort_by(order);
    all.dedup();
    all
}

/// Every nodule and negative patch of `idx` through every variant (partial patches are
/// skipped: `metrics::PatchClass`).
fn tally_patches(
    ds: &PatchDataset,
    idx: &[usize],
    spacing: [f64; 3],
    opts: &MaskThresholdOptions,
    variants: &mut [(Model, Tally)],
    mut on_patch: impl FnMut(),
) -> Result<()> {
    for &i in idx {
        let rec = &ds.records[i];
        let patch = ds.load(i)?;
        let grid = rec.grid(spacing);
        let class = PatchClass::of(rec.label == 1, foreground_voxels(&patch.mask));
        if class != PatchClass::Partial {
            for (m, tally) in variants.iter_mut() {
                let mean = mc_mean(m, &patch.hu, opts.samples, patch_seed(opts.seed, &rec.id))
                    .with_context(|| format!("patch {}", rec.id))?;
                tally.add(class, &patch.mask, &mean, grid)?;
            }
        }
        on_patch();
    }
    Ok(())
}

/// The MC mean map of one patch: `samples` samples with `seed` (a patch's seed is
/// [`crate::evaluate::score::patch_seed`]), the model's flips.
pub fn mc_mean(model: &Model, hu: &[f32], samples: u32, seed: u64) -> Result<Vec<f32>> {
    let mut mean = vec![0.0f32; hu.len()];
    let mc_opts = McOptions {
        n_samples: samples,
        seed,
        threads: 0,
        review_threshold: None,
        review_score: None,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..UncertaintyMaps::default()
    };
    mc::predict_uncertainty(model, hu, &mc_opts, maps)?;
    Ok(mean)
}

/// Writes the chosen setting as the model file's `config.mask_threshold`,
/// `config.test_time_flips`, `config.min_component_mm3` and
/// `config.min_component_spare_radius_mm` (with the `format_version` they need)
/// and records the choice in the provenance; every tensor is kept byte for byte. The file is
/// replaced after the result loads with the new settings.
pub fn write_mask_threshold(path: &Path, choice: &MaskThresholdChoice) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    set_mask_threshold(&mut file, choice.chosen).with_context(|| path.display().to_string())?;
    set_test_time_flips(&mut file, choice.chosen_flips)
        .with_context(|| path.display().to_string())?;
    set_small_components(&mut file, choice.chosen_setting().small())
        .with_context(|| path.display().to_string())?;
    set_point_rule(&mut file, choice.chosen_setting().point)
        .with_context(|| path.display().to_string())?;
    let mut provenance = file.json_object("provenance")?;
    provenance.insert(PROVENANCE_KEY.into(), serde_json::to_value(choice)?);
    file.set_json_object("provenance", provenance);
    let (bytes, model) = file
        .to_bytes()
        .with_context(|| path.display().to_string())?;
    let read = Setting::of_config(model.config());
    ensure!(
        read == choice.chosen_setting(),
        "rewritten model reads {read:?} instead of {:?}",
        choice.chosen_setting()
    );
    replace_file(path, &bytes)?;
    Ok(model)
}

/// Sets `config.mask_threshold` of `file` to `t` and its `format_version` to what the new
/// config needs (`lungseg::model::required_format_version`).
pub fn set_mask_threshold(file: &mut ModelFile, t: f32) -> Result<()> {
    ensure!(
        t > 0.0 && t < 1.0,
        "mask threshold {t} is not a probability inside (0, 1)"
    );
    set_config_key(file, "mask_threshold", serde_json::json!(t))
}

/// Sets `config.test_time_flips` of `file` to `flips` (1, 2, 4 or 8) and its `format_version`
/// to what the new config needs.
pub fn set_test_time_flips(file: &mut ModelFile, flips: u32) -> Result<()> {
    set_config_key(file, "test_time_flips", serde_json::json!(flips))
}

/// Sets `config.min_component_mm3` and `config.min_component_spare_radius_mm` of `file` to
/// `rule`'s and its `format_version` to what the new config needs (a rule that drops nothing
/// keeps an older `format_version`: older readers ignore the keys and draw the same masks).
pub fn set_small_components(file: &mut ModelFile, rule: SmallComponents) -> Result<()> {
    set_config_key(file, "min_component_mm3", serde_json::json!(rule.min_mm3))?;
    set_config_key(
        file,
        "min_component_spare_radius_mm",
        serde_json::json!(rule.spare_radius_mm),
    )
}

/// Sets `config.point_mask_threshold` and `config.point_radius_mm` of `file` to `rule`'s, or
/// removes them when `rule` is none (canonical, both 0), and its `format_version` to what the
/// new config needs: a file without a point rule stays as an older writer made it.
pub fn set_point_rule(file: &mut ModelFile, rule: PointRule) -> Result<()> {
    if rule == PointRule::default() {
        let mut config = file.json_object("config")?;
        config.remove("point_mask_threshold");
        config.remove("point_radius_mm");
        return set_config(file, config);
    }
    set_config_key(
        file,
        "point_mask_threshold",
        serde_json::json!(rule.threshold),
    )?;
    set_config_key(file, "point_radius_mm", serde_json::json!(rule.radius_mm))
}

/// Sets one `config` key and the `format_version` the resulting config needs; the config is
/// checked by the library's own parser.
pub(crate) fn set_config_key(
    file: &mut ModelFile,
    key: &str,
    value: serde_json::Value,
) -> Result<()> {
    let mut config = file.json_object("config")?;
    config.insert(key.into(), value);
    set_config(file, config)
}

/// Removes one `config` key (its default applies) and sets the `format_version` the
/// resulting config needs.
pub(crate) fn remove_config_key(file: &mut ModelFile, key: &str) -> Result<()> {
    let mut config = file.json_object("config")?;
    config.remove(key);
    set_config(file, config)
}

/// Replaces `config` and sets the `format_version` it needs, once the library's own parser
/// accepts it.
fn set_config(
    file: &mut ModelFile,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let new = ModelConfig::from_json(&serde_json::Value::Object(config.clone()).to_string())?;
    file.set_json_object("config", config);
    file.metadata.insert(
        "format_version".into(),
        lungseg::model::required_format_version(&new).into(),
    );
    Ok(())
}

/// `path`'s model with `config.test_time_flips` = `flips`, in memory.
fn with_flips(path: &Path, flips: u32) -> Result<Model> {
    let mut file = ModelFile::read(path)?;
    set_test_time_flips(&mut file, flips)?;
    Ok(file.to_bytes()?.1)
}

fn foreground_voxels(mask: &[u8]) -> u64 {
    mask.iter().filter(|&&v| v != 0).count() as u64
}
