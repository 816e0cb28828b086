//! The scan being drawn: HU as f32 on the unflipped (identity-direction) grid, addressed in
//! the anatomy frame, plus the lung mask that vessels are clipped to.

/// A voxel grid over the anatomy frame, x fastest.
pub struct Canvas {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    /// Anatomy-frame position (mm) of voxel (0, 0, 0).
    pub start: [f64; 3],
    pub hu: Vec<f32>,
    pub lung: Vec<bool>,
}

/// A soft edge of this width (mm) stands in for the scanner's blur and partial volume.
pub const EDGE_MM: f64 = 1.0;

impl Canvas {
    #[inline]
    pub fn coord(&self, axis: usize, i: usize) -> f64 {
        self.start[axis] + i as f64 * self.spacing[axis]
    }

    /// Index ranges (half-open) covering the box `[lo, hi]`, `None` if it misses the grid.
    fn range(&self, lo: [f64; 3], hi: [f64; 3]) -> Option<[(usize, usize); 3]> {
        let mut r = [(0, 0); 3];
        for a in 0..3 {
            let i0 = ((lo[a] - self.start[a]) / self.spacing[a]).ceil().max(0.0);
            let i1 = ((hi[a] - self.start[a]) / self.spacing[a]).floor() + 1.0;
            let i1 = i1.min(self.dims[a] as f64);
            if i0 >= i1 {
                return None;
            }
            r[a] = (i0 as usize, i1 as usize);
        }
        Some(r)
    }

    /// Raises voxels in the box towards `target` by `coverage(p)` ∈ [0, 1]: only ever
    /// brightens, so a ground-glass nodule does not darken a vessel or the chest wall it
    /// touches, and overlapping strokes never overshoot `target`.
    pub fn brighten(
        &mut self,
        lo: [f64; 3],
        hi: [f64; 3],
        lung_only: bool,
        target: f32,
        coverage: impl Fn([f64; 3]) -> f32,
    ) {
        let Some([(x0, x1), (y0, y1), (z0, z1)]) = self.range(lo, hi) else {
            return;
        };
        let [nx, ny, _] = self.dims;
        for k in z0..z1 {
            let z = self.coord(2, k);
            for j in y0..y1 {
                let y = self.coord(1, j);
                for i in x0..x1 {
                    let idx = (k * ny + j) * nx + i;
                    if (lung_only && !self.lung[idx]) || self.hu[idx] >= target {
                        continue;
                    }
                    let c = coverage([self.coord(0, i), y, z]);
                    if c > 0.0 {
                        self.hu[idx] += c * (target - self.hu[idx]);
                    }
                }
            }
        }
    }
}

/// Coverage of a soft-edged solid whose surface is at signed distance `inside_mm` (positive
/// inside): 0.5 on the surface, linear over [`EDGE_MM`].
#[inline]
pub fn soft_edge(inside_mm: f64) -> f32 {
    (inside_mm / EDGE_MM + 0.5).clamp(0.0, 1.0) as f32
}
