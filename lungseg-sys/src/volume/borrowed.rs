//! Samples a host owns and lends to a volume (`lungseg_volume_create_borrowed`): the host keeps
//! them alive and unchanged until the volume is freed.

use super::{ElementType, PixelData, Sample};

/// A read-only slice whose lifetime the host guarantees rather than the borrow checker.
#[derive(Debug, Clone, Copy)]
pub struct RawSlice<T> {
    ptr: *const T,
    len: usize,
}

// SAFETY: the samples are read-only for the life of the volume (the host's contract), so any
// thread may read them at once, like a `&[T]`.
unsafe impl<T: Sync> Send for RawSlice<T> {}
unsafe impl<T: Sync> Sync for RawSlice<T> {}

impl<T> RawSlice<T> {
    /// # Safety
    /// `ptr` is non-null, aligned, and `len` values there stay valid and unchanged for as long
    /// as this slice (and anything holding it) exists.
    pub unsafe fn new(ptr: *const T, len: usize) -> Self {
        RawSlice { ptr, len }
    }

    #[inline(always)]
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the contract of `new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: PartialEq> PartialEq for RawSlice<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// Borrowed samples of the types a host passes (`lungseg_pixel_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Borrowed {
    I16(RawSlice<i16>),
    U16(RawSlice<u16>),
    I32(RawSlice<i32>),
    F32(RawSlice<f32>),
}

impl Borrowed {
    pub fn element_type(&self) -> ElementType {
        match self {
            Borrowed::I16(_) => ElementType::Short,
            Borrowed::U16(_) => ElementType::UShort,
            Borrowed::I32(_) => ElementType::Int,
            Borrowed::F32(_) => ElementType::Float,
        }
    }
}

/// A sample type a host may lend.
pub trait Lendable: Sample {
    fn borrowed(s: RawSlice<Self>) -> PixelData;
}

macro_rules! lendable {
    ($($t:ty => $v:ident),*) => {$(
        impl Lendable for $t {
            fn borrowed(s: RawSlice<Self>) -> PixelData {
                PixelData::Borrowed(Borrowed::$v(s))
            }
        }
    )*};
}
lendable!(i16 => I16, u16 => U16, i32 => I32, f32 => F32);
