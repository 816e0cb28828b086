//! What the scanner does to the object: the slice-sensitivity profile along z (partial volume),
//! the reconstruction kernel's in-plane point-spread function, spatially correlated quantum
//! noise, the circular field of view with the scanner's padding value outside it, int16
//! quantisation, and LUNA16's flipped storage order. Lesion labels go through the same
//! profile and PSF (`label rule`, `docs/synth.md`), so a label is where the lesion makes up at
//! least half of what a voxel measures.

use super::plan::{Acquisition, Kernel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use rand::RngExt;

/// A dense f32 block, x fastest.
pub struct Block {
    pub dims: [usize; 3],
    pub data: Vec<f32>,
}

/// The render grid along z and the slice-sensitivity profile that maps it onto the acquired
/// slices. Render slice `f` is at `(f − margin)·step_mm` from the first acquired slice;
/// `margin` extra render slices below the first and above the last acquired one keep the
/// profile on the object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZSampling {
    pub step_mm: f64,
    pub margin: usize,
    spacing_mm: f64,
    /// Profile σ (mm), widened by the render slab itself (`h²/12`).
    sigma_mm: f64,
}

impl ZSampling {
    /// Render step: the spacing, at most 1 mm, and at most max(half the thickness, 0.8 mm).
    pub fn new(spacing_z: f64, thickness: f64) -> Self {
        let step_mm = spacing_z.min((thickness / 2.0).max(0.8)).min(1.0);
        // Slice-sensitivity profile: Gaussian whose FWHM is the nominal thickness.
        let sigma = thickness / (8.0 * 2f64.ln()).sqrt();
        let sigma_mm = (sigma * sigma + step_mm * step_mm / 12.0).sqrt();
        let margin = (3.0 * sigma_mm / step_mm).ceil() as usize + 1;
        ZSampling {
            step_mm,
            margin,
            spacing_mm: spacing_z,
            sigma_mm,
        }
    }

    /// Render slices needed for `nz` acquired slices.
    pub fn render_slices(&self, nz: usize) -> usize {
        ((nz - 1) as f64 * self.spacing_mm / self.step_mm).ceil() as usize + 1 + 2 * self.margin
    }

    /// First render slice and normalised weights of acquired slice `k`.
    fn taps(&self, k: usize) -> (usize, Vec<f32>) {
        let c = k as f64 * self.spacing_mm / self.step_mm + self.margin as f64;
        let reach = 3.0 * self.sigma_mm / self.step_mm;
        let (f0, f1) = (
            (c - reach).ceil().max(0.0) as usize,
            (c + reach).floor() as usize,
        );
        let w: Vec<f64> = (f0..=f1)
            .map(|f| {
                let d = (f as f64 - c) * self.step_mm;
                (-d * d / (2.0 * self.sigma_mm * self.sigma_mm)).exp()
            })
            .collect();
        let s: f64 = w.iter().sum();
        (f0, w.iter().map(|v| (v / s) as f32).collect())
    }

    /// Applies the profile: render slices `f0..` of `fine` → acquired slices `k0..k0 + nk`.
    pub fn apply(&self, fine: &Block, f0: usize, k0: usize, nk: usize) -> Block {
        let [nx, ny, nf] = fine.dims;
        let plane = nx * ny;
        let mut data = vec![0f32; plane * nk];
        par_chunks(&mut data, plane, |k, out| {
            let (first, w) = self.taps(k0 + k);
            for (j, &wj) in w.iter().enumerate() {
                let f = first + j - f0;
                assert!(f < nf, "render block too short for the slice profile");
                let src = &fine.data[f * plane..(f + 1) * plane];
                for (o, s) in out.iter_mut().zip(src) {
                    *o += wj * s;
                }
            }
        });
        Block {
            dims: [nx, ny, nk],
            data,
        }
    }

    /// Render slices acquired slices `k0..k1` read (half-open).
    pub fn render_range(&self, k0: usize, k1: usize) -> (usize, usize) {
        let (a, _) = self.taps(k0);
        let (b, w) = self.taps(k1 - 1);
        (a, b + w.len())
    }
}

/// The in-plane response of a kernel at a pixel size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psf {
    sigma_px: f64,
    /// Edge enhancement of sharp kernels: `b + gain·(b − G_wide·b)`.
    sharpen: Option<(f64, f64)>,
}

impl Psf {
    /// FWHM 1.1 mm (soft) or 0.7 mm (sharp, with overshoot at edges), on top of the render's
    /// one-voxel box.
    pub fn new(kernel: Kernel, pixel_mm: f64) -> Self {
        let fwhm_to_sigma = 1.0 / (8.0 * 2f64.ln()).sqrt();
        match kernel {
            Kernel::Soft => Psf {
                sigma_px: 1.1 * fwhm_to_sigma / pixel_mm,
                sharpen: None,
            },
            Kernel::Sharp => Psf {
                sigma_px: 0.7 * fwhm_to_sigma / pixel_mm,
                sharpen: Some((0.35, 1.2 / pixel_mm)),
            },
        }
    }

    /// Blurs (and for sharp kernels, edge-enhances) every slice of the block.
    pub fn apply(&self, b: &mut Block, with_overshoot: bool) {
        blur_xy(b, self.sigma_px);
        if let (Some((gain, wide)), true) = (self.sharpen, with_overshoot) {
            let mut smooth = Block {
                dims: b.dims,
                data: b.data.clone(),
            };
            blur_xy(&mut smooth, wide);
            for (v, s) in b.data.iter_mut().zip(&smooth.data) {
                *v += gain as f32 * (*v - s);
            }
        }
    }
}

fn gaussian_taps(sigma_px: f64) -> Vec<f32> {
    let r = (3.0 * sigma_px).ceil().max(1.0) as isize;
    let w: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma_px * sigma_px).max(1e-9)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Separable Gaussian blur in x and y of every slice, edges clamped.
pub fn blur_xy(b: &mut Block, sigma_px: f64) {
    let taps = gaussian_taps(sigma_px);
    let [nx, ny, _] = b.dims;
    par_chunks(&mut b.data, nx * ny, |_, s| blur_plane(s, nx, ny, &taps));
}

fn blur_plane(s: &mut [f32], nx: usize, ny: usize, taps: &[f32]) {
    let r = (taps.len() / 2) as isize;
    let mut line = vec![0f32; nx.max(ny)];
    for j in 0..ny {
        let row = &mut s[j * nx..(j + 1) * nx];
        line[..nx].copy_from_slice(row);
        for (i, out) in row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for (t, &w) in taps.iter().enumerate() {
                let x = (i as isize + t as isize - r).clamp(0, nx as isize - 1) as usize;
                acc += w * line[x];
            }
            *out = acc;
        }
    }
    for i in 0..nx {
        for j in 0..ny {
            line[j] = s[j * nx + i];
        }
        for j in 0..ny {
            let mut acc = 0f32;
            for (t, &w) in taps.iter().enumerate() {
                let y = (j as isize + t as isize - r).clamp(0, ny as isize - 1) as usize;
                acc += w * line[y];
            }
            s[j * nx + i] = acc;
        }
    }
}

/// Runs `f(chunk index, chunk)` over `chunk`-sized pieces of `data` on the machine's cores.
/// Each chunk's result depends only on its index, so the output is the same on any machine.
pub fn par_chunks<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = data.len() / chunk.max(1);
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (t, part) in data.chunks_mut(per * chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, c) in part.chunks_mut(chunk).enumerate() {
                    f(t * per + i, c);
                }
            });
        }
    });
}

/// Quantum noise, textured by the kernel: white noise through a low-pass (soft) or band-pass
/// (sharp: ramp filter) in-plane filter, scaled to unit σ, independent between slices.
fn noise_slice(
    k: usize,
    kernel: Kernel,
    pixel_mm: f64,
    seed: u64,
    nx: usize,
    ny: usize,
) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(k as u64);
    let white: Vec<f32> = (0..nx * ny)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    // Correlation lengths in mm (noise grain), converted to pixels.
    let (s1, s2, a) = match kernel {
        Kernel::Soft => (0.55 / pixel_mm, 2.0 / pixel_mm, 0.5),
        Kernel::Sharp => (0.3 / pixel_mm, 0.9 / pixel_mm, 0.7),
    };
    let (t1, t2) = (gaussian_taps(s1), gaussian_taps(s2));
    let mut b1 = white.clone();
    blur_plane(&mut b1, nx, ny, &t1);
    let mut b2 = white;
    blur_plane(&mut b2, nx, ny, &t2);
    let a = a as f32;
    // Variance of (g1⊗g1 − a·g2⊗g2) applied to unit white noise.
    let dot = |p: &[f32], q: &[f32]| {
        let (rp, rq) = ((p.len() / 2) as isize, (q.len() / 2) as isize);
        (-rp.max(rq)..=rp.max(rq))
            .map(|i| {
                let at = |v: &[f32], r: isize| {
                    if i.abs() <= r {
                        v[(i + r) as usize]
                    } else {
                        0.0
                    }
                };
                at(p, rp) * at(q, rq)
            })
            .sum::<f32>()
    };
    let var =
        dot(&t1, &t1).powi(2) - 2.0 * a * dot(&t1, &t2).powi(2) + a * a * dot(&t2, &t2).powi(2);
    let scale = 1.0 / var.max(1e-12).sqrt();
    b1.iter()
        .zip(&b2)
        .map(|(x, y)| (x - a * y) * scale)
        .collect()
}

/// The stored int16 slices: object + noise inside the field-of-view circle, the padding value
/// (or the reconstructed air) outside, x and y reversed for flipped scans.
pub struct Store {
    pub acquisition: Acquisition,
    pub pixel_mm: f64,
    pub noise_seed: u64,
    pub flipped: bool,
}

impl Store {
    pub fn quantize(&self, b: &Block) -> Vec<i16> {
        let [nx, ny, _] = b.dims;
        let plane = nx * ny;
        let acq = &self.acquisition;
        let sigma = acq.noise_sigma as f32;
        let mut out = vec![0i16; b.data.len()];
        let outside = fov_outside(nx, ny);
        par_chunks(&mut out, plane, |k, o| {
            let clean = &b.data[k * plane..(k + 1) * plane];
            let noise = (sigma > 0.0)
                .then(|| noise_slice(k, acq.kernel, self.pixel_mm, self.noise_seed, nx, ny));
            for (idx, (o, &v)) in o.iter_mut().zip(clean).enumerate() {
                let n = noise.as_ref().map_or(0.0, |n| sigma * n[idx]);
                *o = match (outside[idx], acq.padding) {
                    (true, Some(pad)) => pad,
                    _ => (v + n).round().clamp(-1024.0, 3071.0) as i16,
                };
            }
            if self.flipped {
                o.reverse();
            }
        });
        out
    }
}

/// Pixels outside the reconstruction circle inscribed in the square image.
pub fn fov_outside(nx: usize, ny: usize) -> Vec<bool> {
    let (cx, cy) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let r2 = (nx.min(ny) as f64 / 2.0).powi(2);
    (0..nx * ny)
        .map(|i| {
            let (x, y) = ((i % nx) as f64 - cx, (i / nx) as f64 - cy);
            x * x + y * y > r2
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full width at half maximum of a sampled profile (linear interpolation), in samples.
    fn fwhm(v: &[f32]) -> f64 {
        let (peak_i, peak) =
            v.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
        let half = peak / 2.0;
        let cross = |range: Box<dyn Iterator<Item = usize>>, step: isize| {
            for i in range {
                let j = (i as isize + step) as usize;
                if v[j] < half {
                    return i as f64 + step as f64 * ((v[i] - half) / (v[i] - v[j])) as f64;
                }
            }
            panic!("profile does not fall to half");
        };
        let right = cross(Box::new(peak_i..v.len() - 1), 1);
        let left = cross(Box::new((1..=peak_i).rev()), -1);
        right - left
    }

    #[test]
    fn slice_profile_fwhm_is_the_slice_thickness() {
        for thickness in [0.6, 1.0, 2.5, 5.0] {
            // A fine spacing samples the profile finely: the render step follows it.
            let z = ZSampling::new(0.05, thickness);
            let (_, w) = z.taps(40);
            let fw = fwhm(&w) * z.step_mm;
            assert!(
                (fw - thickness).abs() <= 0.06 * thickness,
                "thickness {thickness}: FWHM {fw:.3} mm"
            );
        }
        for (spacing, thickness) in [(1.0, 0.7), (1.25, 2.5), (2.5, 5.0), (2.5, 1.8)] {
            let z = ZSampling::new(spacing, thickness);
            assert!(z.step_mm <= 1.0 && z.step_mm <= spacing);
            // A thin plane at acquired slice 5's centre: slice 5 sees most of it, the
            // profile is normalised, and no acquired slice reads past the render grid.
            let nz = 11;
            let nf = z.render_slices(nz);
            assert!(z.render_range(0, nz).1 <= nf);
            let mut data = vec![1f32; nf];
            let out = z.apply(
                &Block {
                    dims: [1, 1, nf],
                    data: data.clone(),
                },
                0,
                0,
                nz,
            );
            assert!(
                out.data.iter().all(|v| (v - 1.0).abs() < 1e-5),
                "{:?}",
                out.data
            );
            data.iter_mut().for_each(|v| *v = 0.0);
            let (first, w) = z.taps(5);
            let peak = first
                + w.iter()
                    .enumerate()
                    .fold((0, 0f32), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                    .0;
            data[peak] = 1.0;
            let out = z.apply(
                &Block {
                    dims: [1, 1, nf],
                    data,
                },
                0,
                0,
                nz,
            );
            let max = out.data.iter().cloned().fold(0.0, f32::max);
            assert_eq!(
                max, out.data[5],
                "spacing {spacing} thickness {thickness}: {:?}",
                out.data
            );
        }
    }

    #[test]
    fn kernel_psf_has_its_fwhm() {
        for (kernel, want) in [(Kernel::Soft, 1.1), (Kernel::Sharp, 0.7)] {
            let pixel = 0.25;
            let n = 64;
            let mut b = Block {
                dims: [n, 1, 1],
                data: vec![0.0; n],
            };
            b.data[32] = 1.0;
            let psf = Psf::new(kernel, pixel);
            psf.apply(&mut b, false);
            let fw = fwhm(&b.data) * pixel;
            assert!((fw - want).abs() < 0.1, "{kernel:?}: FWHM {fw:.2} mm");
        }
    }

    #[test]
    fn noise_has_unit_sigma_and_the_kernel_grain() {
        let (n, pixel) = (192, 0.7);
        let lag1 = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32;
            let cov =
                v.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f32>() / (v.len() - 1) as f32;
            (var.sqrt(), cov / var)
        };
        let (s_soft, r_soft) = lag1(&noise_slice(0, Kernel::Soft, pixel, 7, n, n));
        let (s_sharp, r_sharp) = lag1(&noise_slice(0, Kernel::Sharp, pixel, 7, n, n));
        assert!((s_soft - 1.0).abs() < 0.1, "soft σ {s_soft}");
        assert!((s_sharp - 1.0).abs() < 0.1, "sharp σ {s_sharp}");
        // Soft noise is blotchy (neighbours correlated); sharp noise is fine-grained.
        assert!(
            r_soft > 0.4 && r_sharp < r_soft - 0.2,
            "lag-1 {r_soft} vs {r_sharp}"
        );
        assert_ne!(
            noise_slice(0, Kernel::Soft, pixel, 7, n, n),
            noise_slice(1, Kernel::Soft, pixel, 7, n, n)
        );
    }

    #[test]
    fn fov_circle_is_inscribed() {
        let o = fov_outside(10, 10);
        assert!(o[0] && o[9] && o[90] && o[99]);
        assert!(!o[5 * 10 + 5] && !o[5 * 10] && !o[5]);
        assert_eq!(o.iter().filter(|&&x| x).count() % 4, 0, "symmetric");
    }
}
