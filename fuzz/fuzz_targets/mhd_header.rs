//! MetaImage header parser on arbitrary bytes (body shared with the seed-replay test).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::mhd::fuzzing::mhd_header(data));
