//! The ONNX frontend: a `ModelProto` (`torch.onnx.export`, tf2onnx), its graph
//! walked in its own (topological) order, each node turned into op requests to
//! the [`Builder`] by its entry in the op table. This folder is the only part of
//! tfe-run that knows ONNX's messages.
//!
//! Initializers are the model owner's private constants; graph inputs that are
//! not initializers are the client's placeholders. Tensors are NCHW: window ops
//! (Conv, depthwise Conv, ConvTranspose, pools, linear Resize) are planned in
//! the plan's NCHW layout, not wrapped in transposes.

mod ops;
pub mod proto;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use prost::Message;

pub use ops::{SUPPORTED_OPS, is_supported};

use super::{Builder, Feed, Model, OpCount, Origin, Placeholder, Public, Report, Slot};
use crate::error::Error;
use crate::plan::Plan;
use proto::{ModelProto, NodeProto, node_name};

/// The opsets of the default domain tfe-run reads: the attributes and inputs of
/// its ops are read as these versions define them.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// A graph of more nodes than this is refused (a few bytes per node could
/// otherwise make a walk of any length).
pub const MAX_NODES: usize = 1 << 20;

/// A decoded ONNX model and its chosen output.
pub struct OnnxModel {
    model: ModelProto,
    output: String,
    /// For each value name, the node that produces it (index into the graph's nodes).
    producers: HashMap<String, usize>,
    initializers: HashMap<String, usize>,
}

impl OnnxModel {
    /// Decode the bytes of the file at `path`, check what it is, and pick the
    /// output: the one named, or the graph's single output.
    pub fn decode(bytes: &[u8], path: &Path, output: Option<&str>) -> Result<OnnxModel> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| Error::invalid_model(format!("not a valid ONNX model: {e}")))
            .with_context(|| format!("model `{}`", path.display()))?;
        OnnxModel::check(model, output).with_context(|| format!("model `{}`", path.display()))
    }

    fn check(model: ModelProto, output: Option<&str>) -> Result<OnnxModel> {
        let Some(graph) = model.graph.as_ref() else {
            return Err(Error::invalid_model("the ONNX model has no graph"));
        };
        let opset = model.opset_import.iter().find(|o| matches!(o.domain(), "" | "ai.onnx")).map(|o| o.version());
        let Some(opset) = opset else {
            return Err(Error::invalid_model("the ONNX model imports no opset of the default domain"));
        };
        if !OPSETS.contains(&opset) {
            return Err(Error::unsupported(format!(
                "the model uses ONNX opset {opset}; tfe-run reads opsets {} to {}: convert it with \
                 python -c \"import onnx; from onnx import version_converter as v; \
                 onnx.save(v.convert_version(onnx.load('MODEL.onnx'), 17), 'model17.onnx')\"",
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        if graph.node.len() > MAX_NODES {
            return Err(Error::unsupported(format!(
                "the graph has {} nodes, more than the {MAX_NODES} tfe-run reads",
                graph.node.len()
            )));
        }
        if let Some(s) = graph.sparse_initializer.first() {
            let name = s.values.as_ref().map_or("?", |v| v.name());
            return Err(Error::unsupported(format!("sparse initializer `{name}` is not supported")));
        }
        if let Some(t) = graph.initializer.iter().find(|t| proto::is_external(t)) {
            return Err(Error::unsupported(format!(
                "initializer `{}`: {}",
                t.name(),
                proto::tensor(t).err().unwrap_or_default()
            )));
        }
        let initializers: HashMap<String, usize> =
            graph.initializer.iter().enumerate().map(|(i, t)| (t.name().to_string(), i)).collect();
        let mut producers = HashMap::new();
        let mut defined: HashSet<&str> = initializers.keys().map(String::as_str).collect();
        defined.extend(graph.input.iter().map(|i| i.name()));
        // ONNX requires nodes in topological order: a node reading a value defined
        // later (or never) is refused here, so the walk below needs no sort.
        for (i, node) in graph.node.iter().enumerate() {
            if let Some(missing) = node.input.iter().find(|n| !n.is_empty() && !defined.contains(n.as_str())) {
                return Err(Error::invalid_model(format!(
                    "{} `{}` reads `{missing}`, which no earlier node, input or initializer defines",
                    node.op_type(),
                    node_name(node)
                )));
            }
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if !defined.insert(out.as_str()) {
                    return Err(Error::invalid_model(format!(
                        "{} `{}` defines `{out}`, which is already defined",
                        node.op_type(),
                        node_name(node)
                    )));
                }
                producers.insert(out.clone(), i);
            }
        }
        let outputs: Vec<&str> = graph.output.iter().map(|o| o.name()).collect();
        let output = match (output, outputs.as_slice()) {
            (Some(name), _) if defined.contains(name) => name.to_string(),
            (Some(name), _) => {
                return Err(Error::bad_input(format!(
                    "the model has no value `{name}`; its outputs: {}",
                    outputs.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                )));
            }
            (None, [one]) if defined.contains(one) => one.to_string(),
            (None, []) => return Err(Error::invalid_model("the ONNX graph declares no output")),
            (None, [one]) => return Err(Error::invalid_model(format!("output `{one}` is not computed by the graph"))),
            (None, many) => {
                return Err(Error::bad_input(format!(
                    "the model has {} outputs ({}): choose one with --output-node NAME",
                    many.len(),
                    many.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        Ok(OnnxModel { model, output, producers, initializers })
    }

    fn graph(&self) -> &proto::GraphProto {
        // `check` refused a model without a graph.
        static EMPTY: std::sync::OnceLock<proto::GraphProto> = std::sync::OnceLock::new();
        self.model.graph.as_ref().unwrap_or_else(|| EMPTY.get_or_init(proto::GraphProto::default))
    }

    /// The nodes the output depends on, in graph (topological) order.
    fn used_nodes(&self) -> Vec<usize> {
        let graph = self.graph();
        let mut used = vec![false; graph.node.len()];
        let mut stack = vec![self.output.as_str()];
        while let Some(name) = stack.pop() {
            let Some(&i) = self.producers.get(name) else { continue };
            let Some(seen) = used.get_mut(i) else { continue };
            if std::mem::replace(seen, true) {
                continue;
            }
            if let Some(node) = graph.node.get(i) {
                stack.extend(node.input.iter().filter(|n| !n.is_empty()).map(String::as_str));
            }
        }
        used.iter().enumerate().filter(|(_, u)| **u).map(|(i, _)| i).collect()
    }

    /// The value names the used nodes read.
    fn used_values(&self, nodes: &[usize]) -> HashSet<&str> {
        let graph = self.graph();
        let mut names: HashSet<&str> =
            nodes.iter().filter_map(|&i| graph.node.get(i)).flat_map(|n| n.input.iter().map(String::as_str)).collect();
        names.insert(self.output.as_str());
        names
    }

    fn placeholders(&self, used: &HashSet<&str>) -> Vec<Placeholder> {
        (self.graph().input.iter())
            .filter(|i| !self.initializers.contains_key(i.name()) && used.contains(i.name()))
            .map(|i| {
                let elem = proto::declared_elem_type(i);
                Placeholder {
                    name: i.name().to_string(),
                    dtype: elem.and_then(proto::dtype_name),
                    feedable: elem.is_some_and(proto::is_feedable),
                    shape: proto::declared_shape(i),
                    has_default: false,
                }
            })
            .collect()
    }
}

/// The origin of a node, for messages: its op type in the default domain, or
/// `domain.op` in another (which tfe-run does not read).
fn origin(node: &NodeProto) -> Origin {
    Origin::new(node_name(node), op_type(node))
}

fn op_type(node: &NodeProto) -> String {
    match node.domain() {
        "" | "ai.onnx" => node.op_type().to_string(),
        domain => format!("{domain}.{}", node.op_type()),
    }
}

impl Model for OnnxModel {
    fn report(&self) -> Result<Report> {
        let graph = self.graph();
        let used = self.used_nodes();
        let nodes = || used.iter().filter_map(|&i| graph.node.get(i));
        let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
        for n in nodes() {
            let count = histogram.entry(op_type(n)).or_default();
            *count = count.saturating_add(1);
        }
        let ops = histogram
            .into_iter()
            .map(|(op_type, count)| OpCount { supported: is_supported(&op_type), op_type, count })
            .collect();
        let unsupported = nodes().filter(|n| !is_supported(&op_type(n))).map(origin).collect();
        let values = self.used_values(&used);
        let parameters = (graph.initializer.iter())
            .filter(|t| values.contains(t.name()) && proto::is_float(i64::from(t.data_type())))
            .map(|t| t.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?)).unwrap_or(0))
            .fold(0usize, usize::saturating_add);
        Ok(Report {
            nodes: graph.node.len(),
            nodes_used: used.len(),
            output: self.output.clone(),
            placeholders: self.placeholders(&values),
            all_placeholders: (graph.input.iter())
                .filter(|i| !self.initializers.contains_key(i.name()))
                .map(|i| i.name().to_string())
                .collect(),
            ops,
            unsupported,
            parameters,
        })
    }

    fn build(&self, report: &Report, feeds: &BTreeMap<String, Feed>, public: &Public) -> Result<Plan> {
        report.check_supported()?;
        report.check_feeds(feeds, public)?;
        let graph = self.graph();
        let used = self.used_nodes();
        let values = self.used_values(&used);
        let mut builder = Builder::new();
        let mut slots: HashMap<&str, Slot> = HashMap::new();
        for t in graph.initializer.iter().filter(|t| values.contains(t.name())) {
            let at = Origin::new(t.name(), "initializer");
            let tensor =
                proto::tensor(t).map_err(|e| Error::invalid_model(format!("initializer `{}`: {e}", t.name())))?;
            slots.insert(t.name(), Builder::known(&at, tensor));
        }
        for p in &report.placeholders {
            let at = Origin::new(p.name.clone(), "input");
            let slot = match (feeds.get(&p.name), public.get(&p.name)) {
                (_, Some(&v)) => {
                    let shape: Vec<usize> = p.shape.iter().flatten().map(|d| d.unwrap_or(1)).collect();
                    Builder::known(&at, crate::tensor::Tensor::Float(ndarray::ArrayD::from_elem(shape, v)))
                }
                (Some(feed), None) => builder.input(&at, feed),
                (None, None) => {
                    return Err(Error::bad_input(format!("input `{}` (which declares no dtype) is not fed", p.name)));
                }
            };
            if let Some((name, _)) = graph.input.iter().map(|i| (i.name(), ())).find(|(n, _)| *n == p.name) {
                slots.insert(name, slot);
            }
        }
        for node in used.iter().filter_map(|&i| graph.node.get(i)) {
            let at = origin(node);
            let ins: Vec<Option<Slot>> = node
                .input
                .iter()
                .map(|name| match name.as_str() {
                    "" => Ok(None),
                    name => slots.get(name).cloned().map(Some).ok_or_else(|| {
                        Error::invalid_model(format!("{at}: input `{name}` is not available (an unfed input?)"))
                    }),
                })
                .collect::<Result<_>>()?;
            let ctx = ops::Ctx { builder: &mut builder, node, at: &at };
            let outs = ops::build(ctx, &ins)?;
            for (name, slot) in node.output.iter().zip(outs) {
                if !name.is_empty() {
                    slots.insert(name.as_str(), slot);
                }
            }
        }
        builder.finish(&self.output, slots.get(self.output.as_str()))
    }
}

/// Do these bytes look like an ONNX `ModelProto` (an `ir_version` and a graph)?
/// Decoded in full: a GraphDef's first fields (`node`, 1, a message) are not a
/// ModelProto's `ir_version` (1, a varint), so a GraphDef never passes.
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    match ModelProto::decode(bytes) {
        Ok(m) => m.ir_version.is_some() && m.graph.is_some(),
        Err(_) => false,
    }
}
