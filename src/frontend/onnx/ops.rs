//! The table of ONNX ops tfe-run imports (default domain, opsets 13 to 21):
//! op type → builder. A builder reads the node's attributes and its known
//! (public) inputs, and turns the node into plan [`Op`]s through
//! [`Builder::apply`], which folds or plans.

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::proto::{Attrs, NodeProto};
use crate::error::Error;
use crate::frontend::{Builder, Known, Origin, Slot};
use crate::kernels::layout::AxisSlice;
use crate::kernels::{Layout, Padding, Window};
use crate::plan::Op;
use crate::tensor::Tensor;

/// What a builder sees: the plan under construction, the node and its origin.
/// Attributes and inputs that moved between opsets 13 and 21 (ReduceMean's
/// axes, Split's num_outputs) are read in either place.
pub struct Ctx<'a> {
    pub builder: &'a mut Builder,
    pub node: &'a NodeProto,
    pub at: &'a Origin,
}

impl Ctx<'_> {
    fn attrs(&self) -> Attrs<'_> {
        Attrs::new(self.node)
    }

    fn apply(&mut self, op: Op, ins: &[Slot]) -> Result<Slot> {
        self.builder.apply(self.at, op, ins)
    }

    fn shape(&self, slot: &Slot) -> Vec<usize> {
        self.builder.shape(slot)
    }

    fn fail(&self, msg: impl std::fmt::Display) -> anyhow::Error {
        Error::unsupported(format!("{}: {msg}", self.at))
    }

    fn invalid(&self, msg: impl std::fmt::Display) -> anyhow::Error {
        Error::invalid_model(format!("{}: {msg}", self.at))
    }

    fn ints(&self, slot: &Slot, what: &str) -> Result<Vec<i64>> {
        self.builder.known_ints(self.at, slot, what)
    }

    fn floats(&self, slot: &Slot, what: &str) -> Result<ArrayD<f32>> {
        self.builder.known_floats(self.at, slot, what)
    }

    /// A known tensor named after this node (a folded parameter).
    fn known(&self, suffix: &str, tensor: Tensor) -> Slot {
        Slot::Known(std::rc::Rc::new(Known { tensor, origin: format!("{}/{suffix}", self.at.node) }))
    }

    fn scalar(&self, suffix: &str, v: f32) -> Slot {
        self.known(suffix, Tensor::scalar_float(v))
    }

    /// A possibly negative axis, resolved against `rank`.
    fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = i64::try_from(rank).unwrap_or(i64::MAX);
        let resolved = if axis < 0 { axis.checked_add(r) } else { Some(axis) };
        resolved
            .filter(|a| (0..r).contains(a))
            .and_then(|a| usize::try_from(a).ok())
            .ok_or_else(|| self.fail(format!("axis {axis} is out of range for rank {rank}")))
    }

    fn axes(&self, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
        let mut out: Vec<usize> = axes.iter().map(|&a| self.axis(a, rank)).collect::<Result<_>>()?;
        out.sort_unstable();
        if out.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(self.fail(format!("axes {axes:?} repeat an axis")));
        }
        Ok(out)
    }
}

type OpBuilder = fn(&mut Ctx<'_>, &[Option<Slot>]) -> Result<Vec<Slot>>;

/// Every op type the importer knows, with its builder.
const TABLE: &[(&str, OpBuilder)] = &[
    // data movement and public subgraphs
    ("Constant", constant),
    ("Identity", identity),
    ("Dropout", dropout),
    ("Shape", shape),
    ("Size", size),
    ("Cast", cast),
    ("ConstantOfShape", constant_of_shape),
    ("Range", range),
    ("Equal", equal),
    ("Where", where_),
    ("Reshape", reshape),
    ("Flatten", flatten),
    ("Squeeze", squeeze),
    ("Unsqueeze", unsqueeze),
    ("Transpose", transpose),
    ("Concat", concat),
    ("Split", split),
    ("Slice", slice),
    ("Gather", gather),
    ("Expand", expand),
    ("Pad", pad),
    ("Resize", resize),
    // arithmetic
    ("Add", add),
    ("Sub", sub),
    ("Mul", mul),
    ("Div", div),
    ("Neg", neg),
    ("Sqrt", sqrt),
    ("MatMul", matmul),
    ("Gemm", gemm),
    ("ReduceMean", reduce_mean),
    ("ReduceSum", reduce_sum),
    // neural network
    ("Conv", conv),
    ("ConvTranspose", conv_transpose),
    ("BatchNormalization", batch_norm),
    ("LayerNormalization", layer_norm),
    ("MaxPool", max_pool),
    ("AveragePool", average_pool),
    ("GlobalAveragePool", global_average_pool),
    ("GlobalMaxPool", global_max_pool),
    ("Relu", relu),
    ("LeakyRelu", leaky_relu),
    ("Clip", clip),
    ("Sigmoid", sigmoid),
    ("Tanh", tanh),
    ("HardSigmoid", hard_sigmoid),
    ("HardSwish", hard_swish),
    ("Erf", erf),
    ("Gelu", gelu),
    ("Softmax", softmax),
];

/// The op types tfe-run imports from ONNX, sorted (for docs/FORMATS.md).
pub const SUPPORTED_OPS: &[&str] = &{
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        // Evaluated at compile time: an index out of range would not compile.
        #[allow(clippy::indexing_slicing)]
        {
            names[i] = TABLE[i].0;
        }
        i = i.saturating_add(1);
    }
    names
};

pub fn is_supported(op: &str) -> bool {
    TABLE.iter().any(|(name, _)| *name == op)
}

pub fn build(mut ctx: Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (_, builder) = TABLE
        .iter()
        .find(|(name, _)| *name == ctx.at.op_type)
        .ok_or_else(|| Error::unsupported(format!("unsupported op {}", ctx.at)))?;
    builder(&mut ctx, ins)
}

/// The required input `i`.
fn input(ctx: &Ctx<'_>, ins: &[Option<Slot>], i: usize) -> Result<Slot> {
    ins.get(i).cloned().flatten().ok_or_else(|| ctx.invalid(format!("input {i} is missing")))
}

/// The optional input `i`.
fn optional(ins: &[Option<Slot>], i: usize) -> Option<Slot> {
    ins.get(i).cloned().flatten()
}

fn one(ctx: &mut Ctx<'_>, op: Op, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    Ok(vec![ctx.apply(op, &[x])?])
}

fn two(ctx: &mut Ctx<'_>, op: Op, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (a, b) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    Ok(vec![ctx.apply(op, &[a, b])?])
}

fn usize_of(ctx: &Ctx<'_>, v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| ctx.fail(format!("{what} {v} is negative")))
}

fn int_tensor(shape: &[usize], v: Vec<i64>) -> Result<Tensor> {
    Ok(Tensor::Int(ArrayD::from_shape_vec(IxDyn(shape), v)?))
}

fn known_tensor<'s>(ctx: &Ctx<'_>, slot: &'s Slot, what: &str) -> Result<&'s Tensor> {
    match slot {
        Slot::Known(k) => Ok(&k.tensor),
        _ => Err(ctx.fail(format!("{what} must be a constant, but it is computed from the input"))),
    }
}

// ---- public subgraphs and data movement ----

fn constant(ctx: &mut Ctx<'_>, _: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let a = ctx.attrs();
    let tensor = if let Some(t) = a.tensor("value")? {
        t
    } else if a.has("value_float") {
        Tensor::scalar_float(a.float("value_float", 0.0)?)
    } else if let Some(v) = a.opt_int("value_int")? {
        int_tensor(&[], vec![v])?
    } else if let Some(v) = a.floats("value_floats")? {
        Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)?)
    } else if let Some(v) = a.ints("value_ints")? {
        int_tensor(&[v.len()], v)?
    } else {
        return Err(ctx.fail("only value, value_float(s) and value_int(s) constants are supported"));
    };
    Ok(vec![Builder::known(ctx.at, tensor)])
}

fn identity(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    Ok(vec![input(ctx, ins, 0)?])
}

/// Inference: the input as it is; the mask output is training-only.
fn dropout(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    if let Some(training) = optional(ins, 2)
        && ctx.ints(&training, "training_mode")?.iter().any(|&t| t != 0)
    {
        return Err(ctx.fail("training_mode is set: a dropout must be disabled for inference"));
    }
    Ok(vec![input(ctx, ins, 0)?, Slot::Unavailable])
}

/// The static shape, a public integer vector (opset 15's `start`, `end` slice it).
fn shape(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let dims: Vec<i64> =
        ctx.shape(&input(ctx, ins, 0)?).iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
    let rank = i64::try_from(dims.len()).unwrap_or(i64::MAX);
    let a = ctx.attrs();
    let clamp = |v: i64| {
        let v = if v < 0 { v.saturating_add(rank) } else { v };
        usize::try_from(v.clamp(0, rank)).unwrap_or(0)
    };
    let (start, end) = (clamp(a.int("start", 0)?), clamp(a.int("end", rank)?));
    let part = dims.get(start..end.max(start)).unwrap_or_default().to_vec();
    Ok(vec![Builder::known(ctx.at, int_tensor(&[part.len()], part)?)])
}

fn size(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let n = crate::tensor::element_count(&ctx.shape(&input(ctx, ins, 0)?)).unwrap_or(usize::MAX);
    Ok(vec![Builder::known(ctx.at, int_tensor(&[], vec![i64::try_from(n).unwrap_or(i64::MAX)])?)])
}

/// Floats are computed as f32 (in plaintext) or fixed point (under Pond) whatever
/// their width, so a cast between float types changes nothing a private value
/// holds: a float16 model's Casts do not round to float16 (docs/FORMATS.md). A
/// cast to an integer type is evaluated on public values only.
fn cast(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let to = ctx.attrs().int("to", 0)?;
    if super::proto::is_float(to) {
        if matches!(x, Slot::Value(_)) {
            return Ok(vec![x]);
        }
        return Ok(vec![ctx.apply(Op::CastToFloat, &[x])?]);
    }
    if !matches!(x, Slot::Known(_)) {
        return Err(ctx.fail(format!("a cast of a private value to type {to} (not a float type)")));
    }
    let bool_type = to == super::proto::DataType::Bool as i64;
    let out = ctx.apply(Op::CastToInt, &[x])?;
    if bool_type && let Slot::Known(k) = &out {
        let t = k.tensor.as_int().map(|a| a.mapv(|v| i64::from(v != 0))).unwrap_or_default();
        return Ok(vec![Builder::known(ctx.at, Tensor::Int(t))]);
    }
    Ok(vec![out])
}

fn constant_of_shape(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let dims = ctx.ints(&input(ctx, ins, 0)?, "shape")?;
    let shape: Vec<usize> = dims.iter().map(|&d| usize_of(ctx, d, "dimension")).collect::<Result<_>>()?;
    if crate::tensor::element_count(&shape).is_none_or(|n| n > crate::frontend::MAX_CONST_ELEMENTS) {
        return Err(ctx.fail(format!("a constant of shape {shape:?} is too large")));
    }
    let value = ctx.attrs().tensor("value")?.unwrap_or_else(|| Tensor::scalar_float(0.0));
    let tensor = match value {
        Tensor::Float(v) => {
            Tensor::Float(ArrayD::from_elem(IxDyn(&shape), v.iter().copied().next().unwrap_or_default()))
        }
        Tensor::Int(v) => Tensor::Int(ArrayD::from_elem(IxDyn(&shape), v.iter().copied().next().unwrap_or_default())),
    };
    Ok(vec![Builder::known(ctx.at, tensor)])
}

/// Range of public integers (shape arithmetic): at most MAX_CONST_ELEMENTS values.
fn range(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let single = |ctx: &Ctx<'_>, i: usize, what: &str| -> Result<i64> {
        match ctx.ints(&input(ctx, ins, i)?, what)?.as_slice() {
            [v] => Ok(*v),
            _ => Err(ctx.invalid(format!("{what} must be a single integer"))),
        }
    };
    let (start, limit, delta) = (single(ctx, 0, "start")?, single(ctx, 1, "limit")?, single(ctx, 2, "delta")?);
    if delta == 0 {
        return Err(ctx.invalid("delta is 0"));
    }
    let span = i128::from(limit).saturating_sub(i128::from(start));
    let d = i128::from(delta);
    let count = if (span > 0) == (d > 0) && span != 0 {
        span.saturating_add(d.saturating_sub(d.signum())).checked_div(d).unwrap_or(0)
    } else {
        0
    };
    let count = usize::try_from(count).ok().filter(|&n| n <= crate::frontend::MAX_CONST_ELEMENTS);
    let Some(count) = count else { return Err(ctx.fail("the range is too long")) };
    let values: Vec<i64> = std::iter::successors(Some(start), |v| v.checked_add(delta)).take(count).collect();
    Ok(vec![Builder::known(ctx.at, int_tensor(&[values.len()], values)?)])
}

/// Elementwise of two known tensors of the same shape or one a single value:
/// what shape subgraphs need.
fn known_pair<'s>(ctx: &Ctx<'_>, ins: &'s [Option<Slot>], what: &str) -> Result<(&'s Tensor, &'s Tensor)> {
    let (Some(Some(a)), Some(Some(b))) = (ins.first(), ins.get(1)) else {
        return Err(ctx.invalid("expects two inputs"));
    };
    Ok((known_tensor(ctx, a, what)?, known_tensor(ctx, b, what)?))
}

fn broadcast_ints(ctx: &Ctx<'_>, a: &ArrayD<i64>, b: &ArrayD<i64>, f: impl Fn(i64, i64) -> i64) -> Result<Tensor> {
    let shape = crate::plan::broadcast_shape(a.shape(), b.shape()).map_err(|e| ctx.fail(e))?;
    let (a, b) = (
        a.broadcast(IxDyn(&shape)).ok_or_else(|| ctx.fail("cannot broadcast"))?,
        b.broadcast(IxDyn(&shape)).ok_or_else(|| ctx.fail("cannot broadcast"))?,
    );
    Ok(Tensor::Int(ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y))))
}

fn equal(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (a, b) = known_pair(ctx, ins, "an Equal's input")?;
    let t = match (a, b) {
        (Tensor::Int(a), Tensor::Int(b)) => broadcast_ints(ctx, a, b, |x, y| i64::from(x == y))?,
        _ => return Err(ctx.fail("Equal of float tensors is not supported")),
    };
    Ok(vec![Builder::known(ctx.at, t)])
}

/// Where with a public condition and public branches (shape arithmetic).
fn where_(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let cond = ctx.ints(&input(ctx, ins, 0)?, "condition")?;
    let cond_slot = input(ctx, ins, 0)?;
    let cond_shape = ctx.shape(&cond_slot);
    let (x, y) = known_pair(ctx, ins.get(1..).unwrap_or_default(), "a Where's branch")?;
    let cond = ArrayD::from_shape_vec(IxDyn(&cond_shape), cond)?;
    let t = match (x, y) {
        (Tensor::Int(x), Tensor::Int(y)) => {
            let branches = crate::plan::broadcast_shape(x.shape(), y.shape()).map_err(|e| ctx.fail(e))?;
            let shape = crate::plan::broadcast_shape(&branches, &cond_shape).map_err(|e| ctx.fail(e))?;
            let c = cond.broadcast(IxDyn(&shape)).ok_or_else(|| ctx.fail("cannot broadcast"))?;
            let xb = x.broadcast(IxDyn(&shape)).ok_or_else(|| ctx.fail("cannot broadcast"))?;
            let yb = y.broadcast(IxDyn(&shape)).ok_or_else(|| ctx.fail("cannot broadcast"))?;
            Tensor::Int(ndarray::Zip::from(&c).and(&xb).and(&yb).map_collect(|&c, &a, &b| if c != 0 { a } else { b }))
        }
        _ => return Err(ctx.fail("Where of float tensors is not supported")),
    };
    Ok(vec![Builder::known(ctx.at, t)])
}

/// ONNX's Reshape: 0 copies the input's dimension (unless `allowzero`), one -1 is inferred.
fn reshape(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let spec = ctx.ints(&input(ctx, ins, 1)?, "shape")?;
    let allow_zero = ctx.attrs().int("allowzero", 0)? != 0;
    let shape = reshape_target(ctx, &ctx.shape(&x), &spec, allow_zero)?;
    Ok(vec![ctx.apply(Op::Reshape(shape), &[x])?])
}

fn reshape_target(ctx: &Ctx<'_>, from: &[usize], spec: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let total = crate::tensor::element_count(from).unwrap_or(0);
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        shape.push(match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allow_zero => {
                *from.get(i).ok_or_else(|| ctx.fail(format!("shape {spec:?}: no dimension {i} to copy")))?
            }
            d => usize_of(ctx, d, "dimension")?,
        });
    }
    if let Some(i) = infer {
        let rest = crate::tensor::element_count(&shape).unwrap_or(0);
        let inferred = total.checked_div(rest).filter(|_| rest != 0 && total.is_multiple_of(rest));
        let slot = shape.get_mut(i);
        match (inferred, slot) {
            (Some(v), Some(s)) => *s = v,
            _ => return Err(ctx.fail(format!("cannot reshape {from:?} to {spec:?}"))),
        }
    }
    Ok(shape)
}

fn flatten(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let axis = ctx.attrs().int("axis", 1)?;
    let rank = shape.len();
    let axis = if axis == i64::try_from(rank).unwrap_or(-1) { rank } else { ctx.axis(axis, rank)? };
    let (before, after) = shape.split_at(axis);
    let dims = [before, after].map(|p| crate::tensor::element_count(p).unwrap_or(0));
    Ok(vec![ctx.apply(Op::Reshape(dims.to_vec()), &[x])?])
}

/// Axes from the second input (opset 13) or, for ReduceMean before opset 18, an attribute.
fn axes_input(ctx: &Ctx<'_>, ins: &[Option<Slot>], i: usize) -> Result<Option<Vec<i64>>> {
    match optional(ins, i) {
        Some(s) => Ok(Some(ctx.ints(&s, "axes")?)),
        None => ctx.attrs().ints("axes"),
    }
}

fn squeeze(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let axes = match axes_input(ctx, ins, 1)? {
        Some(a) => ctx.axes(&a, shape.len())?,
        None => (0..shape.len()).filter(|&i| shape.get(i) == Some(&1)).collect(),
    };
    if let Some(&bad) = axes.iter().find(|&&a| shape.get(a) != Some(&1)) {
        return Err(ctx.fail(format!("axis {bad} of {shape:?} is not 1")));
    }
    let out: Vec<usize> = shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
    Ok(vec![ctx.apply(Op::Reshape(out), &[x])?])
}

fn unsqueeze(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let axes = axes_input(ctx, ins, 1)?.ok_or_else(|| ctx.invalid("has no axes"))?;
    let rank = shape.len().saturating_add(axes.len());
    let axes = ctx.axes(&axes, rank)?;
    let mut dims = shape.iter();
    let out: Vec<usize> =
        (0..rank).map(|i| if axes.contains(&i) { 1 } else { dims.next().copied().unwrap_or(1) }).collect();
    Ok(vec![ctx.apply(Op::Reshape(out), &[x])?])
}

fn transpose(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let rank = ctx.shape(&x).len();
    let perm = match ctx.attrs().ints("perm")? {
        Some(p) => p.iter().map(|&a| usize_of(ctx, a, "perm entry")).collect::<Result<_>>()?,
        None => (0..rank).rev().collect(),
    };
    Ok(vec![ctx.apply(Op::Transpose(perm), &[x])?])
}

fn concat(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let slots: Vec<Slot> = ins.iter().flatten().cloned().collect();
    let rank = slots.first().map_or(0, |s| ctx.shape(s).len());
    let axis = ctx.axis(ctx.attrs().int("axis", 0)?, rank)?;
    Ok(vec![ctx.apply(Op::Concat { axis }, &slots)?])
}

/// Elements `[start, start + count)` of `axis`, every other axis whole.
fn take(ctx: &mut Ctx<'_>, x: &Slot, axis: usize, start: usize, count: usize) -> Result<Slot> {
    let shape = ctx.shape(x);
    let axes: Vec<AxisSlice> =
        shape
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i == axis { AxisSlice { start, step: 1, count } } else { AxisSlice { start: 0, step: 1, count: d } }
            })
            .collect();
    let out: Vec<usize> = axes.iter().map(|s| s.count).collect();
    ctx.apply(Op::StridedSlice { axes, shape: out }, std::slice::from_ref(x))
}

fn split(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let axis = ctx.axis(ctx.attrs().int("axis", 0)?, shape.len())?;
    let size = shape.get(axis).copied().unwrap_or(0);
    let outputs = ctx.node.output.len();
    let sizes: Vec<usize> = match optional(ins, 1) {
        Some(s) => ctx.ints(&s, "split")?.iter().map(|&v| usize_of(ctx, v, "split")).collect::<Result<_>>()?,
        None => {
            let n = usize::try_from(ctx.attrs().int("num_outputs", i64::try_from(outputs).unwrap_or(0))?)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| ctx.invalid("num_outputs must be positive"))?;
            let each = size.div_ceil(n);
            (0..n).map(|i| each.min(size.saturating_sub(each.saturating_mul(i)))).collect()
        }
    };
    if sizes.len() != outputs || sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(size) {
        return Err(ctx.fail(format!("split {sizes:?} does not divide axis {axis} of {shape:?} into {outputs}")));
    }
    let mut start = 0usize;
    let mut outs = Vec::with_capacity(sizes.len());
    for count in sizes {
        outs.push(take(ctx, &x, axis, start, count)?);
        start = start.saturating_add(count);
    }
    Ok(outs)
}

/// ONNX Slice: starts, ends, axes, steps (public), clamped as ONNX clamps them.
fn slice(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let starts = ctx.ints(&input(ctx, ins, 1)?, "starts")?;
    let ends = ctx.ints(&input(ctx, ins, 2)?, "ends")?;
    let axes = match optional(ins, 3) {
        Some(a) => ctx.ints(&a, "axes")?,
        None => (0..i64::try_from(starts.len()).unwrap_or(0)).collect(),
    };
    let steps = match optional(ins, 4) {
        Some(s) => ctx.ints(&s, "steps")?,
        None => vec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(ctx.invalid("starts, ends, axes and steps differ in length"));
    }
    let mut slices: Vec<AxisSlice> = shape.iter().map(|&d| AxisSlice { start: 0, step: 1, count: d }).collect();
    for (((&s, &e), &a), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
        let axis = ctx.axis(a, shape.len())?;
        let dim = i64::try_from(shape.get(axis).copied().unwrap_or(0)).unwrap_or(i64::MAX);
        if step == 0 {
            return Err(ctx.invalid("a step is 0"));
        }
        let resolve = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = if step > 0 {
            (resolve(s).clamp(0, dim), resolve(e).clamp(0, dim))
        } else {
            (resolve(s).clamp(0, dim.saturating_sub(1)), resolve(e).clamp(-1, dim.saturating_sub(1)))
        };
        let span = if step > 0 { end.saturating_sub(start) } else { start.saturating_sub(end) };
        let stride = step.checked_abs().ok_or_else(|| ctx.fail(format!("step {step} is too large")))?;
        let count =
            if span <= 0 { 0 } else { span.saturating_add(stride.saturating_sub(1)).checked_div(stride).unwrap_or(0) };
        let slot = slices.get_mut(axis).ok_or_else(|| ctx.invalid("axis"))?;
        *slot = AxisSlice {
            start: if count == 0 { 0 } else { usize::try_from(start).unwrap_or(0) },
            step: isize::try_from(step).map_err(|_| ctx.fail("step too large"))?,
            count: usize::try_from(count).unwrap_or(0),
        };
    }
    let out: Vec<usize> = slices.iter().map(|s| s.count).collect();
    Ok(vec![ctx.apply(Op::StridedSlice { axes: slices, shape: out }, &[x])?])
}

/// Gather with public indices (negative ones count from the end).
fn gather(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let idx_slot = input(ctx, ins, 1)?;
    let shape = ctx.shape(&x);
    let axis = ctx.axis(ctx.attrs().int("axis", 0)?, shape.len())?;
    let dim = i64::try_from(shape.get(axis).copied().unwrap_or(0)).unwrap_or(i64::MAX);
    let idx_shape = ctx.shape(&idx_slot);
    let indices: Vec<usize> = ctx
        .ints(&idx_slot, "indices")?
        .iter()
        .map(|&i| {
            let r = if i < 0 { i.saturating_add(dim) } else { i };
            usize::try_from(r).ok().filter(|_| r < dim).ok_or_else(|| ctx.fail(format!("index {i} is out of range")))
        })
        .collect::<Result<_>>()?;
    let indices = ArrayD::from_shape_vec(IxDyn(&idx_shape), indices)?;
    Ok(vec![ctx.apply(Op::Gather { axis, indices }, &[x])?])
}

/// Expand to a public shape (NumPy broadcasting): each axis of size 1 that
/// grows is that many copies concatenated, data movement only.
fn expand(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let mut x = input(ctx, ins, 0)?;
    let dims = ctx.ints(&input(ctx, ins, 1)?, "shape")?;
    let target: Vec<usize> = dims.iter().map(|&d| usize_of(ctx, d, "dimension")).collect::<Result<_>>()?;
    let shape = crate::plan::broadcast_shape(&ctx.shape(&x), &target).map_err(|e| ctx.fail(e))?;
    if crate::tensor::element_count(&shape).is_none_or(|n| n > crate::plan::MAX_VALUE_ELEMENTS) {
        return Err(ctx.fail(format!("expanding to {shape:?} makes too many values")));
    }
    let from = ctx.shape(&x);
    let mut padded = vec![1usize; shape.len().saturating_sub(from.len())];
    padded.extend_from_slice(&from);
    x = ctx.apply(Op::Reshape(padded.clone()), &[x])?;
    for (axis, (&have, &want)) in padded.iter().zip(&shape).enumerate() {
        if have != want {
            if want > 1 << 16 {
                return Err(ctx.fail(format!("expanding axis {axis} to {want} copies is not supported")));
            }
            let copies = vec![x.clone(); want];
            x = ctx.apply(Op::Concat { axis }, &copies)?;
        }
    }
    Ok(vec![x])
}

/// Constant padding by zeros (or, for a public input, any constant).
fn pad(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let mode = ctx.attrs().string("mode", "constant")?;
    if mode != "constant" {
        return Err(ctx.fail(format!("mode `{mode}` is not supported (constant only)")));
    }
    let pads = ctx.ints(&input(ctx, ins, 1)?, "pads")?;
    let value = match optional(ins, 2) {
        Some(v) => ctx.floats(&v, "constant_value").ok().and_then(|v| v.iter().copied().next()).unwrap_or(0.0),
        None => 0.0,
    };
    if value != 0.0 {
        return Err(ctx.fail(format!("padding by {value} is not supported (zeros only)")));
    }
    let axes = match optional(ins, 3) {
        Some(a) => ctx.axes(&ctx.ints(&a, "axes")?, shape.len())?,
        None => (0..shape.len()).collect(),
    };
    if pads.len() != axes.len().saturating_mul(2) {
        return Err(ctx.invalid(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let mut pairs = vec![[0usize; 2]; shape.len()];
    for (k, &axis) in axes.iter().enumerate() {
        let before = pads.get(k).copied().unwrap_or(0);
        let after = pads.get(k.saturating_add(axes.len())).copied().unwrap_or(0);
        if let Some(p) = pairs.get_mut(axis) {
            *p = [usize_of(ctx, before, "pad")?, usize_of(ctx, after, "pad")?];
        }
    }
    Ok(vec![ctx.apply(Op::Pad(pairs), &[x])?])
}

/// Resize of an NCHW image's height and width: `nearest` (floor or
/// round_prefer_floor, asymmetric: what torch's Upsample exports) as a public
/// Gather per axis, `linear` as a bilinear resize.
fn resize(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let shape = ctx.shape(&x);
    let &[n, c, h, w] = shape.as_slice() else {
        return Err(ctx.fail(format!("input {shape:?} is not NCHW (rank 4)")));
    };
    let a = ctx.attrs();
    let mode = a.string("mode", "nearest")?;
    let transform = a.string("coordinate_transformation_mode", "half_pixel")?;
    let nearest_mode = a.string("nearest_mode", "round_prefer_floor")?;
    if a.has("axes") || a.int("antialias", 0)? != 0 {
        return Err(ctx.fail("axes and antialias are not supported"));
    }
    let sizes = match (optional(ins, 3), optional(ins, 2)) {
        (Some(s), _) => ctx.ints(&s, "sizes")?,
        (None, Some(s)) => {
            let scales = ctx.floats(&s, "scales")?;
            let s: Vec<f32> = scales.iter().copied().collect();
            let &[sn, sc, sh, sw] = s.as_slice() else { return Err(ctx.fail(format!("scales {s:?} are not 4"))) };
            if sn != 1.0 || sc != 1.0 {
                return Err(ctx.fail("only height and width are resized"));
            }
            #[allow(clippy::arithmetic_side_effects)]
            let scaled = |d: usize, s: f32| (d as f32 * s).floor() as i64;
            vec![n as i64, c as i64, scaled(h, sh), scaled(w, sw)]
        }
        (None, None) => return Err(ctx.invalid("has neither scales nor sizes")),
    };
    let &[on, oc, oh, ow] = sizes.as_slice() else { return Err(ctx.fail(format!("sizes {sizes:?} are not 4"))) };
    let (oh, ow) = (usize_of(ctx, oh, "size")?, usize_of(ctx, ow, "size")?);
    if usize::try_from(on).ok() != Some(n) || usize::try_from(oc).ok() != Some(c) || oh == 0 || ow == 0 {
        return Err(ctx.fail(format!("sizes {sizes:?} change the batch or channels of {shape:?}")));
    }
    if oh > 1 << 16 || ow > 1 << 16 {
        return Err(ctx.fail(format!("sizes {sizes:?} are too large")));
    }
    match mode.as_str() {
        "nearest" => {
            let pick = |from: usize, to: usize| -> Result<Vec<usize>> {
                #[allow(clippy::arithmetic_side_effects)]
                let scale = to as f64 / from as f64;
                (0..to)
                    .map(|o| {
                        #[allow(clippy::arithmetic_side_effects)]
                        let src = match transform.as_str() {
                            "asymmetric" => o as f64 / scale,
                            "half_pixel" => (o as f64 + 0.5) / scale - 0.5,
                            other => return Err(ctx.fail(format!("nearest resize with {other} coordinates"))),
                        };
                        #[allow(clippy::arithmetic_side_effects)]
                        let i = match nearest_mode.as_str() {
                            "floor" => src.floor(),
                            "round_prefer_floor" => (src - 0.5).ceil(),
                            "round_prefer_ceil" => (src + 0.5).floor(),
                            "ceil" => src.ceil(),
                            other => return Err(ctx.fail(format!("nearest_mode {other}"))),
                        };
                        Ok((i.max(0.0) as usize).min(from.saturating_sub(1)))
                    })
                    .collect()
            };
            let (rows, cols) = (pick(h, oh)?, pick(w, ow)?);
            let y = ctx.apply(Op::Gather { axis: 2, indices: ArrayD::from_shape_vec(IxDyn(&[oh]), rows)? }, &[x])?;
            Ok(vec![ctx.apply(Op::Gather { axis: 3, indices: ArrayD::from_shape_vec(IxDyn(&[ow]), cols)? }, &[y])?])
        }
        "linear" => {
            let (align_corners, half_pixel_centers) = match transform.as_str() {
                "align_corners" => (true, false),
                "half_pixel" | "pytorch_half_pixel" if oh > 1 && ow > 1 => (false, true),
                "asymmetric" => (false, false),
                other => return Err(ctx.fail(format!("linear resize with {other} coordinates"))),
            };
            let unit =
                crate::ops::ResizeBilinear { size: [oh, ow], align_corners, half_pixel_centers, layout: Layout::Nchw };
            Ok(vec![ctx.apply(unit.into(), &[x])?])
        }
        other => Err(ctx.fail(format!("mode `{other}` is not supported (nearest or linear)"))),
    }
}

// ---- arithmetic ----

fn add(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    two(ctx, Op::Add, ins)
}

fn sub(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    two(ctx, Op::Sub, ins)
}

fn mul(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    two(ctx, Op::Mul, ins)
}

fn neg(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    one(ctx, Op::Neg, ins)
}

/// Division by a public float is a product by its reciprocal; of public integers
/// (shape arithmetic) it truncates as ONNX does; by a private value it is a
/// secure reciprocal.
fn div(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (x, y) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    match (&x, &y) {
        (Slot::Known(a), Slot::Known(b)) if matches!((&a.tensor, &b.tensor), (Tensor::Int(_), Tensor::Int(_))) => {
            let (Tensor::Int(a), Tensor::Int(b)) = (&a.tensor, &b.tensor) else { return Err(ctx.invalid("ints")) };
            if b.iter().any(|&v| v == 0) {
                return Err(ctx.invalid("integer division by zero"));
            }
            let t = broadcast_ints(ctx, a, b, |p, q| p.checked_div(q).unwrap_or(0))?;
            Ok(vec![Builder::known(ctx.at, t)])
        }
        (_, Slot::Known(_)) => {
            let d = ctx.floats(&y, "divisor")?;
            #[allow(clippy::arithmetic_side_effects)]
            let inverse = d.mapv(|v| 1.0 / v);
            let inverse = ctx.known("reciprocal", Tensor::Float(inverse));
            Ok(vec![ctx.apply(Op::Mul, &[x, inverse])?])
        }
        _ => {
            let r = ctx.apply(crate::ops::Reciprocal.into(), &[y])?;
            Ok(vec![ctx.apply(Op::Mul, &[x, r])?])
        }
    }
}

/// Square root of a public value (LayerNorm-style constants).
fn sqrt(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let v = ctx.floats(&x, "a Sqrt's input")?;
    Ok(vec![Builder::known(ctx.at, Tensor::Float(v.mapv(f32::sqrt)))])
}

/// MatMul: of two matrices a MatMul; of a batch of rows by a matrix, the rows
/// flattened into one matrix; of two batches, a BatchMatMul.
fn matmul(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (a, b) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    let (sa, sb) = (ctx.shape(&a), ctx.shape(&b));
    match (sa.len(), sb.len()) {
        (2, 2) => Ok(vec![ctx.apply(Op::MatMul { transpose_a: false, transpose_b: false }, &[a, b])?]),
        (r, 2) if r > 2 => {
            let (rows, k) = sa.split_at(r.saturating_sub(1));
            let m = crate::tensor::element_count(rows).unwrap_or(0);
            let flat = ctx.apply(Op::Reshape(vec![m, k.first().copied().unwrap_or(0)]), &[a])?;
            let prod = ctx.apply(Op::MatMul { transpose_a: false, transpose_b: false }, &[flat, b])?;
            let mut out = rows.to_vec();
            out.push(sb.get(1).copied().unwrap_or(0));
            Ok(vec![ctx.apply(Op::Reshape(out), &[prod])?])
        }
        (ra, rb) if ra == rb && ra > 2 => {
            Ok(vec![ctx.apply(crate::ops::BatchMatMul { adj_x: false, adj_y: false }.into(), &[a, b])?])
        }
        _ => Err(ctx.fail(format!("MatMul of {sa:?} by {sb:?} is not supported"))),
    }
}

/// Gemm: alpha·A'·B' + beta·C; alpha and beta fold into public operands.
fn gemm(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (a, mut b) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    let attrs = ctx.attrs();
    let (alpha, beta) = (attrs.float("alpha", 1.0)?, attrs.float("beta", 1.0)?);
    let (transpose_a, transpose_b) = (attrs.int("transA", 0)? != 0, attrs.int("transB", 0)? != 0);
    if alpha != 1.0 {
        let s = ctx.scalar("alpha", alpha);
        b = ctx.apply(Op::Mul, &[b, s])?;
    }
    let mut y = ctx.apply(Op::MatMul { transpose_a, transpose_b }, &[a, b])?;
    if let Some(mut c) = optional(ins, 2) {
        if beta != 1.0 {
            let s = ctx.scalar("beta", beta);
            c = ctx.apply(Op::Mul, &[c, s])?;
        }
        y = ctx.apply(Op::Add, &[y, c])?;
    }
    Ok(vec![y])
}

/// The axes of a reduction: input 1 (ReduceSum; ReduceMean from opset 18) or the
/// `axes` attribute; none means all, or none with `noop_with_empty_axes`.
fn reduce(ctx: &mut Ctx<'_>, ins: &[Option<Slot>], mean: bool) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let rank = ctx.shape(&x).len();
    let a = ctx.attrs();
    let keep_dims = a.int("keepdims", 1)? != 0;
    let noop = a.int("noop_with_empty_axes", 0)? != 0;
    let axes = match axes_input(ctx, ins, 1)? {
        Some(v) if !v.is_empty() => ctx.axes(&v, rank)?,
        _ if noop => return Ok(vec![x]),
        _ => (0..rank).collect(),
    };
    let op = if mean { Op::Mean { axes, keep_dims } } else { Op::Sum { axes, keep_dims } };
    Ok(vec![ctx.apply(op, &[x])?])
}

fn reduce_mean(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    reduce(ctx, ins, true)
}

fn reduce_sum(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    reduce(ctx, ins, false)
}

// ---- neural network ----

/// `[before_h, before_w, after_h, after_w]` → per-axis pairs, or auto_pad.
fn padding(ctx: &Ctx<'_>) -> Result<Padding> {
    let a = ctx.attrs();
    match a.string("auto_pad", "NOTSET")?.as_str() {
        "NOTSET" => {}
        "VALID" => return Ok(Padding::Valid),
        // TensorFlow's SAME puts the odd element after, as SAME_UPPER does.
        "SAME_UPPER" => return Ok(Padding::Same),
        other => return Err(ctx.fail(format!("auto_pad {other} is not supported"))),
    }
    let pads = a.ints("pads")?.unwrap_or_else(|| vec![0; 4]);
    let p: Vec<usize> = pads.iter().map(|&v| usize_of(ctx, v, "pad")).collect::<Result<_>>()?;
    match p.as_slice() {
        &[t, l, b, r] => Ok(Padding::Explicit([[t, b], [l, r]])),
        _ => Err(ctx.fail(format!("pads {pads:?} are not those of a 2-D window"))),
    }
}

/// A pair attribute (strides, dilations, kernel_shape), positive.
fn pair(ctx: &Ctx<'_>, name: &str, default: Option<[usize; 2]>) -> Result<[usize; 2]> {
    let v = match (ctx.attrs().ints(name)?, default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(ctx.invalid(format!("attribute `{name}` is missing"))),
    };
    match v.as_slice() {
        &[h, w] if h > 0 && w > 0 => Ok([usize_of(ctx, h, name)?, usize_of(ctx, w, name)?]),
        _ => Err(ctx.fail(format!("{name} {v:?} is not supported (two positive integers: 2-D windows only)"))),
    }
}

fn window(ctx: &Ctx<'_>, kernel: [usize; 2]) -> Result<Window> {
    Ok(Window {
        kernel,
        strides: pair(ctx, "strides", Some([1, 1]))?,
        dilations: pair(ctx, "dilations", Some([1, 1]))?,
        padding: padding(ctx)?,
        layout: Layout::Nchw,
    })
}

/// A bias `[m]` added along the channel axis of an NCHW value.
fn add_bias(ctx: &mut Ctx<'_>, y: Slot, bias: Option<Slot>) -> Result<Slot> {
    let Some(b) = bias else { return Ok(y) };
    let m = ctx.shape(&b).first().copied().unwrap_or(0);
    let b = ctx.apply(Op::Reshape(vec![m, 1, 1]), &[b])?;
    ctx.apply(Op::Add, &[y, b])
}

/// Conv of an NCHW input by an OIHW filter: group 1 is a Conv2D in NCHW (the
/// filter transposed to HWIO at import); one group per channel is a depthwise
/// convolution; other groups are one convolution per group, concatenated.
fn conv(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (x, f) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    let (xs, fs) = (ctx.shape(&x), ctx.shape(&f));
    let (&[_, c, _, _], &[m, cg, kh, kw]) = (xs.as_slice(), fs.as_slice()) else {
        return Err(ctx.fail(format!("input {xs:?} and filter {fs:?} are not those of a 2-D convolution")));
    };
    if !matches!(f, Slot::Known(_)) {
        return Err(ctx.fail("the filter must be a constant (an initializer)"));
    }
    let window = window(ctx, [kh, kw])?;
    if let Some(k) = ctx.attrs().ints("kernel_shape")?
        && k != [i64::try_from(kh).unwrap_or(-1), i64::try_from(kw).unwrap_or(-1)]
    {
        return Err(ctx.invalid(format!("kernel_shape {k:?} is not the filter's {fs:?}")));
    }
    let group = usize_of(ctx, ctx.attrs().int("group", 1)?, "group")?;
    if group == 0 || cg.checked_mul(group) != Some(c) || !m.is_multiple_of(group) {
        return Err(ctx.fail(format!("group {group} does not fit input {xs:?} and filter {fs:?}")));
    }
    let bias = optional(ins, 2);
    let y = if group == 1 {
        let hwio = ctx.apply(Op::Transpose(vec![2, 3, 1, 0]), &[f])?;
        ctx.apply(Op::Conv2D(window), &[x, hwio])?
    } else if cg == 1 {
        // Depthwise, in NCHW: filter [c·mult, 1, kh, kw] → [kh, kw, c, mult]; output
        // channel c·mult + k in both.
        let mult = m.checked_div(c).unwrap_or(1);
        let r = ctx.apply(Op::Reshape(vec![c, mult, kh, kw]), &[f])?;
        let hwcm = ctx.apply(Op::Transpose(vec![2, 3, 0, 1]), &[r])?;
        ctx.apply(crate::ops::DepthwiseConv2D { window }.into(), &[x, hwcm])?
    } else {
        let per = m.checked_div(group).unwrap_or(0);
        let mut parts = Vec::with_capacity(group);
        for g in 0..group {
            let xg = take(ctx, &x, 1, g.saturating_mul(cg), cg)?;
            let fg = take(ctx, &f, 0, g.saturating_mul(per), per)?;
            let hwio = ctx.apply(Op::Transpose(vec![2, 3, 1, 0]), &[fg])?;
            parts.push(ctx.apply(Op::Conv2D(window), &[xg, hwio])?);
        }
        ctx.apply(Op::Concat { axis: 1 }, &parts)?
    };
    Ok(vec![add_bias(ctx, y, bias)?])
}

/// ConvTranspose of an NCHW input by a filter [in, out/group, kh, kw]: the
/// transposed-convolution unit in NCHW, whose forward convolution maps the
/// output onto the input with the same pads; other groups than 1 are one unit
/// per group, concatenated (as grouped Conv is).
fn conv_transpose(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let (x, f) = (input(ctx, ins, 0)?, input(ctx, ins, 1)?);
    let (xs, fs) = (ctx.shape(&x), ctx.shape(&f));
    let (&[_, c, h, w], &[fc, m, kh, kw]) = (xs.as_slice(), fs.as_slice()) else {
        return Err(ctx.fail(format!("input {xs:?} and filter {fs:?} are not those of a 2-D convolution")));
    };
    let a = ctx.attrs();
    let group = usize_of(ctx, a.int("group", 1)?, "group")?;
    if group == 0 || fc != c || !c.is_multiple_of(group) {
        return Err(ctx.fail(format!("group {group} does not fit input {xs:?} and filter {fs:?}")));
    }
    if a.has("output_shape") {
        return Err(ctx.fail("output_shape is not supported (give pads and output_padding)"));
    }
    let window = window(ctx, [kh, kw])?;
    let Padding::Explicit([[t, b], [l, r]]) = window.padding else {
        return Err(ctx.fail("auto_pad is not supported on a transposed convolution (give pads)"));
    };
    let extra = pair(ctx, "output_padding", Some([0, 0]))?;
    // out = stride·(in − 1) + output_padding + (k − 1)·dilation + 1 − pads.
    let out = |i: usize, n: usize, k: usize, before: usize, after: usize| -> Option<usize> {
        let s = *window.strides.get(i)?;
        let d = *window.dilations.get(i)?;
        let e = *extra.get(i)?;
        s.checked_mul(n.checked_sub(1)?)?
            .checked_add(e)?
            .checked_add(k.checked_sub(1)?.checked_mul(d)?)?
            .checked_add(1)?
            .checked_sub(before)?
            .checked_sub(after)
    };
    let (Some(oh), Some(ow)) = (out(0, h, kh, t, b), out(1, w, kw, l, r)) else {
        return Err(ctx.fail(format!("pads do not fit input {xs:?} and filter {fs:?}")));
    };
    let unit = crate::ops::Conv2DTranspose { window, out_hw: [oh, ow] };
    let y = if group == 1 {
        let filter = ctx.apply(Op::Transpose(vec![2, 3, 1, 0]), &[f])?;
        ctx.apply(unit.into(), &[x, filter])?
    } else {
        // Group g maps input channels [g·c/group, (g+1)·c/group) through filter rows
        // of the same range onto output channels [g·m, (g+1)·m).
        let cg = c.checked_div(group).unwrap_or(0);
        let mut parts = Vec::with_capacity(group);
        for g in 0..group {
            let xg = take(ctx, &x, 1, g.saturating_mul(cg), cg)?;
            let fg = take(ctx, &f, 0, g.saturating_mul(cg), cg)?;
            let filter = ctx.apply(Op::Transpose(vec![2, 3, 1, 0]), &[fg])?;
            parts.push(ctx.apply(unit.clone().into(), &[xg, filter])?);
        }
        let _ = m;
        ctx.apply(Op::Concat { axis: 1 }, &parts)?
    };
    Ok(vec![add_bias(ctx, y, optional(ins, 2))?])
}

/// Inference batch normalisation, folded into `x·scale' + offset'` per channel
/// (axis 1), as the TensorFlow frontend folds FusedBatchNorm.
fn batch_norm(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    if ctx.attrs().int("training_mode", 0)? != 0 {
        return Err(ctx.fail("training_mode is set: only inference batch normalisation is supported"));
    }
    let shape = ctx.shape(&x);
    let Some(&channels) = shape.get(1) else { return Err(ctx.fail(format!("input {shape:?} has no channel axis"))) };
    let epsilon = ctx.attrs().float("epsilon", 1e-5)?;
    let mut params = Vec::with_capacity(4);
    for (i, what) in (1..5).zip(["scale", "bias", "mean", "variance"]) {
        let p = ctx.floats(&input(ctx, ins, i)?, what)?;
        if p.shape() != [channels] {
            return Err(ctx.fail(format!("{what} has shape {:?}, the input has {channels} channels", p.shape())));
        }
        params.push(p);
    }
    let [scale, bias, mean, variance] =
        <[_; 4]>::try_from(params).map_err(|_| ctx.invalid("expects four parameters"))?;
    #[allow(clippy::arithmetic_side_effects)]
    let (s, o) = {
        let s = &scale / &variance.mapv(|v| (v + epsilon).sqrt());
        let o = &bias - &(&mean * &s);
        (s, o)
    };
    let per_channel: Vec<usize> =
        std::iter::once(channels).chain(std::iter::repeat_n(1, shape.len().saturating_sub(2))).collect();
    let s = s.into_shape_with_order(IxDyn(&per_channel))?;
    let o = o.into_shape_with_order(IxDyn(&per_channel))?;
    let (s, o) = (ctx.known("folded_scale", Tensor::Float(s)), ctx.known("folded_offset", Tensor::Float(o)));
    let y = ctx.apply(Op::Mul, &[x, s])?;
    Ok(vec![ctx.apply(Op::Add, &[y, o])?])
}

/// LayerNormalization over the axes from `axis` on: private mean and variance,
/// a secure Rsqrt, then the public scale and bias.
fn layer_norm(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let rank = ctx.shape(&x).len();
    let a = ctx.attrs();
    let axis = ctx.axis(a.int("axis", -1)?, rank)?;
    let epsilon = a.float("epsilon", 1e-5)?;
    if a.int("stash_type", 1)? != 1 || ctx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.fail("only the normalised output is supported (not mean or inverse deviation)"));
    }
    let axes: Vec<usize> = (axis..rank).collect();
    let mean = ctx.apply(Op::Mean { axes: axes.clone(), keep_dims: true }, std::slice::from_ref(&x))?;
    let centred = ctx.apply(Op::Sub, &[x, mean])?;
    let squared = ctx.apply(Op::Mul, &[centred.clone(), centred.clone()])?;
    let variance = ctx.apply(Op::Mean { axes, keep_dims: true }, &[squared])?;
    let eps = ctx.scalar("epsilon", epsilon);
    let shifted = ctx.apply(Op::Add, &[variance, eps])?;
    let inverse = ctx.apply(Op::Rsqrt, &[shifted])?;
    let mut y = ctx.apply(Op::Mul, &[centred, inverse])?;
    y = ctx.apply(Op::Mul, &[y, input(ctx, ins, 1)?])?;
    if let Some(b) = optional(ins, 2) {
        y = ctx.apply(Op::Add, &[y, b])?;
    }
    Ok(vec![y, Slot::Unavailable, Slot::Unavailable])
}

/// A pool's window, and for `ceil_mode` the padding to add after each spatial
/// axis of an input of `shape` so that the floor of the output size is its
/// ceiling (the pads already given stay as they are).
fn pool_window(ctx: &Ctx<'_>, shape: &[usize]) -> Result<(Window, [usize; 2])> {
    let w = window(ctx, pair(ctx, "kernel_shape", None)?)?;
    if w.dilations != [1, 1] {
        return Err(ctx.fail("dilated pooling is not supported"));
    }
    if ctx.attrs().int("ceil_mode", 0)? == 0 {
        return Ok((w, [0, 0]));
    }
    let Padding::Explicit(pads) = w.padding else {
        return Err(ctx.fail("ceil_mode with auto_pad is not supported (give pads)"));
    };
    let Some([_, h, wd, _]) = w.layout.split(shape) else {
        return Err(ctx.fail(format!("input {shape:?} is not NCHW (rank 4)")));
    };
    let mut extra = [0, 0];
    for (((e, input), (k, s)), [before, after]) in
        extra.iter_mut().zip([h, wd]).zip(w.kernel.into_iter().zip(w.strides)).zip(pads)
    {
        *e = ceil_extra(input, k, s, before, after)
            .ok_or_else(|| ctx.fail(format!("a {k}-wide window with stride {s} does not fit input {shape:?}")))?;
    }
    Ok((w, extra))
}

/// The padding after an axis that ceil_mode adds: the output is
/// ceil((padded − k) / s) + 1 windows, less a last window that would start in
/// the padding after the input (ONNX's rule, and PyTorch's).
fn ceil_extra(input: usize, k: usize, s: usize, before: usize, after: usize) -> Option<usize> {
    let padded = input.checked_add(before)?.checked_add(after)?;
    let span = padded.checked_sub(k)?;
    let mut last_start = span.div_ceil(s).checked_mul(s)?;
    if last_start >= input.checked_add(before)? {
        last_start = last_start.checked_sub(s)?;
    }
    Some(last_start.checked_add(k)?.saturating_sub(padded))
}

fn with_extra(padding: Padding, extra: [usize; 2]) -> Padding {
    match (padding, extra) {
        (p, [0, 0]) => p,
        (Padding::Explicit([[t, b], [l, r]]), [eh, ew]) => {
            Padding::Explicit([[t, b.saturating_add(eh)], [l, r.saturating_add(ew)]])
        }
        (Padding::Valid, [eh, ew]) => Padding::Explicit([[0, eh], [0, ew]]),
        // pool_window refuses ceil_mode with auto_pad.
        (p, _) => p,
    }
}

fn max_pool(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    if ctx.attrs().int("storage_order", 0)? != 0 {
        return Err(ctx.fail("storage_order 1 is not supported"));
    }
    let x = input(ctx, ins, 0)?;
    let (mut w, extra) = pool_window(ctx, &ctx.shape(&x))?;
    // The windows never count padding: what ceil_mode adds is as any pad.
    w.padding = with_extra(w.padding, extra);
    Ok(vec![ctx.apply(Op::MaxPool(w), &[x])?, Slot::Unavailable])
}

/// AveragePool: padding excluded from the count is TensorFlow's AvgPool; with
/// `count_include_pad` the input is zero-padded first and pooled without padding.
/// What `ceil_mode` adds after the input never counts (as in onnxruntime and
/// PyTorch: a window is cut at the end of the given pads).
fn average_pool(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let mut x = input(ctx, ins, 0)?;
    let (mut w, extra) = pool_window(ctx, &ctx.shape(&x))?;
    if ctx.attrs().int("count_include_pad", 0)? != 0 {
        match w.padding {
            Padding::Explicit([hp, wp]) => {
                x = ctx.apply(Op::Pad(vec![[0, 0], [0, 0], hp, wp]), &[x])?;
                w.padding = Padding::Valid;
            }
            Padding::Valid => {}
            Padding::Same => return Err(ctx.fail("count_include_pad with auto_pad SAME_UPPER is not supported")),
        }
    }
    w.padding = with_extra(w.padding, extra);
    Ok(vec![ctx.apply(Op::AvgPool(w), &[x])?])
}

fn global_average_pool(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let axes: Vec<usize> = (2..ctx.shape(&x).len()).collect();
    Ok(vec![ctx.apply(Op::Mean { axes, keep_dims: true }, &[x])?])
}

fn global_max_pool(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let axes: Vec<usize> = (2..ctx.shape(&x).len()).collect();
    Ok(vec![ctx.apply(Op::Max { axes, keep_dims: true }, &[x])?])
}

fn relu(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    one(ctx, Op::Relu, ins)
}

fn leaky_relu(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let alpha = ctx.attrs().float("alpha", 0.01)?;
    one(ctx, crate::ops::LeakyRelu { alpha }.into(), ins)
}

/// Clip by public bounds (inputs 1 and 2, either absent).
fn clip(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let bound = |ctx: &Ctx<'_>, i: usize, what: &str| -> Result<Option<f32>> {
        match optional(ins, i) {
            None => Ok(None),
            Some(s) => match ctx.floats(&s, what)?.iter().copied().collect::<Vec<_>>().as_slice() {
                [v] => Ok(Some(*v)),
                _ => Err(ctx.invalid(format!("{what} must be a single number"))),
            },
        }
    };
    let (lo, hi) = (bound(ctx, 1, "min")?, bound(ctx, 2, "max")?);
    if lo.is_none() && hi.is_none() {
        return identity(ctx, ins);
    }
    one(ctx, crate::ops::Clip { lo, hi }.into(), ins)
}

fn activation(ctx: &mut Ctx<'_>, ins: &[Option<Slot>], curve: crate::ops::Curve) -> Result<Vec<Slot>> {
    one(ctx, crate::ops::Activation { curve }.into(), ins)
}

fn sigmoid(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    one(ctx, Op::Sigmoid, ins)
}

fn tanh(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    one(ctx, Op::Tanh, ins)
}

fn erf(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    activation(ctx, ins, crate::ops::Curve::Erf)
}

/// max(0, min(1, alpha·x + beta)): an affine map and a two-sided clip.
fn hard_sigmoid_of(ctx: &mut Ctx<'_>, x: Slot, alpha: f32, beta: f32) -> Result<Slot> {
    let (a, b) = (ctx.scalar("alpha", alpha), ctx.scalar("beta", beta));
    let y = ctx.apply(Op::Mul, &[x, a])?;
    let y = ctx.apply(Op::Add, &[y, b])?;
    ctx.apply(crate::ops::Clip { lo: Some(0.0), hi: Some(1.0) }.into(), &[y])
}

fn hard_sigmoid(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let a = ctx.attrs();
    let (alpha, beta) = (a.float("alpha", 0.2)?, a.float("beta", 0.5)?);
    Ok(vec![hard_sigmoid_of(ctx, x, alpha, beta)?])
}

/// x·HardSigmoid(x) with alpha 1/6, beta 1/2: a private product.
fn hard_swish(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let gate = hard_sigmoid_of(ctx, x.clone(), 1.0 / 6.0, 0.5)?;
    Ok(vec![ctx.apply(Op::Mul, &[x, gate])?])
}

/// Gelu (opset 20): exact, 0.5·x·(1 + erf(x/√2)), or its tanh form; either
/// one curve (`ops/piecewise.rs`).
fn gelu(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let approximate = ctx.attrs().string("approximate", "none")?;
    let curve = match approximate.as_str() {
        "none" => crate::ops::Curve::Gelu,
        "tanh" => crate::ops::Curve::GeluTanh,
        other => return Err(ctx.fail(format!("approximate `{other}` is not supported (none or tanh)"))),
    };
    activation(ctx, ins, curve)
}

/// Softmax over `axis` (the last by default, opset 13): another axis is moved
/// last and back.
fn softmax(ctx: &mut Ctx<'_>, ins: &[Option<Slot>]) -> Result<Vec<Slot>> {
    let x = input(ctx, ins, 0)?;
    let rank = ctx.shape(&x).len();
    let axis = ctx.axis(ctx.attrs().int("axis", -1)?, rank)?;
    let last = rank.saturating_sub(1);
    if axis == last {
        return Ok(vec![ctx.apply(Op::Softmax, &[x])?]);
    }
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(axis, last);
    let t = ctx.apply(Op::Transpose(perm.clone()), &[x])?;
    let y = ctx.apply(Op::Softmax, &[t])?;
    Ok(vec![ctx.apply(Op::Transpose(perm), &[y])?])
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_formats_names_every_onnx_op_the_table_imports() {
        let docs = include_str!("../../../docs/FORMATS.md");
        let section = docs.split("## ONNX").nth(1).and_then(|s| s.split("\n## ").next()).unwrap();
        let prose =
            section.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric())).collect::<Vec<_>>();
        for op in super::SUPPORTED_OPS {
            assert!(prose.contains(op), "docs/FORMATS.md's ONNX section does not name {op}");
        }
    }
}
