//! `tfe-run inspect`: what a model takes, gives and uses, before running it.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::Format;
use super::args::InspectArgs;
use crate::error::exit;
use crate::import::{self, Feed, Graph, is_supported};
use crate::tensor::Tensor;
use crate::tfpb::NodeExt;

pub fn run(args: &InspectArgs) -> Result<u8> {
    let graph = Graph::load(&args.model)?;
    let output = graph.output(args.output_node.as_deref())?;
    let used = graph.data_ancestors(output);
    let placeholders = import::placeholders(&graph, &used)?;
    let histogram = graph.op_histogram(Some(&used));
    let unsupported: Vec<String> = used
        .iter()
        .map(|&i| &graph.nodes[i])
        .filter(|n| !is_supported(&n.op))
        .map(|n| format!("{} `{}`", n.op, n.name))
        .collect();
    // Parameters as Keras counts them: every float constant the output depends on.
    let mut parameters = 0usize;
    for &i in &used {
        let n = &graph.nodes[i];
        if n.op == "Const"
            && let Ok(Tensor::Float(t)) = n.get_attr_tensor("value")
        {
            parameters += t.len();
        }
    }
    // Try the plan with every unknown dimension set to 1 (a batch of one).
    let feeds: BTreeMap<String, Feed> = placeholders
        .iter()
        .filter_map(|p| {
            let shape = p.shape.as_ref()?.iter().map(|d| d.unwrap_or(1)).collect();
            Some((p.name.clone(), Feed { shape, source: format!("a batch of 1 for `{}`", p.name) }))
        })
        .collect();
    let plan = if unsupported.is_empty() {
        Some(import::build_plan(&graph, output, &feeds).map_err(|e| format!("{e:#}")))
    } else {
        None
    };

    let mut out = String::new();
    match args.format {
        Format::Text => {
            out.push_str(&format!("model: {}\n", args.model.display()));
            out.push_str(&format!("nodes: {} ({} used by the output)\n", graph.nodes.len(), used.len()));
            out.push_str("inputs:\n");
            for p in &placeholders {
                out.push_str(&format!("  {}  {}  {}\n", p.name, p.dtype_name(), p.shape_text()));
            }
            out.push_str(&format!("output: {}\n", graph.nodes[output].name));
            out.push_str("ops used by the output:\n");
            let width = histogram.keys().map(String::len).max().unwrap_or(0);
            for (op, count) in &histogram {
                let status = if is_supported(op) { "supported" } else { "UNSUPPORTED" };
                out.push_str(&format!("  {op:<width$}  {count:>4}  {status}\n"));
            }
            out.push_str(&format!("parameters: {parameters}\n"));
            match &plan {
                Some(Ok(plan)) => {
                    let weights: usize = plan.weights().map(|(_, v)| v.len()).sum();
                    out.push_str(&format!(
                        "plan (batch of 1): {} steps, {} weight tensors ({weights} values), output shape {:?}\n",
                        plan.steps.len(),
                        plan.weights().count(),
                        plan.output_value().shape
                    ));
                    if args.plan {
                        out.push_str(&plan.describe());
                    }
                }
                Some(Err(e)) => out.push_str(&format!("plan (batch of 1): not possible: {e}\n")),
                None => out.push_str(&format!("unsupported nodes: {}\n", unsupported.join(", "))),
            }
        }
        Format::Json => {
            let inputs: Vec<_> = placeholders
                .iter()
                .map(|p| json!({"name": p.name, "dtype": p.dtype_name(), "shape": p.shape.as_ref().map(|d| d.iter().map(|x| x.map(|n| n as i64).unwrap_or(-1)).collect::<Vec<_>>())}))
                .collect();
            let ops: Vec<_> = histogram
                .iter()
                .map(|(op, count)| json!({"op": op, "count": count, "supported": is_supported(op)}))
                .collect();
            let plan_json = match &plan {
                Some(Ok(p)) => {
                    json!({"ok": true, "steps": p.steps.len(), "weight_values": p.weights().map(|(_, v)| v.len()).sum::<usize>(), "output_shape": p.output_value().shape})
                }
                Some(Err(e)) => json!({"ok": false, "error": e}),
                None => json!({"ok": false, "error": "unsupported ops"}),
            };
            let doc = json!({
                "model": args.model.display().to_string(),
                "nodes": graph.nodes.len(),
                "nodes_used": used.len(),
                "inputs": inputs,
                "output": graph.nodes[output].name,
                "ops": ops,
                "unsupported": unsupported,
                "parameters": parameters,
                "plan": plan_json,
            });
            out.push_str(&serde_json::to_string_pretty(&doc).expect("JSON of plain values"));
            out.push('\n');
        }
    }
    super::write_stdout(&out)?;
    Ok(if unsupported.is_empty() { exit::OK } else { exit::UNSUPPORTED })
}
