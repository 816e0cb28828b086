//! What a model's false positives cost over a set of negative patches
//! ([`PatchClass::Negative`](super::PatchClass)), and the rule that a choice may not make them
//! cost more: no more bad negative patches ([`super::is_bad`]) and no larger mean
//! false-positive volume. Both are needed: the count alone does not see a negative's blob
//! grow, the mean alone lets one large blob hide behind many clean patches. The mask-threshold
//! choice and `compare-reports --require-gain` apply the same rule.

/// Bad negative patches and the mean false-positive volume over the negative patches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NegativeCost {
    pub bad: usize,
    /// mm³; 0 without negative patches.
    pub mean_fp_mm3: f64,
}

impl NegativeCost {
    /// The cost of negative patches given as (false-positive volume in mm³, bad).
    pub fn of_patches(patches: impl IntoIterator<Item = (f64, bool)>) -> Self {
        let (mut n, mut bad, mut fp) = (0usize, 0usize, 0.0f64);
        for (v, b) in patches {
            n += 1;
            bad += usize::from(b);
            fp += v;
        }
        NegativeCost {
            bad,
            mean_fp_mm3: if n > 0 { fp / n as f64 } else { 0.0 },
        }
    }

    /// `self` costs no more than `bound` in either measure.
    pub fn within(&self, bound: &NegativeCost) -> bool {
        self.bad <= bound.bad && self.mean_fp_mm3 <= bound.mean_fp_mm3
    }
}
