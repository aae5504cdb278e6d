//! GraphDef bytes → decode → import → plan → (small plans) plaintext run.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tfe_run::import::{self, Feed, Graph};

fuzz_target!(|bytes: &[u8]| {
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
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 1 << 16) {
            return;
        }
        inputs.insert(p.name.clone(), ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&shape)));
        feeds.insert(p.name, Feed { shape, source: "fuzz".into() });
    }
    let Ok(plan) = import::build_plan(&graph, output, &feeds) else { return };
    assert!(plan.check_consistent().is_ok(), "the importer built an inconsistent plan");
    let small = plan.values.iter().all(|v| v.len() <= 1 << 16) && plan.steps.len() <= 64;
    if small {
        let _ = tfe_run::plaintext::run(&plan, &inputs);
    }
});
