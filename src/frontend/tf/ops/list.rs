//! TensorLists (TF2's TensorArrays) and TF1's `TensorArrayV3`: what a loop reads
//! its time steps from and writes its outputs to. A list is a [`TensorList`] of
//! slots resolved at import: its length and every index must be public, so a list
//! never becomes a plan value and each read or write is a choice of slot, free
//! under Pond.
//!
//! A TF1 TensorArray is a resource `handle` plus a scalar `flow` that every write
//! returns anew and every read takes, which is how TensorFlow orders the accesses.
//! Here the flow *is* the list: a write makes a new list from the one its flow
//! carries, a read reads the one its flow carries, and the handle (which enters a
//! loop as an invariant) is only checked to be a list. So a TF1 array is a TF2
//! list threaded through the same loop variables, with the same rules.

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
            "{}: the list index is computed from the client's private input; a TensorList or TensorArray index must be public",
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
    written(ctx, node, l, &[(i.clone(), item.clone())])
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

/// TF1 `TensorArrayV3(size)`: outputs the handle and the flow, both the empty
/// list of `size` elements.
pub fn tensor_array(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [n] = expect_inputs::<1>(node, ins)?;
    if node.get_attr_bool("dynamic_size", false)? {
        return Err(Error::unsupported(format!(
            "{}: a TensorArray with dynamic_size=True grows as it is written; tfe-run needs a fixed, public size",
            node.describe()
        )));
    }
    let n = known_scalar(ctx, node, n, "the TensorArray's size")?;
    let n = usize::try_from(n).ok().filter(|&n| n <= MAX_LIST_LENGTH).ok_or_else(|| {
        Error::unsupported(format!(
            "{}: a TensorArray of {n} elements; its size must be known and at most {MAX_LIST_LENGTH}",
            node.describe()
        ))
    })?;
    let shape = node.get_attr_opt_shape("element_shape")?.and_then(|d| d.into_iter().collect::<Option<Vec<_>>>());
    // Outputs `handle` and `flow`: the same list (the flow is what later ops carry).
    let list =
        Slot::List(Rc::new(TensorList { items: vec![None; n], element_shape: shape, origin: node.name.clone() }));
    Ok(vec![list.clone(), list])
}

/// The list a TF1 TensorArray op works on: its flow input's (the handle must be a
/// list too, or the graph is not what TensorFlow writes).
fn flow<'a>(node: &Node<'_>, handle: &Slot, flow: &'a Slot) -> Result<&'a TensorList> {
    list(node, handle)?;
    match flow {
        Slot::List(l) => Ok(l),
        _ => Err(Error::invalid_model(format!("{}: its flow input is not a TensorArray's flow", node.describe()))),
    }
}

/// `TensorArrayWriteV3(handle, index, value, flow_in) -> flow_out`.
pub fn array_write(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle, i, item, flow_in] = expect_inputs::<4>(node, ins)?;
    let l = flow(node, handle, flow_in)?;
    written(ctx, node, l, &[(i.clone(), item.clone())])
}

/// `TensorArrayScatterV3(handle, indices, value, flow_in) -> flow_out`: row k of
/// `value` to element `indices[k]` (TensorArray.unstack is a scatter to 0..n).
pub fn array_scatter(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle, indices, value, flow_in] = expect_inputs::<4>(node, ins)?;
    let l = flow(node, handle, flow_in)?;
    let at = ctx.known_ints(&node.origin, indices, "the scatter indices")?;
    let rows = super::array::unstack(ctx, &node.origin, value, 0)?;
    if rows.len() != at.len() {
        return Err(Error::invalid_model(format!(
            "{}: scatters {} rows to {} indices",
            node.describe(),
            rows.len(),
            at.len()
        )));
    }
    let writes: Vec<(Slot, Slot)> = at
        .iter()
        .zip(rows)
        .map(|(&i, row)| (Builder::known(&node.origin, Tensor::Int(ArrayD::from_elem(IxDyn(&[]), i))), row))
        .collect();
    written(ctx, node, l, &writes)
}

/// `TensorArrayReadV3(handle, index, flow_in) -> value`.
pub fn array_read(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle, i, flow_in] = expect_inputs::<3>(node, ins)?;
    let l = flow(node, handle, flow_in)?;
    let i = index(ctx, node, i, l.items.len())?;
    Ok(vec![element(node, l, i, None)?])
}

/// `TensorArrayGatherV3(handle, indices, flow_in) -> value`: the elements at
/// `indices` stacked (TensorArray.stack is a gather of 0..size).
pub fn array_gather(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle, indices, flow_in] = expect_inputs::<3>(node, ins)?;
    let l = flow(node, handle, flow_in)?;
    let attr = node.get_attr_opt_shape("element_shape")?.and_then(|d| d.into_iter().collect::<Option<Vec<_>>>());
    let at = ctx.known_ints(&node.origin, indices, "the gather indices")?;
    if at.is_empty() {
        return Err(Error::unsupported(format!("{}: gathers no element", node.describe())));
    }
    let mut rows = Vec::with_capacity(at.len());
    for &i in &at {
        let i = usize::try_from(i).ok().filter(|&i| i < l.items.len()).ok_or_else(|| {
            Error::unsupported(format!(
                "{}: index {i} is outside the array of {} element(s)",
                node.describe(),
                l.items.len()
            ))
        })?;
        let item = element(node, l, i, attr.as_deref())?;
        let mut one = ctx.shape(&item);
        one.insert(0, 1);
        rows.push(ctx.apply(&node.origin, Op::Reshape(one), &[item])?);
    }
    Ok(vec![ctx.apply(&node.origin, Op::Concat { axis: 0 }, &rows)?])
}

/// `TensorArraySizeV3(handle, flow_in) -> size` (int32).
pub fn array_size(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle, flow_in] = expect_inputs::<2>(node, ins)?;
    let n = i64::try_from(flow(node, handle, flow_in)?.items.len()).unwrap_or(i64::MAX);
    Ok(vec![Builder::known(&node.origin, Tensor::Int(ArrayD::from_elem(IxDyn(&[]), n)))])
}

/// `TensorArrayCloseV3(handle)`: frees the array in TensorFlow; nothing here.
pub fn array_close(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [handle] = expect_inputs::<1>(node, ins)?;
    list(node, handle)?;
    Ok(vec![])
}

/// Element `i`, or zeros of the element shape (the array's, else `shape`) if it
/// was never written.
fn element(node: &Node<'_>, l: &TensorList, i: usize, shape: Option<&[usize]>) -> Result<Slot> {
    match l.items.get(i).cloned().flatten() {
        Some(item) => Ok(item),
        None => zeros(node, l.element_shape.as_deref().or(shape), i),
    }
}

/// `l` with `writes` (public index, tensor) applied in order, as `node`'s one
/// output; every element must have one shape, the list's if it declares one.
fn written(ctx: &Builder, node: &Node<'_>, l: &TensorList, writes: &[(Slot, Slot)]) -> Result<Vec<Slot>> {
    let mut out = l.clone();
    out.origin = node.name.clone();
    for (i, item) in writes {
        if matches!(item, Slot::List(_) | Slot::Unavailable) {
            return Err(Error::unsupported(format!("{}: writes something other than a tensor", node.describe())));
        }
        let i = index(ctx, node, i, out.items.len())?;
        let shape = ctx.shape(item);
        if out.element_shape.as_ref().is_some_and(|s| *s != shape) {
            return Err(Error::invalid_model(format!(
                "{}: writes an element of shape {shape:?} to a list of {:?}",
                node.describe(),
                out.element_shape.as_deref().unwrap_or_default()
            )));
        }
        out.element_shape = Some(shape);
        if let Some(at) = out.items.get_mut(i) {
            *at = Some(item.clone());
        }
    }
    Ok(vec![Slot::List(Rc::new(out))])
}
