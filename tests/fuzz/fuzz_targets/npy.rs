//! `.npy` bytes as an input (see `tfe_run::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| tfe_run::fuzzing::npy(bytes));
