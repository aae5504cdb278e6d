//! Network bytes: frames, control messages, the plan a request carries (see `tfe_run::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| tfe_run::fuzzing::wire(bytes));
