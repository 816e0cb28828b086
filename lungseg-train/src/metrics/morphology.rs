//! 3D binary dilation, used to build the calibration region of interest.

use super::{check_len, MetricsError};

/// Dilates a binary mask (`dims = [nz, ny, nx]`, x fastest) with a cube of side
/// `2 * radius + 1` voxels (Chebyshev ball), i.e. a voxel is set when any voxel within
/// `radius` steps along every axis is set. Separable: three 1D running-max passes, so the
/// cost is linear in the voxel count whatever the radius. Output is 0/1.
pub fn dilate_cube(mask: &[u8], dims: [usize; 3], radius: usize) -> Result<Vec<u8>, MetricsError> {
    let [nz, ny, nx] = dims;
    check_len("mask", nz * ny * nx, mask.len())?;
    let mut cur: Vec<u8> = mask.iter().map(|&v| u8::from(v != 0)).collect();
    if radius == 0 || cur.is_empty() {
        return Ok(cur);
    }
    let strides = [ny * nx, nx, 1];
    for (axis, &stride) in strides.iter().enumerate() {
        let len = dims[axis];
        let mut next = vec![0u8; cur.len()];
        let mut line = vec![0u8; len];
        for start in 0..cur.len() {
            // Visit each 1D line along `axis` once, from its first voxel.
            if (start / stride) % len != 0 {
                continue;
            }
            for (i, v) in line.iter_mut().enumerate() {
                *v = cur[start + i * stride];
            }
            dilate_line(&line, radius, |i, v| next[start + i * stride] = v);
        }
        cur = next;
    }
    Ok(cur)
}

/// 1D dilation via the distance to the nearest set voxel from each side.
fn dilate_line(line: &[u8], radius: usize, mut out: impl FnMut(usize, u8)) {
    let n = line.len();
    let mut dist_left = vec![usize::MAX; n];
    let mut last: Option<usize> = None;
    for i in 0..n {
        if line[i] != 0 {
            last = Some(i);
        }
        if let Some(l) = last {
            dist_left[i] = i - l;
        }
    }
    let mut next: Option<usize> = None;
    for i in (0..n).rev() {
        if line[i] != 0 {
            next = Some(i);
        }
        let dr = next.map_or(usize::MAX, |r| r - i);
        out(i, u8::from(dist_left[i].min(dr) <= radius));
    }
}

/// Union of two binary masks of equal length (output 0/1).
pub fn union(a: &[u8], b: &[u8]) -> Result<Vec<u8>, MetricsError> {
    check_len("union", a.len(), b.len())?;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| u8::from(x != 0 || y != 0))
        .collect())
}
