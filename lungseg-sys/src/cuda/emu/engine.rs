//! The whole MC launch plan on the emulated device: what [`CudaEngine::run`] and
//! [`CudaEngine::run_mc`] launch, from the same [`PlanLaunches`], with every workspace buffer
//! NaN-poisoned instead of zeroed so a read of something no kernel wrote shows up in the
//! result.
//!
//! [`CudaEngine::run`]: crate::cuda::engine::CudaEngine::run
//! [`CudaEngine::run_mc`]: crate::cuda::engine::CudaEngine::run_mc

use std::collections::HashMap;

use half::f16;

use super::{BufId, EmuDevice, Order};
use crate::cuda::launch::{head_finalize_blocks, head_mask_words, ConvShape, PlanLaunches, Slot};
use crate::cuda::plan::{chunk_schedule, mirror_patch, ChunkDrop, ChunkHook, McState, Plan};
use crate::cuda::reference::HeadOut;
use crate::cuda::weights::GpuWeights;
use crate::error::{Error, Result as LsResult};
use crate::model::Network;
use crate::predict::Flip;

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
    /// The model's `test_time_flips` for a whole MC call; 1 for single passes.
    pub flips: u32,
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

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One model's weights and workspace on the emulated device, named by [`Slot`].
struct Loaded {
    plan: Plan,
    convs: Vec<ConvShape>,
    ups: Vec<ConvShape>,
    head_b: f32,
    slots: HashMap<Slot, BufId>,
}

impl Loaded {
    /// Uploads `model`'s weights and `r`'s patch; every workspace buffer NaN-poisoned.
    fn new(dev: &mut EmuDevice, model: &Network, r: &EmuRun<'_>) -> Result<Loaded, String> {
        let plan = Plan::new(model);
        let wts = GpuWeights::new(model);
        let shape = |c: &crate::cuda::weights::ConvW| ConvShape {
            cin: c.cin,
            cout: c.cout,
        };
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
        slots.insert(Slot::Masks, dev.poisoned(r.chunk * head_mask_words(v) * 4)?);
        for k in 0..4 {
            slots.insert(Slot::Map(k), dev.poisoned(v * 4)?);
        }
        slots.insert(
            Slot::Partials,
            dev.poisoned(head_finalize_blocks(v) * 6 * 8)?,
        );
        Ok(Loaded {
            convs: wts.convs.iter().map(shape).collect(),
            ups: wts.ups.iter().map(shape).collect(),
            head_b: wts.head_b,
            plan,
            slots,
        })
    }

    fn launches<'a>(&'a self, model: &Network) -> PlanLaunches<'a> {
        PlanLaunches {
            plan: &self.plan,
            convs: &self.convs,
            ups: &self.ups,
            hu_window: model.config().hu_window,
            head_bias: self.head_b,
            mask_t: model.config().mask_threshold,
        }
    }

    /// Runs `r`'s samples chunk by chunk as `CudaEngine`'s `run_chunks` does (the patch,
    /// mirrored by the flip, written before each flip's first chunk): with a `hook`, asking
    /// it before each chunk and handing it the chunk's masks after.
    fn chunks(
        &mut self,
        dev: &mut EmuDevice,
        model: &Network,
        r: &EmuRun<'_>,
        mut hook: Option<&mut dyn ChunkHook>,
    ) -> LsResult<()> {
        let cfg = model.config();
        let words = head_mask_words(r.patch_hu.len());
        let mut mirrored = Vec::new();
        // `new` uploaded the patch as it is.
        let mut uploaded = Flip::NONE;
        for chunk in chunk_schedule(r.n_samples, r.chunk, r.flips) {
            let (done, s) = (chunk.done, chunk.s);
            if chunk.fresh && chunk.flip != uploaded {
                let hu = mirror_patch(r.patch_hu, chunk.flip, cfg.patch_size, &mut mirrored)?;
                let id = dev.upload(&f32_bytes(hu)).map_err(Error::device)?;
                let old = self.slots.insert(Slot::Hu, id).expect("the patch slot");
                dev.free(old).map_err(Error::device)?;
                uploaded = chunk.flip;
            }
            if let Some(h) = hook.as_deref_mut() {
                h.before(done, s as u32)?;
            }
            let sample0 = r
                .sample0
                .checked_add(done)
                .ok_or_else(|| Error::invalid("the sample index overflows u32"))?;
            let drop = r.dropout.then(|| ChunkDrop::new(cfg, r.seed, sample0));
            let launches = self.launches(model);
            for op in &self.plan.ops {
                if let Some(l) = launches.op(op, &chunk, drop) {
                    dev.launch(&l.map(|slot| self.slots[&slot]), r.order)
                        .map_err(Error::device)?;
                }
            }
            if let Some(h) = hook.as_deref_mut() {
                let rows = u32s(&dev.read(self.slots[&Slot::Masks]).map_err(Error::device)?);
                h.masks(&rows[..s * words])?;
            }
        }
        Ok(())
    }

    fn read_f32(&self, dev: &mut EmuDevice, slot: Slot) -> LsResult<Vec<f32>> {
        Ok(f32s(&dev.read(self.slots[&slot]).map_err(Error::device)?))
    }

    fn free(self, dev: &mut EmuDevice) -> LsResult<()> {
        for id in self.slots.into_values() {
            dev.free(id).map_err(Error::device)?;
        }
        Ok(())
    }
}

/// Uploads the weights, runs every chunk and the finalize, reads the maps and summary sums.
pub fn run(dev: &mut EmuDevice, model: &Network, r: &EmuRun<'_>) -> Result<HeadOut, String> {
    let mut loaded = Loaded::new(dev, model, r)?;
    loaded.chunks(dev, model, r, None).map_err(|e| e.message)?;
    let slots = &loaded.slots;
    let launches = loaded.launches(model);
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
    loaded.free(dev).map_err(|e| e.message)?;
    let [mean, variance, entropy, mutual_info]: [Vec<f32>; 4] = maps.try_into().expect("four maps");
    Ok(HeadOut {
        mean,
        variance,
        entropy,
        mutual_info,
        sums,
    })
}

/// What `CudaEngine::run_mc` does, emulated: `r`'s samples in chunks of `r.chunk`, `hook` asked
/// before each and handed its masks after; the running statistics at the end (no finalize).
/// Emulator failures are `Device` errors.
pub fn run_mc(
    dev: &mut EmuDevice,
    model: &Network,
    r: &EmuRun<'_>,
    hook: &mut dyn ChunkHook,
) -> LsResult<McState> {
    let mut loaded = Loaded::new(dev, model, r).map_err(Error::device)?;
    loaded.chunks(dev, model, r, Some(hook))?;
    let state = McState {
        n: r.n_samples,
        mean: loaded.read_f32(dev, Slot::Mean)?,
        m2: loaded.read_f32(dev, Slot::M2)?,
        sum_h: loaded.read_f32(dev, Slot::SumH)?,
    };
    loaded.free(dev)?;
    Ok(state)
}

/// The kernel sources, emulated, as the backend's accelerator: the launches the CUDA engine
/// makes for `pass` (one-sample runs) and for `mc` (chunked runs with the sample masks),
/// through the self-check at open and the prediction calls.
#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::{Mutex, OnceLock};

    use super::*;
    use crate::backend::self_check::{compare, CheckRun};
    use crate::cpu::SampleDrop;
    use crate::error::{ErrorKind, Result};
    use crate::mc::{self, McOptions, PatchSummary, RunControl, UncertaintyMaps};
    use crate::model::{Device, Model, ModelOptions};
    use crate::predict::route::{Accelerator, McJob, SampleHook};
    use crate::stats::masks::SampleMasks;
    use crate::stats::Stats;
    use crate::test_common as common;

    struct Emulated {
        dev: Mutex<EmuDevice>,
        model: Model,
        /// Samples per chunk of an MC call, as `CudaEngine::chunk`.
        chunk: usize,
    }

    impl Emulated {
        fn run(&self, r: &EmuRun<'_>) -> Result<HeadOut> {
            let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            run(&mut dev, &self.model, r).map_err(Error::device)
        }
    }

    impl Accelerator for Emulated {
        fn name(&self) -> &str {
            "emulated CUDA"
        }

        fn pass(&self, patch_hu: &[f32], drop: Option<SampleDrop>, prob: &mut [f32]) -> Result<()> {
            let (seed, sample0) = drop.map_or((0, 0), |d| (d.seed, d.sample));
            let out = self.run(&EmuRun {
                patch_hu,
                seed,
                n_samples: 1,
                sample0,
                chunk: 1,
                dropout: drop.is_some(),
                flips: 1,
                order: super::super::Order::Forward,
            })?;
            crate::backend::cuda::one_sample_map(out.mean, prob)
        }

        /// As `CudaEngine`'s: chunks of `chunk` samples, the host folding their masks.
        fn mc(&self, job: McJob<'_>, hook: &mut dyn SampleHook, stats: &mut Stats) -> Result<()> {
            let mut dev = self.dev.lock().unwrap_or_else(|e| e.into_inner());
            let r = EmuRun {
                patch_hu: job.patch_hu,
                seed: job.seed,
                n_samples: job.n_samples,
                sample0: 0,
                chunk: self.chunk,
                dropout: true,
                flips: job.flips,
                order: super::super::Order::Forward,
            };
            crate::backend::cuda::mc_in_chunks(job, hook, stats, |fold| {
                run_mc(&mut dev, &self.model, &r, fold)
            })
        }
    }

    /// `$CARGO_TARGET_DIR/tmp/cuda-emu`, where `tests/cuda_emu.rs` builds the same emulator;
    /// built once for this module's tests.
    fn emulator() -> &'static std::path::PathBuf {
        static EXE: OnceLock<std::path::PathBuf> = OnceLock::new();
        EXE.get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let target = exe.ancestors().nth(3).unwrap().join("tmp/cuda-emu");
            super::super::build(&target, &super::super::BuildOptions::default())
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    const CFG: &str =
        r#"{"channels":[16,32],"patch_size":[8,8,8],"dropout":{"p":0.25,"kind":"channel"}}"#;
    /// Dropout mild enough that some voxels are foreground in every sample, and a mask
    /// threshold other than 0.5, which the device's masks must follow.
    const CFG_MILD: &str = r#"{"channels":[16,32],"patch_size":[8,8,8],"dropout":{"p":0.05,"kind":"element"},"mask_threshold":0.4}"#;

    /// The model of `cfg` on the emulated kernels (chunks of `chunk` samples), and on the CPU.
    fn open(cfg: &str, chunk: usize) -> (Model, Model) {
        let bytes = common::synth_model_bytes(cfg);
        let opener = |_: &Network, _: u32| -> std::result::Result<Box<dyn Accelerator>, String> {
            Ok(Box::new(Emulated {
                dev: Mutex::new(EmuDevice::spawn(emulator())?),
                model: Model::from_bytes(&bytes).map_err(|e| e.to_string())?,
                chunk,
            }))
        };
        let opts = ModelOptions {
            device: Device::Cuda,
            ..ModelOptions::default()
        };
        let m = Model::from_bytes_on(&bytes, &opts, &opener).unwrap();
        let r = m.device();
        assert_eq!((r.device, r.name.as_str()), (Device::Cuda, "emulated CUDA"));
        (m, Model::from_bytes(&bytes).unwrap())
    }

    fn patch() -> Vec<f32> {
        (0..512)
            .map(|i| ((i * 37) % 1400) as f32 - 1000.0)
            .collect()
    }

    fn mc_mean(m: &Model, hu: &[f32], n_samples: u32) -> (Vec<f32>, PatchSummary) {
        let mut mean = vec![0f32; hu.len()];
        let o = McOptions {
            n_samples,
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
        let (m, cpu) = open(CFG, 2);
        let hu = patch();
        let (mean, s) = mc_mean(&m, &hu, 3);
        let (want_mean, want) = mc_mean(&cpu, &hu, 3);
        let diff = mean
            .iter()
            .zip(&want_mean)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-2, "{diff}");
        assert_eq!((s.n_samples, s.needs_review), (3, want.needs_review));
    }

    /// [`CFG_MILD`] with 4 test-time flips.
    const CFG_MILD_FLIPS: &str = r#"{"channels":[16,32],"patch_size":[8,8,8],"dropout":{"p":0.05,"kind":"element"},"mask_threshold":0.4,"test_time_flips":4}"#;

    /// 7 samples in chunks of 3 (two whole chunks and a tail of one): the summary is the CPU
    /// engine's within the self-check's bounds, and the structure measures are those of the
    /// masks of the device's own per-sample maps (one-sample runs, folded on the host).
    #[test]
    fn an_mc_call_in_chunks_matches_the_cpu_and_the_masks_of_its_sample_maps() {
        chunked_mc_matches(CFG_MILD);
    }

    /// The same with test-time flips: the chunks are cut at each flip (samples 0..7 of 4
    /// flips: 2, 2, 2, 1), the patch uploaded mirrored and the head reading each sample
    /// mirrored back; the per-sample maps are mirrored on the host around one-sample runs.
    #[test]
    fn a_flipping_mc_call_in_chunks_matches_the_cpu_and_the_masks_of_its_sample_maps() {
        chunked_mc_matches(CFG_MILD_FLIPS);
    }

    fn chunked_mc_matches(cfg: &str) {
        let (m, cpu) = open(cfg, 3);
        let t = m.config().mask_threshold;
        let hu = patch();
        let n = 7;
        let (mean, s) = mc_mean(&m, &hu, n);
        let (want_mean, want) = mc_mean(&cpu, &hu, n);
        let run = |mean: &[f32], s: &PatchSummary| CheckRun {
            mean: mean.to_vec(),
            needs_review: s.needs_review,
        };
        compare(&run(&want_mean, &want), &run(&mean, &s)).unwrap();
        assert_eq!((s.n_samples, s.review_score), (n, want.review_score));

        let mut masks = SampleMasks::new(hu.len(), n as usize).unwrap();
        let mut prob = vec![0f32; hu.len()];
        for sample in 0..n {
            mc::predict_sample(
                &m,
                &hu,
                mc::SampleId {
                    seed: 77,
                    sample,
                    n_samples: n,
                },
                &mut prob,
                1,
            )
            .unwrap();
            masks.record(&prob, t);
        }
        for (i, _) in mean.iter().enumerate().filter(|(_, &p)| p >= t) {
            masks.mark_final(i);
        }
        let (got, exp) = (s.structure, masks.measures());
        // Samples that disagree somewhere, so the counts are not all trivially equal.
        assert!(
            exp.union_voxels > exp.intersection_voxels && exp.intersection_voxels > 0,
            "{exp:?}"
        );
        assert_eq!(
            (got.intersection_voxels, got.union_voxels, got.empty_samples),
            (exp.intersection_voxels, exp.union_voxels, exp.empty_samples)
        );
        assert_eq!(
            (got.sample_voxels_mean, got.sample_voxels_std),
            (exp.sample_voxels_mean, exp.sample_voxels_std)
        );
        assert_eq!((got.iou, got.volume_cv), (exp.iou, exp.volume_cv));
        assert_eq!(got.dice_agreement, exp.dice_agreement);
        assert_eq!(
            s.foreground_voxels,
            mean.iter().filter(|&&p| p >= t).count() as u64
        );
        // And the CPU's measures, from its own probabilities, are close.
        let cpu_s = want.structure;
        assert!(
            (got.dice_agreement - cpu_s.dice_agreement).abs() <= 0.02,
            "{got:?} {cpu_s:?}"
        );
        assert!((got.iou - cpu_s.iou).abs() <= 0.05, "{got:?} {cpu_s:?}");
    }

    /// Cancellation is asked before each chunk and progress reported after each.
    #[test]
    fn an_mc_call_in_chunks_reports_and_cancels_per_chunk() {
        let (m, _) = open(CFG, 2);
        let hu = patch();
        let o = McOptions {
            n_samples: 5,
            seed: 3,
            threads: 1,
            ..McOptions::default()
        };
        let seen = RefCell::new(Vec::new());
        let mut progress = |p: mc::Progress| seen.borrow_mut().push((p.done, p.total));
        let mut ctl = RunControl::default().with_progress(&mut progress);
        mc::predict_uncertainty_with(&m, &hu, &o, UncertaintyMaps::default(), &mut ctl).unwrap();
        assert_eq!(seen.take(), [(2, 5), (4, 5), (5, 5)]);
        // Cancelled once the first chunk is reported: the second chunk never runs.
        let cancel = || !seen.borrow().is_empty();
        let mut progress = |p: mc::Progress| seen.borrow_mut().push((p.done, p.total));
        let mut ctl = RunControl::default()
            .with_progress(&mut progress)
            .with_cancel(&cancel);
        let e = mc::predict_uncertainty_with(&m, &hu, &o, UncertaintyMaps::default(), &mut ctl)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cancelled);
        assert!(e.message.contains("after 2 of 5"), "{e}");
        assert_eq!(seen.take(), [(2, 5)]);
        assert_eq!(m.device().device, Device::Cuda, "a cancel is not a fault");
    }
}
