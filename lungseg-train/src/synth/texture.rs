//! Smooth correlated texture: value noise on a coarse lattice, trilinearly interpolated.
//! Cheap (one lattice lookup per voxel) and looks like lung parenchyma / soft-tissue mottle.

use rand::RngExt;
use rand_distr::StandardNormal;

/// Unit-variance-ish noise, correlated over about `cell_mm`.
#[derive(Debug, Clone)]
pub struct ValueNoise {
    dims: [usize; 3],
    cell_mm: f64,
    values: Vec<f32>,
}

impl ValueNoise {
    /// Covers `[0, extent_mm]` on each axis (coordinates outside are clamped).
    pub fn new(rng: &mut impl rand::Rng, extent_mm: [f64; 3], cell_mm: f64) -> Self {
        let dims = extent_mm.map(|e| (e / cell_mm).ceil() as usize + 2);
        let values = (0..dims.iter().product())
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        ValueNoise {
            dims,
            cell_mm,
            values,
        }
    }

    /// Noise at a point (mm, in the frame the extent was given in).
    #[inline]
    pub fn at(&self, p: [f64; 3]) -> f32 {
        let mut i0 = [0usize; 3];
        let mut f = [0f32; 3];
        for a in 0..3 {
            let u = (p[a] / self.cell_mm).clamp(0.0, (self.dims[a] - 2) as f64);
            let b = (u as usize).min(self.dims[a] - 2);
            i0[a] = b;
            // Smoothstep weights hide the lattice.
            let t = (u - b as f64) as f32;
            f[a] = t * t * (3.0 - 2.0 * t);
        }
        let [nx, ny, _] = self.dims;
        let v = |i: usize, j: usize, k: usize| {
            self.values[((i0[2] + k) * ny + i0[1] + j) * nx + i0[0] + i]
        };
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let row = |j, k| lerp(v(0, j, k), v(1, j, k), f[0]);
        let plane = |k| lerp(row(0, k), row(1, k), f[1]);
        lerp(plane(0), plane(1), f[2])
    }
}
