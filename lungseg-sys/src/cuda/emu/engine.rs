//! The whole MC launch plan on the emulated device: what [`CudaEngine::run`] launches, from
//! the same [`PlanLaunches`], with every workspace buffer NaN-poisoned instead of zeroed so a
//! read of something no kernel wrote shows up in the result.
//!
//! [`CudaEngine::run`]: crate::cuda::engine::CudaEngine::run

use std::collections::HashMap;

use half::f16;

use super::{BufId, EmuDevice, Order};
use crate::cuda::launch::{head_finalize_blocks, ConvShape, PlanLaunches, Slot};
use crate::cuda::plan::{ChunkDrop, Plan};
use crate::cuda::reference::HeadOut;
use crate::cuda::weights::GpuWeights;
use crate::model::{DropoutKind, Network};

/// One MC call to emulate.
#[derive(Clone, Copy, Debug)]
pub struct EmuRun<'a> {
    pub patch_hu: &'a [f32],
    pub seed: u64,
    pub n_samples: u32,
    /// The first sample's index in the seed's MC sequence (0 for a whole call).
    pub sample0: u32,
    /// Samples per batch chunk (the workspace holds this many).
    pub chunk: usize,
    /// `false`: one deterministic pass.
    pub dropout: bool,
    pub order: Order,
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Uploads the weights, runs every chunk and the finalize, reads the maps and summary sums.
pub fn run(dev: &mut EmuDevice, model: &Network, r: &EmuRun<'_>) -> Result<HeadOut, String> {
    let plan = Plan::new(model);
    let wts = GpuWeights::new(model);
    let cfg = model.config();
    let shape = |c: &crate::cuda::weights::ConvW| ConvShape {
        cin: c.cin,
        cout: c.cout,
    };
    let convs: Vec<ConvShape> = wts.convs.iter().map(shape).collect();
    let ups: Vec<ConvShape> = wts.ups.iter().map(shape).collect();
    let v: usize = plan.grids[0].iter().product();
    if r.patch_hu.len() != v {
        return Err(format!(
            "patch has {} voxels, the plan {v}",
            r.patch_hu.len()
        ));
    }
    let mut slots: HashMap<Slot, BufId> = HashMap::new();
    for b in 0..plan.bufs.len() {
        slots.insert(Slot::Act(b), dev.poisoned(plan.buf_len(b, r.chunk) * 2)?);
    }
    slots.insert(Slot::Hu, dev.upload(&f32_bytes(r.patch_hu))?);
    slots.insert(Slot::FirstW, dev.upload(&f32_bytes(&wts.first_w))?);
    slots.insert(Slot::FirstB, dev.upload(&f32_bytes(&wts.first_b))?);
    for (i, c) in wts.convs.iter().enumerate() {
        slots.insert(Slot::ConvW(i), dev.upload(&f16_bytes(&c.w))?);
        slots.insert(Slot::ConvB(i), dev.upload(&f32_bytes(&c.bias))?);
    }
    for (i, u) in wts.ups.iter().enumerate() {
        slots.insert(Slot::UpW(i), dev.upload(&f16_bytes(&u.w))?);
        slots.insert(Slot::UpB(i), dev.upload(&f32_bytes(&u.bias))?);
    }
    slots.insert(Slot::HeadW, dev.upload(&f32_bytes(&wts.head_w))?);
    for s in [Slot::Mean, Slot::M2, Slot::SumH, Slot::AnyFg] {
        slots.insert(s, dev.poisoned(v * 4)?);
    }
    for k in 0..4 {
        slots.insert(Slot::Map(k), dev.poisoned(v * 4)?);
    }
    slots.insert(
        Slot::Partials,
        dev.poisoned(head_finalize_blocks(v) * 6 * 8)?,
    );

    let launches = PlanLaunches {
        plan: &plan,
        convs: &convs,
        ups: &ups,
        hu_window: cfg.hu_window,
        head_bias: wts.head_b,
    };
    let element = cfg.dropout.kind == DropoutKind::Element;
    let mut done = 0u32;
    while done < r.n_samples {
        let s = r.chunk.min((r.n_samples - done) as usize);
        let drop = r.dropout.then_some(ChunkDrop {
            seed: r.seed,
            p: cfg.dropout.p,
            element,
            sample0: r
                .sample0
                .checked_add(done)
                .ok_or("the sample index overflows u32")?,
        });
        for op in &plan.ops {
            if let Some(l) = launches.op(op, s, drop, done) {
                dev.launch(&l.map(|slot| slots[&slot]), r.order)?;
            }
        }
        done += s as u32;
    }
    dev.launch(&launches.finalize(r.n_samples).map(|s| slots[&s]), r.order)?;
    let mut maps = Vec::new();
    for k in 0..4 {
        maps.push(f32s(&dev.read(slots[&Slot::Map(k)])?));
    }
    let partials = dev.read(slots[&Slot::Partials])?;
    let mut sums = [0f64; 6];
    for row in partials.chunks_exact(48) {
        for (k, s) in sums.iter_mut().enumerate() {
            *s += f64::from_le_bytes(row[8 * k..8 * k + 8].try_into().expect("8 bytes"));
        }
    }
    for id in slots.into_values() {
        dev.free(id)?;
    }
    let [mean, variance, entropy, mutual_info]: [Vec<f32>; 4] = maps.try_into().expect("four maps");
    Ok(HeadOut {
        mean,
        variance,
        entropy,
        mutual_info,
        sums,
    })
}

/// The kernel sources, emulated, as the backend's accelerator: the launches of one-sample runs
/// that the CUDA engine's `pass` makes, through the self-check at open and the prediction
/// calls.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::cpu::SampleDrop;
    use crate::error::{Error, Result};
    use crate::mc::{self, McOptions, UncertaintyMaps};
    use crate::model::{Device, Model, ModelOptions};
    use crate::predict::route::Accelerator;
    use crate::test_common as common;

    struct Emulated {
        dev: Mutex<EmuDevice>,
        model: Model,
    }

    impl Accelerator for Emulated {
        fn name(&self) -> &str {
            "emulated CUDA"
        }

        fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()> {
            let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            let (seed, sample0) = drop.map_or((0, 0), |d| (d.seed, d.sample));
            let r = EmuRun {
                patch_hu,
                seed,
                n_samples: 1,
                sample0,
                chunk: 1,
                dropout: drop.is_some(),
                order: super::super::Order::Forward,
            };
            let out = run(&mut dev, &self.model, &r).map_err(Error::device)?;
            crate::backend::cuda::one_sample_map(out.mean, prob)
        }
    }

    /// `$CARGO_TARGET_DIR/tmp/cuda-emu`, where `tests/cuda_emu.rs` builds the same emulator.
    fn emulator() -> std::path::PathBuf {
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().join("tmp/cuda-emu");
        super::super::build(&target, &super::super::BuildOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn mc_mean(m: &Model, hu: &[f32]) -> (Vec<f32>, mc::PatchSummary) {
        let mut mean = vec![0f32; hu.len()];
        let o = McOptions {
            n_samples: 3,
            seed: 77,
            threads: 1,
            ..McOptions::default()
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut mean),
            ..UncertaintyMaps::default()
        };
        let s = mc::predict_uncertainty(m, hu, &o, maps).unwrap();
        (mean, s)
    }

    #[test]
    fn the_emulated_kernels_pass_the_self_check_and_serve_the_backend() {
        let cfg =
            r#"{"channels":[16,32],"patch_size":[8,8,8],"dropout":{"p":0.25,"kind":"channel"}}"#;
        let bytes = common::synth_model_bytes(cfg);
        let exe = emulator();
        let opener = |_: &Network, _: u32| -> std::result::Result<Box<dyn Accelerator>, String> {
            Ok(Box::new(Emulated {
                dev: Mutex::new(EmuDevice::spawn(&exe)?),
                model: Model::from_bytes(&bytes).map_err(|e| e.to_string())?,
            }))
        };
        let opts = ModelOptions {
            device: Device::Cuda,
            ..ModelOptions::default()
        };
        let m = Model::from_bytes_on(&bytes, &opts, &opener).unwrap();
        let r = m.device();
        assert_eq!((r.device, r.name.as_str()), (Device::Cuda, "emulated CUDA"));
        let cpu = Model::from_bytes(&bytes).unwrap();
        let hu: Vec<f32> = (0..512)
            .map(|i| ((i * 37) % 1400) as f32 - 1000.0)
            .collect();
        let (mean, s) = mc_mean(&m, &hu);
        let (want_mean, want) = mc_mean(&cpu, &hu);
        let diff = mean
            .iter()
            .zip(&want_mean)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-2, "{diff}");
        assert_eq!((s.n_samples, s.needs_review), (3, want.needs_review));
    }
}
