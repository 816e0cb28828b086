//! Train/val/test assignment **by scan**: all patches of a seriesuid land in one split, so no
//! nodule is seen in training and again in testing.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};

use super::luna::ScanFile;

pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// How scans are assigned to splits.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitRule {
    /// Fractions (train, val, test) summing to 1. Scans are ordered by a seeded hash of their
    /// seriesuid and cut at the fractions (largest-remainder rounding, at least one scan in
    /// every split with a non-zero fraction when there are enough scans): exact proportions,
    /// deterministic, independent of folder order.
    Fractions([f64; 3]),
    /// LUNA16 folds: the subset numbers of (train, val, test); scans in other subsets are left out.
    Subsets([Vec<u32>; 3]),
}

impl Default for SplitRule {
    fn default() -> Self {
        SplitRule::Fractions([0.70, 0.15, 0.15])
    }
}

impl SplitRule {
    /// The default LUNA16 folds: subset0–6 train, subset7 val, subset8–9 test.
    pub fn default_subsets() -> Self {
        SplitRule::Subsets([(0..=6).collect(), vec![7], vec![8, 9]])
    }

    /// Parses `0.7,0.15,0.15` (or percentages `70,15,15`).
    pub fn parse_fractions(s: &str) -> Result<Self> {
        let v: Vec<f64> = s
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| {
                format!("split fractions '{s}': expected three numbers, e.g. 0.7,0.15,0.15")
            })?;
        ensure!(
            v.len() == 3,
            "split fractions '{s}': expected three numbers (train,val,test)"
        );
        let sum: f64 = v.iter().sum();
        ensure!(
            v.iter().all(|x| x.is_finite() && *x >= 0.0) && sum > 0.0,
            "split fractions '{s}' must be non-negative with a positive sum"
        );
        let scale = if (sum - 100.0).abs() < 1e-6 {
            100.0
        } else {
            1.0
        };
        ensure!(
            (sum / scale - 1.0).abs() < 1e-6,
            "split fractions '{s}' must sum to 1 (or 100)"
        );
        Ok(SplitRule::Fractions([
            v[0] / scale,
            v[1] / scale,
            v[2] / scale,
        ]))
    }

    /// Parses `train=0-6,val=7,test=8-9` (ranges and single subsets, `;`/`+` joins lists:
    /// `train=0-5+7`).
    pub fn parse_subsets(s: &str) -> Result<Self> {
        let mut folds: [Vec<u32>; 3] = Default::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, list) = part
                .split_once('=')
                .with_context(|| format!("subset folds '{s}': '{part}' is not split=subsets"))?;
            let Some(k) = SPLITS.iter().position(|n| *n == name.trim()) else {
                bail!(
                    "subset folds '{s}': unknown split '{}' (train, val, test)",
                    name.trim()
                );
            };
            for item in list.split(['+', ';']) {
                let item = item.trim();
                let num = |x: &str| {
                    x.trim().parse::<u32>().with_context(|| {
                        format!("subset folds '{s}': '{x}' is not a subset number")
                    })
                };
                match item.split_once('-') {
                    Some((a, b)) => folds[k].extend(num(a)?..=num(b)?),
                    None => folds[k].push(num(item)?),
                }
            }
        }
        let mut seen = BTreeMap::new();
        for (k, f) in folds.iter().enumerate() {
            for &n in f {
                if let Some(prev) = seen.insert(n, k) {
                    ensure!(
                        prev == k,
                        "subset folds '{s}': subset{n} is in both {} and {}",
                        SPLITS[prev],
                        SPLITS[k]
                    );
                }
            }
        }
        ensure!(
            !folds[0].is_empty(),
            "subset folds '{s}': no training subsets"
        );
        Ok(SplitRule::Subsets(folds))
    }

    /// The split of every scan (`None`: left out, a subset no fold names).
    pub fn assign(&self, scans: &[ScanFile], seed: u64) -> Vec<Option<&'static str>> {
        match self {
            SplitRule::Subsets(folds) => scans
                .iter()
                .map(|s| {
                    let n = s.subset?;
                    folds.iter().position(|f| f.contains(&n)).map(|k| SPLITS[k])
                })
                .collect(),
            SplitRule::Fractions(f) => {
                let counts = split_counts(scans.len(), *f);
                let mut order: Vec<usize> = (0..scans.len()).collect();
                order.sort_by_key(|&i| (uid_hash(&scans[i].seriesuid, seed), i));
                let mut out = vec![None; scans.len()];
                let mut it = order.into_iter();
                for (k, &c) in counts.iter().enumerate() {
                    for i in it.by_ref().take(c) {
                        out[i] = Some(SPLITS[k]);
                    }
                }
                out
            }
        }
    }
}

/// Scans per split: largest-remainder rounding of `n · f`, then every split with a non-zero
/// fraction gets at least one scan, taken from the largest, while that has more than one.
pub fn split_counts(n: usize, f: [f64; 3]) -> [usize; 3] {
    let exact: Vec<f64> = f.iter().map(|x| x * n as f64).collect();
    let mut c: [usize; 3] = std::array::from_fn(|k| exact[k].floor() as usize);
    let mut by_rem: Vec<usize> = (0..3).collect();
    by_rem
        .sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut left = n - c.iter().sum::<usize>();
    for &k in by_rem.iter().cycle().take(3 * 3) {
        if left == 0 {
            break;
        }
        if f[k] > 0.0 {
            c[k] += 1;
            left -= 1;
        }
    }
    for k in 0..3 {
        if f[k] > 0.0 && c[k] == 0 {
            let big = (0..3).max_by_key(|&j| c[j]).expect("three splits");
            if c[big] > 1 {
                c[big] -= 1;
                c[k] += 1;
            }
        }
    }
    c
}

/// FNV-1a of the seriesuid, mixed with the seed (splitmix64): stable across Rust versions and
/// platforms, unlike `DefaultHasher`.
pub fn uid_hash(uid: &str, seed: u64) -> u64 {
    let h = uid.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    splitmix(h ^ splitmix(seed))
}

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_and_cover_small_sets() {
        let f = [0.7, 0.15, 0.15];
        assert_eq!(split_counts(100, f), [70, 15, 15]);
        assert_eq!(split_counts(5, f), [3, 1, 1]);
        assert_eq!(split_counts(3, f), [1, 1, 1]);
        assert_eq!(split_counts(1, f), [1, 0, 0]);
        assert_eq!(split_counts(0, f), [0, 0, 0]);
        assert_eq!(split_counts(10, [1.0, 0.0, 0.0]), [10, 0, 0]);
        for n in 0..50 {
            assert_eq!(split_counts(n, f).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn parses_rules() {
        assert_eq!(
            SplitRule::parse_subsets("train=0-6,val=7,test=8-9").unwrap(),
            SplitRule::default_subsets()
        );
        assert_eq!(
            SplitRule::parse_fractions("70,15,15").unwrap(),
            SplitRule::Fractions([0.7, 0.15, 0.15])
        );
        let e = SplitRule::parse_subsets("train=0-6,val=6").unwrap_err();
        assert!(
            e.to_string().contains("subset6 is in both train and val"),
            "{e}"
        );
        assert!(SplitRule::parse_fractions("0.5,0.5").is_err());
        assert!(SplitRule::parse_subsets("dev=1").is_err());
    }
}
