//! `tfe-run inspect`: what a model takes, gives and uses, before running it.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::args::{InspectArgs, InspectFormat as Format};
use crate::error::exit;
use crate::frontend::{self, Feed, OpCount};
use crate::lower::{ClientFinal, Program};
use crate::ops::How;
use crate::plan::Plan;

/// How the steps planned from each model op run under Pond.
struct Secure {
    /// Per op type: each way its steps run (short label), with how many steps.
    by_op: BTreeMap<String, BTreeMap<&'static str, usize>>,
    /// Each distinct way, in full, with its step count, in order of first use.
    ways: Vec<(String, usize)>,
}

/// What the client does with the opened value, said as a way of running.
fn client_final(f: ClientFinal) -> &'static str {
    match f {
        ClientFinal::Softmax => "the client applies Softmax after opening (exact)",
        ClientFinal::Sigmoid => "the client applies Sigmoid after opening (exact)",
    }
}

fn label(how: &How) -> &'static str {
    match how {
        How::Local => "local",
        How::Scaled => "scaled",
        How::Product => "product",
        How::Comparison | How::ComparisonTruncation => "comparison",
        How::Approximation { .. } => "approximation",
    }
}

fn secure(plan: &Plan) -> Result<Secure> {
    let program: Program = crate::lower::lower(plan, Default::default())?;
    let mut by_op: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    let mut ways: Vec<(String, usize)> = Vec::new();
    let mut count = |op_type: &str, short: &'static str, full: String| {
        *by_op.entry(op_type.to_string()).or_default().entry(short).or_default() += 1;
        match ways.iter_mut().find(|(w, _)| *w == full) {
            Some((_, n)) => *n += 1,
            None => ways.push((full, 1)),
        }
    };
    for (step, kind) in program.plan.steps.iter().zip(&program.kinds) {
        let how = kind.how();
        count(&step.op_type, label(&how), how.to_string());
    }
    if let (Some(f), Some(step)) = (program.client_final, program.plan.steps.get(program.kinds.len())) {
        count(&step.op_type, "client", client_final(f).to_string());
    }
    Ok(Secure { by_op, ways })
}

/// `product 52, local 104`, or why there is no step.
fn summary(op: &str, ways: Option<&BTreeMap<&'static str, usize>>) -> String {
    match ways {
        Some(w) => w.iter().map(|(how, n)| format!("{how} {n}")).collect::<Vec<_>>().join(", "),
        None if matches!(op, "Placeholder" | "PlaceholderWithDefault") => "the client's input, secret-shared".into(),
        // Its steps are its body's ops, counted under theirs.
        None if matches!(op, "While" | "StatelessWhile") => "no step: unrolled at import (the body's ops)".into(),
        None => "no step: folded at import or pass-through".into(),
    }
}

pub fn run(args: &InspectArgs) -> Result<u8> {
    let inspection = report(args, &frontend::Source::Path(args.model.clone()))?;
    super::write_stdout(&inspection.text)?;
    if let Some(why) = &inspection.error {
        super::ui::error(why);
    }
    Ok(inspection.verdict)
}

/// What `inspect` prints and the exit code it ends with.
pub struct Inspection {
    /// The report, in `args.format`.
    pub text: String,
    /// The exit code a secure run of a batch of one would end with.
    pub verdict: u8,
    /// Why a plan or its secure program is not possible (printed on stderr).
    pub error: Option<String>,
}

/// The report of `inspect` on `model` (the file `args.model` names, or a
/// model's bytes), with the options of `args`.
pub fn report(args: &InspectArgs, model: &frontend::Source) -> Result<Inspection> {
    let public = args.public()?;
    // Try the plan with every unknown dimension set to 1 (a batch of one). As in
    // a run, a placeholder with a default (TF1's keep_prob) or fed a public number
    // is not the client's input: feeding it would make the verdict differ from
    // the run's.
    let loaded = frontend::load_source(model, args.choice(), &public, |report| {
        Ok(report
            .placeholders
            .iter()
            .filter(|p| !p.has_default && !public.contains_key(&p.name))
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
    let plan = if unsupported.is_empty() { Some(loaded.plan.as_ref().map_err(|e| e.error())) } else { None };
    let secure = match &plan {
        Some(Ok(plan)) => Some(secure(plan)),
        _ => None,
    };
    // The verdict is the run's: the exit code a secure run of a batch of one
    // would end with, from the first thing that would stop it.
    let verdict = match (&plan, &secure) {
        (None, _) => exit::UNSUPPORTED,
        (Some(Err(e)), _) => crate::error::exit_code_of(e, false),
        (_, Some(Err(e))) => crate::error::exit_code_of(e, false),
        (Some(Ok(_)), _) => exit::OK,
    };
    let by_op = |op: &str| match &secure {
        Some(Ok(s)) => Some(summary(op, s.by_op.get(op))),
        _ => None,
    };

    let mut out = String::new();
    match args.format {
        Format::Text => {
            out.push_str(&format!("model: {}\n", args.model.display()));
            if let Some(sm) = &loaded.saved_model {
                out.push_str(&saved_model_text(sm));
            }
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
                match by_op(op) {
                    Some(ways) => out.push_str(&format!("  {op:<width$}  {count:>4}  {status:<9}  {ways}\n")),
                    None => out.push_str(&format!("  {op:<width$}  {count:>4}  {status}\n")),
                }
            }
            // Steps of no graph op: the compositions fused into one curve at import
            // (`frontend/curves.rs`), their ops above listed as without a step.
            if let Some(Ok(s)) = &secure {
                for (op, ways) in s.by_op.iter().filter(|(op, _)| !report.ops.iter().any(|o| &o.op_type == *op)) {
                    let count: usize = ways.values().sum();
                    out.push_str(&format!("  {op:<width$}  {count:>4}  {:<9}  {}\n", "fused", summary(op, Some(ways))));
                }
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
                    match &secure {
                        Some(Ok(s)) => {
                            out.push_str("under Pond:\n");
                            let width = s.ways.iter().map(|(_, n)| n.to_string().len()).max().unwrap_or(0);
                            for (way, n) in &s.ways {
                                let steps = if *n == 1 { "step " } else { "steps" };
                                out.push_str(&format!("  {n:>width$} {steps}  {way}\n"));
                            }
                        }
                        Some(Err(e)) => out.push_str(&format!("under Pond: not possible: {e:#}\n")),
                        None => {}
                    }
                    if args.plan {
                        out.push_str(&plan.describe());
                    }
                }
                Some(Err(e)) => out.push_str(&format!("plan (batch of 1): not possible: {e:#}\n")),
                None => out.push_str(&format!("unsupported nodes: {}\n", unsupported.join(", "))),
            }
        }
        Format::Json => {
            let inputs: Vec<_> = placeholders
                .iter()
                .map(|p| json!({"name": p.name, "dtype": p.dtype_name(), "shape": p.shape.as_ref().map(|d| d.iter().map(|x| x.map(|n| n as i64).unwrap_or(-1)).collect::<Vec<_>>())}))
                .collect();
            let ops: Vec<_> = (report.ops.iter())
                .map(|o| {
                    let mut entry = json!({"op": o.op_type, "count": o.count, "supported": o.supported});
                    if let Some(Ok(s)) = &secure {
                        entry["secure_steps"] = json!(s.by_op.get(&o.op_type).cloned().unwrap_or_default());
                    }
                    entry
                })
                .collect();
            let plan_json = match &plan {
                Some(Ok(p)) => {
                    let mut doc = json!({"ok": true, "steps": p.steps.len(), "weight_values": p.weights().map(|(_, v)| v.len()).sum::<usize>(), "output_shape": p.output_value().shape});
                    match &secure {
                        Some(Ok(s)) => {
                            doc["under_pond"] =
                                json!(s.ways.iter().map(|(w, n)| json!({"how": w, "steps": n})).collect::<Vec<_>>())
                        }
                        Some(Err(e)) => doc["under_pond_error"] = json!(format!("{e:#}")),
                        None => {}
                    }
                    doc
                }
                Some(Err(e)) => json!({"ok": false, "error": format!("{e:#}")}),
                None => json!({"ok": false, "error": "unsupported ops"}),
            };
            let mut doc = json!({
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
            if let Some(sm) = &loaded.saved_model {
                doc["saved_model"] = saved_model_json(sm);
            }
            out.push_str(&serde_json::to_string_pretty(&doc).expect("JSON of plain values"));
            out.push('\n');
        }
    }
    let why = match (&plan, &secure) {
        (Some(Err(e)), _) => Some(*e),
        (_, Some(Err(e))) => Some(e),
        _ => None,
    };
    Ok(Inspection { text: out, verdict, error: why.map(|e| format!("{e:#}")) })
}

/// A SavedModel's signatures, each with its input and output keys, dtypes and
/// shapes, and which one (and which output) the rest of the report is about.
fn saved_model_text(sm: &frontend::SavedModelInfo) -> String {
    let mut out = format!("signature: {} (output `{}`)\nsignatures:\n", sm.signature, sm.output);
    for sig in &sm.signatures {
        out.push_str(&format!("  {}\n", sig.name));
        let rows = sig.inputs.iter().map(|t| ("input ", t)).chain(sig.outputs.iter().map(|t| ("output", t)));
        for (kind, t) in rows {
            out.push_str(&format!("    {kind}  {}  {}  {}\n", t.key, t.dtype, t.shape_text()));
        }
    }
    out
}

fn saved_model_json(sm: &frontend::SavedModelInfo) -> serde_json::Value {
    let specs = |ts: &[frontend::savedmodel::TensorSpec]| {
        ts.iter().map(|t| json!({"key": t.key, "dtype": t.dtype, "shape": t.shape})).collect::<Vec<_>>()
    };
    json!({
        "signature": sm.signature,
        "output": sm.output,
        "signatures": sm.signatures.iter().map(|s| json!({
            "name": s.name, "inputs": specs(&s.inputs), "outputs": specs(&s.outputs)
        })).collect::<Vec<_>>(),
    })
}
