//! Running a file of rows through a plan of a fixed batch: cut it into batches,
//! fill up the last one, join the outputs. `tfe-run` does this for a model whose
//! placeholder fixes the batch, `predict` for every deployed model.
//!
//! Filling up is only sound when each output row depends on its own input row
//! alone ([`plan::independent`]); otherwise the filler rows would change the
//! real rows' answers. Such a plan runs only whole batches, and only where the
//! batch is the model's own (a placeholder's fixed batch): a batch chosen at
//! `deploy` would split rows that the model combines.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ndarray::{ArrayD, Axis, Slice};

use crate::error::Error;
use crate::plan::{self, Plan, Source};
use crate::tensor::Tensor;

/// One prediction's inputs, by placeholder.
pub type Feeds = BTreeMap<String, ArrayD<f32>>;

/// May a plan whose rows are not independent run several whole batches?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeBatches {
    /// Yes: the batch is the model's own, each batch one call of the model.
    Allowed,
    /// No: the batch was chosen for the deployment; the rows must be one batch.
    Refused,
}

/// The inputs cut into batches of the plan's rows, and how many rows are real.
#[derive(Debug)]
pub struct Batches {
    pub feeds: Vec<Feeds>,
    pub rows: usize,
}

/// Cut `inputs` (every placeholder of the plan, with the same number of rows)
/// into batches of the plan's batch. Inputs that do not fit the plan are the
/// user's to fix (exit 2).
pub fn split(plan: &Plan, inputs: &Feeds, whole: WholeBatches) -> Result<Batches> {
    let mut rows = None;
    let mut batch = None;
    let mut fed = Vec::new();
    for &id in &plan.inputs {
        let value = &plan.values[id];
        let Source::Input { placeholder } = &value.source else { continue };
        let x = inputs
            .get(placeholder)
            .ok_or_else(|| Error::bad_input(format!("the model needs an input for placeholder `{placeholder}`")))?;
        if value.shape.is_empty() || x.ndim() != value.shape.len() || x.shape()[1..] != value.shape[1..] {
            return Err(Error::bad_input(format!(
                "the input for `{placeholder}` has shape {:?}; the model takes rows of shape {:?}",
                x.shape(),
                value.shape.get(1..).unwrap_or_default()
            )));
        }
        let (b, n) = (value.shape[0], x.shape()[0]);
        fed.push((placeholder, x));
        if *rows.get_or_insert(n) != n || *batch.get_or_insert(b) != b {
            return Err(Error::bad_input(format!(
                "the inputs cannot be cut into the same batches: placeholder `{placeholder}` is planned for {b} rows \
                 and fed {n}; feed every placeholder the same number of rows"
            )));
        }
    }
    let (Some(rows), Some(batch)) = (rows, batch) else {
        return Ok(Batches { feeds: vec![inputs.clone()], rows: 0 });
    };
    if rows == 0 {
        return Err(Error::bad_input("the input has no rows"));
    }
    if batch == 0 {
        return Err(Error::bad_input("the model is planned for a batch of 0 rows"));
    }
    if rows == batch {
        return Ok(Batches { feeds: vec![inputs.clone()], rows });
    }
    if let Err(why) = plan::independent(plan, batch) {
        let advice = match whole {
            WholeBatches::Allowed if rows % batch == 0 => None,
            WholeBatches::Allowed => Some(format!("give a whole number of batches of {batch} rows")),
            WholeBatches::Refused => {
                Some(format!("give exactly {batch} rows, or deploy it with --batch-size {rows} for {rows} rows"))
            }
        };
        if let Some(advice) = advice {
            return Err(Error::bad_input(format!(
                "{rows} rows cannot run in batches of {batch}: the model's rows are not independent ({why}), so \
                 filling up or cutting the batch would change the answers; {advice}"
            )));
        }
    }
    let mut feeds = Vec::with_capacity(rows.div_ceil(batch));
    for k in 0..rows.div_ceil(batch) {
        let real = Slice::from(k * batch..((k + 1) * batch).min(rows));
        let mut feed = Feeds::new();
        for &(name, x) in &fed {
            let part = x.slice_axis(Axis(0), real);
            let n = part.len_of(Axis(0));
            // The filler rows repeat the last real row: values the model is
            // known to take (zeros could meet a reciprocal, a log, a range
            // check), and the client's own, so nothing new is shared.
            let mut views = vec![part.view()];
            views.extend(std::iter::repeat_n(part.slice_axis(Axis(0), Slice::from(n - 1..)), batch - n));
            feed.insert(name.clone(), ndarray::concatenate(Axis(0), &views)?);
        }
        feeds.push(feed);
    }
    Ok(Batches { feeds, rows })
}

/// The outputs of the batches as one tensor of the first `rows` rows: the
/// output must have the batch as its first axis, or its rows are not the
/// input's rows.
pub fn join(plan: &Plan, outputs: Vec<Tensor>, rows: usize) -> Result<Tensor> {
    let batch = plan.inputs.first().and_then(|&id| plan.values[id].shape.first().copied());
    if outputs.len() == 1 && batch.is_none_or(|b| b == rows) {
        return outputs.into_iter().next().context("no output");
    }
    if plan.output_value().shape.first().copied() != batch {
        return Err(Error::unsupported(format!(
            "output `{}` of shape {:?} does not have the batch as its first axis, so the input cannot be run in \
             batches of the model's batch {}; give exactly that many rows",
            plan.output_node,
            plan.output_value().shape,
            batch.unwrap_or(0)
        )));
    }
    let keep = Slice::from(0..rows);
    if outputs.iter().all(|t| matches!(t, Tensor::Int(_))) {
        let parts: Vec<_> =
            outputs.iter().filter_map(|t| if let Tensor::Int(a) = t { Some(a.view()) } else { None }).collect();
        Ok(Tensor::Int(ndarray::concatenate(Axis(0), &parts)?.slice_axis(Axis(0), keep).to_owned()))
    } else {
        let parts: Vec<ArrayD<f32>> = outputs.iter().map(|t| t.to_float()).collect();
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        Ok(Tensor::Float(ndarray::concatenate(Axis(0), &views)?.slice_axis(Axis(0), keep).to_owned()))
    }
}
