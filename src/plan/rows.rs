//! Which plans keep the rows of their batch apart.
//!
//! A plan is built for a batch of `B` rows. A file of another number of rows
//! runs in batches of `B`, the last one filled up with copies of a real row.
//! That is only the same prediction when every output row depends on its own
//! input row alone: a model that takes a mean over the batch, or reshapes rows
//! into each other, would give other answers for the real rows once the filler
//! rows are beside them. This module decides it from the plan, conservatively:
//! an op whose rule is not known here mixes rows.
//!
//! A value *carries rows* when it depends on an input. Such a value has a first
//! axis of `k·B` entries, and entry `i` depends on input row `i mod B` only
//! (`k` is 1 except between SpaceToBatch and BatchToSpace, which move blocks of
//! the image into the batch axis and back).

use super::{Op, Plan, Source};

/// How an op treats the first axis of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowRule {
    /// Element-wise with broadcasting: an input that carries rows must have the
    /// output's rank and first axis.
    Elementwise,
    /// The first axis is a batch axis of the inputs listed (and of the output):
    /// convolutions and pools for their input, not their filter. Another input
    /// that carries rows mixes them.
    Batch(Vec<usize>),
    /// Blocks of the image move into the batch axis or out of it (SpaceToBatch,
    /// BatchToSpace): entry `i` of the output comes from entries congruent to it
    /// modulo the smaller of the two first axes.
    Interleave,
    /// The rows of the batch are combined (or the op's rule is not known).
    Mixes,
}

impl Op {
    /// How this op treats the first axis, for inputs of these shapes.
    pub fn rows(&self, ins: &[&[usize]]) -> RowRule {
        let first = RowRule::Batch(vec![0]);
        let rank = ins.first().map_or(0, |s| s.len());
        match self {
            Op::Add | Op::Sub | Op::Mul | Op::Neg | Op::Relu | Op::Sigmoid | Op::Tanh | Op::Rsqrt => {
                RowRule::Elementwise
            }
            Op::CastToFloat | Op::CastToInt => RowRule::Elementwise,
            // A 2-D product: x's rows are the output's unless x is transposed;
            // y's first axis is contracted (or, transposed, becomes the columns).
            Op::MatMul { transpose_a: false, .. } => first,
            Op::Conv2D(_) | Op::AvgPool(_) | Op::MaxPool(_) => first,
            Op::Sum { axes, .. } | Op::Mean { axes, .. } | Op::Max { axes, .. } if !axes.contains(&0) => first,
            Op::ArgMax { axis } if *axis != 0 => first,
            // Over the last axis, which is the batch axis of a vector.
            Op::Softmax if rank >= 2 => first,
            // Row-major: a reshape that keeps the first axis keeps each row's elements in its row.
            Op::Reshape(_) => first,
            Op::Transpose(perm) if perm.first() == Some(&0) => first,
            Op::Pad(pads) if pads.first() == Some(&[0, 0]) => first,
            Op::Concat { axis } if *axis != 0 => RowRule::Batch((0..ins.len()).collect()),
            Op::StridedSlice { axes, .. }
                if axes.first().is_some_and(|s| {
                    s.start == 0 && s.step == 1 && Some(s.count) == ins.first().and_then(|x| x.first().copied())
                }) =>
            {
                first
            }
            Op::Gather { axis, .. } if *axis != 0 => first,
            Op::SpaceToBatch { .. } | Op::BatchToSpace { .. } => RowRule::Interleave,
            Op::Unit(u) => u.def().rows(ins),
            _ => RowRule::Mixes,
        }
    }
}

/// Why the plan's output rows do not each depend on their own input row alone
/// (naming the first step that mixes them), or `Ok` when they do. `batch` is
/// the plan's batch `B`, the first axis of its inputs.
pub fn independent(plan: &Plan, batch: usize) -> Result<(), String> {
    let multiple = |n: usize| batch > 0 && n.is_multiple_of(batch);
    // The first axis of each value that carries rows.
    let mut carries: Vec<Option<usize>> = vec![None; plan.values.len()];
    for &id in &plan.inputs {
        let Some(v) = plan.values.get(id) else { return Err(format!("input %{id} is not in the plan")) };
        match v.shape.first() {
            Some(&n) if n == batch => {
                if let Some(c) = carries.get_mut(id) {
                    *c = Some(n);
                }
            }
            _ => return Err(format!("input `{}` of shape {:?} has no batch of {batch} rows", v.name, v.shape)),
        }
    }
    for step in &plan.steps {
        let rows: Vec<Option<usize>> = step.inputs.iter().map(|&i| carries.get(i).copied().flatten()).collect();
        if rows.iter().all(Option::is_none) {
            continue;
        }
        let shapes: Vec<&[usize]> =
            step.inputs.iter().filter_map(|&i| plan.values.get(i)).map(|v| v.shape.as_slice()).collect();
        let Some(out) = plan.values.get(step.output) else { return Err(format!("step `{}` has no output", step.node)) };
        let out_first = out.shape.first().copied();
        let mixes = |why: &str| format!("{} `{}` {why}", step.op_type, step.node);
        let kept = match step.op.rows(&shapes) {
            RowRule::Elementwise => {
                rows.iter().zip(&shapes).all(|(r, s)| r.is_none() || (s.len() == out.shape.len() && *r == out_first))
            }
            RowRule::Batch(batched) => {
                rows.iter().enumerate().all(|(k, r)| r.is_none() || (batched.contains(&k) && *r == out_first))
            }
            RowRule::Interleave => rows.iter().all(|r| r.is_none_or(multiple)) && out_first.is_some_and(multiple),
            RowRule::Mixes => false,
        };
        if !kept {
            return Err(mixes("combines the rows of the batch"));
        }
        if let Some(c) = carries.get_mut(step.output) {
            *c = out_first;
        }
    }
    match plan.values.get(plan.output).map(|v| (&v.source, v.shape.first().copied())) {
        Some((Source::Step(_) | Source::Input { .. }, Some(n)))
            if carries.get(plan.output).copied().flatten() == Some(n) && n == batch =>
        {
            Ok(())
        }
        Some((_, first)) => Err(format!(
            "the output `{}` does not have one row per input row (first axis {first:?}, batch {batch})",
            plan.output_node
        )),
        None => Err("the plan has no output".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Step, Value};
    use std::collections::BTreeMap;

    /// x [4, 3] → `op` with weight w → output; a plan of one step.
    fn one_step(op: Op, w: &[usize], out: &[usize]) -> Plan {
        let values = vec![
            Value::float("x", &[4, 3], Source::Input { placeholder: "x".into() }),
            Value::float("w", w, Source::Weight),
            Value::float("y", out, Source::Step(0)),
        ];
        let step = Step { node: "y".into(), op_type: format!("{op:?}"), op, inputs: vec![0, 1], output: 2 };
        Plan {
            values,
            steps: vec![step],
            inputs: vec![0],
            output: 2,
            output_node: "y".into(),
            weight_values: BTreeMap::new(),
        }
    }

    #[test]
    fn row_wise_ops_keep_rows_and_batch_reductions_mix_them() {
        assert_eq!(independent(&one_step(Op::Add, &[3], &[4, 3]), 4), Ok(()));
        // A weight with a row per batch entry is still each row's own.
        assert_eq!(independent(&one_step(Op::Mul, &[4, 3], &[4, 3]), 4), Ok(()));
        let matmul = Op::MatMul { transpose_a: false, transpose_b: false };
        assert_eq!(independent(&one_step(matmul, &[3, 2], &[4, 2]), 4), Ok(()));
        let transposed = Op::MatMul { transpose_a: true, transpose_b: false };
        assert!(independent(&one_step(transposed, &[4, 2], &[3, 2]), 4).unwrap_err().contains("combines the rows"));
        let mut mean = one_step(Op::Mean { axes: vec![0], keep_dims: true }, &[1], &[1, 3]);
        mean.steps[0].inputs = vec![0];
        assert!(independent(&mean, 4).is_err());
        let mut sum = one_step(Op::Sum { axes: vec![1], keep_dims: false }, &[1], &[4]);
        sum.steps[0].inputs = vec![0];
        assert_eq!(independent(&sum, 4), Ok(()));
    }

    #[test]
    fn a_reshape_or_transpose_that_moves_the_batch_axis_mixes_rows() {
        let mut keep = one_step(Op::Reshape(vec![4, 3, 1]), &[1], &[4, 3, 1]);
        keep.steps[0].inputs = vec![0];
        assert_eq!(independent(&keep, 4), Ok(()));
        let mut fold = one_step(Op::Reshape(vec![2, 6]), &[1], &[2, 6]);
        fold.steps[0].inputs = vec![0];
        assert!(independent(&fold, 4).is_err());
        let mut swap = one_step(Op::Transpose(vec![1, 0]), &[1], &[3, 4]);
        swap.steps[0].inputs = vec![0];
        assert!(independent(&swap, 4).is_err());
    }

    #[test]
    fn a_broadcast_that_lines_the_batch_up_with_another_axis_mixes_rows() {
        // x [4, 3] + w [4, 1, 3] → [4, 4, 3]: x's rows lie along axis 1.
        assert!(independent(&one_step(Op::Add, &[4, 1, 3], &[4, 4, 3]), 4).is_err());
    }

    #[test]
    fn the_output_must_have_the_batch_first() {
        let mut plan = one_step(Op::Sum { axes: vec![1], keep_dims: false }, &[1], &[4]);
        plan.steps[0].inputs = vec![0];
        assert_eq!(independent(&plan, 4), Ok(()));
        assert!(independent(&plan, 2).is_err(), "an input without the batch is refused");
    }
}
