//! Arithmetic, matrix products, reductions and element-wise functions.

use anyhow::Result;

use super::super::Node;
use super::{expect_inputs, known_scalar, resolve_axis};
use crate::error::Error;
use crate::frontend::builder::known_single_float;
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Builder, Slot};
use crate::plan::Op;
use crate::tensor::Tensor;

fn binary(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot], op: Op) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, op, ins)?])
}

fn unary(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot], op: Op) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, op, ins)?])
}

pub fn add(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, Op::Add)
}

/// Maximum or Minimum of a private tensor and a public number is a one-sided
/// [`Clip`](crate::ops::Clip) (one ReLU, the number public); of two private
/// tensors, or by a constant tensor (a weight), the two-input unit.
fn extremum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot], max: bool) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let clip = |c: f32| {
        if max { crate::ops::Clip { lo: Some(c), hi: None } } else { crate::ops::Clip { lo: None, hi: Some(c) } }
    };
    let one_sided = match ins {
        [x @ Slot::Value(_), c] | [c, x @ Slot::Value(_)] => {
            known_single_float(c).filter(|_| ctx.shape(c).len() <= ctx.shape(x).len()).map(|v| (x, v))
        }
        _ => None,
    };
    if let Some((x, c)) = one_sided {
        return Ok(vec![ctx.apply(&node.origin, clip(c).into(), std::slice::from_ref(x))?]);
    }
    let op = if max { crate::ops::Maximum.into() } else { crate::ops::Minimum.into() };
    Ok(vec![ctx.apply(&node.origin, op, ins)?])
}

pub fn maximum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    extremum(ctx, node, ins, true)
}

pub fn minimum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    extremum(ctx, node, ins, false)
}

/// A product, where a factor of known ones (a decided dropout's scale 1/keep_prob
/// with keep_prob 1) that changes no shape is no step at all.
fn product(ctx: &mut Builder, node: &Node<'_>, a: &Slot, b: &Slot) -> Result<Slot> {
    let ones =
        |s: &Slot| matches!(s, Slot::Known(k) if k.tensor.as_float().is_some_and(|t| t.iter().all(|&v| v == 1.0)));
    for (x, one) in [(a, b), (b, a)] {
        if ones(one) && !matches!(x, Slot::Known(_)) {
            let shape = ctx.shape(x);
            if crate::plan::broadcast_shape(&shape, &ctx.shape(one)).is_ok_and(|s| s == shape) {
                return Ok(x.clone());
            }
        }
    }
    ctx.apply(&node.origin, Op::Mul, &[a.clone(), b.clone()])
}

pub fn sub(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, Op::Sub)
}

pub fn mul(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    Ok(vec![product(ctx, node, &ins[0], &ins[1])?])
}

/// Division by a known tensor is a product with its reciprocal; division by a
/// private value is not supported.
pub fn real_div(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let divisor = ctx.known_floats(&node.origin, &ins[1], "the divisor")?;
    if divisor.iter().any(|&d| d == 0.0) {
        return Err(Error::unsupported(format!("{}: division by zero", node.describe())));
    }
    let reciprocal = Builder::known(&node.origin, Tensor::Float(divisor.mapv(|d| 1.0 / d)));
    Ok(vec![product(ctx, node, &ins[0], &reciprocal)?])
}

pub fn neg(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, Op::Neg)
}

pub fn rsqrt(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, Op::Rsqrt)
}

pub fn sigmoid(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, Op::Sigmoid)
}

pub fn tanh(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, Op::Tanh)
}

pub fn matmul(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let op = Op::MatMul {
        transpose_a: node.get_attr_bool("transpose_a", false)?,
        transpose_b: node.get_attr_bool("transpose_b", false)?,
    };
    binary(ctx, node, ins, op)
}

/// The reduction axes (a scalar or a vector, possibly negative), sorted and distinct.
fn reduction_axes<'a>(ctx: &Builder, node: &Node<'_>, ins: &'a [Slot]) -> Result<(&'a Slot, Vec<usize>, bool)> {
    let ins = expect_inputs::<2>(node, ins)?;
    let rank = ctx.shape(&ins[0]).len();
    let mut axes = ctx
        .known_ints(&node.origin, &ins[1], "the reduction axes")?
        .into_iter()
        .map(|a| resolve_axis(node, a, rank))
        .collect::<Result<Vec<_>>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok((&ins[0], axes, node.get_attr_bool("keep_dims", false)?))
}

pub fn mean(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (x, axes, keep_dims) = reduction_axes(ctx, node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Mean { axes, keep_dims }, std::slice::from_ref(x))?])
}

pub fn sum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (x, axes, keep_dims) = reduction_axes(ctx, node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Sum { axes, keep_dims }, std::slice::from_ref(x))?])
}

pub fn max(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (x, axes, keep_dims) = reduction_axes(ctx, node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Max { axes, keep_dims }, std::slice::from_ref(x))?])
}

pub fn argmax(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let rank = ctx.shape(&ins[0]).len();
    let axis = resolve_axis(node, known_scalar(ctx, node, &ins[1], "the dimension")?, rank)?;
    Ok(vec![ctx.apply(&node.origin, Op::ArgMax { axis }, &ins[..1])?])
}
