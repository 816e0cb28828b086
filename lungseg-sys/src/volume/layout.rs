//! Where each voxel's samples sit in a volume's storage, and how a stored value becomes HU.
//! Files are packed (x fastest, rows and slices back to back); pixels from a host's memory may
//! have padded rows or slices (DICOM frames in a larger buffer) and a DICOM rescale.

/// Row and slice starts in samples, and the rescale applied on read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Samples from voxel (i, j, k) to (i, j + 1, k).
    pub row_stride: usize,
    /// Samples from voxel (i, j, k) to (i, j, k + 1).
    pub slice_stride: usize,
    pub rescale: Rescale,
}

impl Layout {
    /// Rows and slices back to back, no rescale. `dims` × `channels` must fit a `usize`
    /// (checked where the dims come from).
    pub fn packed(dims: [usize; 3], channels: usize) -> Self {
        Layout {
            row_stride: dims[0] * channels,
            slice_stride: dims[0] * dims[1] * channels,
            rescale: Rescale::IDENTITY,
        }
    }

    /// Samples the storage must hold: through the last channel of the last voxel.
    /// `None` on overflow.
    pub fn span(&self, dims: [usize; 3], channels: usize) -> Option<usize> {
        let last_row = (dims[1] - 1).checked_mul(self.row_stride)?;
        let last_slice = (dims[2] - 1).checked_mul(self.slice_stride)?;
        let row = dims[0].checked_mul(channels)?;
        last_slice.checked_add(last_row)?.checked_add(row)
    }

    /// Rows and slices back to back (the rescale aside).
    pub fn is_packed(&self, dims: [usize; 3], channels: usize) -> bool {
        let p = Self::packed(dims, channels);
        self.row_stride == p.row_stride && self.slice_stride == p.slice_stride
    }

    /// Index of the first sample of row (j, k).
    #[inline(always)]
    pub fn row_start(&self, j: usize, k: usize) -> usize {
        k * self.slice_stride + j * self.row_stride
    }
}

/// `hu = stored · slope + intercept` in single precision (DICOM's Rescale Slope/Intercept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescale {
    pub slope: f32,
    pub intercept: f32,
}

impl Rescale {
    pub const IDENTITY: Rescale = Rescale {
        slope: 1.0,
        intercept: 0.0,
    };

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// `slope` and `intercept` in single precision; `None` unless both are finite, the slope is
    /// non-zero and every stored value of `stored` maps to a finite float (float samples are
    /// checked one by one where they are read).
    pub fn checked(slope: f64, intercept: f64, stored: super::ElementType) -> Option<Rescale> {
        use super::ElementType as E;
        let r = Rescale {
            slope: slope as f32,
            intercept: intercept as f32,
        };
        let largest = match stored {
            E::Short => -(i16::MIN as f32),
            E::UShort => u16::MAX as f32,
            E::Int => -(i32::MIN as f32),
            _ => 0.0,
        };
        let bound = r.slope.abs() * largest + r.intercept.abs();
        let ok = r.slope.is_finite() && r.slope != 0.0 && r.intercept.is_finite();
        (ok && bound.is_finite()).then_some(r)
    }

    /// The HU of one stored value; the identity returns it untouched (bit for bit: `-0.0 +
    /// 0.0` would not).
    #[inline]
    pub fn apply(self, stored: f32) -> f32 {
        if self.is_identity() {
            stored
        } else {
            self.hu(stored)
        }
    }
}

/// Stored value → HU, monomorphised so that the identity costs nothing in inner loops.
pub trait ToHu: Copy {
    fn hu(self, stored: f32) -> f32;
}

/// No rescale.
#[derive(Debug, Clone, Copy)]
pub struct Identity;

impl ToHu for Identity {
    #[inline(always)]
    fn hu(self, stored: f32) -> f32 {
        stored
    }
}

impl ToHu for Rescale {
    #[inline(always)]
    fn hu(self, stored: f32) -> f32 {
        stored * self.slope + self.intercept
    }
}

/// Runs `$body` with `$r` bound to a [`ToHu`]: [`Identity`] when the rescale is the identity.
#[macro_export]
macro_rules! with_hu {
    ($rescale:expr, |$r:ident| $body:expr) => {{
        let rescale: $crate::volume::Rescale = $rescale;
        if rescale.is_identity() {
            let $r = $crate::volume::Identity;
            $body
        } else {
            let $r = rescale;
            $body
        }
    }};
}
