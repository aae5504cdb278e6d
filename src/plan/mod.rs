//! The plan: what a prediction computes, as typed steps over values with static
//! shapes, and who owns each value.
//!
//! The importer produces it from a GraphDef once the input shapes are known; the
//! plaintext executor and the secure runtime both execute it. Everything public is
//! already folded in: shapes, axes, paddings, indices and other integer parameters
//! live inside the [`Op`]s, in the clear, and every server sees them. The values
//! are private: the client's inputs, the model owner's weights, and what the
//! servers compute from them on secret shares.

mod op;

pub use op::Op;

use crate::tensor::fmt_shape;
use std::collections::BTreeMap;

use ndarray::ArrayD;

pub type ValueId = usize;

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
#[derive(Debug, Clone)]
pub enum Source {
    /// Fed from a placeholder.
    Input { placeholder: String },
    /// A constant of the model, after folding; its value is in `Plan::weight_values`,
    /// which only the model owner's copy of the plan holds.
    Weight,
    /// The output of `steps[i]`.
    Step(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Float,
    /// Only ArgMax produces integers from private data.
    Int,
}

#[derive(Debug, Clone)]
pub struct Value {
    /// The graph tensor it stands for (`node` or `node:slot`), for messages.
    pub name: String,
    pub shape: Vec<usize>,
    pub vtype: ValueType,
    pub source: Source,
}

impl Value {
    pub fn owner(&self) -> Owner {
        match self.source {
            Source::Input { .. } => Owner::Client,
            Source::Weight => Owner::ModelOwner,
            Source::Step(_) => Owner::Shared,
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One operation on private values.
#[derive(Debug, Clone)]
pub struct Step {
    /// The GraphDef node it came from, and that node's op type, for messages.
    pub node: String,
    pub tf_op: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    /// One value per fed placeholder.
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    /// The GraphDef node whose value is the prediction.
    pub output_node: String,
    /// The weights' values: the model owner's secret.
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

    pub fn output_value(&self) -> &Value {
        &self.values[self.output]
    }

    /// A readable listing, one step a line (used by `inspect --plan` and in tests).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for &id in &self.inputs {
            let v = &self.values[id];
            s.push_str(&format!("input  %{id} {} {} ({})\n", v.name, fmt_shape(&v.shape), v.owner().label()));
        }
        for (id, v) in self.weights() {
            s.push_str(&format!("weight %{id} {} {} ({})\n", v.name, fmt_shape(&v.shape), v.owner().label()));
        }
        for step in &self.steps {
            let ins: Vec<String> = step.inputs.iter().map(|i| format!("%{i}")).collect();
            let out = &self.values[step.output];
            s.push_str(&format!(
                "step   %{} = {}({}) {} <- {} `{}`\n",
                step.output,
                step.op.name(),
                ins.join(", "),
                fmt_shape(&out.shape),
                step.tf_op,
                step.node
            ));
        }
        s.push_str(&format!("output %{} `{}`\n", self.output, self.output_node));
        s
    }
}
