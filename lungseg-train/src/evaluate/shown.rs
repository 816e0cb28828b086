//! The figures of a report and the patches shown in it (largest nodules, most uncertain
//! patches), written as PNG panels and as `.mhd` volumes for 3D Slicer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lungseg::geometry::{Geometry, IDENTITY};
use lungseg::model::Model;
use lungseg::volume::{PixelData, Volume};

use super::score::{run_point, Maps, PointCase, SecondLookPatches};
use crate::dataset::{Patch, PatchDataset, PatchRecord};
use crate::metrics::{predicted_mask, EvalConfig, EvalMetrics};
use crate::report::{figures, FigureRef};

/// Figures written so far, and why any could not be written.
#[derive(Default)]
pub struct Figures {
    pub list: Vec<FigureRef>,
    pub notes: Vec<String>,
}

impl Figures {
    fn add(&mut self, r: std::result::Result<(), figures::FigureError>, title: &str, file: &str) {
        match r {
            Ok(()) => self.list.push(FigureRef {
                title: title.into(),
                path: file.into(),
            }),
            Err(e) => self.notes.push(format!("figure {file} not written: {e}")),
        }
    }
}

/// Reliability diagram, referral curve, uncertainty histograms and (given a training log)
/// the training curves.
pub fn metric_figures(out: &Path, metrics: &EvalMetrics, training_csv: Option<&Path>) -> Figures {
    let mut figs = Figures::default();
    figs.add(
        figures::reliability_diagram(
            &out.join("reliability.png"),
            &metrics.calibration_roi,
            "Reliability (ROI)",
        ),
        "Reliability diagram (region of interest)",
        "reliability.png",
    );
    if let Some(rc) = &metrics.referral {
        figs.add(
            figures::referral_curve(&out.join("referral.png"), rc),
            "Referral curve",
            "referral.png",
        );
    }
    figs.add(
        figures::uncertainty_histograms(
            &out.join("uncertainty_histograms.png"),
            &metrics.histograms_roi,
            "Uncertainty on correct vs incorrect voxels (ROI)",
        ),
        "Uncertainty histograms",
        "uncertainty_histograms.png",
    );
    if let Some(csv) = training_csv {
        figs.add(
            figures::training_curves_from_csv(csv, &out.join("training_curves.png")),
            "Training curves",
            "training_curves.png",
        );
    }
    figs
}

/// Dataset indices of the patches shown: the `n` largest nodules, then the `n` highest engine
/// scores (`scores[k]` belongs to `idx[k]`), without repeats.
pub fn choose_shown(
    ds: &PatchDataset,
    idx: &[usize],
    scores: &[f32],
    n: usize,
) -> Vec<(usize, &'static str)> {
    let mut by_size: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| ds.records[i].label == 1)
        .collect();
    by_size.sort_by(|&a, &b| {
        let d = |i: usize| ds.records[i].diameter_mm.unwrap_or(0.0);
        d(b).total_cmp(&d(a)).then(a.cmp(&b))
    });
    let mut shown: Vec<(usize, &str)> = by_size
        .into_iter()
        .take(n)
        .map(|i| (i, "largest nodule"))
        .collect();
    let mut by_score: Vec<usize> = (0..idx.len()).collect();
    by_score.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for k in by_score.into_iter().take(n) {
        if !shown.iter().any(|s| s.0 == idx[k]) {
            shown.push((idx[k], "most uncertain"));
        }
    }
    shown
}

/// What one shown patch needs besides the model.
pub struct ShowRun<'a> {
    pub ds: &'a PatchDataset,
    pub out: &'a Path,
    pub samples: u32,
    pub seed: u64,
    /// The evaluation's mask rule (`metrics::predicted_mask`).
    pub eval: &'a EvalConfig,
    /// The second look's patches, as the scoring pass had them.
    pub second_look: Option<&'a SecondLookPatches>,
}

/// Re-runs the shown patches (their seeds reproduce the scoring pass, the mask drawn is the one
/// scored, a second look's included), writes a panel each into `figs` and their volumes under
/// `out/slicer`; returns the volume paths.
pub fn show_patches(
    model: &Model,
    run: &ShowRun<'_>,
    shown: &[(usize, &str)],
    figs: &mut Figures,
) -> Result<Vec<PathBuf>> {
    let slicer = run.out.join("slicer");
    let mut volumes = Vec::new();
    for &(i, why) in shown {
        let rec = &run.ds.records[i];
        let patch = run.ds.load(i)?;
        let case = PointCase {
            rec,
            patch: &patch,
            second: run.second_look,
        };
        let point = run_point(model, case, run.samples, run.seed)?;
        let pred = if point.second_look_made() {
            point.mask.clone()
        } else {
            let grid = rec.grid(model.config().spacing_mm);
            predicted_mask(&point.maps.mean, grid, run.eval).map_err(anyhow::Error::msg)?
        };
        let (s, m) = (point.summary, point.maps);
        let title = format!(
            "{} ({why}{}, score {:.3}{})",
            rec.id,
            rec.diameter_mm
                .map_or(String::new(), |d| format!(", {d:.1} mm")),
            s.uncertainty_score,
            if s.needs_review { ", needs review" } else { "" }
        );
        let file = format!("panel_{}.png", rec.id);
        figs.add(
            figures::sample_panel(
                &run.out.join(&file),
                &figures::PanelInput {
                    title: &title,
                    dims: rec.shape,
                    ct: &patch.hu,
                    gt: &patch.mask,
                    prob: &m.mean,
                    uncertainty: &m.entropy,
                    unc_max: 1.0,
                    high_unc: 0.5,
                    pred: &pred,
                    ct_window: (-1000.0, 400.0),
                    centre: None,
                },
            ),
            &title,
            &file,
        );
        volumes.extend(write_slicer_volumes(&slicer, rec, &patch, &m)?);
    }
    Ok(volumes)
}

/// Writes `<id>_{hu,gt,prob,entropy,mi}.mhd` with the patch's world geometry (identity
/// direction, origin = centre − size/2 · spacing, the `lungseg::patch` grid convention), so
/// they overlay the original scan in 3D Slicer.
fn write_slicer_volumes(
    dir: &Path,
    rec: &PatchRecord,
    patch: &Patch,
    m: &Maps,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let [d, h, w] = rec.shape;
    let spacing = rec.spacing_mm.unwrap_or([1.0; 3]);
    let dims = [w, h, d];
    let c = rec.center_world.unwrap_or([0.0; 3]);
    let origin: [f64; 3] = std::array::from_fn(|a| c[a] - (dims[a] / 2) as f64 * spacing[a]);
    let geometry = Geometry::new(dims, spacing, origin, IDENTITY)?;
    let items: [(&str, PixelData); 5] = [
        ("hu", PixelData::F32(patch.hu.clone())),
        ("gt", PixelData::U8(patch.mask.clone())),
        ("prob", PixelData::F32(m.mean.clone())),
        ("entropy", PixelData::F32(m.entropy.clone())),
        ("mi", PixelData::F32(m.mutual_info.clone())),
    ];
    let mut out = Vec::new();
    for (name, data) in items {
        let path = dir.join(format!("{}_{name}.mhd", rec.id));
        let vol = Volume::new(geometry, data)?;
        lungseg::mhd::write(&path, &vol, &Default::default())?;
        out.push(path);
    }
    Ok(out)
}
