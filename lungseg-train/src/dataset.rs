//! The on-disk patch dataset (`docs/dataset-format.md`): a folder with `manifest.jsonl` and,
//! per patch, raw little-endian f32 HU and u8 mask files.
//!
//! Raw files rather than one big archive so that `prepare` can stream scan by scan and
//! training can read any patch without parsing the others.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// File name of the manifest inside a dataset folder.
pub const MANIFEST: &str = "manifest.jsonl";

/// One line of `manifest.jsonl`. Unknown keys are ignored, so writers may add fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// Unique patch id.
    pub id: String,
    /// HU file, relative to the dataset folder: `D·H·W` little-endian f32.
    pub hu: String,
    /// Mask file, relative to the dataset folder: `D·H·W` bytes, 0 or 1.
    pub mask: String,
    /// The scan this patch was cut from; splits are by scan.
    pub seriesuid: String,
    /// `train`, `val` or `test`.
    pub split: String,
    /// 1 for a patch around an annotated nodule, 0 for a negative.
    pub label: u8,
    /// Patch shape in numpy order (z, y, x) = (D, H, W); x varies fastest in the files.
    pub shape: [usize; 3],
    /// Nodule diameter (mm) for positives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diameter_mm: Option<f64>,
    /// Voxel spacing (mm, x y z) the patch was resampled to; default the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing_mm: Option<[f64; 3]>,
    /// Patch centre in world coordinates (mm, x y z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_world: Option<[f64; 3]>,
    /// Resolution (mm, x y z) of the scan the patch was cut from (`Volume::resolution_mm`: the
    /// voxel spacing, along z the slice thickness where the scan states a coarser one):
    /// whether the scan is one the model is meant for (`lungseg::intended_use`) is judged on
    /// it, as the library judges a point of that scan. None (datasets written without it): not
    /// judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_spacing_mm: Option<[f64; 3]>,
}

impl PatchRecord {
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// The patch's voxel grid: its shape, and its spacing, else `model_spacing` (the model's).
    pub fn grid(&self, model_spacing: [f64; 3]) -> lungseg::mask::PatchGrid {
        lungseg::mask::PatchGrid {
            dims_zyx: self.shape,
            spacing_xyz: self.spacing_mm.unwrap_or(model_spacing),
        }
    }

    /// Volume of one voxel in mm³ (of [`Self::grid`]).
    pub fn voxel_mm3(&self, model_spacing: [f64; 3]) -> f64 {
        self.grid(model_spacing).voxel_mm3()
    }
}

/// One patch in memory: HU and mask, z-major with x fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub shape: [usize; 3],
    pub hu: Vec<f32>,
    pub mask: Vec<u8>,
}

/// A dataset folder with its parsed manifest.
#[derive(Clone, Debug)]
pub struct PatchDataset {
    root: PathBuf,
    pub records: Vec<PatchRecord>,
}

impl PatchDataset {
    /// Reads and checks `<dir>/manifest.jsonl` (not the patch files, which are read lazily).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let path = root.join(MANIFEST);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut records = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}: read error", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: PatchRecord = serde_json::from_str(&line).with_context(|| {
                format!("{} line {}: not a patch record", path.display(), i + 1)
            })?;
            ensure!(
                matches!(rec.split.as_str(), "train" | "val" | "test"),
                "{} line {}: split '{}' (expected train, val or test)",
                path.display(),
                i + 1,
                rec.split
            );
            ensure!(
                rec.voxels() > 0,
                "{} line {}: empty shape",
                path.display(),
                i + 1
            );
            records.push(rec);
        }
        Ok(PatchDataset { root, records })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Indices of the records in `split`, in manifest order.
    pub fn split(&self, split: &str) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].split == split)
            .collect()
    }

    /// Reads patch `i` from disk, checking the file sizes against the manifest shape.
    pub fn load(&self, i: usize) -> Result<Patch> {
        let rec = &self.records[i];
        let n = rec.voxels();
        let hu_path = self.root.join(&rec.hu);
        let bytes = fs::read(&hu_path)
            .with_context(|| format!("patch {}: cannot read {}", rec.id, hu_path.display()))?;
        ensure!(
            bytes.len() == 4 * n,
            "patch {}: {} has {} bytes, expected {} (shape {:?} × f32)",
            rec.id,
            hu_path.display(),
            bytes.len(),
            4 * n,
            rec.shape
        );
        let hu: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mask_path = self.root.join(&rec.mask);
        let mask = fs::read(&mask_path)
            .with_context(|| format!("patch {}: cannot read {}", rec.id, mask_path.display()))?;
        ensure!(
            mask.len() == n,
            "patch {}: {} has {} bytes, expected {} (shape {:?} × u8)",
            rec.id,
            mask_path.display(),
            mask.len(),
            n,
            rec.shape
        );
        if let Some(v) = mask.iter().find(|&&v| v > 1) {
            bail!("patch {}: mask value {v} (expected 0 or 1)", rec.id);
        }
        if hu.iter().any(|v| !v.is_finite()) {
            bail!("patch {}: HU file has a non-finite value", rec.id);
        }
        Ok(Patch {
            shape: rec.shape,
            hu,
            mask,
        })
    }
}

/// Appends patches to a dataset folder: writes the two raw files under `patches/` and one
/// manifest line per patch. `prepare` and the tests use it, so the format has one writer.
pub struct DatasetWriter {
    root: PathBuf,
    manifest: BufWriter<File>,
}

impl DatasetWriter {
    /// Creates `dir` (and `dir/patches`) and a new, empty manifest.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(root.join("patches"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        let path = root.join(MANIFEST);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(DatasetWriter {
            root,
            manifest: BufWriter::new(file),
        })
    }

    /// Writes one patch. `rec.hu`/`rec.mask` are set to `patches/<id>.hu.f32` / `.mask.u8`.
    pub fn add(&mut self, mut rec: PatchRecord, hu: &[f32], mask: &[u8]) -> Result<()> {
        ensure!(
            hu.len() == rec.voxels() && mask.len() == rec.voxels(),
            "patch {}: {} HU and {} mask values for shape {:?}",
            rec.id,
            hu.len(),
            mask.len(),
            rec.shape
        );
        ensure!(
            !rec.id.is_empty()
                && rec
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "patch id '{}' must be non-empty ASCII letters, digits, '.', '_' or '-'",
            rec.id
        );
        rec.hu = format!("patches/{}.hu.f32", rec.id);
        rec.mask = format!("patches/{}.mask.u8", rec.id);
        let bytes: Vec<u8> = hu.iter().flat_map(|v| v.to_le_bytes()).collect();
        fs::write(self.root.join(&rec.hu), bytes)
            .with_context(|| format!("cannot write {}", rec.hu))?;
        fs::write(self.root.join(&rec.mask), mask)
            .with_context(|| format!("cannot write {}", rec.mask))?;
        serde_json::to_writer(&mut self.manifest, &rec)?;
        self.manifest.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes the manifest; call once at the end.
    pub fn finish(mut self) -> Result<()> {
        self.manifest.flush()?;
        Ok(())
    }
}
