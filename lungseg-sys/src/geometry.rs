//! Voxel grid ↔ world (mm, LPS as in ITK). `world = origin + D · diag(spacing) · index`, with the
//! full direction matrix D: LUNA16 has flipped scans, and ignoring D puts nodules in the wrong place.

use crate::error::{Error, Result};

/// Where a voxel grid sits in the world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Voxels per axis (x, y, z), x fastest in memory.
    pub dims: [usize; 3],
    /// Voxel size in mm per axis.
    pub spacing: [f64; 3],
    /// World position of voxel (0, 0, 0) in mm.
    pub origin: [f64; 3],
    /// Direction cosines `D[r][c]`: column c is the world direction of index axis c.
    pub direction: [[f64; 3]; 3],
    /// `(D · diag(spacing))⁻¹`, cached for world → index.
    inverse: [[f64; 3]; 3],
}

pub const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

impl Geometry {
    /// Validates dims, spacing and direction; the only way to build a `Geometry`.
    pub fn new(
        dims: [usize; 3],
        spacing: [f64; 3],
        origin: [f64; 3],
        direction: [[f64; 3]; 3],
    ) -> Result<Self> {
        if dims.contains(&0) {
            return Err(Error::format(format!(
                "DimSize {dims:?} has a zero dimension"
            )));
        }
        dims.iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::limit(format!("DimSize {dims:?} overflows the voxel count")))?;
        if spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::format(format!(
                "ElementSpacing {spacing:?} must be finite and positive"
            )));
        }
        if origin.iter().any(|o| !o.is_finite()) {
            return Err(Error::format(format!("origin {origin:?} must be finite")));
        }
        if direction.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::format(format!(
                "direction {direction:?} must be finite"
            )));
        }
        let mut m = direction;
        for row in m.iter_mut() {
            for (c, v) in row.iter_mut().enumerate() {
                *v *= spacing[c];
            }
        }
        let inverse = invert3(&m)
            .ok_or_else(|| Error::format(format!("direction matrix {direction:?} is singular")))?;
        // A direction matrix must be (close to) a rotation/reflection: columns of unit length.
        let det = det3(&direction);
        if det.abs() < 1e-6 {
            return Err(Error::format(format!(
                "direction matrix {direction:?} is singular"
            )));
        }
        Ok(Geometry {
            dims,
            spacing,
            origin,
            direction,
            inverse,
        })
    }

    /// An axis-aligned grid (identity direction).
    pub fn axis_aligned(dims: [usize; 3], spacing: [f64; 3], origin: [f64; 3]) -> Result<Self> {
        Self::new(dims, spacing, origin, IDENTITY)
    }

    pub fn voxel_count(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Continuous index of a world point; the same numbers as ITK's
    /// `TransformPhysicalPointToContinuousIndex`.
    #[inline]
    pub fn world_to_index(&self, world: [f64; 3]) -> [f64; 3] {
        let d = [
            world[0] - self.origin[0],
            world[1] - self.origin[1],
            world[2] - self.origin[2],
        ];
        mat_vec(&self.inverse, d)
    }

    /// World point of a continuous index (`TransformContinuousIndexToPhysicalPoint`).
    #[inline]
    pub fn index_to_world(&self, index: [f64; 3]) -> [f64; 3] {
        let scaled = [
            index[0] * self.spacing[0],
            index[1] * self.spacing[1],
            index[2] * self.spacing[2],
        ];
        let r = mat_vec(&self.direction, scaled);
        [
            self.origin[0] + r[0],
            self.origin[1] + r[1],
            self.origin[2] + r[2],
        ]
    }

    /// Whether a continuous index lies inside the grid's voxel centres' hull, `[0, n-1]` per axis.
    pub fn contains_index(&self, index: [f64; 3]) -> bool {
        (0..3).all(|a| index[a] >= 0.0 && index[a] <= (self.dims[a] - 1) as f64)
    }

    /// Row-major flattening of the direction for C (`D[r][c]` at `r * 3 + c`).
    pub fn direction_row_major(&self) -> [f64; 9] {
        let d = &self.direction;
        [
            d[0][0], d[0][1], d[0][2], d[1][0], d[1][1], d[1][2], d[2][0], d[2][1], d[2][2],
        ]
    }
}

#[inline]
fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse by the adjugate; `None` when (near) singular relative to the matrix scale.
fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    let scale = m.iter().flatten().fold(0.0f64, |a, v| a.max(v.abs()));
    if !det.is_finite() || scale == 0.0 || det.abs() <= 1e-12 * scale * scale * scale {
        return None;
    }
    let inv_det = 1.0 / det;
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) * inv_det,
            -c(0, 1, 2, 2) * inv_det,
            c(0, 1, 1, 2) * inv_det,
        ],
        [
            -c(1, 0, 2, 2) * inv_det,
            c(0, 0, 2, 2) * inv_det,
            -c(0, 0, 1, 2) * inv_det,
        ],
        [
            c(1, 0, 2, 1) * inv_det,
            -c(0, 0, 2, 1) * inv_det,
            c(0, 0, 1, 1) * inv_det,
        ],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 3], b: [f64; 3]) -> bool {
        (0..3).all(|i| (a[i] - b[i]).abs() < 1e-9)
    }

    #[test]
    fn round_trip_rotated_and_flipped() {
        let s = std::f64::consts::FRAC_1_SQRT_2;
        for dir in [
            IDENTITY,
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
            [[s, -s, 0.0], [s, s, 0.0], [0.0, 0.0, 1.0]],
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        ] {
            let g =
                Geometry::new([10, 20, 30], [0.7, 0.8, 2.5], [-100.0, 50.0, -300.0], dir).unwrap();
            for idx in [[0.0, 0.0, 0.0], [3.5, 7.25, 29.0], [-2.0, 40.0, 1.0]] {
                assert!(
                    close(g.world_to_index(g.index_to_world(idx)), idx),
                    "{dir:?} {idx:?}"
                );
            }
        }
    }

    #[test]
    fn flipped_axes_point_the_other_way() {
        let g = Geometry::new(
            [4, 4, 4],
            [2.0, 3.0, 5.0],
            [10.0, 10.0, 10.0],
            [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        )
        .unwrap();
        assert!(close(g.index_to_world([1.0, 1.0, 1.0]), [8.0, 7.0, 15.0]));
        assert!(close(g.world_to_index([6.0, 4.0, 20.0]), [2.0, 2.0, 2.0]));
    }

    #[test]
    fn rejects_bad_geometry() {
        let e = Geometry::new([0, 1, 1], [1.0; 3], [0.0; 3], IDENTITY).unwrap_err();
        assert!(e.message.contains("zero dimension"), "{e}");
        let e = Geometry::new([1, 1, 1], [1.0, f64::NAN, 1.0], [0.0; 3], IDENTITY).unwrap_err();
        assert!(e.message.contains("ElementSpacing"), "{e}");
        let e = Geometry::new([1, 1, 1], [1.0, -1.0, 1.0], [0.0; 3], IDENTITY).unwrap_err();
        assert!(e.message.contains("ElementSpacing"), "{e}");
        let sing = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        let e = Geometry::new([1, 1, 1], [1.0; 3], [0.0; 3], sing).unwrap_err();
        assert!(e.message.contains("singular"), "{e}");
        let e = Geometry::new([usize::MAX, 2, 2], [1.0; 3], [0.0; 3], IDENTITY).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Limit);
    }
}
