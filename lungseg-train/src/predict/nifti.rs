//! NIfTI-1 in and out (the `nifti` crate, without its nalgebra feature), with the geometry
//! converted between lungseg's LPS world and NIfTI's RAS one: x and y change sign.
//!
//! Writing sets both transforms, as ITK does: the sform (`srow_*`, code 1 = scanner) is the
//! full voxel → RAS affine, and the qform holds the same rotation as a quaternion with
//! `pixdim` spacing (`qfac = pixdim[0] = −1` for a left-handed frame). Reading takes the sform
//! when its code is set, else the qform, else `pixdim` alone (an ANALYZE-style file);
//! `scl_slope`/`scl_inter` are applied. The header is read and its size checked against
//! lungseg's volume limits before any voxel is.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lungseg::geometry::Geometry;
use lungseg::volume::{PixelData, Volume};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};

/// LPS ↔ RAS: the sign of each world axis.
const RAS_FROM_LPS: [f64; 3] = [-1.0, -1.0, 1.0];

/// Writes a 3D volume as `.nii` / `.nii.gz` (by the extension). Float volumes are FLOAT32,
/// `u8` ones UINT8; other pixel types are converted to FLOAT32 HU.
pub fn write(path: &Path, v: &Volume) -> Result<()> {
    let g = &v.geometry;
    let header = header_for(g);
    let [nx, ny, nz] = g.dims;
    let opts = nifti::writer::WriterOptions::new(path).reference_header(&header);
    let shape = (nz, ny, nx);
    // Our buffers are x fastest: a C-order [z][y][x] array; reversed, its axes are x, y, z,
    // which the writer stores in NIfTI's x-fastest order.
    let r = match &v.data {
        PixelData::U8(d) => {
            opts.write_nifti(&ndarray::ArrayView3::from_shape(shape, d)?.reversed_axes())
        }
        _ => {
            let f: Vec<f32> = (0..v.data.len()).map(|i| v.data.get_f32(i)).collect();
            opts.write_nifti(&ndarray::ArrayView3::from_shape(shape, &f[..])?.reversed_axes())
        }
    };
    r.with_context(|| format!("cannot write {}", path.display()))
}

/// The header of a volume on grid `g`: dims, spacing, sform and qform in RAS.
fn header_for(g: &Geometry) -> NiftiHeader {
    let d = g.direction_row_major();
    let mut h = NiftiHeader::default();
    let mut srow = [[0f32; 4]; 3];
    for (r, row) in srow.iter_mut().enumerate() {
        for c in 0..3 {
            row[c] = (RAS_FROM_LPS[r] * d[3 * r + c] * g.spacing[c]) as f32;
        }
        row[3] = (RAS_FROM_LPS[r] * g.origin[r]) as f32;
    }
    [h.srow_x, h.srow_y, h.srow_z] = srow;
    h.sform_code = 1;
    h.qform_code = 1;
    let rot: [[f64; 3]; 3] =
        std::array::from_fn(|r| std::array::from_fn(|c| RAS_FROM_LPS[r] * d[3 * r + c]));
    let (q, qfac) = quaternion(rot);
    [h.quatern_b, h.quatern_c, h.quatern_d] = q.map(|x| x as f32);
    h.quatern_x = srow[0][3];
    h.quatern_y = srow[1][3];
    h.quatern_z = srow[2][3];
    h.pixdim = [qfac as f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    for a in 0..3 {
        h.pixdim[a + 1] = g.spacing[a] as f32;
    }
    h.xyzt_units = 2; // millimetres
    h
}

/// The (b, c, d) quaternion and qfac of a rotation-or-reflection `r` (columns = voxel axes),
/// as `nifti_mat44_to_quatern` computes them: a left-handed frame flips the third column and
/// reports qfac = −1.
fn quaternion(mut r: [[f64; 3]; 3]) -> ([f64; 3], f64) {
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    let a = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (b, c, d);
    if a > 0.5 {
        let a = 0.5 * a.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
        return (canonical(a, [b, c, d]), qfac);
    }
    let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
    let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
    let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
    let (a, q) = if xd > 1.0 {
        let b = 0.5 * xd.sqrt();
        let (c, d) = (
            0.25 * (r[0][1] + r[1][0]) / b,
            0.25 * (r[0][2] + r[2][0]) / b,
        );
        (0.25 * (r[2][1] - r[1][2]) / b, [b, c, d])
    } else if yd > 1.0 {
        let c = 0.5 * yd.sqrt();
        let (b, d) = (
            0.25 * (r[0][1] + r[1][0]) / c,
            0.25 * (r[1][2] + r[2][1]) / c,
        );
        (0.25 * (r[0][2] - r[2][0]) / c, [b, c, d])
    } else {
        let d = 0.5 * zd.sqrt();
        let (b, c) = (
            0.25 * (r[0][2] + r[2][0]) / d,
            0.25 * (r[1][2] + r[2][1]) / d,
        );
        (0.25 * (r[1][0] - r[0][1]) / d, [b, c, d])
    };
    (canonical(a, q), qfac)
}

/// The quaternion with a ≥ 0 (NIfTI stores only b, c, d and derives a ≥ 0).
fn canonical(a: f64, q: [f64; 3]) -> [f64; 3] {
    if a < 0.0 {
        q.map(|x| -x)
    } else {
        q
    }
}

/// Reads a 3D NIfTI-1 scan as HU (after `scl_slope`/`scl_inter`), with its LPS geometry.
pub fn read(path: &Path) -> Result<Volume> {
    check_layout(path)?;
    let h = NiftiHeader::from_file(path)
        .with_context(|| format!("cannot read the NIfTI header of {}", path.display()))?;
    let dims = dims_of(&h).with_context(|| path.display().to_string())?;
    let geometry = geometry_of(&h, dims).with_context(|| path.display().to_string())?;
    let obj = ReaderOptions::new()
        .read_file(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let arr = obj
        .into_volume()
        .into_ndarray::<f32>()
        .with_context(|| format!("cannot decode the voxels of {}", path.display()))?;
    // The array's axes are x, y, z; reversed, its logical order is x fastest, as ours.
    let data: Vec<f32> = arr.t().iter().copied().collect();
    if data.len() != geometry.voxel_count() {
        bail!(
            "{}: {} voxels decoded, {} expected",
            path.display(),
            data.len(),
            geometry.voxel_count()
        );
    }
    Ok(Volume::new(geometry, PixelData::F32(data))?)
}

/// Refuses, from the first 352 (decompressed) bytes, what the crate would read unboundedly or
/// from another file: header extensions (an extension of size 0 makes it loop until the end of
/// the stream, which a gzip bomb makes minutes long; scanners and ITK write none) and
/// `.hdr`/`.img` pairs (only single-file `n+1` NIfTI is read).
fn check_layout(path: &Path) -> Result<()> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut prefix = Vec::with_capacity(352);
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let r = if gz {
        flate2::read::GzDecoder::new(file)
            .take(352)
            .read_to_end(&mut prefix)
    } else {
        file.take(352).read_to_end(&mut prefix)
    };
    r.with_context(|| format!("cannot read {}", path.display()))?;
    if prefix.len() < 352 {
        bail!(
            "{}: {} bytes, shorter than a NIfTI-1 header",
            path.display(),
            prefix.len()
        );
    }
    if &prefix[344..348] != b"n+1\0" {
        bail!(
            "{}: not a single-file NIfTI-1 (magic {:?})",
            path.display(),
            &prefix[344..348]
        );
    }
    if prefix[348] != 0 {
        bail!(
            "{}: NIfTI header extensions are not supported",
            path.display()
        );
    }
    Ok(())
}

/// A 3D volume's dims, refused beyond lungseg's default voxel limit before any voxel is read.
fn dims_of(h: &NiftiHeader) -> Result<[usize; 3]> {
    let rank = usize::from(h.dim[0]);
    if !(3..=7).contains(&rank) || h.dim[4..=rank.min(7)].iter().any(|&n| n > 1) {
        bail!("dim {:?}: only 3D scans are read", &h.dim[..=rank.min(7)]);
    }
    let dims = [h.dim[1], h.dim[2], h.dim[3]].map(usize::from);
    let voxels = dims.iter().product::<usize>();
    let max = lungseg::mhd::ReadOptions::default().max_voxels;
    if voxels == 0 || voxels as u64 > max {
        bail!("dims {dims:?}: {voxels} voxels, outside 1..={max}");
    }
    Ok(dims)
}

/// The LPS geometry: sform if set, else qform, else pixdim with the identity.
fn geometry_of(h: &NiftiHeader, dims: [usize; 3]) -> Result<Geometry> {
    let affine: [[f64; 4]; 3] = if h.sform_code > 0 {
        [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from))
    } else if h.qform_code > 0 {
        qform_affine(h)
    } else {
        let p = |a: usize| f64::from(h.pixdim[a]).abs();
        [
            [p(1), 0.0, 0.0, 0.0],
            [0.0, p(2), 0.0, 0.0],
            [0.0, 0.0, p(3), 0.0],
        ]
    };
    let spacing: [f64; 3] =
        std::array::from_fn(|c| (0..3).map(|r| affine[r][c].powi(2)).sum::<f64>().sqrt());
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("the voxel-to-world transform has a zero or non-finite column {spacing:?}");
    }
    let direction: [[f64; 3]; 3] = std::array::from_fn(|r| {
        std::array::from_fn(|c| RAS_FROM_LPS[r] * affine[r][c] / spacing[c])
    });
    let origin = std::array::from_fn(|r| RAS_FROM_LPS[r] * affine[r][3]);
    Ok(Geometry::new(dims, spacing, origin, direction)?)
}

/// The qform's voxel → RAS affine (NIfTI-1's method 2).
fn qform_affine(h: &NiftiHeader) -> [[f64; 4]; 3] {
    let [b, c, d] = [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from);
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let rot = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let scale = [1, 2, 3].map(|a| f64::from(h.pixdim[a]).abs());
    let offset = [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from);
    std::array::from_fn(|r| {
        let mut row = [0.0; 4];
        for col in 0..3 {
            let sign = if col == 2 { qfac } else { 1.0 };
            row[col] = rot[r][col] * scale[col] * sign;
        }
        row[3] = offset[r];
        row
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lungseg::geometry::IDENTITY;

    /// Writing and reading back keeps voxels and geometry, for an axis-aligned, a flipped and
    /// an oblique grid, through the sform and through the qform alone.
    #[test]
    fn write_then_read_keeps_voxels_and_geometry() {
        let dir = std::env::temp_dir().join(format!("lungseg-nifti-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, s) = (0.6f64.cos(), 0.6f64.sin());
        let oblique = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let flipped = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]];
        for (k, dir_m) in [IDENTITY, flipped, oblique].into_iter().enumerate() {
            let g =
                Geometry::new([5, 4, 3], [0.7, 0.8, 2.5], [-10.0, 20.5, -30.25], dir_m).unwrap();
            let data: Vec<f32> = (0..60).map(|i| i as f32 * 1.5 - 40.0).collect();
            let v = Volume::new(g, PixelData::F32(data.clone())).unwrap();
            let path = dir.join(format!("v{k}.nii.gz"));
            write(&path, &v).unwrap();
            let back = read(&path).unwrap();
            let b: Vec<f32> = (0..60).map(|i| back.data.get_f32(i)).collect();
            assert_eq!(b, data, "case {k}");
            let bg = back.geometry;
            assert_eq!(bg.dims, g.dims);
            for a in 0..3 {
                assert!((bg.spacing[a] - g.spacing[a]).abs() < 1e-5, "case {k}");
                assert!((bg.origin[a] - g.origin[a]).abs() < 1e-4, "case {k}");
            }
            let (bd, gd) = (bg.direction_row_major(), g.direction_row_major());
            assert!(
                bd.iter().zip(gd).all(|(x, y)| (x - y).abs() < 1e-6),
                "case {k}: {bd:?}"
            );

            // The qform alone gives the same affine.
            let mut h = header_for(&g);
            h.sform_code = 0;
            let q = geometry_of(&h, g.dims).unwrap();
            let qd = q.direction_row_major();
            assert!(
                qd.iter().zip(gd).all(|(x, y)| (x - y).abs() < 1e-6),
                "case {k}: {qd:?}"
            );
            assert!(q
                .origin
                .iter()
                .zip(g.origin)
                .all(|(x, y)| (x - y).abs() < 1e-4));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file with header extensions, or not a NIfTI-1 file at all, is refused before the
    /// crate reads it; so is one whose header promises more voxels than the file holds.
    #[test]
    fn extensions_pairs_and_short_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = Geometry::new([3, 2, 2], [1.0; 3], [0.0; 3], IDENTITY).unwrap();
        let v = Volume::new(g, PixelData::F32(vec![1.0; 12])).unwrap();
        let path = dir.path().join("v.nii");
        write(&path, &v).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut ext = bytes.clone();
        ext[348] = 1;
        // An extension of size 0: the crate would loop on it.
        ext.splice(352..352, [0u8; 8]);
        std::fs::write(&path, &ext).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("extensions"));
        std::fs::write(&path, &bytes[..300]).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("shorter"));
        let mut pair = bytes.clone();
        pair[344..348].copy_from_slice(b"ni1\0");
        std::fs::write(&path, &pair).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("single-file"));
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read(&path).is_err(), "a truncated volume");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap().geometry.dims, [3, 2, 2]);
    }

    #[test]
    fn a_huge_or_4d_header_is_refused_before_any_voxel() {
        let mut h = NiftiHeader {
            dim: [3, 60000, 60000, 60000, 1, 1, 1, 1],
            ..NiftiHeader::default()
        };
        assert!(dims_of(&h).unwrap_err().to_string().contains("voxels"));
        h.dim = [4, 4, 4, 4, 3, 1, 1, 1];
        assert!(dims_of(&h).unwrap_err().to_string().contains("only 3D"));
        h.dim = [3, 4, 0, 4, 1, 1, 1, 1];
        assert!(dims_of(&h).is_err());
    }
}
