//! The object being scanned: true HU as f32 on a render grid that has the acquisition's
//! in-plane spacing and a finer z step (the slice-sensitivity profile is applied later,
//! [`super::acquisition`]), addressed in the anatomy frame, plus the lung mask that vessels,
//! airways and distractors are clipped to.

/// A voxel grid over the anatomy frame, x fastest.
pub struct Canvas {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    /// Anatomy-frame position (mm) of voxel (0, 0, 0).
    pub start: [f64; 3],
    pub hu: Vec<f32>,
    pub lung: Vec<bool>,
}

/// How a stroke changes the voxels it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Raise towards the target only: a ground-glass nodule does not darken a vessel it
    /// touches, and overlapping strokes never overshoot.
    Brighten,
    /// Lower towards the target only (air: emphysema, airway lumen, cavities).
    Darken,
    /// Replace (blend) whatever is there.
    Set,
}

/// A stroke: where it may act, how, and towards which HU.
#[derive(Debug, Clone, Copy)]
pub struct Stroke {
    pub lo: [f64; 3],
    pub hi: [f64; 3],
    pub lung_only: bool,
    pub mode: Mode,
}

impl Canvas {
    /// An empty canvas (HU and lung filled by the caller, x fastest).
    pub fn with_capacity(dims: [usize; 3], spacing: [f64; 3], start: [f64; 3]) -> Self {
        let n = dims.iter().product();
        Canvas {
            dims,
            spacing,
            start,
            hu: Vec::with_capacity(n),
            lung: Vec::with_capacity(n),
        }
    }

    #[inline]
    pub fn coord(&self, axis: usize, i: usize) -> f64 {
        self.start[axis] + i as f64 * self.spacing[axis]
    }

    /// Width (mm) of the anti-aliasing edge of painted solids: one in-plane voxel, so that a
    /// surface inside a voxel covers it by the fraction it occupies (the optical blur and the
    /// slice profile come later, in the acquisition).
    pub fn edge_mm(&self) -> f64 {
        self.spacing[0]
    }

    /// Index ranges (half-open) covering the box `[lo, hi]`, `None` if it misses the grid.
    pub fn range(&self, lo: [f64; 3], hi: [f64; 3]) -> Option<[(usize, usize); 3]> {
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

    /// Moves voxels of the box towards `value(p)` by `coverage(p)` ∈ [0, 1] (as `mode` allows).
    /// `f` returns `(coverage, target HU)` at an anatomy-frame point.
    pub fn paint(&mut self, s: Stroke, f: impl Fn([f64; 3]) -> (f32, f32)) {
        let Some([(x0, x1), (y0, y1), (z0, z1)]) = self.range(s.lo, s.hi) else {
            return;
        };
        let [nx, ny, _] = self.dims;
        for k in z0..z1 {
            let z = self.coord(2, k);
            for j in y0..y1 {
                let y = self.coord(1, j);
                for i in x0..x1 {
                    let idx = (k * ny + j) * nx + i;
                    if s.lung_only && !self.lung[idx] {
                        continue;
                    }
                    let (c, target) = f([self.coord(0, i), y, z]);
                    if c <= 0.0 {
                        continue;
                    }
                    let cur = self.hu[idx];
                    let allowed = match s.mode {
                        Mode::Brighten => target > cur,
                        Mode::Darken => target < cur,
                        Mode::Set => true,
                    };
                    if allowed {
                        self.hu[idx] = cur + c.min(1.0) * (target - cur);
                    }
                }
            }
        }
    }
}

/// Coverage of a solid whose surface is at signed distance `inside_mm` (positive inside),
/// box-filtered over `edge_mm`: 0.5 on the surface.
#[inline]
pub fn soft_edge(inside_mm: f64, edge_mm: f64) -> f32 {
    (inside_mm / edge_mm + 0.5).clamp(0.0, 1.0) as f32
}

/// Coverage of a slab of `width_mm` (a fissure, a wall) at distance `d_mm` from its mid-plane,
/// box-filtered over `edge_mm`: thinner than a voxel shows as fainter, as partial volume does.
#[inline]
pub fn slab(d_mm: f64, width_mm: f64, edge_mm: f64) -> f32 {
    let (a, b) = (d_mm.abs() - edge_mm / 2.0, d_mm.abs() + edge_mm / 2.0);
    let overlap = (b.min(width_mm / 2.0) - a.max(-width_mm / 2.0)).max(0.0);
    (overlap / edge_mm).min(1.0) as f32
}
