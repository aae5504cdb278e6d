//! What the fuzz targets (`tests/fuzz/`) run, so that `cargo test` can run the
//! same code over the seed files and their mutations (`tests/fuzz_smoke.rs`).
//! Each function takes untrusted bytes and must return, never panic, hang or
//! exhaust memory; the assertions inside are properties of a successful parse.

use std::collections::BTreeMap;
use std::path::Path;

use crate::import::{self, Feed, Graph};
use crate::remote::{Control, Request};
use crate::transport::wire::Frame;

/// GraphDef bytes → decode → import → plan → (for small plans) plaintext run.
pub fn graphdef(bytes: &[u8]) {
    let Ok(graph) = Graph::decode(bytes) else { return };
    let Ok(output) = graph.output(None) else { return };
    let used = graph.data_ancestors(output);
    if import::check_supported(&graph, &used).is_err() {
        return;
    }
    let Ok(placeholders) = import::placeholders(&graph, &used) else { return };
    let mut feeds = BTreeMap::new();
    let mut inputs = BTreeMap::new();
    for p in placeholders {
        // Unknown dimensions (and an unknown rank) become small ones.
        let shape: Vec<usize> = p.shape.unwrap_or_default().iter().map(|d| d.unwrap_or(2)).collect();
        if crate::tensor::element_count(&shape).is_none_or(|n| n > 1 << 16) {
            return;
        }
        inputs.insert(p.name.clone(), ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&shape)));
        feeds.insert(p.name, Feed { shape, source: "fuzz".into() });
    }
    let Ok(plan) = import::build_plan(&graph, output, &feeds) else { return };
    if let Err(e) = plan.check_consistent() {
        panic!("the importer built an inconsistent plan: {e}");
    }
    let small = plan.values.iter().all(|v| v.len() <= 1 << 16) && plan.steps.len() <= 64;
    if small {
        let _ = crate::plaintext::run(&plan, &inputs);
    }
}

/// `.npy` bytes → an f32 input array, or an error.
pub fn npy(bytes: &[u8]) {
    if let Ok(array) = crate::npy::parse_input(bytes, "fuzz.npy") {
        assert!(array.iter().all(|v| v.is_finite()), "a non-finite input was accepted");
    }
}

/// What a party reads from the network: a frame body, a session control message
/// in it, and the plan a request carries, checked and scheduled as a server does
/// before running it.
pub fn wire(bytes: &[u8]) {
    let Ok(frame) = Frame::decode(bytes.to_vec()) else { return };
    assert_eq!(Frame::decode(frame.encode()).ok().as_ref(), Some(&frame), "frames do not round-trip");
    let Frame::Control(json) = frame else { return };
    // A server reads the version first; the rest is decoded whatever it says,
    // so that the decoders see every mutation.
    if let Some((version, _)) = crate::remote::declared_version(&json) {
        let _ = version.mismatch("the peer", "this server");
    }
    let Ok(Control::Hello { request: Some(request), .. }) = Control::decode(&json, "fuzz") else { return };
    let (plan, frac_bits, digest) = match *request {
        Request::Predict { plan, frac_bits, digest, .. } | Request::Deploy { plan, frac_bits, digest, .. } => {
            (plan, frac_bits, digest)
        }
        _ => return,
    };
    // A peer can send a plan with its right digest: check the plan whatever the digest says.
    let _ = crate::remote::check_plan_digest(&plan, frac_bits, &digest);
    if plan.check_consistent().is_ok()
        && let Ok(schedule) = crate::runtime::Schedule::new(&plan)
    {
        let _ = schedule.estimate_memory();
    }
}

/// Cluster files, as JSON (tf-encrypted's form) and as TOML.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    for name in ["cluster.json", "cluster.toml"] {
        if let Ok(c) = crate::cluster::Cluster::parse(text, Path::new(name)) {
            assert_eq!(c.addresses.len(), 3, "a cluster without its three listening parties was accepted");
        }
    }
}
