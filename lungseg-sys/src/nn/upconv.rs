//! ConvTranspose3d, kernel 2, stride 2: every input voxel scatters an independent 2×2×2 block,
//! i.e. a per-voxel `[nk] × [nk][8·cp]` product. About 2% of the network's FLOPs: plain code
//! with 8 × 16-lane accumulators that autovectorises, compiled once per x86 kernel (AVX-512,
//! AVX2) and picked at run time; on aarch64 the baseline build already is NEON. No kernel
//! fuses the multiply-add (Rust never contracts `a * b + c`), so all give the same bits.
//!
//! Layouts: input zero-halo NDHWC read at channel offsets `ci`; weights `[ci.len()][8][cp]`
//! with `o = 4a + 2b + c` for output voxel `(2z+a, 2y+b, 2x+c)`, `cp = pad16(cout)`.

use super::cpu_kernel::CpuKernel;
use super::{par_units, Grid};

pub struct UpArgs<'a> {
    pub input: &'a [f32],
    /// Input grid; the output grid is `grid.double()`.
    pub grid: Grid,
    pub in_stride: usize,
    pub ci: &'a [u32],
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub cout: usize,
    /// The instruction set to run on; must be [`CpuKernel::supported`] (asserted).
    pub kernel: CpuKernel,
}

/// Writes channels `[out_off, out_off + cout)` of the doubled zero-halo grid `out`.
pub fn upconv(a: &UpArgs<'_>, out: &mut [f32], out_stride: usize, out_off: usize, threads: usize) {
    let g = a.grid;
    let og = g.double();
    let cp = a.cout.div_ceil(16) * 16;
    let nk = a.ci.len();
    assert!(a.input.len() >= g.padded_voxels() * a.in_stride);
    assert!(a.ci.iter().all(|&c| (c as usize) < a.in_stride));
    assert!(a.w.len() == nk * 8 * cp && a.bias.len() == cp);
    assert!(out_off + a.cout <= out_stride && out.len() >= og.padded_voxels() * out_stride);
    assert!(
        a.kernel.supported(),
        "{:?} kernel on a CPU without it",
        a.kernel
    );
    let oplane = og.plane() * out_stride;
    par_units(out, oplane, 2 * oplane, g.d, threads, |z, chunk| {
        match a.kernel {
            // SAFETY (both): the kernel's instructions exist on this CPU (asserted above).
            #[cfg(target_arch = "x86_64")]
            CpuKernel::Avx512 => unsafe { plane_avx512(a, z, chunk, out_stride, out_off) },
            #[cfg(target_arch = "x86_64")]
            CpuKernel::Avx2 => unsafe { plane_avx2(a, z, chunk, out_stride, out_off) },
            _ => plane(a, z, chunk, out_stride, out_off),
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(
    a: &UpArgs<'_>,
    z: usize,
    chunk: &mut [f32],
    out_stride: usize,
    out_off: usize,
) {
    plane(a, z, chunk, out_stride, out_off);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(
    a: &UpArgs<'_>,
    z: usize,
    chunk: &mut [f32],
    out_stride: usize,
    out_off: usize,
) {
    plane(a, z, chunk, out_stride, out_off);
}

/// One input z-plane: for each voxel and 16-channel block, 8 accumulators (one per output
/// offset) share every input value; the weight rows `[j][o][block]` stream contiguously.
#[inline(always)]
fn plane(a: &UpArgs<'_>, z: usize, chunk: &mut [f32], out_stride: usize, out_off: usize) {
    let g = a.grid;
    let og = g.double();
    let cp = a.bias.len();
    for y in 0..g.h {
        for x in 0..g.w {
            let src = &a.input[g.index(z, y, x) * a.in_stride..][..a.in_stride];
            for ch in (0..a.cout).step_by(16) {
                let mut acc = [[0.0f32; 16]; 8];
                for o in acc.iter_mut() {
                    o.copy_from_slice(&a.bias[ch..ch + 16]);
                }
                for (j, &c) in a.ci.iter().enumerate() {
                    let xv = src[c as usize];
                    let wj = &a.w[j * 8 * cp..][..8 * cp];
                    for (o, acc_o) in acc.iter_mut().enumerate() {
                        let wv: &[f32; 16] = wj[o * cp + ch..][..16].try_into().unwrap();
                        for l in 0..16 {
                            acc_o[l] += xv * wv[l];
                        }
                    }
                }
                let n = (a.cout - ch).min(16);
                for (o, acc_o) in acc.iter().enumerate() {
                    let (dz, dy, dx) = (o / 4, o / 2 % 2, o % 2);
                    let vox = (dz * og.plane() + (2 * y + dy + 1) * og.row() + 2 * x + dx + 1)
                        * out_stride;
                    let d = vox + out_off + ch;
                    chunk[d..d + n].copy_from_slice(&acc_o[..n]);
                }
            }
        }
    }
}

/// Plain reference: dense NDHWC input, PyTorch weight `[cin][cout][2][2][2]`.
pub fn reference(
    input: &[f32],
    g: Grid,
    cin: usize,
    w: &[f32],
    bias: &[f32],
    cout: usize,
) -> Vec<f32> {
    let og = g.double();
    let mut out = vec![0.0f32; og.voxels() * cout];
    for z in 0..og.d {
        for y in 0..og.h {
            for x in 0..og.w {
                let o = (z % 2) * 4 + (y % 2) * 2 + x % 2;
                let iv = ((z / 2 * g.h + y / 2) * g.w + x / 2) * cin;
                for co in 0..cout {
                    let mut s = f64::from(bias[co]);
                    for ci in 0..cin {
                        s += f64::from(input[iv + ci]) * f64::from(w[(ci * cout + co) * 8 + o]);
                    }
                    out[((z * og.h + y) * og.w + x) * cout + co] = s as f32;
                }
            }
        }
    }
    out
}
