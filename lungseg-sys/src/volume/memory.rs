//! Volumes from pixels in a host's memory (decoded DICOM frames): described by the host,
//! validated like a file's header, then copied or borrowed.

use super::{ElementType, Layout, Lendable, PixelData, RawSlice, Rescale, Volume};
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::volume::ToHu;

/// What the host says about its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryDesc {
    pub dims: [u64; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
    pub direction: [[f64; 3]; 3],
    /// One of `Short`, `UShort`, `Int`, `Float`.
    pub element_type: ElementType,
    /// Bytes from one row (y) to the next; 0 = packed.
    pub row_stride_bytes: u64,
    /// Bytes from one slice (z) to the next; 0 = packed.
    pub slice_stride_bytes: u64,
    /// `hu = stored · slope + intercept`, in single precision.
    pub rescale: [f64; 2],
    /// Refuse more voxels than this.
    pub max_voxels: u64,
    /// The reconstructed slice thickness along z (mm; [`Volume::slice_thickness_mm`]), if the
    /// host states one: finite and > 0.
    pub slice_thickness_mm: Option<f64>,
}

/// The host's buffer: its address and length in bytes (nothing is read before it is checked).
#[derive(Debug, Clone, Copy)]
pub struct HostPixels {
    pub ptr: *const u8,
    pub len: usize,
}

/// Copies the host's pixels into a packed volume of their own type (the rescale applies on
/// read, so an int16 CT stays int16).
///
/// # Safety
/// `px.len` bytes at `px.ptr` are readable for the duration of the call.
pub unsafe fn copy(desc: &MemoryDesc, px: HostPixels) -> Result<Volume> {
    let lent = borrow(desc, px)?;
    let mut v = Volume::new(lent.geometry, lent.packed_samples()?)?;
    v.layout.rescale = lent.layout.rescale;
    v.slice_thickness_mm = lent.slice_thickness_mm;
    Ok(v)
}

/// A volume reading the host's pixels in place.
///
/// # Safety
/// `px.len` bytes at `px.ptr` stay readable and unchanged until the volume is dropped.
pub unsafe fn borrow(desc: &MemoryDesc, px: HostPixels) -> Result<Volume> {
    let geometry = geometry(desc)?;
    let thickness = slice_thickness(desc)?;
    let rescale = rescale(desc)?;
    let (layout, span) = layout(desc, &geometry, px, rescale)?;
    let data = match desc.element_type {
        ElementType::Short => typed::<i16>(px, span),
        ElementType::UShort => typed::<u16>(px, span),
        ElementType::Int => typed::<i32>(px, span),
        ElementType::Float => typed::<f32>(px, span),
        other => {
            return Err(Error::unsupported(format!(
                "pixels of type {} cannot come from memory",
                other.met_name()
            )))
        }
    };
    let mut v = Volume::with_layout(geometry, data, layout)?;
    v.slice_thickness_mm = thickness;
    reject_non_finite(&v)?;
    Ok(v)
}

unsafe fn typed<T: Lendable>(px: HostPixels, span: usize) -> PixelData {
    T::borrowed(RawSlice::new(px.ptr.cast::<T>(), span))
}

/// The grid, with messages that name the description's fields.
fn geometry(d: &MemoryDesc) -> Result<Geometry> {
    if d.dims.contains(&0) {
        return Err(Error::invalid(format!(
            "desc.dims {:?} has a zero dimension",
            d.dims
        )));
    }
    let voxels = d.dims.iter().try_fold(1u64, |a, &n| a.checked_mul(n));
    if voxels.is_none_or(|v| v > d.max_voxels) {
        return Err(Error::limit(format!(
            "desc.dims {:?} is more than the limit of {} voxels",
            d.dims, d.max_voxels
        )));
    }
    let dims = d.dims.map(|n| n as usize);
    if d.spacing.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(Error::invalid(format!(
            "desc.spacing {:?} must be finite and positive",
            d.spacing
        )));
    }
    if d.origin.iter().any(|o| !o.is_finite()) {
        return Err(Error::invalid(format!(
            "desc.origin {:?} must be finite",
            d.origin
        )));
    }
    if d.direction.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "desc.direction {:?} must be finite",
            d.direction
        )));
    }
    Geometry::new(dims, d.spacing, d.origin, d.direction).map_err(|e| {
        Error::invalid(format!(
            "desc.direction {:?}: {}",
            d.direction,
            e.message.trim_start_matches("direction matrix ")
        ))
    })
}

fn slice_thickness(d: &MemoryDesc) -> Result<Option<f64>> {
    match d.slice_thickness_mm {
        Some(t) if !t.is_finite() || t <= 0.0 => Err(Error::invalid(format!(
            "desc.slice_thickness_mm {t} must be finite and positive (0: not stated)"
        ))),
        t => Ok(t),
    }
}

/// The rescale, refused when a stored value could map to a non-finite HU.
fn rescale(d: &MemoryDesc) -> Result<Rescale> {
    let [slope, intercept] = d.rescale;
    Rescale::checked(slope, intercept, d.element_type).ok_or_else(|| {
        Error::invalid(format!(
            "desc.rescale_slope {slope} / rescale_intercept {intercept} must be finite, the \
             slope non-zero, and map every {} value to a finite float",
            d.element_type.met_name()
        ))
    })
}

/// Row and slice strides in samples, and the samples the buffer must hold; checks alignment,
/// stride sizes and the buffer length with checked arithmetic.
fn layout(
    d: &MemoryDesc,
    g: &Geometry,
    px: HostPixels,
    rescale: Rescale,
) -> Result<(Layout, usize)> {
    let e = d.element_type.size() as u64;
    let [nx, ny, nz] = g.dims.map(|n| n as u64);
    if px.ptr.is_null() {
        return Err(Error::invalid("pixels is NULL"));
    }
    if !(px.ptr as usize).is_multiple_of(e as usize) {
        return Err(Error::invalid(format!(
            "pixels is not aligned to {e} bytes (the size of a {} sample)",
            d.element_type.met_name()
        )));
    }
    let too_big = || Error::limit("desc.dims and strides overflow the address space");
    let row_min = nx.checked_mul(e).ok_or_else(too_big)?;
    let row = stride("row_stride_bytes", d.row_stride_bytes, row_min, e)?;
    let slice_min = ny.checked_mul(row).ok_or_else(too_big)?;
    let slice = stride("slice_stride_bytes", d.slice_stride_bytes, slice_min, e)?;
    let need = (nz - 1)
        .checked_mul(slice)
        .and_then(|b| b.checked_add((ny - 1).checked_mul(row)?))
        .and_then(|b| b.checked_add(row_min))
        .filter(|&b| b <= isize::MAX as u64)
        .ok_or_else(too_big)?;
    if (px.len as u64) < need {
        return Err(Error::invalid(format!(
            "pixels_len is {} bytes, desc.dims {:?} with row/slice strides {row}/{slice} \
             need {need}",
            px.len, d.dims
        )));
    }
    let layout = Layout {
        row_stride: (row / e) as usize,
        slice_stride: (slice / e) as usize,
        rescale,
    };
    Ok((layout, (need / e) as usize))
}

/// A stride in bytes: 0 = `min`; else at least `min` (rows and slices may not overlap) and a
/// whole number of samples.
fn stride(name: &str, given: u64, min: u64, e: u64) -> Result<u64> {
    match given {
        0 => Ok(min),
        s if s < min || s % e != 0 => Err(Error::invalid(format!(
            "desc.{name} is {s}: at least {min} bytes and a multiple of {e} expected"
        ))),
        s => Ok(s),
    }
}

/// Float pixels must be finite after the rescale: a NaN in a CT is a broken upstream.
fn reject_non_finite(v: &Volume) -> Result<()> {
    if let PixelData::Borrowed(super::Borrowed::F32(s)) = &v.data {
        let [nx, ny, nz] = v.geometry.dims;
        let r = v.layout.rescale;
        for k in 0..nz {
            for j in 0..ny {
                let start = v.layout.row_start(j, k);
                let row = &s.as_slice()[start..start + nx];
                if let Some(i) = row.iter().position(|x| !r.hu(*x).is_finite()) {
                    return Err(Error::invalid(format!(
                        "pixel ({i}, {j}, {k}) is {} HU: float pixels must be finite",
                        r.hu(row[i])
                    )));
                }
            }
        }
    }
    Ok(())
}
