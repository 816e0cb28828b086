//! Percentile bootstrap confidence intervals, resampled by scan.
//!
//! Patches cut from one scan share its anatomy, noise and reconstruction, so they are not
//! independent: resampling patches would understate the spread. Each resample draws the
//! scans (groups) with replacement and takes every patch of each drawn scan, as often as the
//! scan was drawn. The interval is the 2.5 and 97.5 percentiles of the statistic over the
//! resamples (percentile method, Efron & Tibshirani 1993, ch. 13); resamples on which the
//! statistic is undefined (e.g. no nodule patch drawn) are skipped and counted.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::MetricsError;

/// How many resamples, from which seed, at which coverage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub resamples: usize,
    pub seed: u64,
    /// Two-sided coverage, e.g. 0.95.
    pub level: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            resamples: 2000,
            seed: 0x5eed_b007,
            level: 0.95,
        }
    }
}

/// A statistic on all patches with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
    /// Scans (groups) the resamples were drawn from.
    pub groups: usize,
    /// Resamples on which the statistic was defined (the interval comes from these).
    pub resamples: usize,
}

/// Group index of each item, numbering distinct keys in order of first appearance.
pub fn group_ids<K: PartialEq>(keys: &[K]) -> Vec<usize> {
    let mut seen: Vec<&K> = Vec::new();
    keys.iter()
        .map(|k| match seen.iter().position(|s| *s == k) {
            Some(g) => g,
            None => {
                seen.push(k);
                seen.len() - 1
            }
        })
        .collect()
}

/// `stat` on all items, and its percentile interval over resamples by group. `stat` gets the
/// item indices of a sample (repeated for groups drawn more than once) and returns `None`
/// where it is undefined. `None` when it is undefined on all items or on every resample.
pub fn bootstrap_by_group<F>(
    group: &[usize],
    cfg: &BootstrapConfig,
    stat: F,
) -> Result<Option<Interval>, MetricsError>
where
    F: Fn(&[usize]) -> Option<f64>,
{
    if cfg.resamples == 0 || !(cfg.level > 0.0 && cfg.level < 1.0) {
        return Err(MetricsError::InvalidParameter(format!(
            "bootstrap needs resamples > 0 and 0 < level < 1, got {} and {}",
            cfg.resamples, cfg.level
        )));
    }
    let all: Vec<usize> = (0..group.len()).collect();
    let Some(estimate) = stat(&all) else {
        return Ok(None);
    };
    let n_groups = group.iter().max().map_or(0, |&g| g + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, &g) in group.iter().enumerate() {
        members[g].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut values = Vec::with_capacity(cfg.resamples);
    let mut sample = Vec::with_capacity(group.len());
    for _ in 0..cfg.resamples {
        sample.clear();
        for _ in 0..n_groups {
            sample.extend_from_slice(&members[rng.random_range(0..n_groups)]);
        }
        if let Some(v) = stat(&sample).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return Ok(None);
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - cfg.level) / 2.0;
    Ok(Some(Interval {
        estimate,
        lo: quantile(&values, tail),
        hi: quantile(&values, 1.0 - tail),
        level: cfg.level,
        groups: n_groups,
        resamples: values.len(),
    }))
}

/// Linear-interpolation quantile (numpy's default) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// Mean of `value` over the items of `sample` that `keep` accepts; `None` if there are none.
pub fn mean_where(
    sample: &[usize],
    keep: impl Fn(usize) -> bool,
    value: impl Fn(usize) -> f64,
) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for &i in sample.iter().filter(|&&i| keep(i)) {
        s += value(i);
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}
