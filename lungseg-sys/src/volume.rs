//! An in-memory scalar image: its geometry, its on-disk element type and the voxels in the
//! type they were stored in (an int16 CT stays int16: half the memory of f32 and no copy cost).

use crate::error::{Error, Result};
use crate::ffi::lungseg_element_type as Met;
use crate::geometry::Geometry;

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

/// Voxel storage in the on-disk type, x fastest, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
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
}

/// A voxel type that can be read as an intensity.
pub trait Sample: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
}
macro_rules! impl_sample {
    ($($t:ty),*) => { $(impl Sample for $t { #[inline(always)] fn to_f32(self) -> f32 { self as f32 } })* };
}
impl_sample!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

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
    /// `AnatomicalOrientation` as written (ITK ignores it on read; so do we, but keep it).
    pub anatomical_orientation: Option<String>,
    /// Header keys this library does not interpret, in file order (last value of duplicates).
    pub extra: Vec<(String, String)>,
}

impl Volume {
    /// A single-channel volume; checks the data length against the geometry.
    pub fn new(geometry: Geometry, data: PixelData) -> Result<Self> {
        let n = geometry.voxel_count();
        if data.len() != n {
            return Err(Error::invalid(format!(
                "data has {} samples but dims {:?} need {n}",
                data.len(),
                geometry.dims
            )));
        }
        Ok(Volume {
            element_type: data.element_type(),
            geometry,
            channels: 1,
            data,
            anatomical_orientation: None,
            extra: Vec::new(),
        })
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

    /// Intensity at voxel (i, j, k), channel 0, x fastest.
    #[inline]
    pub fn value(&self, i: usize, j: usize, k: usize) -> f32 {
        let [nx, ny, _] = self.geometry.dims;
        self.data.get_f32(((k * ny + j) * nx + i) * self.channels)
    }

    /// Copies all voxels as f32 (x fastest) into `dst`, which must hold exactly `voxel_count`.
    pub fn copy_f32(&self, dst: &mut [f32]) -> Result<()> {
        self.require_scalar()?;
        if dst.len() != self.geometry.voxel_count() {
            return Err(Error::invalid(format!(
                "destination holds {} floats, the volume has {} voxels",
                dst.len(),
                self.geometry.voxel_count()
            )));
        }
        with_pixels!(&self.data, |s| {
            for (d, v) in dst.iter_mut().zip(s.iter()) {
                *d = v.to_f32();
            }
        });
        Ok(())
    }
}
