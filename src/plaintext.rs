//! The plaintext executor: runs a plan in the clear.
//!
//! It is the reference every secure result is compared with, and a debugging aid:
//! `tfe-run --plaintext` shows what the model computes without any protocol.

use std::collections::BTreeMap;

use anyhow::Result;
use ndarray::ArrayD;

use crate::error::Error;
use crate::plan::{Plan, Source};
use crate::tensor::Tensor;

/// Evaluate `plan` on the inputs (placeholder name → array) and return the output.
/// A rough upper estimate of the plaintext run's peak memory, in bytes: every
/// value once (values are freed after their last use, so this over-counts),
/// with room for one step's temporaries (im2col of the largest value).
pub fn estimate_memory(plan: &Plan) -> u64 {
    let values: u64 = plan.values.iter().map(|v| v.len() as u64 * 4).sum();
    let largest = plan.values.iter().map(|v| v.len() as u64 * 4).max().unwrap_or(0);
    crate::lower::BASE_MEMORY + values + 2 * largest
}

pub fn run(plan: &Plan, inputs: &BTreeMap<String, ArrayD<f32>>) -> Result<Tensor> {
    evaluate(plan, inputs, |_, _| {})
}

/// The first step of a plaintext run whose output left a bound, and the
/// largest magnitude in it: a secure run of the same input computes correctly
/// only while every value stays inside the representable range
/// ([`crate::ring::FixedPoint::bound`]), which its truncations and comparisons
/// assume and cannot check on private values.
#[derive(Debug, Clone, PartialEq)]
pub struct Beyond {
    pub node: String,
    pub value: f64,
}

/// [`run`], and the first step whose output reached `bound` in magnitude
/// ([`Beyond`]; `None` if every step stayed below it).
pub fn run_within(plan: &Plan, inputs: &BTreeMap<String, ArrayD<f32>>, bound: f64) -> Result<(Tensor, Option<Beyond>)> {
    let mut beyond: Option<Beyond> = None;
    let output = evaluate(plan, inputs, |node, t| {
        if beyond.is_some() {
            return;
        }
        let value = match t {
            Tensor::Float(x) => x.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))),
            Tensor::Int(x) => x.iter().fold(0f64, |m, v| m.max(v.unsigned_abs() as f64)),
        };
        if value >= bound {
            beyond = Some(Beyond { node: node.to_string(), value });
        }
    })?;
    Ok((output, beyond))
}

/// Evaluate the steps in order, showing `seen` every step's node and output.
fn evaluate(
    plan: &Plan,
    inputs: &BTreeMap<String, ArrayD<f32>>,
    mut seen: impl FnMut(&str, &Tensor),
) -> Result<Tensor> {
    // Free each value after its last use: a batch of 100 through a CNN keeps only
    // the live activations in memory.
    let mut last_use = vec![0usize; plan.values.len()];
    for (s, step) in plan.steps.iter().enumerate() {
        for &i in &step.inputs {
            last_use[i] = s;
        }
    }
    let mut env: Vec<Option<Tensor>> = vec![None; plan.values.len()];
    for (id, value) in plan.values.iter().enumerate() {
        match &value.source {
            Source::Input { placeholder } => {
                let x = inputs
                    .get(placeholder)
                    .ok_or_else(|| Error::bad_input(format!("no input for placeholder `{placeholder}`")))?;
                if x.shape() != value.shape.as_slice() {
                    return Err(Error::bad_input(format!(
                        "input for `{placeholder}` has shape {:?}, the plan was built for {:?}",
                        x.shape(),
                        value.shape
                    )));
                }
                env[id] = Some(Tensor::Float(x.clone()));
            }
            Source::Weight => {
                let w = plan
                    .weight_values
                    .get(&id)
                    .ok_or_else(|| anyhow::anyhow!("the plan has no value for weight `{}`", value.name))?;
                env[id] = Some(Tensor::Float(w.clone()));
            }
            Source::Step(_) => {}
        }
    }
    for (s, step) in plan.steps.iter().enumerate() {
        let out = {
            let ins: Vec<&Tensor> = step.inputs.iter().map(|&i| env[i].as_ref().expect("topological order")).collect();
            step.op.eval(&ins).map_err(|e| Error::unsupported(format!("{} `{}`: {e}", step.op_type, step.node)))?
        };
        seen(&step.node, &out);
        env[step.output] = Some(out);
        for &i in &step.inputs {
            if last_use[i] == s && i != plan.output {
                env[i] = None;
            }
        }
    }
    Ok(env[plan.output].take().expect("the output is computed"))
}
