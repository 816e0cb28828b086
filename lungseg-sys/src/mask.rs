//! The final mask of a prediction, the one definition every consumer uses: voxels whose mean
//! probability is at least `config.mask_threshold`, then the 26-connected components smaller
//! than `config.min_component_mm3` dropped (MONAI's `RemoveSmallObjects`; 0 keeps them all).
//! The patch summary counts it, `lungseg_final_mask` hands it to C callers, and the training
//! crate scores and calibrates with it.
//!
//! Why a minimum size: averaging dropout samples leaves specks of a few voxels where single
//! samples fired (a vessel bifurcation, the edge of the diaphragm); on a patch without a
//! nodule each one is a false positive, and a speck just over the evaluation's bad-negative
//! volume costs what a missed nodule does. The price is the nodules of that size: a size rule
//! alone cannot tell them from specks (docs/training.md, stage 12), so the shipped model keeps
//! every component.
//!
//! Patches are z-major with x fastest (`dims_zyx`); a component's volume is its voxel count
//! times the volume of one voxel.

use crate::error::{try_vec, Error, Result};
use crate::model::ModelConfig;

/// Writes the final mask of `mean` (one patch of `cfg`'s model) into `out` as 0/1 and returns
/// its voxel count. Fails when a buffer's length is not the patch's voxel count or the
/// scratch of the component pass cannot be allocated.
pub fn final_mask(cfg: &ModelConfig, mean: &[f32], out: &mut [u8]) -> Result<u64> {
    let mut scratch = ComponentScratch::new(if cfg.min_component_mm3 > 0.0 {
        cfg.patch_voxels()
    } else {
        0
    })?;
    final_mask_with(cfg, mean, out, &mut scratch)
}

/// [`final_mask`] with the component pass's buffers given (allocation-free when `scratch` holds
/// the patch's voxel count, as the MC reduction's does).
pub fn final_mask_with(
    cfg: &ModelConfig,
    mean: &[f32],
    out: &mut [u8],
    scratch: &mut ComponentScratch,
) -> Result<u64> {
    let n = cfg.patch_voxels();
    if mean.len() != n || out.len() != n {
        return Err(Error::invalid(format!(
            "mean map of {} and mask of {} voxels for a patch of {n}",
            mean.len(),
            out.len()
        )));
    }
    for (m, &p) in out.iter_mut().zip(mean) {
        *m = u8::from(p >= cfg.mask_threshold);
    }
    let [x, y, z] = cfg.patch_size;
    let voxel_mm3 = cfg.spacing_mm.iter().product();
    drop_small_components_with(out, [z, y, x], voxel_mm3, cfg.min_component_mm3, scratch)
}

/// Clears in `mask` (0/1) the 26-connected components whose volume (voxels × `voxel_mm3`) is
/// below `min_mm3`; returns the voxels left. `min_mm3` 0 leaves the mask as it is.
pub fn drop_small_components(
    mask: &mut [u8],
    dims_zyx: [usize; 3],
    voxel_mm3: f64,
    min_mm3: f64,
) -> Result<u64> {
    let mut scratch = ComponentScratch::new(if min_mm3 > 0.0 { mask.len() } else { 0 })?;
    drop_small_components_with(mask, dims_zyx, voxel_mm3, min_mm3, &mut scratch)
}

/// [`drop_small_components`] with the component pass's buffers given.
pub fn drop_small_components_with(
    mask: &mut [u8],
    dims_zyx: [usize; 3],
    voxel_mm3: f64,
    min_mm3: f64,
    scratch: &mut ComponentScratch,
) -> Result<u64> {
    let grid = Grid::new(mask.len(), dims_zyx)?;
    if !(voxel_mm3.is_finite() && voxel_mm3 > 0.0) {
        return Err(Error::invalid(format!(
            "voxel volume {voxel_mm3} mm³ must be finite and > 0"
        )));
    }
    if !(min_mm3.is_finite() && min_mm3 >= 0.0) {
        return Err(Error::invalid(format!(
            "minimum component volume {min_mm3} mm³ must be finite and >= 0"
        )));
    }
    if min_mm3 > 0.0 {
        let small = |c: &[u32]| (c.len() as f64 * voxel_mm3) < min_mm3;
        grid.mark_components(|i| mask[i] != 0, scratch, small)?;
        for (m, &state) in mask.iter_mut().zip(&scratch.state) {
            if state == SELECTED {
                *m = 0;
            }
        }
    }
    Ok(mask.iter().map(|&m| u64::from(m != 0)).sum())
}

/// What [`Grid::mark_components`] left at a voxel.
const UNSEEN: u8 = 0;
const PASSED: u8 = 1;
const SELECTED: u8 = 2;

/// The buffers of a component pass, allocated once for a patch size (the MC reduction keeps
/// one, so that a steady-state prediction allocates nothing).
#[derive(Debug, Default)]
pub struct ComponentScratch {
    /// Per voxel: unseen, in a component passed over, or in a selected one.
    state: Vec<u8>,
    /// The component being filled, which is also its breadth-first queue.
    members: Vec<u32>,
}

impl ComponentScratch {
    /// Buffers for patches of up to `voxels` voxels.
    pub fn new(voxels: usize) -> Result<ComponentScratch> {
        let mut members = Vec::new();
        members
            .try_reserve_exact(voxels)
            .map_err(|_| Error::oom(format!("cannot allocate {voxels} component indices")))?;
        Ok(ComponentScratch {
            state: try_vec(voxels, "component labels")?,
            members,
        })
    }

    /// Heap bytes per voxel of the buffers.
    pub const BYTES_PER_VOXEL: usize = 1 + std::mem::size_of::<u32>();

    /// Heap bytes held.
    pub fn held_bytes(&self) -> usize {
        self.state.capacity() + self.members.capacity() * std::mem::size_of::<u32>()
    }
}

/// Index arithmetic and connectivity of a z-major patch.
pub struct Grid {
    dims: [usize; 3],
    len: usize,
}

impl Grid {
    /// A grid of `dims_zyx` for a buffer of `len` voxels; fails when they differ.
    pub fn new(len: usize, dims_zyx: [usize; 3]) -> Result<Grid> {
        let n = dims_zyx.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(len) {
            return Err(Error::invalid(format!(
                "mask holds {len} voxels, the patch {dims_zyx:?} (z, y, x) has {n:?}"
            )));
        }
        if u32::try_from(len).is_err() {
            return Err(Error::invalid(format!(
                "mask of {len} voxels is larger than a patch"
            )));
        }
        Ok(Grid {
            dims: dims_zyx,
            len,
        })
    }

    /// (z, y, x) of voxel `i`.
    pub fn zyx(&self, i: usize) -> [usize; 3] {
        let [_, ny, nx] = self.dims;
        [i / (ny * nx), (i / nx) % ny, i % nx]
    }

    /// Marks in `scratch` the voxels of every 26-connected component of `{i : is_fg(i)}` for
    /// which `select` holds. Allocation-free when `scratch` holds this grid's voxel count.
    pub fn mark_components(
        &self,
        is_fg: impl Fn(usize) -> bool,
        scratch: &mut ComponentScratch,
        mut select: impl FnMut(&[u32]) -> bool,
    ) -> Result<()> {
        if scratch.state.len() < self.len {
            *scratch = ComponentScratch::new(self.len)?;
        }
        let ComponentScratch { state, members } = scratch;
        state[..self.len].fill(UNSEEN);
        for seed in 0..self.len {
            if state[seed] != UNSEEN || !is_fg(seed) {
                continue;
            }
            state[seed] = PASSED;
            members.clear();
            members.push(seed as u32);
            let mut head = 0;
            while head < members.len() {
                let i = members[head] as usize;
                head += 1;
                self.neighbours(i, |j| {
                    if state[j] == UNSEEN && is_fg(j) {
                        state[j] = PASSED;
                        members.push(j as u32);
                    }
                });
            }
            if select(members) {
                for &i in members.iter() {
                    state[i as usize] = SELECTED;
                }
            }
        }
        Ok(())
    }

    /// The voxels of every 26-connected component of `{i : is_fg(i)}` for which `select`
    /// holds, in voxel order.
    pub fn components_where(
        &self,
        is_fg: impl Fn(usize) -> bool,
        select: impl FnMut(&[u32]) -> bool,
    ) -> Result<Vec<u32>> {
        let mut scratch = ComponentScratch::new(self.len)?;
        self.mark_components(is_fg, &mut scratch, select)?;
        Ok((0..self.len as u32)
            .filter(|&i| scratch.state[i as usize] == SELECTED)
            .collect())
    }

    /// Calls `f` with each of the (up to 26) neighbours of voxel `i` inside the patch.
    pub fn neighbours(&self, i: usize, mut f: impl FnMut(usize)) {
        let [z, y, x] = self.zyx(i);
        let [nz, ny, nx] = self.dims;
        let range = |c: usize, n: usize| c.saturating_sub(1)..=(c + 1).min(n - 1);
        for zz in range(z, nz) {
            for yy in range(y, ny) {
                for xx in range(x, nx) {
                    let j = (zz * ny + yy) * nx + xx;
                    if j != i {
                        f(j);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: [usize; 3] = [6, 7, 8];
    const ONE: f64 = 1.0;

    fn at(z: usize, y: usize, x: usize) -> usize {
        (z * 7 + y) * 8 + x
    }

    fn mask(on: &[usize]) -> Vec<u8> {
        let mut m = vec![0u8; 6 * 7 * 8];
        for &i in on {
            m[i] = 1;
        }
        m
    }

    /// Component sizes by a direct search over all voxel pairs (26-neighbours: every axis
    /// differs by at most 1), the oracle for the breadth-first labelling.
    fn sizes_by_pairs(m: &[u8]) -> Vec<usize> {
        let on: Vec<usize> = (0..m.len()).filter(|&i| m[i] != 0).collect();
        let g = Grid::new(m.len(), D).unwrap();
        let mut label: Vec<usize> = (0..on.len()).collect();
        loop {
            let mut changed = false;
            for a in 0..on.len() {
                for b in 0..on.len() {
                    let (pa, pb) = (g.zyx(on[a]), g.zyx(on[b]));
                    let adjacent = (0..3).all(|k| pa[k].abs_diff(pb[k]) <= 1);
                    if adjacent && label[b] < label[a] {
                        label[a] = label[b];
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut sizes: Vec<usize> = (0..on.len())
            .map(|l| label.iter().filter(|&&x| x == l).count())
            .filter(|&c| c > 0)
            .collect();
        sizes.sort();
        sizes
    }

    #[test]
    fn components_match_a_pairwise_search_on_random_masks() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20 {
            let m: Vec<u8> = (0..6 * 7 * 8)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    u8::from(state % 100 < 12)
                })
                .collect();
            let g = Grid::new(m.len(), D).unwrap();
            let mut sizes = Vec::new();
            g.components_where(
                |i| m[i] != 0,
                |c| {
                    sizes.push(c.len());
                    false
                },
            )
            .unwrap();
            sizes.sort();
            assert_eq!(sizes, sizes_by_pairs(&m));
        }
    }

    #[test]
    fn small_components_go_and_large_ones_stay_whole() {
        // A 2×2×2 cube (8 voxels), a 3-voxel bar and a single voxel, apart from each other.
        let cube: Vec<usize> = (0..8).map(|k| at(k / 4, (k / 2) % 2, k % 2)).collect();
        let bar = [at(4, 5, 4), at(4, 5, 5), at(4, 5, 6)];
        let speck = [at(5, 0, 7)];
        let mut m = mask(&[cube.as_slice(), &bar, &speck].concat());
        assert_eq!(drop_small_components(&mut m, D, ONE, 3.0).unwrap(), 11);
        assert!(bar.iter().all(|&i| m[i] == 1) && m[speck[0]] == 0);
        assert_eq!(drop_small_components(&mut m, D, ONE, 3.5).unwrap(), 8);
        assert!(cube.iter().all(|&i| m[i] == 1));
        assert_eq!(drop_small_components(&mut m, D, ONE, 0.0).unwrap(), 8);
    }

    #[test]
    fn the_volume_counts_the_voxel_size() {
        // 3 voxels of 0.5 mm³ (0.5 × 0.5 × 2 mm) are 1.5 mm³.
        let bar = [at(1, 1, 1), at(1, 1, 2), at(1, 1, 3)];
        let mut m = mask(&bar);
        assert_eq!(drop_small_components(&mut m, D, 0.5, 1.5).unwrap(), 3);
        assert_eq!(drop_small_components(&mut m, D, 0.5, 1.6).unwrap(), 0);
    }

    #[test]
    fn diagonal_neighbours_join() {
        let chain = [at(0, 0, 0), at(1, 1, 1), at(2, 2, 2)];
        let mut m = mask(&chain);
        assert_eq!(drop_small_components(&mut m, D, ONE, 3.0).unwrap(), 3);
    }

    #[test]
    fn final_mask_thresholds_then_filters() {
        let cfg = ModelConfig {
            channels: vec![4, 8],
            patch_size: [8, 7, 6],
            mask_threshold: 0.4,
            min_component_mm3: 2.0,
            ..ModelConfig::default()
        };
        let mut mean = vec![0.0f32; 336];
        mean[at(0, 0, 0)] = 0.9; // a lone voxel: dropped
        mean[at(3, 3, 3)] = 0.4; // two voxels at the threshold: kept
        mean[at(3, 3, 4)] = 0.6;
        mean[at(5, 6, 7)] = 0.39; // below the threshold
        let mut out = vec![7u8; 336];
        assert_eq!(final_mask(&cfg, &mean, &mut out).unwrap(), 2);
        assert_eq!(out[at(3, 3, 3)] + out[at(3, 3, 4)], 2);
        assert_eq!(out.iter().map(|&m| u32::from(m)).sum::<u32>(), 2);
        assert!(final_mask(&cfg, &mean[1..], &mut out).is_err());
        assert!(final_mask(&cfg, &mean, &mut out[1..]).is_err());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut m = mask(&[]);
        assert!(drop_small_components(&mut m, D, ONE, f64::NAN).is_err());
        assert!(drop_small_components(&mut m, D, ONE, -1.0).is_err());
        assert!(drop_small_components(&mut m, D, 0.0, 1.0).is_err());
        assert!(drop_small_components(&mut m, D, f64::INFINITY, 1.0).is_err());
        assert!(drop_small_components(&mut m[1..], D, ONE, 1.0).is_err());
        assert!(drop_small_components(&mut [], [usize::MAX, 2, 1], ONE, 1.0).is_err());
    }
}
