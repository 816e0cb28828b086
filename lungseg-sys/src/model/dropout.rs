//! Dropout-layer numbering (`docs/model-format.md`) and which layers drop: the one definition
//! the CPU engine, the CUDA plan and the trainer's parity tests share.
//!
//! Two dropout layers per block, in execution order: encoder level `l` has layers `2l`,
//! `2l + 1`; the decoder continues from the deepest level up. A layer's number is the second
//! word of its Philox counter, so it must never change for an existing model file.

use super::config::ModelConfig;

/// Dropout layer of encoder level `l` (`second`: after conv2, else after conv1).
pub fn enc_layer(l: usize, second: bool) -> u32 {
    (2 * l + usize::from(second)) as u32
}

/// Dropout layer of decoder level `l` of a `levels`-level network.
pub fn dec_layer(levels: usize, l: usize, second: bool) -> u32 {
    (2 * levels + 2 * (levels - 2 - l) + usize::from(second)) as u32
}

/// The U-Net level (its channel count) of dropout layer `k`.
pub fn layer_level(levels: usize, k: usize) -> usize {
    if k < 2 * levels {
        k / 2
    } else {
        levels - 2 - (k - 2 * levels) / 2
    }
}

/// U-Net levels whose blocks apply dropout (bit `l` = level `l`; at most 8 levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelSet(pub u8);

impl LevelSet {
    /// Every level: the meaning of a file without `dropout.levels`.
    pub const ALL: LevelSet = LevelSet(u8::MAX);

    pub fn contains(self, level: usize) -> bool {
        level < 8 && self.0 & (1 << level) != 0
    }

    /// The levels as listed in a model file (each `< 8`; the config check bounds them).
    pub fn from_levels(levels: &[usize]) -> Option<LevelSet> {
        levels.iter().try_fold(LevelSet(0), |s, &l| {
            (l < 8).then(|| LevelSet(s.0 | (1 << l)))
        })
    }
}

impl ModelConfig {
    /// Dropout layers in one forward pass: two per block, encoder and decoder.
    pub fn dropout_layers(&self) -> usize {
        4 * self.levels() - 2
    }

    /// The dropout probability of layer `k`: 0 where its level has no dropout.
    pub fn layer_p(&self, k: u32) -> f32 {
        if self
            .dropout
            .levels
            .contains(layer_level(self.levels(), k as usize))
        {
            self.dropout.p
        } else {
            0.0
        }
    }

    /// Leading U-Net levels without dropout, at most `levels − 1`: their encoder blocks give
    /// every MC sample the same output, so the CPU engine computes them once per patch.
    pub fn shared_levels(&self) -> usize {
        let drops = |l: usize| self.dropout.p > 0.0 && self.dropout.levels.contains(l);
        (0..self.levels() - 1).take_while(|&l| !drops(l)).count()
    }

    /// Whether layer `k` drops anything (p > 0 at its level).
    pub fn layer_drops(&self, k: u32) -> bool {
        self.layer_p(k) > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_covers_every_layer_once_in_execution_order() {
        let levels = 4;
        let mut seen = Vec::new();
        for l in 0..levels {
            seen.push((enc_layer(l, false), l));
            seen.push((enc_layer(l, true), l));
        }
        for l in (0..levels - 1).rev() {
            seen.push((dec_layer(levels, l, false), l));
            seen.push((dec_layer(levels, l, true), l));
        }
        for (i, &(k, l)) in seen.iter().enumerate() {
            assert_eq!(k as usize, i, "layers are numbered in execution order");
            assert_eq!(layer_level(levels, i), l, "layer {i}");
        }
    }

    #[test]
    fn layer_p_is_zero_outside_the_listed_levels() {
        let cfg = ModelConfig::from_json(
            r#"{"channels":[4,8,16],"patch_size":[8,8,8],"dropout":{"p":0.3,"levels":[1,2]}}"#,
        )
        .unwrap();
        let p: Vec<f32> = (0..cfg.dropout_layers() as u32)
            .map(|k| cfg.layer_p(k))
            .collect();
        // enc 0, enc 1, enc 2 (bottleneck), dec 1, dec 0.
        assert_eq!(p, [0.0, 0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.0, 0.0]);
        let all = ModelConfig::from_json(r#"{"channels":[4,8],"patch_size":[8,8,8]}"#).unwrap();
        assert!((0..all.dropout_layers() as u32).all(|k| all.layer_p(k) == 0.2));
    }
}
