//! Model files (safetensors + lungseg metadata) from arbitrary bytes; body shared with the
//! seed-replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::fuzzing::model_load(data));
