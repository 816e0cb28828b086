//! The second look's patches of an evaluation: a `prepare` output of the same scans at half the
//! model's spacing (the same points: `prepare`'s draws do not depend on the spacing), paired
//! with the evaluated patches by id and checked to be centred on the same world point.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use lungseg::second_look::SecondLook;

use crate::dataset::{PatchDataset, PatchRecord};

/// The half-spacing twins of the evaluated patches.
pub struct SecondLookPatches {
    ds: PatchDataset,
    by_id: HashMap<String, usize>,
    spacing_mm: [f64; 3],
}

impl SecondLookPatches {
    /// Opens `dir` for a model of `model_spacing_mm`.
    pub fn open(dir: &Path, model_spacing_mm: [f64; 3]) -> Result<Self> {
        let ds = PatchDataset::open(dir)?;
        let by_id = ds
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        Ok(SecondLookPatches {
            ds,
            by_id,
            spacing_mm: SecondLook::spacing_mm(model_spacing_mm),
        })
    }

    /// The HU of `rec`'s twin, after checking it is the same point at half the spacing.
    pub fn hu_for(&self, rec: &PatchRecord) -> Result<Vec<f32>> {
        let &j = self.by_id.get(&rec.id).with_context(|| {
            format!(
                "patch {} has no twin in the second look's patches {}",
                rec.id,
                self.ds.root().display()
            )
        })?;
        let twin = &self.ds.records[j];
        ensure!(
            rec.center_world.is_some() && twin.center_world == rec.center_world,
            "patch {}: the second look's patch is centred elsewhere ({:?} vs {:?})",
            rec.id,
            twin.center_world,
            rec.center_world
        );
        ensure!(
            twin.shape == rec.shape,
            "patch {}: the second look's patch has shape {:?}, not {:?}",
            rec.id,
            twin.shape,
            rec.shape
        );
        let spacing_ok = twin.spacing_mm.is_some_and(|s| {
            s.iter()
                .zip(self.spacing_mm)
                .all(|(a, b)| (a - b).abs() < 1e-9)
        });
        ensure!(
            spacing_ok,
            "patch {}: the second look's patch has spacing {:?} mm, not {:?} (prepare it with \
             --spacing-mm at half the model's)",
            rec.id,
            twin.spacing_mm,
            self.spacing_mm
        );
        Ok(self.ds.load(j)?.hu)
    }
}
