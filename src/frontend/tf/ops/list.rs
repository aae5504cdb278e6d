//! TensorLists (TF2's TensorArrays): what a loop reads its time steps from and
//! writes its outputs to. A list is a [`TensorList`] of slots resolved at import:
//! its length and every index must be public, so a list never becomes a plan value
//! and each read or write is a choice of slot, free under Pond.

use std::rc::Rc;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::super::Node;
use super::{expect_inputs, known_scalar};
use crate::error::Error;
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Builder, MAX_CONST_ELEMENTS, Slot, TensorList};
use crate::plan::Op;
use crate::tensor::{Tensor, element_count};

/// A list may hold at most this many elements: a few bytes of `num_elements`
/// would otherwise reserve any number of slots.
pub const MAX_LIST_LENGTH: usize = 1 << 20;

fn list<'a>(node: &Node<'_>, slot: &'a Slot) -> Result<&'a TensorList> {
    match slot {
        Slot::List(l) => Ok(l),
        _ => Err(Error::invalid_model(format!("{}: its first input is not a tensor list", node.describe()))),
    }
}

fn made(node: &Node<'_>, items: Vec<Option<Slot>>, element_shape: Option<Vec<usize>>) -> Vec<Slot> {
    vec![Slot::List(Rc::new(TensorList { items, element_shape, origin: node.name.clone() }))]
}

/// An `element_shape` input: -1 (a scalar, unknown rank) or a vector where -1 is
/// an unknown dimension; `None` unless every dimension is known.
fn element_shape(ctx: &Builder, node: &Node<'_>, slot: &Slot) -> Result<Option<Vec<usize>>> {
    let dims = ctx.known_ints(&node.origin, slot, "the element shape")?;
    if ctx.shape(slot).is_empty() {
        return Ok(None);
    }
    Ok(dims.iter().map(|&d| usize::try_from(d).ok()).collect())
}

/// A public index into a list of `len` elements.
fn index(ctx: &Builder, node: &Node<'_>, slot: &Slot, len: usize) -> Result<usize> {
    if matches!(slot, Slot::Value(_)) {
        return Err(Error::unsupported(format!(
            "{}: the list index is computed from the client's private input; a TensorList index must be public",
            node.describe()
        )));
    }
    let i = known_scalar(ctx, node, slot, "the list index")?;
    usize::try_from(i).ok().filter(|&i| i < len).ok_or_else(|| {
        Error::unsupported(format!("{}: index {i} is outside the list of {len} element(s)", node.describe()))
    })
}

/// An unwritten element reads as zeros of the element shape, as in TensorFlow.
fn zeros(node: &Node<'_>, shape: Option<&[usize]>, at: usize) -> Result<Slot> {
    let shape = shape.ok_or_else(|| {
        Error::unsupported(format!(
            "{}: element {at} was never written and the list's element shape is not fully known",
            node.describe()
        ))
    })?;
    if element_count(shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
        return Err(Error::unsupported(format!("{}: an element of shape {shape:?} is too large", node.describe())));
    }
    Ok(Builder::known(&node.origin, Tensor::Float(ArrayD::zeros(IxDyn(shape)))))
}

pub fn reserve(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [shape, n] = expect_inputs::<2>(node, ins)?;
    let shape = element_shape(ctx, node, shape)?;
    let n = known_scalar(ctx, node, n, "the number of elements")?;
    let n = usize::try_from(n).ok().filter(|&n| n <= MAX_LIST_LENGTH).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: reserves {n} elements; a list must have a known length of at most {MAX_LIST_LENGTH}",
            node.describe()
        ))
    })?;
    Ok(made(node, vec![None; n], shape))
}

pub fn from_tensor(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [tensor, _] = expect_inputs::<2>(node, ins)?;
    let shape = ctx.shape(tensor);
    let Some((&len, element)) = shape.split_first() else {
        return Err(Error::invalid_model(format!("{}: a scalar is not a list of tensors", node.describe())));
    };
    if len > MAX_LIST_LENGTH {
        return Err(Error::unsupported(format!("{}: a list of {len} elements is too long", node.describe())));
    }
    let items = super::array::unstack(ctx, &node.origin, tensor, 0)?;
    Ok(made(node, items.into_iter().map(Some).collect(), Some(element.to_vec())))
}

pub fn get_item(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [l, i, shape] = expect_inputs::<3>(node, ins)?;
    let l = list(node, l)?;
    let i = index(ctx, node, i, l.items.len())?;
    match l.items.get(i).cloned().flatten() {
        Some(item) => Ok(vec![item]),
        None => {
            let shape = l.element_shape.clone().or(element_shape(ctx, node, shape)?);
            Ok(vec![zeros(node, shape.as_deref(), i)?])
        }
    }
}

pub fn set_item(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [l, i, item] = expect_inputs::<3>(node, ins)?;
    let l = list(node, l)?;
    if node.get_attr_bool("resize_if_index_out_of_bounds", false)? {
        return Err(Error::unsupported(format!(
            "{}: resize_if_index_out_of_bounds is not supported (a list's length must be public and fixed)",
            node.describe()
        )));
    }
    if matches!(item, Slot::List(_) | Slot::Unavailable) {
        return Err(Error::unsupported(format!("{}: writes something other than a tensor", node.describe())));
    }
    let i = index(ctx, node, i, l.items.len())?;
    let shape = ctx.shape(item);
    if l.element_shape.as_ref().is_some_and(|s| *s != shape) {
        return Err(Error::invalid_model(format!(
            "{}: writes an element of shape {shape:?} to a list of {:?}",
            node.describe(),
            l.element_shape.as_deref().unwrap_or_default()
        )));
    }
    let mut items = l.items.clone();
    if let Some(at) = items.get_mut(i) {
        *at = Some(item.clone());
    }
    Ok(made(node, items, Some(shape)))
}

/// The elements stacked along a new first axis: each reshaped to gain it, then
/// concatenated (local on shares).
pub fn stack(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [l, shape] = expect_inputs::<2>(node, ins)?;
    let l = list(node, l)?;
    if l.items.is_empty() {
        return Err(Error::unsupported(format!("{}: stacks an empty list", node.describe())));
    }
    let shape = l.element_shape.clone().or(element_shape(ctx, node, shape)?);
    let mut rows = Vec::with_capacity(l.items.len());
    for (i, item) in l.items.iter().enumerate() {
        let item = match item {
            Some(item) => item.clone(),
            None => zeros(node, shape.as_deref(), i)?,
        };
        let mut one = ctx.shape(&item);
        one.insert(0, 1);
        rows.push(ctx.apply(&node.origin, Op::Reshape(one), &[item])?);
    }
    Ok(vec![ctx.apply(&node.origin, Op::Concat { axis: 0 }, &rows)?])
}

pub fn length(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [l] = expect_inputs::<1>(node, ins)?;
    let n = i64::try_from(list(node, l)?.items.len()).unwrap_or(i64::MAX);
    Ok(vec![Builder::known(&node.origin, Tensor::Int(ArrayD::from_elem(IxDyn(&[]), n)))])
}

pub fn element_shape_of(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [l] = expect_inputs::<1>(node, ins)?;
    let l = list(node, l)?;
    let shape = match &l.element_shape {
        Some(s) => s.clone(),
        None => match l.items.iter().flatten().next() {
            Some(item) => ctx.shape(item),
            None => {
                return Err(Error::unsupported(format!(
                    "{}: the list's element shape is not known at import",
                    node.describe()
                )));
            }
        },
    };
    let dims: Vec<i64> = shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
    let n = dims.len();
    let t = ArrayD::from_shape_vec(IxDyn(&[n]), dims)
        .map_err(|e| Error::invalid_model(format!("{}: {e}", node.describe())))?;
    Ok(vec![Builder::known(&node.origin, Tensor::Int(t))])
}

/// `While` and `StatelessWhile` are unrolled by the graph walker, which holds the
/// function library their `cond` and `body` name (`tf/loops.rs`); the op table
/// lists them so that `inspect` and the docs know them.
pub fn loop_outside_walker(_: &mut Builder, node: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Err(Error::invalid_model(format!(
        "{}: a loop is unrolled only where its function library is known",
        node.describe()
    )))
}
