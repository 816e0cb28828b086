//! A scan's identity, geometry and acquisition protocol: the cheap first draws, before any
//! voxel is drawn. Numbers and their sources: `docs/synth.md`.

use super::{stream, SynthConfig, FLIPPED, UID_PREFIX};
use lungseg::geometry::{Geometry, IDENTITY};
use lungseg::Result;
use rand::RngExt;

/// Reconstruction kernel: how much the in-plane point-spread function blurs and how the noise
/// is textured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Soft-tissue/standard kernel (B30f, GE STANDARD): broad PSF, smooth noise.
    Soft,
    /// Lung/bone kernel (B60f–B70f, GE LUNG/BONE): narrow PSF with edge overshoot, fine and
    /// much stronger noise.
    Sharp,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Soft => "soft",
            Kernel::Sharp => "sharp",
        }
    }
}

/// Tube output, as the noise level it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dose {
    Standard,
    Low,
    UltraLow,
}

impl Dose {
    pub fn name(self) -> &'static str {
        match self {
            Dose::Standard => "standard",
            Dose::Low => "low",
            Dose::UltraLow => "ultra-low",
        }
    }

    /// Noise σ (HU) of a 1 mm soft-kernel slice through an adult chest at this dose.
    pub fn sigma_1mm_soft(self) -> f64 {
        match self {
            Dose::Standard => 12.0,
            Dose::Low => 24.0,
            Dose::UltraLow => 45.0,
        }
    }
}

/// Everything about how a scan is acquired and stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acquisition {
    /// FWHM of the slice-sensitivity profile (mm): the nominal slice thickness.
    pub thickness_mm: f64,
    pub kernel: Kernel,
    pub dose: Dose,
    /// Noise σ (HU) of this scan: dose, kernel and thickness together.
    pub noise_sigma: f64,
    /// Value written outside the circular field of view (`None`: the scanner writes its
    /// reconstruction there, air).
    pub padding: Option<i16>,
    /// Pulmonary arteries and the heart are opacified by iodinated contrast.
    pub contrast: bool,
}

/// Per-scan draws: identity, geometry and acquisition.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPlan {
    pub seriesuid: String,
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub flipped: bool,
    /// World position of voxel (0, 0, 0) of the unflipped grid.
    pub origin_unflipped: [f64; 3],
    /// World position of the anatomy frame's origin (body axis in x/y, lowest slice in z).
    pub body: [f64; 3],
    pub acquisition: Acquisition,
}

impl ScanPlan {
    /// Draws the plan of scan `index` (deterministic in config, seed and index).
    pub fn draw(cfg: &SynthConfig, seed: u64, index: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = stream(seed, index, 0);
        let seriesuid = format!(
            "{UID_PREFIX}{}{}",
            rng.random_range(1..=9u8),
            (0..29)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect::<String>()
        );
        let sxy = rng.random_range(cfg.spacing_xy_mm.0..=cfg.spacing_xy_mm.1);
        let sz = rng.random_range(cfg.spacing_z_mm.0..=cfg.spacing_z_mm.1);
        let nz = ((cfg.z_extent_mm / sz).round() as usize).max(2);
        // A uniform draw (not `random_bool`, which may skip the RNG at p = 0 or 1) keeps the
        // later draws, and so the anatomy, independent of the flip fraction.
        let flipped = rng.random::<f64>() < cfg.flip_fraction;
        let half = (cfg.dims_xy - 1) as f64 * sxy / 2.0;
        let origin_unflipped = [
            -half + rng.random_range(-15.0..15.0),
            -half + rng.random_range(-15.0..15.0),
            rng.random_range(-400.0..-100.0),
        ];
        let fov = cfg.dims_xy as f64 * sxy;
        let body = [
            origin_unflipped[0] + half + rng.random_range(-0.03..0.03) * fov,
            origin_unflipped[1] + half + rng.random_range(-0.03..0.03) * fov,
            origin_unflipped[2],
        ];
        let acquisition = Acquisition::draw(&mut rng, cfg, sz);
        Ok(ScanPlan {
            seriesuid,
            dims: [cfg.dims_xy, cfg.dims_xy, nz],
            spacing: [sxy, sxy, sz],
            flipped,
            origin_unflipped,
            body,
            acquisition,
        })
    }

    /// The stored geometry: flipped scans run x and y backwards from the far corner, so every
    /// world point keeps its anatomy.
    pub fn geometry(&self) -> Result<Geometry> {
        let (origin, direction) = if self.flipped {
            let o = self.origin_unflipped;
            let far = |a: usize| o[a] + (self.dims[a] - 1) as f64 * self.spacing[a];
            ([far(0), far(1), o[2]], FLIPPED)
        } else {
            (self.origin_unflipped, IDENTITY)
        };
        Geometry::new(self.dims, self.spacing, origin, direction)
    }

    /// Anatomy frame → world mm.
    pub fn to_world(&self, p: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| p[i] + self.body[i])
    }

    /// Anatomy-frame position of voxel (0, 0, 0) of the unflipped grid.
    pub fn start(&self) -> [f64; 3] {
        std::array::from_fn(|i| self.origin_unflipped[i] - self.body[i])
    }
}

impl Acquisition {
    fn draw(rng: &mut impl rand::Rng, cfg: &SynthConfig, spacing_z: f64) -> Self {
        // Thickness ≥ spacing is overlapping reconstruction (the common case); below it, gaps.
        let thickness_mm = (spacing_z * rng.random_range(0.6..2.0)).clamp(0.6, 5.0);
        let kernel = if rng.random::<f64>() < 0.4 {
            Kernel::Sharp
        } else {
            Kernel::Soft
        };
        let dose = match rng.random_range(0..10) {
            0..=3 => Dose::Standard,
            4..=7 => Dose::Low,
            _ => Dose::UltraLow,
        };
        // Quantum noise: σ ∝ 1/√(photons) ∝ 1/√(thickness); sharp kernels pass ~2.5× more.
        let k = match kernel {
            Kernel::Soft => 1.0,
            Kernel::Sharp => 2.5,
        };
        let noise_sigma =
            cfg.noise_hu / 20.0 * dose.sigma_1mm_soft() * k / thickness_mm.sqrt().max(0.5);
        let padding = match rng.random_range(0..3) {
            0 => None,
            1 => Some(-2048),
            _ => Some(-3024),
        };
        Acquisition {
            thickness_mm,
            kernel,
            dose,
            noise_sigma,
            padding,
            contrast: rng.random::<f64>() < 0.3,
        }
    }
}
