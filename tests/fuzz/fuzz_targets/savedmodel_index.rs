//! A TensorBundle's `variables.index` bytes (see `tfe_run::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| tfe_run::fuzzing::savedmodel_index(bytes));
