//! The final mask a point call writes for its caller (`lungseg_mc_options.final_mask`,
//! `final_mask_len`, `mask_source`, V5): one patch's mask, or in a batch one per point, with how
//! each was made (`crate::mc::point`); and the model's second look behind it
//! (`lungseg_model_get_second_look`).

use super::model::{region, Region};
use super::versioned::{arg_versioned_out, versioned};
use super::{arg_ref, arg_slice_mut, guard, lungseg_mc_options, lungseg_model, lungseg_status};
use crate::error::{Error, Result};
use crate::mc::point::MaskSource;

/// A model's second look at half its spacing around the requested point
/// (`lungseg_model_get_second_look`; docs/model-format.md, `second_look`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_second_look {
    /// `sizeof(lungseg_second_look)`; on return, the bytes written.
    pub struct_size: u32,
    /// 1 when the model has a second look (the fields below are then set), 0 when not.
    pub present: u32,
    /// The coarsest scan resolution (mm along any axis: voxel spacing, or slice thickness where
    /// coarser) the second look runs on.
    pub max_scan_spacing_mm: f64,
    /// The mask threshold of the model's mean when the second look runs.
    pub first_threshold: f32,
    /// The mask threshold of the second look's mean.
    pub threshold: f32,
    /// A component of the joined mask is kept when the model's mean reaches this in one of
    /// its voxels.
    pub support: f32,
}
versioned!(lungseg_second_look, v1 = 32, v1_last = support);

/// The second look of `model` into `*out` (its `struct_size` set by the caller): `present` 0
/// when the model has none. Calls that ask for the final mask
/// (`lungseg_mc_options.final_mask`) at a point of a scan run it where it applies.
#[no_mangle]
pub unsafe extern "C" fn lungseg_model_get_second_look(
    model: *const lungseg_model,
    out: *mut lungseg_second_look,
) -> lungseg_status {
    guard(|| {
        let m = arg_ref(model, "model")?;
        let out = arg_versioned_out(out, "out")?.ok_or_else(|| Error::invalid("out is NULL"))?;
        let mut v = lungseg_second_look::default();
        if let Some(look) = m.inner.config().second_look {
            v.present = 1;
            v.max_scan_spacing_mm = look.max_scan_spacing_mm;
            v.first_threshold = look.first_threshold;
            v.threshold = look.threshold;
            v.support = look.support;
        }
        out.write(v);
        Ok(())
    })
}

/// The caller's mask buffers; `mask` NULL: no mask wanted.
#[derive(Clone, Copy)]
pub(super) struct MaskArgs {
    mask: *mut u8,
    len: usize,
    source: *mut u32,
}

impl MaskArgs {
    /// The V5 fields of `c`: `mask_source` needs `final_mask`, and must be aligned.
    pub(super) fn from_c(c: &lungseg_mc_options) -> Result<Self> {
        if !c.mask_source.is_null() && c.final_mask.is_null() {
            return Err(Error::invalid(
                "opts->mask_source is set without opts->final_mask",
            ));
        }
        if !(c.mask_source as usize).is_multiple_of(std::mem::align_of::<u32>()) {
            return Err(Error::invalid(
                "opts->mask_source is not aligned to 4 bytes",
            ));
        }
        Ok(MaskArgs {
            mask: c.final_mask,
            len: c.final_mask_len,
            source: c.mask_source,
        })
    }

    /// Fails unless a wanted mask holds `points` masks of `voxels` each.
    pub(super) fn check(&self, points: usize, voxels: usize) -> Result<()> {
        if self.mask.is_null() {
            return Ok(());
        }
        let want = points
            .checked_mul(voxels)
            .ok_or_else(|| Error::invalid("opts->final_mask would be too large"))?;
        if self.len != want {
            return Err(Error::invalid(format!(
                "opts->final_mask_len is {}, expected {want} ({points} × {voxels} voxels)",
                self.len
            )));
        }
        Ok(())
    }

    /// The whole buffers of `points` points, for overlap checks.
    pub(super) fn regions(&self, points: usize) -> [Region; 2] {
        if self.mask.is_null() {
            return [None, None];
        }
        [
            region("opts->final_mask", self.mask.cast_const(), self.len),
            region("opts->mask_source", self.source.cast_const(), points),
        ]
    }

    /// Point `i`'s mask of `voxels` bytes and its source (after [`MaskArgs::check`]).
    ///
    /// # Safety
    /// The caller's buffers hold what [`MaskArgs::check`] accepted; the slice is used only
    /// while the call runs.
    pub(super) unsafe fn point<'a>(&self, i: usize, voxels: usize) -> Result<Option<MaskOut<'a>>> {
        if self.mask.is_null() {
            return Ok(None);
        }
        let mask = arg_slice_mut(self.mask.add(i * voxels), voxels, "opts->final_mask")?;
        let source = if self.source.is_null() {
            std::ptr::null_mut()
        } else {
            self.source.add(i)
        };
        Ok(Some(MaskOut { mask, source }))
    }
}

/// One point's mask and where its source goes.
pub(super) struct MaskOut<'a> {
    pub(super) mask: &'a mut [u8],
    source: *mut u32,
}

impl MaskOut<'_> {
    /// Writes the mask's source where the caller asked for it.
    pub(super) fn write_source(&self, s: MaskSource) {
        if !self.source.is_null() {
            // SAFETY: `MaskArgs::point` offset a checked, aligned pointer within the batch.
            unsafe { self.source.write(s as u32) }
        }
    }

    /// The mask's bytes, for overlap checks.
    pub(super) fn regions(&self) -> [Region; 2] {
        [
            region("opts->final_mask", self.mask.as_ptr(), self.mask.len()),
            region("opts->mask_source", self.source.cast_const(), 1),
        ]
    }
}
