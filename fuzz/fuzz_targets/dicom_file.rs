//! One DICOM file's bytes through the element walk, the header reader (dicom-rs) and the pixel
//! decoder (body: `lungseg::volume::dicom::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lungseg::volume::dicom::fuzzing::dicom_file(data));
