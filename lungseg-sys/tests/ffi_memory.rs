//! Volumes from memory (`lungseg_volume_create`, `_create_borrowed`): the same scan written as
//! MetaImage and opened with `lungseg_volume_open` is the oracle. Patches, copies and
//! world ↔ voxel results must be bit-identical, for packed and padded rows/slices, copied and
//! borrowed pixels, and int16 with a DICOM rescale against the same HU stored as float.

mod ffi_common;
mod mhd_common;

use ffi_common::{expect, last_error};
use lungseg::ffi::*;
use lungseg::mhd::{self, WriteOptions};
use lungseg::{Geometry, PixelData, Volume};
use mhd_common::scratch;
use std::ffi::CString;
use std::path::Path;
use std::ptr::{null, null_mut};

use lungseg_status::*;

const DIMS: [usize; 3] = [37, 29, 17];
const SPACING: [f64; 3] = [0.7, 0.9, 2.5];
const ORIGIN: [f64; 3] = [-12.25, 5.5, -40.0];
const SLOPE: f64 = 2.5;
const INTERCEPT: f64 = -1024.0;

fn oblique() -> [[f64; 3]; 3] {
    let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

/// Flipped x and y: axis-aligned, so patches take the separable resampler.
const FLIPPED: [[f64; 3]; 3] = [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];

/// Stored values: a ramp with a bright block, in the range of every test type.
fn stored() -> Vec<i32> {
    let [nx, ny, nz] = DIMS;
    let mut v = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let block = (14..24).contains(&i) && (10..20).contains(&j) && (5..11).contains(&k);
                v.push(if block {
                    450
                } else {
                    (7 * i + 11 * j + 23 * k) as i32
                });
            }
        }
    }
    v
}

/// The HU a rescaled sample has, as the library computes it (single precision).
fn hu(s: i32) -> f32 {
    s as f32 * SLOPE as f32 + INTERCEPT as f32
}

fn cpath(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

fn geometry(direction: [[f64; 3]; 3]) -> Geometry {
    Geometry::new(DIMS, SPACING, ORIGIN, direction).unwrap()
}

fn open_written(path: &Path, direction: [[f64; 3]; 3], data: PixelData) -> *mut lungseg_volume {
    let v = Volume::new(geometry(direction), data).unwrap();
    mhd::write(path, &v, &WriteOptions::default()).unwrap();
    let mut out = null_mut();
    let st = unsafe { lungseg_volume_open(cpath(path).as_ptr(), &mut out) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    out
}

fn desc(t: lungseg_pixel_type, direction: [[f64; 3]; 3]) -> lungseg_volume_desc {
    lungseg_volume_desc {
        pixel_type: t as u32,
        dims: DIMS.map(|d| d as u64),
        spacing: SPACING,
        origin: ORIGIN,
        direction: std::array::from_fn(|i| direction[i / 3][i % 3]),
        ..Default::default()
    }
}

/// Pixels laid out with `pad` extra samples after each row and `pad_rows` extra rows after each
/// slice, the padding filled with a value no voxel has (a stride slip shows).
struct Host<T> {
    buf: Vec<T>,
    row_stride: u64,
    slice_stride: u64,
}

fn host<T: Copy>(values: &[T], pad: usize, pad_rows: usize, fill: T) -> Host<T> {
    let [nx, ny, nz] = DIMS;
    let row = nx + pad;
    let slice = row * (ny + pad_rows);
    let mut buf = vec![fill; slice * nz];
    for k in 0..nz {
        for j in 0..ny {
            let src = &values[(k * ny + j) * nx..][..nx];
            buf[k * slice + j * row..][..nx].copy_from_slice(src);
        }
    }
    let e = std::mem::size_of::<T>() as u64;
    let packed = pad == 0 && pad_rows == 0;
    Host {
        buf,
        row_stride: if packed { 0 } else { row as u64 * e },
        slice_stride: if packed { 0 } else { slice as u64 * e },
    }
}

type Create = unsafe extern "C" fn(
    *const lungseg_volume_desc,
    *const libc::c_void,
    usize,
    *mut *mut lungseg_volume,
) -> lungseg_status;

const CREATORS: [(&str, Create); 2] = [
    ("copy", lungseg_volume_create),
    ("borrowed", lungseg_volume_create_borrowed),
];

fn create<T>(f: Create, mut d: lungseg_volume_desc, h: &Host<T>) -> *mut lungseg_volume {
    d.row_stride_bytes = h.row_stride;
    d.slice_stride_bytes = h.slice_stride;
    let mut out = null_mut();
    let bytes = std::mem::size_of_val(&h.buf[..]);
    let st = unsafe { f(&d, h.buf.as_ptr().cast(), bytes, &mut out) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    out
}

fn spec() -> lungseg_patch_spec {
    lungseg_patch_spec {
        size: [20, 16, 12],
        spacing_mm: [0.8, 1.0, 1.5],
        outside_hu: f32::NAN,
        ..Default::default()
    }
}

fn patch(v: *const lungseg_volume, centre: [f64; 3]) -> Vec<u32> {
    let mut out = vec![0f32; 20 * 16 * 12];
    let st = unsafe {
        lungseg_volume_extract_patch(v, centre.as_ptr(), &spec(), out.as_mut_ptr(), out.len())
    };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    out.iter().map(|x| x.to_bits()).collect()
}

fn copy_hu(v: *const lungseg_volume) -> Vec<u32> {
    let mut out = vec![0f32; DIMS.iter().product()];
    let st = unsafe { lungseg_volume_copy_hu(v, out.as_mut_ptr(), out.len()) };
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
    out.iter().map(|x| x.to_bits()).collect()
}

fn info(v: *const lungseg_volume) -> lungseg_volume_info {
    let mut i = std::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { lungseg_volume_get_info(v, i.as_mut_ptr()) },
        LUNGSEG_OK
    );
    unsafe { i.assume_init() }
}

/// Everything a host reads from a volume, compared bit for bit.
fn assert_same(a: *const lungseg_volume, b: *const lungseg_volume, what: &str) {
    let (ia, ib) = (info(a), info(b));
    assert_eq!(ia.dims, ib.dims, "{what}");
    assert_eq!(ia.spacing, ib.spacing, "{what}");
    assert_eq!(ia.origin, ib.origin, "{what}");
    assert_eq!(ia.direction, ib.direction, "{what}");
    assert_eq!(copy_hu(a), copy_hu(b), "{what}: copy_hu");
    // Inside, straddling a corner (outside voxels and the border half-voxel), far outside.
    for idx in [
        [18.3, 14.6, 8.2],
        [1.0, 2.0, 0.5],
        [36.0, 28.0, 16.0],
        [-40.0, 3.0, 2.0],
    ] {
        let centre = {
            let mut w = [0.0; 3];
            let st = unsafe { lungseg_voxel_to_world(a, idx.as_ptr(), w.as_mut_ptr()) };
            assert_eq!(st, LUNGSEG_OK);
            let mut w2 = [0.0; 3];
            unsafe { lungseg_voxel_to_world(b, idx.as_ptr(), w2.as_mut_ptr()) };
            assert_eq!(
                w.map(f64::to_bits),
                w2.map(f64::to_bits),
                "{what}: voxel_to_world"
            );
            w
        };
        let (mut ua, mut ub) = ([0.0; 3], [0.0; 3]);
        unsafe {
            lungseg_world_to_voxel(a, centre.as_ptr(), ua.as_mut_ptr());
            lungseg_world_to_voxel(b, centre.as_ptr(), ub.as_mut_ptr());
        }
        assert_eq!(
            ua.map(f64::to_bits),
            ub.map(f64::to_bits),
            "{what}: world_to_voxel"
        );
        let pa = patch(a, centre);
        assert_eq!(pa, patch(b, centre), "{what}: patch at voxel {idx:?}");
        let inside = idx[0] >= 0.0;
        assert_eq!(
            pa.iter().any(|&x| x != pa[0]),
            inside,
            "{what}: a patch in the scan varies, one far outside is all outside_hu"
        );
    }
}

#[test]
fn memory_volumes_equal_the_same_scan_from_a_file() {
    let dir = scratch("ffi_memory_equal");
    let s = stored();
    for (dname, dir_m) in [("oblique", oblique()), ("flipped", FLIPPED)] {
        let i16s: Vec<i16> = s.iter().map(|&v| v as i16).collect();
        let u16s: Vec<u16> = s.iter().map(|&v| v as u16).collect();
        let f32s: Vec<f32> = s.iter().map(|&v| v as f32 - 1000.5).collect();
        let file_i16 = open_written(
            &dir.join(format!("{dname}_i16.mhd")),
            dir_m,
            PixelData::I16(i16s.clone()),
        );
        let file_u16 = open_written(
            &dir.join(format!("{dname}_u16.mhd")),
            dir_m,
            PixelData::U16(u16s.clone()),
        );
        let file_i32 = open_written(
            &dir.join(format!("{dname}_i32.mhd")),
            dir_m,
            PixelData::I32(s.clone()),
        );
        let file_f32 = open_written(
            &dir.join(format!("{dname}_f32.mhd")),
            dir_m,
            PixelData::F32(f32s.clone()),
        );
        let hu_f32: Vec<f32> = s.iter().map(|&v| hu(v)).collect();
        let file_hu = open_written(
            &dir.join(format!("{dname}_hu.mhd")),
            dir_m,
            PixelData::F32(hu_f32),
        );
        use lungseg_pixel_type::*;
        for (cname, f) in CREATORS {
            for (pad, pad_rows) in [(0, 0), (3, 0), (5, 2)] {
                let what = |t: &str| format!("{dname} {cname} {t} pad {pad}/{pad_rows}");
                let h = host(&i16s, pad, pad_rows, i16::MIN);
                let m = create(f, desc(LUNGSEG_PIXEL_INT16, dir_m), &h);
                assert_same(m, file_i16, &what("int16"));
                assert_eq!(
                    info(m).element_type,
                    lungseg_element_type::LUNGSEG_MET_SHORT as u32
                );
                unsafe { lungseg_volume_free(m) };

                let mut d = desc(LUNGSEG_PIXEL_INT16, dir_m);
                d.rescale_slope = SLOPE;
                d.rescale_intercept = INTERCEPT;
                let m = create(f, d, &h);
                assert_same(m, file_hu, &what("int16 rescaled"));
                unsafe { lungseg_volume_free(m) };

                let h = host(&u16s, pad, pad_rows, u16::MAX);
                let m = create(f, desc(LUNGSEG_PIXEL_UINT16, dir_m), &h);
                assert_same(m, file_u16, &what("uint16"));
                unsafe { lungseg_volume_free(m) };

                let h = host(&s, pad, pad_rows, i32::MIN);
                let m = create(f, desc(LUNGSEG_PIXEL_INT32, dir_m), &h);
                assert_same(m, file_i32, &what("int32"));
                unsafe { lungseg_volume_free(m) };

                let h = host(&f32s, pad, pad_rows, -3.0e38);
                let m = create(f, desc(LUNGSEG_PIXEL_FLOAT32, dir_m), &h);
                assert_same(m, file_f32, &what("float32"));
                unsafe { lungseg_volume_free(m) };
            }
        }
        for v in [file_i16, file_u16, file_i32, file_f32, file_hu] {
            unsafe { lungseg_volume_free(v) };
        }
    }
}

/// A copied volume no longer reads the host's buffer; a borrowed one reads it in place.
#[test]
fn copy_owns_its_pixels_and_borrowed_reads_in_place() {
    let s: Vec<i16> = stored().iter().map(|&v| v as i16).collect();
    let d = desc(lungseg_pixel_type::LUNGSEG_PIXEL_INT16, FLIPPED);
    let mut h = host(&s, 2, 1, 0);
    let copied = create(lungseg_volume_create, d, &h);
    let borrowed = create(lungseg_volume_create_borrowed, d, &h);
    let before = copy_hu(copied);
    assert_eq!(before, copy_hu(borrowed));
    for v in h.buf.iter_mut() {
        *v = v.wrapping_add(1);
    }
    assert_eq!(copy_hu(copied), before);
    let after = copy_hu(borrowed);
    assert_eq!(f32::from_bits(after[0]), f32::from_bits(before[0]) + 1.0);
    unsafe {
        lungseg_volume_free(copied);
        lungseg_volume_free(borrowed);
    }
}

/// Writing a padded, rescaled, borrowed volume gives a packed float file of its HU.
#[test]
fn writing_a_rescaled_strided_volume_writes_hu() {
    let dir = scratch("ffi_memory_write");
    let s: Vec<i16> = stored().iter().map(|&v| v as i16).collect();
    let mut d = desc(lungseg_pixel_type::LUNGSEG_PIXEL_INT16, oblique());
    d.rescale_slope = SLOPE;
    d.rescale_intercept = INTERCEPT;
    let h = host(&s, 4, 3, i16::MAX);
    let m = create(lungseg_volume_create_borrowed, d, &h);
    let path = dir.join("hu.mha");
    assert_eq!(
        unsafe { lungseg_volume_write(m, cpath(&path).as_ptr(), 0) },
        LUNGSEG_OK
    );
    let back = mhd::read(&path, &Default::default()).unwrap();
    let PixelData::F32(v) = &back.data else {
        panic!("{:?}", back.element_type)
    };
    let want: Vec<f32> = stored().iter().map(|&x| hu(x)).collect();
    assert_eq!(v, &want);
    assert_eq!(
        copy_hu(m),
        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    unsafe { lungseg_volume_free(m) };
}

fn try_create(d: &lungseg_volume_desc, px: *const u8, len: usize) -> (lungseg_status, bool) {
    let mut results = Vec::new();
    for (_, f) in CREATORS {
        let mut out = std::ptr::dangling_mut::<lungseg_volume>();
        let st = unsafe { f(d, px.cast(), len, &mut out) };
        if st == LUNGSEG_OK {
            unsafe { lungseg_volume_free(out) };
        }
        results.push((st, out.is_null()));
    }
    assert_eq!(results[0].0, results[1].0, "copy and borrowed agree");
    results[0]
}

/// A description edit, the status it must get, and what the message must say.
type Case = (
    &'static str,
    fn(&mut lungseg_volume_desc),
    lungseg_status,
    &'static str,
);

/// Each check of the description: its status, that `*out` is NULL, and what the message says.
#[test]
fn bad_descriptions_are_clear_errors() {
    use lungseg_pixel_type::*;
    let px = vec![0i16; 64 * 64 * 64];
    let (p, len) = (px.as_ptr().cast::<u8>(), px.len() * 2);
    let good = lungseg_volume_desc {
        dims: [4, 3, 2],
        ..desc(LUNGSEG_PIXEL_INT16, FLIPPED)
    };
    assert_eq!(try_create(&good, p, len), (LUNGSEG_OK, false));
    let cases: Vec<Case> = vec![
        (
            "zero dim",
            |d| d.dims[1] = 0,
            LUNGSEG_INVALID_ARGUMENT,
            "zero dimension",
        ),
        (
            "huge dims",
            |d| d.dims = [u64::MAX, 2, 2],
            LUNGSEG_LIMIT,
            "limit",
        ),
        (
            "over max_voxels",
            |d| d.max_voxels = 23,
            LUNGSEG_LIMIT,
            "limit of 23 voxels",
        ),
        (
            "above the default limit",
            |d| d.dims = [1024, 1024, 2001],
            LUNGSEG_LIMIT,
            "limit",
        ),
        (
            "zero spacing",
            |d| d.spacing[0] = 0.0,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.spacing",
        ),
        (
            "negative spacing",
            |d| d.spacing[2] = -1.0,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.spacing",
        ),
        (
            "NaN spacing",
            |d| d.spacing[1] = f64::NAN,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.spacing",
        ),
        (
            "inf origin",
            |d| d.origin[1] = f64::INFINITY,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.origin",
        ),
        (
            "NaN direction",
            |d| d.direction[4] = f64::NAN,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.direction",
        ),
        (
            "singular direction",
            |d| d.direction = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            LUNGSEG_INVALID_ARGUMENT,
            "singular",
        ),
        (
            "pixel type 0",
            |d| d.pixel_type = 0,
            LUNGSEG_INVALID_ARGUMENT,
            "desc.pixel_type",
        ),
        (
            "pixel type 9",
            |d| d.pixel_type = 9,
            LUNGSEG_INVALID_ARGUMENT,
            "LUNGSEG_PIXEL_INT16 = 1",
        ),
        (
            "short struct",
            |d| d.struct_size = 100,
            LUNGSEG_INVALID_ARGUMENT,
            "struct_size",
        ),
        (
            "row stride short",
            |d| d.row_stride_bytes = 6,
            LUNGSEG_INVALID_ARGUMENT,
            "row_stride_bytes",
        ),
        (
            "row stride odd",
            |d| d.row_stride_bytes = 9,
            LUNGSEG_INVALID_ARGUMENT,
            "multiple of 2",
        ),
        (
            "slice stride short",
            |d| d.slice_stride_bytes = 22,
            LUNGSEG_INVALID_ARGUMENT,
            "slice_stride_bytes",
        ),
        (
            "slice stride below padded rows",
            |d| {
                d.row_stride_bytes = 10;
                d.slice_stride_bytes = 24;
            },
            LUNGSEG_INVALID_ARGUMENT,
            "at least 30",
        ),
        (
            "stride overflow",
            |d| d.slice_stride_bytes = u64::MAX - 1,
            LUNGSEG_LIMIT,
            "overflow",
        ),
        (
            "buffer too short",
            |d| d.dims = [64, 64, 65],
            LUNGSEG_INVALID_ARGUMENT,
            "pixels_len",
        ),
        (
            "NaN slope",
            |d| d.rescale_slope = f64::NAN,
            LUNGSEG_INVALID_ARGUMENT,
            "rescale_slope",
        ),
        (
            "inf intercept",
            |d| d.rescale_intercept = f64::INFINITY,
            LUNGSEG_INVALID_ARGUMENT,
            "rescale",
        ),
        (
            "slope overflows float",
            |d| d.rescale_slope = 1e36,
            LUNGSEG_INVALID_ARGUMENT,
            "finite float",
        ),
    ];
    for (name, edit, want, needle) in cases {
        let mut d = good;
        edit(&mut d);
        let (st, nulled) = try_create(&d, p, len);
        assert!(nulled, "{name}: *out must be NULL on failure");
        assert_eq!(st, want, "{name}: {}", last_error());
        expect(st, want, needle);
    }
}

#[test]
fn bad_pointers_and_pixels_are_clear_errors() {
    use lungseg_pixel_type::*;
    let px = vec![0f32; 64];
    let p = px.as_ptr().cast::<u8>();
    let d = lungseg_volume_desc {
        dims: [4, 4, 4],
        ..desc(LUNGSEG_PIXEL_FLOAT32, FLIPPED)
    };
    let (st, _) = try_create(&d, null(), 256);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "pixels is NULL");
    let (st, _) = try_create(&d, unsafe { p.add(2) }, 250);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "aligned to 4 bytes");
    for (_, f) in CREATORS {
        let mut out = null_mut();
        expect(
            unsafe { f(null(), p.cast(), 256, &mut out) },
            LUNGSEG_INVALID_ARGUMENT,
            "desc is NULL",
        );
        expect(
            unsafe { f(&d, p.cast(), 256, null_mut()) },
            LUNGSEG_INVALID_ARGUMENT,
            "out is NULL",
        );
        // `*out` written inside the pixels would clobber a borrowed voxel.
        let mut buf = vec![0f32; 66];
        let out_in_pixels = buf.as_mut_ptr().cast::<*mut lungseg_volume>();
        expect(
            unsafe { f(&d, buf.as_ptr().cast(), 256, out_in_pixels) },
            LUNGSEG_INVALID_ARGUMENT,
            "out and pixels overlap",
        );
    }
    for (bad, needle) in [(f32::NAN, "NaN HU"), (f32::INFINITY, "inf HU")] {
        let mut px = vec![0f32; 64];
        px[4 * 4 * 2 + 4 + 3] = bad;
        let (st, nulled) = try_create(&d, px.as_ptr().cast(), 256);
        assert!(nulled);
        expect(st, LUNGSEG_INVALID_ARGUMENT, needle);
        assert!(last_error().contains("pixel (3, 1, 2)"), "{}", last_error());
    }
    // Finite floats whose rescale overflows.
    let px = vec![3.0e38f32; 64];
    let mut big = d;
    big.rescale_slope = 10.0;
    let (st, _) = try_create(&big, px.as_ptr().cast(), 256);
    expect(st, LUNGSEG_INVALID_ARGUMENT, "inf HU");
    // Padding bytes are never read: a NaN there is fine.
    let mut px = vec![f32::NAN; 4 * 5 * 4];
    for k in 0..4 {
        for j in 0..4 {
            for i in 0..4 {
                px[k * 20 + j * 5 + i] = 1.0;
            }
        }
    }
    let mut padded = d;
    padded.row_stride_bytes = 20;
    let (st, _) = try_create(&padded, px.as_ptr().cast(), px.len() * 4 - 4);
    assert_eq!(st, LUNGSEG_OK, "{}", last_error());
}

/// A description from a newer header with an unknown option set is refused, not ignored.
#[test]
fn newer_descriptions_with_unknown_options_are_unsupported() {
    #[repr(C)]
    struct Newer {
        d: lungseg_volume_desc,
        extra: u64,
    }
    let px = [0i16; 24];
    let mut n = Newer {
        d: lungseg_volume_desc {
            dims: [4, 3, 2],
            ..desc(lungseg_pixel_type::LUNGSEG_PIXEL_INT16, FLIPPED)
        },
        extra: 1,
    };
    n.d.struct_size = std::mem::size_of::<Newer>() as u32;
    let (st, _) = try_create(&n.d, px.as_ptr().cast(), 48);
    expect(st, LUNGSEG_UNSUPPORTED, "newer lungseg");
    n.extra = 0;
    assert_eq!(try_create(&n.d, px.as_ptr().cast(), 48).0, LUNGSEG_OK);
}
