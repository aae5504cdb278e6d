//! Cluster files, as JSON (tf-encrypted's form) and as TOML.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tfe_run::cluster::Cluster;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    for name in ["cluster.json", "cluster.toml"] {
        if let Ok(c) = Cluster::parse(text, Path::new(name)) {
            assert_eq!(c.addresses.len(), 3);
        }
    }
});
