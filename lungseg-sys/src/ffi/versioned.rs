//! Structs passed by pointer that can grow without breaking callers built against an older or a
//! newer header. Every such struct starts with `uint32_t struct_size`, which the caller sets to
//! `sizeof` of the struct as its header declares it; the library never reads or writes past it.
//!
//! - Fields are only ever appended, each at an offset at or past the struct's frozen V1 size
//!   (never in its tail padding, which an old caller's `struct_size` covers), and a field added
//!   later means "default" when it is 0.
//! - `struct_size` below V1 is `LUNGSEG_INVALID_ARGUMENT`.
//! - Input (options) structs: fields past the caller's `struct_size` take their defaults. A
//!   caller built against a newer header may pass a larger struct: accepted when every byte this
//!   library does not know is 0 (it asked for nothing new), else `LUNGSEG_UNSUPPORTED`.
//!
//! Output structs published without `struct_size` (`lungseg_volume_info`, `lungseg_model_info`,
//! `lungseg_uncertainty`) are frozen at their published layout ([`frozen_output!`] asserts the
//! size): old binaries allocate exactly that, so the library writes exactly that. New results
//! come in new structs that start with `struct_size` ([`VersionedOut`]), reached through new
//! entry points or a pointer appended to an options struct, written up to `struct_size` bytes
//! with `struct_size` set to the number written (the rule of Linux's `sched_getattr`); the
//! frozen structs are never extended.

use crate::error::{Error, Result};
use std::mem::size_of;

/// A `struct_size` above this is not a struct but a mistake (an uninitialised field).
const MAX_STRUCT_SIZE: usize = 4096;

/// A `#[repr(C)]` struct whose first field is `struct_size: u32`.
///
/// # Safety
/// Implementors are `#[repr(C)]`, start with `struct_size: u32`, and every field is valid for any
/// bit pattern (integers, floats, raw pointers): a caller's bytes always make a valid value.
/// [`versioned!`] checks the layout part.
pub unsafe trait Versioned: Copy + Default {
    /// `sizeof` of the first published layout. Frozen: a literal, never `size_of` of the struct.
    const V1: usize;
    /// The C type name, for messages.
    const NAME: &'static str;
}

/// The end offset of a field, for the layout checks of [`versioned!`].
#[doc(hidden)]
pub const fn field_end<T, F>(offset: usize, _field: fn(&T) -> &F) -> usize {
    offset + size_of::<F>()
}

/// Declares a struct [`Versioned`]: its frozen V1 size (a literal) and the last field of the V1
/// layout, with compile-time checks that the V1 fields still end within V1 and that the struct
/// never shrinks below it. `Default` is `struct_size = sizeof`, every other field 0.
macro_rules! versioned {
    ($t:ident, v1 = $v1:literal, v1_last = $last:ident) => {
        // SAFETY: the structs declared here are `#[repr(C)]` with `struct_size: u32` first and
        // only integer, float and raw-pointer fields; any bit pattern is valid for all.
        unsafe impl $crate::ffi::Versioned for $t {
            const V1: usize = $v1;
            const NAME: &'static str = stringify!($t);
        }
        const _: () = {
            use std::mem::{offset_of, size_of};
            use $crate::ffi::versioned::field_end;
            assert!(offset_of!($t, struct_size) == 0);
            assert!(field_end(offset_of!($t, $last), |s: &$t| &s.$last) <= $v1);
            assert!(size_of::<$t>() >= $v1);
        };
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: every field of these structs is valid when zeroed (see above).
                let mut v: Self = unsafe { std::mem::zeroed() };
                v.struct_size = std::mem::size_of::<Self>() as u32;
                v
            }
        }
    };
}
pub(crate) use versioned;

/// Reads `struct_size` and checks it against V1 and the plausible maximum.
unsafe fn struct_size<T: Versioned>(p: *const T, name: &str) -> Result<usize> {
    // Unaligned: a caller's struct is aligned for its own (possibly older, smaller) layout.
    let size = std::ptr::read_unaligned(p.cast::<u32>()) as usize;
    if size < T::V1 {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}, at least {} expected (set it to sizeof({}))",
            T::V1,
            T::NAME
        )));
    }
    if size > MAX_STRUCT_SIZE {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}: not a {} (set it to sizeof({}))",
            T::NAME,
            T::NAME
        )));
    }
    Ok(size)
}

/// Copies the caller's first `n` bytes over `into`.
unsafe fn copy_in<T: Versioned>(p: *const T, n: usize, into: &mut T) {
    debug_assert!(n <= size_of::<T>());
    std::ptr::copy_nonoverlapping(p.cast::<u8>(), (into as *mut T).cast::<u8>(), n);
}

/// Reads a caller's options struct (NULL = `None`): the caller's `struct_size` bytes over the
/// defaults, never more; a larger struct from a newer header must be 0 where this library does
/// not know its fields.
pub(crate) unsafe fn arg_options<T: Versioned>(p: *const T, name: &str) -> Result<Option<T>> {
    if p.is_null() {
        return Ok(None);
    }
    let size = struct_size(p, name)?;
    // Every published sizeof is V1 or a multiple of the alignment; any other size below ours
    // ends inside a field, and copying part of a pointer would make a wild one.
    if size < size_of::<T>() && size != T::V1 && size % std::mem::align_of::<T>() != 0 {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}: not the size of any version of {} (set it to \
             sizeof({}))",
            T::NAME,
            T::NAME
        )));
    }
    let known = size.min(size_of::<T>());
    let tail = std::slice::from_raw_parts(p.cast::<u8>().add(known), size - known);
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Err(Error::unsupported(format!(
            "{name} sets byte {} of its {size}, but this library's {} has {known} bytes: an \
             option from a newer lungseg",
            known + i,
            T::NAME
        )));
    }
    let mut v = T::default();
    copy_in(p, known, &mut v);
    Ok(Some(v))
}

/// A caller's growable output struct (`struct_size` first, [`Versioned`]): the library writes
/// `min(struct_size, its sizeof)` bytes and sets `struct_size` to that number, so a caller
/// built against an older header gets the fields it knows and one built against a newer header
/// learns which fields were filled.
pub(crate) struct VersionedOut<T> {
    p: *mut T,
    size: usize,
}

/// Checks a growable output struct (NULL = not wanted): its `struct_size` must be at least V1
/// (`LUNGSEG_INVALID_ARGUMENT` otherwise, before anything runs). Any alignment is accepted: the
/// struct is written byte by byte.
pub(crate) unsafe fn arg_versioned_out<T: Versioned>(
    p: *mut T,
    name: &str,
) -> Result<Option<VersionedOut<T>>> {
    if p.is_null() {
        return Ok(None);
    }
    let size = struct_size(p, name)?;
    Ok(Some(VersionedOut { p, size }))
}

impl<T: Versioned> VersionedOut<T> {
    /// The caller's bytes, for overlap checks: start and length.
    pub(crate) fn bytes(&self) -> (*const u8, usize) {
        (self.p.cast_const().cast(), self.size)
    }

    /// Writes the known prefix of `v` and sets `struct_size` to its length.
    pub(crate) fn write(&self, v: T) {
        let n = self.size.min(size_of::<T>());
        // SAFETY: `arg_versioned_out` read `struct_size`: the caller holds `size >= n` bytes at
        // `p`, and `v` is a plain `#[repr(C)]` value whose first `n` bytes are copied; the first
        // field is the `u32 struct_size` (`versioned!` asserts it), written unaligned.
        unsafe {
            std::ptr::copy_nonoverlapping((&v as *const T).cast::<u8>(), self.p.cast::<u8>(), n);
            std::ptr::write_unaligned(self.p.cast::<u32>(), n as u32);
        }
    }
}

/// An output struct frozen at its published layout: written whole, and read back only in its
/// first [`FrozenOutput::INPUT_END`] bytes (the inputs an in/out struct carries).
///
/// # Safety
/// Implementors are `#[repr(C)]` and their first `INPUT_END` bytes belong to fields valid for any
/// bit pattern (integers, floats, raw pointers). [`frozen_output!`] checks the size.
pub unsafe trait FrozenOutput: Copy + Default {
    /// The published `sizeof`, a literal: the struct must never change it.
    const SIZE: usize;
    const INPUT_END: usize;
}

/// Declares a struct [`FrozenOutput`] with its published size (asserted at compile time) and a
/// zeroed `Default`.
macro_rules! frozen_output {
    ($t:ident, size = $size:literal $(, input_end = $input_end:expr)?) => {
        // SAFETY: the structs declared here are `#[repr(C)]`; their input prefix (if any) holds
        // only raw pointers and integers, and 0 is valid for every field.
        unsafe impl $crate::ffi::FrozenOutput for $t {
            const SIZE: usize = $size;
            const INPUT_END: usize = 0 $(+ $input_end)?;
        }
        const _: () = {
            assert!(std::mem::size_of::<$t>() == $size);
            assert!(<$t as $crate::ffi::FrozenOutput>::INPUT_END <= $size);
        };
        impl Default for $t {
            fn default() -> Self {
                // SAFETY: every field of these structs is valid when zeroed (see above).
                unsafe { std::mem::zeroed() }
            }
        }
    };
}
pub(crate) use frozen_output;

/// A caller's output struct, checked for NULL and alignment.
pub(crate) struct OutArg<T> {
    p: *mut T,
}

/// Checks an output struct pointer.
pub(crate) unsafe fn arg_out<T: FrozenOutput>(p: *mut T, name: &str) -> Result<OutArg<T>> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} is NULL")));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!(
            "{name} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(OutArg { p })
}

impl<T: FrozenOutput> OutArg<T> {
    /// The inputs an in/out struct carries (its first `INPUT_END` bytes), over the defaults;
    /// the output bytes, which a caller may leave uninitialised, are never read.
    pub(crate) fn inputs(&self) -> T {
        let mut v = T::default();
        // SAFETY: `arg_out` checked the pointer; INPUT_END <= SIZE, the caller's struct size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.p.cast::<u8>(),
                (&mut v as *mut T).cast::<u8>(),
                T::INPUT_END,
            )
        };
        v
    }

    /// The caller's struct, for overlap checks.
    pub(crate) fn as_ptr(&self) -> *const T {
        self.p
    }

    /// Writes the whole struct.
    pub(crate) fn write(&self, v: T) {
        // SAFETY: `arg_out` checked the pointer and alignment; the caller holds `SIZE` bytes.
        unsafe { std::ptr::write(self.p, v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A `struct_size` that ends inside a field would copy part of it: half a pointer becomes
    /// a wild pointer the library then writes through. Only V1 or a size on the struct's
    /// alignment (every published sizeof is one) is accepted.
    #[test]
    fn a_struct_size_that_splits_a_field_is_refused() {
        let mut measures = lungseg_structure_measures::default();
        let ptr_at = std::mem::offset_of!(lungseg_mc_options, structure_measures);
        let mut o = lungseg_mc_options {
            structure_measures: &mut measures,
            ..Default::default()
        };
        for size in [ptr_at + 1, ptr_at + 4, ptr_at + 7, ptr_at + 12] {
            o.struct_size = size as u32;
            let e = unsafe { arg_options(&o, "opts") }.unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "size {size}");
            assert!(e.message.contains("not the size of"), "{}", e.message);
        }
        for size in [
            lungseg_mc_options::V1,
            ptr_at + 8,
            size_of::<lungseg_mc_options>(),
        ] {
            o.struct_size = size as u32;
            let v = unsafe { arg_options(&o, "opts") }.unwrap().unwrap();
            let whole = size >= ptr_at + 8;
            assert_eq!(v.structure_measures.is_null(), !whole, "size {size}");
        }
        // V1 of an options struct that later grew a wider field keeps working (12 of 8-aligned).
        let m = lungseg_model_options {
            struct_size: lungseg_model_options::V1 as u32,
            ..Default::default()
        };
        assert!(unsafe { arg_options(&m, "opts") }.unwrap().is_some());
    }
    use crate::ffi::*;
    use std::ffi::CString;
    use std::mem::offset_of;
    use std::ptr::{null, null_mut};

    /// `len` bytes at the very end of a readable page, followed by a `PROT_NONE` page: reading
    /// or writing one byte past them faults, so a test that passes touched nothing beyond.
    /// Under Miri, an exact-size heap block instead, whose bounds Miri checks.
    struct GuardedTail {
        base: *mut u8,
        tail: *mut u8,
        len: usize,
    }

    impl GuardedTail {
        #[cfg(not(miri))]
        fn new(len: usize) -> Self {
            unsafe {
                let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
                assert!(len <= page);
                let base = libc::mmap(
                    null_mut(),
                    2 * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(base, libc::MAP_FAILED);
                let base = base.cast::<u8>();
                assert_eq!(
                    libc::mprotect(base.add(page).cast(), page, libc::PROT_NONE),
                    0
                );
                let tail = base.add(page - len);
                GuardedTail { base, tail, len }
            }
        }

        #[cfg(miri)]
        fn new(len: usize) -> Self {
            let base = unsafe { std::alloc::alloc_zeroed(Self::layout(len)) };
            GuardedTail {
                base,
                tail: base,
                len,
            }
        }

        #[cfg(miri)]
        fn layout(len: usize) -> std::alloc::Layout {
            std::alloc::Layout::from_size_align(len, 8).unwrap()
        }

        fn ptr<T>(&self) -> *mut T {
            self.tail.cast()
        }

        /// Fills the bytes with a prefix of `v` and `fill` after it, and sets `struct_size`
        /// (the first `u32`) to the caller's size.
        fn put<T: Versioned>(&self, v: &T, n: usize, fill: u8) {
            self.put_frozen(v, n, fill);
            unsafe { std::ptr::write_unaligned(self.ptr::<u32>(), self.len as u32) };
        }

        /// Fills the bytes with a prefix of `v` and `fill` after it (no `struct_size`).
        fn put_frozen<T>(&self, v: &T, n: usize, fill: u8) {
            unsafe {
                std::ptr::write_bytes(self.tail, fill, self.len);
                std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), self.tail, n);
            }
        }
    }

    impl Drop for GuardedTail {
        fn drop(&mut self) {
            #[cfg(not(miri))]
            unsafe {
                let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
                libc::munmap(self.base.cast(), 2 * page);
            }
            #[cfg(miri)]
            unsafe {
                std::alloc::dealloc(self.base, Self::layout(self.len))
            };
        }
    }

    /// A test-only V2 of an options struct: V1 is `struct_size`, `a`, `b`; the rest came later.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct grown_options {
        struct_size: u32,
        a: u32,
        b: u64,
        added: u32,
        added_wide: u64,
    }
    versioned!(grown_options, v1 = 16, v1_last = b);

    #[test]
    fn an_old_caller_gets_defaults_for_new_fields_and_nothing_past_its_struct_is_read() {
        let old = GuardedTail::new(16);
        let v1 = grown_options {
            a: 5,
            b: 9,
            ..Default::default()
        };
        old.put(&v1, 16, 0xEE);
        let got = unsafe { arg_options(old.ptr::<grown_options>(), "opts") }
            .unwrap()
            .unwrap();
        assert_eq!((got.a, got.b), (5, 9));
        assert_eq!((got.added, got.added_wide), (0, 0), "defaults past V1");
    }

    #[test]
    fn a_struct_below_v1_is_refused_with_a_message() {
        let short = GuardedTail::new(12);
        short.put(&grown_options::default(), 12, 0);
        let e = unsafe { arg_options(short.ptr::<grown_options>(), "opts") }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "opts.struct_size is 12, at least 16 expected (set it to sizeof(grown_options))"
        );
        let huge = GuardedTail::new(16);
        huge.put(&grown_options::default(), 16, 0);
        unsafe { std::ptr::write_unaligned(huge.ptr::<u32>(), 1 << 30) };
        let e = unsafe { arg_options(huge.ptr::<grown_options>(), "opts") }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("not a grown_options"), "{}", e.message);
    }

    #[test]
    fn a_newer_caller_is_accepted_only_when_it_asks_for_nothing_unknown() {
        let size = size_of::<grown_options>();
        let v = grown_options {
            a: 1,
            added: 3,
            ..Default::default()
        };
        let newer = GuardedTail::new(size + 8);
        newer.put(&v, size, 0);
        let got = unsafe { arg_options(newer.ptr::<grown_options>(), "opts") }
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.struct_size as usize, got.a, got.added),
            (size + 8, 1, 3)
        );
        unsafe { *newer.ptr::<u8>().add(size + 5) = 1 };
        let e = unsafe { arg_options(newer.ptr::<grown_options>(), "opts") }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(
            e.message.contains(&format!("byte {}", size + 5)),
            "{}",
            e.message
        );
        assert_eq!(
            unsafe { arg_options::<grown_options>(null(), "opts") }.unwrap(),
            None
        );
    }

    /// The outputs of an in/out struct are never read: a caller's garbage there (a `bool` of 0xAB)
    /// must not become a value.
    #[test]
    fn in_out_structs_read_only_their_inputs() {
        let u = GuardedTail::new(lungseg_uncertainty::SIZE);
        let v = lungseg_uncertainty {
            len: 3,
            ..Default::default()
        };
        u.put_frozen(&v, offset_of!(lungseg_uncertainty, summary), 0xAB);
        let out = unsafe { arg_out(u.ptr::<lungseg_uncertainty>(), "out") }.unwrap();
        let got = out.inputs();
        assert_eq!(got.len, 3);
        assert!(got.mean.is_null());
        assert!(!got.summary.needs_review);
        assert_eq!(got.summary.n_samples, 0);
    }

    fn model() -> *mut lungseg_model {
        let p = CString::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/small_f16_element.safetensors"
        ))
        .unwrap();
        let o = GuardedTail::new(lungseg_model_options::V1);
        let opts = lungseg_model_options {
            device: lungseg_device::LUNGSEG_DEVICE_CPU as u32,
            threads: 1,
            ..Default::default()
        };
        o.put(&opts, lungseg_model_options::V1, 0);
        let mut m = null_mut();
        let st = unsafe { lungseg_model_open(p.as_ptr(), o.ptr(), &mut m) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        m
    }

    /// Every entry point taking a versioned struct, called with exactly V1 bytes before a guard
    /// page: as fields are appended, an old binary's call must keep working.
    #[test]
    #[cfg_attr(miri, ignore = "opens a model and runs predictions: too slow for Miri")]
    fn entry_points_accept_v1_structs_at_the_end_of_a_page() {
        let m = model();
        let info = GuardedTail::new(lungseg_model_info::SIZE);
        info.put_frozen(&lungseg_model_info::default(), 0, 0xEE);
        let st = unsafe { lungseg_model_get_info(m, info.ptr()) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        let got = unsafe { std::ptr::read_unaligned(info.ptr::<lungseg_model_info>()) };
        let voxels = got
            .patch_size
            .iter()
            .map(|&s| s as usize)
            .product::<usize>();
        assert_eq!(got.device, lungseg_device::LUNGSEG_DEVICE_CPU as u32);

        let hu = vec![-400f32; voxels];
        let mut mean = vec![0f32; voxels];
        let opts = GuardedTail::new(lungseg_mc_options::V1);
        let o = lungseg_mc_options {
            n_samples: 2,
            ..Default::default()
        };
        opts.put(&o, lungseg_mc_options::V1, 0);
        let out = GuardedTail::new(lungseg_uncertainty::SIZE);
        let u = lungseg_uncertainty {
            mean: mean.as_mut_ptr(),
            len: voxels,
            ..Default::default()
        };
        out.put_frozen(&u, lungseg_uncertainty::SIZE, 0);
        let st =
            unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), voxels, opts.ptr(), out.ptr()) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        let got = unsafe { std::ptr::read_unaligned(out.ptr::<lungseg_uncertainty>()) };
        assert_eq!(got.summary.n_samples, 2);
        assert!(mean.iter().all(|p| (0.0..=1.0).contains(p)));
        unsafe { lungseg_model_free(m) };

        let spec = GuardedTail::new(lungseg_patch_spec::V1);
        let s = lungseg_patch_spec {
            size: [8, 8, 8],
            spacing_mm: [1.0; 3],
            ..Default::default()
        };
        spec.put(&s, lungseg_patch_spec::V1, 0);
        let mut mask = vec![0u8; 512];
        let mut set = 0u64;
        let c = [0.0f64; 3];
        let st = unsafe {
            lungseg_sphere_mask(
                spec.ptr(),
                c.as_ptr(),
                c.as_ptr(),
                4.0,
                mask.as_mut_ptr(),
                512,
                &mut set,
            )
        };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        assert!(set > 0);
    }

    /// A growable output struct of exactly V1 bytes before a guard page: written up to its end,
    /// `struct_size` set to the bytes written; below V1 it is refused and left alone.
    #[test]
    #[cfg_attr(miri, ignore = "opens a model and runs predictions: too slow for Miri")]
    fn growable_outputs_are_written_within_struct_size() {
        let m = model();
        let voxels = unsafe {
            let mut info = lungseg_model_info::default();
            assert_eq!(
                lungseg_model_get_info(m, &mut info),
                lungseg_status::LUNGSEG_OK
            );
            info.patch_size
                .iter()
                .map(|&s| s as usize)
                .product::<usize>()
        };
        let hu = vec![-400f32; voxels];
        let run = |size: usize| {
            let g = GuardedTail::new(size);
            g.put(&lungseg_structure_measures::default(), 8, 0xEE);
            let opts = lungseg_mc_options {
                n_samples: 2,
                structure_measures: g.ptr(),
                ..Default::default()
            };
            let mut out = lungseg_uncertainty::default();
            let st =
                unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), voxels, &opts, &mut out) };
            let got = unsafe { std::ptr::read_unaligned(g.ptr::<u32>()) };
            (st, got, unsafe { *g.ptr::<u8>().add(size - 1) })
        };
        assert_eq!(lungseg_structure_measures::V1, 56);
        let (st, size, _) = run(56);
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        assert_eq!(size, 56);
        let (st, size, last) = run(40);
        assert_eq!(st, lungseg_status::LUNGSEG_INVALID_ARGUMENT);
        assert_eq!((size, last), (40, 0xEE), "a refused struct is not written");
        assert!(last_error_string().contains("struct_size is 40, at least 56"));
        unsafe { lungseg_model_free(m) };
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads and writes files")]
    fn volume_entry_points_accept_v1_structs_at_the_end_of_a_page() {
        use crate::geometry::{Geometry, IDENTITY};
        use crate::volume::{PixelData, Volume};
        let dir = std::env::temp_dir().join(format!("lungseg-versioned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.mhd");
        let g = Geometry::new([4, 3, 2], [1.0; 3], [0.0; 3], IDENTITY).unwrap();
        let vol = Volume::new(g, PixelData::I16(vec![7; 24])).unwrap();
        crate::mhd::write(&path, &vol, &Default::default()).unwrap();
        let cpath = CString::new(path.to_str().unwrap()).unwrap();

        let opts = GuardedTail::new(lungseg_open_options::V1);
        opts.put(
            &lungseg_open_options::default(),
            lungseg_open_options::V1,
            0,
        );
        let mut v = null_mut();
        let st = unsafe { lungseg_volume_open_ex(cpath.as_ptr(), opts.ptr(), &mut v) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        let info = GuardedTail::new(lungseg_volume_info::SIZE);
        info.put_frozen(&lungseg_volume_info::default(), 0, 0xEE);
        let st = unsafe { lungseg_volume_get_info(v, info.ptr()) };
        assert_eq!(st, lungseg_status::LUNGSEG_OK, "{}", last_error_string());
        let got = unsafe { std::ptr::read_unaligned(info.ptr::<lungseg_volume_info>()) };
        assert_eq!(got.dims, [4, 3, 2]);
        assert_eq!(
            got.element_type,
            lungseg_element_type::LUNGSEG_MET_SHORT as u32
        );
        unsafe { lungseg_volume_free(v) };
        let _ = std::fs::remove_dir_all(&dir);
    }
}
