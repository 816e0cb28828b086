//! The one-patch self-check an accelerator passes before a model uses it: one MC prediction
//! of a fixed synthetic patch on the CPU engine and on the device, compared by [`compare`].

use crate::cpu::CpuEngine;
use crate::error::{try_vec, Result};
use crate::model::{ModelConfig, Network};
use crate::predict::{self, McOptions, Route, Target, UncertaintyMaps};

use crate::predict::route::Accelerator;

/// Largest |Δ| of the mean probability a device may show against the CPU engine.
pub const MAX_ABS_DIFF: f32 = 1e-2;
/// Largest mean |Δ| of the mean probability over the patch.
pub const MEAN_ABS_DIFF: f64 = 1e-3;
/// MC samples of the check: more than one, so that dropout and the reduction take part.
const SAMPLES: u32 = 2;
const SEED: u64 = 0x5e1f_c4ec;

/// What the check compares of one prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckRun {
    pub mean: Vec<f32>,
    pub needs_review: bool,
}

/// Whether `device` agrees with `cpu`: probability max |Δ| ≤ [`MAX_ABS_DIFF`], mean |Δ| ≤
/// [`MEAN_ABS_DIFF`], the same review decision. A non-finite device value never agrees.
pub fn compare(cpu: &CheckRun, device: &CheckRun) -> std::result::Result<(), String> {
    if cpu.mean.len() != device.mean.len() || cpu.mean.is_empty() {
        return Err(format!(
            "the device returned {} probabilities, the CPU {}",
            device.mean.len(),
            cpu.mean.len()
        ));
    }
    let (mut max, mut at, mut sum) = (0f32, 0usize, 0f64);
    for (i, (&a, &b)) in cpu.mean.iter().zip(&device.mean).enumerate() {
        let d = (a - b).abs();
        if !d.is_finite() {
            return Err(format!("the device's probability at voxel {i} is {b}"));
        }
        if d > max {
            (max, at) = (d, i);
        }
        sum += f64::from(d);
    }
    let mean = sum / cpu.mean.len() as f64;
    if max > MAX_ABS_DIFF {
        return Err(format!(
            "probability differs from the CPU engine's by {max:e} at voxel {at} (at most \
             {MAX_ABS_DIFF:e} allowed)"
        ));
    }
    if mean > MEAN_ABS_DIFF {
        return Err(format!(
            "probability differs from the CPU engine's by {mean:e} on average (at most \
             {MEAN_ABS_DIFF:e} allowed)"
        ));
    }
    if cpu.needs_review != device.needs_review {
        return Err(format!(
            "the review decision differs: needs_review {} on the device, {} on the CPU",
            device.needs_review, cpu.needs_review
        ));
    }
    Ok(())
}

/// The check's patch: air at -800 HU with a +40 HU sphere of a sixth of the patch's smallest
/// side in radius at its centre (a solid nodule: foreground, background and a border).
pub fn synthetic_patch(cfg: &ModelConfig) -> Result<Vec<f32>> {
    let [nx, ny, nz] = cfg.patch_size;
    let mut hu = try_vec::<f32>(cfg.patch_voxels(), "self-check patch")?;
    let r = nx.min(ny).min(nz) as f64 / 6.0;
    let c = |n: usize| (n as f64 - 1.0) / 2.0;
    let mut i = 0;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d2 = (x as f64 - c(nx)).powi(2)
                    + (y as f64 - c(ny)).powi(2)
                    + (z as f64 - c(nz)).powi(2);
                hu[i] = if d2 <= r * r { 40.0 } else { -800.0 };
                i += 1;
            }
        }
    }
    Ok(hu)
}

fn check_run(network: &Network, route: Route<'_>, patch: &[f32]) -> Result<CheckRun> {
    let mut mean = try_vec::<f32>(patch.len(), "self-check map")?;
    let opts = McOptions {
        n_samples: SAMPLES,
        seed: SEED,
        ..McOptions::default()
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..UncertaintyMaps::default()
    };
    let s = predict::predict_uncertainty(Target { network, route }, patch, &opts, maps)?;
    Ok(CheckRun {
        mean,
        needs_review: s.needs_review,
    })
}

/// Runs the self-check of `device` against `cpu`; the reason when it fails.
pub(crate) fn run(
    network: &Network,
    cpu: &CpuEngine,
    device: &dyn Accelerator,
) -> std::result::Result<(), String> {
    let patch = synthetic_patch(network.config()).map_err(|e| e.to_string())?;
    let on_cpu = check_run(network, Route::Cpu(cpu), &patch)
        .map_err(|e| format!("self-check on the CPU failed: {e}"))?;
    let on_device = check_run(network, Route::Device(device), &patch)
        .map_err(|e| format!("self-check on {} failed: {e}", device.name()))?;
    compare(&on_cpu, &on_device).map_err(|why| format!("self-check on {}: {why}", device.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(mean: &[f32], needs_review: bool) -> CheckRun {
        CheckRun {
            mean: mean.to_vec(),
            needs_review,
        }
    }

    #[test]
    fn equal_runs_agree() {
        let a = run_of(&[0.1, 0.9, 0.5], true);
        assert_eq!(compare(&a, &a.clone()), Ok(()));
    }

    #[test]
    fn one_voxel_beyond_the_max_difference_fails() {
        let mut m = vec![0.5f32; 10_000];
        let cpu = run_of(&m, false);
        m[7] += 0.011;
        let why = compare(&cpu, &run_of(&m, false)).unwrap_err();
        assert!(why.contains("voxel 7"), "{why}");
        // Within the bound at one voxel (mean |Δ| 1e-6): agrees.
        m[7] = 0.5 + 0.009;
        assert_eq!(compare(&cpu, &run_of(&m, false)), Ok(()));
    }

    #[test]
    fn a_small_difference_everywhere_fails_on_the_mean() {
        let cpu = run_of(&[0.5; 100], false);
        let dev = run_of(&[0.5 + 2e-3; 100], false);
        let why = compare(&cpu, &dev).unwrap_err();
        assert!(why.contains("on average"), "{why}");
        let dev = run_of(&[0.5 + 5e-4; 100], false);
        assert_eq!(compare(&cpu, &dev), Ok(()));
    }

    #[test]
    fn another_review_decision_fails() {
        let why = compare(&run_of(&[0.2; 4], true), &run_of(&[0.2; 4], false)).unwrap_err();
        assert!(why.contains("review decision"), "{why}");
    }

    #[test]
    fn non_finite_or_missing_device_values_fail() {
        let cpu = run_of(&[0.2, 0.3], false);
        assert!(compare(&cpu, &run_of(&[0.2, f32::NAN], false)).is_err());
        assert!(compare(&cpu, &run_of(&[0.2, f32::INFINITY], false)).is_err());
        assert!(compare(&cpu, &run_of(&[0.2], false)).is_err());
        assert!(compare(&run_of(&[], false), &run_of(&[], false)).is_err());
    }

    #[test]
    fn the_synthetic_patch_has_a_nodule_and_air() {
        let cfg = ModelConfig::default();
        let p = synthetic_patch(&cfg).unwrap();
        assert_eq!(p.len(), cfg.patch_voxels());
        let nodule = p.iter().filter(|&&v| v == 40.0).count();
        assert!(nodule > 1000 && nodule < p.len() / 10, "{nodule}");
        let [nx, ny, _] = cfg.patch_size;
        let centre = (cfg.patch_size[2] / 2) * ny * nx + (ny / 2) * nx + nx / 2;
        assert_eq!(p[centre], 40.0);
        assert_eq!(p[0], -800.0);
    }
}
