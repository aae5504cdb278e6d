//! Ops evaluated at import only, on public inputs (shapes, constants, a dropout's
//! random mask decided by its rate), and the data movement and element-wise ops
//! that TF1 graphs and Keras layers add: Tile, Unpack, resizes, Square, Abs,
//! ClipByValue, and a batched product by a matrix (Dense on a 3-D input).
//!
//! A fold-only op with a private input is refused by name: a comparison or a
//! floor of a private value has no exact secure protocol here, and Prod or Fill
//! of one makes no sense in an inference graph.

use anyhow::Result;
use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::super::Node;
use super::{expect_inputs, known_sizes, resolve_axis};
use crate::error::Error;
use crate::frontend::builder::{known_single_float, undecided};
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Bounded, Builder, MAX_CONST_ELEMENTS, Slot};
use crate::plan::{Op, broadcast_shape};
use crate::tensor::{Tensor, element_count};

fn known(slot: &Slot) -> Option<&Tensor> {
    match slot {
        Slot::Known(k) => Some(&k.tensor),
        _ => None,
    }
}

/// The refusal of a fold-only op on a value computed from the client's input.
fn private_refused(node: &Node<'_>, slot: &Slot) -> anyhow::Error {
    match slot {
        Slot::Bounded(b) => undecided(&node.origin, b),
        _ => Error::unsupported(format!(
            "{}: is evaluated at import only, on constants and shapes; here its input is computed from the \
             client's private input",
            node.describe()
        )),
    }
}

/// Every input known, or the refusal naming the first that is not.
fn all_known<'a, const N: usize>(node: &Node<'_>, ins: &'a [Slot; N]) -> Result<[&'a Tensor; N]> {
    let mut out = Vec::with_capacity(N);
    for slot in ins {
        out.push(known(slot).ok_or_else(|| private_refused(node, slot))?);
    }
    out.try_into().map_err(|_| Error::invalid_model(format!("{}: inputs", node.describe())))
}

fn too_large(node: &Node<'_>, what: &str) -> anyhow::Error {
    Error::unsupported(format!("{}: {what} would have over {MAX_CONST_ELEMENTS} elements", node.describe()))
}

fn result(node: &Node<'_>, tensor: Tensor) -> Vec<Slot> {
    vec![Builder::known(&node.origin, tensor)]
}

/// The sorted, distinct reduction axes of input 1 against input 0's rank.
fn axes(ctx: &Builder, node: &Node<'_>, x: &Slot, axes: &Slot) -> Result<Vec<usize>> {
    let rank = ctx.shape(x).len();
    let mut out = ctx
        .known_ints(&node.origin, axes, "the reduction axes")?
        .into_iter()
        .map(|a| resolve_axis(node, a, rank))
        .collect::<Result<Vec<_>>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn reduce_prod<T: Clone + num_traits::One>(
    a: &ArrayD<T>,
    axes: &[usize],
    keep_dims: bool,
    mul: impl Fn(&T, &T) -> T,
) -> ArrayD<T> {
    let mut out = a.clone();
    for &axis in axes.iter().rev() {
        out = out.fold_axis(Axis(axis), T::one(), |acc, v| mul(acc, v));
        if keep_dims {
            out.insert_axis_inplace(Axis(axis));
        }
    }
    out
}

/// Prod: the product of a shape's dimensions (tf_keras's Tensordot, Flatten).
pub fn prod(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let axes = axes(ctx, node, &ins[0], &ins[1])?;
    let keep_dims = node.get_attr_bool("keep_dims", false)?;
    let [x, _] = all_known(node, ins)?;
    Ok(result(
        node,
        match x {
            Tensor::Int(a) => Tensor::Int(reduce_prod(a, &axes, keep_dims, |p, v| p.wrapping_mul(*v))),
            Tensor::Float(a) => Tensor::Float(reduce_prod(a, &axes, keep_dims, |p, v| p * v)),
        },
    ))
}

/// Fill(dims, value).
pub fn fill(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let dims = known_sizes(ctx, node, &ins[0], "the dimensions")?;
    if element_count(&dims).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, &format!("a filled tensor of shape {dims:?}")));
    }
    let value = known(&ins[1]).ok_or_else(|| private_refused(node, &ins[1]))?;
    if value.len() != 1 {
        return Err(Error::invalid_model(format!("{}: the value must be a scalar", node.describe())));
    }
    Ok(result(
        node,
        match value {
            Tensor::Int(v) => Tensor::Int(ArrayD::from_elem(IxDyn(&dims), v.iter().copied().next().unwrap_or(0))),
            Tensor::Float(v) => Tensor::Float(ArrayD::from_elem(IxDyn(&dims), v.iter().copied().next().unwrap_or(0.0))),
        },
    ))
}

/// Range(start, limit, delta), of integers or floats.
pub fn range(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let [start, limit, delta] = all_known(node, ins)?;
    let single = |t: &Tensor| (t.len() == 1).then(|| t.to_float().iter().copied().next()).flatten();
    let (Some(s), Some(l), Some(d)) = (single(start), single(limit), single(delta)) else {
        return Err(Error::invalid_model(format!("{}: start, limit and delta must be scalars", node.describe())));
    };
    if d == 0.0 || !(s.is_finite() && l.is_finite() && d.is_finite()) {
        return Err(Error::unsupported(format!("{}: range from {s} to {l} by {d}", node.describe())));
    }
    let count = ((f64::from(l) - f64::from(s)) / f64::from(d)).ceil().max(0.0);
    if count > MAX_CONST_ELEMENTS as f64 {
        return Err(too_large(node, "the range"));
    }
    let count = count as usize;
    Ok(result(
        node,
        match (start, delta) {
            (Tensor::Int(a), Tensor::Int(b)) => {
                let (a, b) = (a.iter().copied().next().unwrap_or(0), b.iter().copied().next().unwrap_or(1));
                let values = (0..count as i64).map(|i| i.wrapping_mul(b).wrapping_add(a)).collect::<Vec<_>>();
                Tensor::Int(ndarray::Array1::from(values).into_dyn())
            }
            _ => Tensor::Float(
                ndarray::Array1::from((0..count).map(|i| s + i as f32 * d).collect::<Vec<_>>()).into_dyn(),
            ),
        },
    ))
}

/// Tile: copies concatenated along each axis (local on shares).
pub fn tile(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let multiples = known_sizes(ctx, node, &ins[1], "the multiples")?;
    if multiples.len() != shape.len() {
        return Err(Error::invalid_model(format!(
            "{}: {} multiples for an input of rank {}",
            node.describe(),
            multiples.len(),
            shape.len()
        )));
    }
    let out: Option<Vec<usize>> = shape.iter().zip(&multiples).map(|(d, m)| d.checked_mul(*m)).collect();
    if out.as_deref().and_then(element_count).is_none_or(|n| n > MAX_CONST_ELEMENTS) || multiples.contains(&0) {
        return Err(Error::unsupported(format!("{}: cannot tile {shape:?} by {multiples:?}", node.describe())));
    }
    let mut current = ins[0].clone();
    for (axis, &m) in multiples.iter().enumerate() {
        if m > 1 {
            current = ctx.apply(&node.origin, Op::Concat { axis }, &vec![current; m])?;
        }
    }
    Ok(vec![current])
}

/// An element-wise function of a known float tensor.
fn known_map(node: &Node<'_>, ins: &[Slot], f: impl Fn(f32) -> f32) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let [x] = all_known(node, ins)?;
    match x {
        Tensor::Float(a) => Ok(result(node, Tensor::Float(a.mapv(f)))),
        Tensor::Int(_) => Err(Error::unsupported(format!("{}: of an integer tensor", node.describe()))),
    }
}

pub fn sqrt(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    known_map(node, ins, f32::sqrt)
}

/// FloorDiv and FloorMod of known tensors (integer shape arithmetic: Keras's
/// `n // 3`), with NumPy broadcasting; a zero divisor is refused.
fn floor_div_mod(node: &Node<'_>, ins: &[Slot], div: bool) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let [a, b] = all_known(node, ins)?;
    let fail = |e: String| Error::unsupported(format!("{}: {e}", node.describe()));
    let shape = broadcast_shape(a.shape(), b.shape()).map_err(fail)?;
    if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, "the quotient"));
    }
    let out = match (a, b) {
        (Tensor::Int(a), Tensor::Int(b)) => {
            let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
                return Err(fail("shapes do not broadcast".into()));
            };
            if b.iter().any(|&d| d == 0) {
                return Err(fail("division by zero".into()));
            }
            Tensor::Int(Zip::from(&a).and(&b).map_collect(|&x, &y| {
                let q = x.checked_div_euclid(y).unwrap_or(0);
                // Floor division rounds toward −∞; div_euclid rounds so the remainder is ≥ 0.
                let q = if y < 0 && x.checked_rem_euclid(y).is_some_and(|r| r != 0) { q.saturating_add(1) } else { q };
                if div { q } else { x.wrapping_sub(q.wrapping_mul(y)) }
            }))
        }
        (Tensor::Float(a), Tensor::Float(b)) => {
            let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
                return Err(fail("shapes do not broadcast".into()));
            };
            Tensor::Float(Zip::from(&a).and(&b).map_collect(|&x, &y| {
                let q = (x / y).floor();
                if div { q } else { x - q * y }
            }))
        }
        _ => return Err(fail("of a float and an integer tensor".into())),
    };
    Ok(result(node, out))
}

pub fn floor_div(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    floor_div_mod(node, ins, true)
}

pub fn floor_mod(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    floor_div_mod(node, ins, false)
}

/// Floor: of a known tensor, or of a bounded one whose every value has the same
/// floor (TF1's dropout mask `floor(keep_prob + U)` with keep_prob 1).
pub fn floor(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    if let [Slot::Bounded(b)] = ins {
        let (lo, hi) = (b.lo.floor(), b.hi.floor());
        if lo != hi {
            return Err(undecided(&node.origin, b));
        }
        return Ok(result(node, Tensor::Float(ArrayD::from_elem(IxDyn(&b.shape), lo))));
    }
    known_map(node, ins, f32::floor)
}

/// RandomUniform: never sampled. TensorFlow draws 23 random mantissa bits, so
/// its values are the multiples of 2^−23 in [0, 1 − 2^−23].
pub fn random_uniform(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let shape = known_sizes(ctx, node, &ins[0], "the shape")?;
    if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, "the random tensor"));
    }
    let hi = 1.0 - f32::EPSILON;
    Ok(vec![Slot::Bounded(std::rc::Rc::new(Bounded { shape, lo: 0.0, hi, origin: node.name.clone() }))])
}

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }

    /// The same comparison with its operands swapped.
    fn swapped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            other => other,
        }
    }

    /// `x cmp c` for every x in [lo, hi], if it is the same for all.
    fn decide(self, lo: f32, hi: f32, c: f32) -> Option<bool> {
        let (lo, hi, c) = (f64::from(lo), f64::from(hi), f64::from(c));
        let always = match self {
            Cmp::Eq => lo == hi && lo == c,
            Cmp::Ne => c < lo || c > hi,
            Cmp::Lt => hi < c,
            Cmp::Le => hi <= c,
            Cmp::Gt => lo > c,
            Cmp::Ge => lo >= c,
        };
        let never = match self {
            Cmp::Eq => c < lo || c > hi,
            Cmp::Ne => lo == hi && lo == c,
            Cmp::Lt => lo >= c,
            Cmp::Le => lo > c,
            Cmp::Gt => hi <= c,
            Cmp::Ge => hi < c,
        };
        if always {
            Some(true)
        } else if never {
            Some(false)
        } else {
            None
        }
    }
}

fn as_f64(t: &Tensor) -> ArrayD<f64> {
    match t {
        Tensor::Int(a) => a.mapv(|v| v as f64),
        Tensor::Float(a) => a.mapv(f64::from),
    }
}

/// A comparison of known tensors (NumPy broadcasting), or of a bounded tensor
/// and a known number that comes out the same for every value in its range.
/// Booleans are integer tensors of 0 and 1.
fn compare(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot], cmp: Cmp) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let decided = |b: &Bounded, c: &Slot, cmp: Cmp| -> Result<Vec<Slot>> {
        let shape = broadcast_shape(&b.shape, &ctx.shape(c))
            .map_err(|e| Error::unsupported(format!("{}: {e}", node.describe())))?;
        let value = known_single_float(c).and_then(|c| cmp.decide(b.lo, b.hi, c));
        let value = value.ok_or_else(|| undecided(&node.origin, b))?;
        Ok(result(node, Tensor::Int(ArrayD::from_elem(IxDyn(&shape), i64::from(value)))))
    };
    match ins {
        [Slot::Bounded(b), c] => return decided(b, c, cmp),
        [c, Slot::Bounded(b)] => return decided(b, c, cmp.swapped()),
        _ => {}
    }
    let [a, b] = all_known(node, ins)?;
    let shape =
        broadcast_shape(a.shape(), b.shape()).map_err(|e| Error::unsupported(format!("{}: {e}", node.describe())))?;
    if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, "the comparison"));
    }
    let (a, b) = (as_f64(a), as_f64(b));
    let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return Err(Error::unsupported(format!("{}: shapes do not broadcast", node.describe())));
    };
    Ok(result(node, Tensor::Int(Zip::from(&a).and(&b).map_collect(|&x, &y| i64::from(cmp.holds(x, y))))))
}

/// LogicalAnd/LogicalOr of known booleans (a loop condition on its public
/// counters), NumPy broadcasting.
fn logical(node: &Node<'_>, ins: &[Slot], and: bool) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let [a, b] = all_known(node, ins)?;
    let shape =
        broadcast_shape(a.shape(), b.shape()).map_err(|e| Error::unsupported(format!("{}: {e}", node.describe())))?;
    if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, "the result"));
    }
    let (a, b) = (as_f64(a), as_f64(b));
    let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return Err(Error::unsupported(format!("{}: shapes do not broadcast", node.describe())));
    };
    let f = |x: f64, y: f64| if and { x != 0.0 && y != 0.0 } else { x != 0.0 || y != 0.0 };
    Ok(result(node, Tensor::Int(Zip::from(&a).and(&b).map_collect(|&x, &y| i64::from(f(x, y))))))
}

pub fn logical_and(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    logical(node, ins, true)
}

pub fn logical_or(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    logical(node, ins, false)
}

pub fn logical_not(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [a] = all_known(node, expect_inputs::<1>(node, ins)?)?;
    Ok(result(node, Tensor::Int(as_f64(a).mapv(|x| i64::from(x == 0.0)))))
}

pub fn equal(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Eq)
}

pub fn not_equal(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Ne)
}

pub fn less(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Lt)
}

pub fn less_equal(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Le)
}

pub fn greater(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Gt)
}

pub fn greater_equal(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    compare(ctx, node, ins, Cmp::Ge)
}

/// Select and SelectV2 with a known condition: wholly true picks the first
/// branch, wholly false the second, whatever they are (a decided dropout's
/// `where(keep_mask, x / keep_prob, 0)`); a mixed condition needs both known.
/// Select (v1) broadcasts a vector condition along the first axis; SelectV2
/// broadcasts all three.
pub fn select(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let [cond, then, other] = ins;
    let cond = known(cond).ok_or_else(|| private_refused(node, cond))?;
    let fail = |e: String| Error::unsupported(format!("{}: {e}", node.describe()));
    let (ts, es) = (ctx.shape(then), ctx.shape(other));
    let branches = broadcast_shape(&ts, &es).map_err(fail)?;
    let v1 = node.op == "Select";
    let mut cs = cond.shape().to_vec();
    if v1 && cs.len() == 1 && branches.len() > 1 {
        cs.extend(std::iter::repeat_n(1, branches.len().saturating_sub(1)));
    }
    let shape = broadcast_shape(&cs, &branches).map_err(fail)?;
    let flags = as_f64(cond);
    let pick = if flags.iter().all(|&c| c != 0.0) {
        Some((then, &ts))
    } else if flags.iter().all(|&c| c == 0.0) {
        Some((other, &es))
    } else {
        None
    };
    if let Some((slot, s)) = pick
        && *s == shape
    {
        return Ok(vec![slot.clone()]);
    }
    let [_, t, e] = all_known(node, ins)?;
    if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(too_large(node, "the selection"));
    }
    let flags = flags.into_shape_with_order(IxDyn(&cs)).map_err(|e| fail(e.to_string()))?;
    let c = flags.broadcast(IxDyn(&shape)).ok_or_else(|| fail("the condition does not broadcast".into()))?;
    let broadcast_f = |a: &ArrayD<f32>| a.broadcast(IxDyn(&shape)).map(|v| v.to_owned());
    let broadcast_i = |a: &ArrayD<i64>| a.broadcast(IxDyn(&shape)).map(|v| v.to_owned());
    let out = match (t, e) {
        (Tensor::Float(t), Tensor::Float(e)) => {
            let (Some(t), Some(e)) = (broadcast_f(t), broadcast_f(e)) else { return Err(fail("shapes".into())) };
            Tensor::Float(Zip::from(&c).and(&t).and(&e).map_collect(|&c, &t, &e| if c != 0.0 { t } else { e }))
        }
        (Tensor::Int(t), Tensor::Int(e)) => {
            let (Some(t), Some(e)) = (broadcast_i(t), broadcast_i(e)) else { return Err(fail("shapes".into())) };
            Tensor::Int(Zip::from(&c).and(&t).and(&e).map_collect(|&c, &t, &e| if c != 0.0 { t } else { e }))
        }
        _ => return Err(fail("branches of different kinds".into())),
    };
    Ok(result(node, out))
}

pub fn abs(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, crate::ops::Abs.into(), ins)?])
}

/// ClipByValue with public scalar bounds.
pub fn clip_by_value(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let bound = |slot: &Slot, what: &str| {
        known_single_float(slot).ok_or_else(|| {
            Error::unsupported(format!("{}: the {what} bound must be a constant number", node.describe()))
        })
    };
    let clip = crate::ops::Clip { lo: Some(bound(&ins[1], "lower")?), hi: Some(bound(&ins[2], "upper")?) };
    Ok(vec![ctx.apply(&node.origin, clip.into(), &ins[..1])?])
}

/// The output size of a resize and its two flags.
fn resize_attrs(ctx: &Builder, node: &Node<'_>, ins: &[Slot; 2]) -> Result<([usize; 2], bool, bool)> {
    let size = known_sizes(ctx, node, &ins[1], "the size")?;
    let &[h, w] = size.as_slice() else {
        return Err(Error::invalid_model(format!("{}: the size must be [height, width]", node.describe())));
    };
    Ok(([h, w], node.get_attr_bool("align_corners", false)?, node.get_attr_bool("half_pixel_centers", false)?))
}

/// ResizeNearestNeighbor: a gather along height, then along width (local on shares).
pub fn resize_nearest(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let ([oh, ow], align, half) = resize_attrs(ctx, node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let &[_, h, w, _] = shape.as_slice() else {
        return Err(Error::unsupported(format!("{}: input {shape:?} is not NHWC", node.describe())));
    };
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(Error::unsupported(format!("{}: cannot resize {h}x{w} to {oh}x{ow}", node.describe())));
    }
    let gather = |axis: usize, idx: Vec<usize>| Op::Gather { axis, indices: ndarray::Array1::from(idx).into_dyn() };
    let rows =
        ctx.apply(&node.origin, gather(1, crate::kernels::linear::nearest_indices(h, oh, align, half)), &ins[..1])?;
    Ok(vec![ctx.apply(
        &node.origin,
        gather(2, crate::kernels::linear::nearest_indices(w, ow, align, half)),
        &[rows],
    )?])
}

pub fn resize_bilinear(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let (size, align_corners, half_pixel_centers) = resize_attrs(ctx, node, ins)?;
    let layout = crate::kernels::Layout::Nhwc;
    let unit = crate::ops::ResizeBilinear { size, align_corners, half_pixel_centers, layout };
    Ok(vec![ctx.apply(&node.origin, unit.into(), &ins[..1])?])
}
