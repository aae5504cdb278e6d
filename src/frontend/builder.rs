//! The plan under construction, as every frontend sees it: constant folding,
//! shape checking, public (known) versus private values, and value and step
//! creation. It knows no model format: an op request names its source node by an
//! [`Origin`], for messages only.
//!
//! A request whose inputs are all known at import time (constants, shapes) is
//! evaluated right away, in the clear: this is the constant folding that lets real
//! Keras exports import (a dynamic-batch `Flatten` is `Shape → StridedSlice → Pack
//! → Reshape`; a BatchNormalization is `Rsqrt/Mul/Sub` on its statistics). A
//! request that touches the client's input becomes a plan step, its shape checked
//! now, not at run time. A float constant that meets private data there is a model
//! weight: the model owner's secret.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use anyhow::Result;

use super::{Feed, MAX_CONST_ELEMENTS, Origin};
use crate::error::Error;
use crate::plan::{MAX_VALUE_ELEMENTS, Op, Plan, Source, Step, Value, ValueId, ValueType};
use crate::tensor::{Tensor, element_count};

/// A tensor known at import time, and the node it came from (for weight names).
#[derive(Debug)]
pub struct Known {
    pub tensor: Tensor,
    pub origin: String,
}

/// What an output of a node is, during import.
#[derive(Debug, Clone)]
pub enum Slot {
    /// Known at import time: folded.
    Known(Rc<Known>),
    /// A private plan value.
    Value(ValueId),
    /// An output an inference graph must not use (e.g. FusedBatchNorm's batch statistics).
    Unavailable,
}

/// The plan under construction.
#[derive(Default)]
pub struct Builder {
    values: Vec<Value>,
    steps: Vec<Step>,
    inputs: Vec<ValueId>,
    /// Known tensors already registered as weights, so a constant used twice is
    /// shared once. Keyed by address; holding the `Rc` keeps that address from being
    /// reused by a later tensor while the map lives.
    weights: HashMap<*const Known, (Rc<Known>, ValueId)>,
    weight_values: BTreeMap<ValueId, ndarray::ArrayD<f32>>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The client's input fed to the placeholder `at`.
    pub fn input(&mut self, at: &Origin, feed: &Feed) -> Slot {
        let id = self.push_value(
            at.node.clone(),
            feed.shape.clone(),
            ValueType::Float,
            Source::Input { placeholder: at.node.clone() },
        );
        self.inputs.push(id);
        Slot::Value(id)
    }

    fn push_value(&mut self, name: String, shape: Vec<usize>, vtype: ValueType, source: Source) -> ValueId {
        self.values.push(Value { name, shape, vtype, source });
        self.values.len().saturating_sub(1)
    }

    /// The static shape of a slot.
    pub fn shape(&self, slot: &Slot) -> Vec<usize> {
        match slot {
            Slot::Known(k) => k.tensor.shape().to_vec(),
            Slot::Value(id) => self.values.get(*id).map(|v| v.shape.clone()).unwrap_or_default(),
            Slot::Unavailable => vec![],
        }
    }

    pub fn known(at: &Origin, tensor: Tensor) -> Slot {
        Slot::Known(Rc::new(Known { tensor, origin: at.node.clone() }))
    }

    /// An integer parameter input (a shape, axes, paddings...): it must be known at
    /// import time, because the servers need it in the clear.
    pub fn known_ints(&self, at: &Origin, slot: &Slot, what: &str) -> Result<Vec<i64>> {
        match slot {
            Slot::Known(k) => match &k.tensor {
                Tensor::Int(a) => Ok(a.iter().copied().collect()),
                Tensor::Float(_) => Err(Error::invalid_model(format!("{at}: {what} must be an integer tensor"))),
            },
            _ => Err(Error::unsupported(format!("{at}: {what} must be a constant, but it is computed from the input"))),
        }
    }

    /// A float parameter input that must be known at import time (e.g. batch-norm statistics).
    pub fn known_floats(&self, at: &Origin, slot: &Slot, what: &str) -> Result<ndarray::ArrayD<f32>> {
        match slot {
            Slot::Known(k) => k
                .tensor
                .as_float()
                .cloned()
                .ok_or_else(|| Error::invalid_model(format!("{at}: {what} must be a float tensor"))),
            _ => Err(Error::unsupported(format!("{at}: {what} must be a constant, but it is computed from the input"))),
        }
    }

    /// Apply `op` to `ins`: fold it if every input is known, else add a plan step
    /// after checking the shapes.
    pub fn apply(&mut self, at: &Origin, op: Op, ins: &[Slot]) -> Result<Slot> {
        let fail = |msg: String| Error::unsupported(format!("{at}: {msg}"));
        let shapes: Vec<Vec<usize>> = ins.iter().map(|s| self.shape(s)).collect();
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = op.output_shape(&shape_refs).map_err(fail)?;
        let known: Option<Vec<&Tensor>> = ins
            .iter()
            .map(|s| match s {
                Slot::Known(k) => Some(&k.tensor),
                _ => None,
            })
            .collect();
        if let Some(tensors) = known {
            // Folding broadcasts: two small constants can make a huge one.
            if element_count(&shape).is_none_or(|n| n > MAX_CONST_ELEMENTS) {
                return Err(Error::unsupported(format!(
                    "{at}: folding it would make a constant of shape {shape:?}, over {MAX_CONST_ELEMENTS} elements"
                )));
            }
            return Ok(Self::known(at, op.eval(&tensors).map_err(fail)?));
        }
        if element_count(&shape).is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
            return Err(Error::unsupported(format!(
                "{at}: its output would have shape {shape:?}, over {MAX_VALUE_ELEMENTS} elements"
            )));
        }
        let inputs = ins.iter().map(|s| self.value_of(at, s)).collect::<Result<Vec<_>>>()?;
        let vtype = if matches!(op, Op::ArgMax { .. } | Op::CastToInt) { ValueType::Int } else { ValueType::Float };
        let output = self.push_value(at.node.clone(), shape, vtype, Source::Step(self.steps.len()));
        self.steps.push(Step { node: at.node.clone(), op_type: at.op_type.clone(), op, inputs, output });
        Ok(Slot::Value(output))
    }

    /// The plan value of an input of a private step; a known float tensor becomes a
    /// model-owner weight here.
    fn value_of(&mut self, at: &Origin, slot: &Slot) -> Result<ValueId> {
        match slot {
            Slot::Value(id) => Ok(*id),
            Slot::Known(k) => {
                if let Some((_, id)) = self.weights.get(&Rc::as_ptr(k)) {
                    return Ok(*id);
                }
                let Tensor::Float(w) = &k.tensor else {
                    return Err(Error::unsupported(format!(
                        "{at}: integer tensor `{}` cannot be combined with private values",
                        k.origin
                    )));
                };
                if let Some(bad) = w.iter().find(|v| !v.is_finite()) {
                    return Err(Error::invalid_model(format!("{at}: weight `{}` contains {bad}", k.origin)));
                }
                let id = self.push_value(k.origin.clone(), w.shape().to_vec(), ValueType::Float, Source::Weight);
                self.weight_values.insert(id, w.clone());
                self.weights.insert(Rc::as_ptr(k), (Rc::clone(k), id));
                Ok(id)
            }
            Slot::Unavailable => Err(Error::invalid_model(format!("{at}: reads a training-only output"))),
        }
    }

    /// The finished plan, computing `output` (the slot of node `node`).
    pub fn finish(self, node: &str, output: Option<&Slot>) -> Result<Plan> {
        let Some(Slot::Value(out)) = output else {
            return Err(Error::bad_input(format!(
                "output `{node}` does not depend on any input: there is nothing to compute privately"
            )));
        };
        Ok(Plan {
            values: self.values,
            steps: self.steps,
            inputs: self.inputs,
            output: *out,
            output_node: node.to_string(),
            weight_values: self.weight_values,
        })
    }
}
