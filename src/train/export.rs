//! A trained model as a frozen TensorFlow GraphDef (and as `.npy` weights).
//!
//! The graph is what `tf.compat.v1` would freeze for logistic regression:
//!
//! ```text
//! features (Placeholder float [?, d]) ─ MatMul(weights) ─ BiasAdd(bias) = logits ─ Sigmoid = probabilities
//! ```
//!
//! so TensorFlow loads it as it is, and `tfe-run` serves it for private prediction
//! (the final Sigmoid is applied by the client to the revealed logits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::ArrayD;
use prost::Message;

use super::Model;
use crate::frontend::tf::proto::tensorflow::attr_value::Value;
use crate::frontend::tf::proto::tensorflow::tensor_shape_proto::Dim;
use crate::frontend::tf::proto::{AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto};

/// The names of the exported graph's input and output nodes.
pub const INPUT: &str = "features";
pub const LOGITS: &str = "logits";
pub const OUTPUT: &str = "probabilities";

fn shape(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto { dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(), unknown_rank: false }
}

fn float_type() -> AttrValue {
    AttrValue { value: Some(Value::Type(DataType::DtFloat as i32)) }
}

fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, Value)>) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs.into_iter().map(|(k, v)| (k.to_string(), AttrValue { value: Some(v) })).collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

fn constant(name: &str, values: &[f32], dims: &[i64]) -> NodeDef {
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(dims)),
        tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    };
    node(name, "Const", &[], vec![("dtype", float_type().value.expect("set")), ("value", Value::Tensor(tensor))])
}

/// The frozen graph of a model.
pub fn graph(model: &Model) -> GraphDef {
    let (d, k) = model.weights.dim();
    let t = || float_type().value.expect("set");
    let weights: Vec<f32> = model.weights.iter().map(|&v| v as f32).collect();
    let bias: Vec<f32> = model.bias.iter().map(|&v| v as f32).collect();
    GraphDef {
        node: vec![
            node(INPUT, "Placeholder", &[], vec![("dtype", t()), ("shape", Value::Shape(shape(&[-1, d as i64])))]),
            constant("weights", &weights, &[d as i64, k as i64]),
            node(
                "matmul",
                "MatMul",
                &[INPUT, "weights"],
                vec![("T", t()), ("transpose_a", Value::B(false)), ("transpose_b", Value::B(false))],
            ),
            constant("bias", &bias, &[k as i64]),
            node(LOGITS, "BiasAdd", &["matmul", "bias"], vec![("T", t()), ("data_format", Value::S(b"NHWC".to_vec()))]),
            node(OUTPUT, "Sigmoid", &[LOGITS], vec![("T", t())]),
        ],
        ..Default::default()
    }
}

/// The frozen graph of a model, as the bytes of a `.pb` file.
pub fn graph_bytes(model: &Model) -> Vec<u8> {
    graph(model).encode_to_vec()
}

/// Where the weights go beside `model.pb`: `model.weights.npy` and `model.bias.npy`.
pub fn npy_paths(out: &Path) -> (PathBuf, PathBuf) {
    (out.with_extension("weights.npy"), out.with_extension("bias.npy"))
}

/// Write the GraphDef to `out`, and the weights ([d, k]) and bias ([k]) as float32
/// `.npy` files beside it.
pub fn write(model: &Model, out: &Path) -> Result<()> {
    std::fs::write(out, graph_bytes(model)).with_context(|| format!("cannot write `{}`", out.display()))?;
    let (w, b) = npy_paths(out);
    crate::npy::write_f32(&w, &model.weights.mapv(|v| v as f32).into_dyn())?;
    crate::npy::write_f32(&b, &ArrayD::from_shape_vec(vec![model.bias.len()], model.bias.mapv(|v| v as f32).to_vec())?)
}
