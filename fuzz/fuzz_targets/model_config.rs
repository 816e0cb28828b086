//! Hostile model configs (and weight bytes) on a small valid model's tensors, through the
//! library's default limits; body and input framing shared with the seed-replay test.
#![no_main]

static MODEL: &[u8] = include_bytes!("../../lungseg-sys/tests/fixtures/small_f16_element.safetensors");

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::fuzzing::model_config(MODEL, data));
