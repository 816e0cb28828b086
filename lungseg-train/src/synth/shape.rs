//! Blob shapes for lesions: a stretched, rotated sphere whose radius varies with direction
//! (von Mises bumps on the sphere: broad ones lobulate, narrow ones and notches make it
//! irregular), with an approximate signed distance for partial-volume edges.

use super::vessels::{dot, normalize, perpendicular, sub};
use rand::RngExt;
use rand_distr::StandardNormal;

/// Margin of a lesion (Fleischner/Lung-RADS descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Margin {
    Smooth,
    Lobulated,
    Irregular,
    Spiculated,
}

impl Margin {
    pub fn name(self) -> &'static str {
        match self {
            Margin::Smooth => "smooth",
            Margin::Lobulated => "lobulated",
            Margin::Irregular => "irregular",
            Margin::Spiculated => "spiculated",
        }
    }
}

/// A bump of the radius towards `dir`: `amp · exp(kappa · (u·dir − 1))`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bump {
    dir: [f64; 3],
    kappa: f64,
    amp: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub center: [f64; 3],
    /// Base radius (mm) before stretch and bumps.
    pub radius: f64,
    /// Orthonormal local axes (rows) and the stretch along each.
    axes: [[f64; 3]; 3],
    stretch: [f64; 3],
    bumps: Vec<Bump>,
}

pub fn random_unit(rng: &mut impl rand::Rng) -> [f64; 3] {
    normalize([
        rng.sample(StandardNormal),
        rng.sample(StandardNormal),
        rng.sample(StandardNormal),
    ])
}

impl Shape {
    /// A shape of this margin; `first_axis`/`flatten` squash it along a direction (a
    /// perifissural nodule's lentiform look).
    pub fn random(
        rng: &mut impl rand::Rng,
        center: [f64; 3],
        radius: f64,
        margin: Margin,
        flatten: Option<([f64; 3], f64)>,
    ) -> Self {
        let a0 = flatten.map_or_else(|| random_unit(rng), |(n, _)| normalize(n));
        let a1 = perpendicular(rng, a0);
        let a2 = cross(a0, a1);
        let (spread, n, kappa, amp) = match margin {
            Margin::Smooth => (0.12, 2, (2.0, 4.0), (-0.06, 0.06)),
            Margin::Lobulated => (0.15, rng.random_range(3..=6), (3.0, 7.0), (0.12, 0.3)),
            Margin::Irregular => (0.25, rng.random_range(8..=14), (6.0, 16.0), (-0.25, 0.3)),
            Margin::Spiculated => (0.12, rng.random_range(2..=4), (3.0, 6.0), (0.05, 0.15)),
        };
        let mut stretch = [
            1.0 + rng.random_range(-spread..spread),
            1.0 + rng.random_range(-spread..spread),
            1.0 + rng.random_range(-spread..spread),
        ];
        if let Some((_, f)) = flatten {
            stretch[0] = f;
        }
        // Keep the volume of the stretched sphere that of the unstretched one.
        let g = (stretch[0] * stretch[1] * stretch[2]).cbrt();
        let stretch = stretch.map(|s| s / g);
        let bumps = (0..n)
            .map(|_| Bump {
                dir: random_unit(rng),
                kappa: rng.random_range(kappa.0..kappa.1),
                amp: rng.random_range(amp.0..amp.1),
            })
            .collect();
        Shape {
            center,
            radius,
            axes: [a0, a1, a2],
            stretch,
            bumps,
        }
    }

    /// Approximate signed distance (mm) to the surface, positive inside.
    pub fn inside_mm(&self, p: [f64; 3]) -> f64 {
        let d = sub(p, self.center);
        let q: [f64; 3] = std::array::from_fn(|i| dot(d, self.axes[i]) / self.stretch[i]);
        let rho = dot(q, q).sqrt();
        let u = if rho > 1e-9 {
            q.map(|v| v / rho)
        } else {
            [1.0, 0.0, 0.0]
        };
        let s: f64 = self
            .bumps
            .iter()
            .map(|b| b.amp * (b.kappa * (dot(u, b.dir) - 1.0)).exp())
            .sum();
        let min_stretch = self.stretch.iter().copied().fold(f64::INFINITY, f64::min);
        (self.radius * (1.0 + s).max(0.3) - rho) * min_stretch
    }

    /// Radius (mm) of a sphere around the centre that holds the whole shape.
    pub fn extent(&self) -> f64 {
        let bump: f64 = self.bumps.iter().map(|b| b.amp.max(0.0)).sum();
        let max_stretch = self.stretch.iter().copied().fold(0.0, f64::max);
        self.radius * (1.0 + bump) * max_stretch
    }

    /// The surface point in direction `u` from the centre (for spicule roots).
    pub fn surface_towards(&self, u: [f64; 3]) -> [f64; 3] {
        let mut t = 0.0;
        while t < self.extent()
            && self.inside_mm(std::array::from_fn(|i| self.center[i] + t * u[i])) > 0.0
        {
            t += 0.2;
        }
        std::array::from_fn(|i| self.center[i] + t * u[i])
    }
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
