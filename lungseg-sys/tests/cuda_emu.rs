//! The CUDA kernels executed on the CPU by the host emulator (`lungseg::cuda::emu`, docs/cuda.md
//! "Emulator"; scripts/cuda-emu.sh): the very sources NVRTC compiles, built with g++ under
//! AddressSanitizer + UBSan, launched with the engine's own launch descriptions
//! (`lungseg::cuda::launch`) on NaN-poisoned outputs, each launch in forward and reverse thread
//! order, against the CPU references. Also the emulator's own checks: fp16 conversion against
//! numpy, the mma fragment layouts against ggml's, and that divergence, exited threads at a
//! barrier, unknown PTX and out-of-bounds loads are reported, not run.
#![cfg(feature = "cuda-emu")]

mod common;
mod cuda_cases;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::*;
use cuda_cases::{self as cases, f16_bytes, f32_bytes, f32s, u32s, KernelDevice, Rng};
use half::f16;
use lungseg::cuda::emu::engine::{run as run_plan, EmuRun};
use lungseg::cuda::emu::{self, BufId, EmuDevice, Order};
use lungseg::cuda::launch::{KArg, Launch};
use lungseg::cuda::plan::run_reference;

fn emulator() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-emu");
        emu::build(&dir, &emu::BuildOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn device() -> EmuDevice {
    EmuDevice::spawn(emulator()).unwrap()
}

/// Runs `launch` (buffers named by index into `inputs`; `outputs` more buffers of the given
/// byte sizes, NaN-poisoned) in both thread orders; the two results must be bit-identical.
/// Returns the outputs' bytes.
fn run_both(
    dev: &mut EmuDevice,
    inputs: &[Vec<u8>],
    outputs: &[usize],
    launch: &Launch<usize>,
) -> Vec<Vec<u8>> {
    let mut results = Vec::new();
    for order in [Order::Forward, Order::Reverse] {
        let mut ids: Vec<BufId> = inputs.iter().map(|b| dev.upload(b).unwrap()).collect();
        ids.extend(outputs.iter().map(|&n| dev.poisoned(n).unwrap()));
        dev.launch(&launch.map(|i| ids[i]), order)
            .unwrap_or_else(|e| panic!("{}: {e}", launch.func));
        let outs: Vec<Vec<u8>> = ids[inputs.len()..]
            .iter()
            .map(|&id| dev.read(id).unwrap())
            .collect();
        for id in ids {
            dev.free(id).unwrap();
        }
        results.push(outs);
    }
    assert!(
        results[0] == results[1],
        "{}: forward and reverse thread order differ (a race)",
        launch.func
    );
    results.swap_remove(0)
}

// ------------------------------------------------------------------ the emulator itself

#[test]
fn fragment_layouts_match_ggml() {
    device().layout_selftest().unwrap();
}

#[test]
fn mma_with_fragments_placed_by_ggml_layout_multiplies() {
    let mut dev = device();
    let mut rng = Rng(77);
    let a = rng.h(16 * 16, 2.0); // [16][16]
    let b = rng.h(8 * 16, 2.0); // [n][k]
    let c: Vec<f32> = (0..128).map(|_| rng.f()).collect();
    let launch = Launch {
        func: "emu_mma_ggml",
        grid: [1, 1, 1],
        block: [32, 1, 1],
        dyn_smem: 0,
        args: vec![KArg::Buf(0), KArg::Buf(1), KArg::Buf(2), KArg::Buf(3)],
    };
    let inputs = [f16_bytes(&a), f16_bytes(&b), f32_bytes(&c)];
    let got = f32s(&run_both(&mut dev, &inputs, &[128 * 4], &launch)[0]);
    for m in 0..16 {
        for n in 0..8 {
            let want = (0..16).fold(f64::from(c[m * 8 + n]), |s, k| {
                s + f64::from(a[m * 16 + k]) * f64::from(b[n * 16 + k])
            }) as f32;
            assert_eq!(got[m * 8 + n], want, "D[{m}][{n}]");
        }
    }
}

/// f32 patterns around every fp16 value: the value, ±1 f32 ulp, the midpoints to both
/// neighbours ±1 ulp, plus subnormal, overflow and NaN edges and random bits.
fn conversion_cases() -> Vec<f32> {
    let mut xs = Vec::new();
    for h in 0..=u16::MAX {
        let v = f16::from_bits(h);
        if !v.is_finite() {
            continue;
        }
        let x = v.to_f32();
        let next = f16::from_bits(h.wrapping_add(1)).to_f32();
        let mid = (f64::from(x) + f64::from(next)) / 2.0;
        for y in [x, mid as f32] {
            let bits = y.to_bits();
            xs.extend([
                y,
                f32::from_bits(bits + 1),
                f32::from_bits(bits.wrapping_sub(1)),
            ]);
        }
    }
    xs.extend([
        65504.0,
        65519.0,
        65520.0,
        1e6,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    xs.extend([
        f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc0_1234),
    ]);
    xs.extend([
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        1e-45,
        2.9802322e-8,
        2.9802326e-8,
    ]);
    let mut s = 0x1234_5678_9abc_def0u64;
    for _ in 0..200_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        xs.push(f32::from_bits((s >> 32) as u32));
    }
    xs
}

#[test]
fn f16_conversion_matches_numpy() {
    let xs = conversion_cases();
    let got = device().f32_to_f16(&xs).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (inp, out) = (dir.join("f16_cases.f32"), dir.join("f16_numpy.u16"));
    std::fs::write(&inp, f32_bytes(&xs)).unwrap();
    let script = "import sys, numpy as np\n\
        x = np.fromfile(sys.argv[1], dtype='<f4')\n\
        with np.errstate(over='ignore'):\n    h = x.astype(np.float16)\n\
        h.view('<u2').tofile(sys.argv[2])\n";
    let st = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&inp)
        .arg(&out)
        .status()
        .expect("python3 with numpy is needed (scripts/test.sh installs it)");
    assert!(st.success(), "numpy conversion failed");
    let want: Vec<u16> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(want.len(), xs.len());
    let is_nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        if is_nan(w) {
            assert_eq!(
                g, 0x7fff,
                "case {i} ({:e}): NaN must become canonical",
                xs[i]
            );
        } else {
            assert_eq!(
                g,
                w,
                "case {i}: {:e} (bits {:#010x})",
                xs[i],
                xs[i].to_bits()
            );
        }
    }
}

fn selftest_launch<B>(func: &'static str, threads: u32, args: Vec<KArg<B>>) -> Launch<B> {
    Launch {
        func,
        grid: [1, 1, 1],
        block: [threads, 1, 1],
        dyn_smem: 0,
        args,
    }
}

/// The error of a launch that must fail.
fn launch_error(launch: &Launch<usize>, out_bytes: usize) -> String {
    let mut dev = device();
    let out = dev.poisoned(out_bytes).unwrap();
    dev.launch(&launch.map(|_| out), Order::Forward)
        .expect_err("the emulator ran an invalid launch")
}

#[test]
fn divergent_warp_collective_is_reported() {
    for active in [0, 16, 31] {
        let launch = selftest_launch(
            "emu_divergent_mma",
            64,
            vec![KArg::Buf(0), KArg::I32(active)],
        );
        if active == 0 {
            // No lane runs it: fine.
            let mut dev = device();
            let out = dev.poisoned(64 * 4).unwrap();
            dev.launch(&launch.map(|_| out), Order::Forward).unwrap();
            continue;
        }
        let e = launch_error(&launch, 64 * 4);
        assert!(e.contains("divergent warp collective"), "{e}");
    }
    // All 32 lanes: a well-formed collective.
    let mut dev = device();
    let out = dev.poisoned(64 * 4).unwrap();
    let ok = selftest_launch("emu_divergent_mma", 64, vec![KArg::Buf(0), KArg::I32(32)]);
    dev.launch(&ok.map(|_| out), Order::Reverse).unwrap();
}

#[test]
fn barrier_with_exited_threads_is_reported() {
    let bad = selftest_launch(
        "emu_exit_before_barrier",
        64,
        vec![KArg::Buf(0), KArg::I32(40)],
    );
    let e = launch_error(&bad, 64 * 4);
    assert!(
        e.contains("__syncthreads reached by 40 threads while 24 have exited"),
        "{e}"
    );
    let mut dev = device();
    let out = dev.poisoned(64 * 4).unwrap();
    let ok = selftest_launch(
        "emu_exit_before_barrier",
        64,
        vec![KArg::Buf(0), KArg::I32(64)],
    );
    dev.launch(&ok.map(|_| out), Order::Forward).unwrap();
}

#[test]
fn unknown_ptx_and_bad_launches_are_reported() {
    let e = launch_error(
        &selftest_launch("emu_unknown_ptx", 32, vec![KArg::Buf(0)]),
        4,
    );
    assert!(e.contains("unemulated inline PTX: \"bar.sync 0;\""), "{e}");
    let mut wrong_type = selftest_launch("emu_unknown_ptx", 32, vec![KArg::I32(0)]);
    assert!(launch_error(&wrong_type, 4).contains("needs 'p'"));
    wrong_type.args.clear();
    assert!(launch_error(&wrong_type, 4).contains("0 arguments sent, the kernel takes 1"));
    let mut empty = selftest_launch("emu_unknown_ptx", 32, vec![KArg::Buf(0)]);
    empty.grid = [0, 1, 1];
    assert!(launch_error(&empty, 4).contains("invalid grid"));
    empty.grid = [1, 1, 1];
    empty.block = [1025, 1, 1];
    assert!(launch_error(&empty, 4).contains("invalid block"));
}

#[test]
fn out_of_bounds_load_is_stopped_by_asan() {
    let mut dev = device();
    let buf = dev.upload(&[0u8; 16]).unwrap();
    let out = dev.poisoned(4).unwrap();
    let load = |off| Launch {
        func: "emu_load",
        grid: [1, 1, 1],
        block: [1, 1, 1],
        dyn_smem: 0,
        args: vec![KArg::Buf(buf), KArg::I32(off), KArg::Buf(out)],
    };
    dev.launch(&load(6), Order::Forward).unwrap(); // bytes 12..16: the last word
    let e = dev.launch(&load(8), Order::Forward).unwrap_err();
    assert!(e.contains("AddressSanitizer: heap-buffer-overflow"), "{e}");
}

/// Stores to fp16 saturate at ±65504 (inf included) and keep NaN, like the CPU reference.
#[test]
fn fp16_stores_saturate_and_keep_nan() {
    let mut dev = device();
    let vals = [
        1e6f32,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        65504.0,
        65519.0,
        1.5,
        -0.0,
        f32::NAN,
    ];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dev.upload(&bytes).unwrap();
    let out = dev.poisoned(vals.len() * 2).unwrap();
    let n = vals.len() as i32;
    let launch = selftest_launch(
        "emu_f2h",
        32,
        vec![KArg::Buf(input), KArg::Buf(out), KArg::I32(n)],
    );
    dev.launch(&launch, Order::Forward).unwrap();
    let got: Vec<f32> = dev
        .read(out)
        .unwrap()
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let want = [
        65504.0, -65504.0, 65504.0, -65504.0, 65504.0, 65504.0, 1.5, -0.0,
    ];
    assert_eq!(&got[..8], &want, "saturated stores");
    assert!(got[8].is_nan(), "NaN must stay NaN");
    for (v, g) in vals.iter().zip(&got) {
        if !v.is_nan() {
            assert_eq!(
                lungseg::cuda::reference::round_f16(*v),
                *g,
                "reference of {v}"
            );
        }
    }
}

#[test]
fn races_differ_between_thread_orders_and_barriers_fix_them() {
    let mut dev = device();
    let mut outs = Vec::new();
    for (func, order) in [
        ("emu_race", Order::Forward),
        ("emu_race", Order::Reverse),
        ("emu_no_race", Order::Forward),
        ("emu_no_race", Order::Reverse),
    ] {
        let out = dev.poisoned(64 * 4).unwrap();
        dev.launch(&selftest_launch(func, 64, vec![KArg::Buf(out)]), order)
            .unwrap();
        outs.push(f32s(&dev.read(out).unwrap()));
    }
    assert_ne!(
        outs[0].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        outs[1].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let want: Vec<f32> = (0..64u32).map(|t| (t ^ 1) as f32).collect();
    assert_eq!(outs[2], want);
    assert_eq!(outs[3], want);
}

#[test]
fn dynamic_shared_memory_is_per_block_and_poisoned() {
    let mut dev = device();
    let (blocks, n) = (3u32, 64u32);
    let run = |dev: &mut EmuDevice, unwritten: i32| {
        let out = dev.poisoned((blocks * n) as usize * 4).unwrap();
        let launch = Launch {
            func: "emu_dyn_shared",
            grid: [blocks, 1, 1],
            block: [n, 1, 1],
            dyn_smem: (n + 1) * 4,
            args: vec![KArg::Buf(out), KArg::I32(unwritten)],
        };
        dev.launch(&launch, Order::Forward).unwrap();
        f32s(&dev.read(out).unwrap())
    };
    let got = run(&mut dev, 0);
    for b in 0..blocks {
        for t in 0..n {
            assert_eq!(got[(b * n + t) as usize], (b * n + n - 1 - t) as f32);
        }
    }
    assert!(run(&mut dev, 1).iter().all(|x| x.is_nan()));
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bits(v: &[f32]) -> Vec<u16> {
    v.iter().map(|&x| f16::from_f32(x).to_bits()).collect()
}

fn one_block<B>(func: &'static str, threads: u32, dyn_smem: u32, args: Vec<KArg<B>>) -> Launch<B> {
    Launch {
        func,
        grid: [1, 1, 1],
        block: [threads, 1, 1],
        dyn_smem,
        args,
    }
}

#[test]
fn ldmatrix_matches_the_ptx_definition() {
    let mut dev = device();
    let mut rng = Rng(31);
    let rows = rng.h(32 * 8, 4.0);
    let bits = f16_bits(&rows);
    // Lane l addresses row sel[l]: a permutation, so each lane's address really is used.
    let sel: Vec<i32> = (0..32).map(|l| (l * 13 + 5) % 32).collect();
    for variant in 0..6 {
        let (num, trans) = ([1usize, 2, 4][variant % 3], variant >= 3);
        let launch = one_block(
            "emu_ldmatrix",
            32,
            512,
            vec![
                KArg::Buf(0),
                KArg::Buf(1),
                KArg::I32(variant as i32),
                KArg::Buf(2),
            ],
        );
        let inputs = [f16_bytes(&rows), i32_bytes(&sel)];
        let got = u32s(&run_both(&mut dev, &inputs, &[32 * 16], &launch)[0]);
        // PTX ISA: lanes 8i..8i+7 give rows 0..7 of matrix i; lane l gets row l/4, elements
        // 2(l%4), 2(l%4)+1 (transposed: column l/4, rows 2(l%4), 2(l%4)+1).
        for lane in 0..32 {
            let (g, t) = (lane / 4, lane % 4);
            for i in 0..num {
                let m = |r: usize, c: usize| u32::from(bits[sel[8 * i + r] as usize * 8 + c]);
                let (lo, hi) = if trans {
                    (m(2 * t, g), m(2 * t + 1, g))
                } else {
                    (m(g, 2 * t), m(g, 2 * t + 1))
                };
                assert_eq!(
                    got[lane * 4 + i],
                    lo | hi << 16,
                    "variant {variant} lane {lane} register {i}"
                );
            }
        }
    }
}

#[test]
fn ldmatrix_fragments_are_the_mma_operands_ggml_places() {
    let mut dev = device();
    let mut rng = Rng(32);
    let a = rng.h(16 * 16, 2.0);
    let b = rng.h(16 * 16, 2.0); // [n][k]
    let bt: Vec<f32> = (0..256).map(|i| b[(i % 16) * 16 + i / 16]).collect(); // [k][n]
    let c: Vec<f32> = (0..256).map(|_| rng.f()).collect();
    let launch = one_block("emu_ldsm_mma", 32, 1536, (0..6).map(KArg::Buf).collect());
    let inputs = [f16_bytes(&a), f16_bytes(&b), f16_bytes(&bt), f32_bytes(&c)];
    let outs = run_both(&mut dev, &inputs, &[256 * 4, 32 * 4], &launch);
    let bad = u32s(&outs[1]);
    assert!(
        bad.iter().all(|&n| n == 0),
        "ldmatrix fragments differ from ggml's: {bad:?}"
    );
    let d = f32s(&outs[0]);
    for m in 0..16 {
        for n in 0..16 {
            let want = (0..16).fold(f64::from(c[m * 16 + n]), |s, k| {
                s + f64::from(a[m * 16 + k]) * f64::from(b[n * 16 + k])
            }) as f32;
            assert_eq!(d[m * 16 + n], want, "D[{m}][{n}]");
        }
    }
}

/// `ls_swz` (common.cuh) keeps every chunk of a tile in place once (a permutation of each row's
/// chunks) and spreads the 8 rows that one ldmatrix phase reads (8-aligned, one logical chunk)
/// over 8 distinct 16-byte bank groups of the 128-byte bank line: no bank conflicts.
#[test]
fn swizzle_is_a_permutation_free_of_bank_conflicts() {
    let mut dev = device();
    let launch = one_block("emu_swz", 1, 0, vec![KArg::Buf(0)]);
    let got = u32s(&run_both(&mut dev, &[], &[3 * 512 * 4], &launch)[0]);
    for cpr in [2usize, 4, 8] {
        let off = |r: usize, c: usize| got[(cpr / 4) * 512 + r * 8 + c] as usize;
        for r in 0..64 {
            let mut chunks: Vec<usize> = (0..cpr).map(|c| off(r, c) / 16).collect();
            chunks.sort_unstable();
            let want: Vec<usize> = (r * cpr..(r + 1) * cpr).collect();
            assert_eq!(
                chunks, want,
                "cpr {cpr} row {r}: not a permutation of the row's chunks"
            );
        }
        for r0 in (0..64).step_by(8) {
            for c in 0..cpr {
                let mut groups: Vec<usize> = (r0..r0 + 8).map(|r| off(r, c) / 16 % 8).collect();
                groups.sort_unstable();
                groups.dedup();
                assert_eq!(
                    groups.len(),
                    8,
                    "cpr {cpr} rows {r0}.. chunk {c}: bank conflict"
                );
            }
        }
    }
}

fn cp_async_launch<B>(src: B, wait: i32, out: B) -> Launch<B> {
    one_block(
        "emu_cp_async",
        64,
        2048,
        vec![KArg::Buf(src), KArg::I32(wait), KArg::Buf(out)],
    )
}

#[test]
fn cp_async_lands_at_its_wait_with_zero_fill() {
    let mut dev = device();
    let mut rng = Rng(33);
    let src = rng.h(128 * 8, 3.0);
    let bits = f16_bits(&src);
    // Chunk q as thread q % 64 copied it: 16, 8 or 0 source bytes, zeros after.
    let chunk = |q: usize| -> Vec<u32> {
        let n = [8, 4, 0][(q % 64) % 3];
        (0..4)
            .map(|w| {
                let h = |e: usize| if e < n { u32::from(bits[q * 8 + e]) } else { 0 };
                h(2 * w) | h(2 * w + 1) << 16
            })
            .collect()
    };
    for wait in [0, 1] {
        let got = u32s(
            &run_both(
                &mut dev,
                &[f16_bytes(&src)],
                &[64 * 32],
                &cp_async_launch(0, wait, 1),
            )[0],
        );
        for t in 0..64 {
            assert_eq!(
                got[t * 8..t * 8 + 4],
                chunk(t ^ 1)[..],
                "wait {wait} thread {t} group 1"
            );
            // The second group not waited for before the read: still undefined (NaN poison).
            let second = if wait == 0 {
                chunk(64 + (t ^ 1))
            } else {
                vec![u32::MAX; 4]
            };
            assert_eq!(
                got[t * 8 + 4..t * 8 + 8],
                second[..],
                "wait {wait} thread {t} group 2"
            );
        }
    }
    let mut dev = device();
    let s = dev.upload(&f16_bytes(&src)).unwrap();
    let out = dev.poisoned(64 * 32).unwrap();
    let e = dev
        .launch(&cp_async_launch(s, 2, out), Order::Forward)
        .unwrap_err();
    assert!(e.contains("cp.async copies never waited for"), "{e}");
}

#[test]
fn invalid_cp_async_and_divergent_ldmatrix_are_reported() {
    for (which, msg) in [
        (0, "shared address 0x1008 is not 16-byte aligned"),
        (1, "is outside the 64 bytes of dynamic shared memory"),
        (2, "global source"),
        (3, "src-size 17"),
    ] {
        let mut dev = device();
        let src = dev.upload(&[0u8; 64]).unwrap();
        let l = one_block(
            "emu_cp_async_bad",
            32,
            64,
            vec![KArg::Buf(src), KArg::I32(which)],
        );
        let e = dev.launch(&l, Order::Forward).unwrap_err();
        assert!(e.contains(msg), "case {which}: {e}");
    }
    for active in [1, 16, 31] {
        let l = one_block(
            "emu_divergent_ldmatrix",
            64,
            16,
            vec![KArg::Buf(0), KArg::I32(active)],
        );
        let e = launch_error(&l, 64 * 4);
        assert!(
            e.contains("divergent warp collective") && e.contains("ldmatrix"),
            "{e}"
        );
    }
    let mut dev = device();
    let out = dev.poisoned(64 * 4).unwrap();
    let ok = one_block(
        "emu_divergent_ldmatrix",
        64,
        16,
        vec![KArg::Buf(out), KArg::I32(32)],
    );
    dev.launch(&ok, Order::Reverse).unwrap();
}

// ------------------------------------------------------------------ the kernels

/// The emulator as a [`KernelDevice`]: each launch in `order`, and [`KernelDevice::run`] in
/// both thread orders, which must agree bit for bit.
struct Emu {
    dev: EmuDevice,
    order: Order,
}

fn emu() -> Emu {
    Emu {
        dev: device(),
        order: Order::Forward,
    }
}

impl KernelDevice for Emu {
    type Buf = BufId;

    fn upload(&mut self, bytes: &[u8]) -> BufId {
        self.dev.upload(bytes).unwrap()
    }

    fn poisoned(&mut self, len: usize) -> BufId {
        self.dev.poisoned(len).unwrap()
    }

    fn launch(&mut self, launch: &Launch<BufId>) {
        self.dev
            .launch(launch, self.order)
            .unwrap_or_else(|e| panic!("{}: {e}", launch.func));
    }

    fn read(&mut self, buf: BufId) -> Vec<u8> {
        self.dev.read(buf).unwrap()
    }

    fn run(
        &mut self,
        inputs: &[Vec<u8>],
        outputs: &[usize],
        launch: &Launch<usize>,
    ) -> Vec<Vec<u8>> {
        run_both(&mut self.dev, inputs, outputs, launch)
    }
}

#[test]
fn conv_first_matches_reference() {
    cases::conv_first(&mut emu());
}

#[test]
fn dropout_expand_matches_reference() {
    cases::dropout_expand(&mut emu());
}

#[test]
fn conv3_matches_reference_small_and_odd() {
    let (mut dev, mut rng) = (emu(), Rng(13));
    for case in cases::CONV3_SMALL_AND_ODD {
        cases::conv3(&mut dev, &mut rng, case);
    }
}

#[test]
fn conv3_matches_reference_at_16_cubed() {
    cases::conv3(
        &mut emu(),
        &mut Rng(14),
        (16, 16, 32, 2, [16, 16, 16], false, 2),
    );
}

#[test]
fn maxpool_matches_reference_exactly() {
    cases::maxpool(&mut emu());
}

#[test]
fn upconv_matches_reference() {
    cases::upconv(&mut emu());
}

/// With the sample masks in forward thread order, without them (NULL) in reverse order.
#[test]
fn head_kernels_match_reference_across_chunks() {
    let mut dev = emu();
    cases::head(&mut dev, true);
    dev.order = Order::Reverse;
    cases::head(&mut dev, false);
}

// ------------------------------------------------------------------ the whole plan

fn plan_matches(cfg: &str, n: u32, chunk: usize) {
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    assert!(lungseg::cuda::weights::unsupported_reason(&m).is_none());
    let mut rng = Rng(21);
    let v = 16 * 16 * 16;
    let input: Vec<f32> = (0..v).map(|_| rng.f() * 1000.0 - 200.0).collect();
    let seed = 0x5151_7777;
    let want = run_reference(&m, &input, seed, n, chunk, true);
    let mut dev = device();
    let got = run_plan(
        &mut dev,
        &m,
        &EmuRun {
            patch_hu: &input,
            seed,
            n_samples: n,
            sample0: 0,
            chunk,
            dropout: true,
            flips: 1,
            order: Order::Forward,
        },
    )
    .unwrap();
    for (name, g, w) in [
        ("mean", &got.mean, &want.mean),
        ("variance", &got.variance, &want.variance),
        ("entropy", &got.entropy, &want.entropy),
        ("mutual_info", &got.mutual_info, &want.mutual_info),
    ] {
        assert!(g.iter().all(|x| x.is_finite()), "{name}: unwritten voxels");
        let max = max_abs_diff(g, w);
        let mean = g
            .iter()
            .zip(w.iter())
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum::<f64>()
            / g.len() as f64;
        eprintln!("{name}: max {max:.2e} mean {mean:.2e}");
        // The reference plan rounds the same tensors to fp16; only summation order differs.
        assert!(max <= 1e-2 && mean <= 1e-4, "{name}: max {max} mean {mean}");
    }
    for k in 0..6 {
        let (g, w) = (got.sums[k], want.sums[k]);
        assert!((g - w).abs() <= 2.0 + 1e-2 * w.abs(), "sum {k}: {g} vs {w}");
    }
}

#[test]
fn mc_plan_matches_reference_plan_channel_dropout() {
    plan_matches(
        r#"{"channels":[16,32],"patch_size":[16,16,16],"dropout":{"p":0.25,"kind":"channel"}}"#,
        3,
        2,
    );
}

#[test]
fn mc_plan_matches_reference_plan_element_dropout() {
    plan_matches(
        r#"{"channels":[16,32],"patch_size":[16,16,16],"dropout":{"p":0.2,"kind":"element"}}"#,
        3,
        2,
    );
}

#[test]
fn mc_plan_matches_reference_plan_dropout_in_some_levels() {
    plan_matches(
        r#"{"channels":[16,32],"patch_size":[16,16,16],"dropout":{"p":0.25,"kind":"channel","levels":[1]}}"#,
        3,
        2,
    );
}

/// The default model's shape: 8 channels at level 0, stored as 16 (zero channels), level 0
/// without dropout (computed once per call).
#[test]
fn mc_plan_matches_reference_plan_eight_channel_level() {
    plan_matches(
        r#"{"channels":[8,16],"patch_size":[16,16,16],"dropout":{"p":0.2,"kind":"channel","levels":[1]}}"#,
        3,
        2,
    );
}
