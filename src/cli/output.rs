//! Printing a prediction: text for people, JSON and JSON Lines for scripts.

use std::path::Path;

use ndarray::{ArrayD, Axis};
use serde_json::json;

use super::Mode;
use crate::tensor::Tensor;

pub(super) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Plaintext => "plaintext",
        Mode::Secure => "secure (Pond)",
        Mode::Remote => "secure (Pond, remote parties)",
    }
}

/// The mode as a key for scripts: the variant's name, not the phrase of [`mode_name`].
fn mode_key(mode: Mode) -> &'static str {
    match mode {
        Mode::Plaintext => "plaintext",
        Mode::Secure => "secure",
        Mode::Remote => "remote",
    }
}

/// One row of the output (the first axis is the batch).
struct Row {
    class: Option<i64>,
    values: Vec<f32>,
}

/// The rows of a result, and each row's class: the argmax over the last axis of a
/// `[batch, classes]` output, the value itself of an integer `[batch]` output
/// (a graph that ends in ArgMax), p ≥ 0.5 for a `[batch, 1]` output of a Sigmoid
/// (binary logistic regression), and none for any other single column (a
/// regression: an argmax over one value would always say 0).
fn rows(result: &Tensor, sigmoid: bool) -> Vec<Row> {
    match result {
        Tensor::Int(a) if a.ndim() == 1 => a.iter().map(|&c| Row { class: Some(c), values: vec![c as f32] }).collect(),
        _ => {
            let a: ArrayD<f32> = result.to_float();
            if a.ndim() == 0 {
                return vec![Row { class: None, values: vec![a.iter().copied().next().unwrap_or(0.0)] }];
            }
            a.axis_iter(Axis(0))
                .map(|row| {
                    let values: Vec<f32> = row.iter().copied().collect();
                    let class = match values.as_slice() {
                        [p] if row.ndim() == 1 && sigmoid => Some(i64::from(*p >= 0.5)),
                        [_] => None,
                        _ => (row.ndim() == 1 && !values.is_empty()).then(|| argmax(&values)),
                    };
                    Row { class, values }
                })
                .collect()
        }
    }
}

/// The first index of the maximum, as TensorFlow's ArgMax.
fn argmax(values: &[f32]) -> i64 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as i64
}

pub fn text(output_node: &str, mode: Mode, result: &Tensor, sigmoid: bool) -> String {
    let mut s = format!("# mode: {}, output: {output_node}, shape: {:?}\n", mode_name(mode), result.shape());
    for (i, row) in rows(result, sigmoid).iter().enumerate() {
        let values: Vec<String> = row.values.iter().map(|v| format!("{v:.4}")).collect();
        match row.class {
            Some(c) => s.push_str(&format!("row {i}: class {c} | {}\n", values.join(" "))),
            None => s.push_str(&format!("row {i}: {}\n", values.join(" "))),
        }
    }
    s
}

fn row_json(i: usize, r: Row) -> serde_json::Value {
    json!({"row": i, "class": r.class, "values": r.values})
}

pub fn json(model: &Path, output_node: &str, mode: Mode, result: &Tensor, sigmoid: bool) -> String {
    let rows: Vec<_> = rows(result, sigmoid).into_iter().enumerate().map(|(i, r)| row_json(i, r)).collect();
    let doc = json!({
        "model": model.display().to_string(),
        "mode": mode_key(mode),
        "output_node": output_node,
        "shape": result.shape(),
        "rows": rows,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON of plain values");
    s.push('\n');
    s
}

/// JSON Lines: one compact object per row, so that a stream of rows can be
/// read (`jq`, a line at a time) before the last one.
pub fn jsonl(result: &Tensor, sigmoid: bool) -> String {
    let mut s = String::new();
    for (i, r) in rows(result, sigmoid).into_iter().enumerate() {
        s.push_str(&row_json(i, r).to_string());
        s.push('\n');
    }
    s
}
