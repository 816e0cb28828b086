//! GPU tests (run by `scripts/gpu-check.sh run`, which sets `LUNGSEG_GPU_TESTS=1`). Without the
//! variable they return at once (CI has no GPU); with it, a missing GPU is a failure, never a
//! silent skip. Each kernel is checked against its CPU reference on fresh random inputs with
//! NaN-poisoned outputs; the whole network against the CPU engine with identical masks; and
//! repeated runs for bit-identity.
#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use common::*;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use half::f16;
use lungseg::cuda::engine::CudaEngine;
use lungseg::cuda::launch;
use lungseg::cuda::probe::GpuInfo;
use lungseg::cuda::reference::{self as r, round_f16, LsDrop, Src};
use lungseg::cuda::{compile, probe, Probe, KERNELS};

/// `None` when GPU tests are not requested; panics when requested but no GPU is usable.
fn gpu() -> Option<(Arc<CudaContext>, Arc<CudaStream>, GpuInfo)> {
    if std::env::var("LUNGSEG_GPU_TESTS").ok().as_deref() != Some("1") {
        eprintln!("GPU test skipped: LUNGSEG_GPU_TESTS is not 1");
        return None;
    }
    let info = match probe() {
        Probe::Usable(i) => i.clone(),
        Probe::Unusable(why) => panic!("LUNGSEG_GPU_TESTS=1 but no usable GPU: {why}"),
    };
    let ctx = CudaContext::new(0).unwrap();
    let st = ctx.default_stream();
    Some((ctx, st, info))
}

/// NVRTC (through the cache) or, without libnvrtc, the prebuilt cubins: as the engine loads them.
fn func(ctx: &Arc<CudaContext>, info: &GpuInfo, file: &str, name: &str) -> CudaFunction {
    let k = KERNELS.iter().find(|k| k.name == file).unwrap();
    let cubin = compile::cubin_for(k, info.compute, info.driver_version, info.nvrtc).unwrap();
    let m = ctx
        .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
        .unwrap();
    m.load_function(name).unwrap()
}

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / 16_777_216.0) * 2.0 - 1.0
    }
    fn h(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| round_f16(self.f() * scale)).collect()
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

fn h16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

/// A device buffer of `n` halves filled with NaN, so unwritten outputs fail the comparison.
fn poisoned(st: &Arc<CudaStream>, n: usize) -> CudaSlice<f16> {
    st.clone_htod(&vec![f16::NAN; n]).unwrap()
}

fn check(got: &[f16], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = g.to_f32();
        assert!(
            g.is_finite(),
            "{what}: element {i} not written (NaN poison) or non-finite"
        );
        let e = (g - w).abs() / (1.0 + w.abs());
        worst = worst.max(e);
        assert!(e <= tol, "{what}: element {i}: gpu {g} vs reference {w}");
    }
    eprintln!("{what}: worst relative error {worst:.2e}");
}

fn cfg(grid: (u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.0, grid.1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[test]
fn conv3_kernel_matches_reference() {
    let Some((ctx, st, info)) = gpu() else { return };
    let f = func(&ctx, &info, "conv3", "ls_conv3");
    let mut rng = Rng(seed());
    // (c0, c1, cout, S, dims, shared src0, dropout kind): odd grid sizes exercise the edges.
    for &(c0, c1, cout, s, dims, shared, kind) in &[
        (16usize, 0usize, 16usize, 3usize, [5usize, 7, 9], true, 1u32),
        (32, 32, 32, 2, [8, 8, 8], false, 0),
        (16, 16, 48, 2, [3, 4, 6], false, 2),
        (64, 0, 64, 1, [4, 4, 4], false, 1),
    ] {
        let v = dims.iter().product::<usize>();
        let cin = c0 + c1;
        let a = rng.h(if shared { 1 } else { s } * v * c0, 1.0);
        let b = rng.h(s * v * c1.max(1), 1.0);
        let w = rng.h(cout * 27 * cin, 0.15);
        let bias = rng.h(cout, 0.3);
        let drop = match kind {
            0 => LsDrop::NONE,
            k => LsDrop::new(seed(), 0.3, 4, k == 2, 3),
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
        let (da, db) = (
            st.clone_htod(&h16(&a)).unwrap(),
            st.clone_htod(&h16(&b)).unwrap(),
        );
        let (dw, dbias) = (
            st.clone_htod(&h16(&w)).unwrap(),
            st.clone_htod(&bias).unwrap(),
        );
        let mut out = poisoned(&st, s * v * cout);
        let ss0: u64 = if shared { 0 } else { (v * c0) as u64 };
        let ss1 = (v * c1) as u64;
        let (c0i, c1i, couti, si) = (c0 as i32, c1 as i32, cout as i32, s as i32);
        let (d, h, wd, relu) = (dims[0] as i32, dims[1] as i32, dims[2] as i32, 1i32);
        let mut l = st.launch_builder(&f);
        l.arg(&da)
            .arg(&ss0)
            .arg(&c0i)
            .arg(&db)
            .arg(&ss1)
            .arg(&c1i)
            .arg(&dw)
            .arg(&dbias);
        l.arg(&mut out)
            .arg(&couti)
            .arg(&si)
            .arg(&d)
            .arg(&h)
            .arg(&wd)
            .arg(&relu)
            .arg(&drop);
        // Grid, block and shared memory as the engine launches them (the tile is a -D constant).
        let shape = launch::conv3(launch::Conv3 {
            src0: launch::ConvSrc {
                buf: (),
                c: c0,
                stride: ss0,
            },
            src1: (c1 > 0).then_some(launch::ConvSrc {
                buf: (),
                c: c1,
                stride: ss1,
            }),
            w: (),
            bias: (),
            out: (),
            cout,
            s,
            dims,
            relu: true,
            drop,
        });
        let lc = LaunchConfig {
            grid_dim: (shape.grid[0], shape.grid[1], shape.grid[2]),
            block_dim: (shape.block[0], shape.block[1], shape.block[2]),
            shared_mem_bytes: shape.dyn_smem,
        };
        unsafe { l.launch(lc) }.unwrap();
        let got = st.clone_dtoh(&out).unwrap();
        check(
            &got,
            &want,
            4e-3,
            &format!("conv3 c0={c0} c1={c1} cout={cout} S={s} {dims:?}"),
        );
    }
}

#[test]
fn conv_first_kernel_matches_reference() {
    let Some((ctx, st, info)) = gpu() else { return };
    let f = func(&ctx, &info, "conv_first", "ls_conv_first");
    let mut rng = Rng(seed());
    let (dims, cout) = ([7usize, 9, 10], 16usize);
    let v = 630;
    let hu: Vec<f32> = (0..v).map(|_| rng.f() * 1500.0 - 300.0).collect();
    let mut w = rng.h(32 * cout, 0.5);
    w[27 * cout..].fill(0.0);
    let bias = rng.h(cout, 0.2);
    let want = r::conv_first(&hu, -1000.0, 400.0, &w, &bias, cout, dims);
    let (dhu, dw, db) = (
        st.clone_htod(&hu).unwrap(),
        st.clone_htod(&w).unwrap(),
        st.clone_htod(&bias).unwrap(),
    );
    let mut out = poisoned(&st, v * cout);
    let (lo, hi, c, d, h, wd) = (-1000.0f32, 400.0f32, cout as i32, 7i32, 9i32, 10i32);
    let mut l = st.launch_builder(&f);
    l.arg(&dhu)
        .arg(&lo)
        .arg(&hi)
        .arg(&dw)
        .arg(&db)
        .arg(&mut out)
        .arg(&c)
        .arg(&d)
        .arg(&h)
        .arg(&wd);
    unsafe { l.launch(cfg((v.div_ceil(128) as u32, 1), 128)) }.unwrap();
    check(&st.clone_dtoh(&out).unwrap(), &want, 2e-3, "conv_first");
}

#[test]
fn pool_expand_upconv_kernels_match_references() {
    let Some((ctx, st, info)) = gpu() else { return };
    let mut rng = Rng(seed());
    // maxpool2
    let f = func(&ctx, &info, "pool", "ls_maxpool2");
    let (s, dims, c) = (3usize, [6usize, 4, 10], 32usize);
    let v = 240;
    let x = rng.h(s * v * c, 2.0);
    let want = r::maxpool2(&x, s, dims, c);
    let dx = st.clone_htod(&h16(&x)).unwrap();
    let mut out = poisoned(&st, want.len());
    let (si, d, h, w, ci) = (s as i32, 6i32, 4i32, 10i32, c as i32);
    let mut l = st.launch_builder(&f);
    l.arg(&dx)
        .arg(&mut out)
        .arg(&si)
        .arg(&d)
        .arg(&h)
        .arg(&w)
        .arg(&ci);
    unsafe { l.launch(cfg(((want.len() / 2).div_ceil(256) as u32, 1), 256)) }.unwrap();
    check(&st.clone_dtoh(&out).unwrap(), &want, 0.0, "maxpool2");

    // dropout_expand (element and channel)
    let f = func(&ctx, &info, "dropout", "ls_dropout_expand");
    let shared = rng.h(v * 16, 1.0);
    for element in [false, true] {
        let drop = LsDrop::new(seed(), 0.2, 0, element, 5);
        let want = r::dropout_expand(&shared, s, v, 16, &drop);
        let ds = st.clone_htod(&h16(&shared)).unwrap();
        let mut out = poisoned(&st, want.len());
        let (si, vu, ci) = (s as i32, v as u32, 16i32);
        let mut l = st.launch_builder(&f);
        l.arg(&ds)
            .arg(&mut out)
            .arg(&si)
            .arg(&vu)
            .arg(&ci)
            .arg(&drop);
        unsafe { l.launch(cfg(((want.len() / 2).div_ceil(256) as u32, 1), 256)) }.unwrap();
        check(&st.clone_dtoh(&out).unwrap(), &want, 1e-3, "dropout_expand");
    }

    // upconv2
    let f = func(&ctx, &info, "upconv", "ls_upconv2");
    let (cin, cout, dims) = (64usize, 32usize, [3usize, 5, 2]);
    let v = 30;
    let x = rng.h(s * v * cin, 1.0);
    let w = rng.h(8 * cout * cin, 0.2);
    let bias = rng.h(cout, 0.3);
    let want = r::upconv2(&x, cin, &w, &bias, cout, s, dims);
    let (dx, dw, db) = (
        st.clone_htod(&h16(&x)).unwrap(),
        st.clone_htod(&h16(&w)).unwrap(),
        st.clone_htod(&bias).unwrap(),
    );
    let mut out = poisoned(&st, want.len());
    let (cini, couti, si, d, h, wd) = (cin as i32, cout as i32, s as i32, 3i32, 5i32, 2i32);
    let mut l = st.launch_builder(&f);
    l.arg(&dx)
        .arg(&cini)
        .arg(&dw)
        .arg(&db)
        .arg(&mut out)
        .arg(&couti)
        .arg(&si)
        .arg(&d)
        .arg(&h)
        .arg(&wd);
    unsafe {
        l.launch(cfg(
            ((s * v).div_ceil(128) as u32, (8 * cout).div_ceil(32) as u32),
            128,
        ))
    }
    .unwrap();
    check(&st.clone_dtoh(&out).unwrap(), &want, 4e-3, "upconv2");
}

#[test]
fn head_kernels_match_reference() {
    let Some((ctx, st, info)) = gpu() else { return };
    let fa = func(&ctx, &info, "head", "ls_head_accumulate");
    let ff = func(&ctx, &info, "head", "ls_head_finalize");
    let mut rng = Rng(seed());
    let (c, v) = (16usize, 1000usize);
    let chunks = [4usize, 3];
    let n: usize = chunks.iter().sum();
    let x = rng.h(n * v * c, 1.0);
    let w: Vec<f32> = (0..c).map(|_| rng.f()).collect();
    let bias = 0.2f32;
    let mut stt = r::HeadState::default();
    let dw = st.clone_htod(&w).unwrap();
    let mut mean = st.clone_htod(&vec![f32::NAN; v]).unwrap();
    let mut m2 = st.clone_htod(&vec![f32::NAN; v]).unwrap();
    let mut sh = st.clone_htod(&vec![f32::NAN; v]).unwrap();
    let mut fg = st.clone_htod(&vec![7u32; v]).unwrap();
    let mut off = 0;
    for &s in &chunks {
        let part = &x[off * v * c..(off + s) * v * c];
        r::head_accumulate(part, c, &w, bias, s, &mut stt);
        let dx = st.clone_htod(&h16(part)).unwrap();
        let (ci, si, vu, n0) = (c as i32, s as i32, v as u32, off as i32);
        let mut l = st.launch_builder(&fa);
        l.arg(&dx)
            .arg(&ci)
            .arg(&dw)
            .arg(&bias)
            .arg(&si)
            .arg(&vu)
            .arg(&n0);
        l.arg(&mut mean).arg(&mut m2).arg(&mut sh).arg(&mut fg);
        unsafe { l.launch(cfg((v.div_ceil(256) as u32, 1), 256)) }.unwrap();
        off += s;
    }
    let want = r::head_finalize(&stt);
    let mut maps: Vec<CudaSlice<f32>> = (0..4)
        .map(|_| st.clone_htod(&vec![f32::NAN; v]).unwrap())
        .collect();
    let blocks = v.div_ceil(256);
    let mut part = st.alloc_zeros::<f64>(blocks * 6).unwrap();
    let (ni, vu) = (n as i32, v as u32);
    {
        let [a, b, cc, d] = &mut maps[..] else {
            unreachable!()
        };
        let mut l = st.launch_builder(&ff);
        l.arg(&mean).arg(&m2).arg(&sh).arg(&fg).arg(&ni).arg(&vu);
        l.arg(a).arg(b).arg(cc).arg(d).arg(&mut part);
        unsafe { l.launch(cfg((blocks as u32, 1), 256)) }.unwrap();
    }
    for (i, (m, wv)) in maps
        .iter()
        .zip([&want.mean, &want.variance, &want.entropy, &want.mutual_info])
        .enumerate()
    {
        let g = st.clone_dtoh(m).unwrap();
        let d = max_abs_diff(&g, wv);
        assert!(
            g.iter().all(|x| x.is_finite()) && d <= 1e-4,
            "map {i}: max diff {d}"
        );
    }
    let p = st.clone_dtoh(&part).unwrap();
    for k in 0..6 {
        let s: f64 = p.chunks(6).map(|r| r[k]).sum();
        assert!(
            (s - want.sums[k]).abs() <= 1e-3 * (1.0 + want.sums[k].abs()),
            "sum {k}: {s} vs {}",
            want.sums[k]
        );
    }
}

/// Default architecture, formula weights, a 64³ patch: GPU engine vs CPU engine, same masks.
#[test]
fn network_matches_cpu_engine_and_repeats_bit_identically() {
    let Some(_) = gpu() else { return };
    let cfg = r#"{"channels":[16,32,64,128,256]}"#;
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    // The GPU machine has a copy of the fixtures in $LUNGSEG_FIXTURES (scripts/gpu-check.sh).
    let dir = std::env::var("LUNGSEG_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures").into());
    let input: Vec<f32> = std::fs::read(format!("{dir}/default.input.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let eng = CudaEngine::new(&m, 0).unwrap();
    eprintln!("device {}, chunk {}", eng.device_name, eng.chunk());
    let n_samples = 6;
    let seed = 0xC0FFEE;
    for (dropout, n) in [(false, 1u32), (true, n_samples)] {
        let got = eng.run(&input, seed, n, dropout).unwrap();
        let again = eng.run(&input, seed, n, dropout).unwrap();
        assert!(
            got.mean
                .iter()
                .zip(&again.mean)
                .all(|(a, b)| a.to_bits() == b.to_bits())
                && got
                    .mutual_info
                    .iter()
                    .zip(&again.mutual_info)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "repeated runs differ"
        );
        let v = input.len();
        let (mut a, mut b, mut c, mut d) = (vec![0.0; v], vec![0.0; v], vec![0.0; v], vec![0.0; v]);
        let summary = if dropout {
            Some(
                lungseg::mc::predict_uncertainty(
                    &m,
                    &input,
                    &lungseg::mc::McOptions {
                        n_samples: n,
                        seed,
                        threads: 0,
                        review_threshold: None,
                        review_score: None,
                    },
                    lungseg::mc::UncertaintyMaps {
                        mean: Some(&mut a),
                        variance: Some(&mut b),
                        entropy: Some(&mut c),
                        mutual_info: Some(&mut d),
                    },
                )
                .unwrap(),
            )
        } else {
            lungseg::mc::predict(&m, &input, &mut a, 0).unwrap();
            None
        };
        let max = max_abs_diff(&got.mean, &a);
        let mean = got
            .mean
            .iter()
            .zip(&a)
            .map(|(x, y)| f64::from((x - y).abs()))
            .sum::<f64>()
            / v as f64;
        eprintln!("dropout={dropout}: probability max abs {max:.2e}, mean abs {mean:.2e}");
        assert!(max <= 1e-2 && mean <= 1e-3, "max {max} mean {mean}");
        if let Some(s) = summary {
            let region = got.sums[1];
            let avg = |x: f64| {
                if region > 0.0 {
                    (x / region) as f32
                } else {
                    0.0
                }
            };
            let score = match m.review().score {
                lungseg::model::ReviewScore::MeanMutualInfo => avg(got.sums[4]),
                lungseg::model::ReviewScore::MeanEntropy => avg(got.sums[3]),
                lungseg::model::ReviewScore::MeanVariance => avg(got.sums[5]),
                // Not a kernel sum: from the GPU's mean map on the host.
                lungseg::model::ReviewScore::VolumeDisagreement => {
                    lungseg::mc::volume_disagreement(
                        got.mean.iter().map(|&p| f64::from(p)).sum(),
                        got.mean.iter().filter(|&&p| p >= 0.5).count() as u64,
                    )
                }
                // The fixtures name none of these: the engine keeps no per-sample masks.
                other @ (lungseg::model::ReviewScore::DiceDisagreement
                | lungseg::model::ReviewScore::IouDisagreement
                | lungseg::model::ReviewScore::VolumeCv) => panic!(
                    "{} needs the sample masks, which the CUDA engine does not keep",
                    other.name()
                ),
            };
            eprintln!(
                "score gpu {score} cpu {} (threshold {})",
                s.uncertainty_score,
                m.review().threshold
            );
            assert_eq!(
                score > m.review().threshold,
                s.needs_review,
                "needs-review differs"
            );
        }
    }
}
