//! `tfe-run inspect`: what a model takes, gives and uses, before running it.

use anyhow::Result;
use serde_json::json;

use super::Format;
use super::args::InspectArgs;
use crate::error::exit;
use crate::frontend::{self, Feed, OpCount};

pub fn run(args: &InspectArgs) -> Result<u8> {
    // Try the plan with every unknown dimension set to 1 (a batch of one).
    let loaded = frontend::load(&args.model, args.output_node.as_deref(), |report| {
        Ok(report
            .placeholders
            .iter()
            .filter_map(|p| {
                let shape = p.shape.as_ref()?.iter().map(|d| d.unwrap_or(1)).collect();
                Some((p.name.clone(), Feed { shape, source: format!("a batch of 1 for `{}`", p.name) }))
            })
            .collect())
    })?;
    let report = &loaded.report;
    let placeholders = &report.placeholders;
    let unsupported: Vec<String> = report.unsupported.iter().map(|o| o.to_string()).collect();
    let parameters = report.parameters;
    let plan =
        if unsupported.is_empty() { Some(loaded.plan.as_ref().map_err(|e| format!("{:#}", e.error()))) } else { None };

    let mut out = String::new();
    match args.format {
        Format::Text => {
            out.push_str(&format!("model: {}\n", args.model.display()));
            out.push_str(&format!("nodes: {} ({} used by the output)\n", report.nodes, report.nodes_used));
            out.push_str("inputs:\n");
            for p in placeholders {
                out.push_str(&format!("  {}  {}  {}\n", p.name, p.dtype_name(), p.shape_text()));
            }
            out.push_str(&format!("output: {}\n", report.output));
            out.push_str("ops used by the output:\n");
            let width = report.ops.iter().map(|o| o.op_type.len()).max().unwrap_or(0);
            for OpCount { op_type: op, count, supported } in &report.ops {
                let status = if *supported { "supported" } else { "UNSUPPORTED" };
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
            let ops: Vec<_> = (report.ops.iter())
                .map(|o| json!({"op": o.op_type, "count": o.count, "supported": o.supported}))
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
                "nodes": report.nodes,
                "nodes_used": report.nodes_used,
                "inputs": inputs,
                "output": report.output,
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
