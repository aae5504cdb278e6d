//! TF1 control-flow frames, rewritten into TF2 `While` nodes before the graph is
//! ordered (a frame is a cycle: `NextIteration` feeds back into `Merge`).
//!
//! What `tf.compat.v1.while_loop` under control flow v1, and
//! `convert_variables_to_constants_v2(lower_control_flow=True)`, write: per loop
//! variable `Enter → Merge(enter, next) → Switch(merge, LoopCond)`, the body reading
//! `Switch:1` and feeding `NextIteration → Merge`, the result leaving by an `Exit`
//! of `Switch:0`; loop invariants enter by an `Enter` with `is_constant`; the
//! condition reads the `Merge`s and ends in the `LoopCond`. All `Enter`s of one
//! loop share its `frame_name`. Each frame becomes one `While` whose inputs are
//! the variables' initial values then the invariants, with a condition function
//! (the nodes between the `Merge`s and the `LoopCond`) and a body function (the
//! nodes between the `Switch`es and the `NextIteration`s; it returns the
//! invariants unchanged); each `Exit` becomes an `Identity` of the While's output.
//! The loop is then unrolled as every While is ([`loops`](super::loops)).
//!
//! A frame that is not of this shape (an `Exit` without its `Switch`, a `Merge`
//! without a `NextIteration`, a body that reads a value from outside the loop
//! without an `Enter`, a frame inside a frame, a `Switch` outside any loop) is
//! refused naming the node.

// Parses bytes from others: the no-panic lints of `frontend/mod.rs` hold here too.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;

use super::function::function_output_name;
use super::graph::{InputName, parse_input};
use super::proto::tensorflow::attr_value::{ListValue, Value};
use super::proto::tensorflow::op_def::ArgDef;
use super::proto::tensorflow::{FunctionDef, FunctionDefLibrary, NameAttrList, OpDef};
use super::proto::{AttrValue, GraphDef, NodeDef, NodeExt};
use crate::error::Error;

/// The ops that make TF1 control flow.
pub const FRAME_OPS: &[&str] = &["Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"];

/// The frame ops a TF1 `tf.cond` is made of, outside any loop.
pub const COND_OPS: &[&str] = &["Switch", "Merge"];

/// The graph with every loop frame replaced by a While.
pub fn to_while(graph: GraphDef) -> Result<GraphDef> {
    if !graph.node.iter().any(|n| FRAME_OPS.contains(&n.op.as_str())) {
        return Ok(graph);
    }
    let mut graph = graph;
    let mut frames: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        if n.op == "Enter" {
            let name = n.get_attr_str("frame_name", "")?;
            if name.is_empty() {
                return Err(Error::invalid_model(format!("{}: has no frame_name", n.describe())));
            }
            frames.entry(name).or_default().push(i);
        }
    }
    let all = std::mem::take(&mut graph.node);
    let view = View::new(&all)?;
    let mut library = graph.library.take().unwrap_or_default();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut added: Vec<NodeDef> = Vec::new();
    for (k, (frame, enters)) in frames.iter().enumerate() {
        let members = view.members(frame, enters)?;
        let lp = view.read_loop(frame, enters, &members)?;
        let fname = |what: &str| unique_function(&library, &format!("{frame}/{what}_{k}"));
        let (cond_name, body_name) = (fname("cond"), fname("body"));
        let cond = view.function(&cond_name, frame, &lp, &members, Part::Cond)?;
        let body = view.function(&body_name, frame, &lp, &members, Part::Body)?;
        view.check_nothing_is_lost(frame, &members, &[&cond, &body])?;
        library.function.extend([cond, body]);
        let while_name = view.unique_node(&format!("{frame}/while"));
        added.push(view.while_node(&while_name, &lp, &cond_name, &body_name));
        for (i, var) in lp.vars.iter().enumerate() {
            if let Some(exit) = var.exit.and_then(|e| view.nodes.get(e)) {
                added.push(NodeDef {
                    name: exit.name.clone(),
                    op: "Identity".into(),
                    input: vec![format!("{while_name}:{i}")],
                    attr: exit.attr.iter().filter(|(k, _)| *k == "T").map(|(k, v)| (k.clone(), v.clone())).collect(),
                    ..Default::default()
                });
            }
        }
        removed.extend(members);
    }
    // A TF1 tf.cond outside any loop (Switch and Merge with no frame) stays: the
    // walker decides it at import (`loops.rs`). Any other frame op left is malformed.
    if let Some(n) =
        view.nodes.iter().enumerate().find(|(i, n)| {
            FRAME_OPS.contains(&n.op.as_str()) && !COND_OPS.contains(&n.op.as_str()) && !removed.contains(i)
        })
    {
        return Err(Error::unsupported(format!(
            "{}: control flow outside a loop frame (an Exit, NextIteration or LoopCond without its Enter) is not supported",
            n.1.describe()
        )));
    }
    let kept_names: HashSet<&str> =
        view.nodes.iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, n)| n.name.as_str()).collect();
    let exits: HashSet<String> = added.iter().filter(|n| n.op == "Identity").map(|n| n.name.clone()).collect();
    let mut nodes = Vec::with_capacity(view.nodes.len());
    for (i, n) in all.iter().enumerate() {
        let mut n = n.clone();
        if removed.contains(&i) {
            continue;
        }
        // A control edge into a removed node orders nothing any more.
        n.input.retain(|s| match s.strip_prefix('^') {
            Some(c) => kept_names.contains(c) || exits.contains(c),
            None => true,
        });
        nodes.push(n);
    }
    nodes.extend(added);
    graph.node = nodes;
    graph.library = Some(library);
    Ok(graph)
}

/// One loop variable: its Enter, Merge, Switch, NextIteration, the Exit if any.
struct Var {
    enter: usize,
    merge: usize,
    switch: usize,
    next: usize,
    exit: Option<usize>,
}

/// A frame read: its variables, its invariants (constant Enters), its LoopCond.
struct Loop {
    vars: Vec<Var>,
    invariants: Vec<usize>,
    cond: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Cond,
    Body,
}

/// The graph's nodes with their parsed data inputs and consumers.
struct View<'g> {
    nodes: &'g [NodeDef],
    index: HashMap<&'g str, usize>,
    /// Data inputs of each node: (producer, slot).
    data: Vec<Vec<(usize, usize)>>,
    /// Consumers of each node by data or control edge: (consumer, slot; None for control).
    consumers: Vec<Vec<(usize, Option<usize>)>>,
}

impl<'g> View<'g> {
    fn new(nodes: &'g [NodeDef]) -> Result<View<'g>> {
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if index.insert(n.name.as_str(), i).is_some() {
                return Err(Error::invalid_model(format!("two nodes are named `{}`", n.name)));
            }
        }
        let mut data = vec![Vec::new(); nodes.len()];
        let mut consumers = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for s in &n.input {
                let parsed = parse_input(s).map_err(|e| Error::invalid_model(format!("{}: {e}", n.describe())))?;
                let (target, slot) = match parsed {
                    InputName::Data { node, slot } => (node, Some(slot)),
                    InputName::Control(node) => (node, None),
                };
                let &t = index.get(target).ok_or_else(|| {
                    Error::invalid_model(format!("{}: input `{s}` names a node that is not in the graph", n.describe()))
                })?;
                if let (Some(slot), Some(d)) = (slot, data.get_mut(i)) {
                    d.push((t, slot));
                }
                if let Some(c) = consumers.get_mut(t) {
                    c.push((i, slot));
                }
            }
        }
        Ok(View { nodes, index, data, consumers })
    }

    fn node(&self, i: usize) -> Result<&'g NodeDef> {
        self.nodes.get(i).ok_or_else(|| Error::invalid_model(format!("node {i} is not in the graph")))
    }

    fn describe(&self, i: usize) -> String {
        self.nodes.get(i).map_or_else(|| format!("node {i}"), NodeExt::describe)
    }

    fn inputs(&self, i: usize) -> &[(usize, usize)] {
        self.data.get(i).map_or(&[], Vec::as_slice)
    }

    fn consumers(&self, i: usize) -> &[(usize, Option<usize>)] {
        self.consumers.get(i).map_or(&[], Vec::as_slice)
    }

    fn is(&self, i: usize, op: &str) -> bool {
        self.nodes.get(i).is_some_and(|n| n.op == op)
    }

    /// The nodes of a frame: everything reachable from its Enters, up to and
    /// including its Exits.
    fn members(&self, frame: &str, enters: &[usize]) -> Result<HashSet<usize>> {
        let mut members: HashSet<usize> = enters.iter().copied().collect();
        let mut todo: Vec<usize> = enters.to_vec();
        while let Some(i) = todo.pop() {
            if self.is(i, "Exit") {
                continue;
            }
            for &(c, _) in self.consumers(i) {
                if self.is(c, "Enter") {
                    return Err(Error::unsupported(format!(
                        "{}: a loop inside loop frame `{frame}`; nested TF1 loops are not supported",
                        self.describe(c)
                    )));
                }
                if members.insert(c) {
                    todo.push(c);
                }
            }
        }
        Ok(members)
    }

    /// A value computed in the loop that neither its condition nor its body
    /// reads, and that no node consumes (not even by a control edge), is one the graph expected to read
    /// from inside the loop (reachable from an Enter, a node is in its frame): the
    /// output node, most likely. Refused, rather than dropped.
    fn check_nothing_is_lost(&self, frame: &str, members: &HashSet<usize>, functions: &[&FunctionDef]) -> Result<()> {
        let used: HashSet<&str> = functions.iter().flat_map(|f| f.node_def.iter().map(|n| n.name.as_str())).collect();
        for &i in members {
            let n = self.node(i)?;
            // Consumed by control edges only (a pivot, `loop_body_control`) is consumed.
            let read = !self.consumers(i).is_empty();
            if !read && !used.contains(n.name.as_str()) && !matches!(n.op.as_str(), "NoOp" | "Const" | "Exit") {
                return Err(Error::unsupported(format!(
                    "{}: is computed inside loop frame `{frame}` but leaves it by no Exit",
                    n.describe()
                )));
            }
        }
        Ok(())
    }

    fn malformed(&self, frame: &str, at: usize, what: &str) -> anyhow::Error {
        Error::invalid_model(format!("loop frame `{frame}`: {}: {what}", self.describe(at)))
    }

    fn read_loop(&self, frame: &str, enters: &[usize], members: &HashSet<usize>) -> Result<Loop> {
        let mut vars = Vec::new();
        let mut invariants = Vec::new();
        let mut cond = None;
        for &enter in enters {
            if self.node(enter)?.get_attr_bool("is_constant", false)? {
                invariants.push(enter);
                continue;
            }
            let merges: Vec<usize> =
                self.consumers(enter).iter().map(|&(c, _)| c).filter(|&c| self.is(c, "Merge")).collect();
            let [merge] = merges.as_slice() else {
                return Err(self.malformed(frame, enter, "a loop variable's Enter must feed exactly one Merge"));
            };
            let next = match self.inputs(*merge) {
                [(a, 0), (b, 0)] if *a == enter && self.is(*b, "NextIteration") => *b,
                [(a, 0), (b, 0)] if *b == enter && self.is(*a, "NextIteration") => *a,
                _ => return Err(self.malformed(frame, *merge, "must merge its Enter and one NextIteration")),
            };
            let switches: Vec<usize> =
                self.consumers(*merge).iter().map(|&(c, _)| c).filter(|&c| self.is(c, "Switch")).collect();
            let [switch] = switches.as_slice() else {
                return Err(self.malformed(frame, *merge, "a loop variable's Merge must feed exactly one Switch"));
            };
            let pred = match self.inputs(*switch) {
                [(m, 0), (p, 0)] if m == merge && self.is(*p, "LoopCond") => *p,
                _ => return Err(self.malformed(frame, *switch, "must switch its Merge on the frame's LoopCond")),
            };
            if cond.is_some_and(|c| c != pred) {
                return Err(self.malformed(frame, *switch, "the frame has two LoopConds"));
            }
            cond = Some(pred);
            let exits: Vec<usize> = self
                .consumers(*switch)
                .iter()
                .filter(|&&(c, _)| self.is(c, "Exit"))
                .map(
                    |&(c, slot)| {
                        if slot == Some(0) { Ok(c) } else { Err(self.malformed(frame, c, "must read Switch:0")) }
                    },
                )
                .collect::<Result<_>>()?;
            if exits.len() > 1 {
                return Err(self.malformed(frame, *switch, "has more than one Exit"));
            }
            vars.push(Var { enter, merge: *merge, switch: *switch, next, exit: exits.first().copied() });
        }
        let cond = cond.ok_or_else(|| Error::invalid_model(format!("loop frame `{frame}` has no loop variable")))?;
        // Every Exit and NextIteration of the frame belongs to a variable.
        for &i in members {
            let owned = match self.node(i)?.op.as_str() {
                "Exit" => vars.iter().any(|v| v.exit == Some(i)),
                "NextIteration" => vars.iter().any(|v| v.next == i),
                "Merge" => vars.iter().any(|v| v.merge == i),
                "Switch" => vars.iter().any(|v| v.switch == i),
                "LoopCond" => i == cond,
                _ => true,
            };
            if !owned {
                return Err(self.malformed(
                    frame,
                    i,
                    "is not part of a loop variable of its frame (a tf.cond inside a loop is not supported)",
                ));
            }
        }
        Ok(Loop { vars, invariants, cond })
    }

    fn unique_node(&self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 0usize;
        while self.index.contains_key(name.as_str()) {
            k = k.saturating_add(1);
            name = format!("{base}_{k}");
        }
        name
    }

    fn while_node(&self, name: &str, lp: &Loop, cond: &str, body: &str) -> NodeDef {
        let input = lp
            .vars
            .iter()
            .map(|v| v.enter)
            .chain(lp.invariants.iter().copied())
            .filter_map(|e| self.nodes.get(e).and_then(|n| n.input.iter().find(|s| !s.starts_with('^'))).cloned())
            .collect();
        let func =
            |f: &str| AttrValue { value: Some(Value::Func(NameAttrList { name: f.into(), attr: Default::default() })) };
        let types = ListValue { r#type: self.types(lp), ..Default::default() };
        NodeDef {
            name: name.into(),
            op: "While".into(),
            input,
            attr: [
                ("cond".to_string(), func(cond)),
                ("body".to_string(), func(body)),
                ("T".to_string(), AttrValue { value: Some(Value::List(types)) }),
            ]
            .into(),
            ..Default::default()
        }
    }

    /// The dtypes of the loop's variables then invariants (each Enter's `T`).
    fn types(&self, lp: &Loop) -> Vec<i32> {
        let enters = lp.vars.iter().map(|v| v.enter).chain(lp.invariants.iter().copied());
        enters
            .map(|e| match self.nodes.get(e).and_then(|n| n.attr_value("T")) {
                Some(Value::Type(t)) => *t,
                _ => 0,
            })
            .collect()
    }

    /// The condition or the body of the frame as a function of the loop
    /// variables then the invariants.
    fn function(
        &self,
        name: &str,
        frame: &str,
        lp: &Loop,
        members: &HashSet<usize>,
        part: Part,
    ) -> Result<FunctionDef> {
        let arg = |i: usize| format!("v{i}");
        let mut bound: HashMap<(usize, usize), String> = HashMap::new();
        for (i, v) in lp.vars.iter().enumerate() {
            let at = if part == Part::Cond { (v.merge, 0) } else { (v.switch, 1) };
            bound.insert(at, arg(i));
        }
        let nvars = lp.vars.len();
        for (j, &e) in lp.invariants.iter().enumerate() {
            bound.insert((e, 0), arg(nvars.saturating_add(j)));
        }
        let roots: Vec<(usize, usize)> = match part {
            Part::Cond => self.inputs(lp.cond).to_vec(),
            Part::Body => {
                lp.vars.iter().map(|v| self.inputs(v.next).first().copied().unwrap_or((v.next, usize::MAX))).collect()
            }
        };
        if part == Part::Cond && roots.len() != 1 {
            return Err(self.malformed(frame, lp.cond, "must have one input"));
        }
        // The nodes between the boundary and the roots, by data edges.
        let mut inside: Vec<usize> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        let mut todo: Vec<(usize, usize)> = roots.clone();
        while let Some((i, slot)) = todo.pop() {
            if bound.contains_key(&(i, slot)) || !seen.insert(i) {
                continue;
            }
            let n = self.node(i)?;
            if FRAME_OPS.contains(&n.op.as_str()) {
                return Err(self.malformed(
                    frame,
                    i,
                    &format!(
                        "is read by the loop's {} other than as a loop variable",
                        if part == Part::Cond { "condition" } else { "body" }
                    ),
                ));
            }
            if !members.contains(&i) {
                return Err(Error::invalid_model(format!(
                    "loop frame `{frame}`: the loop reads {} from outside the loop without an Enter",
                    n.describe()
                )));
            }
            inside.push(i);
            todo.extend(self.inputs(i).iter().copied());
        }
        let tensor = |(i, slot): (usize, usize)| -> Result<String> {
            if let Some(a) = bound.get(&(i, slot)) {
                return Ok(a.clone());
            }
            let n = self.node(i)?;
            Ok(format!("{}:{}", n.name, function_output_name(n, slot)?))
        };
        let mut node_def = Vec::with_capacity(inside.len());
        inside.sort_unstable();
        for &i in &inside {
            let n = self.node(i)?;
            let input = self.inputs(i).iter().map(|&r| tensor(r)).collect::<Result<Vec<_>>>()?;
            node_def.push(NodeDef { input, device: String::new(), ..n.clone() });
        }
        let types = self.types(lp);
        let ntotal = types.len();
        let input_arg: Vec<ArgDef> =
            types.iter().enumerate().map(|(i, &t)| ArgDef { name: arg(i), r#type: t, ..Default::default() }).collect();
        let (output_arg, ret): (Vec<ArgDef>, BTreeMap<String, String>) = match part {
            Part::Cond => {
                let ret = tensor(roots.first().copied().unwrap_or((lp.cond, 0)))?;
                (vec![ArgDef { name: "cond".into(), r#type: 10, ..Default::default() }], [("cond".into(), ret)].into())
            }
            Part::Body => {
                let mut ret = BTreeMap::new();
                for (i, &r) in roots.iter().enumerate() {
                    ret.insert(format!("out{i}"), tensor(r)?);
                }
                for j in nvars..ntotal {
                    ret.insert(format!("out{j}"), arg(j));
                }
                let out = types.iter().enumerate().map(|(i, &t)| ArgDef {
                    name: format!("out{i}"),
                    r#type: t,
                    ..Default::default()
                });
                (out.collect(), ret)
            }
        };
        Ok(FunctionDef {
            signature: Some(OpDef { name: name.into(), input_arg, output_arg, ..Default::default() }),
            node_def,
            ret,
            ..Default::default()
        })
    }
}

fn unique_function(library: &FunctionDefLibrary, base: &str) -> String {
    let taken = |n: &str| library.function.iter().any(|f| f.signature.as_ref().is_some_and(|s| s.name == n));
    let mut name = base.to_string();
    let mut k = 0usize;
    while taken(&name) {
        k = k.saturating_add(1);
        name = format!("{base}_{k}");
    }
    name
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::Graph;
    use super::super::proto::build::*;
    use super::*;

    fn enter(name: &str, input: &str, frame: &str) -> NodeDef {
        with_attr(node(name, "Enter", &[input]), "frame_name", Value::S(frame.as_bytes().to_vec()))
    }

    /// A counter loop `while i < 3: i += 1` in TF1 form, `merge`'s second input
    /// and the condition's bound `n` given.
    fn frame_with(merged: &str, bound: Vec<NodeDef>) -> Vec<NodeDef> {
        let mut nodes = vec![
            placeholder("x", &[1]),
            const_i32("i0", &[], &[0]),
            enter("enter", "i0", "f"),
            node("merge", "Merge", &["enter", merged]),
            node("less", "Less", &["merge", "n"]),
            node("lc", "LoopCond", &["less"]),
            node("switch", "Switch", &["merge", "lc"]),
            node("id", "Identity", &["switch:1"]),
            node("next", "NextIteration", &["id"]),
            node("exit", "Exit", &["switch"]),
        ];
        nodes.extend(bound);
        nodes
    }

    /// [`frame_with`] the bound entered as an invariant.
    fn frame(merged: &str) -> Vec<NodeDef> {
        let n = with_attr(enter("n", "n0", "f"), "is_constant", Value::B(true));
        frame_with(merged, vec![const_i32("n0", &[], &[3]), n])
    }

    fn refusal(nodes: Vec<NodeDef>) -> String {
        let names: Vec<String> = nodes.iter().map(|n| format!("{} {}", n.op, n.name)).collect();
        match Graph::from_graph_def(graph(nodes)) {
            Ok(_) => panic!("accepted: {names:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_tf1_while_loop_written_by_tensorflow_becomes_one_while() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/loops/loop_tf1_while_lstm.pb");
        let g = GraphDef::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
        assert!(g.node.iter().any(|n| n.op == "NextIteration"));
        let g = to_while(g).unwrap();
        assert!(!g.node.iter().any(|n| FRAME_OPS.contains(&n.op.as_str())));
        let whiles: Vec<&NodeDef> = g.node.iter().filter(|n| n.op == "While").collect();
        assert_eq!(whiles.len(), 1);
        // The three loop variables (t, h, c), then the invariants the body reads
        // (the input and the weights), which the body returns unchanged.
        let lib = g.library.as_ref().unwrap();
        let body = lib.function.iter().find(|f| f.signature.as_ref().unwrap().name.contains("body")).unwrap();
        let sig = body.signature.as_ref().unwrap();
        assert_eq!(sig.input_arg.len(), whiles[0].input.len());
        assert_eq!(sig.output_arg.len(), sig.input_arg.len());
        assert!(body.node_def.iter().any(|n| n.op == "GatherV2"), "the body reads x_t");
        // And it orders: the cycle is gone.
        Graph::from_graph_def(g).unwrap();
    }

    #[test]
    fn a_hand_written_counter_frame_unrolls_to_its_exit() {
        let nodes = frame_with("next", vec![const_i32("n", &[], &[3])]);
        // The bound is outside the frame without an Enter: refused, naming it.
        let err = refusal(nodes);
        assert!(
            err.contains("loop frame `f`: the loop reads Const `n` from outside the loop without an Enter"),
            "{err}"
        );
        // Entered as an invariant, the frame becomes a While and its Exit an Identity of it.
        let g = Graph::from_graph_def(graph(frame("next"))).unwrap();
        assert!(g.nodes.iter().any(|n| n.op == "While"));
        assert_eq!(g.nodes.iter().find(|n| n.name == "exit").unwrap().op, "Identity");
    }

    #[test]
    fn malformed_frames_are_refused_naming_the_node() {
        let err = refusal(vec![placeholder("x", &[1]), node("exit", "Exit", &["x"]), node("out", "Relu", &["exit"])]);
        assert!(err.contains("Exit `exit`: control flow outside a loop frame"), "{err}");
        let err = refusal(frame("x"));
        assert!(err.contains("loop frame `f`: Merge `merge`: must merge its Enter and one NextIteration"), "{err}");
        let mut no_cond = frame("next");
        no_cond.retain(|n| n.name != "lc");
        no_cond.push(node("lc", "Identity", &["less"]));
        let err = refusal(no_cond);
        assert!(err.contains("Switch `switch`: must switch its Merge on the frame's LoopCond"), "{err}");
        let mut leak = frame("next");
        leak.push(node("out", "Neg", &["id"]));
        let err = refusal(leak);
        assert!(err.contains("Neg `out`: is computed inside loop frame `f` but leaves it by no Exit"), "{err}");
        let mut nested = frame("next");
        nested.push(enter("inner", "id", "g"));
        let err = refusal(nested);
        assert!(err.contains("Enter `inner`: a loop inside loop frame"), "{err}");
    }
}
