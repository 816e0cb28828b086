//! LUNA16 table reader (`lungseg-train`'s `prepare::luna`: annotations, excluded annotations,
//! candidates, points) on arbitrary bytes; body shared with the seed-replay test
//! (`lungseg-train/tests/data/prepare_luna.rs`). The reader file depends on `std`, `anyhow` and
//! `csv` only and is compiled here on its own, so fuzzing it does not build Burn.
#![no_main]

#[allow(dead_code)]
#[path = "../../lungseg-train/src/prepare/luna.rs"]
mod luna;

libfuzzer_sys::fuzz_target!(|data: &[u8]| luna::fuzz_one(data));
