//! Arithmetic, matrix products, reductions and element-wise functions.

use anyhow::Result;

use super::super::Node;
use super::{expect_inputs, known_scalar, resolve_axis};
use crate::error::Error;
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

pub fn maximum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, crate::ops::Maximum.into())
}

pub fn minimum(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, crate::ops::Minimum.into())
}

pub fn sub(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, Op::Sub)
}

pub fn mul(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    binary(ctx, node, ins, Op::Mul)
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
    Ok(vec![ctx.apply(&node.origin, Op::Mul, &[ins[0].clone(), reciprocal])?])
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

/// The product over axes of a known tensor (Keras 3's `tensordot`, a Dense on a
/// rank-3 input, multiplies shape entries with it): folded at import. Of a private
/// value it has no protocol here.
pub fn prod(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (x, axes, keep_dims) = reduction_axes(ctx, node, ins)?;
    let Slot::Known(k) = x else {
        return Err(Error::unsupported(format!(
            "{}: a product over axes of a value computed from the input is not supported",
            node.describe()
        )));
    };
    let reduce = |a: ndarray::ArrayViewD<'_, i64>| {
        let mut out = a.to_owned();
        for &axis in axes.iter().rev() {
            out = out.fold_axis(ndarray::Axis(axis), 1i64, |&p, &v| p.saturating_mul(v));
            if keep_dims {
                out.insert_axis_inplace(ndarray::Axis(axis));
            }
        }
        out
    };
    let folded = match &k.tensor {
        Tensor::Int(a) => Tensor::Int(reduce(a.view())),
        Tensor::Float(a) => {
            let mut out = a.clone();
            for &axis in axes.iter().rev() {
                out = out.fold_axis(ndarray::Axis(axis), 1f32, |&p, &v| p * v);
                if keep_dims {
                    out.insert_axis_inplace(ndarray::Axis(axis));
                }
            }
            Tensor::Float(out)
        }
    };
    Ok(vec![Builder::known(&node.origin, folded)])
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
    Ok(vec![product(ctx, &node.origin, adj_x, adj_y, &ins[0], &ins[1])?])
}

/// x @ y over the last two axes: a MatMul for matrices, else a BatchMatMul.
fn product(ctx: &mut Builder, at: &Origin, adj_x: bool, adj_y: bool, x: &Slot, y: &Slot) -> Result<Slot> {
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
    let z = product(ctx, at, false, false, &x, &y)?;
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
mod tests {
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
