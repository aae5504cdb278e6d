//! `.npy` bytes → an f32 input array, or an error naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(array) = tfe_run::npy::parse_input(bytes, "fuzz.npy") {
        assert!(array.iter().all(|v| v.is_finite()));
    }
});
