//! LUNA16's folder layout on disk: scans, labels, `annotations.csv`, `candidates.csv`,
//! `synth_truth.csv`; and the `annotations.csv` reader.

use super::{generate_scan, SynthConfig};
use lungseg::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Folder (beside the `subsetN` folders) of the lesion labels, `<seriesuid>.mhd` each.
pub const LABELS_DIR: &str = "seg-nodules";

/// What [`write_dataset`] produced.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    pub root: PathBuf,
    /// `(seriesuid, .mhd path, nodule count)` per scan, in generation order.
    pub scans: Vec<(String, PathBuf, usize)>,
    pub nodules: usize,
    pub candidates: usize,
}

/// Writes `scans` scans into `root` in LUNA16's layout; `subset_size` scans per `subsetN`
/// folder (`None`: all in `subset0`). `on_scan(i)` is called after each scan is written.
pub fn write_dataset(
    root: &Path,
    cfg: &SynthConfig,
    scans: usize,
    seed: u64,
    subset_size: Option<usize>,
    mut on_scan: impl FnMut(usize),
) -> Result<DatasetSummary> {
    cfg.validate()?;
    if subset_size == Some(0) {
        return Err(Error::invalid("subset size must be at least 1"));
    }
    let mut annotations = String::from("seriesuid,coordX,coordY,coordZ,diameter_mm\n");
    let mut candidates = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    let mut truth = String::from(TRUTH_HEADER);
    let labels_dir = root.join(LABELS_DIR);
    let mut summary = DatasetSummary {
        root: root.to_path_buf(),
        scans: Vec::new(),
        nodules: 0,
        candidates: 0,
    };
    for i in 0..scans {
        let scan = generate_scan(cfg, seed, i as u64)?;
        let dir = root.join(format!("subset{}", subset_size.map_or(0, |k| i / k)));
        std::fs::create_dir_all(&dir).map_err(|e| Error::from_io(dir.display(), e))?;
        let path = dir.join(format!("{}.mhd", scan.seriesuid));
        lungseg::mhd::write(
            &path,
            &scan.volume,
            &lungseg::mhd::WriteOptions { compress: false },
        )
        .map_err(|e| e.context(path.display()))?;
        std::fs::create_dir_all(&labels_dir)
            .map_err(|e| Error::from_io(labels_dir.display(), e))?;
        let label_path = labels_dir.join(format!("{}.mhd", scan.seriesuid));
        lungseg::mhd::write(
            &label_path,
            &scan.labels,
            &lungseg::mhd::WriteOptions { compress: true },
        )
        .map_err(|e| e.context(label_path.display()))?;
        let uid = &scan.seriesuid;
        for a in &scan.annotations {
            let [x, y, z] = a.world;
            let _ = writeln!(annotations, "{uid},{x},{y},{z},{}", a.nodule.diameter_mm);
            truth_row(&mut truth, &scan, a);
        }
        for c in &scan.candidates {
            let [x, y, z] = c.world;
            let _ = writeln!(candidates, "{uid},{x},{y},{z},{}", c.class);
        }
        summary.nodules += scan.annotations.len();
        summary.candidates += scan.candidates.len();
        summary
            .scans
            .push((scan.seriesuid, path, scan.annotations.len()));
        on_scan(i);
    }
    for (name, text) in [
        ("annotations.csv", annotations),
        ("candidates.csv", candidates),
        ("synth_truth.csv", truth),
    ] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::from_io(p.display(), e))?;
    }
    Ok(summary)
}

const TRUTH_HEADER: &str = "seriesuid,label,coordX,coordY,coordZ,diameter_mm,nominal_diameter_mm,\
kind,margin,placement,calcified,cavitary,hu,flipped,thickness_mm,kernel,dose,noise_sigma_hu,\
padding,contrast\n";

fn truth_row(out: &mut String, scan: &super::Scan, a: &super::Annotation) {
    let [x, y, z] = a.world;
    let n = &a.nodule;
    let q = &scan.acquisition;
    let _ = writeln!(
        out,
        "{},{},{x},{y},{z},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{},{}",
        scan.seriesuid,
        a.label,
        n.diameter_mm,
        n.nominal_diameter_mm,
        n.kind.name(),
        n.margin.name(),
        n.placement.name(),
        n.calcified,
        n.cavitary,
        n.hu,
        scan.flipped,
        q.thickness_mm,
        q.kernel.name(),
        q.dose.name(),
        q.noise_sigma,
        q.padding.map_or("none".to_string(), |p| p.to_string()),
        q.contrast
    );
}
