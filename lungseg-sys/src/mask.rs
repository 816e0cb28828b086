//! The final mask of a prediction, the one definition every consumer uses: voxels whose mean
//! probability is at least `config.mask_threshold`, with the lesion at the requested point
//! cut lower ([`PointRule`]: the 26-connected components of `mean >=
//! config.point_mask_threshold` that come closer than `config.point_radius_mm` to the patch
//! centre; radius 0 adds none), then the small 26-connected components dropped
//! ([`SmallComponents`]: smaller than `config.min_component_mm3` and no voxel closer than
//! `config.min_component_spare_radius_mm` to the patch centre; 0 keeps them all). The
//! patch summary counts it, `lungseg_final_mask` hands it to C callers, and the training crate
//! scores and calibrates with it.
//!
//! Why a minimum size: averaging dropout samples leaves specks of a few voxels where single
//! samples fired (a vessel bifurcation, the edge of the diaphragm); on a patch without a
//! nodule each one is a false positive, and a speck just over the evaluation's bad-negative
//! volume costs what a missed nodule does. A size rule alone cannot tell such specks from the
//! smallest nodules (docs/model-stages.md, stage 12). Why the spare radius: a patch is cut around
//! the point the caller asks about (`lungseg_predict_uncertainty_at`), so a small component at
//! that point is the nodule asked about and one far from it is not; the radius keeps the
//! first and lets the minimum take the second. Why a lower threshold at the point: the same
//! prior, used the other way; a small nodule whose dropout samples disagree leaves a mean
//! below the threshold at the point, which the point rule keeps while a faint blob elsewhere
//! still needs the full threshold (docs/model-stages.md, stage 16).
//!
//! Patches are z-major with x fastest (`dims_zyx`); a component's volume is its voxel count
//! times the volume of one voxel; distances are between voxel centres in mm, from the centre
//! voxel (`size / 2` on each axis, `crate::patch`'s convention).

use crate::error::{try_vec, Error, Result};
use crate::model::ModelConfig;

/// A patch's voxel grid: dimensions (z, y, x) and spacing (x, y, z) in mm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchGrid {
    pub dims_zyx: [usize; 3],
    pub spacing_xyz: [f64; 3],
}

impl PatchGrid {
    /// The grid of `cfg`'s patches.
    pub fn of(cfg: &ModelConfig) -> PatchGrid {
        let [x, y, z] = cfg.patch_size;
        PatchGrid {
            dims_zyx: [z, y, x],
            spacing_xyz: cfg.spacing_mm,
        }
    }

    /// Volume of one voxel, mm³.
    pub fn voxel_mm3(&self) -> f64 {
        self.spacing_xyz.iter().product()
    }

    /// Squared distance in mm² from the centre of voxel `zyx` to the centre of the patch's
    /// centre voxel (`dims / 2` on each axis).
    pub fn centre_distance_mm2(&self, zyx: [usize; 3]) -> f64 {
        let [sx, sy, sz] = self.spacing_xyz;
        let spacing_zyx = [sz, sy, sx];
        (0..3)
            .map(|a| {
                let off = zyx[a] as f64 - (self.dims_zyx[a] / 2) as f64;
                (off * spacing_zyx[a]).powi(2)
            })
            .sum()
    }

    /// The squared distance (mm²) of `component`'s voxel nearest to the patch centre (indices
    /// on `labels`, this grid's labelling): what [`SmallComponents::drops`] takes.
    pub fn nearest_centre_mm2(&self, labels: &Grid, component: &[u32]) -> f64 {
        component
            .iter()
            .map(|&i| self.centre_distance_mm2(labels.zyx(i as usize)))
            .fold(f64::INFINITY, f64::min)
    }

    fn check(&self) -> Result<()> {
        if !self.spacing_xyz.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(Error::invalid(format!(
                "spacing {:?} mm must be finite and > 0",
                self.spacing_xyz
            )));
        }
        Ok(())
    }
}

/// Which 26-connected components the final mask drops: those smaller than `min_mm3` none of
/// whose voxels is closer than `spare_radius_mm` to the patch centre. `min_mm3` 0 drops none;
/// `spare_radius_mm` 0 spares none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SmallComponents {
    pub min_mm3: f64,
    pub spare_radius_mm: f64,
}

impl SmallComponents {
    /// The rule of `cfg` (`min_component_mm3`, `min_component_spare_radius_mm`).
    pub fn of(cfg: &ModelConfig) -> SmallComponents {
        SmallComponents {
            min_mm3: cfg.min_component_mm3,
            spare_radius_mm: cfg.min_component_spare_radius_mm,
        }
    }

    /// Whether the rule drops anything at all.
    pub fn is_active(&self) -> bool {
        self.min_mm3 > 0.0
    }

    /// Whether a component of `volume_mm3` whose nearest voxel lies `nearest_mm2` (squared mm)
    /// from the patch centre is dropped: the one definition, also used by the training crate's
    /// calibration, which counts components without redrawing masks.
    pub fn drops(&self, volume_mm3: f64, nearest_mm2: f64) -> bool {
        volume_mm3 < self.min_mm3 && nearest_mm2 >= self.spare_radius_mm * self.spare_radius_mm
    }

    /// The same rule with the radius set to 0 where it changes nothing (no minimum), so that
    /// equal masks have equal rules.
    pub fn canonical(self) -> SmallComponents {
        if self.is_active() {
            self
        } else {
            SmallComponents::default()
        }
    }

    /// Both finite and ≥ 0.
    pub fn check(&self) -> Result<()> {
        let (v, r) = (self.min_mm3, self.spare_radius_mm);
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::invalid(format!(
                "minimum component volume {v} mm³ must be finite and >= 0"
            )));
        }
        if !(r.is_finite() && r >= 0.0) {
            return Err(Error::invalid(format!(
                "component spare radius {r} mm must be finite and >= 0"
            )));
        }
        Ok(())
    }
}

/// The lesion at the requested point cut lower: the 26-connected components of
/// `mean >= threshold` with a voxel closer than `radius_mm` to the patch centre join the mask
/// (hysteresis seeded at the point). Active only with a radius above 0 and a threshold below
/// the mask threshold it accompanies: otherwise every such voxel is in the mask already.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PointRule {
    pub threshold: f32,
    pub radius_mm: f64,
}

impl PointRule {
    /// The rule of `cfg` (`point_mask_threshold`, `point_radius_mm`).
    pub fn of(cfg: &ModelConfig) -> PointRule {
        PointRule {
            threshold: cfg.point_mask_threshold,
            radius_mm: cfg.point_radius_mm,
        }
    }

    /// Whether the rule adds anything to a mask cut at `mask_threshold`.
    pub fn is_active(&self, mask_threshold: f32) -> bool {
        self.radius_mm > 0.0 && self.threshold < mask_threshold
    }

    /// The same rule as the default where it changes nothing, so that equal masks have equal
    /// rules.
    pub fn canonical(self, mask_threshold: f32) -> PointRule {
        if self.is_active(mask_threshold) {
            self
        } else {
            PointRule::default()
        }
    }

    /// Threshold in [0, 1], radius finite and ≥ 0.
    pub fn check(&self) -> Result<()> {
        let (t, r) = (self.threshold, self.radius_mm);
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::invalid(format!(
                "point mask threshold {t} must be in [0, 1]"
            )));
        }
        if !(r.is_finite() && r >= 0.0) {
            return Err(Error::invalid(format!(
                "point radius {r} mm must be finite and >= 0"
            )));
        }
        Ok(())
    }
}

/// The whole rule of a final mask: threshold, the lesion at the point, small components.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskRule {
    pub threshold: f32,
    pub point: PointRule,
    pub small: SmallComponents,
}

impl MaskRule {
    /// The rule of `cfg`.
    pub fn of(cfg: &ModelConfig) -> MaskRule {
        MaskRule {
            threshold: cfg.mask_threshold,
            point: PointRule::of(cfg),
            small: SmallComponents::of(cfg),
        }
    }

    /// Writes the mask of `mean` on `grid` under this rule into `out` as 0/1 and returns its
    /// voxel count: `mean >= threshold`, with the point's components of `mean >=
    /// point.threshold` added, then the small components dropped.
    pub fn apply(
        &self,
        mean: &[f32],
        grid: PatchGrid,
        out: &mut [u8],
        scratch: &mut ComponentScratch,
    ) -> Result<u64> {
        self.point.check()?;
        self.cut(mean, grid, out, scratch)?;
        drop_small_components_with(out, grid, self.small, scratch)
    }

    /// The mask before the small-component rule: the threshold and the point's components.
    pub fn cut(
        &self,
        mean: &[f32],
        grid: PatchGrid,
        out: &mut [u8],
        scratch: &mut ComponentScratch,
    ) -> Result<()> {
        if mean.len() != out.len() {
            return Err(Error::invalid(format!(
                "mean map of {} and mask of {} voxels",
                mean.len(),
                out.len()
            )));
        }
        for (m, &p) in out.iter_mut().zip(mean) {
            *m = u8::from(p >= self.threshold);
        }
        if !self.point.is_active(self.threshold) {
            return Ok(());
        }
        let labels = Grid::new(mean.len(), grid.dims_zyx)?;
        grid.check()?;
        let (t, r2) = (self.point.threshold, self.point.radius_mm.powi(2));
        labels.mark_components(
            |i| mean[i] >= t,
            scratch,
            |c| grid.nearest_centre_mm2(&labels, c) < r2,
        )?;
        for (m, &state) in out.iter_mut().zip(&scratch.state) {
            if state == SELECTED {
                *m = 1;
            }
        }
        Ok(())
    }
}

/// Writes the final mask of `mean` (one patch of `cfg`'s model) into `out` as 0/1 and returns
/// its voxel count. Fails when a buffer's length is not the patch's voxel count or the
/// scratch of the component pass cannot be allocated.
pub fn final_mask(cfg: &ModelConfig, mean: &[f32], out: &mut [u8]) -> Result<u64> {
    // Empty: a component pass grows it to the patch when the rule has one.
    let mut scratch = ComponentScratch::default();
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
    MaskRule::of(cfg).apply(mean, PatchGrid::of(cfg), out, scratch)
}

/// Clears in `mask` (0/1, on `grid`) the 26-connected components `rule` drops; returns the
/// voxels left.
pub fn drop_small_components(
    mask: &mut [u8],
    grid: PatchGrid,
    rule: SmallComponents,
) -> Result<u64> {
    let mut scratch = ComponentScratch::new(if rule.is_active() { mask.len() } else { 0 })?;
    drop_small_components_with(mask, grid, rule, &mut scratch)
}

/// [`drop_small_components`] with the component pass's buffers given.
pub fn drop_small_components_with(
    mask: &mut [u8],
    grid: PatchGrid,
    rule: SmallComponents,
    scratch: &mut ComponentScratch,
) -> Result<u64> {
    let labels = Grid::new(mask.len(), grid.dims_zyx)?;
    grid.check()?;
    rule.check()?;
    if rule.is_active() {
        let voxel_mm3 = grid.voxel_mm3();
        let dropped = |c: &[u32]| {
            let volume = c.len() as f64 * voxel_mm3;
            if volume >= rule.min_mm3 {
                return false;
            }
            rule.drops(volume, grid.nearest_centre_mm2(&labels, c))
        };
        labels.mark_components(|i| mask[i] != 0, scratch, dropped)?;
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
    const ONE: [f64; 3] = [1.0, 1.0, 1.0];

    fn drop_below(m: &mut [u8], dims: [usize; 3], spacing: [f64; 3], min_mm3: f64) -> Result<u64> {
        let grid = PatchGrid {
            dims_zyx: dims,
            spacing_xyz: spacing,
        };
        let rule = SmallComponents {
            min_mm3,
            spare_radius_mm: 0.0,
        };
        drop_small_components(m, grid, rule)
    }

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
        assert_eq!(drop_below(&mut m, D, ONE, 3.0).unwrap(), 11);
        assert!(bar.iter().all(|&i| m[i] == 1) && m[speck[0]] == 0);
        assert_eq!(drop_below(&mut m, D, ONE, 3.5).unwrap(), 8);
        assert!(cube.iter().all(|&i| m[i] == 1));
        assert_eq!(drop_below(&mut m, D, ONE, 0.0).unwrap(), 8);
    }

    #[test]
    fn the_volume_counts_the_voxel_size() {
        // 3 voxels of 0.5 mm³ (0.5 × 0.5 × 2 mm) are 1.5 mm³.
        let bar = [at(1, 1, 1), at(1, 1, 2), at(1, 1, 3)];
        let mut m = mask(&bar);
        assert_eq!(drop_below(&mut m, D, [0.5, 0.5, 2.0], 1.5).unwrap(), 3);
        assert_eq!(drop_below(&mut m, D, [0.5, 0.5, 2.0], 1.6).unwrap(), 0);
    }

    #[test]
    fn diagonal_neighbours_join() {
        let chain = [at(0, 0, 0), at(1, 1, 1), at(2, 2, 2)];
        let mut m = mask(&chain);
        assert_eq!(drop_below(&mut m, D, ONE, 3.0).unwrap(), 3);
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

    fn spare(m: &mut [u8], spacing: [f64; 3], min_mm3: f64, radius: f64) -> Result<u64> {
        let grid = PatchGrid {
            dims_zyx: D,
            spacing_xyz: spacing,
        };
        let rule = SmallComponents {
            min_mm3,
            spare_radius_mm: radius,
        };
        drop_small_components(m, grid, rule)
    }

    #[test]
    fn small_components_near_the_centre_are_spared() {
        // The centre voxel of a 6×7×8 (z, y, x) patch is (3, 3, 4). A pair of voxels 2 mm from
        // it along x (nearest voxel (3, 3, 6)) and a single voxel 3 mm away along z.
        let pair = [at(3, 3, 6), at(3, 3, 7)];
        let far = at(0, 3, 4);
        let m0 = mask(&[pair.as_slice(), &[far]].concat());
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, ONE, 4.0, 0.0).unwrap(), 0);
        // Strictly closer than the radius: 2 mm is not closer than 2 mm.
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, ONE, 4.0, 2.0).unwrap(), 0);
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, ONE, 4.0, 2.01).unwrap(), 2);
        assert!(pair.iter().all(|&i| m[i] == 1) && m[far] == 0);
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, ONE, 4.0, 3.01).unwrap(), 3);
        // Distances are in mm: with 0.5 mm in x the pair's nearest voxel is 1 mm away, and
        // with 2 mm in z the single voxel is 6 mm away.
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, [0.5, 1.0, 2.0], 2.5, 1.01).unwrap(), 2);
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, [1.0, 1.0, 2.0], 2.5, 5.99).unwrap(), 2);
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, [1.0, 1.0, 2.0], 2.5, 6.01).unwrap(), 3);
        // Without a minimum the radius changes nothing.
        let mut m = m0.clone();
        assert_eq!(spare(&mut m, ONE, 0.0, 0.0).unwrap(), 3);
        assert!(spare(&mut m, ONE, 1.0, -1.0).is_err());
        assert!(spare(&mut m, ONE, 1.0, f64::NAN).is_err());
    }

    fn point_rule(
        mean: &[f32],
        threshold: f32,
        point: PointRule,
        small: SmallComponents,
    ) -> Vec<u8> {
        let grid = PatchGrid {
            dims_zyx: D,
            spacing_xyz: ONE,
        };
        let rule = MaskRule {
            threshold,
            point,
            small,
        };
        let mut out = vec![7u8; mean.len()];
        let mut scratch = ComponentScratch::new(mean.len()).unwrap();
        let n = rule.apply(mean, grid, &mut out, &mut scratch).unwrap();
        assert_eq!(n, out.iter().map(|&m| u64::from(m)).sum::<u64>());
        out
    }

    #[test]
    fn the_point_rule_adds_the_faint_component_at_the_point_only() {
        // Centre voxel (3, 3, 4). A faint bar through the point with one bright voxel, a
        // faint bar at the patch's corner, and a bright voxel elsewhere.
        let mut mean = vec![0.0f32; 6 * 7 * 8];
        let near = [at(3, 3, 3), at(3, 3, 4), at(3, 3, 5)];
        let far = [at(0, 0, 0), at(0, 0, 1)];
        for &i in near.iter().chain(&far) {
            mean[i] = 0.3;
        }
        mean[at(3, 3, 5)] = 0.9;
        mean[at(5, 6, 7)] = 0.8;
        let on = |m: &[u8], set: &[usize]| set.iter().all(|&i| m[i] == 1);
        let none = SmallComponents::default();
        let plain = point_rule(&mean, 0.5, PointRule::default(), none);
        assert_eq!(plain.iter().map(|&m| u32::from(m)).sum::<u32>(), 2);
        let rule = PointRule {
            threshold: 0.25,
            radius_mm: 1.0,
        };
        let m = point_rule(&mean, 0.5, rule, none);
        assert!(on(&m, &near) && m[at(5, 6, 7)] == 1);
        assert!(far.iter().all(|&i| m[i] == 0));
        assert_eq!(m.iter().map(|&v| u32::from(v)).sum::<u32>(), 4);
        // The faint voxels stay out above their value, and at or below the mask threshold the
        // rule adds nothing.
        for t in [0.35, 0.5, 0.6] {
            let point = PointRule {
                threshold: t,
                ..rule
            };
            assert_eq!(point_rule(&mean, 0.5, point, none), plain, "{t}");
        }
        // Strictly closer than the radius: a bar 1 mm beside the point is not closer than 1 mm.
        let mut side = vec![0.0f32; mean.len()];
        side[at(3, 4, 4)] = 0.3;
        side[at(3, 5, 4)] = 0.3;
        assert_eq!(point_rule(&side, 0.5, rule, none).iter().sum::<u8>(), 0);
        let wider = PointRule {
            radius_mm: 1.01,
            ..rule
        };
        assert_eq!(point_rule(&side, 0.5, wider, none).iter().sum::<u8>(), 2);
        // The small-component rule applies to what the point added.
        let small = SmallComponents {
            min_mm3: 4.0,
            spare_radius_mm: 0.0,
        };
        let m = point_rule(&mean, 0.5, rule, small);
        assert_eq!(m.iter().map(|&v| u32::from(v)).sum::<u32>(), 0);
        let spared = SmallComponents {
            spare_radius_mm: 1.0,
            ..small
        };
        let m = point_rule(&mean, 0.5, rule, spared);
        assert!(on(&m, &near) && m[at(5, 6, 7)] == 0);
    }

    #[test]
    fn a_point_rule_that_adds_nothing_is_canonically_empty() {
        let r = PointRule {
            threshold: 0.3,
            radius_mm: 8.0,
        };
        assert_eq!(r.canonical(0.5), r);
        assert_eq!(r.canonical(0.3), PointRule::default());
        let r0 = PointRule {
            radius_mm: 0.0,
            ..r
        };
        assert_eq!(r0.canonical(0.5), PointRule::default());
        for bad in [
            PointRule {
                threshold: -0.1,
                ..r
            },
            PointRule {
                threshold: f32::NAN,
                ..r
            },
            PointRule {
                radius_mm: f64::INFINITY,
                ..r
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_rule_without_minimum_is_canonically_empty() {
        let r = SmallComponents {
            min_mm3: 0.0,
            spare_radius_mm: 8.0,
        };
        assert_eq!(r.canonical(), SmallComponents::default());
        let r = SmallComponents {
            min_mm3: 1.0,
            spare_radius_mm: 8.0,
        };
        assert_eq!(r.canonical(), r);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut m = mask(&[]);
        assert!(drop_below(&mut m, D, ONE, f64::NAN).is_err());
        assert!(drop_below(&mut m, D, ONE, -1.0).is_err());
        assert!(drop_below(&mut m, D, [1.0, 0.0, 1.0], 1.0).is_err());
        assert!(drop_below(&mut m, D, [f64::INFINITY, 1.0, 1.0], 1.0).is_err());
        assert!(drop_below(&mut m[1..], D, ONE, 1.0).is_err());
        assert!(drop_below(&mut [], [usize::MAX, 2, 1], ONE, 1.0).is_err());
    }
}
