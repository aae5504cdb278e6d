//! The plan: what a prediction computes, as typed steps over values with static
//! shapes, and who owns each value.
//!
//! The importer produces it from a GraphDef once the input shapes are known; the
//! plaintext executor and the secure runtime both execute it. Everything public is
//! already folded in: shapes, axes, paddings, indices and other integer parameters
//! live inside the [`Op`]s, in the clear, and every server sees them. The values
//! are private: the client's inputs, the model owner's weights, and what the
//! servers compute from them on secret shares.

// `check_consistent` runs on what network peers send: nothing in it may panic or overflow.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod op;
mod rows;

pub use op::{Op, broadcast_shape};
pub use rows::{RowRule, independent};

use crate::tensor::fmt_shape;
use std::collections::BTreeMap;

use ndarray::ArrayD;

pub type ValueId = usize;

/// No value of a plan may hold more elements than this (2^34: 128 GiB of ring
/// elements); the importer refuses to build one, and a server refuses a plan
/// that has one.
pub const MAX_VALUE_ELEMENTS: usize = 1 << 34;

/// Who knows a value in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The client's input: only the client knows it.
    Client,
    /// A weight (or a weight folded at import): only the model owner knows it.
    ModelOwner,
    /// Computed on shares: no single party knows it (until the client opens the output).
    Shared,
}

impl Owner {
    pub fn label(self) -> &'static str {
        match self {
            Owner::Client => "private (client)",
            Owner::ModelOwner => "private (model owner)",
            Owner::Shared => "secret-shared",
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// Fed from a placeholder.
    Input { placeholder: String },
    /// A constant of the model, after folding; its value is in `Plan::weight_values`,
    /// which only the model owner's copy of the plan holds.
    Weight,
    /// The output of `steps[i]`.
    Step(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ValueType {
    Float,
    /// Only ArgMax produces integers from private data.
    Int,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Value {
    /// The graph tensor it stands for (`node` or `node:slot`), for messages.
    pub name: String,
    pub shape: Vec<usize>,
    pub vtype: ValueType,
    pub source: Source,
}

impl Value {
    /// A float value (what plans are made of, but ArgMax's output).
    pub fn float(name: impl Into<String>, shape: &[usize], source: Source) -> Value {
        Value { name: name.into(), shape: shape.to_vec(), vtype: ValueType::Float, source }
    }

    pub fn owner(&self) -> Owner {
        match self.source {
            Source::Input { .. } => Owner::Client,
            Source::Weight => Owner::ModelOwner,
            Source::Step(_) => Owner::Shared,
        }
    }

    /// Its element count (saturating: a plan from the network is checked only later).
    pub fn len(&self) -> usize {
        crate::tensor::element_count(&self.shape).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One operation on private values.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// The model node it came from, and that node's op type, for messages.
    pub node: String,
    pub op_type: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    /// One value per fed placeholder.
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    /// The GraphDef node whose value is the prediction.
    pub output_node: String,
    /// The weights' values: the model owner's secret (never serialised).
    #[serde(skip)]
    pub weight_values: BTreeMap<ValueId, ArrayD<f32>>,
}

impl Plan {
    /// The weights: their ids and descriptions (values are in `weight_values`).
    pub fn weights(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values.iter().enumerate().filter(|(_, v)| matches!(v.source, Source::Weight))
    }

    /// The plan as the servers and the dealer see it: architecture and shapes,
    /// no weight values.
    pub fn public(&self) -> Plan {
        Plan { weight_values: BTreeMap::new(), ..self.clone() }
    }

    /// Check a plan that came from elsewhere (a deployment, a driver on the
    /// network): every step reads values defined before it, and every declared
    /// shape is the one its op computes. A server runs only a plan that passes.
    pub fn check_consistent(&self) -> Result<(), String> {
        let n = self.values.len();
        let mut defined = vec![false; n];
        for ((id, v), d) in self.values.iter().enumerate().zip(defined.iter_mut()) {
            let len = crate::tensor::element_count(&v.shape);
            if len.is_none_or(|l| l > MAX_VALUE_ELEMENTS) {
                return Err(format!("value %{id} `{}` has an impossible shape {:?}", v.name, v.shape));
            }
            *d = matches!(v.source, Source::Weight);
        }
        for &id in &self.inputs {
            match (self.values.get(id).map(|v| &v.source), defined.get_mut(id)) {
                (Some(Source::Input { .. }), Some(d)) => *d = true,
                _ => return Err(format!("input %{id} is not a placeholder's value")),
            }
        }
        let is_defined = |defined: &[bool], i: usize| defined.get(i).copied().unwrap_or(false);
        for (k, step) in self.steps.iter().enumerate() {
            let at = || format!("step {k} ({} `{}`)", step.op_type, step.node);
            if step.inputs.iter().any(|&i| !is_defined(&defined, i)) {
                return Err(format!("{} reads a value not defined before it", at()));
            }
            let Some(out) = self.values.get(step.output).filter(|v| matches!(v.source, Source::Step(j) if j == k))
            else {
                return Err(format!("{} writes a value that is not its own", at()));
            };
            let shapes: Vec<&[usize]> =
                step.inputs.iter().filter_map(|&i| self.values.get(i)).map(|v| v.shape.as_slice()).collect();
            match step.op.output_shape(&shapes) {
                Ok(shape) if shape == out.shape => {}
                Ok(shape) => return Err(format!("{} computes shape {shape:?}, the plan says {:?}", at(), out.shape)),
                Err(e) => return Err(format!("{}: {e}", at())),
            }
            if let Some(d) = defined.get_mut(step.output) {
                *d = true;
            }
        }
        if !is_defined(&defined, self.output) {
            return Err("the output is not computed by the plan".into());
        }
        Ok(())
    }

    /// The output's value, of a plan built here or checked (`check_consistent`).
    #[allow(clippy::indexing_slicing)]
    pub fn output_value(&self) -> &Value {
        &self.values[self.output]
    }

    /// A readable listing, one step a line (used by `inspect --plan` and in tests).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (id, v) in self.inputs.iter().filter_map(|&id| Some((id, self.values.get(id)?))) {
            s.push_str(&format!("input  %{id} {} {} ({})\n", v.name, fmt_shape(&v.shape), v.owner().label()));
        }
        for (id, v) in self.weights() {
            s.push_str(&format!("weight %{id} {} {} ({})\n", v.name, fmt_shape(&v.shape), v.owner().label()));
        }
        for step in &self.steps {
            let ins: Vec<String> = step.inputs.iter().map(|i| format!("%{i}")).collect();
            let out = self.values.get(step.output).map_or_else(|| "?".into(), |v| fmt_shape(&v.shape));
            s.push_str(&format!(
                "step   %{} = {}({}) {} <- {} `{}`\n",
                step.output,
                step.op.name(),
                ins.join(", "),
                out,
                step.op_type,
                step.node
            ));
        }
        s.push_str(&format!("output %{} `{}`\n", self.output, self.output_node));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::layout::AxisSlice;
    use crate::kernels::{Layout, Padding, Window};

    /// A plan of one step from a client input of `input` to a value of `output`,
    /// as a driver on the network may send it.
    fn one_step(op: Op, input: &[usize], output: &[usize]) -> Plan {
        let value = Value::float;
        Plan {
            values: vec![
                value("x", input, Source::Input { placeholder: "x".into() }),
                value("y", output, Source::Step(0)),
            ],
            steps: vec![Step { node: "y".into(), op_type: op.name().into(), op, inputs: vec![0], output: 1 }],
            inputs: vec![0],
            output: 1,
            output_node: "y".into(),
            weight_values: BTreeMap::new(),
        }
    }

    #[test]
    fn a_network_plan_whose_strided_slice_overflows_is_refused_not_wrapped() {
        // The last element 0 + 2^62·4 wraps to 0, inside the axis of 1: the plan
        // passed, and the slice then read element 2^62.
        let axes = vec![AxisSlice { start: 0, step: 1 << 62, count: 5 }];
        let plan = one_step(Op::StridedSlice { axes, shape: vec![5] }, &[1], &[5]);
        let err = plan.check_consistent().unwrap_err();
        assert!(err.contains("step 0 (StridedSlice `y`)"), "{err}");
    }

    #[test]
    fn a_network_plan_whose_strided_slice_counts_overflow_is_refused_not_wrapped() {
        // 3 · 0xAAAA_AAAA_AAAA_AAAB wraps to 1: the plan passed, and the slice
        // then built an array of 2^65 elements.
        let axes = vec![
            AxisSlice { start: 0, step: 0, count: 3 },
            AxisSlice { start: 0, step: 0, count: 0xAAAA_AAAA_AAAA_AAAB },
        ];
        let plan = one_step(Op::StridedSlice { axes, shape: vec![1] }, &[1, 1], &[1]);
        let err = plan.check_consistent().unwrap_err();
        assert!(err.contains("step 0 (StridedSlice `y`)"), "{err}");
    }

    #[test]
    fn a_network_plan_whose_pool_window_overflows_the_padding_is_refused_not_wrapped() {
        // SAME padding needs (out − 1)·stride + kernel − input: over usize::MAX here,
        // wrapped to no padding at all.
        let w = Window {
            kernel: [usize::MAX, 1],
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Same,
            layout: Layout::Nhwc,
        };
        let plan = one_step(Op::MaxPool(w), &[1, 2, 2, 1], &[1, 2, 2, 1]);
        let err = plan.check_consistent().unwrap_err();
        assert!(err.contains("step 0 (MaxPool `y`)"), "{err}");
    }

    #[test]
    fn a_network_plan_whose_reshape_overflows_is_refused_not_wrapped() {
        let op = Op::Reshape(vec![3, 0xAAAA_AAAA_AAAA_AAAB]);
        let err = op.output_shape(&[&[1]]).unwrap_err();
        assert!(err.contains("Reshape"), "{err}");
    }

    #[test]
    fn a_network_plan_with_an_nchw_window_op_is_consistent_in_its_own_layout() {
        let w = Window {
            kernel: [2, 2],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::Valid,
            layout: Layout::Nchw,
        };
        let plan = one_step(Op::MaxPool(w), &[1, 3, 4, 4], &[1, 3, 2, 2]);
        assert_eq!(plan.check_consistent(), Ok(()));
        // The shape rule reads channels from axis 1: an NHWC-shaped output is refused.
        let plan = one_step(Op::MaxPool(w), &[1, 3, 4, 4], &[1, 2, 2, 3]);
        assert!(plan.check_consistent().unwrap_err().contains("step 0 (MaxPool `y`)"));
    }

    #[test]
    fn a_network_plan_whose_pool_has_dilations_is_refused_not_run_past_its_input() {
        // Pools have no dilations: the kernels ignore them, but the geometry
        // padded for them, so a window began 5 rows before the input and ended
        // 3 before it, and its row range wrapped to 0..2^64 (an index panic).
        let w = Window {
            kernel: [2, 1],
            strides: [1, 1],
            dilations: [10, 1],
            padding: Padding::Same,
            layout: Layout::Nhwc,
        };
        let plan = one_step(Op::AvgPool(w), &[1, 1, 1, 1], &[1, 1, 1, 1]);
        let err = plan.check_consistent().unwrap_err();
        assert!(err.contains("step 0 (AvgPool `y`)") && err.contains("dilations"), "{err}");
    }
}
