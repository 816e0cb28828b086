//! Cross-crate integration tests live in `tests/tests/`: synthetic CT from `lungseg-train`
//! read, resampled and predicted on by `lungseg-sys` (Rust API and C ABI), with insta snapshots
//! of fixed outputs.
