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
        Op::Unit(Unit::DepthwiseConv2D(d)) => Some(Linear {
            channel_axis: match d.window.layout {
                Layout::Nhwc => 3,
                Layout::Nchw => 1,
            },
            inner: 1,
        }),
        _ => None,
    }
}

fn is_weight(plan: &Plan, v: ValueId) -> bool {
    plan.values.get(v).is_some_and(|v| matches!(v.source, Source::Weight))
}

/// How many times steps read each value, plus one for the plan's output.
pub(super) fn readers(plan: &Plan) -> Vec<usize> {
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
pub(super) fn sole_producer(plan: &Plan, readers: &[usize], v: ValueId) -> Option<usize> {
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
    let value =
        Value { name, shape: values.shape().to_vec(), vtype: crate::plan::ValueType::Float, source: Source::Weight };
    plan.values.push(value);
    let id = plan.values.len().saturating_sub(1);
    plan.weight_values.insert(id, values);
    id
}

/// Drop the removed steps, their outputs and the weights nothing reads any more,
/// and number what is left in order.
pub(super) fn compact(plan: &mut Plan, removed: &[bool]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Padding, Window};

    fn array(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(shape, (0..n).map(f).collect()).unwrap()
    }

    /// A plan over client input `x` of `input`; each step is (op, inputs, output
    /// shape) where input `w:i` is weight `i` of `weights`, `s:k` step k's output.
    fn plan(input: &[usize], weights: &[ArrayD<f32>], steps: &[(Op, &[&str], &[usize])]) -> Plan {
        let value = |name: String, shape: &[usize], source| Value::float(name, shape, source);
        let mut values = vec![value("x".into(), input, Source::Input { placeholder: "x".into() })];
        let mut weight_values = BTreeMap::new();
        for (i, w) in weights.iter().enumerate() {
            values.push(value(format!("w{i}"), w.shape(), Source::Weight));
            weight_values.insert(i + 1, w.clone());
        }
        let mut plan_steps = Vec::new();
        for (k, (op, ins, shape)) in steps.iter().enumerate() {
            let inputs = ins
                .iter()
                .map(|s| match s.split_once(':') {
                    Some(("w", i)) => i.parse::<usize>().unwrap() + 1,
                    Some(("s", k)) => weights.len() + 1 + k.parse::<usize>().unwrap(),
                    _ => 0,
                })
                .collect();
            values.push(value(format!("s{k}"), shape, Source::Step(k)));
            plan_steps.push(Step {
                node: format!("s{k}"),
                op_type: op.name().into(),
                op: op.clone(),
                inputs,
                output: values.len() - 1,
            });
        }
        Plan {
            output: values.len() - 1,
            values,
            steps: plan_steps,
            inputs: vec![0],
            output_node: "out".into(),
            weight_values,
        }
    }

    /// Folded, the plan computes what it computed (to f32 rounding), is
    /// consistent, and has the steps of `ops` left.
    fn folds_to(mut p: Plan, x: &ArrayD<f32>, ops: &[&str]) {
        let feeds = BTreeMap::from([("x".to_string(), x.clone())]);
        let before = crate::plaintext::run(&p, &feeds).unwrap().to_float();
        fold_channel_constants(&mut p);
        p.check_consistent().unwrap();
        assert_eq!(p.steps.iter().map(|s| s.op.name()).collect::<Vec<_>>(), ops, "{}", p.describe());
        // Every weight is read, and every weight value belongs to a weight.
        for (id, v) in p.weights() {
            assert!(p.steps.iter().any(|s| s.inputs.contains(&id)), "weight %{id} {} is read by nothing", v.name);
            assert!(p.weight_values.contains_key(&id));
        }
        assert_eq!(p.weight_values.len(), p.weights().count());
        let after = crate::plaintext::run(&p, &feeds).unwrap().to_float();
        assert_eq!(before.shape(), after.shape());
        for (a, b) in before.iter().zip(after.iter()) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{before} vs {after}");
        }
    }

    fn window(layout: Layout) -> Window {
        Window { kernel: [1, 1], strides: [1, 1], dilations: [1, 1], padding: Padding::Same, layout }
    }

    fn x(shape: &[usize]) -> ArrayD<f32> {
        array(shape, |i| ((i * 7) % 11) as f32 - 5.0)
    }

    #[test]
    fn an_nchw_conv_folds_a_scale_of_shape_c_1_1_along_axis_1() {
        let (f, s, b) = (
            array(&[3, 3, 2, 4], |i| i as f32 * 0.1 - 1.0),
            array(&[4, 1, 1], |i| i as f32 - 1.5),
            array(&[4, 1, 1], |i| i as f32),
        );
        let w = Window { kernel: [3, 3], ..window(Layout::Nchw) };
        let p = plan(
            &[1, 2, 5, 5],
            &[f, s, b],
            &[
                (Op::Conv2D(w), &["x", "w:0"], &[1, 4, 5, 5]),
                (Op::Mul, &["w:1", "s:0"], &[1, 4, 5, 5]),
                (Op::Add, &["s:1", "w:2"], &[1, 4, 5, 5]),
            ],
        );
        folds_to(p, &x(&[1, 2, 5, 5]), &["Conv2D", "Add"]);
    }

    #[test]
    fn a_scale_along_the_nhwc_channel_axis_of_an_nchw_conv_does_not_fold() {
        // [4] broadcasts along the last axis: the width of an NCHW output.
        let p = plan(
            &[1, 2, 4, 4],
            &[array(&[1, 1, 2, 3], |i| i as f32 - 2.0), array(&[4], |i| i as f32 + 0.5)],
            &[
                (Op::Conv2D(window(Layout::Nchw)), &["x", "w:0"], &[1, 3, 4, 4]),
                (Op::Mul, &["s:0", "w:1"], &[1, 3, 4, 4]),
            ],
        );
        folds_to(p, &x(&[1, 2, 4, 4]), &["Conv2D", "Mul"]);
    }

    #[test]
    fn a_depthwise_scale_is_per_channel_times_multiplier() {
        let p = plan(
            &[1, 4, 4, 3],
            &[
                array(&[1, 1, 3, 2], |i| i as f32 - 2.5),
                array(&[6], |i| i as f32 * 0.5 - 1.0),
                array(&[6], |i| i as f32),
            ],
            &[
                (crate::ops::DepthwiseConv2D { window: window(Layout::Nhwc) }.into(), &["x", "w:0"], &[1, 4, 4, 6]),
                (Op::Add, &["s:0", "w:2"], &[1, 4, 4, 6]),
                (Op::Mul, &["s:1", "w:1"], &[1, 4, 4, 6]),
            ],
        );
        folds_to(p, &x(&[1, 4, 4, 3]), &["DepthwiseConv2D", "Add"]);
    }

    #[test]
    fn an_nchw_depthwise_scale_folds_along_axis_1() {
        let p = plan(
            &[1, 3, 4, 4],
            &[
                array(&[1, 1, 3, 2], |i| i as f32 - 2.5),
                array(&[6, 1, 1], |i| i as f32 * 0.5 - 1.0),
                array(&[6, 1, 1], |i| i as f32),
            ],
            &[
                (crate::ops::DepthwiseConv2D { window: window(Layout::Nchw) }.into(), &["x", "w:0"], &[1, 6, 4, 4]),
                (Op::Mul, &["s:0", "w:1"], &[1, 6, 4, 4]),
                (Op::Add, &["s:1", "w:2"], &[1, 6, 4, 4]),
            ],
        );
        folds_to(p, &x(&[1, 3, 4, 4]), &["DepthwiseConv2D", "Add"]);
    }

    #[test]
    fn matmul_folds_along_its_columns_with_and_without_transpose_b() {
        for transpose_b in [false, true] {
            let f = if transpose_b { array(&[3, 5], |i| i as f32 - 7.0) } else { array(&[5, 3], |i| i as f32 - 7.0) };
            let p = plan(
                &[2, 5],
                &[f, array(&[3], |i| i as f32 + 2.0)],
                &[
                    (Op::MatMul { transpose_a: false, transpose_b }, &["x", "w:0"], &[2, 3]),
                    (Op::Mul, &["s:0", "w:1"], &[2, 3]),
                ],
            );
            folds_to(p, &x(&[2, 5]), &["MatMul"]);
        }
    }

    #[test]
    fn what_does_not_fold_is_left_as_it_was() {
        let f = || array(&[3, 4], |i| i as f32 - 5.0);
        let mm = || Op::MatMul { transpose_a: false, transpose_b: false };
        // A scale along the rows (the batch), one that grows the rank, a value
        // read twice, a bias Add read twice, the linear op's weight as the left operand.
        let cases: Vec<(Plan, Vec<&str>)> = vec![
            (
                plan(
                    &[2, 3],
                    &[f(), array(&[2, 1], |i| i as f32 + 1.0)],
                    &[(mm(), &["x", "w:0"], &[2, 4]), (Op::Mul, &["s:0", "w:1"], &[2, 4])],
                ),
                vec!["MatMul", "Mul"],
            ),
            (
                plan(
                    &[2, 3],
                    &[f(), array(&[1, 1, 4], |i| i as f32 + 1.0)],
                    &[
                        (mm(), &["x", "w:0"], &[2, 4]),
                        (Op::Mul, &["s:0", "w:1"], &[1, 2, 4]),
                        (Op::Reshape(vec![2, 4]), &["s:1"], &[2, 4]),
                    ],
                ),
                vec!["MatMul", "Mul", "Reshape"],
            ),
            (
                plan(
                    &[2, 3],
                    &[f(), array(&[4], |i| i as f32 + 1.0)],
                    &[
                        (mm(), &["x", "w:0"], &[2, 4]),
                        (Op::Mul, &["s:0", "w:1"], &[2, 4]),
                        (Op::Add, &["s:1", "s:0"], &[2, 4]),
                    ],
                ),
                vec!["MatMul", "Mul", "Add"],
            ),
            (
                plan(
                    &[2, 3],
                    &[f(), array(&[4], |i| i as f32 + 1.0), array(&[4], |i| i as f32)],
                    &[
                        (mm(), &["x", "w:0"], &[2, 4]),
                        (Op::Add, &["s:0", "w:2"], &[2, 4]),
                        (Op::Mul, &["s:1", "w:1"], &[2, 4]),
                        (Op::Sub, &["s:2", "s:1"], &[2, 4]),
                    ],
                ),
                vec!["MatMul", "Add", "Mul", "Sub"],
            ),
            (
                plan(
                    &[3, 2],
                    &[array(&[4, 3], |i| i as f32), array(&[2], |i| i as f32 + 1.0)],
                    &[(mm(), &["w:0", "x"], &[4, 2]), (Op::Mul, &["s:0", "w:1"], &[4, 2])],
                ),
                vec!["MatMul", "Mul"],
            ),
        ];
        for (p, ops) in cases {
            let x = x(&p.values[0].shape);
            folds_to(p, &x, &ops);
        }
    }

    #[test]
    fn chained_scales_and_offsets_fold_into_one_filter_and_one_bias() {
        // MatMul → + b0 → · s (scalar) → · t (per column) → + c: one MatMul and one Add,
        // and the plan's output is the Add's.
        let p = plan(
            &[2, 3],
            &[
                array(&[3, 4], |i| i as f32 - 5.0),
                array(&[4], |i| i as f32),
                array(&[], |_| -0.5),
                array(&[1, 4], |i| i as f32 + 1.0),
                array(&[4], |i| 2.0 - i as f32),
            ],
            &[
                (Op::MatMul { transpose_a: false, transpose_b: false }, &["x", "w:0"], &[2, 4]),
                (Op::Add, &["s:0", "w:1"], &[2, 4]),
                (Op::Mul, &["w:2", "s:1"], &[2, 4]),
                (Op::Mul, &["s:2", "w:3"], &[2, 4]),
                (Op::Add, &["w:4", "s:3"], &[2, 4]),
            ],
        );
        folds_to(p, &x(&[2, 3]), &["MatMul", "Add"]);
    }

    /// The folded weights replace the old ones only where the fold is: a filter
    /// another step also reads keeps its values there.
    #[test]
    fn a_filter_shared_with_another_step_is_not_changed_for_it() {
        let p = plan(
            &[2, 3],
            &[array(&[3, 4], |i| i as f32 - 5.0), array(&[4], |i| i as f32 + 1.0)],
            &[
                (Op::MatMul { transpose_a: false, transpose_b: false }, &["x", "w:0"], &[2, 4]),
                (Op::Mul, &["s:0", "w:1"], &[2, 4]),
                (Op::MatMul { transpose_a: false, transpose_b: false }, &["x", "w:0"], &[2, 4]),
                (Op::Add, &["s:1", "s:2"], &[2, 4]),
            ],
        );
        folds_to(p, &x(&[2, 3]), &["MatMul", "MatMul", "Add"]);
    }

    #[test]
    fn per_channel_refuses_other_axes_and_larger_shapes() {
        let shape = [1, 2, 2, 3];
        assert_eq!(per_channel(&array(&[3], |i| i as f32), &shape, 3), Some(vec![0.0, 1.0, 2.0]));
        assert_eq!(per_channel(&array(&[1, 1, 1, 3], |i| i as f32), &shape, 3), Some(vec![0.0, 1.0, 2.0]));
        assert_eq!(per_channel(&array(&[], |_| 2.0), &shape, 3), Some(vec![2.0; 3]));
        assert_eq!(per_channel(&array(&[1], |_| 2.0), &shape, 3), Some(vec![2.0; 3]));
        assert_eq!(per_channel(&array(&[2, 1, 3], |i| i as f32), &shape, 3), None, "varies along the rows");
        assert_eq!(per_channel(&array(&[1, 1, 1, 1, 3], |i| i as f32), &shape, 3), None, "rank 5");
        assert_eq!(per_channel(&array(&[2], |i| i as f32), &shape, 3), None, "does not broadcast");
    }
}
