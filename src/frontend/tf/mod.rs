//! The TensorFlow GraphDef frontend: a frozen `.pb` graph, walked in topological
//! order, each node turned into op requests to the [`Builder`] by its entry in
//! the op table. This folder is the only part of tfe-run that knows TensorFlow's
//! messages.

pub mod frames;
pub mod function;
pub mod graph;
pub mod loops;
mod ops;
pub mod proto;
pub mod text;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};

pub use graph::Graph;
pub use ops::docs::{OP_DOCS, OpDoc, markdown as ops_markdown};
pub use ops::{SUPPORTED_OPS, is_supported};

use super::{Builder, Feed, Model, OpCount, Origin, Placeholder, Public, Report, Slot};
use crate::error::Error;
use crate::plan::Plan;
use crate::tensor::Tensor;
use proto::{DataType, NodeDef, NodeExt, dtype_name, is_float, is_integer};

/// A node as the op builders see it: its definition (attributes, inputs) and its
/// origin for the builder's messages.
pub struct Node<'a> {
    pub def: &'a NodeDef,
    pub origin: Origin,
}

impl<'a> Node<'a> {
    pub fn new(def: &'a NodeDef) -> Node<'a> {
        Node { def, origin: Origin::new(def.name.clone(), def.op.clone()) }
    }
}

impl std::ops::Deref for Node<'_> {
    type Target = NodeDef;

    fn deref(&self) -> &NodeDef {
        self.def
    }
}

/// A decoded GraphDef and its chosen output node.
pub struct TfModel {
    pub graph: Graph,
    pub output: usize,
}

impl TfModel {
    /// Decode the bytes of the file at `path`, and pick the output: the one
    /// named, or the graph's single sink.
    pub fn decode(bytes: &[u8], path: &Path, output_node: Option<&str>) -> Result<TfModel> {
        let graph = Graph::decode(bytes).with_context(|| format!("model `{}`", path.display()))?;
        TfModel::with_output(graph, path, output_node)
    }

    /// [`decode`](TfModel::decode) of a text GraphDef (`.pbtxt`).
    pub fn decode_text(bytes: &[u8], path: &Path, output_node: Option<&str>) -> Result<TfModel> {
        let graph = text::decode(bytes, &path.display().to_string())
            .and_then(Graph::from_graph_def)
            .with_context(|| format!("model `{}`", path.display()))?;
        TfModel::with_output(graph, path, output_node)
    }

    fn with_output(graph: Graph, path: &Path, output_node: Option<&str>) -> Result<TfModel> {
        // Before the output: an unfrozen graph's many Assign sinks are not the problem.
        if let Some(v) = graph.nodes.iter().find(|n| crate::frontend::format::VARIABLE_OPS.contains(&n.op.as_str())) {
            return Err(crate::frontend::format::unfrozen(&v.name, &v.op))
                .with_context(|| format!("model `{}`", path.display()));
        }
        let output = graph.output(output_node)?;
        Ok(TfModel { graph, output })
    }

    fn output_name(&self) -> &str {
        self.graph.nodes.get(self.output).map_or("?", |n| n.name.as_str())
    }
}

/// The placeholders among `nodes`, in graph order.
pub fn placeholders(graph: &Graph, nodes: &[usize]) -> Result<Vec<Placeholder>> {
    let mut out = Vec::new();
    for n in nodes.iter().filter_map(|&i| graph.nodes.get(i)) {
        if n.op == "Placeholder" || n.op == "PlaceholderWithDefault" {
            let dtype = n.get_attr_type("dtype")?;
            out.push(Placeholder {
                name: n.name.clone(),
                dtype: dtype.map(dtype_name),
                feedable: dtype.is_some_and(|d| is_float(d) || is_integer(d)),
                shape: n.get_attr_opt_shape("shape")?,
                has_default: n.op == "PlaceholderWithDefault",
            });
        }
    }
    Ok(out)
}

/// A placeholder fed a public number: a constant of its declared shape (one
/// element, checked by `check_feeds`; a scalar when the rank is unknown).
pub(crate) fn public_number(node: &Node<'_>, public: &Public) -> Result<Slot> {
    let value = public.get(&node.name).copied().unwrap_or_default();
    let shape: Vec<usize> =
        node.get_attr_opt_shape("shape")?.unwrap_or_default().iter().map(|d| d.unwrap_or(1)).collect();
    // Bools are integers here, as a bool constant is (see `proto::decode_tensor`).
    let tensor = if node.get_attr_type("dtype")? == Some(DataType::DtBool) {
        Tensor::Int(ndarray::ArrayD::from_elem(ndarray::IxDyn(&shape), i64::from(value != 0.0)))
    } else {
        Tensor::Float(ndarray::ArrayD::from_elem(ndarray::IxDyn(&shape), value))
    };
    Ok(Builder::known(&node.origin, tensor))
}

impl Model for TfModel {
    fn report(&self) -> Result<Report> {
        let graph = &self.graph;
        let used = graph.data_ancestors(self.output);
        // A loop's condition and body are the model's ops too (each counted once,
        // not per iteration).
        let in_loops = loops::loop_ops(graph, &used);
        let mut histogram = graph.op_histogram(Some(&used));
        for (_, op) in &in_loops {
            let count: &mut usize = histogram.entry(op.clone()).or_insert(0);
            *count = count.saturating_add(1);
        }
        let ops = histogram
            .into_iter()
            .map(|(op_type, count)| OpCount { supported: is_supported(&op_type), op_type, count })
            .collect();
        let nodes = || used.iter().filter_map(|&i| graph.nodes.get(i));
        let unsupported = nodes()
            .map(|n| Node::new(n).origin)
            .chain(in_loops.into_iter().map(|(node, op)| Origin::new(node, op)))
            .filter(|o| !is_supported(&o.op_type))
            .collect();
        let parameters = nodes()
            .filter(|n| n.op == "Const")
            .filter_map(|n| match n.get_attr_tensor("value") {
                Ok(Tensor::Float(t)) => Some(t.len()),
                _ => None,
            })
            .fold(0usize, usize::saturating_add);
        Ok(Report {
            nodes: graph.nodes.len(),
            nodes_used: used.len(),
            output: self.output_name().to_string(),
            placeholders: placeholders(graph, &used)?,
            all_placeholders: (graph.nodes.iter())
                .filter(|n| n.op == "Placeholder" || n.op == "PlaceholderWithDefault")
                .map(|n| n.name.clone())
                .collect(),
            ops,
            unsupported,
            parameters,
        })
    }

    /// The plan that computes the output from the `feeds`.
    fn build(&self, report: &Report, feeds: &BTreeMap<String, Feed>, public: &Public) -> Result<Plan> {
        let graph = &self.graph;
        let nodes = graph.data_ancestors(self.output);
        report.check_supported()?;
        report.check_feeds(feeds, public)?;

        let mut walker = loops::Walker::new(graph, feeds, public)?;
        let mut slots: HashMap<usize, Vec<Slot>> = HashMap::with_capacity(nodes.len());
        let dead = walker.walk(graph, &nodes, &mut slots)?;
        if dead.contains(&self.output) {
            return Err(Error::unsupported(format!(
                "output `{}` lies on a branch of a tf.cond that the model's public inputs do not take",
                self.output_name()
            )));
        }
        walker.builder.finish(self.output_name(), slots.get(&self.output).and_then(|s| s.first()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use super::proto::build::*;
    use super::proto::tensorflow::attr_value::Value;
    use crate::frontend::{self, Feed};
    use crate::kernels::linear::to_nchw;
    use crate::kernels::{Layout, Padding};
    use crate::plan::{Op, Plan};

    fn text(s: &str) -> Value {
        Value::S(s.as_bytes().to_vec())
    }

    fn conv(input: &str, format: &str, padding: &str, explicit: Option<&[i64]>) -> super::NodeDef {
        let mut n = with_attr(node("conv", "Conv2D", &[input, "filter"]), "strides", ints(&[1, 1, 1, 1]));
        n = with_attr(n, "padding", text(padding));
        n = with_attr(n, "data_format", text(format));
        match explicit {
            Some(pads) => with_attr(n, "explicit_paddings", ints(pads)),
            None => n,
        }
    }

    fn filter() -> super::NodeDef {
        let values: Vec<f32> = (0..2 * 3 * 2 * 3).map(|i| (i % 7) as f32 - 3.0).collect();
        const_f32("filter", &[2, 3, 2, 3], &values)
    }

    fn plan(nodes: Vec<super::NodeDef>, x: &[usize]) -> Plan {
        let bytes = graph(nodes).encode_to_vec();
        let feeds =
            |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: x.to_vec(), source: "x".into() })].into());
        frontend::load_bytes(&bytes, Path::new("test.pb"), Some("conv"), feeds).unwrap().into_plan().unwrap()
    }

    fn run(plan: &Plan, x: ndarray::ArrayD<f32>) -> ndarray::ArrayD<f32> {
        crate::plaintext::run(plan, &[("x".to_string(), x)].into()).unwrap().to_float()
    }

    #[test]
    fn explicit_conv2d_paddings_are_read_in_data_format_order() {
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 5, 6, 2]), |i| {
            ((i[1] * 13 + i[2] * 3 + i[3]) % 11) as f32 - 5.0
        });
        // H padded (1, 2), W (0, 1): as TensorFlow lists them, per dimension in data_format order.
        let explicit = plan(
            vec![
                placeholder("x", &[1, 5, 6, 2]),
                filter(),
                conv("x", "NHWC", "EXPLICIT", Some(&[0, 0, 1, 2, 0, 1, 0, 0])),
            ],
            &[1, 5, 6, 2],
        );
        let [step] = explicit.steps.as_slice() else { panic!("{}", explicit.describe()) };
        assert_eq!(step.op_type, "Conv2D");
        assert!(matches!(step.op, Op::Conv2D(w) if w.padding == Padding::Explicit([[1, 2], [0, 1]])), "{:?}", step.op);

        let padded = plan(
            vec![
                placeholder("x", &[1, 5, 6, 2]),
                filter(),
                const_i32("pads", &[4, 2], &[0, 0, 1, 2, 0, 1, 0, 0]),
                node("pad", "Pad", &["x", "pads"]),
                conv("pad", "NHWC", "VALID", None),
            ],
            &[1, 5, 6, 2],
        );
        let want = run(&padded, x.clone());
        assert_eq!(run(&explicit, x.clone()), want);

        let nchw = plan(
            vec![
                placeholder("x", &[1, 2, 5, 6]),
                filter(),
                conv("x", "NCHW", "EXPLICIT", Some(&[0, 0, 0, 0, 1, 2, 0, 1])),
            ],
            &[1, 2, 5, 6],
        );
        assert_eq!(run(&nchw, to_nchw(&x)), to_nchw(&want));
        // Planned in its own layout, with no transposes around it.
        assert!(matches!(nchw.steps.as_slice(), [s] if matches!(s.op, Op::Conv2D(w) if w.layout == Layout::Nchw)));
        assert_eq!(nchw.check_consistent(), Ok(()));
    }

    #[test]
    fn explicit_paddings_on_the_batch_or_channels_or_of_the_wrong_length_are_refused() {
        for pads in
            [&[1, 0, 1, 2, 0, 1, 0, 0][..], &[0, 0, 1, 2, 0, 1, 0, 1], &[1, 2, 0, 1], &[0, 0, -1, 2, 0, 1, 0, 0]]
        {
            let bytes =
                graph(vec![placeholder("x", &[1, 5, 6, 2]), filter(), conv("x", "NHWC", "EXPLICIT", Some(pads))])
                    .encode_to_vec();
            let feeds = |_: &frontend::Report| {
                Ok([("x".to_string(), Feed { shape: vec![1, 5, 6, 2], source: "x".into() })].into())
            };
            let loaded = frontend::load_bytes(&bytes, Path::new("test.pb"), None, feeds).unwrap();
            let err = format!("{:#}", loaded.into_plan().unwrap_err());
            assert!(err.contains("Conv2D `conv`: explicit_paddings"), "{pads:?}: {err}");
        }
    }

    #[test]
    fn nchw_pools_run_securely_as_they_run_in_the_clear() {
        let pool = |name: &str, op: &str, input: &str| {
            let n = with_attr(node(name, op, &[input]), "ksize", ints(&[1, 1, 2, 2]));
            let n = with_attr(n, "strides", ints(&[1, 1, 2, 1]));
            let n = with_attr(n, "padding", text("SAME"));
            with_attr(n, "data_format", text("NCHW"))
        };
        let nodes = vec![placeholder("x", &[1, 3, 5, 4]), pool("max", "MaxPool", "x"), pool("conv", "AvgPool", "max")];
        let plan = plan(nodes, &[1, 3, 5, 4]);
        assert_eq!(plan.output_value().shape, vec![1, 3, 2, 4]);
        assert_eq!(plan.check_consistent(), Ok(()));
        let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 3, 5, 4]), |i| {
            ((i[1] * 7 + i[2] * 5 + i[3] * 3) % 13) as f32 / 4.0 - 1.5
        });
        let clear = run(&plan, x.clone());
        let inputs = [("x".to_string(), x)].into();
        let secure = crate::runtime::predict(&plan, &inputs, &crate::runtime::SecureConfig::default()).unwrap();
        let secure = secure.outputs[0].to_float();
        assert_eq!(secure.shape(), clear.shape());
        for (s, c) in secure.iter().zip(&clear) {
            assert!((s - c).abs() < 1e-3, "secure {s} vs clear {c}");
        }
    }

    #[test]
    fn a_split_of_an_empty_axis_into_2_pow_62_pieces_is_refused_not_allocated() {
        // 0 divides into any number of pieces: a list of 2^62 sizes overflowed
        // the allocator's capacity (a panic), fewer would have taken forever.
        let split = with_attr(node("split", "Split", &["axis", "empty"]), "num_split", Value::I(1 << 62));
        let nodes = vec![
            placeholder("x", &[1]),
            const_i32("axis", &[], &[0]),
            const_f32("empty", &[0], &[]),
            split,
            node("conv", "AddV2", &["x", "split:0"]),
        ];
        let bytes = graph(nodes).encode_to_vec();
        let feeds = |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![1], source: "x".into() })].into());
        let loaded = frontend::load_bytes(&bytes, Path::new("test.pb"), Some("conv"), feeds).unwrap();
        let err = format!("{:#}", loaded.into_plan().unwrap_err());
        assert!(err.contains("Split `split`: axis 0 of [0] does not split into 4611686018427387904"), "{err}");
    }

    /// A TF2 dropout (`tf.compat.v1.nn.dropout`) whose keep_prob is
    /// `placeholder_with_default(kp)`: rate = 1 − kp, RandomUniform ≥ rate, a
    /// SelectV2 of x / (1 − rate) and 0; then x + that, so that the plan has a step.
    fn dropout(kp: f32) -> Vec<super::NodeDef> {
        vec![
            placeholder("x", &[2, 3]),
            const_f32("one", &[], &[1.0]),
            const_f32("zero", &[], &[0.0]),
            const_f32("kp_default", &[], &[kp]),
            node("keep_prob", "PlaceholderWithDefault", &["kp_default"]),
            node("rate", "Sub", &["one", "keep_prob"]),
            const_i32("shape", &[2], &[2, 3]),
            node("uniform", "RandomUniform", &["shape"]),
            node("mask", "GreaterEqual", &["uniform", "rate"]),
            node("keep", "Sub", &["one", "rate"]),
            node("scaled", "RealDiv", &["x", "keep"]),
            node("dropped", "SelectV2", &["mask", "scaled", "zero"]),
            // TF1's own form: x * floor(keep_prob + U).
            node("kp_u", "AddV2", &["keep_prob", "uniform"]),
            node("floor", "Floor", &["kp_u"]),
            node("old", "Mul", &["x", "floor"]),
            node("conv", "AddV2", &["dropped", "old"]),
        ]
    }

    fn load_dropout(kp: f32) -> anyhow::Result<Plan> {
        let bytes = graph(dropout(kp)).encode_to_vec();
        let feeds =
            |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![2, 3], source: "x".into() })].into());
        frontend::load_bytes(&bytes, Path::new("test.pb"), Some("conv"), feeds).unwrap().into_plan()
    }

    #[test]
    fn a_dropout_with_keep_prob_1_folds_away_for_every_random_value() {
        let plan = load_dropout(1.0).unwrap();
        // Neither mask nor scale is a step: x + x only.
        let [step] = plan.steps.as_slice() else { panic!("{}", plan.describe()) };
        assert_eq!((step.op_type.as_str(), step.inputs.as_slice()), ("AddV2", &[0, 0][..]));
    }

    #[test]
    fn a_dropout_not_decided_at_import_is_refused_naming_the_node() {
        let err = format!("{:#}", load_dropout(0.5).unwrap_err());
        let named = err.contains("GreaterEqual `mask`") || err.contains("Floor `floor`");
        assert!(named && err.contains("`uniform`") && err.contains("not decided"), "{err}");
        // The bounds the refusal is decided on: U ≥ 0 holds for every U.
        let b = crate::frontend::Bounded { shape: vec![1], lo: 0.0, hi: 1.0 - f32::EPSILON, origin: "u".into() };
        assert_eq!(b.lo + 1.0, 1.0);
        assert_eq!((b.hi + 1.0).floor(), 1.0, "1 + the largest U stays below 2 in f32");
    }

    #[test]
    fn a_keep_prob_placeholder_fed_a_public_number_decides_the_dropout() {
        // keep_prob a plain Placeholder, fed 1.0 (folds) or 0.5 (refused by name).
        let mut nodes = dropout(1.0);
        nodes.retain(|n| n.name != "keep_prob" && n.name != "kp_default");
        nodes.push(placeholder("keep_prob", &[]));
        let bytes = graph(nodes).encode_to_vec();
        let load = |kp: f32| {
            let feeds =
                |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![2, 3], source: "x".into() })].into());
            let public = [("keep_prob".to_string(), kp)].into();
            frontend::load_bytes_public(&bytes, Path::new("test.pb"), Some("conv"), &public, feeds).unwrap().into_plan()
        };
        let plan = load(1.0).unwrap();
        assert_eq!(plan.steps.len(), 1, "{}", plan.describe());
        assert_eq!(plan.inputs.len(), 1, "keep_prob is no private input");
        let err = format!("{:#}", load(0.5).unwrap_err());
        assert!(err.contains("`uniform`") && err.contains("not decided"), "{err}");
        // Unfed, it is refused as any placeholder without an input.
        let feeds =
            |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![2, 3], source: "x".into() })].into());
        let err = frontend::load_bytes(&bytes, Path::new("test.pb"), Some("conv"), feeds).unwrap().into_plan();
        assert!(format!("{:#}", err.unwrap_err()).contains("keep_prob"));
    }

    #[test]
    fn clip_by_value_is_one_two_sided_clip_unless_its_middle_is_read_elsewhere() {
        let clip = |extra: bool| {
            let mut nodes = vec![
                placeholder("x", &[2, 3]),
                const_f32("hi", &[], &[2.5]),
                const_f32("lo", &[], &[-1.0]),
                node("min", "Minimum", &["x", "hi"]),
                node("max", "Maximum", &["min", "lo"]),
            ];
            nodes.push(if extra { node("conv", "AddV2", &["max", "min"]) } else { node("conv", "Neg", &["max"]) });
            plan(nodes, &[2, 3])
        };
        let fused = clip(false);
        let ops: Vec<&Op> = fused.steps.iter().map(|s| &s.op).collect();
        let both: Op = crate::ops::Clip { lo: Some(-1.0), hi: Some(2.5) }.into();
        assert_eq!(ops, [&both, &Op::Reshape(vec![2, 3]), &Op::Neg], "{}", fused.describe());
        let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 3]), vec![-3.0, -1.0, 0.5, 2.5, 3.0, 9.0]).unwrap();
        assert_eq!(run(&fused, x).iter().copied().collect::<Vec<_>>(), vec![1.0, 1.0, -0.5, -2.5, -2.5, -2.5]);
        // The Minimum's output also feeds the Add: both clips stay one-sided.
        let kept = clip(true);
        assert!(kept.steps.iter().all(|s| !matches!(&s.op, o if *o == both)), "{}", kept.describe());
    }
}
