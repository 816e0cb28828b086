//! An in-memory scalar image: its geometry, its on-disk element type and the voxels in the
//! type they were stored in (an int16 CT stays int16: half the memory of f32 and no copy cost).

mod borrowed;
#[cfg(feature = "dicom")]
pub mod dicom;
mod layout;
pub mod memory;

use crate::error::{Error, Result};
use crate::ffi::lungseg_element_type as Met;
use crate::geometry::Geometry;
use std::borrow::Cow;

pub use borrowed::{Borrowed, Lendable, RawSlice};
pub use layout::{Identity, Layout, Rescale, ToHu};

/// The numeric MetaIO element types; the discriminants are the C ABI's `lungseg_element_type`
/// (MetaIO's `MET_ValueEnumType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ElementType {
    Char = Met::LUNGSEG_MET_CHAR as u32,
    UChar = Met::LUNGSEG_MET_UCHAR as u32,
    Short = Met::LUNGSEG_MET_SHORT as u32,
    UShort = Met::LUNGSEG_MET_USHORT as u32,
    Int = Met::LUNGSEG_MET_INT as u32,
    UInt = Met::LUNGSEG_MET_UINT as u32,
    Long = Met::LUNGSEG_MET_LONG as u32,
    ULong = Met::LUNGSEG_MET_ULONG as u32,
    LongLong = Met::LUNGSEG_MET_LONG_LONG as u32,
    ULongLong = Met::LUNGSEG_MET_ULONG_LONG as u32,
    Float = Met::LUNGSEG_MET_FLOAT as u32,
    Double = Met::LUNGSEG_MET_DOUBLE as u32,
}

impl ElementType {
    pub const ALL: [ElementType; 12] = [
        Self::Char,
        Self::UChar,
        Self::Short,
        Self::UShort,
        Self::Int,
        Self::UInt,
        Self::Long,
        Self::ULong,
        Self::LongLong,
        Self::ULongLong,
        Self::Float,
        Self::Double,
    ];

    /// Bytes per component as MetaIO writes them (`MET_LONG` is 4 bytes, not the C `long`).
    pub fn size(self) -> usize {
        match self {
            Self::Char | Self::UChar => 1,
            Self::Short | Self::UShort => 2,
            Self::Int | Self::UInt | Self::Long | Self::ULong | Self::Float => 4,
            Self::LongLong | Self::ULongLong | Self::Double => 8,
        }
    }

    pub fn met_name(self) -> &'static str {
        match self {
            Self::Char => "MET_CHAR",
            Self::UChar => "MET_UCHAR",
            Self::Short => "MET_SHORT",
            Self::UShort => "MET_USHORT",
            Self::Int => "MET_INT",
            Self::UInt => "MET_UINT",
            Self::Long => "MET_LONG",
            Self::ULong => "MET_ULONG",
            Self::LongLong => "MET_LONG_LONG",
            Self::ULongLong => "MET_ULONG_LONG",
            Self::Float => "MET_FLOAT",
            Self::Double => "MET_DOUBLE",
        }
    }

    /// Accepts `MET_X` and `MET_X_ARRAY` (same width, vector pixel).
    pub fn from_met_name(name: &str) -> Option<Self> {
        let base = name.strip_suffix("_ARRAY").unwrap_or(name);
        Self::ALL.into_iter().find(|t| t.met_name() == base)
    }
}

/// Voxel storage in the on-disk type, x fastest, channels interleaved (where each row and slice
/// starts is the volume's [`Layout`]).
#[derive(Debug, PartialEq)]
pub enum PixelData {
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Samples the caller owns and keeps alive (`lungseg_volume_create_borrowed`).
    Borrowed(Borrowed),
}

/// A clone owns its samples: a borrowed volume's clone copies them, so it may outlive the
/// caller's buffer.
impl Clone for PixelData {
    fn clone(&self) -> Self {
        crate::with_pixels!(self, |s| Sample::pixels(s.to_vec()))
    }
}

/// A voxel type that can be read as an intensity.
pub trait Sample: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    /// The owned storage variant for this type.
    fn pixels(v: Vec<Self>) -> PixelData;
}
macro_rules! impl_sample {
    ($($t:ty => $variant:ident),*) => { $(impl Sample for $t {
        #[inline(always)]
        fn to_f32(self) -> f32 { self as f32 }
        fn pixels(v: Vec<Self>) -> PixelData { PixelData::$variant(v) }
    })* };
}
impl_sample!(i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32, i64 => I64,
    u64 => U64, f32 => F32, f64 => F64);

/// Runs `$body` with `$s` bound to the typed slice, monomorphised per element type.
#[macro_export]
macro_rules! with_pixels {
    ($data:expr, |$s:ident| $body:expr) => {
        match $data {
            $crate::volume::PixelData::I8(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::U8(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::I16(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::U16(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::I32(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::U32(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::I64(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::U64(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::F32(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::F64(v) => {
                let $s = &v[..];
                $body
            }
            $crate::volume::PixelData::Borrowed(b) => match b {
                $crate::volume::Borrowed::I16(r) => {
                    let $s = r.as_slice();
                    $body
                }
                $crate::volume::Borrowed::U16(r) => {
                    let $s = r.as_slice();
                    $body
                }
                $crate::volume::Borrowed::I32(r) => {
                    let $s = r.as_slice();
                    $body
                }
                $crate::volume::Borrowed::F32(r) => {
                    let $s = r.as_slice();
                    $body
                }
            },
        }
    };
}

impl PixelData {
    pub fn len(&self) -> usize {
        with_pixels!(self, |s| s.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get_f32(&self, i: usize) -> f32 {
        with_pixels!(self, |s| s[i].to_f32())
    }
    /// The natural storage for a MetaIO element type (MET_LONG is 32-bit).
    pub fn element_type(&self) -> ElementType {
        match self {
            PixelData::I8(_) => ElementType::Char,
            PixelData::U8(_) => ElementType::UChar,
            PixelData::I16(_) => ElementType::Short,
            PixelData::U16(_) => ElementType::UShort,
            PixelData::I32(_) => ElementType::Int,
            PixelData::U32(_) => ElementType::UInt,
            PixelData::I64(_) => ElementType::LongLong,
            PixelData::U64(_) => ElementType::ULongLong,
            PixelData::F32(_) => ElementType::Float,
            PixelData::F64(_) => ElementType::Double,
            PixelData::Borrowed(b) => b.element_type(),
        }
    }
    /// Raw little-endian bytes of the samples (used by the writer).
    pub fn as_bytes(&self) -> &[u8] {
        with_pixels!(self, |s| bytemuck::cast_slice(s))
    }
}

/// A scalar or multi-channel 3-D image with ITK geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub geometry: Geometry,
    /// The type found on disk (kept even when storage is shared, e.g. MET_LONG → i32).
    pub element_type: ElementType,
    pub channels: usize,
    pub data: PixelData,
    /// Where rows and slices start in `data`, and the rescale to HU (files: packed, none).
    pub layout: Layout,
    /// `AnatomicalOrientation` as written (ITK ignores it on read; so do we, but keep it).
    pub anatomical_orientation: Option<String>,
    /// Header keys this library does not interpret, in file order (last value of duplicates).
    pub extra: Vec<(String, String)>,
    /// The reconstructed slice thickness (mm) along index axis 2, where the source states one
    /// (DICOM SliceThickness (0018,0050), the thickest slice of the series; a host's
    /// `lungseg_volume_desc.slice_thickness_mm`). MetaImage has no such key. A slice can be
    /// thicker than the step between slices (a 5 mm reconstruction every 2.5 mm): the scan then
    /// resolves no more along that axis than its thickness ([`Volume::resolution_mm`]).
    pub slice_thickness_mm: Option<f64>,
}

impl Volume {
    /// A single-channel packed volume; checks the data length against the geometry.
    pub fn new(geometry: Geometry, data: PixelData) -> Result<Self> {
        Self::with_layout(geometry, data, Layout::packed(geometry.dims, 1))
    }

    /// A single-channel volume stored as `layout` says; checks the data length against it.
    pub fn with_layout(geometry: Geometry, data: PixelData, layout: Layout) -> Result<Self> {
        let v = Volume {
            element_type: data.element_type(),
            geometry,
            channels: 1,
            data,
            layout,
            anatomical_orientation: None,
            extra: Vec::new(),
            slice_thickness_mm: None,
        };
        v.check_data()?;
        Ok(v)
    }

    /// The storage holds exactly the samples the layout reaches.
    pub fn check_data(&self) -> Result<()> {
        let dims = self.geometry.dims;
        let need = self.layout.span(dims, self.channels);
        if need != Some(self.data.len()) {
            return Err(Error::invalid(format!(
                "volume data has {} samples but dims {dims:?} × {} channels with row/slice \
                 strides {}/{} need {}",
                self.data.len(),
                self.channels,
                self.layout.row_stride,
                self.layout.slice_stride,
                need.map_or("more than fit in memory".into(), |n| n.to_string())
            )));
        }
        Ok(())
    }

    /// The finest detail the scan resolves per index axis (mm): the voxel spacing, or along
    /// axis 2 the slice thickness where that is coarser. What a model's intended use judges
    /// (`crate::intended_use`): overlapping thick slices are as coarse as their thickness.
    pub fn resolution_mm(&self) -> [f64; 3] {
        let [x, y, z] = self.geometry.spacing;
        [x, y, self.slice_thickness_mm.map_or(z, |t| z.max(t))]
    }

    /// Fails with a clear message unless this is a one-channel image, as CT must be.
    pub fn require_scalar(&self) -> Result<()> {
        if self.channels != 1 {
            return Err(Error::unsupported(format!(
                "CT volumes must have 1 channel, this one has {} (ElementNumberOfChannels)",
                self.channels
            )));
        }
        Ok(())
    }

    /// Intensity (HU after the rescale) at voxel (i, j, k), channel 0.
    #[inline]
    pub fn value(&self, i: usize, j: usize, k: usize) -> f32 {
        let at = self.layout.row_start(j, k) + i * self.channels;
        self.layout.rescale.apply(self.data.get_f32(at))
    }

    /// Copies all voxels as f32 HU (x fastest) into `dst`, which must hold exactly `voxel_count`.
    pub fn copy_f32(&self, dst: &mut [f32]) -> Result<()> {
        self.require_scalar()?;
        self.check_data()?;
        if dst.len() != self.geometry.voxel_count() {
            return Err(Error::invalid(format!(
                "destination holds {} floats, the volume has {} voxels",
                dst.len(),
                self.geometry.voxel_count()
            )));
        }
        crate::with_hu!(self.layout.rescale, |r| with_pixels!(&self.data, |s| {
            self.for_rows(dst, |src_row, d| {
                for (d, v) in d.iter_mut().zip(&s[src_row]) {
                    *d = r.hu(v.to_f32());
                }
            })
        }));
        Ok(())
    }

    /// Calls `f(source range, destination row)` for every row of a scalar volume, destination
    /// packed.
    fn for_rows<D>(&self, dst: &mut [D], mut f: impl FnMut(std::ops::Range<usize>, &mut [D])) {
        let [nx, ny, _] = self.geometry.dims;
        for (r, d) in dst.chunks_exact_mut(nx).enumerate() {
            let start = self.layout.row_start(r % ny, r / ny);
            f(start..start + nx, d);
        }
    }

    /// The stored samples of a scalar volume, packed into storage of their own type.
    fn packed_samples(&self) -> Result<PixelData> {
        self.require_scalar()?;
        self.check_data()?;
        let n = self.geometry.voxel_count();
        Ok(with_pixels!(&self.data, |s| {
            let mut v = crate::error::try_vec(n, "packed volume")?;
            self.for_rows(&mut v, |src, d| d.copy_from_slice(&s[src]));
            Sample::pixels(v)
        }))
    }

    /// This volume with packed, owned-or-borrowed storage and no rescale, as a file holds it:
    /// itself when it already is, else a copy (HU as `MET_FLOAT` when a rescale applies).
    pub fn packed(&self) -> Result<Cow<'_, Volume>> {
        let dims = self.geometry.dims;
        if self.layout.is_packed(dims, self.channels) && self.layout.rescale.is_identity() {
            return Ok(Cow::Borrowed(self));
        }
        self.check_data()?;
        self.require_scalar()?;
        let n = self.geometry.voxel_count();
        let data = if self.layout.rescale.is_identity() {
            self.packed_samples()?
        } else {
            let mut v = crate::error::try_vec(n, "packed volume")?;
            self.copy_f32(&mut v)?;
            PixelData::F32(v)
        };
        Ok(Cow::Owned(Volume::new(self.geometry, data)?))
    }
}
