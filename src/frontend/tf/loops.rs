//! Loops, unrolled at import: a TF2 `While` / `StatelessWhile` (its `cond` and
//! `body` functions in the library, its loop variables as inputs), and a TF1
//! control-flow frame, which [`frames`](super::frames) rewrites into one first.
//!
//! The condition is instantiated on the current loop variables and built like
//! any graph: the builder's constant folding must decide it (a loop counter,
//! `maximum_iterations` and a TensorList's length are public), else the loop is
//! refused naming the node. While it holds, the body is instantiated once more,
//! under a prefix of its own (`while/body/3/...`), on the variables the last
//! iteration returned. The trip count is bounded by [`MAX_ITERATIONS`], and every
//! node instantiated counts against the inliner's node budget, so a loop of a few
//! bytes cannot make an unbounded plan.

// Reads models from others: the no-panic lints of `frontend/mod.rs` hold here too.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;

use super::function::{self, Library, MAX_DEPTH, MAX_NODES};
use super::graph::{Graph, InputName, InputRef, parse_input};
use super::proto::tensorflow::FunctionDef;
use super::proto::{GraphDef, NodeDef, NodeExt};
use super::{Node, ops, public_number};
use crate::error::Error;
use crate::frontend::builder::undecided;
use crate::frontend::{Builder, Feed, Public, Slot};
use crate::tensor::Tensor;

/// A loop that runs more iterations than this is refused.
pub const MAX_ITERATIONS: usize = 10_000;

/// The op that stands for a function argument in an instantiated body; it is
/// bound before the body is walked, never built.
const ARG_OP: &str = "_Arg";

/// Walks a graph in topological order, turning each node into builder requests,
/// and unrolls the loops it meets.
pub struct Walker<'a> {
    pub builder: Builder,
    library: Library<'a>,
    feeds: &'a BTreeMap<String, Feed>,
    public: &'a Public,
    /// Nodes instantiated so far by loops, against [`MAX_NODES`].
    instantiated: usize,
    /// The conditions and bodies of the loops being walked, outermost first
    /// (recursion and depth).
    stack: Vec<String>,
}

impl<'a> Walker<'a> {
    pub fn new(graph: &'a Graph, feeds: &'a BTreeMap<String, Feed>, public: &'a Public) -> Result<Walker<'a>> {
        Ok(Walker {
            builder: Builder::new(),
            library: Library::new(Some(&graph.library))?,
            feeds,
            public,
            instantiated: graph.nodes.len(),
            stack: Vec::new(),
        })
    }

    /// Build `nodes` (in topological order) of `graph`; `slots` holds the outputs
    /// of nodes already bound (a function's arguments), and receives the rest.
    /// Returns the nodes a decided TF1 `tf.cond` left dead (not built).
    pub fn walk(
        &mut self,
        graph: &Graph,
        nodes: &[usize],
        slots: &mut HashMap<usize, Vec<Slot>>,
    ) -> Result<HashSet<usize>> {
        let no_node = |i: usize| Error::invalid_model(format!("node {i} is not in the graph"));
        // The untaken side of every decided TF1 tf.cond: TensorFlow's dead tensors.
        let mut dead = Dead::default();
        for &i in nodes {
            if slots.contains_key(&i) {
                continue;
            }
            let node = Node::new(graph.nodes.get(i).ok_or_else(|| no_node(i))?);
            let refs = graph.inputs.get(i).ok_or_else(|| no_node(i))?;
            let live: Vec<&InputRef> = refs.iter().filter(|r| !dead.tensor(r)).collect();
            let controls = graph.controls.get(i).map_or(&[][..], Vec::as_slice);
            if node.op == "Merge" {
                // A Merge forwards the one live input of its branches.
                let [taken] = live.as_slice() else {
                    if live.is_empty() {
                        dead.nodes.insert(i);
                        slots.insert(i, Vec::new());
                        continue;
                    }
                    return Err(Error::unsupported(format!(
                        "{}: {} of its inputs are live; a tf.cond's Merge takes exactly one branch",
                        node.describe(),
                        live.len()
                    )));
                };
                let at = refs.iter().position(|r| r == *taken).unwrap_or(0);
                let input = bound_input(graph, slots, &node, taken)?;
                let index =
                    Tensor::Int(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), i64::try_from(at).unwrap_or(0)));
                slots.insert(i, vec![input, Builder::known(&node.origin, index)]);
                continue;
            }
            if live.len() < refs.len() || controls.iter().any(|c| dead.nodes.contains(c)) {
                dead.nodes.insert(i);
                slots.insert(i, Vec::new());
                continue;
            }
            let ins: Vec<Slot> = refs.iter().map(|r| bound_input(graph, slots, &node, r)).collect::<Result<_>>()?;
            if let Some(j) = ins.iter().position(|s| matches!(s, Slot::Unavailable)) {
                return Err(Error::unsupported(format!(
                    "{}: input `{}` is a training-only output, not available in an inference graph",
                    node.origin,
                    node.input.get(j).map_or("?", String::as_str)
                )));
            }
            let feed = self.feeds.get(&node.name);
            let outs = match (node.op.as_str(), feed) {
                ("Placeholder" | "PlaceholderWithDefault", _) if self.public.contains_key(&node.name) => {
                    vec![public_number(&node, self.public)?]
                }
                ("Placeholder" | "PlaceholderWithDefault", Some(feed)) => vec![self.builder.input(&node.origin, feed)],
                ("Placeholder", None) => {
                    // check_feeds names every unfed placeholder with a dtype; one without is odd.
                    return Err(Error::bad_input(format!(
                        "placeholder `{}` (which declares no dtype) is not fed",
                        node.name
                    )));
                }
                (op, _) if ops::LOOP_OPS.contains(&op) => self.unroll(&node, ins)?,
                ("If" | "StatelessIf", _) => self.branch(&node, ins)?,
                ("Switch", _) => {
                    let [data, predicate] = ins.as_slice() else {
                        return Err(Error::invalid_model(format!("{}: a Switch has two inputs", node.describe())));
                    };
                    // Output 1 is the data when the predicate holds, output 0 when not.
                    let taken = decide(&node, predicate, Decision::Cond)?;
                    dead.outputs.insert((i, usize::from(!taken)));
                    vec![data.clone(), data.clone()]
                }
                (ARG_OP, _) => {
                    return Err(Error::invalid_model(format!("{}: a function argument was not bound", node.origin)));
                }
                _ => ops::build(&mut self.builder, &node, &ins)?,
            };
            slots.insert(i, outs);
        }
        Ok(dead.nodes)
    }

    /// A While's outputs: its loop variables after the last iteration.
    fn unroll(&mut self, node: &Node<'_>, mut vars: Vec<Slot>) -> Result<Vec<Slot>> {
        let caller = node.describe();
        let cond = self.library.get(&function::function_attr(node, "cond")?, &caller)?;
        let body = self.library.get(&function::function_attr(node, "body")?, &caller)?;
        for name in [cond, body].iter().map(|f| function_name(f)) {
            if self.stack.iter().any(|f| f == name) {
                return Err(Error::unsupported(format!("{caller}: loop function `{name}` runs itself")));
            }
        }
        // Two names per loop: its condition and its body.
        if self.stack.len() >= MAX_DEPTH.saturating_mul(2) {
            return Err(Error::unsupported(format!("{caller}: loops nested more than {MAX_DEPTH} deep")));
        }
        let depth = self.stack.len();
        self.stack.extend([function_name(cond).to_string(), function_name(body).to_string()]);
        let result = self.iterate(node, cond, body, &mut vars);
        self.stack.truncate(depth);
        result.map(|()| vars)
    }

    /// An `If`/`StatelessIf`'s outputs: its predicate must be public, and the
    /// branch it picks is instantiated on the other inputs (the other is not read).
    fn branch(&mut self, node: &Node<'_>, ins: Vec<Slot>) -> Result<Vec<Slot>> {
        let caller = node.describe();
        let Some((predicate, args)) = ins.split_first() else {
            return Err(Error::invalid_model(format!("{caller}: an If needs its predicate input")));
        };
        let taken = decide(node, predicate, Decision::Cond)?;
        let attr = if taken { "then_branch" } else { "else_branch" };
        let f = self.library.get(&function::function_attr(node, attr)?, &caller)?;
        let name = function_name(f).to_string();
        if self.stack.contains(&name) {
            return Err(Error::unsupported(format!("{caller}: branch function `{name}` runs itself")));
        }
        if self.stack.len() >= MAX_DEPTH.saturating_mul(2) {
            return Err(Error::unsupported(format!("{caller}: control flow nested more than {MAX_DEPTH} deep")));
        }
        self.stack.push(name);
        let out = self.call(f, &format!("{}/{}", node.name, if taken { "then" } else { "else" }), args, &caller);
        self.stack.pop();
        out
    }

    fn iterate(&mut self, node: &Node<'_>, cond: &FunctionDef, body: &FunctionDef, vars: &mut Vec<Slot>) -> Result<()> {
        let caller = node.describe();
        for iteration in 0..=MAX_ITERATIONS {
            let decided = self.call(cond, &format!("{}/cond/{iteration}", node.name), vars, &caller)?;
            let [decided] = decided.as_slice() else {
                return Err(Error::invalid_model(format!(
                    "{caller}: its condition `{}` returns {} values, not one",
                    function_name(cond),
                    decided.len()
                )));
            };
            if !decide(node, decided, Decision::Loop)? {
                return Ok(());
            }
            if iteration == MAX_ITERATIONS {
                break;
            }
            let next = self.call(body, &format!("{}/body/{iteration}", node.name), vars, &caller)?;
            if next.len() != vars.len() {
                return Err(Error::invalid_model(format!(
                    "{caller}: its body `{}` returns {} loop variables, the loop has {}",
                    function_name(body),
                    next.len(),
                    vars.len()
                )));
            }
            *vars = next;
        }
        Err(Error::unsupported(format!(
            "{caller}: the loop runs more than {MAX_ITERATIONS} iterations, which tfe-run does not unroll"
        )))
    }

    /// The return values of `fdef` instantiated under `prefix` on `args`.
    fn call(&mut self, fdef: &FunctionDef, prefix: &str, args: &[Slot], caller: &str) -> Result<Vec<Slot>> {
        let arg_names: Vec<String> = (0..args.len()).map(|i| format!("{prefix}/_arg{i}")).collect();
        let instance = function::instantiate(fdef, prefix, &arg_names, caller)?;
        self.instantiated = self.instantiated.saturating_add(instance.nodes.len());
        if self.instantiated > MAX_NODES {
            return Err(Error::unsupported(format!(
                "{caller}: unrolling the loop makes more than {MAX_NODES} nodes (at {prefix})"
            )));
        }
        let mut nodes: Vec<NodeDef> = arg_names
            .iter()
            .map(|name| NodeDef { name: name.clone(), op: ARG_OP.into(), ..Default::default() })
            .collect();
        nodes.extend(function::inline_calls_in(instance.nodes, &self.library, &mut self.instantiated)?);
        let graph = Graph::from_graph_def(GraphDef { node: nodes, ..Default::default() })?;
        let outputs = instance
            .outputs
            .iter()
            .map(|t| match parse_input(t) {
                Ok(InputName::Data { node, slot }) => graph
                    .node_index(node)
                    .map(|i| (i, slot))
                    .ok_or_else(|| Error::invalid_model(format!("{caller}: return value `{t}` is not in the body"))),
                _ => Err(Error::invalid_model(format!("{caller}: return value `{t}` is not a tensor"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let needed: Vec<usize> = outputs.iter().map(|&(i, _)| i).collect();
        let order = graph.data_ancestors_of(&needed);
        let mut slots: HashMap<usize, Vec<Slot>> = HashMap::with_capacity(order.len());
        for (i, slot) in args.iter().enumerate() {
            slots.insert(i, vec![slot.clone()]);
        }
        self.walk(&graph, &order, &mut slots)?;
        outputs
            .iter()
            .map(|&(i, k)| {
                slots.get(&i).and_then(|s| s.get(k)).cloned().ok_or_else(|| {
                    Error::invalid_model(format!(
                        "{caller}: a return value of `{}` does not exist",
                        function_name(fdef)
                    ))
                })
            })
            .collect()
    }
}

fn function_name(f: &FunctionDef) -> &str {
    f.signature.as_ref().map_or("", |s| s.name.as_str())
}

/// What a public boolean decides: a loop's condition or a conditional's predicate.
#[derive(Clone, Copy)]
enum Decision {
    Loop,
    Cond,
}

/// Whether a loop condition or a conditional's predicate holds: it must be
/// public, one element.
fn decide(node: &Node<'_>, decided: &Slot, what: Decision) -> Result<bool> {
    match decided {
        Slot::Known(k) if k.tensor.len() == 1 => Ok(k.tensor.to_float().iter().any(|&v| v != 0.0)),
        Slot::Value(_) => Err(Error::unsupported(match what {
            Decision::Loop => format!(
                "{}: the loop condition depends on a private value (the client's input); tfe-run unrolls loops at \
                 import, so their trip count must be public",
                node.describe()
            ),
            Decision::Cond => format!(
                "{}: the predicate of this conditional (tf.cond) depends on a private value (the client's input); \
                 tfe-run decides conditionals at import, so the predicate must be public (a constant, a shape, a \
                 placeholder's default or a `--public NAME=NUMBER`)",
                node.describe()
            ),
        })),
        Slot::Bounded(b) => Err(undecided(&node.origin, b)),
        _ => Err(Error::invalid_model(format!(
            "{}: the {} is not a single boolean",
            node.describe(),
            match what {
                Decision::Loop => "loop condition",
                Decision::Cond => "predicate",
            }
        ))),
    }
}

/// The nodes and outputs a decided TF1 `tf.cond` does not take. As in
/// TensorFlow's executor, a node with a dead input or a dead control input is
/// dead, and a `Merge` forwards its one live input; a dead node is never built.
#[derive(Default)]
struct Dead {
    nodes: HashSet<usize>,
    /// `(switch, output)`: the side of a Switch its predicate did not pick.
    outputs: HashSet<(usize, usize)>,
}

impl Dead {
    fn tensor(&self, r: &InputRef) -> bool {
        self.nodes.contains(&r.node) || self.outputs.contains(&(r.node, r.slot))
    }
}

/// The slot an input names: its producer has been walked (topological order).
fn bound_input(graph: &Graph, slots: &HashMap<usize, Vec<Slot>>, node: &Node<'_>, r: &InputRef) -> Result<Slot> {
    let produced = slots.get(&r.node).map_or(&[][..], Vec::as_slice);
    produced.get(r.slot).cloned().ok_or_else(|| {
        let producer = graph.nodes.get(r.node);
        Error::invalid_model(format!(
            "{}: input {}:{} does not exist ({} has {} output(s))",
            node.origin,
            producer.map_or("?", |n| n.name.as_str()),
            r.slot,
            producer.map_or("?", |n| n.op.as_str()),
            produced.len()
        ))
    })
}

/// The ops of the functions the loops among `nodes` run (their conditions and
/// bodies, nested loops and calls included, each function once), as
/// `(function/node, op)` pairs, for `inspect`: a loop's ops are the model's ops.
pub fn loop_ops(graph: &Graph, nodes: &[usize]) -> Vec<(String, String)> {
    let Ok(library) = Library::new(Some(&graph.library)) else { return Vec::new() };
    let mut pending: Vec<String> = Vec::new();
    let push_functions = |n: &NodeDef, pending: &mut Vec<String>| {
        if ops::LOOP_OPS.contains(&n.op.as_str()) {
            pending.extend(["cond", "body"].iter().filter_map(|a| function::function_attr(n, a).ok()));
        } else if n.op == "If" || n.op == "StatelessIf" {
            pending.extend(["then_branch", "else_branch"].iter().filter_map(|a| function::function_attr(n, a).ok()));
        } else if function::is_call(n) {
            pending.extend(function::function_attr(n, "f").ok());
        }
    };
    for n in nodes.iter().filter_map(|&i| graph.nodes.get(i)) {
        push_functions(n, &mut pending);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Ok(f) = library.get(&name, "") else { continue };
        for n in &f.node_def {
            push_functions(n, &mut pending);
            if !function::is_call(n) {
                out.push((format!("{name}/{}", n.name), n.op.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use super::super::proto::build::*;
    use super::super::proto::tensorflow::attr_value::Value;
    use super::super::proto::tensorflow::op_def::ArgDef;
    use super::super::proto::tensorflow::{FunctionDefLibrary, NameAttrList, OpDef};
    use super::*;
    use crate::error::{exit, exit_code_of};
    use crate::frontend;

    fn func(name: &str) -> Value {
        Value::Func(NameAttrList { name: name.into(), attr: Default::default() })
    }

    /// A function of the loop state `(i, x)`.
    fn function(name: &str, outputs: &[&str], body: Vec<NodeDef>, ret: &[&str]) -> FunctionDef {
        function_of(name, &["i", "x"], outputs, body, ret)
    }

    /// A function of the arguments `inputs`, returning `outputs` from `ret`.
    fn function_of(name: &str, inputs: &[&str], outputs: &[&str], body: Vec<NodeDef>, ret: &[&str]) -> FunctionDef {
        let arg = |n: &str| ArgDef { name: n.into(), r#type: 1, ..Default::default() };
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: inputs.iter().map(|i| arg(i)).collect(),
                output_arg: outputs.iter().map(|o| arg(o)).collect(),
                ..Default::default()
            }),
            node_def: body,
            ret: outputs.iter().zip(ret).map(|(o, r)| (o.to_string(), r.to_string())).collect(),
            ..Default::default()
        }
    }

    /// `while cond(i, x): i, x = i + 1, body_x` from i = 0, then `Relu(x)`.
    fn loop_graph(cond: Vec<NodeDef>, cond_ret: &str, body: &str) -> GraphDef {
        let cond = function("cond", &["c"], cond, &[cond_ret]);
        let body = function(
            "body",
            &["i2", "x2"],
            vec![
                const_i32("one", &[], &[1]),
                node("next", "AddV2", &["i", "one:output:0"]),
                with_attr(node("id", body, &["x"]), "T", Value::Type(1)),
            ],
            &["next:z:0", "id:output:0"],
        );
        let w = with_attr(node("while", "While", &["zero", "x"]), "cond", func("cond"));
        let nodes = vec![
            placeholder("x", &[1, 2]),
            const_i32("zero", &[], &[0]),
            with_attr(w, "body", func("body")),
            node("out", "Relu", &["while:1"]),
        ];
        GraphDef {
            library: Some(FunctionDefLibrary { function: vec![cond, body], ..Default::default() }),
            ..graph(nodes)
        }
    }

    fn counted(limit: i32) -> GraphDef {
        loop_graph(vec![const_i32("n", &[], &[limit]), node("less", "Less", &["i", "n:output:0"])], "less:z:0", "Neg")
    }

    fn import(g: GraphDef) -> Result<crate::plan::Plan> {
        let feeds =
            |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![1, 2], source: "x".into() })].into());
        frontend::load_bytes(&g.encode_to_vec(), Path::new("loop.pb"), Some("out"), feeds)?.into_plan()
    }

    fn refusal(g: GraphDef) -> (String, u8) {
        let err = import(g).unwrap_err();
        (format!("{err:#}"), exit_code_of(&err, false))
    }

    #[test]
    fn a_counted_loop_is_unrolled_once_per_iteration() {
        let plan = import(counted(3)).unwrap();
        let negs: Vec<&str> = plan.steps.iter().filter(|s| s.op_type == "Neg").map(|s| s.node.as_str()).collect();
        assert_eq!(negs, ["while/body/0/id", "while/body/1/id", "while/body/2/id"]);
        let x = ndarray::arr2(&[[1.5f32, -2.0]]).into_dyn();
        let y = crate::plaintext::run(&plan, &[("x".to_string(), x)].into()).unwrap().to_float();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [0.0, 2.0]);
        // Zero iterations: the loop's outputs are its inputs.
        let plan = import(counted(0)).unwrap();
        assert!(plan.steps.iter().all(|s| s.op_type != "Neg"), "{}", plan.describe());
    }

    #[test]
    fn a_loop_of_more_than_the_bound_of_iterations_is_refused() {
        let limit = i32::try_from(MAX_ITERATIONS).unwrap() + 5;
        let (err, code) = refusal(loop_graph(
            vec![const_i32("n", &[], &[limit]), node("less", "Less", &["i", "n:output:0"])],
            "less:z:0",
            "Identity",
        ));
        assert!(err.contains("While `while`: the loop runs more than 10000 iterations"), "{err}");
        assert_eq!(code, exit::UNSUPPORTED);
    }

    #[test]
    fn a_loop_condition_on_a_private_value_is_refused() {
        let cond = vec![const_f32("zero", &[], &[0.0]), node("less", "Less", &["x", "zero:output:0"])];
        let (err, code) = refusal(loop_graph(cond, "less:z:0", "Neg"));
        assert!(err.contains("While `while`: the loop condition depends on a private value"), "{err}");
        assert_eq!(code, exit::UNSUPPORTED);
    }

    #[test]
    fn a_condition_that_is_not_one_boolean_is_refused() {
        let cond = vec![const_i32("both", &[2], &[1, 1])];
        let (err, _) = refusal(loop_graph(cond, "both:output:0", "Neg"));
        assert!(err.contains("While `while`: the loop condition is not a single boolean"), "{err}");
    }

    #[test]
    fn a_loop_body_that_runs_its_own_loop_is_refused_not_recursed() {
        let mut g = counted(3);
        let lib = g.library.as_mut().unwrap();
        // body's Neg becomes a While over cond/body: the body runs itself.
        let inner = with_attr(node("inner", "While", &["i", "x"]), "cond", func("cond"));
        let body = lib.function.iter_mut().find(|f| f.signature.as_ref().unwrap().name == "body").unwrap();
        body.node_def.push(with_attr(inner, "body", func("body")));
        body.ret.insert("x2".into(), "inner:output:1".into());
        let (err, code) = refusal(g);
        // (The inner loop reuses the condition too, which is checked first.)
        assert!(err.contains("While `while/body/0/inner`: loop function `cond` runs itself"), "{err}");
        assert_eq!(code, exit::UNSUPPORTED);
        // The same from the condition: refused, not recursed into.
        let mut g = counted(3);
        let lib = g.library.as_mut().unwrap();
        let inner = with_attr(node("inner", "While", &["i", "x"]), "cond", func("cond"));
        let cond = lib.function.iter_mut().find(|f| f.signature.as_ref().unwrap().name == "cond").unwrap();
        cond.node_def.push(with_attr(inner, "body", func("body")));
        cond.node_def.push(node("again", "Less", &["inner:output:0", "n:output:0"]));
        cond.ret.insert("c".into(), "again:z:0".into());
        let (err, _) = refusal(g);
        assert!(err.contains("While `while/cond/0/inner`: loop function `cond` runs itself"), "{err}");
    }

    #[test]
    fn a_loop_naming_a_missing_function_is_refused() {
        let mut g = counted(3);
        g.library.as_mut().unwrap().function.retain(|f| f.signature.as_ref().unwrap().name != "body");
        let (err, code) = refusal(g);
        assert!(
            err.contains("While `while`: calls function `body`, which is not in the graph's function library"),
            "{err}"
        );
        assert_eq!(code, exit::INVALID_MODEL);
    }

    #[test]
    fn a_private_tensor_list_index_is_refused() {
        let list = node("list", "TensorListFromTensor", &["x", "shape"]);
        let nodes = vec![
            placeholder("x", &[1, 2]),
            const_i32("shape", &[1], &[2]),
            const_i32("axis", &[], &[1]),
            list,
            node("at", "ArgMax", &["x", "axis"]),
            node("item", "TensorListGetItem", &["list", "at", "shape"]),
            node("out", "Relu", &["item"]),
        ];
        let (err, code) = refusal(graph(nodes));
        assert!(
            err.contains("TensorListGetItem `item`: the list index is computed from the client's private input"),
            "{err}"
        );
        assert_eq!(code, exit::UNSUPPORTED);
    }

    #[test]
    fn a_tensor_list_read_out_of_range_or_reserved_past_the_bound_is_refused() {
        let read = |index: i32| {
            graph(vec![
                placeholder("x", &[1, 2]),
                const_i32("shape", &[1], &[2]),
                const_i32("at", &[], &[index]),
                node("list", "TensorListFromTensor", &["x", "shape"]),
                node("item", "TensorListGetItem", &["list", "at", "shape"]),
                node("out", "Relu", &["item"]),
            ])
        };
        let plan = import(read(0)).unwrap();
        assert_eq!(plan.output_value().shape, vec![2]);
        let (err, _) = refusal(read(1));
        assert!(err.contains("TensorListGetItem `item`: index 1 is outside the list of 1 element(s)"), "{err}");
        let huge = graph(vec![
            placeholder("x", &[1, 2]),
            const_i32("shape", &[1], &[2]),
            const_i32("n", &[], &[i32::MAX]),
            const_i32("zero", &[], &[0]),
            node("list", "TensorListReserve", &["shape", "n"]),
            node("set", "TensorListSetItem", &["list", "zero", "x"]),
            node("out", "TensorListStack", &["set", "shape"]),
        ]);
        let (err, _) = refusal(huge);
        assert!(err.contains("TensorListReserve `list`: reserves 2147483647 elements"), "{err}");
    }
    fn const_bool(name: &str, value: bool) -> NodeDef {
        use super::super::proto::tensorflow::{DataType, TensorProto};
        let t = TensorProto {
            dtype: DataType::DtBool as i32,
            tensor_shape: Some(shape_proto(&[])),
            bool_val: vec![value],
            ..Default::default()
        };
        let n = with_attr(node(name, "Const", &[]), "dtype", Value::Type(DataType::DtBool as i32));
        with_attr(n, "value", Value::Tensor(t))
    }

    /// `out = Relu(tf.cond(pred, Neg(x), Identity(x)))` under control flow v1,
    /// the predicate computed by `pred` (a node named `pred`).
    fn switch_graph(pred: NodeDef) -> GraphDef {
        graph(vec![
            placeholder("x", &[1, 2]),
            const_f32("zero", &[], &[0.0]),
            pred,
            node("switch", "Switch", &["x", "pred"]),
            node("taken", "Neg", &["switch:1"]),
            node("not_taken", "Identity", &["switch"]),
            node("merge", "Merge", &["not_taken", "taken"]),
            node("out", "Relu", &["merge"]),
        ])
    }

    /// The same under control flow v2: an `If` whose branches are library functions.
    fn if_graph(pred: NodeDef) -> GraphDef {
        let branch = |name: &str, op: &str| {
            let body = vec![with_attr(node("f", op, &["a"]), "T", Value::Type(1))];
            function_of(name, &["a"], &["y"], body, &["f:y:0"])
        };
        let cond = with_attr(node("cond", "If", &["pred", "x"]), "then_branch", func("neg"));
        let nodes = vec![
            placeholder("x", &[1, 2]),
            const_f32("zero", &[], &[0.0]),
            pred,
            with_attr(cond, "else_branch", func("identity")),
            node("out", "Relu", &["cond"]),
        ];
        GraphDef {
            library: Some(FunctionDefLibrary {
                function: vec![branch("neg", "Neg"), branch("identity", "Identity")],
                ..Default::default()
            }),
            ..graph(nodes)
        }
    }

    fn run(plan: &crate::plan::Plan) -> Vec<f32> {
        let x = ndarray::arr2(&[[1.5f32, -2.0]]).into_dyn();
        crate::plaintext::run(plan, &[("x".to_string(), x)].into()).unwrap().to_float().iter().copied().collect()
    }

    #[test]
    fn a_tf_cond_on_a_public_predicate_builds_only_the_branch_it_takes() {
        for g in [switch_graph, if_graph] {
            let plan = import(g(const_bool("pred", true))).unwrap();
            assert_eq!(run(&plan), [0.0, 2.0], "{}", plan.describe());
            assert!(plan.steps.iter().any(|s| s.op_type == "Neg"), "{}", plan.describe());
            let plan = import(g(const_bool("pred", false))).unwrap();
            assert_eq!(run(&plan), [1.5, 0.0], "{}", plan.describe());
            assert!(plan.steps.iter().all(|s| s.op_type != "Neg"), "{}", plan.describe());
        }
    }

    #[test]
    fn a_tf_cond_on_a_private_predicate_is_refused() {
        let private = || node("pred", "Less", &["x", "zero"]);
        let (err, code) = refusal(switch_graph(private()));
        assert!(
            err.contains("Switch `switch`: the predicate of this conditional (tf.cond) depends on a private value"),
            "{err}"
        );
        assert_eq!(code, exit::UNSUPPORTED);
        let (err, code) = refusal(if_graph(private()));
        assert!(
            err.contains("If `cond`: the predicate of this conditional (tf.cond) depends on a private value"),
            "{err}"
        );
        assert_eq!(code, exit::UNSUPPORTED);
    }

    #[test]
    fn a_merge_of_two_live_inputs_is_refused() {
        let g = graph(vec![
            placeholder("x", &[1, 2]),
            node("a", "Neg", &["x"]),
            node("b", "Relu", &["x"]),
            node("out", "Merge", &["a", "b"]),
        ]);
        let (err, code) = refusal(g);
        assert!(err.contains("Merge `out`: 2 of its inputs are live"), "{err}");
        assert_eq!(code, exit::UNSUPPORTED);
    }

    #[test]
    fn an_output_on_the_branch_a_tf_cond_does_not_take_is_refused() {
        let mut g = switch_graph(const_bool("pred", false));
        g.node.retain(|n| n.name != "merge" && n.name != "out");
        g.node.push(node("out", "Relu", &["taken"]));
        let (err, _) = refusal(g);
        assert!(
            err.contains("output `out` lies on a branch of a tf.cond that the model's public inputs do not take"),
            "{err}"
        );
    }

    #[test]
    fn a_tensor_array_of_dynamic_size_or_read_at_a_private_index_is_refused() {
        let array = |dynamic: bool, at: &str| {
            let ta = with_attr(node("ta", "TensorArrayV3", &["n"]), "dynamic_size", Value::B(dynamic));
            graph(vec![
                placeholder("x", &[1, 2]),
                const_i32("n", &[], &[2]),
                const_i32("zero", &[], &[0]),
                const_i32("axis", &[], &[1]),
                node("at", "ArgMax", &["x", "axis"]),
                ta,
                node("write", "TensorArrayWriteV3", &["ta", "zero", "x", "ta:1"]),
                node("read", "TensorArrayReadV3", &["ta", at, "write"]),
                node("out", "Relu", &["read"]),
            ])
        };
        let plan = import(array(false, "zero")).unwrap();
        assert_eq!(run(&plan), [1.5, 0.0]);
        let (err, code) = refusal(array(true, "zero"));
        assert!(err.contains("TensorArrayV3 `ta`: a TensorArray with dynamic_size=True"), "{err}");
        assert_eq!(code, exit::UNSUPPORTED);
        let (err, code) = refusal(array(false, "at"));
        assert!(
            err.contains("TensorArrayReadV3 `read`: the list index is computed from the client's private input"),
            "{err}"
        );
        assert_eq!(code, exit::UNSUPPORTED);
    }
}
