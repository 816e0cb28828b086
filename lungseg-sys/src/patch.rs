//! HU patches resampled around world points (skeleton; see issue 2).
//!
//! Patch grid convention (part of the API): the patch axes are the world axes (LPS), voxel
//! `(i, j, k)` of a patch centred at `c` sits at `c + (idx - size/2) * spacing` (integer division,
//! so voxel 32 of 64 is exactly the centre); buffers are z-major with x fastest.

use crate::error::{Error, Result};
use crate::volume::Volume;

/// What patch to cut: size in voxels (x, y, z), spacing in mm, and the value outside the scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchSpec {
    pub size: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub outside_hu: f32,
}

impl Default for PatchSpec {
    fn default() -> Self {
        PatchSpec {
            size: [64; 3],
            spacing_mm: [1.0; 3],
            outside_hu: -1000.0,
        }
    }
}

/// Intensity window mapped to [0, 1] for the model: `clip((hu - lo) / (hi - lo), 0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HuWindow {
    pub lo: f32,
    pub hi: f32,
}

impl Default for HuWindow {
    fn default() -> Self {
        HuWindow {
            lo: -1000.0,
            hi: 400.0,
        }
    }
}

/// Trilinear HU patch around `center_world` into `dst` (`size` voxels, x fastest).
pub fn extract_hu(
    volume: &Volume,
    center_world: [f64; 3],
    spec: &PatchSpec,
    dst: &mut [f32],
) -> Result<()> {
    let _ = (volume, center_world, spec, dst);
    Err(Error::unsupported("patch extraction not implemented yet"))
}
