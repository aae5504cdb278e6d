//! Reading a GraphDef: decoding, input references, topological order, the output.
//!
//! Everything here is about the graph's structure; what the ops mean is the plan
//! builder's business.

// Parses bytes from others: the no-panic, checked-arithmetic lints of
// `frontend/mod.rs` hold here too (lint levels are inherited by child modules).

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use prost::Message;

use super::proto::tensorflow::FunctionDefLibrary;
use super::proto::{GraphDef, NodeDef};
use crate::error::Error;

/// A data input of a node: output `slot` of node `node` (an index into `nodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputRef {
    pub node: usize,
    pub slot: usize,
}

/// A parsed input string: `name`, `name:slot` or `^name` (control dependency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputName<'a> {
    Data { node: &'a str, slot: usize },
    Control(&'a str),
}

/// Parse one entry of `NodeDef.input`. This is the only place that knows the syntax.
pub fn parse_input(s: &str) -> std::result::Result<InputName<'_>, String> {
    if let Some(control) = s.strip_prefix('^') {
        if control.is_empty() {
            return Err("empty control input `^`".into());
        }
        return Ok(InputName::Control(control));
    }
    match s.rsplit_once(':') {
        Some((node, slot)) if !node.is_empty() => {
            let slot = slot.parse().map_err(|_| format!("input `{s}` has an invalid output index"))?;
            Ok(InputName::Data { node, slot })
        }
        Some(_) => Err(format!("input `{s}` names no node")),
        None if s.is_empty() => Err("empty input name".into()),
        None => Ok(InputName::Data { node: s, slot: 0 }),
    }
}

/// A decoded, structurally valid graph: every input names an existing node, and
/// the nodes have a topological order (no cycles).
#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<NodeDef>,
    /// Data inputs of each node, in order.
    pub inputs: Vec<Vec<InputRef>>,
    /// Control inputs of each node (they order execution; they carry no data).
    pub controls: Vec<Vec<usize>>,
    /// All nodes, each after every node it depends on.
    pub order: Vec<usize>,
    /// The functions loops name as their condition and body (calls are inlined).
    pub library: FunctionDefLibrary,
    index: HashMap<String, usize>,
}

impl Graph {
    pub fn decode(bytes: &[u8]) -> Result<Graph> {
        let graph = GraphDef::decode(bytes)
            .map_err(|e| Error::invalid_model(format!("not a TensorFlow GraphDef (protobuf decoding failed: {e})")))?;
        // Calls inlined first: what follows sees one flat graph.
        Graph::from_graph_def(super::function::inline_calls(graph)?)
    }

    pub fn from_graph_def(graph: GraphDef) -> Result<Graph> {
        // TF1 loop frames become While nodes first: what follows sees no cycles.
        let graph = super::frames::to_while(graph)?;
        let library = graph.library.unwrap_or_default();
        let nodes = graph.node;
        if nodes.is_empty() {
            return Err(Error::invalid_model("the graph has no nodes"));
        }
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(Error::invalid_model(format!("node #{i} ({}) has no name", n.op)));
            }
            if index.insert(n.name.clone(), i).is_some() {
                return Err(Error::invalid_model(format!("two nodes are named `{}`", n.name)));
            }
        }
        let mut inputs = Vec::with_capacity(nodes.len());
        let mut controls = Vec::with_capacity(nodes.len());
        for n in &nodes {
            let mut data = Vec::new();
            let mut ctrl = Vec::new();
            for s in &n.input {
                let parsed = parse_input(s).map_err(|e| Error::invalid_model(format!("{} `{}`: {e}", n.op, n.name)))?;
                let (target, slot) = match parsed {
                    InputName::Data { node, slot } => (node, Some(slot)),
                    InputName::Control(node) => (node, None),
                };
                let &target_index = index.get(target).ok_or_else(|| {
                    Error::invalid_model(format!(
                        "{} `{}`: input `{s}` names a node that is not in the graph",
                        n.op, n.name
                    ))
                })?;
                match slot {
                    Some(slot) => data.push(InputRef { node: target_index, slot }),
                    None => ctrl.push(target_index),
                }
            }
            inputs.push(data);
            controls.push(ctrl);
        }
        let order = topological_order(&nodes, &inputs, &controls)?;
        Ok(Graph { nodes, inputs, controls, order, library, index })
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The output node: the one named, or else the graph's single sink.
    ///
    /// A sink is a node nothing consumes, by data or control edge. `NoOp`s are not
    /// outputs (TF2 exports hang one off the final `Identity`), and neither are
    /// stray `Const`s and `Placeholder`s that feed nothing.
    pub fn output(&self, requested: Option<&str>) -> Result<usize> {
        if let Some(name) = requested {
            let name = name.strip_suffix(":0").unwrap_or(name);
            return self.node_index(name).ok_or_else(|| {
                Error::bad_input(format!("--output-node `{name}`: there is no node of that name in the model"))
            });
        }
        let mut consumed = vec![false; self.nodes.len()];
        for (data, ctrl) in self.inputs.iter().zip(&self.controls) {
            for i in data.iter().map(|r| r.node).chain(ctrl.iter().copied()) {
                if let Some(c) = consumed.get_mut(i) {
                    *c = true;
                }
            }
        }
        let sinks: Vec<usize> = self
            .nodes
            .iter()
            .zip(&consumed)
            .enumerate()
            .filter(|(_, (n, used))| !**used && !matches!(n.op.as_str(), "NoOp" | "Const" | "Placeholder"))
            .map(|(i, _)| i)
            .collect();
        match sinks.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::invalid_model(
                "the graph has no output node (every node is consumed, or only constants and placeholders are left)",
            )),
            many => {
                let names: Vec<String> =
                    many.iter().take(10).filter_map(|&i| self.nodes.get(i)).map(|n| format!("`{}`", n.name)).collect();
                Err(Error::bad_input(format!(
                    "the graph has {} possible output nodes ({}{}); choose one with --output-node",
                    many.len(),
                    names.join(", "),
                    if many.len() > 10 { ", ..." } else { "" }
                )))
            }
        }
    }

    /// The nodes `output` depends on through data edges (itself included), in
    /// topological order. Control edges are not followed: they carry no values.
    pub fn data_ancestors(&self, output: usize) -> Vec<usize> {
        self.data_ancestors_of(&[output])
    }

    /// Whether node `c` is the pivot of a TF1 `tf.cond` branch, an Identity of a
    /// `Switch` output: a branch's constants hang on it by a control edge, which
    /// is how TensorFlow makes them dead when the branch is not taken. Such control
    /// edges are followed as if they carried data; no other control edge is.
    fn is_cond_pivot(&self, c: usize) -> bool {
        let producer = |i: usize| self.inputs.get(i).and_then(|r| r.first()).and_then(|r| self.nodes.get(r.node));
        self.nodes.get(c).is_some_and(|n| n.op == "Identity") && producer(c).is_some_and(|p| p.op == "Switch")
    }

    /// [`data_ancestors`](Graph::data_ancestors) of several outputs at once (and
    /// the `tf.cond` pivots they hang on, see [`Graph::is_cond_pivot`]).
    pub fn data_ancestors_of(&self, outputs: &[usize]) -> Vec<usize> {
        let mut needed = vec![false; self.nodes.len()];
        for &output in outputs {
            if let Some(n) = needed.get_mut(output) {
                *n = true;
            }
        }
        // `order` is topological, so walking it backwards visits every consumer
        // before its producers: one pass marks all ancestors, with no recursion.
        for &i in self.order.iter().rev() {
            if needed.get(i).copied().unwrap_or(false) {
                let pivots = self.controls.get(i).into_iter().flatten().copied().filter(|&c| self.is_cond_pivot(c));
                for n in self.inputs.get(i).into_iter().flatten().map(|r| r.node).chain(pivots) {
                    if let Some(n) = needed.get_mut(n) {
                        *n = true;
                    }
                }
            }
        }
        self.order.iter().copied().filter(|&i| needed.get(i).copied().unwrap_or(false)).collect()
    }

    /// How often each op type occurs among `nodes` (all nodes when `None`).
    pub fn op_histogram(&self, nodes: Option<&[usize]>) -> BTreeMap<String, usize> {
        let mut hist = BTreeMap::new();
        let all: Vec<usize>;
        let nodes = match nodes {
            Some(n) => n,
            None => {
                all = (0..self.nodes.len()).collect();
                &all
            }
        };
        for n in nodes.iter().filter_map(|&i| self.nodes.get(i)) {
            let count: &mut usize = hist.entry(n.op.clone()).or_insert(0);
            *count = count.saturating_add(1);
        }
        hist
    }
}

/// Kahn's algorithm over data and control edges. Iterative, so a graph of any depth
/// is ordered without recursion; nodes left over are on (or behind) a cycle.
fn topological_order(nodes: &[NodeDef], inputs: &[Vec<InputRef>], controls: &[Vec<usize>]) -> Result<Vec<usize>> {
    let n = nodes.len();
    let mut pending = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for ((i, ins), ctrl) in inputs.iter().enumerate().zip(controls) {
        for producer in ins.iter().map(|r| r.node).chain(ctrl.iter().copied()) {
            // Every reference was resolved to a node of the graph when it was read.
            if let (Some(p), Some(c)) = (pending.get_mut(i), consumers.get_mut(producer)) {
                *p = p.saturating_add(1);
                c.push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| pending.get(i) == Some(&0)).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop() {
        order.push(i);
        for &c in consumers.get(i).into_iter().flatten().rev() {
            if let Some(p) = pending.get_mut(c) {
                // Counted once per edge above: never below zero.
                *p = p.saturating_sub(1);
                if *p == 0 {
                    ready.push(c);
                }
            }
        }
    }
    if order.len() < n {
        let mut stuck: Vec<&str> =
            nodes.iter().zip(&pending).filter(|(_, p)| **p > 0).map(|(node, _)| node.name.as_str()).collect();
        let total = stuck.len();
        stuck.truncate(5);
        return Err(Error::invalid_model(format!(
            "the graph has a cycle through {total} node(s), among them `{}`{} (TF1 control-flow loops are not supported)",
            stuck.join("`, `"),
            if total > 5 { ", ..." } else { "" }
        )));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::super::proto::build::*;
    use super::*;

    #[test]
    fn parses_input_names() {
        assert_eq!(parse_input("a"), Ok(InputName::Data { node: "a", slot: 0 }));
        assert_eq!(parse_input("scope/a:2"), Ok(InputName::Data { node: "scope/a", slot: 2 }));
        assert_eq!(parse_input("^init"), Ok(InputName::Control("init")));
        assert!(parse_input("a:x").is_err());
        assert!(parse_input(":1").is_err());
        assert!(parse_input("^").is_err());
        assert!(parse_input("").is_err());
    }

    #[test]
    fn orders_a_deep_chain_without_recursion() {
        let n = 100_000;
        let mut nodes = vec![placeholder("x", &[1])];
        for i in 1..n {
            let prev = if i == 1 { "x".to_string() } else { format!("n{}", i - 1) };
            nodes.push(node(&format!("n{i}"), "Identity", &[&prev]));
        }
        nodes.reverse(); // worst case for a naive order: consumers first
        let g = Graph::from_graph_def(graph(nodes)).unwrap();
        assert_eq!(g.order.len(), n);
        let out = g.output(None).unwrap();
        assert_eq!(g.nodes[out].name, format!("n{}", n - 1));
        assert_eq!(g.data_ancestors(out).len(), n);
        let pos: HashMap<usize, usize> = g.order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        for (i, ins) in g.inputs.iter().enumerate() {
            for r in ins {
                assert!(pos[&r.node] < pos[&i]);
            }
        }
    }

    #[test]
    fn reports_a_cycle_by_name() {
        let g = graph(vec![node("a", "Identity", &["b"]), node("b", "Identity", &["a"])]);
        let err = format!("{:#}", Graph::from_graph_def(g).unwrap_err());
        assert!(err.contains("cycle") && err.contains("`a`"), "{err}");
    }

    #[test]
    fn reports_a_dangling_input() {
        let g = graph(vec![placeholder("x", &[1]), node("y", "Relu", &["x", "missing:0"])]);
        let err = format!("{:#}", Graph::from_graph_def(g).unwrap_err());
        assert!(err.contains("Relu `y`") && err.contains("missing:0"), "{err}");
    }

    #[test]
    fn sink_ignores_noop_and_control_edges() {
        let g = graph(vec![
            placeholder("x", &[1]),
            node("NoOp", "NoOp", &[]),
            node("Identity", "Identity", &["x", "^NoOp"]),
            const_f32("unused", &[1], &[1.0]),
        ]);
        let g = Graph::from_graph_def(g).unwrap();
        assert_eq!(g.nodes[g.output(None).unwrap()].name, "Identity");
    }

    #[test]
    fn several_sinks_ask_for_output_node() {
        let g = graph(vec![placeholder("x", &[1]), node("a", "Relu", &["x"]), node("b", "Relu", &["x"])]);
        let g = Graph::from_graph_def(g).unwrap();
        let err = format!("{:#}", g.output(None).unwrap_err());
        assert!(err.contains("--output-node") && err.contains("`a`") && err.contains("`b`"), "{err}");
        assert_eq!(g.nodes[g.output(Some("b:0")).unwrap()].name, "b");
        assert!(format!("{:#}", g.output(Some("nope")).unwrap_err()).contains("`nope`"));
    }

    #[test]
    fn garbage_is_not_a_graph() {
        let err = format!("{:#}", Graph::decode(b"\xff\xff\xff\xff not a protobuf").unwrap_err());
        assert!(err.contains("not a TensorFlow GraphDef"), "{err}");
    }
}
