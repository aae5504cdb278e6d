//! The table of TensorFlow ops tfe-run imports: op type → builder.
//!
//! A builder reads the node's attributes and its known (public) inputs, and turns
//! the node into [`Op`](crate::plan::Op)s through [`Builder::apply`](crate::frontend::Builder::apply), which folds or
//! plans. One module per op family.

mod array;
pub mod docs;
mod fold;
mod list;
mod math;
mod nn;

use anyhow::Result;

use super::Node;
use crate::error::Error;
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Builder, Slot};

type OpBuilder = fn(&mut Builder, &Node<'_>, &[Slot]) -> Result<Vec<Slot>>;

/// Every op type the importer knows, with its builder.
const TABLE: &[(&str, OpBuilder)] = &[
    // array
    ("Const", array::constant),
    ("Placeholder", array::placeholder),
    ("PlaceholderWithDefault", array::identity),
    ("Identity", array::identity),
    ("StopGradient", array::identity),
    ("Snapshot", array::identity),
    ("IdentityN", array::identity_n),
    ("NoOp", array::no_op),
    ("Shape", array::shape),
    ("Size", array::size),
    ("Rank", array::rank),
    ("Reshape", array::reshape),
    ("Squeeze", array::squeeze),
    ("ExpandDims", array::expand_dims),
    ("Transpose", array::transpose),
    ("Pad", array::pad),
    ("PadV2", array::pad),
    ("ConcatV2", array::concat_v2),
    ("Concat", array::concat_v1),
    ("Pack", array::pack),
    ("Unpack", array::unpack),
    ("Slice", array::slice),
    ("StridedSlice", array::strided_slice),
    ("Split", array::split),
    ("SplitV", array::split_v),
    ("GatherV2", array::gather_v2),
    ("Gather", array::gather_v1),
    ("Cast", array::cast),
    ("SpaceToBatchND", array::space_to_batch_nd),
    ("BatchToSpaceND", array::batch_to_space_nd),
    ("Tile", fold::tile),
    ("ResizeNearestNeighbor", fold::resize_nearest),
    ("ResizeBilinear", fold::resize_bilinear),
    // evaluated at import (public inputs)
    ("Prod", fold::prod),
    ("Fill", fold::fill),
    ("Range", fold::range),
    ("Sqrt", fold::sqrt),
    ("Floor", fold::floor),
    ("FloorDiv", fold::floor_div),
    ("FloorMod", fold::floor_mod),
    ("Equal", fold::equal),
    ("NotEqual", fold::not_equal),
    ("Less", less),
    ("LessEqual", fold::less_equal),
    ("Greater", greater),
    ("GreaterEqual", fold::greater_equal),
    ("Select", fold::select),
    ("SelectV2", select_v2),
    ("RandomUniform", fold::random_uniform),
    ("LogicalAnd", fold::logical_and),
    ("LogicalOr", fold::logical_or),
    ("LogicalNot", fold::logical_not),
    // loops (unrolled at import) and their tensor lists
    ("While", walker_only),
    ("StatelessWhile", walker_only),
    ("TensorListReserve", list::reserve),
    ("TensorListFromTensor", list::from_tensor),
    ("TensorListGetItem", list::get_item),
    ("TensorListSetItem", list::set_item),
    ("TensorListStack", list::stack),
    ("TensorListLength", list::length),
    ("TensorListElementShape", list::element_shape_of),
    // conditionals (decided at import by the graph walker)
    ("If", walker_only),
    ("StatelessIf", walker_only),
    ("Switch", walker_only),
    ("Merge", walker_only),
    ("OptionalFromValue", training_only),
    ("OptionalNone", training_only),
    ("TensorArrayV3", list::tensor_array),
    ("TensorArrayWriteV3", list::array_write),
    ("TensorArrayScatterV3", list::array_scatter),
    ("TensorArrayReadV3", list::array_read),
    ("TensorArrayGatherV3", list::array_gather),
    ("TensorArraySizeV3", list::array_size),
    ("TensorArrayCloseV3", list::array_close),
    // math
    ("Add", math::add),
    ("AddV2", math::add),
    ("Sub", math::sub),
    ("Maximum", math::maximum),
    ("Minimum", math::minimum),
    ("Mul", math::mul),
    ("RealDiv", math::real_div),
    ("Reciprocal", math::reciprocal),
    ("Inv", math::reciprocal),
    ("Exp", math::exp),
    ("Square", math::square),
    ("SquaredDifference", math::squared_difference),
    ("Neg", math::neg),
    ("MatMul", math::matmul),
    ("BatchMatMul", math::batch_matmul),
    ("BatchMatMulV2", math::batch_matmul),
    ("BatchMatMulV3", math::batch_matmul),
    ("Einsum", math::einsum),
    ("Mean", math::mean),
    ("Sum", math::sum),
    ("Max", math::max),
    ("ArgMax", math::argmax),
    ("Rsqrt", math::rsqrt),
    ("Sigmoid", math::sigmoid),
    ("Tanh", math::tanh),
    ("Pow", math::pow),
    ("Abs", fold::abs),
    ("ClipByValue", fold::clip_by_value),
    // nn
    ("BiasAdd", nn::bias_add),
    ("Conv2D", nn::conv2d),
    ("Conv2DBackpropInput", nn::conv2d_backprop_input),
    ("DepthwiseConv2dNative", nn::depthwise_conv2d),
    ("AvgPool", nn::avg_pool),
    ("MaxPool", nn::max_pool),
    ("Relu", nn::relu),
    ("Relu6", nn::relu6),
    ("LeakyRelu", nn::leaky_relu),
    ("Elu", nn::elu),
    ("Selu", nn::selu),
    ("Softplus", nn::softplus),
    ("Softsign", nn::softsign),
    ("Erf", nn::erf),
    ("Erfc", nn::erfc),
    ("Softmax", nn::softmax),
    ("FusedBatchNorm", nn::fused_batch_norm),
    ("FusedBatchNormV2", nn::fused_batch_norm),
    ("FusedBatchNormV3", nn::fused_batch_norm),
];

/// The op types tfe-run imports, sorted (for `inspect` and docs/OPS.md).
// Evaluated at compile time: an index out of range would not compile.
#[allow(clippy::indexing_slicing)]
pub const SUPPORTED_OPS: &[&str] = &{
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].0;
        i += 1;
    }
    names
};

pub fn is_supported(op: &str) -> bool {
    TABLE.iter().any(|(name, _)| *name == op)
}

/// Loops (`While`, `StatelessWhile`) and conditionals (`If`, `StatelessIf`, a TF1
/// tf.cond's `Switch`/`Merge`) are unrolled or decided by the graph walker, which
/// holds the function library and the graph's dead branches (`tf/loops.rs`); the
/// op table lists them so that `inspect` and the docs know them.
fn walker_only(_: &mut Builder, node: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Err(Error::invalid_model(format!(
        "{}: loops and conditionals are built only by the graph walker, which knows the function library",
        node.describe()
    )))
}

/// `OptionalFromValue`/`OptionalNone`: the intermediates a tf.cond's branches
/// return for their gradient (TensorFlow rewrites a trained graph's If branches to
/// `*_rewritten` functions with these extra outputs). An inference graph never
/// reads them; one that does is refused where it reads (a training-only output).
fn training_only(_: &mut Builder, _: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Ok(vec![Slot::Unavailable])
}

/// The loop ops, which the graph walker unrolls (`tf/loops.rs`).
pub const LOOP_OPS: &[&str] = &["While", "StatelessWhile"];

pub fn build(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (_, builder) = TABLE
        .iter()
        .find(|(name, _)| *name == node.op)
        .ok_or_else(|| Error::unsupported(format!("unsupported op {}", node.describe())))?;
    builder(ctx, node, ins)
}

/// Greater of known (or random-range) values folds; of a private one it is a comparison.
fn greater(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    if ins.iter().any(|s| matches!(s, Slot::Value(_))) {
        math::greater(ctx, node, ins)
    } else {
        fold::greater(ctx, node, ins)
    }
}

/// Less of known (or random-range) values folds; of a private one it is a comparison.
fn less(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    if ins.iter().any(|s| matches!(s, Slot::Value(_))) {
        math::less(ctx, node, ins)
    } else {
        fold::less(ctx, node, ins)
    }
}

/// SelectV2 with a known condition picks (or folds); with a private one it is a product.
fn select_v2(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    if matches!(ins.first(), Some(Slot::Value(_))) {
        math::select_v2(ctx, node, ins)
    } else {
        fold::select(ctx, node, ins)
    }
}

/// The inputs a builder expects: exactly `n` of them, or an error naming the node.
fn expect_inputs<'a, const N: usize>(node: &Node<'_>, ins: &'a [Slot]) -> Result<&'a [Slot; N]> {
    ins.try_into()
        .map_err(|_| Error::invalid_model(format!("{}: expects {N} data input(s), has {}", node.describe(), ins.len())))
}

/// A possibly negative axis, resolved against `rank` (TensorFlow's convention).
fn resolve_axis(node: &Node<'_>, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < r.saturating_neg() || axis >= r {
        return Err(Error::unsupported(format!("{}: axis {axis} is out of range for rank {rank}", node.describe())));
    }
    Ok(if axis < 0 { axis.saturating_add(r) as usize } else { axis as usize })
}

/// A single known integer (a scalar or a one-element vector).
fn known_scalar(ctx: &Builder, node: &Node<'_>, slot: &Slot, what: &str) -> Result<i64> {
    match ctx.known_ints(&node.origin, slot, what)?.as_slice() {
        [v] => Ok(*v),
        other => Err(Error::invalid_model(format!(
            "{}: {what} must be a single integer, has {} values",
            node.describe(),
            other.len()
        ))),
    }
}

/// Non-negative integers, e.g. block sizes and paddings.
fn known_sizes(ctx: &Builder, node: &Node<'_>, slot: &Slot, what: &str) -> Result<Vec<usize>> {
    ctx.known_ints(&node.origin, slot, what)?
        .into_iter()
        .map(|v| {
            usize::try_from(v).map_err(|_| Error::unsupported(format!("{}: {what} contains {v}", node.describe())))
        })
        .collect()
}

/// An `[n, 2]` integer tensor of (before, after) pairs.
fn known_pairs(ctx: &Builder, node: &Node<'_>, slot: &Slot, what: &str, n: usize) -> Result<Vec<[usize; 2]>> {
    let v = known_sizes(ctx, node, slot, what)?;
    if n.checked_mul(2) != Some(v.len()) {
        return Err(Error::unsupported(format!(
            "{}: {what} must have shape [{n}, 2], has {} values",
            node.describe(),
            v.len()
        )));
    }
    Ok(v.chunks_exact(2).filter_map(|c| <[usize; 2]>::try_from(c).ok()).collect())
}
