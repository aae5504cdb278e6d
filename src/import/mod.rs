//! Graph import: from a decoded GraphDef and the shapes of the inputs to a [`Plan`].
//!
//! Nodes are visited in topological order. A node whose inputs are all known at
//! import time (constants, shapes) is evaluated right away, in the clear: this is
//! the constant folding that lets real Keras exports import (a dynamic-batch
//! `Flatten` is `Shape → StridedSlice → Pack → Reshape`; a BatchNormalization is
//! `Rsqrt/Mul/Sub` on its statistics). A node that touches the client's input
//! becomes a plan step, its shape checked now, not at run time. A float constant
//! that meets private data there is a model weight: the model owner's secret.

// Reads graphs from others: nothing here may panic on what a graph says.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod graph;
mod ops;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use anyhow::Result;

pub use graph::Graph;
pub use ops::{SUPPORTED_OPS, is_supported};

use crate::error::Error;
use crate::plan::{MAX_VALUE_ELEMENTS, Op, Plan, Source, Step, Value, ValueId, ValueType};
use crate::tensor::{Tensor, element_count};
use crate::tfpb::{DataType, Dim, MAX_CONST_ELEMENTS, NodeDef, NodeExt, dtype_name, is_float};

/// A tensor known at import time, and the node it came from (for weight names).
#[derive(Debug)]
pub struct Known {
    pub tensor: Tensor,
    pub origin: String,
}

/// What an output of a node is, during import.
#[derive(Debug, Clone)]
pub enum Slot {
    /// Known at import time: folded.
    Known(Rc<Known>),
    /// A private plan value.
    Value(ValueId),
    /// An output an inference graph must not use (e.g. FusedBatchNorm's batch statistics).
    Unavailable,
}

/// An input placeholder, as declared in the graph.
#[derive(Debug, Clone)]
pub struct Placeholder {
    pub name: String,
    pub dtype: Option<DataType>,
    /// `None` when the rank is unknown; `None` dims are unknown (e.g. the batch).
    pub shape: Option<Vec<Dim>>,
}

impl Placeholder {
    pub fn dtype_name(&self) -> &'static str {
        self.dtype.map(dtype_name).unwrap_or("unknown")
    }

    /// `[?, 28, 28, 1]`, `<unknown rank>`.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            None => "<unknown rank>".into(),
            Some(dims) => {
                let d: Vec<String> = dims.iter().map(|d| d.map_or("?".into(), |n| n.to_string())).collect();
                format!("[{}]", d.join(", "))
            }
        }
    }

    /// Does a concrete input shape fit the declared one?
    pub fn accepts(&self, shape: &[usize]) -> bool {
        match &self.shape {
            None => true,
            Some(dims) => dims.len() == shape.len() && dims.iter().zip(shape).all(|(d, &s)| d.is_none_or(|d| d == s)),
        }
    }
}

/// The placeholders among `nodes`, in graph order.
pub fn placeholders(graph: &Graph, nodes: &[usize]) -> Result<Vec<Placeholder>> {
    let mut out = Vec::new();
    for n in nodes.iter().filter_map(|&i| graph.nodes.get(i)) {
        if n.op == "Placeholder" || n.op == "PlaceholderWithDefault" {
            out.push(Placeholder {
                name: n.name.clone(),
                dtype: n.get_attr_type("dtype")?,
                shape: n.get_attr_opt_shape("shape")?,
            });
        }
    }
    Ok(out)
}

/// What is fed to a placeholder: the shape of the data, and where it came from
/// (a file name, for messages).
#[derive(Debug, Clone)]
pub struct Feed {
    pub shape: Vec<usize>,
    pub source: String,
}

/// Every node `nodes` uses whose op tfe-run does not know, as one error.
pub fn check_supported(graph: &Graph, nodes: &[usize]) -> Result<()> {
    let unsupported: Vec<&NodeDef> =
        nodes.iter().filter_map(|&i| graph.nodes.get(i)).filter(|n| !is_supported(&n.op)).collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    let mut by_op: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in &unsupported {
        by_op.entry(n.op.as_str()).or_default().push(n.name.as_str());
    }
    let lines: Vec<String> = unsupported.iter().map(|n| format!("  {} `{}`", n.op, n.name)).collect();
    Err(Error::unsupported(format!(
        "the model uses {} unsupported op type(s) ({}) in {} node(s):\n{}",
        by_op.len(),
        by_op.keys().copied().collect::<Vec<_>>().join(", "),
        unsupported.len(),
        lines.join("\n")
    )))
}

/// Build the plan that computes node `output` from the `feeds`.
pub fn build_plan(graph: &Graph, output: usize, feeds: &BTreeMap<String, Feed>) -> Result<Plan> {
    let nodes = graph.data_ancestors(output);
    check_supported(graph, &nodes)?;
    check_feeds(graph, &nodes, output, feeds)?;

    let mut ctx = Ctx {
        values: Vec::new(),
        steps: Vec::new(),
        inputs: Vec::new(),
        weights: HashMap::new(),
        weight_values: BTreeMap::new(),
    };
    let mut slots: HashMap<usize, Vec<Slot>> = HashMap::with_capacity(nodes.len());
    let no_node = |i: usize| Error::invalid_model(format!("node {i} is not in the graph"));
    for &i in &nodes {
        let node = graph.nodes.get(i).ok_or_else(|| no_node(i))?;
        let refs = graph.inputs.get(i).ok_or_else(|| no_node(i))?;
        let ins: Vec<Slot> = refs
            .iter()
            .map(|r| {
                // Topological order: every producer's outputs are known by now.
                let produced = slots.get(&r.node).map_or(&[][..], Vec::as_slice);
                produced.get(r.slot).cloned().ok_or_else(|| {
                    let producer = graph.nodes.get(r.node);
                    Error::invalid_model(format!(
                        "{}: input {}:{} does not exist ({} has {} output(s))",
                        node.describe(),
                        producer.map_or("?", |n| n.name.as_str()),
                        r.slot,
                        producer.map_or("?", |n| n.op.as_str()),
                        produced.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        if let Some(j) = ins.iter().position(|s| matches!(s, Slot::Unavailable)) {
            return Err(Error::unsupported(format!(
                "{}: input `{}` is a training-only output, not available in an inference graph",
                node.describe(),
                node.input.get(j).map_or("?", String::as_str)
            )));
        }
        let feed = feeds.get(&node.name);
        let outs = match (node.op.as_str(), feed) {
            ("Placeholder" | "PlaceholderWithDefault", Some(feed)) => vec![ctx.input(node, feed)?],
            ("Placeholder", None) => {
                // check_feeds names every unfed placeholder with a dtype; one without is odd.
                return Err(Error::bad_input(format!(
                    "placeholder `{}` (which declares no dtype) is not fed",
                    node.name
                )));
            }
            _ => ops::build(&mut ctx, node, &ins)?,
        };
        slots.insert(i, outs);
    }
    let out_node = graph.nodes.get(output).ok_or_else(|| no_node(output))?;
    let out = match slots.get(&output).and_then(|s| s.first()) {
        Some(Slot::Value(id)) => *id,
        _ => {
            return Err(Error::bad_input(format!(
                "output `{}` does not depend on any input: there is nothing to compute privately",
                out_node.name
            )));
        }
    };
    Ok(Plan {
        values: ctx.values,
        steps: ctx.steps,
        inputs: ctx.inputs,
        output: out,
        output_node: out_node.name.clone(),
        weight_values: ctx.weight_values,
    })
}

/// Every fed name must be a placeholder that the output depends on.
pub fn check_feed_names<'a>(graph: &Graph, output: usize, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let declared = placeholders(graph, &graph.data_ancestors(output))?;
    for name in names {
        if !declared.iter().any(|p| &p.name == name) {
            let all = placeholders(graph, &graph.order)?;
            return Err(Error::bad_input(if all.iter().any(|p| &p.name == name) {
                let out = graph.nodes.get(output).map_or("?", |n| n.name.as_str());
                format!("placeholder `{name}` does not feed the output `{out}`")
            } else {
                format!("the model has no placeholder `{name}`")
            }));
        }
    }
    Ok(())
}

fn check_feeds(graph: &Graph, nodes: &[usize], output: usize, feeds: &BTreeMap<String, Feed>) -> Result<()> {
    check_feed_names(graph, output, feeds.keys())?;
    let declared = placeholders(graph, nodes)?;
    let unfed: Vec<&Placeholder> =
        declared.iter().filter(|p| p.dtype.is_some() && !feeds.contains_key(&p.name)).collect();
    let unfed: Vec<String> = unfed
        .iter()
        .filter(|p| graph.node_index(&p.name).and_then(|i| graph.nodes.get(i)).is_some_and(|n| n.op == "Placeholder"))
        .map(|p| format!("`{}` {} {}", p.name, p.dtype_name(), p.shape_text()))
        .collect();
    if !unfed.is_empty() {
        return Err(Error::bad_input(format!(
            "no input for placeholder(s) {}; feed each with --input NAME=FILE.npy",
            unfed.join(", ")
        )));
    }
    for p in &declared {
        let Some(feed) = feeds.get(&p.name) else {
            continue;
        };
        if !p.dtype.is_some_and(is_float) {
            return Err(Error::unsupported(format!(
                "placeholder `{}` has dtype {}; tfe-run feeds float inputs only",
                p.name,
                p.dtype_name()
            )));
        }
        if !p.accepts(&feed.shape) {
            return Err(Error::bad_input(format!(
                "`{}` has shape {:?}, but placeholder `{}` expects {}",
                feed.source,
                feed.shape,
                p.name,
                p.shape_text()
            )));
        }
    }
    Ok(())
}

/// The plan under construction, as the op builders see it.
pub struct Ctx {
    values: Vec<Value>,
    steps: Vec<Step>,
    inputs: Vec<ValueId>,
    /// Known tensors already registered as weights, so a constant used twice is
    /// shared once. Keyed by address; holding the `Rc` keeps that address from being
    /// reused by a later tensor while the map lives.
    weights: HashMap<*const Known, (Rc<Known>, ValueId)>,
    weight_values: BTreeMap<ValueId, ndarray::ArrayD<f32>>,
}

impl Ctx {
    fn input(&mut self, node: &NodeDef, feed: &Feed) -> Result<Slot> {
        let id = self.push_value(
            node.name.clone(),
            feed.shape.clone(),
            ValueType::Float,
            Source::Input { placeholder: node.name.clone() },
        );
        self.inputs.push(id);
        Ok(Slot::Value(id))
    }

    fn push_value(&mut self, name: String, shape: Vec<usize>, vtype: ValueType, source: Source) -> ValueId {
        self.values.push(Value { name, shape, vtype, source });
        self.values.len() - 1
    }

    /// The static shape of a slot.
    pub fn shape(&self, slot: &Slot) -> Vec<usize> {
        match slot {
            Slot::Known(k) => k.tensor.shape().to_vec(),
            Slot::Value(id) => self.values.get(*id).map(|v| v.shape.clone()).unwrap_or_default(),
            Slot::Unavailable => vec![],
        }
    }

    pub fn known(node: &NodeDef, tensor: Tensor) -> Slot {
        Slot::Known(Rc::new(Known { tensor, origin: node.name.clone() }))
    }

    /// An integer parameter input (a shape, axes, paddings...): it must be known at
    /// import time, because the servers need it in the clear.
    pub fn known_ints(&self, node: &NodeDef, slot: &Slot, what: &str) -> Result<Vec<i64>> {
        match slot {
            Slot::Known(k) => match &k.tensor {
                Tensor::Int(a) => Ok(a.iter().copied().collect()),
                Tensor::Float(_) => {
                    Err(Error::invalid_model(format!("{}: {what} must be an integer tensor", node.describe())))
                }
            },
            _ => Err(Error::unsupported(format!(
                "{}: {what} must be a constant, but it is computed from the input",
                node.describe()
            ))),
        }
    }

    /// A float parameter input that must be known at import time (e.g. batch-norm statistics).
    pub fn known_floats(&self, node: &NodeDef, slot: &Slot, what: &str) -> Result<ndarray::ArrayD<f32>> {
        match slot {
            Slot::Known(k) => k
                .tensor
                .as_float()
                .cloned()
                .ok_or_else(|| Error::invalid_model(format!("{}: {what} must be a float tensor", node.describe()))),
            _ => Err(Error::unsupported(format!(
                "{}: {what} must be a constant, but it is computed from the input",
                node.describe()
            ))),
        }
    }

    /// Apply `op` to `ins`: fold it if every input is known, else add a plan step
    /// after checking the shapes.
    pub fn apply(&mut self, node: &NodeDef, op: Op, ins: &[Slot]) -> Result<Slot> {
        let fail = |msg: String| Error::unsupported(format!("{}: {msg}", node.describe()));
        let shapes: Vec<Vec<usize>> = ins.iter().map(|s| self.shape(s)).collect();
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = op.output_shape(&shape_refs).map_err(fail)?;
        if ins.iter().all(|s| matches!(s, Slot::Known(_))) {
            // Folding broadcasts: two small constants can make a huge one.
            if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
                return Err(Error::unsupported(format!(
                    "{}: folding it would make a constant of shape {shape:?}, over {MAX_CONST_ELEMENTS} elements",
                    node.describe()
                )));
            }
            let tensors: Vec<&Tensor> = ins
                .iter()
                .map(|s| match s {
                    Slot::Known(k) => &k.tensor,
                    _ => unreachable!(),
                })
                .collect();
            return Ok(Self::known(node, op.eval(&tensors).map_err(fail)?));
        }
        if element_count(&shape).is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
            return Err(Error::unsupported(format!(
                "{}: its output would have shape {shape:?}, over {MAX_VALUE_ELEMENTS} elements",
                node.describe()
            )));
        }
        let inputs = ins.iter().map(|s| self.value_of(node, s)).collect::<Result<Vec<_>>>()?;
        let vtype = if matches!(op, Op::ArgMax { .. } | Op::CastToInt) { ValueType::Int } else { ValueType::Float };
        let output = self.push_value(node.name.clone(), shape, vtype, Source::Step(self.steps.len()));
        self.steps.push(Step { node: node.name.clone(), tf_op: node.op.clone(), op, inputs, output });
        Ok(Slot::Value(output))
    }

    /// The plan value of an input of a private step; a known float tensor becomes a
    /// model-owner weight here.
    fn value_of(&mut self, node: &NodeDef, slot: &Slot) -> Result<ValueId> {
        match slot {
            Slot::Value(id) => Ok(*id),
            Slot::Known(k) => {
                if let Some((_, id)) = self.weights.get(&Rc::as_ptr(k)) {
                    return Ok(*id);
                }
                let Tensor::Float(w) = &k.tensor else {
                    return Err(Error::unsupported(format!(
                        "{}: integer tensor `{}` cannot be combined with private values",
                        node.describe(),
                        k.origin
                    )));
                };
                if let Some(bad) = w.iter().find(|v| !v.is_finite()) {
                    return Err(Error::invalid_model(format!(
                        "{}: weight `{}` contains {bad}",
                        node.describe(),
                        k.origin
                    )));
                }
                let id = self.push_value(k.origin.clone(), w.shape().to_vec(), ValueType::Float, Source::Weight);
                self.weight_values.insert(id, w.clone());
                self.weights.insert(Rc::as_ptr(k), (Rc::clone(k), id));
                Ok(id)
            }
            Slot::Unavailable => unreachable!("checked before the op builder runs"),
        }
    }
}
