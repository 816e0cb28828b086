//! The kernel test cases, written once over [`KernelDevice`]: the host emulator runs them in CI
//! (`cuda_emu.rs`, `scripts/cuda-emu.sh`) and a GPU runs the very same cases when one is lent
//! (`cuda_gpu.rs`, `scripts/gpu-check.sh`). Each case builds its launch with the engine's own
//! launcher (`lungseg::cuda::launch`), runs it on NaN-poisoned outputs and compares with the
//! kernel's CPU reference, so what passes under the emulator is what the GPU is asked to do.
#![allow(dead_code)]

use half::f16;
use lungseg::cuda::launch::{self as l, ConvSrc, HeadState, Launch};
use lungseg::cuda::reference::{self as r, round_f16, LsDrop, Src};

/// Something that runs kernel launches on buffers it owns.
pub trait KernelDevice {
    type Buf: Copy;
    fn upload(&mut self, bytes: &[u8]) -> Self::Buf;
    /// `len` bytes of 0xFF: NaN in fp16 and f32, so an unwritten output fails every comparison.
    fn poisoned(&mut self, len: usize) -> Self::Buf;
    fn launch(&mut self, launch: &Launch<Self::Buf>);
    fn read(&mut self, buf: Self::Buf) -> Vec<u8>;

    /// Runs `launch` with its buffers named by index: `inputs` uploaded, then `outputs` poisoned
    /// buffers of those byte sizes; returns the outputs' bytes.
    fn run(
        &mut self,
        inputs: &[Vec<u8>],
        outputs: &[usize],
        launch: &Launch<usize>,
    ) -> Vec<Vec<u8>> {
        let mut bufs: Vec<Self::Buf> = inputs.iter().map(|b| self.upload(b)).collect();
        bufs.extend(outputs.iter().map(|&n| self.poisoned(n)));
        self.launch(&launch.map(|i| bufs[i]));
        bufs[inputs.len()..].iter().map(|&b| self.read(b)).collect()
    }
}

pub struct Rng(pub u64);

impl Rng {
    pub fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / 16_777_216.0) * 2.0 - 1.0
    }

    /// Values exactly representable in fp16, as stored activations and weights are.
    pub fn h(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| round_f16(self.f() * scale)).collect()
    }
}

pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn halves(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(2)
        .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
        .collect()
}

pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every element written (no NaN poison left) and within `tol` of the reference, relative to
/// 1 + |reference|.
pub fn check(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite(),
            "{what}: element {i} not written (NaN poison)"
        );
        let e = (g - w).abs() / (1.0 + w.abs());
        worst = worst.max(e);
        assert!(e <= tol, "{what}: element {i}: device {g} vs reference {w}");
    }
    eprintln!("{what}: worst relative error {worst:.2e}");
}

pub fn conv_first<D: KernelDevice>(dev: &mut D) {
    let mut rng = Rng(11);
    for &(dims, cout) in &[([7usize, 9, 10], 16usize), ([5, 3, 4], 6), ([4, 4, 4], 64)] {
        let v: usize = dims.iter().product();
        let hu: Vec<f32> = (0..v).map(|_| rng.f() * 1200.0 - 300.0).collect();
        let mut w = vec![0.0f32; 32 * cout];
        for x in &mut w[..27 * cout] {
            *x = rng.f() * 0.3;
        }
        let bias: Vec<f32> = (0..cout).map(|_| rng.f() * 0.2).collect();
        let (lo, hi) = (-1000.0, 400.0);
        let want = r::conv_first(&hu, lo, hi, &w, &bias, cout, dims);
        let launch = l::conv_first(l::ConvFirst {
            hu: 0,
            window: (lo, hi),
            w: 1,
            bias: 2,
            out: 3,
            cout,
            dims,
        });
        let inputs = [f32_bytes(&hu), f32_bytes(&w), f32_bytes(&bias)];
        let got = halves(&dev.run(&inputs, &[v * cout * 2], &launch)[0]);
        check(
            &got,
            &want,
            1e-3,
            &format!("conv_first {dims:?} cout {cout}"),
        );
    }
}

pub fn dropout_expand<D: KernelDevice>(dev: &mut D) {
    let mut rng = Rng(12);
    for &(s, v, c, kind) in &[
        (3usize, 315usize, 16usize, 2u32),
        (2, 77, 6, 1),
        (1, 64, 32, 0),
    ] {
        let input = rng.h(v * c, 2.0);
        let drop = match kind {
            0 => LsDrop::NONE,
            k => LsDrop::new(0xfeed_beef, 0.3, 0, k == 2, 5),
        };
        let want = r::dropout_expand(&input, s, v, c, &drop);
        let launch = l::expand(l::Expand {
            input: 0,
            out: 1,
            s,
            v,
            c,
            drop,
        });
        let got = halves(&dev.run(&[f16_bytes(&input)], &[s * v * c * 2], &launch)[0]);
        check(
            &got,
            &want,
            0.0,
            &format!("dropout_expand s {s} v {v} c {c}"),
        );
    }
}

/// One conv3 case: (c0, c1, cout, S, dims, shared src0, dropout kind).
pub type Conv3Case = (usize, usize, usize, usize, [usize; 3], bool, u32);

/// Odd grids, two sources, Cout below, at and above one n-block, every dropout kind.
pub const CONV3_SMALL_AND_ODD: [Conv3Case; 5] = [
    (16, 0, 16, 3, [5, 7, 9], true, 1),
    (16, 16, 48, 2, [3, 4, 6], false, 2),
    (16, 0, 8, 1, [1, 1, 3], false, 0),
    (32, 16, 24, 1, [2, 3, 5], false, 2),
    // Two n-blocks, 108 K groups (an even number of pipeline steps, 54).
    (64, 0, 64, 1, [3, 5, 4], false, 1),
];

pub fn conv3<D: KernelDevice>(dev: &mut D, rng: &mut Rng, case: Conv3Case) {
    let (c0, c1, cout, s, dims, shared, kind) = case;
    let v: usize = dims.iter().product();
    let cin = c0 + c1;
    let a = rng.h(if shared { 1 } else { s } * v * c0, 1.0);
    let b = rng.h(s * v * c1.max(1), 1.0);
    let w = rng.h(cout * 27 * cin, 0.15);
    let bias = rng.h(cout, 0.3);
    let drop = match kind {
        0 => LsDrop::NONE,
        k => LsDrop::new(0x0123_4567_89ab_cdef, 0.3, 4, k == 2, 3),
    };
    let want = r::conv3(
        Src {
            data: &a,
            c: c0,
            shared,
        },
        (c1 > 0).then_some(Src {
            data: &b,
            c: c1,
            shared: false,
        }),
        &w,
        &bias,
        cout,
        s,
        dims,
        true,
        &drop,
    );
    let args = || l::Conv3 {
        src0: ConvSrc {
            buf: 0,
            c: c0,
            stride: if shared { 0 } else { (v * c0) as u64 },
        },
        src1: (c1 > 0).then_some(ConvSrc {
            buf: 1,
            c: c1,
            stride: (v * c1) as u64,
        }),
        w: 2,
        bias: 3,
        out: 4,
        cout,
        s,
        dims,
        relu: true,
        drop,
    };
    let inputs = [
        f16_bytes(&a),
        f16_bytes(&b),
        f16_bytes(&w),
        f32_bytes(&bias),
    ];
    // Both entry points of conv3.cu on every case: the launcher picks one by grid size.
    for k in [l::CONV3_WIDE, l::CONV3_NARROW] {
        let launch = l::conv3_with(args(), k);
        let got = halves(&dev.run(&inputs, &[s * v * cout * 2], &launch)[0]);
        // fp32 sums in another order, then one fp16 rounding: a unit or two in the last place.
        check(&got, &want, 2e-3, &format!("{} {case:?}", k.func));
    }
}

pub fn maxpool<D: KernelDevice>(dev: &mut D) {
    let mut rng = Rng(15);
    for &(s, dims, c) in &[
        (3usize, [6usize, 4, 10], 32usize),
        (2, [2, 6, 4], 6),
        (1, [16, 16, 16], 16),
    ] {
        let v: usize = dims.iter().product();
        let input = rng.h(s * v * c, 3.0);
        let want = r::maxpool2(&input, s, dims, c);
        let launch = l::pool(l::Pool {
            input: 0,
            out: 1,
            s,
            dims,
            c,
        });
        let got = halves(&dev.run(&[f16_bytes(&input)], &[want.len() * 2], &launch)[0]);
        check(&got, &want, 0.0, &format!("maxpool s {s} {dims:?} c {c}"));
    }
}

pub fn upconv<D: KernelDevice>(dev: &mut D) {
    let mut rng = Rng(16);
    for &(cin, cout, s, dims) in &[
        (64usize, 32usize, 1usize, [3usize, 5, 2]),
        (16, 6, 2, [3, 1, 5]),
        (32, 16, 2, [8, 8, 8]),
        // K = 48: a pipeline step half past K (zero-filled); N = 80: a block half past N;
        // M = 105: one partial block.
        (48, 10, 1, [5, 7, 3]),
        // Four K steps through the three-stage pipeline; 2 × 343 voxels: blocks straddle the
        // samples.
        (128, 8, 2, [7, 7, 7]),
    ] {
        let v: usize = dims.iter().product();
        let input = rng.h(s * v * cin, 1.0);
        let w = rng.h(8 * cout * cin, 0.2);
        let bias = rng.h(cout, 0.3);
        let want = r::upconv2(&input, cin, &w, &bias, cout, s, dims);
        let launch = l::upconv(l::Up {
            input: 0,
            cin,
            w: 1,
            bias: 2,
            out: 3,
            cout,
            s,
            dims,
        });
        let inputs = [f16_bytes(&input), f16_bytes(&w), f32_bytes(&bias)];
        let got = halves(&dev.run(&inputs, &[want.len() * 2], &launch)[0]);
        check(
            &got,
            &want,
            2e-3,
            &format!("upconv cin {cin} cout {cout} {dims:?}"),
        );
    }
}

/// The head kernels against their reference over chunks of 2, 3 and 1 samples at an odd voxel
/// count (275 = 11 × 5 × 5: neither a multiple of 32 nor of 64), the chunks under test-time
/// flips none, xy and yz (the reference mirrors each sample's output back before folding it,
/// the kernel reads it mirrored). With `masks`, the sample masks too: every
/// word of each row written (the buffer is poisoned), the reference's bits at a mask threshold
/// other than 0.5, padding bits 0;
/// without, no mask buffer is passed (NULL: the kernel must skip them). The finalize kernel
/// skips the entropy map it is not given.
pub fn head<D: KernelDevice>(dev: &mut D, masks: bool) {
    // Not 0.5: a kernel that ignores the model's mask threshold disagrees on the masks, the
    // region and the foreground count.
    const MASK_T: f32 = 0.35;
    let mut rng = Rng(17);
    let (c, v) = (16usize, 275usize);
    let words = l::head_mask_words(v);
    assert_eq!(words, 10);
    let w: Vec<f32> = (0..c).map(|_| rng.f()).collect();
    let bias = 0.1f32;
    let chunks = [2usize, 3, 1];
    let dims = [11usize, 5, 5];
    // Flip k of an 8-flip model (bit 0 x, bit 1 y, bit 2 z).
    let flips = [0u32, 3, 6].map(|k| lungseg::mc::Flip::of_sample(k, 8, 8));
    let mut st = r::HeadState::default();
    let xs: Vec<Vec<f32>> = chunks.iter().map(|&s| rng.h(s * v * c, 2.0)).collect();
    let want_masks: Vec<Vec<u32>> = xs
        .iter()
        .zip(&chunks)
        .zip(&flips)
        .map(|((x, &s), f)| {
            let back = mirrored_samples(x, c, dims, f.bits());
            r::head_accumulate(&back, c, &w, bias, MASK_T, s, &mut st)
        })
        .collect();
    let want = r::head_finalize(&st, MASK_T);
    let state = HeadState {
        mean: dev.poisoned(v * 4),
        m2: dev.poisoned(v * 4),
        sum_h: dev.poisoned(v * 4),
        any_fg: dev.poisoned(v * 4),
    };
    let wb = dev.upload(&f32_bytes(&w));
    let mut n0 = 0u32;
    for (((x, &s), want_rows), &flip) in xs.iter().zip(&chunks).zip(&want_masks).zip(&flips) {
        let xb = dev.upload(&f16_bytes(x));
        let mask_buf = masks.then(|| dev.poisoned(s * words * 4));
        let launch = l::head_accumulate(l::HeadAcc {
            x: xb,
            c,
            w: wb,
            bias,
            s,
            v,
            n0,
            mask_t: MASK_T,
            state,
            masks: mask_buf,
            flip,
            dims,
        });
        dev.launch(&launch);
        if let Some(m) = mask_buf {
            let got = u32s(&dev.read(m));
            assert_eq!(&got, want_rows, "masks of the chunk after {n0} samples");
            for row in got.chunks_exact(words) {
                // Word 8 holds voxels 256..288 (19 of them real); word 9 is all padding.
                assert_eq!((row[9], row[8] >> (v % 32)), (0, 0));
                assert_ne!(row[8], 0, "the bits of voxels 256..275");
            }
        }
        n0 += s as u32;
    }
    let maps: Vec<D::Buf> = (0..3).map(|_| dev.poisoned(v * 4)).collect();
    let partials = dev.poisoned(l::head_finalize_blocks(v) * 48);
    let launch = l::head_finalize(l::HeadFin {
        state,
        n: n0,
        v,
        mask_t: MASK_T,
        maps: [Some(maps[0]), Some(maps[1]), None, Some(maps[2])],
        partials,
    });
    dev.launch(&launch);
    let got: Vec<Vec<f32>> = maps.iter().map(|&m| f32s(&dev.read(m))).collect();
    check(&got[0], &want.mean, 1e-5, "mean");
    check(&got[1], &want.variance, 1e-5, "variance");
    check(&got[2], &want.mutual_info, 1e-4, "mutual information");
    let p = dev.read(partials);
    for k in 0..6 {
        let s: f64 = p
            .chunks_exact(48)
            .map(|row| f64::from_le_bytes(row[8 * k..8 * k + 8].try_into().unwrap()))
            .sum();
        assert!(
            (s - want.sums[k]).abs() <= 1e-3 * (1.0 + want.sums[k].abs()),
            "sum {k}: {s} vs {}",
            want.sums[k]
        );
    }
}

/// `[S][V][C]` samples with each sample's voxel grid (d, h, w; x fastest) mirrored along x
/// (bit 0 of `flip`), y (bit 1) and z (bit 2), channels kept together.
fn mirrored_samples(x: &[f32], c: usize, [d, h, w]: [usize; 3], flip: u32) -> Vec<f32> {
    let v = d * h * w;
    let m = |i: usize, n: usize, bit: u32| if flip & bit != 0 { n - 1 - i } else { i };
    let mut out = vec![0.0; x.len()];
    for (o, src) in out.chunks_exact_mut(v * c).zip(x.chunks_exact(v * c)) {
        for z in 0..d {
            for y in 0..h {
                for xi in 0..w {
                    let to = (z * h + y) * w + xi;
                    let from = (m(z, d, 4) * h + m(y, h, 2)) * w + m(xi, w, 1);
                    o[to * c..][..c].copy_from_slice(&src[from * c..][..c]);
                }
            }
        }
    }
    out
}
