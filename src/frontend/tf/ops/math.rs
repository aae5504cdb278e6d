//! Arithmetic, matrix products, reductions and element-wise functions.

use anyhow::Result;

use super::super::Node;
use super::{expect_inputs, known_scalar, resolve_axis};
use crate::error::Error;
use crate::frontend::builder::known_single_float;
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Builder, Origin, Slot};
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
    let ins = as_floats_beside_private(&node.origin, expect_inputs::<2>(node, ins)?);
    binary(ctx, node, &ins, Op::Add)
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

/// BatchMatMul, BatchMatMulV2 and BatchMatMulV3 (whose extra attributes are the
/// element types, all float here). Two rank-2 operands are a plain MatMul.
pub fn batch_matmul(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let (adj_x, adj_y) = (node.get_attr_bool("adj_x", false)?, node.get_attr_bool("adj_y", false)?);
    if node.op == "BatchMatMul" && ctx.shape(&ins[0]).len() != ctx.shape(&ins[1]).len() {
        // The first version does not broadcast: both operands have the same batch axes.
        return Err(Error::unsupported(format!(
            "{}: BatchMatMul (v1) of inputs of ranks {} and {}",
            node.describe(),
            ctx.shape(&ins[0]).len(),
            ctx.shape(&ins[1]).len()
        )));
    }
    Ok(vec![batch_product(ctx, &node.origin, adj_x, adj_y, &ins[0], &ins[1])?])
}

/// x @ y over the last two axes: a MatMul for matrices, else a BatchMatMul.
fn batch_product(ctx: &mut Builder, at: &Origin, adj_x: bool, adj_y: bool, x: &Slot, y: &Slot) -> Result<Slot> {
    let op = if ctx.shape(x).len() == 2 && ctx.shape(y).len() == 2 {
        Op::MatMul { transpose_a: adj_x, transpose_b: adj_y }
    } else {
        crate::ops::BatchMatMul { adj_x, adj_y }.into()
    };
    ctx.apply(at, op, &[x.clone(), y.clone()])
}

/// Einsum of two operands, lowered to transposes and reshapes around one
/// (batched) matrix product: the indices in both operands and the output are
/// batch axes, those in both but not the output are contracted, the others are
/// each operand's free axes. Equations outside that form (an ellipsis, an index
/// repeated in an operand, an index summed within one operand, one operand or
/// three) are refused, naming the equation.
pub fn einsum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let equation = node.get_attr_str("equation", "")?;
    let refuse = |why: &str| {
        Error::unsupported(format!("{}: Einsum equation `{equation}` is not supported: {why}", node.describe()))
    };
    let [x, y] = ins else { return Err(refuse(&format!("it has {} operands, not 2", ins.len()))) };
    let spec = EinsumSpec::parse(&equation).map_err(|e| refuse(&e))?;
    let (xs, ys) = (ctx.shape(x), ctx.shape(y));
    let plan = spec.lower(&xs, &ys).map_err(|e| refuse(&e))?;
    let at = &node.origin;
    let x = ctx.apply(at, Op::Transpose(plan.x_perm), std::slice::from_ref(x))?;
    let x = ctx.apply(at, Op::Reshape(plan.x_shape), &[x])?;
    let y = ctx.apply(at, Op::Transpose(plan.y_perm), std::slice::from_ref(y))?;
    let y = ctx.apply(at, Op::Reshape(plan.y_shape), &[y])?;
    let z = batch_product(ctx, at, false, false, &x, &y)?;
    let z = ctx.apply(at, Op::Reshape(plan.z_shape), &[z])?;
    Ok(vec![ctx.apply(at, Op::Transpose(plan.z_perm), &[z])?])
}

/// A two-operand equation `x,y->z`, one letter per axis.
#[derive(Debug)]
struct EinsumSpec {
    x: Vec<char>,
    y: Vec<char>,
    z: Vec<char>,
}

/// How [`einsum`] computes one: x transposed to [batch, free x, contracted] and
/// reshaped to [B, M, K] (or [M, K] without batch axes); y to [batch,
/// contracted, free y] as [B, K, N]; their product reshaped to [batch, free x,
/// free y], then transposed to z's order.
#[derive(Debug, PartialEq)]
struct EinsumPlan {
    x_perm: Vec<usize>,
    x_shape: Vec<usize>,
    y_perm: Vec<usize>,
    y_shape: Vec<usize>,
    z_shape: Vec<usize>,
    z_perm: Vec<usize>,
}

impl EinsumSpec {
    fn parse(equation: &str) -> std::result::Result<EinsumSpec, String> {
        let compact: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let Some((inputs, z)) = compact.split_once("->") else {
            return Err("no explicit output (`->`)".into());
        };
        let Some((x, y)) = inputs.split_once(',') else { return Err("it has one operand, not 2".into()) };
        if y.contains(',') {
            return Err("it has more than 2 operands".into());
        }
        if compact.contains('.') {
            return Err("an ellipsis".into());
        }
        let letters = |s: &str| -> std::result::Result<Vec<char>, String> {
            let v: Vec<char> = s.chars().collect();
            if let Some(c) = v.iter().find(|c| !c.is_ascii_alphabetic()) {
                return Err(format!("`{c}` is not an index letter"));
            }
            if let Some(c) = v.iter().find(|&&c| v.iter().filter(|&&d| d == c).count() > 1) {
                return Err(format!("index `{c}` repeats within `{s}`"));
            }
            Ok(v)
        };
        let spec = EinsumSpec { x: letters(x)?, y: letters(y)?, z: letters(z)? };
        for c in &spec.z {
            if !spec.x.contains(c) && !spec.y.contains(c) {
                return Err(format!("output index `{c}` is in no operand"));
            }
        }
        for c in spec.x.iter().filter(|c| !spec.y.contains(c)).chain(spec.y.iter().filter(|c| !spec.x.contains(c))) {
            if !spec.z.contains(c) {
                return Err(format!("index `{c}` is summed within one operand"));
            }
        }
        Ok(spec)
    }

    fn lower(&self, xs: &[usize], ys: &[usize]) -> std::result::Result<EinsumPlan, String> {
        if xs.len() != self.x.len() || ys.len() != self.y.len() {
            return Err(format!("operands of shapes {xs:?} and {ys:?} have other ranks"));
        }
        let pos = |v: &[char], c: char| v.iter().position(|&d| d == c);
        let dim = |c: char| -> std::result::Result<usize, String> {
            let (dx, dy) = (pos(&self.x, c).and_then(|i| xs.get(i)), pos(&self.y, c).and_then(|i| ys.get(i)));
            match (dx, dy) {
                (Some(a), Some(b)) if a != b => Err(format!("index `{c}` is {a} in x and {b} in y")),
                (Some(&a), _) | (None, Some(&a)) => Ok(a),
                (None, None) => Err(format!("index `{c}` is in no operand")),
            }
        };
        let batch: Vec<char> = self.z.iter().copied().filter(|c| self.x.contains(c) && self.y.contains(c)).collect();
        let contracted: Vec<char> =
            self.x.iter().copied().filter(|c| self.y.contains(c) && !self.z.contains(c)).collect();
        let free_x: Vec<char> = self.z.iter().copied().filter(|c| self.x.contains(c) && !self.y.contains(c)).collect();
        let free_y: Vec<char> = self.z.iter().copied().filter(|c| self.y.contains(c) && !self.x.contains(c)).collect();
        let size = |v: &[char]| -> std::result::Result<usize, String> {
            v.iter().try_fold(1usize, |acc, &c| acc.checked_mul(dim(c)?).ok_or_else(|| "too large".to_string()))
        };
        let perm = |of: &[char], order: &[&[char]]| -> Vec<usize> {
            order.iter().flat_map(|part| part.iter()).filter_map(|&c| pos(of, c)).collect()
        };
        let (b, m, k, n) = (size(&batch)?, size(&free_x)?, size(&contracted)?, size(&free_y)?);
        let lead = |mut v: Vec<usize>| {
            if !batch.is_empty() {
                v.insert(0, b);
            }
            v
        };
        let mut z_shape = Vec::new();
        for c in batch.iter().chain(&free_x).chain(&free_y) {
            z_shape.push(dim(*c)?);
        }
        let z_order: Vec<char> = batch.iter().chain(&free_x).chain(&free_y).copied().collect();
        Ok(EinsumPlan {
            x_perm: perm(&self.x, &[&batch, &free_x, &contracted]),
            x_shape: lead(vec![m, k]),
            y_perm: perm(&self.y, &[&batch, &contracted, &free_y]),
            y_shape: lead(vec![k, n]),
            z_shape,
            z_perm: self.z.iter().filter_map(|&c| pos(&z_order, c)).collect(),
        })
    }
}

/// Integer constants beside a private value become float: a private value is
/// fixed point, and Keras' `take` adds and compares int32 constants to the ids.
fn as_floats_beside_private<const N: usize>(at: &Origin, ins: &[Slot; N]) -> [Slot; N] {
    let private = ins.iter().any(|s| matches!(s, Slot::Value(_)));
    ins.clone().map(|s| match s {
        Slot::Known(k) if private && matches!(k.tensor, Tensor::Int(_)) => {
            Builder::known(at, Tensor::Float(k.tensor.to_float()))
        }
        other => other,
    })
}

pub fn less(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = as_floats_beside_private(&node.origin, expect_inputs::<2>(node, ins)?);
    Ok(vec![ctx.apply(&node.origin, crate::ops::Less.into(), &ins)?])
}

/// x > y is y < x.
pub fn greater(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [x, y] = as_floats_beside_private(&node.origin, expect_inputs::<2>(node, ins)?);
    Ok(vec![ctx.apply(&node.origin, crate::ops::Less.into(), &[y, x])?])
}

/// SelectV2(c, a, b) = b + c·(a − b) with c 0 or 1, NumPy broadcasting: a Beaver
/// product when c and a − b are private, local when either is known.
pub fn select_v2(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [c, a, b] = as_floats_beside_private(&node.origin, expect_inputs::<3>(node, ins)?);
    let at = &node.origin;
    let diff = ctx.apply(at, Op::Sub, &[a, b.clone()])?;
    let picked = ctx.apply(at, Op::Mul, &[c, diff])?;
    Ok(vec![ctx.apply(at, Op::Add, &[b, picked])?])
}

#[cfg(test)]
mod einsum_tests {
    use super::*;

    fn lowered(equation: &str, x: &[usize], y: &[usize]) -> EinsumPlan {
        EinsumSpec::parse(equation).unwrap().lower(x, y).unwrap()
    }

    #[test]
    fn keras_attention_and_einsum_dense_equations_lower_to_one_product() {
        // MultiHeadAttention's scores: k [a,e,c,d], q [a,b,c,d] -> [a,c,b,e].
        let p = lowered("aecd,abcd->acbe", &[2, 5, 3, 4], &[2, 6, 3, 4]);
        assert_eq!((p.x_perm, p.x_shape), (vec![0, 2, 1, 3], vec![6, 5, 4]));
        assert_eq!((p.y_perm, p.y_shape), (vec![0, 2, 3, 1], vec![6, 4, 6]));
        assert_eq!((p.z_shape, p.z_perm), (vec![2, 3, 5, 6], vec![0, 1, 3, 2]));
        // EinsumDense: no batch axes, a plain MatMul.
        let p = lowered("abc,cde->abde", &[2, 6, 8], &[8, 2, 4]);
        assert_eq!((p.x_shape, p.y_shape, p.z_shape), (vec![12, 8], vec![8, 8], vec![2, 6, 2, 4]));
        assert_eq!(p.z_perm, vec![0, 1, 2, 3]);
    }

    #[test]
    fn einsum_equations_outside_the_product_form_are_refused_saying_why() {
        let why = |e: &str| EinsumSpec::parse(e).unwrap_err();
        assert_eq!(why("ab,bc"), "no explicit output (`->`)");
        assert_eq!(why("...b,bc->...c"), "an ellipsis");
        assert_eq!(why("aab,bc->ac"), "index `a` repeats within `aab`");
        assert_eq!(why("ab,bc->a"), "index `c` is summed within one operand");
        assert_eq!(why("ab->ba"), "it has one operand, not 2");
        assert_eq!(why("ab,bc,cd->ad"), "it has more than 2 operands");
    }
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
