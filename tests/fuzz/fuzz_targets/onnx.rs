//! ONNX bytes through import, plan and plaintext (see `tfe_run::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| tfe_run::fuzzing::onnx(bytes));
