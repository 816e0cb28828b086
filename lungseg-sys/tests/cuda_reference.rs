//! CPU checks of the CUDA backend's kernel references (no GPU needed): each reference against
//! the CPU engine's own `nn` reference on small random inputs, and the whole launch plan run
//! through the references against the CPU engine.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use lungseg::cuda::plan::{run_reference, Plan};
use lungseg::cuda::reference::{self as r, round_f16, LsDrop, Src};
use lungseg::mc::{predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::nn::{self, Grid};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / 16_777_216.0) * 2.0 - 1.0
    }
    /// Values exactly representable in fp16, as stored activations/weights are.
    fn h(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| round_f16(self.f() * scale)).collect()
    }
}

fn close(a: &[f32], b: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= abs + rel * y.abs(),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

/// PyTorch `[cout][cin][27]` → kernel `[cout][27][cin]`.
fn to_kernel(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut k = vec![0.0; w.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..27 {
                k[(co * 27 + t) * cin + ci] = w[(co * cin + ci) * 27 + t];
            }
        }
    }
    k
}

#[test]
fn conv3_reference_matches_nn_reference_with_two_sources_and_batch() {
    let mut rng = Rng(0x5eed);
    let (c0, c1, cout, s) = (16, 16, 24, 2);
    let dims = [3, 5, 6];
    let g = Grid::new(dims[0], dims[1], dims[2]);
    let v = g.voxels();
    let a = rng.h(s * v * c0, 1.0);
    let b = rng.h(s * v * c1, 1.0);
    let cin = c0 + c1;
    let w = rng.h(cout * cin * 27, 0.2);
    let bias = rng.h(cout, 0.5);
    let got = r::conv3(
        Src {
            data: &a,
            c: c0,
            shared: false,
        },
        Some(Src {
            data: &b,
            c: c1,
            shared: false,
        }),
        &to_kernel(&w, cin, cout),
        &bias,
        cout,
        s,
        dims,
        true,
        &LsDrop::NONE,
    );
    for sm in 0..s {
        // The concat the kernel never materialises, for the CPU reference.
        let mut cat = Vec::with_capacity(v * cin);
        for vox in 0..v {
            cat.extend_from_slice(&a[(sm * v + vox) * c0..][..c0]);
            cat.extend_from_slice(&b[(sm * v + vox) * c1..][..c1]);
        }
        let want: Vec<f32> = nn::conv3::reference(&cat, g, cin, &w, &bias, cout, true)
            .into_iter()
            .map(round_f16)
            .collect();
        // Both round to fp16 at the end; f32 vs f64 accumulation may flip one ulp.
        close(
            &got[sm * v * cout..][..v * cout],
            &want,
            1e-3,
            2e-3,
            "conv3",
        );
    }
}

#[test]
fn conv3_reference_shared_source_and_dropout_epilogue() {
    let mut rng = Rng(77);
    let (c0, cout, s) = (16, 16, 3);
    let dims = [2, 3, 4];
    let v = 24;
    let a = rng.h(v * c0, 1.0);
    let w = rng.h(cout * c0 * 27, 0.2);
    let bias = rng.h(cout, 0.5);
    let wk = to_kernel(&w, c0, cout);
    let plain = r::conv3(
        Src {
            data: &a,
            c: c0,
            shared: true,
        },
        None,
        &wk,
        &bias,
        cout,
        s,
        dims,
        true,
        &LsDrop::NONE,
    );
    // Shared input: every sample equal.
    for sm in 1..s {
        assert_eq!(plain[..v * cout], plain[sm * v * cout..][..v * cout]);
    }
    for element in [false, true] {
        let d = LsDrop::new(42, 0.3, 5, element, 7);
        let got = r::conv3(
            Src {
                data: &a,
                c: c0,
                shared: true,
            },
            None,
            &wk,
            &bias,
            cout,
            s,
            dims,
            true,
            &d,
        );
        let mut dropped = 0;
        for sm in 0..s {
            let st = lungseg::philox::DropoutStream::new(42, 7 + sm as u32, 5, 0.3);
            for vox in 0..v {
                for c in 0..cout {
                    let i = (sm * v + vox) * cout + c;
                    let idx = if element {
                        (c * v + vox) as u64
                    } else {
                        c as u64
                    };
                    let want = if st.keep(idx) {
                        round_f16(plain[i] / 0.7)
                    } else {
                        0.0
                    };
                    dropped += usize::from(!st.keep(idx));
                    assert!(
                        (got[i] - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{element} {i}: {} vs {want}",
                        got[i]
                    );
                }
            }
        }
        assert!(dropped > 0);
    }
}

#[test]
fn conv_first_reference_matches_nn_reference() {
    let mut rng = Rng(3);
    let dims = [4, 5, 6];
    let g = Grid::new(4, 5, 6);
    let cout = 16;
    let hu: Vec<f32> = (0..g.voxels()).map(|_| rng.f() * 1500.0 - 300.0).collect();
    let w = rng.h(cout * 27, 0.5);
    let bias = rng.h(cout, 0.2);
    let mut w32 = vec![0.0; 32 * cout];
    for co in 0..cout {
        for t in 0..27 {
            w32[t * cout + co] = w[co * 27 + t];
        }
    }
    let got = r::conv_first(&hu, -1000.0, 400.0, &w32, &bias, cout, dims);
    let norm: Vec<f32> = hu
        .iter()
        .map(|&x| round_f16(((x + 1000.0) / 1400.0).clamp(0.0, 1.0)))
        .collect();
    let want: Vec<f32> = nn::conv3::reference(&norm, g, 1, &w, &bias, cout, true)
        .into_iter()
        .map(round_f16)
        .collect();
    close(&got, &want, 1e-3, 2e-3, "conv_first");
}

#[test]
fn maxpool_reference_matches_nn_reference_exactly() {
    let mut rng = Rng(11);
    let (s, c) = (2, 16);
    let g = Grid::new(4, 6, 8);
    let x = rng.h(s * g.voxels() * c, 1.0);
    let got = r::maxpool2(&x, s, [4, 6, 8], c);
    let hv = g.half().voxels();
    for sm in 0..s {
        let want = nn::pool::reference(&x[sm * g.voxels() * c..][..g.voxels() * c], g, c);
        assert_eq!(&got[sm * hv * c..][..hv * c], &want[..]);
    }
}

#[test]
fn upconv_reference_matches_nn_reference() {
    let mut rng = Rng(19);
    let (s, cin, cout) = (2, 32, 16);
    let g = Grid::new(2, 3, 2);
    let x = rng.h(s * g.voxels() * cin, 1.0);
    let w = rng.h(cin * cout * 8, 0.3); // PyTorch [cin][cout][2][2][2]
    let bias = rng.h(cout, 0.3);
    let mut wk = vec![0.0; w.len()];
    for ci in 0..cin {
        for co in 0..cout {
            for o in 0..8 {
                wk[(o * cout + co) * cin + ci] = w[(ci * cout + co) * 8 + o];
            }
        }
    }
    let got = r::upconv2(&x, cin, &wk, &bias, cout, s, [2, 3, 2]);
    let ov = g.double().voxels();
    for sm in 0..s {
        let want: Vec<f32> = nn::upconv::reference(
            &x[sm * g.voxels() * cin..][..g.voxels() * cin],
            g,
            cin,
            &w,
            &bias,
            cout,
        )
        .into_iter()
        .map(round_f16)
        .collect();
        close(
            &got[sm * ov * cout..][..ov * cout],
            &want,
            1e-3,
            2e-3,
            "upconv",
        );
    }
}

#[test]
fn head_reference_matches_cpu_statistics_across_chunks() {
    let mut rng = Rng(23);
    let (c, v, n) = (16, 50, 7);
    let x = rng.h(n * v * c, 1.0);
    let w = rng.h(c, 0.8);
    let bias = 0.1;
    // Two chunks (4 + 3 samples) as the engine folds them.
    let mut st = r::HeadState::default();
    r::head_accumulate(&x[..4 * v * c], c, &w, bias, 0.5, 4, &mut st);
    r::head_accumulate(&x[4 * v * c..], c, &w, bias, 0.5, 3, &mut st);
    let out = r::head_finalize(&st, 0.5);
    let mut region = 0;
    for i in 0..v {
        let ps: Vec<f32> = (0..n)
            .map(|sm| {
                let px = &x[(sm * v + i) * c..][..c];
                nn::head::sigmoid(px.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + bias)
            })
            .collect();
        let want = lungseg::mc::voxel_stats(&ps);
        assert!((out.mean[i] - want.mean).abs() < 1e-5);
        assert!((out.variance[i] - want.variance).abs() < 1e-5);
        assert!((out.entropy[i] - want.entropy).abs() < 1e-4);
        assert!((out.mutual_info[i] - want.mutual_info).abs() < 1e-4, "{i}");
        region += usize::from(want.any_foreground);
    }
    assert_eq!(out.sums[1] as usize, region);
}

/// The reference head's mask rows are the bits `p >= 0.5` of its own probabilities (each
/// sample's, from a one-sample fold: its mean), for a chunk after earlier samples, at an odd
/// voxel count (70: a partial u64 word, so words 2 and 3 hold 6 voxels and padding), p = 0.5
/// included.
#[test]
fn head_reference_masks_are_the_bits_of_its_probabilities() {
    let mut rng = Rng(29);
    let (c, v) = (8, 70);
    let words = lungseg::cuda::launch::head_mask_words(v);
    assert_eq!(words, 4);
    let w = rng.h(c, 0.8);
    let bias = 0.0;
    let first = rng.h(2 * v * c, 1.0);
    let mut chunk = rng.h(3 * v * c, 1.0);
    // Voxel 3 of every sample has logit 0: p = 0.5 exactly, which is foreground.
    for s in 0..3 {
        chunk[(s * v + 3) * c..][..c].fill(0.0);
    }
    let mut st = r::HeadState::default();
    r::head_accumulate(&first, c, &w, bias, 0.5, 2, &mut st);
    let rows = r::head_accumulate(&chunk, c, &w, bias, 0.5, 3, &mut st);
    assert_eq!(rows.len(), 3 * words);
    let mut ones = 0;
    for (s, row) in rows.chunks_exact(words).enumerate() {
        let mut alone = r::HeadState::default();
        r::head_accumulate(
            &chunk[s * v * c..(s + 1) * v * c],
            c,
            &w,
            bias,
            0.5,
            1,
            &mut alone,
        );
        for i in 0..words * 32 {
            let bit = row[i / 32] >> (i % 32) & 1 == 1;
            let want = i < v && alone.mean[i] >= 0.5;
            assert_eq!(bit, want, "sample {s} voxel {i}");
            assert!(i != 3 || (alone.mean[i] == 0.5 && bit));
            ones += usize::from(bit);
        }
    }
    assert!(ones > 0 && ones < 3 * v, "{ones}");
}

fn cpu_engine(
    model: &lungseg::model::Model,
    input: &[f32],
    seed: u64,
    n: u32,
) -> ([Vec<f32>; 4], lungseg::mc::PatchSummary) {
    let v = input.len();
    let (mut a, mut b, mut c, mut d) = (vec![0.0; v], vec![0.0; v], vec![0.0; v], vec![0.0; v]);
    let s = predict_uncertainty(
        model,
        input,
        &McOptions {
            n_samples: n,
            seed,
            threads: 1,
            review_threshold: None,
            review_score: None,
        },
        UncertaintyMaps {
            mean: Some(&mut a),
            variance: Some(&mut b),
            entropy: Some(&mut c),
            mutual_info: Some(&mut d),
        },
    )
    .unwrap();
    ([a, b, c, d], s)
}

/// The whole GPU launch plan, executed with the kernel references, against the CPU engine with
/// identical masks: the same tolerances the GPU test uses (max ≤ 1e-2, mean ≤ 1e-3).
fn plan_matches_cpu_engine(
    model: &lungseg::model::Model,
    input: &[f32],
    seed: u64,
    n: u32,
    chunk: usize,
) {
    let (maps, summary) = cpu_engine(model, input, seed, n);
    let got = run_reference(model, input, seed, n, chunk, true);
    for (name, g, w) in [
        ("mean", &got.mean, &maps[0]),
        ("variance", &got.variance, &maps[1]),
        ("entropy", &got.entropy, &maps[2]),
        ("mutual_info", &got.mutual_info, &maps[3]),
    ] {
        let max = max_abs_diff(g, w);
        let mean = g
            .iter()
            .zip(w.iter())
            .map(|(a, b)| f64::from((a - b).abs()))
            .sum::<f64>()
            / g.len() as f64;
        eprintln!("{name}: max {max:.2e} mean {mean:.2e}");
        assert!(max <= 1e-2 && mean <= 1e-3, "{name}: max {max} mean {mean}");
    }
    let fg = got.mean.iter().filter(|&&m| m >= 0.5).count() as u64;
    assert!(
        (fg as i64 - summary.foreground_voxels as i64).abs()
            <= 2 + summary.foreground_voxels as i64 / 100
    );
}

#[test]
fn reference_plan_matches_cpu_engine_channel_dropout() {
    let m = fixture_model("small");
    let input = read_f32("small.input.f32");
    plan_matches_cpu_engine(&m, &input, 0x1234_5678_9abc_def0, 5, 2);
}

#[test]
fn reference_plan_matches_cpu_engine_element_dropout() {
    let m = fixture_model("small_f16_element");
    let input = read_f32("small_f16_element.input.f32");
    plan_matches_cpu_engine(&m, &input, 99, 4, 3);
}

#[test]
fn reference_plan_matches_cpu_engine_dropout_in_some_levels() {
    for (name, seed) in [("small_levels", 3), ("small_element_levels", 11)] {
        let m = fixture_model(name);
        let input = read_f32(&format!("{name}.input.f32"));
        plan_matches_cpu_engine(&m, &input, seed, 4, 3);
    }
    // Dropout in the bottleneck only: the CPU engine computes the whole encoder above it once
    // per patch and keeps its skips across the samples.
    let cfg = r#"{"channels":[4,8,8,12],"patch_size":[16,16,16],"dropout":{"p":0.3,"kind":"channel","levels":[3]}}"#;
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    assert_eq!(m.config().shared_levels(), 3);
    let mut rng = Rng(9);
    let input: Vec<f32> = (0..4096).map(|_| rng.f() * 1000.0 - 200.0).collect();
    plan_matches_cpu_engine(&m, &input, 5, 4, 4);
}

#[test]
fn reference_plan_matches_cpu_engine_gpu_shaped_model() {
    // Channels that the CUDA kernels accept (multiples of 16), three levels.
    let cfg =
        r#"{"channels":[16,32,48],"patch_size":[8,8,8],"dropout":{"p":0.25,"kind":"channel"}}"#;
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    assert!(lungseg::cuda::weights::unsupported_reason(&m).is_none());
    let mut rng = Rng(5);
    let input: Vec<f32> = (0..512).map(|_| rng.f() * 1000.0 - 200.0).collect();
    plan_matches_cpu_engine(&m, &input, 7, 3, 2);
    // Deterministic pass (no dropout) against lungseg::mc::predict.
    let mut prob = vec![0.0; 512];
    lungseg::mc::predict(&m, &input, &mut prob, 1).unwrap();
    let det = run_reference(&m, &input, 0, 1, 1, false);
    assert!(max_abs_diff(&det.mean, &prob) <= 1e-2);
}

/// Channel counts that are not multiples of 16 (the default model's 8 at level 0; 12 and 24
/// here) run on the CUDA kernels as stored channels padded with zeros: the layouts put each
/// source's channels at its stored offset, zeros elsewhere, and the whole plan still matches
/// the CPU engine (both decoder sources padded: skip columns 0..12, upsampled 16..28).
#[test]
fn channels_off_the_tensor_core_grid_are_padded_with_zeros() {
    use lungseg::cuda::weights::{stored_channels, unsupported_reason, GpuWeights};
    for ch in ["[8,16,32,64,128]", "[4,8,16]", "[12,24]"] {
        let cfg = format!(r#"{{"channels":{ch},"patch_size":[16,16,16]}}"#);
        let m = lungseg::model::Model::from_bytes(&synth_model_bytes(&cfg)).unwrap();
        assert_eq!(unsupported_reason(&m), None, "{ch}");
    }
    assert_eq!(
        [4, 8, 12, 16, 24, 64].map(stored_channels),
        [16, 16, 16, 16, 32, 64]
    );
    let cfg = r#"{"channels":[12,24],"patch_size":[8,8,8],"dropout":{"p":0.25,"kind":"channel"}}"#;
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    let w = GpuWeights::new(&m);
    assert_eq!(w.first_w.len(), 32 * 16);
    assert_eq!((w.first_b.len(), w.head_w.len()), (16, 16));
    assert!(w.first_b[12..]
        .iter()
        .chain(&w.head_w[12..])
        .all(|&v| v == 0.0));
    assert!(w.head_w[..12].iter().any(|&v| v != 0.0));
    // enc.0.conv2, enc.1.conv1, enc.1.conv2, dec.0.conv1, dec.0.conv2; up[0]: 24 -> 12.
    let shapes: Vec<(usize, usize)> = w.convs.iter().map(|c| (c.cin, c.cout)).collect();
    assert_eq!(shapes, [(16, 16), (16, 32), (32, 32), (32, 16), (16, 16)]);
    assert_eq!((w.ups[0].cin, w.ups[0].cout), (32, 16));
    let dec1 = &w.convs[3];
    for co in 0..16 {
        for t in 0..27 {
            let row = &dec1.w[(co * 27 + t) * 32..][..32];
            let pad = |k: usize| (12..16).contains(&k) || k >= 28 || co >= 12;
            assert!(row.iter().enumerate().all(|(k, &v)| !pad(k) || v == 0.0));
            if co < 12 {
                assert!(row[..12].iter().chain(&row[16..28]).any(|&v| v != 0.0));
            }
        }
    }
    assert!(dec1.bias[12..].iter().all(|&v| v == 0.0));
    let up = &w.ups[0];
    for (i, &v) in up.w.iter().enumerate() {
        let (ci, co) = (i % 32, i / 32 % 16);
        assert!(ci < 24 && co < 12 || v == 0.0, "up weight {i}");
    }
    let plan = Plan::new(&m);
    assert!(plan.bufs.iter().all(|b| b.c % 16 == 0));
    let mut rng = Rng(3);
    let input: Vec<f32> = (0..512).map(|_| rng.f() * 1000.0 - 200.0).collect();
    plan_matches_cpu_engine(&m, &input, 17, 4, 3);
}

#[test]
fn plan_computes_the_dropout_free_encoder_levels_once() {
    use lungseg::cuda::plan::Op;
    let every = r#"{"channels":[16,32,64,128,256]}"#;
    let some =
        r#"{"channels":[16,32,64,128,256],"dropout":{"p":0.2,"kind":"channel","levels":[2,3,4]}}"#;
    let me = lungseg::model::Model::from_bytes(&synth_model_bytes(every)).unwrap();
    let ms = lungseg::model::Model::from_bytes(&synth_model_bytes(some)).unwrap();
    let (pe, ps) = (Plan::new(&me), Plan::new(&ms));
    // Dropout everywhere: only the first layer's convolution is shared (layer 0 drops it).
    let once = |p: &Plan| p.ops.iter().filter(|o| p.runs_once(o)).count();
    assert_eq!(once(&pe), 1);
    // Levels 0 and 1 without dropout: conv_first, enc.0.conv2, pool, enc.1 (two convs) and
    // the pool into level 2 run once, first in the plan; no per-sample expansion of layer 0.
    assert_eq!(once(&ps), 6);
    assert!(ps.ops[..6].iter().all(|o| ps.runs_once(o)));
    assert!(!ps.ops.iter().any(|o| matches!(o, Op::Expand { .. })));
    for op in &ps.ops {
        if let Op::Conv {
            src0,
            src1,
            out,
            layer,
            ..
        } = *op
        {
            let level = lungseg::model::dropout::layer_level(5, layer as usize);
            // A shared output never comes from a layer with dropout, and a per-sample input
            // never feeds a shared output.
            if ps.bufs[out].shared {
                assert!(level < 2, "layer {layer}");
                assert!(ps.bufs[src0].shared && src1.is_none());
            }
        }
    }
    // The decoder reads the shared skips of levels 0 and 1 (batch stride 0).
    let shared_skips = ps
        .ops
        .iter()
        .filter(|o| matches!(**o, Op::Conv { src0, src1: Some(_), .. } if ps.bufs[src0].shared))
        .count();
    assert_eq!(shared_skips, 2);
    assert!(ps.workspace_bytes(20) < pe.workspace_bytes(20));
}

#[test]
fn plan_has_the_documented_dropout_layers_and_no_in_place_launch() {
    let cfg = r#"{"channels":[16,32,64,128,256]}"#;
    let m = lungseg::model::Model::from_bytes(&synth_model_bytes(cfg)).unwrap();
    let plan = Plan::new(&m);
    let mut layers = Vec::new();
    for op in &plan.ops {
        match *op {
            lungseg::cuda::plan::Op::Expand { src, out, layer } => {
                assert_ne!(src, out);
                layers.push(layer);
            }
            lungseg::cuda::plan::Op::Conv {
                src0,
                src1,
                out,
                layer,
                ..
            } => {
                assert!(src0 != out && src1 != Some(out));
                layers.push(layer);
            }
            _ => {}
        }
    }
    assert_eq!(layers, (0..18).collect::<Vec<u32>>());
    // Default model, MC-20 in one chunk: the workspace fits the 1 GiB goal with the weights.
    assert!(
        plan.workspace_bytes(20) < 900 << 20,
        "{}",
        plan.workspace_bytes(20) >> 20
    );
}

/// A model whose BN-folded weights fp16 cannot hold is refused by the CUDA backend before any
/// device work (the same check decides with or without a GPU), naming the layer; the same
/// model unmodified is accepted (`reference_plan_matches_cpu_engine_gpu_shaped_model`).
#[test]
fn weights_beyond_fp16_are_refused_with_the_layer_named() {
    let cfg =
        r#"{"channels":[16,32,48],"patch_size":[8,8,8],"dropout":{"p":0.25,"kind":"channel"}}"#;
    let mut tensors = common::synth_tensors(&[16, 32, 48]);
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "enc.1.conv2.weight")
        .expect("tensor present");
    // Element 0 of an f32 tensor: 1e9 folds far beyond fp16's ±65504 (BN scales are O(1)).
    t.data[..4].copy_from_slice(&1e9f32.to_le_bytes());
    let bytes = common::write_safetensors(&tensors, &common::standard_meta(cfg));
    let m = lungseg::model::Model::from_bytes(&bytes).unwrap();
    let why = lungseg::cuda::weights::unsupported_reason(&m).expect("refused");
    assert!(why.contains("enc.1.conv2") && why.contains("fp16"), "{why}");
    let e = lungseg::cuda::engine::CudaEngine::new(&m, 0)
        .err()
        .expect("refused");
    assert_eq!(e.kind, lungseg::ErrorKind::Device);
    assert!(e.message.contains("enc.1.conv2"), "{e}");
}
