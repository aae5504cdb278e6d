//! What the fuzz targets (`tests/fuzz/`) run, so that `cargo test` can run the
//! same code over the seed files and their mutations (`tests/fuzz_smoke.rs`).
//! Each function takes untrusted bytes and must return, never panic, hang or
//! exhaust memory; the assertions inside are properties of a successful parse.

use std::collections::BTreeMap;
use std::path::Path;

use crate::frontend::{self, Feed};
use crate::remote::{Control, Request};
use crate::transport::Party;
use crate::transport::wire::Frame;

/// GraphDef bytes → decode → import → plan → (for small plans) plaintext run.
pub fn graphdef(bytes: &[u8]) {
    model(bytes, "fuzz.pb");
}

/// ONNX bytes, the same way (the name only helps: the bytes decide the format).
pub fn onnx(bytes: &[u8]) {
    model(bytes, "fuzz.onnx");
}

fn model(bytes: &[u8], name: &str) {
    let mut inputs = BTreeMap::new();
    let Ok(loaded) = frontend::load_bytes(bytes, Path::new(name), None, |report| {
        let mut feeds = BTreeMap::new();
        for p in &report.placeholders {
            // Unknown dimensions (and an unknown rank) become small ones.
            let shape: Vec<usize> = p.shape.clone().unwrap_or_default().iter().map(|d| d.unwrap_or(2)).collect();
            if crate::tensor::element_count(&shape).is_none_or(|n| n > 1 << 16) {
                return Err(anyhow::anyhow!("an input too large to fuzz"));
            }
            inputs.insert(p.name.clone(), ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&shape)));
            feeds.insert(p.name.clone(), Feed { shape, source: "fuzz".into() });
        }
        Ok(feeds)
    }) else {
        return;
    };
    let Ok(plan) = loaded.plan else { return };
    if let Err(e) = plan.check_consistent() {
        panic!("the importer built an inconsistent plan: {e}");
    }
    let small = plan.values.iter().all(|v| v.len() <= 1 << 16) && plan.steps.len() <= 64;
    if small {
        let _ = crate::plaintext::run(&plan, &inputs);
    }
}

/// A TensorBundle's `variables.index` bytes → its table, header and entries,
/// then every tensor it lists (whose data shards are not there: each read must
/// fail cleanly, after the entry's own checks).
pub fn savedmodel_index(bytes: &[u8]) {
    let prefix = Path::new("/nonexistent/tfe-run-fuzz/variables/variables");
    let Ok(bundle) = frontend::savedmodel::bundle::Bundle::from_index(prefix, bytes) else { return };
    let keys: Vec<String> = bundle.keys().map(str::to_string).collect();
    for key in keys {
        assert!(bundle.tensor(&key, "fuzz").is_err(), "a tensor was read from a shard that does not exist");
    }
}

/// `.npy` bytes → an f32 input array, or an error.
pub fn npy(bytes: &[u8]) {
    if let Ok(array) = crate::npy::parse_input(bytes, "fuzz.npy") {
        assert!(array.iter().all(|v| v.is_finite()), "a non-finite input was accepted");
    }
}

/// What a party reads from the network: a frame body, the session control
/// message in it (every kind), and what it carries checked as its reader checks
/// it: a server's `prepare` for a driver's request (plans, training specs, data
/// set descriptions, names), the driver's for a server's answer (a deployed
/// plan, a data set's description, a report, a deployment).
pub fn wire(bytes: &[u8]) {
    let Ok(frame) = Frame::decode(bytes.to_vec()) else { return };
    assert_eq!(Frame::decode(frame.encode()).ok().as_ref(), Some(&frame), "frames do not round-trip");
    let Frame::Control(json) = frame else { return };
    // A server reads the version first; the rest is decoded whatever it says,
    // so that the decoders see every mutation.
    if let Some((version, _)) = crate::remote::declared_version(&json) {
        let _ = version.mismatch("the peer", "this server");
    }
    let Ok(control) = Control::decode(&json, "fuzz") else { return };
    match control {
        Control::Hello { request: Some(request), .. } => wire_request(*request),
        Control::Hello { request: None, .. } => {}
        Control::Ready { deployed, deployment, dataset, status, .. } => {
            if let Some(status) = status {
                // As `tfe-run status` prints a party's answer.
                let _ = crate::cli::status::table(&[(status.party, Ok(*status))]);
            }
            if let Some(program) = deployed {
                let _ = program.digest();
                wire_program(&program);
            }
            if let Some(d) = deployment {
                let _ = d.to_string();
            }
            if let Some(info) = dataset
                && info.check().is_ok()
            {
                let _ = info.bytes();
            }
        }
        Control::Done { report } => {
            if let Ok(outcome) = crate::runtime::assemble(vec![(Party::Server0, Ok(*report))], 1) {
                let _ = outcome.stats.dealer_bytes();
            }
        }
        Control::Refused { reason, .. } => {
            let _ = format!("server0 refused the session: {reason}");
        }
        Control::Prepared { deployment } | Control::Commit { deployment } => {
            let _ = deployment.to_string();
        }
    }
}

/// A driver's request, checked as a server's `prepare` checks it before any work.
fn wire_request(request: Request) {
    match request {
        Request::Predict { program, digest, .. } | Request::Deploy { program, digest, .. } => {
            // A peer can send a program with its right digest: check the program
            // whatever the digest says.
            let _ = crate::remote::check_program(&program, &digest);
            wire_program(&program);
        }
        Request::PredictDeployed { name, deployment, .. } => {
            let _ = format!("model `{name}` was redeployed: server1 now holds deployment {deployment}");
        }
        Request::Describe { name } | Request::DescribeData { name } => {
            let _ = format!("no model named `{name}` is deployed here");
        }
        Request::Train { spec } => {
            if spec.check().is_err() {
                return;
            }
            let _ = (spec.estimate_memory(), spec.largest_message(), spec.steps_per_epoch());
            if let Ok(bits) = spec.update_bits() {
                let _ = spec.update_factor(spec.batch_size, bits);
            }
            for &rows in &spec.owners {
                let info = crate::train::DatasetInfo::of_owner(&spec, rows);
                if info.check().is_ok() {
                    let _ = info.bytes();
                }
            }
            // The batches of an epoch hold every row index: only for small sets.
            if spec.rows() <= 1 << 12 {
                let batches = spec.epoch_batches(0);
                assert_eq!(batches.len(), spec.steps_per_epoch(), "an epoch has another number of batches than steps");
            }
        }
        Request::Contribute { info, .. } => {
            if info.check().is_ok() {
                let _ = info.bytes();
            }
        }
        Request::Status | Request::Standby => {}
    }
}

/// A program from the network, checked and sized as a server does.
fn wire_program(program: &crate::lower::Program) {
    if program.check().is_ok() {
        let _ = program.estimate_memory();
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
