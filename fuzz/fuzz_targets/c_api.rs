//! The model and patch C entry points with fuzzed sizes, options and values on a small valid
//! model; body shared with the seed-replay test.
#![no_main]

static MODEL: &[u8] = include_bytes!("../../lungseg-sys/tests/fixtures/small_f16_element.safetensors");

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::fuzzing::c_api(MODEL, data));
