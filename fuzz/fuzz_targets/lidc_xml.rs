//! LIDC-IDRI reader-XML parser (`lungseg-train`'s `prepare::lidc::xml`) on arbitrary bytes; body
//! shared with the seed-replay test (`lungseg-train/tests/data/prepare_lidc.rs`). The parser file
//! depends on `std` and `roxmltree` only and is compiled here on its own, so fuzzing it does
//! not build Burn.
#![no_main]

#[allow(dead_code)]
#[path = "../../lungseg-train/src/prepare/lidc/xml.rs"]
mod xml;

libfuzzer_sys::fuzz_target!(|data: &[u8]| xml::fuzz_one(data));
