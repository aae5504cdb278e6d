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

/// [a > b] (Keras 3's `ELU(alpha ≠ 1)` exports `tf.where(x > 0, …)`).
pub fn greater(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, crate::ops::Greater.into())
}

/// SelectV2(c, t, e), `tf.where`, with NumPy broadcasting, as e + c·(t − e):
/// exact for a condition of 0s and 1s such as Greater's, one product when c and
/// t − e are private. Both branches are computed, so a non-finite value in the
/// branch not taken would spoil the result, which it never does in TensorFlow.
pub fn select_v2(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [c, t, e] = expect_inputs::<3>(node, ins)?;
    let diff = ctx.apply(&node.origin, Op::Sub, &[t.clone(), e.clone()])?;
    let taken = ctx.apply(&node.origin, Op::Mul, &[c.clone(), diff])?;
    Ok(vec![ctx.apply(&node.origin, Op::Add, &[e.clone(), taken])?])
}

pub fn sub(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, Op::Sub)
}

pub fn mul(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    Ok(vec![product(ctx, node, &ins[0], &ins[1])?])
}

/// Division by a known tensor is a product with its reciprocal; by a private
/// value, a product with its secure reciprocal (`ops::Reciprocal`).
pub fn real_div(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    if !matches!(ins[1], Slot::Known(_)) {
        let reciprocal = ctx.apply(&node.origin, crate::ops::Reciprocal.into(), &ins[1..])?;
        return Ok(vec![ctx.apply(&node.origin, Op::Mul, &[ins[0].clone(), reciprocal])?]);
    }
    let divisor = ctx.known_floats(&node.origin, &ins[1], "the divisor")?;
    if divisor.iter().any(|&d| d == 0.0) {
        return Err(Error::unsupported(format!("{}: division by zero", node.describe())));
    }
    let reciprocal = Builder::known(&node.origin, Tensor::Float(divisor.mapv(|d| 1.0 / d)));
    Ok(vec![product(ctx, node, &ins[0], &reciprocal)?])
}

/// `Reciprocal` and its old name `Inv`.
pub fn reciprocal(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, crate::ops::Reciprocal.into())
}

pub fn exp(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    unary(ctx, node, ins, crate::ops::Exp.into())
}

/// x², a product of x with itself.
pub fn square(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [x] = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Mul, &[x.clone(), x.clone()])?])
}

/// (a − b)², as `tf.nn.moments` writes the variance.
pub fn squared_difference(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let d = ctx.apply(&node.origin, Op::Sub, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Mul, &[d.clone(), d])?])
}

/// The largest whole exponent of a private base, computed by products.
const MAX_PRIVATE_EXPONENT: f32 = 4.0;

/// Pow with a known exponent. Both known: folded. A private base to a whole
/// exponent from 1 to [`MAX_PRIVATE_EXPONENT`] (GELU's tanh form exports
/// `Pow(x, 3)`): products, x² = x·x, x³ = x²·x, x⁴ = x²·x², exact up to the
/// fixed point's rounding (products' inputs must stay |x| < 2^15, so x³ needs
/// |x| < 2^10 or so). Any other exponent of a private value is refused.
pub fn pow(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let exponent = ctx.known_floats(&node.origin, &ins[1], "the exponent")?;
    if matches!(ins[0], Slot::Known(_)) {
        let base = ctx.known_floats(&node.origin, &ins[0], "the base")?;
        let shape = crate::plan::broadcast_shape(base.shape(), exponent.shape())
            .map_err(|e| Error::invalid_model(format!("{}: {e}", node.describe())))?;
        let (b, e) = (base.broadcast(shape.clone()), exponent.broadcast(shape));
        let (Some(b), Some(e)) = (b, e) else {
            return Err(Error::invalid_model(format!("{}: shapes that do not broadcast", node.describe())));
        };
        let folded = ndarray::Zip::from(&b).and(&e).map_collect(|&b, &e| b.powf(e));
        return Ok(vec![Builder::known(&node.origin, Tensor::Float(folded))]);
    }
    let e = match exponent.iter().collect::<Vec<_>>().as_slice() {
        [e] if e.fract() == 0.0 && (1.0..=MAX_PRIVATE_EXPONENT).contains(*e) => **e as u32,
        _ => {
            return Err(Error::unsupported(format!(
                "{}: a private value to a power is supported only for one whole exponent from 1 to \
                 {MAX_PRIVATE_EXPONENT} (this exponent has {} value(s))",
                node.describe(),
                exponent.len()
            )));
        }
    };
    let x = ins[0].clone();
    let product = |ctx: &mut Builder, a: &Slot, b: &Slot| ctx.apply(&node.origin, Op::Mul, &[a.clone(), b.clone()]);
    let out = match e {
        1 => x,
        2 => product(ctx, &x, &x)?,
        3 => {
            let square = product(ctx, &x, &x)?;
            product(ctx, &square, &x)?
        }
        _ => {
            let square = product(ctx, &x, &x)?;
            product(ctx, &square, &square)?
        }
    };
    Ok(vec![out])
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use crate::frontend::tf::proto::build::*;
    use crate::frontend::{self, Feed};
    use crate::plan::{Op, Plan};

    /// A graph over placeholder x [4] whose output node is `out`.
    fn load(nodes: Vec<crate::frontend::tf::proto::tensorflow::NodeDef>) -> anyhow::Result<Plan> {
        let bytes = graph(nodes).encode_to_vec();
        let feeds = |_: &frontend::Report| Ok([("x".to_string(), Feed { shape: vec![4], source: "x".into() })].into());
        frontend::load_bytes(&bytes, Path::new("test.pb"), Some("out"), feeds)?.into_plan()
    }

    fn pow_of_x(exponent: f32) -> anyhow::Result<Plan> {
        load(vec![placeholder("x", &[4]), const_f32("e", &[], &[exponent]), node("out", "Pow", &["x", "e"])])
    }

    #[test]
    fn pow_of_a_private_value_is_products_for_whole_exponents_and_refused_otherwise() {
        let x = ndarray::arr1(&[-2.0f32, -0.5, 1.5, 3.0]).into_dyn();
        for (e, products) in [(1.0f32, 0), (2.0, 1), (3.0, 2), (4.0, 2)] {
            let plan = pow_of_x(e).unwrap();
            assert_eq!(plan.steps.iter().filter(|s| s.op == Op::Mul).count(), products, "x^{e}");
            let y = crate::plaintext::run(&plan, &[("x".to_string(), x.clone())].into()).unwrap().to_float();
            for (a, b) in y.iter().zip(&x) {
                assert!((a - b.powf(e)).abs() <= 1e-6 * b.powf(e).abs().max(1.0), "x^{e}: {a} for {b}");
            }
        }
        for e in [0.5f32, 0.0, 5.0, -1.0] {
            let err = format!("{:#}", pow_of_x(e).unwrap_err());
            assert!(err.contains("Pow `out`") && err.contains("whole exponent from 1 to 4"), "x^{e}: {err}");
        }
    }

    #[test]
    fn pow_of_constants_is_folded() {
        let plan = load(vec![
            placeholder("x", &[4]),
            const_f32("b", &[2], &[2.0, 9.0]),
            const_f32("e", &[], &[0.5]),
            node("p", "Pow", &["b", "e"]),
            const_i32("axis", &[], &[0]),
            node("s", "Sum", &["p", "axis"]),
            node("out", "AddV2", &["x", "s"]),
        ])
        .unwrap();
        let [step] = plan.steps.as_slice() else { panic!("{}", plan.describe()) };
        assert_eq!(step.op, Op::Add);
    }
}
