//! SavedModel directories (`saved_model.pb` and `variables/`), as written by
//! `tf.saved_model.save`, Keras 3 `model.export` and TF1's
//! `tf.compat.v1.saved_model.Builder`: the serving MetaGraphDef's signature is
//! frozen into a GraphDef, which the TensorFlow frontend then reads.
//!
//! Freezing, as `convert_variables_to_constants_v2` does, in Rust:
//! 1. the signature's input placeholders are renamed to the input keys, and its
//!    chosen output becomes a node named by the output key;
//! 2. before the calls are inlined, each variable handle a signature call takes
//!    is matched to the object it is bound to (`SavedConcreteFunction.bound_inputs`);
//! 3. function calls are inlined, the graph is cut to what the output needs;
//! 4. every variable (`VarHandleOp`, TF1's `VariableV2`) becomes a `Const` with
//!    the value from the bundle (the model owner's private weights) and every
//!    `ReadVariableOp` an `Identity`. The key of a TF2 variable is its object's
//!    `VARIABLE_VALUE` in the checkpoint's object graph (matched by the path of
//!    child names from the root, as TensorFlow's restore matches them); a TF1
//!    variable's key is its node name, as `tf.compat.v1.train.Saver` writes it.

pub mod bundle;
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;

use anyhow::{Context, Result};
use prost::Message;

use super::Dim;
use super::tf::TfModel;
use super::tf::graph::{Graph, InputName, parse_input};
use super::tf::proto::tensorflow::attr_value::Value;
use super::tf::proto::tensorflow::{
    AttrValue, DataType, MetaGraphDef, SavedModel, SavedObjectGraph, SignatureDef, TensorInfo, TensorProto,
    TrackableObjectGraph, saved_object, tensor_info,
};
use super::tf::proto::{GraphDef, NodeDef, NodeExt, dtype_name, shape_dims};
use crate::error::Error;
use bundle::Bundle;

/// The signature used when none is named (TensorFlow Serving's default).
pub const DEFAULT_SIGNATURE: &str = "serving_default";
/// The bundle key of the checkpoint's object graph (TF2).
const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// A signature input or output: its key, dtype and shape.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub key: String,
    pub dtype: &'static str,
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// `[?, 784]`, `<unknown rank>`.
    pub fn shape_text(&self) -> String {
        crate::frontend::shape_text(self.shape.as_deref())
    }
}

/// One signature of the SavedModel, as `inspect` lists it.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// What to take from a SavedModel: the signature, and its output key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice<'a> {
    pub signature: Option<&'a str>,
    pub output: Option<&'a str>,
    /// Take the first output (by key) of a signature with several, instead of
    /// refusing to guess (`inspect`).
    pub first_output: bool,
}

/// Is this directory a SavedModel?
pub fn is_saved_model(dir: &Path) -> bool {
    dir.join("saved_model.pb").is_file() || dir.join("saved_model.pbtxt").is_file()
}

/// A SavedModel directory, frozen: the model, every signature, and which one
/// and which output it computes.
pub struct Frozen {
    pub model: TfModel,
    pub signatures: Vec<Signature>,
    pub signature: String,
    pub output: String,
}

/// Read the SavedModel in `dir` and freeze the chosen signature's output.
pub fn load(dir: &Path, choice: Choice<'_>) -> Result<Frozen> {
    let meta = read_meta_graph(dir)?;
    let signatures = list_signatures(&meta)?;
    let name = choice.signature.unwrap_or(DEFAULT_SIGNATURE);
    let sig = meta.signature_def.get(name).filter(|_| !name.starts_with("__")).ok_or_else(|| {
        let names: Vec<String> = signatures.iter().map(|s| format!("`{}`", s.name)).collect();
        Error::bad_input(format!(
            "`{}` has no signature `{name}`; its signatures: {}{}",
            dir.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") },
            if choice.signature.is_none() { " (choose one with --signature NAME)" } else { "" }
        ))
    })?;
    let output = choose_output(sig, name, choice)?;
    let frozen = freeze(dir, &meta, sig, name, &output).with_context(|| format!("SavedModel `{}`", dir.display()))?;
    Ok(Frozen { model: frozen, signatures, signature: name.to_string(), output })
}

/// The serving MetaGraphDef of the directory's saved_model.pb.
fn read_meta_graph(dir: &Path) -> Result<MetaGraphDef> {
    let pb = dir.join("saved_model.pb");
    if !pb.is_file() {
        return Err(Error::unsupported(format!(
            "`{}` holds its graph as text (saved_model.pbtxt); tfe-run reads the binary saved_model.pb: convert it with\n  \
             python -c \"from tensorflow.core.protobuf import saved_model_pb2; from google.protobuf import text_format; \
             m = text_format.Parse(open('{0}/saved_model.pbtxt').read(), saved_model_pb2.SavedModel()); \
             open('{0}/saved_model.pb', 'wb').write(m.SerializeToString())\"",
            dir.display()
        )));
    }
    // Bounded as every binary model file is: a huge file is refused before it is read.
    let bytes = crate::frontend::format::read(&pb)?;
    let model = SavedModel::decode(bytes.as_slice())
        .map_err(|e| Error::invalid_file(&pb, format!("not a SavedModel (protobuf decoding failed: {e})")))?;
    let tags = |m: &MetaGraphDef| m.meta_info_def.as_ref().map(|i| i.tags.clone()).unwrap_or_default();
    let serving: Vec<&MetaGraphDef> =
        model.meta_graphs.iter().filter(|m| tags(m).iter().any(|t| t == "serve")).collect();
    match (serving.as_slice(), model.meta_graphs.as_slice()) {
        ([one], _) => Ok((*one).clone()),
        ([], [one]) => Ok(one.clone()),
        ([], []) => Err(Error::invalid_file(&pb, "the SavedModel holds no MetaGraphDef")),
        (many, all) => {
            let list: Vec<String> = if many.is_empty() { all.iter().collect::<Vec<_>>() } else { many.to_vec() }
                .iter()
                .map(|m| format!("[{}]", tags(m).join(", ")))
                .collect();
            Err(Error::unsupported(format!(
                "`{}` holds {} MetaGraphDefs (tags {}); tfe-run reads a SavedModel with one tagged `serve`",
                pb.display(),
                list.len(),
                list.join(", ")
            )))
        }
    }
}

fn spec(key: &str, info: &TensorInfo) -> Result<TensorSpec> {
    let dtype = DataType::try_from(info.dtype).unwrap_or(DataType::DtInvalid);
    let shape = match &info.tensor_shape {
        None => None,
        Some(s) => shape_dims(s).map_err(|e| Error::invalid_model(format!("signature tensor `{key}`: {e}")))?,
    };
    Ok(TensorSpec { key: key.to_string(), dtype: dtype_name(dtype), shape })
}

/// Every signature a user can choose (not TensorFlow's own `__saved_model_init_op`).
fn list_signatures(meta: &MetaGraphDef) -> Result<Vec<Signature>> {
    let mut out = Vec::new();
    for (name, sig) in meta.signature_def.iter().filter(|(n, _)| !n.starts_with("__")) {
        let specs = |m: &BTreeMap<String, TensorInfo>| m.iter().map(|(k, v)| spec(k, v)).collect::<Result<Vec<_>>>();
        out.push(Signature { name: name.clone(), inputs: specs(&sig.inputs)?, outputs: specs(&sig.outputs)? });
    }
    Ok(out)
}

fn choose_output(sig: &SignatureDef, name: &str, choice: Choice<'_>) -> Result<String> {
    let keys: Vec<&String> = sig.outputs.keys().collect();
    let listed = || keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    match (choice.output, keys.as_slice()) {
        (Some(key), _) if sig.outputs.contains_key(key) => Ok(key.to_string()),
        (Some(key), _) => Err(Error::bad_input(format!(
            "--output {key}: signature `{name}` has no output `{key}`; its outputs: {}",
            listed()
        ))),
        (None, []) => Err(Error::unsupported(format!("signature `{name}` has no outputs"))),
        (None, [one]) => Ok((*one).clone()),
        (None, [first, ..]) if choice.first_output => Ok((*first).clone()),
        (None, many) => Err(Error::bad_input(format!(
            "signature `{name}` has {} outputs ({}): choose one with --output KEY",
            many.len(),
            listed()
        ))),
    }
}

/// The node and output slot of a tensor name (`node:1`).
fn tensor_of<'a>(info: &'a TensorInfo, key: &str) -> Result<(&'a str, usize)> {
    let Some(tensor_info::Encoding::Name(name)) = &info.encoding else {
        return Err(Error::unsupported(format!(
            "signature tensor `{key}` is a sparse or composite tensor; tfe-run reads dense tensors only"
        )));
    };
    match parse_input(name) {
        Ok(InputName::Data { node, slot }) => Ok((node, slot)),
        _ => Err(Error::invalid_model(format!("signature tensor `{key}` names `{name}`, not a tensor"))),
    }
}

/// Rename node `old` to `new` and every reference to it in the graph.
fn rename(graph: &mut GraphDef, old: &str, new: &str) {
    for n in &mut graph.node {
        if n.name == old {
            n.name = new.to_string();
        }
        for input in &mut n.input {
            let renamed = match parse_input(input) {
                Ok(InputName::Data { node, slot }) if node == old => {
                    Some(if input.contains(':') { format!("{new}:{slot}") } else { new.to_string() })
                }
                Ok(InputName::Control(node)) if node == old => Some(format!("^{new}")),
                _ => None,
            };
            if let Some(r) = renamed {
                *input = r;
            }
        }
    }
}

/// Renames done to give the signature's keys to their nodes.
#[derive(Default)]
struct Renames(HashMap<String, String>);

impl Renames {
    /// Give `new` to node `old`; a node of the graph that had `new` gets a name
    /// nothing uses.
    fn give(&mut self, graph: &mut GraphDef, old: Option<&str>, new: &str) {
        let names: HashSet<String> = graph.node.iter().map(|n| n.name.clone()).collect();
        if names.contains(new) && old != Some(new) {
            let fresh = (1u32..).map(|i| format!("{new}/_{i}")).find(|c| !names.contains(c)).unwrap_or_default();
            rename(graph, new, &fresh);
            self.moved(new, &fresh);
        }
        if let Some(old) = old.filter(|o| *o != new) {
            rename(graph, old, new);
            self.moved(old, new);
        }
    }

    fn moved(&mut self, old: &str, new: &str) {
        for v in self.0.values_mut().filter(|v| v.as_str() == old) {
            *v = new.to_string();
        }
        self.0.entry(old.to_string()).or_insert_with(|| new.to_string());
    }

    /// What the node first called `name` is called now.
    fn now(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_else(|| name.to_string())
    }
}

/// The variable handles each signature call takes, matched to the saved object
/// they are bound to: a call of concrete function F takes F's captured inputs
/// last, in the order of F's `bound_inputs`.
fn bound_variables(graph: &GraphDef, objects: Option<&SavedObjectGraph>) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    let Some(objects) = objects else { return out };
    let kinds: HashMap<&str, &str> = graph.node.iter().map(|n| (n.name.as_str(), n.op.as_str())).collect();
    for n in graph.node.iter().filter(|n| matches!(n.op.as_str(), "StatefulPartitionedCall" | "PartitionedCall")) {
        let Some(Value::Func(f)) = n.attr.get("f").and_then(|a| a.value.as_ref()) else { continue };
        let Some(function) = objects.concrete_functions.get(&f.name) else { continue };
        let data: Vec<&str> = n.input.iter().filter(|i| !i.starts_with('^')).map(String::as_str).collect();
        let Some(first) = data.len().checked_sub(function.bound_inputs.len()) else { continue };
        for (input, &object) in data.iter().skip(first).zip(&function.bound_inputs) {
            if let Ok(InputName::Data { node, .. }) = parse_input(input)
                && kinds.get(node) == Some(&"VarHandleOp")
            {
                out.insert(node.to_string(), object);
            }
        }
    }
    out
}

/// The path of child names from the root to every object of the saved object graph.
fn object_paths(children: &[Vec<(i32, String)>]) -> HashMap<i32, Vec<String>> {
    let mut paths: HashMap<i32, Vec<String>> = HashMap::from([(0, Vec::new())]);
    let mut queue = VecDeque::from([0i32]);
    while let Some(id) = queue.pop_front() {
        let here = paths.get(&id).cloned().unwrap_or_default();
        for (child, name) in usize::try_from(id).ok().and_then(|i| children.get(i)).into_iter().flatten() {
            if !paths.contains_key(child) {
                let mut p = here.clone();
                p.push(name.clone());
                paths.insert(*child, p);
                queue.push_back(*child);
            }
        }
    }
    paths
}

/// The checkpoint key of each bound TF2 variable: its saved object's path, walked
/// in the checkpoint's object graph, to that object's `VARIABLE_VALUE`.
fn checkpoint_keys(
    bound: &HashMap<String, i32>,
    objects: Option<&SavedObjectGraph>,
    bundle: &Bundle,
) -> Result<HashMap<String, String>> {
    let mut keys = HashMap::new();
    let Some(objects) = objects.filter(|_| !bound.is_empty()) else { return Ok(keys) };
    let raw = bundle.scalar_string(OBJECT_GRAPH_KEY, "the checkpoint's object graph")?;
    let trackable = TrackableObjectGraph::decode(raw.as_slice()).map_err(|e| {
        Error::invalid_model(format!("the checkpoint's object graph is not a TrackableObjectGraph: {e}"))
    })?;
    let saved: Vec<Vec<(i32, String)>> =
        objects.nodes.iter().map(|n| n.children.iter().map(|c| (c.node_id, c.local_name.clone())).collect()).collect();
    let paths = object_paths(&saved);
    for (node, object) in bound {
        let is_variable = usize::try_from(*object)
            .ok()
            .and_then(|i| objects.nodes.get(i))
            .is_some_and(|o| matches!(o.kind, Some(saved_object::Kind::Variable(_))));
        let Some(path) = paths.get(object).filter(|_| is_variable) else { continue };
        let mut at = 0usize;
        for name in path {
            let next = trackable
                .nodes
                .get(at)
                .and_then(|t| t.children.iter().find(|c| &c.local_name == name))
                .and_then(|c| usize::try_from(c.node_id).ok());
            let Some(next) = next else {
                return Err(Error::invalid_model(format!(
                    "variable `{node}` is object `{}` of the SavedModel, which the checkpoint's object graph lacks",
                    path.join("/")
                )));
            };
            at = next;
        }
        let key = trackable
            .nodes
            .get(at)
            .and_then(|t| t.attributes.iter().find(|a| a.name == "VARIABLE_VALUE"))
            .map(|a| a.checkpoint_key.clone())
            .ok_or_else(|| {
                Error::invalid_model(format!(
                    "variable `{node}` (object `{}`) has no VARIABLE_VALUE in the checkpoint's object graph",
                    path.join("/")
                ))
            })?;
        keys.insert(node.clone(), key);
    }
    Ok(keys)
}

/// The nodes `outputs` depend on through data inputs, as names.
fn data_ancestors(graph: &GraphDef, output: &str) -> HashSet<String> {
    let by_name: HashMap<&str, &NodeDef> = graph.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack = vec![output.to_string()];
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for input in by_name.get(name.as_str()).map(|n| n.input.as_slice()).unwrap_or_default() {
            if let Ok(InputName::Data { node, .. }) = parse_input(input) {
                stack.push(node.to_string());
            }
        }
    }
    seen
}

/// The graph cut to what `output` needs through data inputs (control inputs
/// order stateful ops, and a frozen graph has none left); the function library stays.
fn prune(graph: GraphDef, output: &str) -> GraphDef {
    let needed = data_ancestors(&graph, output);
    let mut node: Vec<NodeDef> = graph.node.into_iter().filter(|n| needed.contains(&n.name)).collect();
    for n in &mut node {
        n.input.retain(|i| !i.starts_with('^'));
    }
    GraphDef { node, ..graph }
}

/// Inline the graph's function calls (StatefulPartitionedCall, PartitionedCall, nested).
fn inline(graph: GraphDef) -> Result<GraphDef> {
    super::tf::function::inline_calls(graph)
}

fn attr(value: Value) -> AttrValue {
    AttrValue { value: Some(value) }
}

/// The variable node `node` as a constant holding `stored`, after checking
/// that the bundle's dtype and shape are the variable's.
fn constant(node: &NodeDef, stored: bundle::Stored, key: &str) -> Result<NodeDef> {
    let declared = node.get_attr_type("dtype")?;
    if declared != Some(stored.dtype) {
        return Err(Error::invalid_model(format!(
            "variable `{}` is {}, but its value `{key}` in the bundle is {}",
            node.name,
            declared.map_or("of no dtype", dtype_name),
            dtype_name(stored.dtype)
        )));
    }
    let stored_dims = shape_dims(&stored.shape).map_err(|e| Error::invalid_model(format!("`{key}`: {e}")))?;
    if let (Some(want), Some(got)) = (node.get_attr_opt_shape("shape")?, &stored_dims) {
        let fits = want.len() == got.len() && want.iter().zip(got).all(|(w, g)| w.is_none() || w == g);
        if !fits {
            return Err(Error::invalid_model(format!(
                "variable `{}` has shape {want:?}, but its value `{key}` in the bundle has shape {got:?}",
                node.name
            )));
        }
    }
    let value = TensorProto {
        dtype: stored.dtype as i32,
        tensor_shape: Some(stored.shape),
        tensor_content: stored.bytes,
        ..TensorProto::default()
    };
    Ok(NodeDef {
        name: node.name.clone(),
        op: "Const".into(),
        attr: [
            ("dtype".to_string(), attr(Value::Type(stored.dtype as i32))),
            ("value".to_string(), attr(Value::Tensor(value))),
        ]
        .into_iter()
        .collect(),
        ..NodeDef::default()
    })
}

fn freeze(dir: &Path, meta: &MetaGraphDef, sig: &SignatureDef, name: &str, output: &str) -> Result<TfModel> {
    let mut graph = meta.graph_def.clone().unwrap_or_default();
    // 1. Inputs and the output named by their keys.
    let mut renames = Renames::default();
    if sig.inputs.contains_key(output) {
        return Err(Error::unsupported(format!("signature `{name}` has an input and an output both keyed `{output}`")));
    }
    for (key, info) in &sig.inputs {
        let (node, _) = tensor_of(info, key)?;
        let node = renames.now(node);
        let op = graph.node.iter().find(|n| n.name == node).map(|n| n.op.clone());
        match op.as_deref() {
            Some("Placeholder" | "PlaceholderWithDefault") => {}
            Some(op) => {
                return Err(Error::unsupported(format!(
                    "input `{key}` of signature `{name}` is {op} `{node}`, not a placeholder"
                )));
            }
            None => {
                return Err(Error::invalid_model(format!(
                    "input `{key}` of signature `{name}` names no node `{node}`"
                )));
            }
        }
        renames.give(&mut graph, Some(&node), key);
    }
    let info = sig.outputs.get(output).ok_or_else(|| Error::bad_input(format!("no output `{output}`")))?;
    let (node, slot) = tensor_of(info, output)?;
    if !graph.node.iter().any(|n| n.name == renames.now(node)) {
        return Err(Error::invalid_model(format!("output `{output}` of signature `{name}` names no node `{node}`")));
    }
    if renames.now(node) != output || slot != 0 {
        renames.give(&mut graph, None, output);
        let mut identity = NodeDef { name: output.to_string(), op: "Identity".into(), ..NodeDef::default() };
        identity.input.push(format!("{}:{slot}", renames.now(node)));
        identity.attr.insert("T".into(), attr(Value::Type(info.dtype)));
        graph.node.push(identity);
    }
    // 2. Variable handles bound to saved objects, while the calls are there.
    let bound = bound_variables(&graph, meta.object_graph_def.as_ref());
    // 3. Inline, then keep what the output needs.
    let graph = inline(prune(graph, output))?;
    let mut kept = prune(graph, output).node;
    // 4. Variables become constants.
    let variables: Vec<usize> = (kept.iter().enumerate())
        .filter(|(_, n)| matches!(n.op.as_str(), "VarHandleOp" | "VariableV2" | "Variable"))
        .map(|(i, _)| i)
        .collect();
    if !variables.is_empty() {
        let prefix = dir.join("variables").join("variables");
        let bundle = Bundle::open(&prefix)?;
        let keys = checkpoint_keys(&bound, meta.object_graph_def.as_ref(), &bundle)?;
        for i in variables {
            let Some(node) = kept.get(i) else { continue };
            let key = match keys.get(&node.name) {
                Some(k) => k.clone(),
                None => {
                    let shared = node.get_attr_str("shared_name", "")?;
                    if bundle.contains(&node.name) || shared.is_empty() || !bundle.contains(&shared) {
                        node.name.clone()
                    } else {
                        shared
                    }
                }
            };
            let stored = bundle.tensor(&key, &format!("variable `{}` ({})", node.name, node.op))?;
            let c = constant(node, stored, &key)?;
            if let Some(slot) = kept.get_mut(i) {
                *slot = c;
            }
        }
    }
    for n in kept.iter_mut().filter(|n| n.op == "ReadVariableOp") {
        let dtype = n.attr.remove("dtype");
        n.op = "Identity".into();
        n.attr.clear();
        if let Some(d) = dtype {
            n.attr.insert("T".into(), d);
        }
    }
    let graph = Graph::from_graph_def(GraphDef { node: kept, ..GraphDef::default() })?;
    let output = graph.node_index(output).ok_or_else(|| Error::invalid_model(format!("no output node `{output}`")))?;
    Ok(TfModel { graph, output })
}
