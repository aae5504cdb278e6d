//! Folding per-channel constants into the linear op before them, at import,
//! where the model owner's weights are known.
//!
//! A frozen Keras graph keeps an inference BatchNormalization as
//! `conv(x, W) * s + b`: a Mul of the convolution's output by a weight. Under Pond
//! that Mul is a product of two private values (an opening and a truncation, two
//! rounds, and bytes the size of the activation). When the scale is per output
//! channel, `conv(x, W) * s = conv(x, W')` with `W'` the filter scaled channel by
//! channel, so the Mul disappears and only the following Add (local) is left. The
//! same holds for MatMul, DepthwiseConv2dNative and a bias Add between the linear
//! op and the Mul (the bias is scaled too), and two Adds of weights in a row are
//! one Add of their sum.
//!
//! Only the plan's shape and who reads what decide whether a step folds: the
//! structure the servers see depends on no weight value. The folded weights are
//! the model owner's, as the ones they replace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ndarray::ArrayD;

use crate::kernels::Layout;
use crate::ops::Unit;
use crate::plan::{Op, Plan, Source, Step, Value, ValueId};

/// Fold every Mul by a per-channel weight into the linear op before it, then
/// every Add of a weight into the Add of a weight before it.
pub fn fold_channel_constants(plan: &mut Plan) {
    let mut removed = vec![false; plan.steps.len()];
    let mut readers = readers(plan);
    // What the output of a removed step is read as instead: the input it passed on.
    let mut alias: HashMap<ValueId, ValueId> = HashMap::new();
    for k in 0..plan.steps.len() {
        if let Some(step) = plan.steps.get_mut(k) {
            for input in &mut step.inputs {
                *input = alias.get(input).copied().unwrap_or(*input);
            }
        }
        let Some(passed) = fold_scale(plan, &readers, k).or_else(|| fold_offset(plan, &readers, k)) else { continue };
        let Some(step) = plan.steps.get_mut(k) else { continue };
        let out = step.output;
        step.inputs.clear();
        // `passed` was read once, by step k; now by whatever read step k's output.
        let moved = readers.get_mut(out).map(std::mem::take).unwrap_or(0);
        if let Some(r) = readers.get_mut(passed) {
            *r = moved;
        }
        alias.insert(out, passed);
        if let Some(r) = removed.get_mut(k) {
            *r = true;
        }
    }
    plan.output = alias.get(&plan.output).copied().unwrap_or(plan.output);
    if removed.contains(&true) {
        compact(plan, &removed);
    }
}

/// A linear op whose filter is a weight: the axis of its output's channels, and
/// how the filter's elements map to them (the channel of flat index `i` is
/// `(i / inner) % channels`).
struct Linear {
    channel_axis: usize,
    inner: usize,
}

fn linear(plan: &Plan, step: &Step) -> Option<Linear> {
    let [x, filter] = step.inputs.as_slice() else { return None };
    // A private filter, or an input that is a weight (the filter's role then is
    // the input's), does not fold.
    if !is_weight(plan, *filter) || is_weight(plan, *x) {
        return None;
    }
    let filter_shape = &plan.values.get(*filter)?.shape;
    match &step.op {
        Op::Conv2D(w) => Some(Linear {
            channel_axis: match w.layout {
                Layout::Nhwc => 3,
                Layout::Nchw => 1,
            },
            inner: 1,
        }),
        // [k, n], or [n, k] transposed: n is the output's last axis.
        Op::MatMul { transpose_b, .. } => {
            Some(Linear { channel_axis: 1, inner: if *transpose_b { *filter_shape.get(1)? } else { 1 } })
        }
        // [h, w, c, m]: output channel c·m + m', the filter's last two axes flattened.
        Op::Unit(Unit::DepthwiseConv2D(_)) => Some(Linear { channel_axis: 3, inner: 1 }),
        _ => None,
    }
}

fn is_weight(plan: &Plan, v: ValueId) -> bool {
    plan.values.get(v).is_some_and(|v| matches!(v.source, Source::Weight))
}

/// How many times steps read each value, plus one for the plan's output.
fn readers(plan: &Plan) -> Vec<usize> {
    let mut count = vec![0usize; plan.values.len()];
    for v in plan.steps.iter().flat_map(|s| &s.inputs).chain([&plan.output]) {
        if let Some(c) = count.get_mut(*v) {
            *c = c.saturating_add(1);
        }
    }
    count
}

/// The step computing `v`, if `v` is read once (by the step being folded) and
/// is not the output.
fn sole_producer(plan: &Plan, readers: &[usize], v: ValueId) -> Option<usize> {
    match plan.values.get(v)?.source {
        Source::Step(j) if readers.get(v) == Some(&1) => Some(j),
        _ => None,
    }
}

/// A binary step of a private value and a weight: (the private value, the weight).
fn private_and_weight(plan: &Plan, step: &Step) -> Option<(ValueId, ValueId)> {
    match *step.inputs.as_slice() {
        [a, b] if is_weight(plan, b) && !is_weight(plan, a) => Some((a, b)),
        [a, b] if is_weight(plan, a) && !is_weight(plan, b) => Some((b, a)),
        _ => None,
    }
}

/// The per-channel values of weight `t` as it broadcasts onto a value of `shape`
/// whose channels are `axis`: `None` if it varies along another axis or would
/// grow the shape (more axes, or a larger size on one).
fn per_channel(t: &ArrayD<f32>, shape: &[usize], axis: usize) -> Option<Vec<f32>> {
    let channels = *shape.get(axis)?;
    let offset = shape.len().checked_sub(t.ndim())?;
    for (i, &d) in t.shape().iter().enumerate() {
        let a = i.checked_add(offset)?;
        if d != 1 && !(a == axis && d == channels) {
            return None;
        }
    }
    match t.len() {
        1 => Some(vec![t.iter().copied().next()?; channels]),
        n if n == channels => Some(t.iter().copied().collect()),
        _ => None,
    }
}

/// The shape of a per-channel constant for a value of rank `rank` with channels
/// at `axis`: `[c, 1, …, 1]`, the trailing ones for the axes after the channels.
fn channel_shape(channels: usize, rank: usize, axis: usize) -> Vec<usize> {
    let mut shape = vec![channels];
    shape.extend(std::iter::repeat_n(1, rank.saturating_sub(axis).saturating_sub(1)));
    shape
}

/// Mul step `k` of a linear op's output (or of its bias Add's) by a per-channel
/// weight: the filter (and bias) scaled into new weights; the private input
/// that step `k`'s readers are to read instead. `None` (and nothing changed) if
/// it does not fold.
fn fold_scale(plan: &mut Plan, readers: &[usize], k: usize) -> Option<ValueId> {
    let step = plan.steps.get(k)?;
    if step.op != Op::Mul {
        return None;
    }
    let (v, s) = private_and_weight(plan, step)?;
    let j = sole_producer(plan, readers, v)?;
    let producer = plan.steps.get(j)?;
    // The linear op, and the bias Add between it and the Mul if there is one.
    let (lin, bias) = match linear(plan, producer) {
        Some(_) => (j, None),
        None => {
            let (w, b) = (producer.op == Op::Add).then(|| private_and_weight(plan, producer)).flatten()?;
            match sole_producer(plan, readers, w) {
                Some(i) if plan.steps.get(i).and_then(|s| linear(plan, s)).is_some() => (i, Some((j, b))),
                _ => return None,
            }
        }
    };
    let lin_step = plan.steps.get(lin)?;
    let Linear { channel_axis, inner } = linear(plan, lin_step)?;
    let (filter, lin_out) = (lin_step.inputs.get(1).copied(), lin_step.output);
    let shape_of = |v: ValueId| plan.values.get(v).map(|v| v.shape.clone());
    let (Some(filter), Some(out_shape), Some(v_shape), Some(mul_shape)) =
        (filter, shape_of(lin_out), shape_of(v), shape_of(step.output))
    else {
        return None;
    };
    // Neither the bias Add nor the Mul may broadcast the linear op's output to a
    // larger shape.
    if v_shape != out_shape || mul_shape != out_shape {
        return None;
    }
    let weight = |w: ValueId| plan.weight_values.get(&w);
    let scale = weight(s).and_then(|t| per_channel(t, &out_shape, channel_axis))?;
    let scaled_filter = weight(filter).and_then(|f| scale_channels(f, &scale, inner))?;
    let scaled_bias = match bias {
        None => None,
        Some((_, b)) => {
            let b = weight(b).and_then(|t| per_channel(t, &out_shape, channel_axis))?;
            let values: Vec<f32> = b.iter().zip(&scale).map(|(b, s)| b * s).collect();
            let shape = channel_shape(values.len(), out_shape.len(), channel_axis);
            match ArrayD::from_shape_vec(shape, values) {
                Ok(a) if a.iter().all(|x| x.is_finite()) => Some(a),
                _ => return None,
            }
        }
    };
    let scale_name = plan.values.get(s).map(|v| v.name.clone()).unwrap_or_default();
    let new_filter = push_weight(plan, filter, &scale_name, scaled_filter);
    if let Some(input) = plan.steps.get_mut(lin).and_then(|s| s.inputs.get_mut(1)) {
        *input = new_filter;
    }
    if let (Some((add, b)), Some(values)) = (bias, scaled_bias) {
        let new_bias = push_weight(plan, b, &scale_name, values);
        if let Some(step) = plan.steps.get_mut(add) {
            for input in step.inputs.iter_mut().filter(|i| **i == b) {
                *input = new_bias;
            }
        }
    }
    Some(v)
}

/// Add step `k` of a weight to the output of an Add of a weight (read by nothing
/// else): the first Add takes the sum of both; its output is what step `k`'s
/// readers are to read instead. `None` (and nothing changed) if it does not fold.
fn fold_offset(plan: &mut Plan, readers: &[usize], k: usize) -> Option<ValueId> {
    let step = plan.steps.get(k)?;
    if step.op != Op::Add {
        return None;
    }
    let (v, b2) = private_and_weight(plan, step)?;
    let j = sole_producer(plan, readers, v)?;
    let first = plan.steps.get(j).filter(|s| s.op == Op::Add)?;
    let (y, b1) = private_and_weight(plan, first)?;
    let shape_of = |v: ValueId| plan.values.get(v).map(|v| v.shape.as_slice());
    // Neither Add may broadcast the private value to a larger shape, and the
    // sum may not be larger than the larger of the two.
    let (Some(y_shape), Some(v_shape), Some(out_shape)) = (shape_of(y), shape_of(v), shape_of(step.output)) else {
        return None;
    };
    if y_shape != v_shape || y_shape != out_shape {
        return None;
    }
    let (a, b) = (plan.weight_values.get(&b1)?, plan.weight_values.get(&b2)?);
    let sum = broadcast_sum(a, b)?;
    if sum.len() > a.len().max(b.len()) || !sum.iter().all(|x| x.is_finite()) {
        return None;
    }
    let b2_name = plan.values.get(b2).map(|v| v.name.clone()).unwrap_or_default();
    let new_bias = push_weight(plan, b1, &b2_name, sum);
    if let Some(step) = plan.steps.get_mut(j) {
        for input in step.inputs.iter_mut().filter(|i| **i == b1) {
            *input = new_bias;
        }
    }
    Some(v)
}

fn broadcast_sum(a: &ArrayD<f32>, b: &ArrayD<f32>) -> Option<ArrayD<f32>> {
    let shape = crate::plan::broadcast_shape(a.shape(), b.shape()).ok()?;
    let (a, b) = (a.broadcast(shape.as_slice())?, b.broadcast(shape.as_slice())?);
    #[allow(clippy::arithmetic_side_effects)] // f32 addition of two views of one shape
    Some(&a + &b)
}

/// `f` with each element multiplied by the scale of its channel, `(i / inner) %
/// channels` for flat index `i` (see [`Linear`]); `None` if the filter does not
/// have these channels or an element leaves f32.
fn scale_channels(f: &ArrayD<f32>, scale: &[f32], inner: usize) -> Option<ArrayD<f32>> {
    let channels = scale.len();
    let block = channels.checked_mul(inner).filter(|&b| b > 0)?;
    if !f.len().is_multiple_of(block) {
        return None;
    }
    let f = f.as_standard_layout();
    let values: Vec<f32> = f
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = i.checked_div(inner).and_then(|q| q.checked_rem(channels)).unwrap_or(0);
            x * scale.get(c).copied().unwrap_or(f32::NAN)
        })
        .collect();
    if !values.iter().all(|x| x.is_finite()) {
        return None;
    }
    ArrayD::from_shape_vec(f.shape(), values).ok()
}

/// A new weight replacing `old` (which other steps may still read), named after
/// both constants it comes from.
fn push_weight(plan: &mut Plan, old: ValueId, with: &str, values: ArrayD<f32>) -> ValueId {
    let name = plan.values.get(old).map(|v| format!("{} (folded with {with})", v.name)).unwrap_or_default();
    let value = Value {
        name,
        shape: values.shape().to_vec(),
        vtype: crate::plan::ValueType::Float,
        source: Source::Weight,
    };
    plan.values.push(value);
    let id = plan.values.len().saturating_sub(1);
    plan.weight_values.insert(id, values);
    id
}

/// Drop the removed steps, their outputs and the weights nothing reads any more,
/// and number what is left in order.
fn compact(plan: &mut Plan, removed: &[bool]) {
    let mut step_ids = BTreeMap::new();
    for (k, _) in removed.iter().enumerate().filter(|(_, r)| !**r) {
        step_ids.insert(k, step_ids.len());
    }
    let read: BTreeSet<ValueId> = plan
        .steps
        .iter()
        .zip(removed)
        .filter(|(_, r)| !**r)
        .flat_map(|(s, _)| s.inputs.iter().copied())
        .chain([plan.output])
        .collect();
    let keep = |id: ValueId, v: &Value| match v.source {
        Source::Input { .. } => true,
        Source::Weight => read.contains(&id),
        Source::Step(j) => step_ids.contains_key(&j),
    };
    let mut value_ids = BTreeMap::new();
    let mut values = Vec::new();
    for (id, v) in plan.values.iter().enumerate() {
        if keep(id, v) {
            value_ids.insert(id, values.len());
            let mut v = v.clone();
            if let Source::Step(j) = v.source {
                v.source = Source::Step(step_ids.get(&j).copied().unwrap_or(j));
            }
            values.push(v);
        }
    }
    let renumber = |id: &ValueId| value_ids.get(id).copied().unwrap_or(*id);
    let steps = std::mem::take(&mut plan.steps)
        .into_iter()
        .zip(removed)
        .filter(|(_, r)| !**r)
        .map(|(mut s, _)| {
            s.inputs = s.inputs.iter().map(renumber).collect();
            s.output = renumber(&s.output);
            s
        })
        .collect();
    plan.weight_values = std::mem::take(&mut plan.weight_values)
        .into_iter()
        .filter_map(|(id, w)| Some((*value_ids.get(&id)?, w)))
        .collect();
    plan.inputs = plan.inputs.iter().map(renumber).collect();
    plan.output = renumber(&plan.output);
    plan.values = values;
    plan.steps = steps;
}
