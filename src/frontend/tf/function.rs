//! Function libraries: `PartitionedCall` / `StatefulPartitionedCall` inlined at
//! import, before the graph is ordered.
//!
//! A TF2 graph that was not frozen by grappler (a concrete function's
//! `graph.as_graph_def()`, a SavedModel's signature) calls the functions of its
//! `library`. Each call is replaced by its callee's body, nested calls included:
//! body node `inner` of call `call` becomes `call/inner`, the callee's arguments
//! are bound to the call's data inputs, and an `IdentityN` named `call` returns
//! the callee's `ret` values in the order of its output arguments, so a consumer's
//! `call:k` and `^call` keep their meaning.
//!
//! Inside a function, a node's output is named `node:out_arg:index`: the position
//! is the sum of the sizes of the op's output arguments before `out_arg`, plus
//! `index`. That needs each op's output-argument layout ([`MULTI_OUTPUT`], and
//! a call's outputs are its op's one list argument `output`, whatever the
//! callee names them); an op tfe-run does not know is
//! refused, never guessed. Depth and the size of the inlined graph are bounded:
//! a file of a few bytes can call a function that calls itself twice, 40 deep.

// Parses bytes from others: the no-panic, checked-arithmetic lints of
// `frontend/mod.rs` hold here too (lint levels are inherited by child modules).

use std::collections::HashMap;

use anyhow::Result;
use prost::Message;

use super::proto::tensorflow::attr_value::{ListValue, Value};
use super::proto::tensorflow::op_def::ArgDef;
use super::proto::tensorflow::{FunctionDef, FunctionDefLibrary};
use super::proto::{AttrValue, GraphDef, NodeDef, NodeExt};
use crate::error::Error;

/// The op types that call a function of the library (attribute `f`).
pub const CALL_OPS: &[&str] = &["PartitionedCall", "StatefulPartitionedCall"];

/// Calls nested deeper than this are refused.
pub const MAX_DEPTH: usize = 32;

/// The inlined graph may hold at most this many nodes ...
pub const MAX_NODES: usize = 1 << 20;

/// ... and this many bytes of copied node definitions (their attributes hold
/// constants: a large constant in a function called many times adds up).
pub const MAX_BYTES: usize = 1 << 30;

/// The ops with more than one output argument, each argument of size 1, as
/// TensorFlow 2.21's op registry declares them (`op_def_registry.get(op).output_arg`).
/// Every other op tfe-run knows has a single output argument (a list for Split,
/// Unpack, IdentityN, While: its index is the position), or none (NoOp).
const MULTI_OUTPUT: &[(&str, &[&str])] = &[
    ("FusedBatchNorm", &["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"]),
    ("FusedBatchNormV2", &["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2"]),
    (
        "FusedBatchNormV3",
        &["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"],
    ),
    ("Switch", &["output_false", "output_true"]),
    ("Merge", &["output", "value_index"]),
    ("TopKV2", &["values", "indices"]),
    ("Unique", &["y", "idx"]),
    ("MaxPoolWithArgmax", &["output", "argmax"]),
    ("TensorArrayV3", &["handle", "flow"]),
];

/// Ops outside the op table whose outputs a function body may name, each with a
/// single output argument: variable reads (a SavedModel's functions), TF1 control
/// flow, `If`, and the `*Like` fills.
const OTHER_SINGLE_OUTPUT: &[&str] = &[
    "ReadVariableOp",
    "VarHandleOp",
    "VariableV2",
    "If",
    "StatelessIf",
    "Enter",
    "Exit",
    "NextIteration",
    "LoopCond",
    "ZerosLike",
    "OnesLike",
];

pub fn is_call(node: &NodeDef) -> bool {
    CALL_OPS.contains(&node.op.as_str())
}

/// The graph with every call replaced by its callee's body. The library is kept:
/// loops name their condition and body functions in it.
pub fn inline_calls(graph: GraphDef) -> Result<GraphDef> {
    inline_calls_within(graph, MAX_NODES)
}

fn inline_calls_within(graph: GraphDef, max_nodes: usize) -> Result<GraphDef> {
    if !graph.node.iter().any(is_call) {
        return Ok(graph);
    }
    let mut graph = graph;
    let nodes = std::mem::take(&mut graph.node);
    let lib = Library::new(graph.library.as_ref())?;
    let mut inliner = Inliner { lib: &lib, stack: Vec::new(), nodes: nodes.len(), bytes: 0, max_nodes };
    let nodes = inliner.inline_nodes(nodes)?;
    drop(inliner);
    drop(lib);
    graph.node = nodes;
    Ok(graph)
}

/// `nodes` (a loop body's, already instantiated) with their calls inlined from
/// `lib`; `count` is the caller's running node count, held to [`MAX_NODES`].
pub fn inline_calls_in(nodes: Vec<NodeDef>, lib: &Library<'_>, count: &mut usize) -> Result<Vec<NodeDef>> {
    if !nodes.iter().any(is_call) {
        return Ok(nodes);
    }
    let mut inliner = Inliner { lib, stack: Vec::new(), nodes: *count, bytes: 0, max_nodes: MAX_NODES };
    let nodes = inliner.inline_nodes(nodes)?;
    *count = inliner.nodes;
    Ok(nodes)
}

/// The functions of a graph's library, by name.
pub struct Library<'a> {
    functions: HashMap<&'a str, &'a FunctionDef>,
}

impl<'a> Library<'a> {
    pub fn new(library: Option<&'a FunctionDefLibrary>) -> Result<Library<'a>> {
        let mut functions = HashMap::new();
        for f in library.map_or(&[][..], |l| l.function.as_slice()) {
            let name = f.signature.as_ref().map_or("", |s| s.name.as_str());
            if name.is_empty() {
                return Err(Error::invalid_model("the graph's function library has a function without a name"));
            }
            if functions.insert(name, f).is_some() {
                return Err(Error::invalid_model(format!("the graph's function library defines `{name}` twice")));
            }
        }
        Ok(Library { functions })
    }

    /// The function `name`, which `caller` (a node's description) calls.
    pub fn get(&self, name: &str, caller: &str) -> Result<&'a FunctionDef> {
        self.functions.get(name).copied().ok_or_else(|| {
            Error::invalid_model(format!(
                "{caller}: calls function `{name}`, which is not in the graph's function library"
            ))
        })
    }
}

/// The function a node names in its attribute `attr` (`f` for a call, `cond`
/// and `body` for a loop).
pub fn function_attr(node: &NodeDef, attr: &str) -> Result<String> {
    match node.attr_value(attr) {
        Some(Value::Func(f)) if !f.name.is_empty() => Ok(f.name.clone()),
        Some(_) => Err(node.attr_error(attr, "is not a function name")),
        None => Err(node.attr_error(attr, "is missing")),
    }
}

/// A function body instantiated in a graph: its nodes, renamed under a prefix,
/// with graph-format inputs, and its return values (graph-format tensor names,
/// in the order of the signature's output arguments).
pub struct Instance {
    pub nodes: Vec<NodeDef>,
    pub outputs: Vec<String>,
}

/// The body of `fdef` with its nodes renamed `prefix/name`, its arguments
/// bound to `args` (graph-format tensor names), its calls not yet inlined.
/// `caller` describes who instantiates it, for messages.
pub fn instantiate(fdef: &FunctionDef, prefix: &str, args: &[String], caller: &str) -> Result<Instance> {
    let sig = fdef
        .signature
        .as_ref()
        .ok_or_else(|| Error::invalid_model(format!("{caller}: the callee has no signature")))?;
    let fname = sig.name.as_str();
    let refuse_list = |a: &ArgDef, what: &str| {
        Error::unsupported(format!(
            "{caller}: function `{fname}` has a list-typed {what} argument `{}`, which tfe-run does not inline",
            a.name
        ))
    };
    if let Some(a) = sig.input_arg.iter().find(|a| is_list(a)) {
        return Err(refuse_list(a, "input"));
    }
    if let Some(a) = sig.output_arg.iter().find(|a| is_list(a)) {
        return Err(refuse_list(a, "output"));
    }
    if args.len() != sig.input_arg.len() {
        return Err(Error::invalid_model(format!(
            "{caller}: passes {} input(s) to function `{fname}`, which takes {}",
            args.len(),
            sig.input_arg.len()
        )));
    }
    let bound: HashMap<&str, &str> =
        sig.input_arg.iter().map(|a| a.name.as_str()).zip(args.iter().map(String::as_str)).collect();
    let mut body: HashMap<&str, &NodeDef> = HashMap::with_capacity(fdef.node_def.len());
    for n in &fdef.node_def {
        if n.name.is_empty() || bound.contains_key(n.name.as_str()) || body.insert(n.name.as_str(), n).is_some() {
            return Err(Error::invalid_model(format!(
                "function `{fname}`: node name `{}` is empty or not unique",
                n.name
            )));
        }
    }
    let scope = Scope { fname, prefix, bound: &bound, body: &body };
    let mut nodes = Vec::with_capacity(fdef.node_def.len());
    for n in &fdef.node_def {
        if let Some((key, _)) = n.attr.iter().find(|(_, v)| matches!(v.value, Some(Value::Placeholder(_)))) {
            return Err(Error::unsupported(format!(
                "function `{fname}`: {}: attribute `{key}` is a placeholder for an attribute of the function, \
                 which tfe-run does not substitute",
                n.describe()
            )));
        }
        let input = n.input.iter().map(|s| scope.resolve(s, n)).collect::<Result<Vec<_>>>()?;
        nodes.push(NodeDef { name: format!("{prefix}/{}", n.name), input, device: String::new(), ..n.clone() });
    }
    let outputs = sig
        .output_arg
        .iter()
        .map(|a| {
            let ret = fdef.ret.get(&a.name).ok_or_else(|| {
                Error::invalid_model(format!("function `{fname}`: output argument `{}` has no return value", a.name))
            })?;
            if ret.starts_with('^') {
                return Err(Error::invalid_model(format!("function `{fname}`: returns a control input `{ret}`")));
            }
            scope.resolve_tensor(ret, &format!("return value `{}`", a.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Instance { nodes, outputs })
}

fn is_list(a: &ArgDef) -> bool {
    !a.number_attr.is_empty() || !a.type_list_attr.is_empty()
}

/// What a function body's input names resolve against.
struct Scope<'s, 'a> {
    fname: &'s str,
    prefix: &'s str,
    bound: &'s HashMap<&'s str, &'s str>,
    body: &'s HashMap<&'s str, &'a NodeDef>,
}

impl Scope<'_, '_> {
    /// One entry of a body node's `input`, in graph format.
    fn resolve(&self, s: &str, node: &NodeDef) -> Result<String> {
        let Some(control) = s.strip_prefix('^') else {
            return self.resolve_tensor(s, &node.describe());
        };
        if self.body.contains_key(control) {
            return Ok(format!("^{}/{control}", self.prefix));
        }
        match self.bound.get(control) {
            // A control dependency on an argument: on the node that produces it.
            Some(arg) => {
                let producer = arg.trim_start_matches('^');
                let producer = producer.rsplit_once(':').map_or(producer, |(n, _)| n);
                Ok(format!("^{producer}"))
            }
            None => Err(self.unknown(s, &node.describe())),
        }
    }

    /// A data reference, `arg` or `node:out_arg:index`, as `name:slot`.
    fn resolve_tensor(&self, s: &str, what: &str) -> Result<String> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [arg] => self.bound.get(arg).map(|b| b.to_string()).ok_or_else(|| self.unknown(s, what)),
            [node, out, index] => {
                let def = self.body.get(node).ok_or_else(|| self.unknown(s, what))?;
                let index: usize = index.parse().map_err(|_| {
                    Error::invalid_model(format!("function `{}`: {what}: input `{s}` has an invalid index", self.fname))
                })?;
                let slot = output_slot(def, out, index)
                    .map_err(|e| e.context(format!("function `{}`: {what}: input `{s}`", self.fname)))?;
                Ok(match slot {
                    0 => format!("{}/{node}", self.prefix),
                    k => format!("{}/{node}:{k}", self.prefix),
                })
            }
            _ => Err(Error::invalid_model(format!(
                "function `{}`: {what}: input `{s}` is neither an argument nor `node:output:index`",
                self.fname
            ))),
        }
    }

    fn unknown(&self, s: &str, what: &str) -> anyhow::Error {
        Error::invalid_model(format!(
            "function `{}`: {what}: input `{s}` names neither an argument nor a node of the function",
            self.fname
        ))
    }
}

/// The position among `node`'s outputs of `out_arg:index`.
fn output_slot(node: &NodeDef, out_arg: &str, index: usize) -> Result<usize> {
    let args: Vec<&str> = if let Some((_, args)) = MULTI_OUTPUT.iter().find(|(op, _)| *op == node.op) {
        args.to_vec()
    } else if super::is_supported(&node.op) || is_call(node) || OTHER_SINGLE_OUTPUT.contains(&node.op.as_str()) {
        // One output argument: the index is the position.
        return Ok(index);
    } else {
        return Err(Error::unsupported(format!(
            "{}: tfe-run does not know the output arguments of op {}, so cannot tell which output this is",
            node.describe(),
            node.op
        )));
    };
    let at = args.iter().position(|a| *a == out_arg).ok_or_else(|| {
        Error::invalid_model(format!(
            "{} has no output argument `{out_arg}` (it has {})",
            node.describe(),
            args.join(", ")
        ))
    })?;
    if index != 0 {
        return Err(Error::invalid_model(format!(
            "{}: output argument `{out_arg}` is a single tensor, index {index} does not exist",
            node.describe()
        )));
    }
    Ok(at)
}

/// Output `slot` of `node` as a function body names it, `out_arg:index` (the
/// inverse of [`output_slot`]): how a TF1 loop frame's nodes are written into the
/// functions of the While that replaces it.
pub fn function_output_name(node: &NodeDef, slot: usize) -> Result<String> {
    if let Some((_, args)) = MULTI_OUTPUT.iter().find(|(op, _)| *op == node.op) {
        return args.get(slot).map(|a| format!("{a}:0")).ok_or_else(|| {
            Error::invalid_model(format!("{} has no output {slot} (it has {})", node.describe(), args.len()))
        });
    }
    // One output argument: the position is the index (its name is not checked).
    output_slot(node, "output", slot).map(|k| format!("output:{k}"))
}

/// Inlines calls, depth first, within the bounds.
struct Inliner<'l, 'a> {
    lib: &'l Library<'a>,
    /// The functions being inlined, outermost first (recursion and depth).
    stack: Vec<String>,
    nodes: usize,
    bytes: usize,
    max_nodes: usize,
}

impl Inliner<'_, '_> {
    fn inline_nodes(&mut self, nodes: Vec<NodeDef>) -> Result<Vec<NodeDef>> {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            if is_call(&n) {
                self.inline_call(&n, &mut out)?;
            } else {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn inline_call(&mut self, call: &NodeDef, out: &mut Vec<NodeDef>) -> Result<()> {
        let caller = call.describe();
        let fname = function_attr(call, "f")?;
        if let Some(at) = self.stack.iter().position(|f| *f == fname) {
            let cycle = self.stack.get(at..).unwrap_or_default().join("` → `");
            return Err(Error::unsupported(format!(
                "{caller}: function `{fname}` is recursive (`{cycle}` → `{fname}`), so it cannot be inlined"
            )));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Error::unsupported(format!(
                "{caller}: calls nested more than {MAX_DEPTH} deep (`{}` → ...), which tfe-run does not inline",
                self.stack.first().map_or("", String::as_str)
            )));
        }
        let fdef = self.lib.get(&fname, &caller)?;
        let (data, controls): (Vec<&String>, Vec<&String>) = call.input.iter().partition(|s| !s.starts_with('^'));
        let args: Vec<String> = data.into_iter().cloned().collect();
        let instance = instantiate(fdef, &call.name, &args, &caller)?;
        self.count(&instance.nodes, &fname)?;
        self.stack.push(fname);
        let body = self.inline_nodes(instance.nodes)?;
        self.stack.pop();
        out.extend(body);
        let mut identity = NodeDef {
            name: call.name.clone(),
            op: "IdentityN".into(),
            input: instance.outputs.into_iter().chain(controls.into_iter().cloned()).collect(),
            ..Default::default()
        };
        if let Some(tout) = call.attr.get("Tout") {
            identity.attr.insert("T".into(), tout.clone());
        } else {
            identity.attr.insert("T".into(), AttrValue { value: Some(Value::List(ListValue::default())) });
        }
        out.push(identity);
        Ok(())
    }

    fn count(&mut self, nodes: &[NodeDef], fname: &str) -> Result<()> {
        let bytes = nodes.iter().map(|n| n.encoded_len()).fold(0usize, usize::saturating_add);
        self.nodes = self.nodes.saturating_add(nodes.len()).saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > self.max_nodes || self.bytes > MAX_BYTES {
            return Err(Error::unsupported(format!(
                "inlining the graph's function calls makes more than {} nodes or {} MiB of nodes \
                 (at a call of `{fname}`)",
                self.max_nodes,
                MAX_BYTES >> 20
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use super::super::proto::build::*;
    use super::super::proto::tensorflow::{NameAttrList, OpDef};
    use super::*;
    use crate::error::exit_code_of;

    fn call(name: &str, f: &str, inputs: &[&str]) -> NodeDef {
        let f = NameAttrList { name: f.into(), attr: Default::default() };
        with_attr(node(name, "PartitionedCall", inputs), "f", Value::Func(f))
    }

    fn arg(name: &str) -> ArgDef {
        ArgDef { name: name.into(), r#type: 1, ..Default::default() }
    }

    /// A function of one argument `x` and one output `y`.
    fn function(name: &str, body: Vec<NodeDef>, ret: &str) -> FunctionDef {
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: vec![arg("x")],
                output_arg: vec![arg("y")],
                ..Default::default()
            }),
            node_def: body,
            ret: [("y".to_string(), ret.to_string())].into(),
            ..Default::default()
        }
    }

    fn with_library(nodes: Vec<NodeDef>, functions: Vec<FunctionDef>) -> GraphDef {
        GraphDef { library: Some(FunctionDefLibrary { function: functions, ..Default::default() }), ..graph(nodes) }
    }

    fn refusal(g: GraphDef) -> (String, u8) {
        let err = inline_calls(g).unwrap_err();
        (format!("{err:#}"), exit_code_of(&err, false))
    }

    fn testdata(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
    }

    #[test]
    fn nested_calls_written_by_tensorflow_are_inlined_and_rewired() {
        let bytes = std::fs::read(testdata("loops/calls_nested_mlp.pb")).unwrap();
        let g = inline_calls(GraphDef::decode(bytes.as_slice()).unwrap()).unwrap();
        assert!(!g.node.iter().any(is_call));
        let find = |name: &str| g.node.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no `{name}`"));
        // model -> head -> hidden: the innermost Split under both call names, its
        // second half (`split:output:1`) read as slot 1, the callee's second output
        // (`hidden:identity_1:0`) through the IdentityN that replaced the call.
        let call = find("PartitionedCall");
        assert_eq!(call.op, "IdentityN");
        let split = g.node.iter().find(|n| n.op == "Split").unwrap();
        assert!(split.name.starts_with("PartitionedCall/PartitionedCall/"), "{}", split.name);
        let relus: Vec<&NodeDef> = g.node.iter().filter(|n| n.op == "Relu").collect();
        assert_eq!(relus.len(), 2);
        let mut relu_inputs: Vec<&str> = relus.iter().map(|n| n.input[0].as_str()).collect();
        relu_inputs.sort();
        assert_eq!(relu_inputs, [split.name.clone(), format!("{}:1", split.name)]);
        let concat = g.node.iter().find(|n| n.op == "ConcatV2").unwrap();
        let inner = concat.input[0].rsplit_once(':').unwrap();
        assert_eq!(inner.1, "1", "head concatenates hidden's second output first: {:?}", concat.input);
        assert_eq!(find(inner.0).op, "IdentityN");
        // And the flat graph orders (every input resolves).
        super::super::Graph::from_graph_def(g).unwrap();
    }

    #[test]
    fn a_recursive_function_is_refused() {
        let f = function("f", vec![call("again", "f", &["x"])], "again:y:0");
        let g = with_library(vec![placeholder("x", &[1]), call("c", "f", &["x"])], vec![f]);
        let (err, code) = refusal(g);
        assert!(err.contains("PartitionedCall `c/again`: function `f` is recursive (`f` → `f`)"), "{err}");
        assert_eq!(code, crate::error::exit::UNSUPPORTED);
    }

    #[test]
    fn a_call_to_a_missing_function_is_refused() {
        let g = with_library(vec![placeholder("x", &[1]), call("c", "nowhere", &["x"])], vec![]);
        let (err, code) = refusal(g);
        assert!(
            err.contains("PartitionedCall `c`: calls function `nowhere`, which is not in the graph's function library"),
            "{err}"
        );
        assert_eq!(code, crate::error::exit::INVALID_MODEL);
    }

    #[test]
    fn calls_nested_too_deep_are_refused() {
        let depth = MAX_DEPTH + 5;
        let mut functions: Vec<FunctionDef> = (0..depth)
            .map(|i| function(&format!("f{i}"), vec![call("c", &format!("f{}", i + 1), &["x"])], "c:y:0"))
            .collect();
        functions.push(function(&format!("f{depth}"), vec![node("r", "Relu", &["x"])], "r:activations:0"));
        let g = with_library(vec![placeholder("x", &[1]), call("top", "f0", &["x"])], functions);
        let (err, code) = refusal(g);
        assert!(err.contains(&format!("calls nested more than {MAX_DEPTH} deep (`f0` → ...)")), "{err}");
        assert_eq!(code, crate::error::exit::UNSUPPORTED);
    }

    #[test]
    fn a_call_tree_that_grows_past_the_node_bound_is_refused() {
        // Each level calls the next twice: 2^20 copies of the leaf from 40 bytes of
        // functions. Refused by the bound (a small one here), never built.
        let mut functions: Vec<FunctionDef> = (0..20)
            .map(|i| {
                let next = format!("f{}", i + 1);
                let body = vec![call("a", &next, &["x"]), call("b", &next, &["a:y:0"])];
                function(&format!("f{i}"), body, "b:y:0")
            })
            .collect();
        functions.push(function("f20", vec![node("r", "Relu", &["x"])], "r:activations:0"));
        let g = with_library(vec![placeholder("x", &[1]), call("top", "f0", &["x"])], functions);
        let err = inline_calls_within(g.clone(), 5000).unwrap_err();
        assert!(format!("{err:#}").contains("makes more than 5000 nodes"), "{err:#}");
        // Within the bound, the same shape of graph inlines: 4 levels, 16 leaves.
        let mut small = g;
        let lib = small.library.as_mut().unwrap();
        lib.function.truncate(4);
        lib.function.push(function("f4", vec![node("r", "Relu", &["x"])], "r:activations:0"));
        let flat = inline_calls_within(small, 5000).unwrap();
        assert_eq!(flat.node.iter().filter(|n| n.op == "Relu").count(), 16);
        assert!(flat.node.iter().any(|n| n.name == "top/b/b/b/b/r"));
    }

    #[test]
    fn outputs_are_found_by_the_output_argument_layout() {
        let bn = node("bn", "FusedBatchNormV3", &[]);
        assert_eq!(output_slot(&bn, "y", 0).unwrap(), 0);
        assert_eq!(output_slot(&bn, "reserve_space_1", 0).unwrap(), 3);
        assert!(output_slot(&bn, "reserve_space_1", 1).is_err());
        assert!(format!("{:#}", output_slot(&bn, "mean", 0).unwrap_err()).contains("no output argument `mean`"));
        assert_eq!(output_slot(&node("s", "Switch", &[]), "output_true", 0).unwrap(), 1);
        assert_eq!(output_slot(&node("s", "Split", &[]), "output", 2).unwrap(), 2);
        // An op whose layout is not known is refused, naming it, not guessed.
        let err = format!("{:#}", output_slot(&node("q", "QuantizeV2", &[]), "output", 0).unwrap_err());
        assert!(err.contains("QuantizeV2 `q`: tfe-run does not know the output arguments of op QuantizeV2"), "{err}");
    }

    #[test]
    fn a_function_input_with_an_unknown_layout_is_refused_naming_the_node() {
        let f = function(
            "f",
            vec![node("q", "QuantizeV2", &["x"]), node("r", "Relu", &["q:output_min:0"])],
            "r:activations:0",
        );
        let g = with_library(vec![placeholder("x", &[1]), call("c", "f", &["x"])], vec![f]);
        let (err, code) = refusal(g);
        assert!(err.contains("function `f`: Relu `r`: input `q:output_min:0`"), "{err}");
        assert!(err.contains("op QuantizeV2"), "{err}");
        assert_eq!(code, crate::error::exit::UNSUPPORTED);
    }

    #[test]
    fn control_inputs_are_kept_on_renamed_nodes() {
        let body = vec![node("n", "NoOp", &["^x"]), node("r", "Relu", &["x", "^n"])];
        let f = function("f", body, "r:activations:0");
        let g = with_library(
            vec![
                placeholder("x", &[1]),
                node("d", "NoOp", &[]),
                call("c", "f", &["x", "^d"]),
                node("out", "Relu", &["c", "^c"]),
            ],
            vec![f],
        );
        let g = inline_calls(g).unwrap();
        let find = |name: &str| g.node.iter().find(|n| n.name == name).unwrap();
        assert_eq!(find("c/n").input, ["^x"]);
        assert_eq!(find("c/r").input, ["x", "^c/n"]);
        assert_eq!(find("c").input, ["c/r", "^d"]);
        assert_eq!(find("out").input, ["c", "^c"]);
    }
}
