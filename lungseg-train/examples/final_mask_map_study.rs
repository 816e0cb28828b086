//! Should the calibrated probabilities of a point be banded by distance from the mask the call
//! returns? The probability map (`lungseg::probability_map`) bands each voxel by its distance
//! from the model's own mask of the mean; a point call with the second look returns the joined
//! mask instead (`lungseg::mc::point`), so a voxel the second look added sits in a band "outside
//! the mask". This study runs every patch as `evaluate --second-look-patches` does and fills the
//! mask-distance histograms (`calibrate::mask_distance`) twice, banded by the model's own mask
//! and by the returned one, over the same voxels and the evaluation's ROI.
//!
//! ```text
//! cargo run --release -p lungseg-train --example final_mask_map_study -- fit MODEL DATA TWINS SPLIT SEED OUT.json
//! cargo run --release -p lungseg-train --example final_mask_map_study -- test MODEL DATA TWINS SPLIT SEED MAP.json
//! ```
//!
//! `fit` (calibration patches only: it informs a choice) prints the ROI ECE of the shipped map
//! on both bandings, of maps refitted on each banding in-sample, and cross-fitted over two
//! folds of scans (each fold's map judged on the other fold, pooled), and writes the map
//! refitted on the returned mask's bands to OUT.json. `test` (a fresh seed, once) prints the
//! ROI ECE of the shipped map as the engine applies it against MAP.json on the returned
//! mask's bands. ECEs are pooled over voxels (`BandHistogram::ece`: each fine bin at its mean
//! probability), the evaluation's ECE up to the map's bend inside a 0.01-wide bin.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use lungseg::mask::final_mask;
use lungseg::model::Model;
use lungseg::probability_map::ProbabilityMap;
use lungseg_train::calibrate::mask_distance::{BandHistogram, RegionHistograms, BAND_MAX_VOXELS};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::evaluate::score::{run_point, split_for_model, PointCase, SecondLookPatches};
use lungseg_train::metrics::{predicted_mask, roi_mask, CalibrationAccumulator, EvalConfig};

/// MC samples per pass, as `evaluate`.
const SAMPLES: u32 = 20;

/// The two bandings of every patch, per fold of scans.
struct Histograms {
    /// `[fold]`: banded by the model's own mask of the mean.
    own: [RegionHistograms; 2],
    /// `[fold]`: banded by the mask the point call returns.
    returned: [RegionHistograms; 2],
}

fn fill(args: &[String]) -> Result<(Model, Histograms, usize)> {
    let [model, data, twins, split, seed, ..] = args else {
        bail!("usage: final_mask_map_study fit|test MODEL DATA TWINS SPLIT SEED FILE");
    };
    let seed: u64 = seed.parse().context("SEED")?;
    let model = Model::open(Path::new(model))?;
    let ds = PatchDataset::open(Path::new(data))?;
    let twins = SecondLookPatches::open(Path::new(twins), model.config().spacing_mm)?;
    let idx = split_for_model(&model, &ds, split)?;
    let eval = EvalConfig::default().for_model(&model);
    let new = || RegionHistograms::new(&BAND_MAX_VOXELS);
    let mut h = Histograms {
        own: [new(), new()],
        returned: [new(), new()],
    };
    let mut fold_of_scan: HashMap<String, usize> = HashMap::new();
    for (k, &i) in idx.iter().enumerate() {
        let rec = &ds.records[i];
        let next = fold_of_scan.len() % 2;
        let fold = *fold_of_scan.entry(rec.seriesuid.clone()).or_insert(next);
        let patch = ds.load(i)?;
        let case = PointCase {
            rec,
            patch: &patch,
            second: Some(&twins),
        };
        let point = run_point(&model, case, SAMPLES, seed)?;
        let m = &point.maps;
        let grid = rec.grid(model.config().spacing_mm);
        // The evaluation's scored mask and ROI (`metrics::accumulate`).
        let scored = if point.second_look_made() {
            point.mask.clone()
        } else {
            predicted_mask(&m.mean, grid, &eval).map_err(anyhow::Error::msg)?
        };
        let roi =
            roi_mask(&patch.mask, &scored, &m.det, rec.shape, &eval).map_err(anyhow::Error::msg)?;
        let mut own = vec![0u8; m.mean.len()];
        final_mask(model.config(), &m.mean, &mut own)?;
        h.own[fold].add_patch(&m.mean, &own, &patch.mask, &roi, rec.shape)?;
        h.returned[fold].add_patch(&m.mean, &point.mask, &patch.mask, &roi, rec.shape)?;
        if (k + 1) % 25 == 0 {
            eprintln!("{} of {} patches", k + 1, idx.len());
        }
    }
    Ok((model, h, eval.calibration_bins))
}

/// ROI ECE of both folds, each mapped by its own map.
fn roi_ece(
    h: &[RegionHistograms; 2],
    maps: [Option<&ProbabilityMap>; 2],
    bins: usize,
) -> Result<f64> {
    let mut acc = CalibrationAccumulator::new(bins).map_err(anyhow::Error::msg)?;
    for (hist, map) in h.iter().zip(maps) {
        hist.roi.add_mapped(&mut acc, map);
    }
    acc.summary().ece.context("no voxels in the ROI")
}

/// One histogram of both folds' whole patches.
fn merged(h: &[RegionHistograms; 2]) -> BandHistogram {
    let mut all = h[0].whole.clone();
    for band in 0..all.voxels.len() {
        for b in 0..all.voxels[band].len() {
            all.voxels[band][b] += h[1].whole.voxels[band][b];
            all.foreground[band][b] += h[1].whole.foreground[band][b];
            all.sum_p[band][b] += h[1].whole.sum_p[band][b];
        }
    }
    all
}

fn fit(args: &[String]) -> Result<()> {
    let out = args.get(5).context("OUT.json")?;
    let (model, h, bins) = fill(args)?;
    let shipped = model.config().probability_map.clone();
    let shipped = shipped.as_ref();
    println!("ROI ECE, calibration patches");
    println!(
        "  shipped map, own-mask bands (the engine):  {:.4}",
        roi_ece(&h.own, [shipped; 2], bins)?
    );
    println!(
        "  shipped map, returned-mask bands:          {:.4}",
        roi_ece(&h.returned, [shipped; 2], bins)?
    );
    for (name, hist) in [("own-mask", &h.own), ("returned-mask", &h.returned)] {
        let all = merged(hist).fit()?;
        let folds = [hist[0].whole.fit()?, hist[1].whole.fit()?];
        // Each fold judged by the map of the other.
        let cross = roi_ece(hist, [Some(&folds[1]), Some(&folds[0])], bins)?;
        let inside = roi_ece(hist, [Some(&all); 2], bins)?;
        println!("  refitted on {name} bands: in-sample {inside:.4}, cross-fitted {cross:.4}");
    }
    let candidate = merged(&h.returned).fit()?;
    std::fs::write(out, serde_json::to_string(&candidate)?)?;
    println!("wrote the returned-mask map to {out}");
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    let path = args.get(5).context("MAP.json")?;
    let candidate: ProbabilityMap = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    candidate.check()?;
    let (model, h, bins) = fill(args)?;
    let shipped = model.config().probability_map.clone();
    println!("ROI ECE, test patches");
    println!(
        "  shipped map, own-mask bands (the engine):  {:.4}",
        roi_ece(&h.own, [shipped.as_ref(); 2], bins)?
    );
    println!(
        "  candidate map, returned-mask bands:        {:.4}",
        roi_ece(&h.returned, [Some(&candidate); 2], bins)?
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fit") => fit(&args[1..]),
        Some("test") => test(&args[1..]),
        _ => bail!("usage: final_mask_map_study fit|test ..."),
    }
}
