//! Platt (and temperature) scaling of Monte-Carlo samples: `p_s' = σ(a·z_s + b)` for every
//! sample's logit `z_s`, with `(a, b)` minimising the negative log-likelihood of the MC mean
//! `m = (1/S) Σ_s p_s'` against the labels of held-out voxels.
//!
//! Scaling each sample (not the mean) keeps every MC measure consistent: variance, entropy,
//! mutual information and the structure-wise measures are computed from the calibrated
//! samples, exactly as the engine does after the map is folded into the 1×1×1 head
//! (`w' = a·w`, `bias' = a·bias + b`). Temperature scaling is the special case `b = 0`;
//! the bias is free because a segmentation network trained with a Dice term is not only
//! over-confident but shifted (it over-calls foreground at the border of a lesion).
//!
//! The fit is a damped Newton method on the exact gradient and Hessian of the mean NLL
//! (two parameters; the Hessian is replaced by its Gauss-Newton part when it is not
//! positive definite), with a backtracking line search, in f64.

use anyhow::{bail, ensure, Result};

/// Logits of the MC samples of labelled voxels, voxel-major: the samples of voxel `v` are
/// `logits[v * samples .. (v + 1) * samples]`. Each voxel stands for `weight` voxels (a
/// subsample of a larger region).
#[derive(Clone, Debug, PartialEq)]
pub struct SampleLogits {
    pub samples: usize,
    pub weight: f64,
    pub logits: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Default for SampleLogits {
    fn default() -> Self {
        SampleLogits::new(0)
    }
}

impl SampleLogits {
    pub fn new(samples: usize) -> Self {
        SampleLogits {
            samples,
            weight: 1.0,
            logits: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub fn voxels(&self) -> usize {
        self.labels.len()
    }

    /// Adds one voxel: its label and the logits of its `samples` MC samples.
    pub fn push(&mut self, label: bool, logits: impl IntoIterator<Item = f32>) {
        let before = self.logits.len();
        self.logits.extend(logits);
        debug_assert_eq!(self.logits.len() - before, self.samples);
        self.labels.push(u8::from(label));
    }

    fn voxel(&self, v: usize) -> (&[f32], bool) {
        let s = self.samples;
        (&self.logits[v * s..(v + 1) * s], self.labels[v] != 0)
    }
}

/// The logit of a probability the engine wrote (an f32 sigmoid): probabilities that rounded
/// to 0 or 1 are taken at the last representable step, ±16.6 (hence the probe model of
/// `probability`).
pub fn logit(p: f32) -> f32 {
    const EPS: f64 = 1.0 / (1u64 << 24) as f64;
    let p = f64::from(p).clamp(EPS, 1.0 - EPS);
    (p.ln() - (-p).ln_1p()) as f32
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A Platt map `z ↦ σ(a·z + b)` applied to every sample.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    /// The calibrated probability of a sample whose uncalibrated probability is `p` (0 < p < 1).
    pub fn map_probability(&self, p: f64) -> f64 {
        sigmoid(self.a * (p / (1.0 - p)).ln() + self.b)
    }

    /// The calibrated MC mean of one voxel's sample logits.
    pub fn mean_prob(&self, logits: &[f32]) -> f64 {
        let sum: f64 = logits
            .iter()
            .map(|&z| sigmoid(self.a * f64::from(z) + self.b))
            .sum();
        sum / logits.len() as f64
    }
}

/// Clamp for `ln m`: a voxel the map calls certain and wrong costs a large but finite loss.
const M_EPS: f64 = 1e-12;

/// Total weight of the voxels of `sets`.
fn total_weight(sets: &[&SampleLogits]) -> f64 {
    sets.iter().map(|d| d.weight * d.voxels() as f64).sum()
}

/// Weighted mean negative log-likelihood of the labels under the calibrated MC mean.
pub fn nll(sets: &[&SampleLogits], map: Platt) -> f64 {
    let w = total_weight(sets);
    if w <= 0.0 {
        return 0.0;
    }
    let mut total = 0.0;
    for data in sets {
        let sum: f64 = (0..data.voxels())
            .map(|v| {
                let (z, y) = data.voxel(v);
                let m = map.mean_prob(z).clamp(M_EPS, 1.0 - M_EPS);
                if y {
                    -m.ln()
                } else {
                    -(1.0 - m).ln()
                }
            })
            .sum();
        total += data.weight * sum;
    }
    total / w
}

/// Gradient and Hessian of the weighted mean NLL in `(a, b)`.
fn derivatives(sets: &[&SampleLogits], map: Platt) -> ([f64; 2], [[f64; 3]; 2]) {
    // hess[0] = exact [haa, hab, hbb]; hess[1] = its Gauss-Newton part.
    let (mut g, mut h, mut gn) = ([0.0; 2], [0.0; 3], [0.0; 3]);
    for data in sets {
        let (dg, dh, dgn) = set_derivatives(data, map);
        for i in 0..3 {
            h[i] += data.weight * dh[i];
            gn[i] += data.weight * dgn[i];
        }
        for i in 0..2 {
            g[i] += data.weight * dg[i];
        }
    }
    let n = total_weight(sets).max(f64::MIN_POSITIVE);
    let exact = [0, 1, 2].map(|i| (gn[i] + h[i]) / n);
    let gauss_newton = gn.map(|x| x / n);
    (g.map(|x| x / n), [exact, gauss_newton])
}

/// Unweighted sums over one set: gradient, second-derivative part, Gauss-Newton part.
fn set_derivatives(data: &SampleLogits, map: Platt) -> ([f64; 2], [f64; 3], [f64; 3]) {
    let (mut g, mut h, mut gn) = ([0.0; 2], [0.0; 3], [0.0; 3]);
    let s = data.samples as f64;
    for v in 0..data.voxels() {
        let (zs, y) = data.voxel(v);
        let (mut m, mut ma, mut mb) = (0.0, 0.0, 0.0);
        let (mut maa, mut mab, mut mbb) = (0.0, 0.0, 0.0);
        for &z in zs {
            let z = f64::from(z);
            let p = sigmoid(map.a * z + map.b);
            let d1 = p * (1.0 - p);
            let d2 = d1 * (1.0 - 2.0 * p);
            m += p;
            ma += d1 * z;
            mb += d1;
            maa += d2 * z * z;
            mab += d2 * z;
            mbb += d2;
        }
        let [m, ma, mb, maa, mab, mbb] = [m, ma, mb, maa, mab, mbb].map(|x| x / s);
        let m = m.clamp(M_EPS, 1.0 - M_EPS);
        // l = -y ln m - (1-y) ln(1-m)
        let (l1, l2) = if y {
            (-1.0 / m, 1.0 / (m * m))
        } else {
            (1.0 / (1.0 - m), 1.0 / ((1.0 - m) * (1.0 - m)))
        };
        g[0] += l1 * ma;
        g[1] += l1 * mb;
        gn[0] += l2 * ma * ma;
        gn[1] += l2 * ma * mb;
        gn[2] += l2 * mb * mb;
        h[0] += l1 * maa;
        h[1] += l1 * mab;
        h[2] += l1 * mbb;
    }
    (g, h, gn)
}

/// Solves the 2×2 system `H d = -g` when `H` is positive definite.
fn newton_step(g: [f64; 2], h: [f64; 3]) -> Option<[f64; 2]> {
    let det = h[0] * h[2] - h[1] * h[1];
    (h[0] > 0.0 && det > 1e-300 * h[0].abs().max(1.0)).then(|| {
        [
            -(h[2] * g[0] - h[1] * g[1]) / det,
            -(h[0] * g[1] - h[1] * g[0]) / det,
        ]
    })
}

/// What a fit found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlattFit {
    pub kind: MapKind,
    #[serde(flatten)]
    pub map: Platt,
    pub nll_before: f64,
    pub nll_after: f64,
    pub iterations: usize,
}

/// Bounds of the fitted map: a non-positive `a` would invert the network's ranking, and an
/// extreme one means the data cannot pin the map down.
pub const A_RANGE: (f64, f64) = (0.02, 50.0);
pub const B_RANGE: (f64, f64) = (-30.0, 30.0);

/// Which parameters a fit may move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    /// `a` only (`b = 0`, Guo et al. 2017): every sample keeps its own 0.5 boundary, so the
    /// samples' masks, and with them the structure-wise measures, do not change.
    Temperature,
    /// `a` and `b`: also moves the boundary.
    Platt,
}

impl MapKind {
    pub fn from_name(name: &str) -> Option<MapKind> {
        match name {
            "temperature" => Some(MapKind::Temperature),
            "platt" => Some(MapKind::Platt),
            _ => None,
        }
    }
}

/// The step of one Newton iteration for `kind` (the free parameters only).
fn step(kind: MapKind, g: [f64; 2], exact: [f64; 3], gauss_newton: [f64; 3]) -> [f64; 2] {
    match kind {
        MapKind::Platt => newton_step(g, exact)
            .or_else(|| newton_step(g, gauss_newton))
            .unwrap_or([-g[0], -g[1]]),
        MapKind::Temperature => {
            let h = if exact[0] > 0.0 {
                exact[0]
            } else {
                gauss_newton[0]
            };
            [if h > 0.0 { -g[0] / h } else { -g[0] }, 0.0]
        }
    }
}

/// Fits the map from the identity on the weighted voxels of `sets`. Refuses data without
/// both classes (the optimum is then at infinity) and a fit that leaves the bounds.
pub fn fit(sets: &[&SampleLogits], kind: MapKind) -> Result<PlattFit> {
    let (mut voxels, mut positives) = (0, 0);
    for data in sets {
        ensure!(data.samples > 0, "no MC samples to calibrate");
        ensure!(
            data.weight.is_finite() && data.weight > 0.0,
            "voxel weight {} must be positive",
            data.weight
        );
        ensure!(
            data.logits.len() == data.voxels() * data.samples,
            "{} logits for {} voxels of {} samples",
            data.logits.len(),
            data.voxels(),
            data.samples
        );
        voxels += data.voxels();
        positives += data.labels.iter().filter(|&&y| y != 0).count();
    }
    ensure!(
        positives > 0 && positives < voxels,
        "probability calibration needs foreground and background voxels ({positives} of \
         {voxels} are foreground)"
    );
    let nll_before = nll(sets, Platt::IDENTITY);
    let mut map = Platt::IDENTITY;
    let mut loss = nll_before;
    let mut iterations = 0;
    for it in 1..=100 {
        iterations = it;
        let (g, [exact, gauss_newton]) = derivatives(sets, map);
        let d = step(kind, g, exact, gauss_newton);
        let slope = g[0] * d[0] + g[1] * d[1];
        let mut t = 1.0;
        let mut accepted = None;
        while t > 1e-10 {
            let cand = Platt {
                a: (map.a + t * d[0]).clamp(A_RANGE.0, A_RANGE.1),
                b: (map.b + t * d[1]).clamp(B_RANGE.0, B_RANGE.1),
            };
            let l = nll(sets, cand);
            if l <= loss + 1e-4 * t * slope.min(0.0) {
                accepted = Some((cand, l));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, l)) = accepted else { break };
        let moved = (cand.a - map.a).abs() + (cand.b - map.b).abs();
        let gain = loss - l;
        map = cand;
        loss = l;
        if moved < 1e-7 || gain < 1e-12 * loss.max(1e-12) {
            break;
        }
    }
    if !(map.a > A_RANGE.0 && map.a < A_RANGE.1 && map.b > B_RANGE.0 && map.b < B_RANGE.1) {
        bail!(
            "the Platt fit reached its bounds (a = {}, b = {}): the calibration voxels do not \
             determine a map",
            map.a,
            map.b
        );
    }
    Ok(PlattFit {
        kind,
        map,
        nll_before,
        nll_after: loss,
        iterations,
    })
}
