//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", Random123) and
//! the dropout masks built from it.
//!
//! Counter-based, so a mask bit is a pure function of (seed, MC sample, dropout layer, index):
//! the same on any thread count, in any evaluation order, and on the GPU.
//!
//! Mask layout (documented in `docs/model-format.md`): key = the caller's 64-bit seed
//! (`k0` = low 32 bits, `k1` = high 32 bits); counter = `[sample, layer, index_lo, index_hi]`
//! where `index` is the channel (channel dropout) or the element index `c·D·H·W + (z·H + y)·W + x`
//! of one sample in PyTorch's NCDHW order (element dropout). A unit is kept iff output word 0
//! `≥ round(p·2³²)`, compared as integers so CPU and GPU agree to the bit.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// One Philox4x32-10 block: 10 rounds, the key bumped by (W0, W1) between rounds.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Dropout keep/drop decisions for one (seed, sample, layer), as a pure function of the index.
#[derive(Clone, Copy, Debug)]
pub struct DropoutStream {
    key: [u32; 2],
    sample: u32,
    layer: u32,
    /// Keep iff word 0 ≥ threshold; `u64` so that p = 1 (threshold 2³²) drops everything.
    threshold: u64,
}

impl DropoutStream {
    pub fn new(seed: u64, sample: u32, layer: u32, p: f32) -> Self {
        DropoutStream {
            key: [seed as u32, (seed >> 32) as u32],
            sample,
            layer,
            threshold: keep_threshold(p),
        }
    }

    /// Whether unit `index` survives dropout.
    #[inline]
    pub fn keep(&self, index: u64) -> bool {
        let ctr = [self.sample, self.layer, index as u32, (index >> 32) as u32];
        u64::from(philox4x32_10(ctr, self.key)[0]) >= self.threshold
    }
}

/// `round(p·2³²)` for p in [0, 1], computed in f64 (exact for every f32 p).
pub fn keep_threshold(p: f32) -> u64 {
    let p = f64::from(p).clamp(0.0, 1.0);
    (p * 4_294_967_296.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random123_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn threshold_edges() {
        assert_eq!(keep_threshold(0.0), 0);
        assert_eq!(keep_threshold(1.0), 1 << 32);
        assert_eq!(keep_threshold(0.5), 1 << 31);
        let s = DropoutStream::new(7, 0, 0, 0.0);
        assert!((0..1000).all(|i| s.keep(i)));
        let s = DropoutStream::new(7, 0, 0, 1.0);
        assert!((0..1000).all(|i| !s.keep(i)));
    }

    #[test]
    fn keep_rate_matches_p() {
        let s = DropoutStream::new(0x1234_5678_9abc_def0, 3, 5, 0.2);
        let kept = (0..100_000u64).filter(|&i| s.keep(i)).count();
        assert!((kept as f64 / 100_000.0 - 0.8).abs() < 0.01, "{kept}");
    }
}
