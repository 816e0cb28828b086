//! Header + in-memory data files through the full reader: compression, HeaderSize, LIST,
//! patterns and path checks without touching the disk (framing: `lungseg::mhd::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::mhd::fuzzing::mhd_volume(data));
