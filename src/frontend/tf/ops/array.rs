//! Constants, shapes and data movement.

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::super::Node;
use super::{expect_inputs, known_pairs, known_scalar, known_sizes, resolve_axis};
use crate::error::Error;
use crate::frontend::tf::proto::{DataType, NodeExt};
use crate::frontend::{Builder, Origin, Slot};
use crate::kernels::layout::AxisSlice;
use crate::plan::Op;
use crate::tensor::Tensor;

pub fn constant(_: &mut Builder, node: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Ok(vec![Builder::known(&node.origin, node.get_attr_tensor("value")?)])
}

/// Reached only for a placeholder that nothing feeds; `build_plan` has already
/// reported those, so this is a safety net.
pub fn placeholder(_: &mut Builder, node: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Err(Error::bad_input(format!("no input for placeholder `{}`", node.name)))
}

pub fn identity(_: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    Ok(vec![expect_inputs::<1>(node, ins)?[0].clone()])
}

pub fn identity_n(_: &mut Builder, _: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    Ok(ins.to_vec())
}

pub fn no_op(_: &mut Builder, _: &Node<'_>, _: &[Slot]) -> Result<Vec<Slot>> {
    Ok(vec![])
}

fn int_vector(values: Vec<i64>) -> Tensor {
    Tensor::Int(ndarray::Array1::from(values).into_dyn())
}

fn int_scalar(value: i64) -> Tensor {
    Tensor::Int(ArrayD::from_elem(IxDyn(&[]), value))
}

/// Shapes are static in a plan, so `Shape` of anything, private or not, is public.
pub fn shape(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let dims = ctx.shape(&ins[0]).into_iter().map(|d| d as i64).collect();
    Ok(vec![Builder::known(&node.origin, int_vector(dims))])
}

pub fn size(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![Builder::known(&node.origin, int_scalar(ctx.shape(&ins[0]).iter().product::<usize>() as i64))])
}

pub fn rank(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![Builder::known(&node.origin, int_scalar(ctx.shape(&ins[0]).len() as i64))])
}

/// Resolve a Reshape target: at most one -1, inferred from the element count.
fn reshape_target(node: &Node<'_>, from: &[usize], target: &[i64]) -> Result<Vec<usize>> {
    let total: usize = from.iter().product();
    let fail =
        |why: String| Error::unsupported(format!("{}: cannot reshape {from:?} to {target:?}: {why}", node.describe()));
    let mut unknown = None;
    let mut known = 1usize;
    let mut dims = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if unknown.is_none() => {
                unknown = Some(i);
                dims.push(0);
            }
            -1 => return Err(fail("more than one -1".into())),
            d if d >= 0 => {
                let d = d as usize;
                known = known.checked_mul(d).ok_or_else(|| fail("too many elements".into()))?;
                dims.push(d);
            }
            d => return Err(fail(format!("dimension {d}"))),
        }
    }
    if let Some(i) = unknown {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(fail(format!("{total} values do not divide into {known}")));
        }
        if let Some(d) = dims.get_mut(i) {
            *d = total.checked_div(known).unwrap_or(0);
        }
    } else if known != total {
        return Err(fail(format!("{total} values, the target holds {known}")));
    }
    Ok(dims)
}

pub fn reshape(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let target = ctx.known_ints(&node.origin, &ins[1], "the target shape")?;
    let dims = reshape_target(node, &ctx.shape(&ins[0]), &target)?;
    Ok(vec![ctx.apply(&node.origin, Op::Reshape(dims), &ins[..1])?])
}

pub fn squeeze(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let listed = match node.get_attr_opt_ints("squeeze_dims")? {
        Some(v) => v,
        None => node.get_attr_opt_ints("axis")?.unwrap_or_default(),
    };
    let axes = listed.iter().map(|&a| resolve_axis(node, a, shape.len())).collect::<Result<Vec<_>>>()?;
    if let Some(&a) = axes.iter().find(|&&a| shape.get(a) != Some(&1)) {
        return Err(Error::unsupported(format!(
            "{}: cannot squeeze axis {a} of size {} in {shape:?}",
            node.describe(),
            shape.get(a).copied().unwrap_or(0)
        )));
    }
    let dims: Vec<usize> = shape
        .iter()
        .enumerate()
        .filter(|&(i, &d)| if axes.is_empty() { d != 1 } else { !axes.contains(&i) })
        .map(|(_, &d)| d)
        .collect();
    Ok(vec![ctx.apply(&node.origin, Op::Reshape(dims), ins)?])
}

pub fn expand_dims(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let mut shape = ctx.shape(&ins[0]);
    let axis = resolve_axis(node, known_scalar(ctx, node, &ins[1], "the axis")?, shape.len().saturating_add(1))?;
    shape.insert(axis, 1);
    Ok(vec![ctx.apply(&node.origin, Op::Reshape(shape), &ins[..1])?])
}

pub fn transpose(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let perm = known_sizes(ctx, node, &ins[1], "the permutation")?;
    Ok(vec![ctx.apply(&node.origin, Op::Transpose(perm), &ins[..1])?])
}

/// Pad and PadV2 with a zero constant value (the only value that pads shares locally).
pub fn pad(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [x, paddings] = if node.op == "PadV2" {
        let [x, paddings, constant] = expect_inputs::<3>(node, ins)?;
        let value = match constant {
            Slot::Known(k) => k.tensor.to_float().iter().copied().next(),
            _ => None,
        };
        if value != Some(0.0) {
            return Err(Error::unsupported(format!(
                "{}: only padding with a constant 0 is supported",
                node.describe()
            )));
        }
        [x, paddings]
    } else {
        let [x, paddings] = expect_inputs::<2>(node, ins)?;
        [x, paddings]
    };
    let rank = ctx.shape(x).len();
    let pads = known_pairs(ctx, node, paddings, "the paddings", rank)?;
    Ok(vec![ctx.apply(&node.origin, Op::Pad(pads), std::slice::from_ref(x))?])
}

fn concat(ctx: &mut Builder, node: &Node<'_>, values: &[Slot], axis: &Slot) -> Result<Vec<Slot>> {
    if values.is_empty() {
        return Err(Error::invalid_model(format!("{}: nothing to concatenate", node.describe())));
    }
    let rank = values.first().map_or(0, |v| ctx.shape(v).len());
    let axis = resolve_axis(node, known_scalar(ctx, node, axis, "the axis")?, rank)?;
    Ok(vec![ctx.apply(&node.origin, Op::Concat { axis }, values)?])
}

pub fn concat_v2(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (axis, values) =
        ins.split_last().ok_or_else(|| Error::invalid_model(format!("{}: no inputs", node.describe())))?;
    concat(ctx, node, values, axis)
}

pub fn concat_v1(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let (axis, values) =
        ins.split_first().ok_or_else(|| Error::invalid_model(format!("{}: no inputs", node.describe())))?;
    concat(ctx, node, values, axis)
}

/// `tf.stack`: each input gains a size-1 axis, then they are concatenated along it.
pub fn pack(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let Some(first) = ins.first() else {
        return Err(Error::invalid_model(format!("{}: nothing to stack", node.describe())));
    };
    let rank = ctx.shape(first).len();
    let axis = resolve_axis(node, node.get_attr_opt_int("axis")?.unwrap_or(0), rank.saturating_add(1))?;
    let mut expanded = Vec::with_capacity(ins.len());
    for slot in ins {
        let mut shape = ctx.shape(slot);
        if shape.len() != rank {
            return Err(Error::unsupported(format!(
                "{}: cannot stack tensors of ranks {rank} and {}",
                node.describe(),
                shape.len()
            )));
        }
        shape.insert(axis, 1);
        expanded.push(ctx.apply(&node.origin, Op::Reshape(shape), std::slice::from_ref(slot))?);
    }
    Ok(vec![ctx.apply(&node.origin, Op::Concat { axis }, &expanded)?])
}

/// `tf.unstack`: `num` slices along `axis`, each without that axis (what an
/// unrolled Keras RNN cuts its time steps with).
pub fn unpack(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let axis = resolve_axis(node, node.get_attr_opt_int("axis")?.unwrap_or(0), shape.len())?;
    let along = shape.get(axis).copied().unwrap_or(0);
    let num = node.get_attr_opt_int("num")?;
    if num.is_some_and(|n| usize::try_from(n).ok() != Some(along)) {
        return Err(Error::invalid_model(format!(
            "{}: unstacks {} pieces from axis {axis} of {shape:?}",
            node.describe(),
            num.unwrap_or(0)
        )));
    }
    unstack(ctx, &node.origin, &ins[0], axis)
}

/// The slices of `x` along `axis`, each without that axis (Unpack, and a
/// TensorList made from a tensor).
pub(super) fn unstack(ctx: &mut Builder, at: &Origin, x: &Slot, axis: usize) -> Result<Vec<Slot>> {
    let shape = ctx.shape(x);
    let along = shape.get(axis).copied().unwrap_or(0);
    let mut out_shape = shape.clone();
    out_shape.remove(axis);
    (0..along)
        .map(|i| {
            let axes = shape
                .iter()
                .enumerate()
                .map(|(a, &d)| AxisSlice {
                    start: if a == axis { i } else { 0 },
                    step: 1,
                    count: if a == axis { 1 } else { d },
                })
                .collect();
            ctx.apply(at, Op::StridedSlice { axes, shape: out_shape.clone() }, std::slice::from_ref(x))
        })
        .collect()
}

pub fn slice(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let begin = ctx.known_ints(&node.origin, &ins[1], "begin")?;
    let size = ctx.known_ints(&node.origin, &ins[2], "size")?;
    if begin.len() != shape.len() || size.len() != shape.len() {
        return Err(Error::unsupported(format!(
            "{}: begin and size must have {} values",
            node.describe(),
            shape.len()
        )));
    }
    let mut axes = Vec::with_capacity(shape.len());
    for ((&b, &s), &d) in begin.iter().zip(&size).zip(&shape) {
        let count = if s == -1 { (d as i64).saturating_sub(b).max(0) } else { s };
        if b < 0 || count < 0 || b.checked_add(count).is_none_or(|end| end > d as i64) {
            return Err(Error::unsupported(format!(
                "{}: slice from {begin:?} of size {size:?} is outside {shape:?}",
                node.describe()
            )));
        }
        axes.push(AxisSlice { start: b as usize, step: 1, count: count as usize });
    }
    let out: Vec<usize> = axes.iter().map(|a| a.count).collect();
    Ok(vec![ctx.apply(&node.origin, Op::StridedSlice { axes, shape: out }, &ins[..1])?])
}

/// The masks of a StridedSlice node, one bit per entry of `begin`.
struct Masks {
    begin: i64,
    end: i64,
    ellipsis: i64,
    new_axis: i64,
    shrink: i64,
}

/// `ceil(a / b)` for positive `a` and `b`.
fn ceil_div(a: i64, b: i64) -> Option<i64> {
    a.checked_add(b.checked_sub(1)?)?.checked_div(b)
}

/// TensorFlow's StridedSlice semantics, resolved against a static shape: one
/// [`AxisSlice`] per input axis, and the output shape (shrunk axes removed, new
/// axes inserted).
fn strided_slice_spec(
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    strides: &[i64],
    m: &Masks,
) -> std::result::Result<(Vec<AxisSlice>, Vec<usize>), String> {
    let n = begin.len();
    if end.len() != n || strides.len() != n {
        return Err(format!("begin, end and strides have {n}, {} and {} values", end.len(), strides.len()));
    }
    let bit = |mask: i64, i: usize| i < 63 && mask >> i & 1 == 1;
    if m.ellipsis.count_ones() > 1 {
        return Err("more than one ellipsis".into());
    }
    let consuming = (0..n).filter(|&i| !bit(m.ellipsis, i) && !bit(m.new_axis, i)).count();
    if consuming > shape.len() {
        return Err(format!("slices {consuming} axes of a rank-{} input", shape.len()));
    }
    let mut axes = Vec::with_capacity(shape.len());
    let mut out = Vec::new();
    let mut dim = 0;
    let full = |dim: usize, axes: &mut Vec<AxisSlice>, out: &mut Vec<usize>| {
        let count = shape.get(dim).copied().unwrap_or(0);
        axes.push(AxisSlice { start: 0, step: 1, count });
        out.push(count);
    };
    for (i, ((&begin_i, &end_i), &stride)) in begin.iter().zip(end).zip(strides).enumerate() {
        if bit(m.ellipsis, i) {
            for _ in 0..shape.len().saturating_sub(consuming) {
                full(dim, &mut axes, &mut out);
                dim = dim.saturating_add(1);
            }
            continue;
        }
        if bit(m.new_axis, i) {
            out.push(1);
            continue;
        }
        let size = shape.get(dim).copied().unwrap_or(0) as i64;
        // |stride| beyond the axis selects one element; bounding it keeps the
        // arithmetic below far from overflow.
        if stride == 0 || stride.unsigned_abs() > 1 << 40 {
            return Err(format!("stride {stride}"));
        }
        let norm = |x: i64| if x < 0 { x.saturating_add(size) } else { x };
        if bit(m.shrink, i) {
            let b = norm(begin_i);
            if b < 0 || b >= size {
                return Err(format!("index {begin_i} is out of range for axis {dim} of size {size}"));
            }
            axes.push(AxisSlice { start: b as usize, step: 1, count: 1 });
            dim = dim.saturating_add(1);
            continue;
        }
        let (lo, hi) = if stride > 0 { (0, size) } else { (-1, size.saturating_sub(1)) };
        let b = if bit(m.begin, i) { if stride > 0 { lo } else { hi } } else { norm(begin_i).clamp(lo, hi) };
        let e = if bit(m.end, i) { if stride > 0 { hi } else { lo } } else { norm(end_i).clamp(lo, hi) };
        // ceil(span / |stride|) elements, for a positive span.
        let count = if stride > 0 && e > b {
            e.checked_sub(b).and_then(|span| ceil_div(span, stride))
        } else if stride < 0 && b > e {
            b.checked_sub(e).and_then(|span| ceil_div(span, stride.checked_neg()?))
        } else {
            Some(0)
        }
        .ok_or_else(|| format!("axis {dim} of size {size} with stride {stride} is too large"))?;
        axes.push(AxisSlice {
            start: if count > 0 { b as usize } else { 0 },
            step: stride as isize,
            count: count as usize,
        });
        out.push(count as usize);
        dim = dim.saturating_add(1);
    }
    while dim < shape.len() {
        full(dim, &mut axes, &mut out);
        dim = dim.saturating_add(1);
    }
    Ok((axes, out))
}

pub fn strided_slice(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<4>(node, ins)?;
    let masks = Masks {
        begin: node.get_attr_opt_int("begin_mask")?.unwrap_or(0),
        end: node.get_attr_opt_int("end_mask")?.unwrap_or(0),
        ellipsis: node.get_attr_opt_int("ellipsis_mask")?.unwrap_or(0),
        new_axis: node.get_attr_opt_int("new_axis_mask")?.unwrap_or(0),
        shrink: node.get_attr_opt_int("shrink_axis_mask")?.unwrap_or(0),
    };
    let begin = ctx.known_ints(&node.origin, &ins[1], "begin")?;
    let end = ctx.known_ints(&node.origin, &ins[2], "end")?;
    let strides = ctx.known_ints(&node.origin, &ins[3], "strides")?;
    let (axes, shape) = strided_slice_spec(&ctx.shape(&ins[0]), &begin, &end, &strides, &masks)
        .map_err(|e| Error::unsupported(format!("{}: {e}", node.describe())))?;
    Ok(vec![ctx.apply(&node.origin, Op::StridedSlice { axes, shape }, &ins[..1])?])
}

/// Cut `value` along `axis` into pieces of the given sizes.
fn split_into(ctx: &mut Builder, node: &Node<'_>, value: &Slot, axis: usize, sizes: &[usize]) -> Result<Vec<Slot>> {
    let shape = ctx.shape(value);
    let mut start = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let axes: Vec<AxisSlice> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i == axis {
                    AxisSlice { start, step: 1, count: size }
                } else {
                    AxisSlice { start: 0, step: 1, count: d }
                }
            })
            .collect();
        let mut out = shape.clone();
        if let Some(d) = out.get_mut(axis) {
            *d = size;
        }
        outs.push(ctx.apply(&node.origin, Op::StridedSlice { axes, shape: out }, std::slice::from_ref(value))?);
        start = start
            .checked_add(size)
            .ok_or_else(|| Error::unsupported(format!("{}: split sizes {sizes:?} are too large", node.describe())))?;
    }
    Ok(outs)
}

pub fn split(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let shape = ctx.shape(&ins[1]);
    let axis = resolve_axis(node, known_scalar(ctx, node, &ins[0], "the axis")?, shape.len())?;
    let n = node.get_attr_int("num_split")?;
    let along = shape.get(axis).copied().unwrap_or(0);
    // An empty axis divides into any number of pieces: one is enough, and the
    // count bounds the work (and the list of sizes) by the axis.
    let pieces = usize::try_from(n).ok().filter(|&n| n > 0 && n <= along.max(1) && along.is_multiple_of(n));
    let Some(n) = pieces else {
        return Err(Error::unsupported(format!(
            "{}: axis {axis} of {shape:?} does not split into {n}",
            node.describe()
        )));
    };
    let sizes = vec![along.checked_div(n).unwrap_or(0); n];
    split_into(ctx, node, &ins[1], axis, &sizes)
}

pub fn split_v(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let shape = ctx.shape(&ins[0]);
    let axis = resolve_axis(node, known_scalar(ctx, node, &ins[2], "the axis")?, shape.len())?;
    let requested = ctx.known_ints(&node.origin, &ins[1], "the split sizes")?;
    let fail = || {
        Error::unsupported(format!("{}: sizes {requested:?} do not split axis {axis} of {shape:?}", node.describe()))
    };
    let along = shape.get(axis).copied().unwrap_or(0);
    let known = requested.iter().filter(|&&s| s >= 0).try_fold(0i64, |a, &s| a.checked_add(s));
    let unknown = requested.iter().filter(|&&s| s == -1).count();
    let Some(known) = known.filter(|&k| k <= along as i64) else { return Err(fail()) };
    if requested.iter().any(|&s| s < -1) || unknown > 1 {
        return Err(fail());
    }
    let sizes: Vec<usize> =
        requested.iter().map(|&s| if s == -1 { along.saturating_sub(known as usize) } else { s as usize }).collect();
    if sizes.iter().sum::<usize>() != along {
        return Err(fail());
    }
    split_into(ctx, node, &ins[0], axis, &sizes)
}

fn gather(ctx: &mut Builder, node: &Node<'_>, params: &Slot, indices: &Slot, axis: i64) -> Result<Vec<Slot>> {
    let shape = ctx.shape(params);
    let axis = resolve_axis(node, axis, shape.len())?;
    if matches!(indices, Slot::Value(_)) {
        return gather_by_private_indices(ctx, node, params, indices, axis);
    }
    let idx_shape = ctx.shape(indices);
    let raw = ctx.known_ints(&node.origin, indices, "the indices")?;
    let idx = raw
        .iter()
        .map(|&i| usize::try_from(i).ok().filter(|&i| shape.get(axis).is_some_and(|&d| i < d)))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            Error::unsupported(format!(
                "{}: indices {raw:?} out of range for axis {axis} of {shape:?}",
                node.describe()
            ))
        })?;
    let indices = ArrayD::from_shape_vec(IxDyn(&idx_shape), idx)
        .map_err(|e| Error::invalid_model(format!("{}: indices: {e}", node.describe())))?;
    Ok(vec![ctx.apply(&node.origin, Op::Gather { axis, indices }, std::slice::from_ref(params))?])
}

/// An embedding lookup by private ids (Keras' `Embedding`): the rows of `params`
/// along axis 0 that the ids pick, as OneHot(ids) @ params (reshaped to a matrix
/// and back). An id outside the table gives a row of zeros (`ops/one_hot.rs`).
fn gather_by_private_indices(
    ctx: &mut Builder,
    node: &Node<'_>,
    params: &Slot,
    indices: &Slot,
    axis: usize,
) -> Result<Vec<Slot>> {
    let shape = ctx.shape(params);
    let (Some((&depth, rest)), 0) = (shape.split_first(), axis) else {
        return Err(Error::unsupported(format!(
            "{}: a gather by private indices is supported along axis 0 only (an embedding lookup), not axis {axis} \
             of {shape:?}",
            node.describe()
        )));
    };
    let ids = ctx.shape(indices);
    let count = |dims: &[usize]| {
        crate::tensor::element_count(dims)
            .ok_or_else(|| Error::unsupported(format!("{}: {dims:?} is too large", node.describe())))
    };
    let (rows, width) = (count(&ids)?, count(rest)?);
    let at = &node.origin;
    let hot = ctx.apply(at, crate::ops::OneHot { depth }.into(), std::slice::from_ref(indices))?;
    let hot = ctx.apply(at, Op::Reshape(vec![rows, depth]), &[hot])?;
    let table = ctx.apply(at, Op::Reshape(vec![depth, width]), std::slice::from_ref(params))?;
    let picked = ctx.apply(at, Op::MatMul { transpose_a: false, transpose_b: false }, &[hot, table])?;
    let out: Vec<usize> = ids.iter().chain(rest).copied().collect();
    Ok(vec![ctx.apply(at, Op::Reshape(out), &[picked])?])
}

pub fn gather_v2(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    if node.get_attr_opt_int("batch_dims")?.unwrap_or(0) != 0 {
        return Err(Error::unsupported(format!("{}: batch_dims other than 0 is not supported", node.describe())));
    }
    let axis = known_scalar(ctx, node, &ins[2], "the axis")?;
    gather(ctx, node, &ins[0], &ins[1], axis)
}

pub fn gather_v1(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    gather(ctx, node, &ins[0], &ins[1], 0)
}

pub fn cast(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let op = match node.get_attr_type("DstT")? {
        Some(DataType::DtFloat | DataType::DtDouble) => Op::CastToFloat,
        Some(
            DataType::DtInt32
            | DataType::DtInt64
            | DataType::DtInt16
            | DataType::DtInt8
            | DataType::DtUint8
            | DataType::DtBool,
        ) => Op::CastToInt,
        other => {
            return Err(Error::unsupported(format!(
                "{}: cast to {} is not supported",
                node.describe(),
                other.map(crate::frontend::tf::proto::dtype_name).unwrap_or("an unknown dtype")
            )));
        }
    };
    // A float-to-float cast of a private value changes nothing tfe-run computes.
    if op == Op::CastToFloat && matches!(ins[0], Slot::Value(_)) {
        return Ok(vec![ins[0].clone()]);
    }
    Ok(vec![ctx.apply(&node.origin, op, ins)?])
}

pub fn space_to_batch_nd(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let block = known_sizes(ctx, node, &ins[1], "the block shape")?;
    let pads = known_pairs(ctx, node, &ins[2], "the paddings", block.len())?;
    Ok(vec![ctx.apply(&node.origin, Op::SpaceToBatch { block, pads }, &ins[..1])?])
}

pub fn batch_to_space_nd(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<3>(node, ins)?;
    let block = known_sizes(ctx, node, &ins[1], "the block shape")?;
    let crops = known_pairs(ctx, node, &ins[2], "the crops", block.len())?;
    Ok(vec![ctx.apply(&node.origin, Op::BatchToSpace { block, crops }, &ins[..1])?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: &[usize], b: &[i64], e: &[i64], s: &[i64], masks: [i64; 5]) -> (Vec<AxisSlice>, Vec<usize>) {
        let m = Masks { begin: masks[0], end: masks[1], ellipsis: masks[2], new_axis: masks[3], shrink: masks[4] };
        strided_slice_spec(shape, b, e, s, &m).unwrap()
    }

    #[test]
    fn keras_flatten_batch_size() {
        // Shape(x)[0] as Keras writes it: begin [0], end [1], strides [1], shrink bit 0.
        let (axes, out) = spec(&[4], &[0], &[1], &[1], [0, 0, 0, 0, 1]);
        assert_eq!(axes, vec![AxisSlice { start: 0, step: 1, count: 1 }]);
        assert_eq!(out, Vec::<usize>::new());
    }

    #[test]
    fn negative_stride_reverses() {
        // x[::-1] on 5 elements, and x[-2:0:-2].
        let (axes, out) = spec(&[5], &[0], &[0], &[-1], [1, 1, 0, 0, 0]);
        assert_eq!((axes[0].start, axes[0].step, out[0]), (4, -1, 5));
        let (axes, out) = spec(&[5], &[-2], &[0], &[-2], [0, 0, 0, 0, 0]);
        assert_eq!((axes[0].start, axes[0].step, out[0]), (3, -2, 2));
    }

    #[test]
    fn ellipsis_and_new_axis() {
        // x[..., 1:3, tf.newaxis] on [2, 3, 4]
        let (axes, out) = spec(&[2, 3, 4], &[0, 1, 0], &[0, 3, 0], &[1, 1, 1], [0, 0, 1, 4, 0]);
        assert_eq!(out, vec![2, 3, 2, 1]);
        assert_eq!(axes[2], AxisSlice { start: 1, step: 1, count: 2 });
    }

    #[test]
    fn out_of_range_begin_is_clamped() {
        let (axes, out) = spec(&[3], &[-10], &[10], &[1], [0, 0, 0, 0, 0]);
        assert_eq!((axes[0].start, out[0]), (0, 3));
    }
}
