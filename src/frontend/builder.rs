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
    /// A random tensor, known only to lie in a range (see [`Bounded`]).
    Bounded(Rc<Bounded>),
    /// A list of tensors whose length and positions are public (TensorFlow's
    /// TensorList, what a TF2 loop reads its time steps from and writes its outputs
    /// to): resolved at import, it never becomes a plan value.
    List(Rc<TensorList>),
}

/// A list of slots, some not yet written, and the element shape it declares
/// (`None`: unknown until an element is written).
#[derive(Debug, Clone, Default)]
pub struct TensorList {
    pub items: Vec<Option<Slot>>,
    pub element_shape: Option<Vec<usize>>,
    /// The node that made the list, for messages.
    pub origin: String,
}

/// A tensor known only to lie in a closed range: a random sample (TensorFlow's
/// RandomUniform) and what public arithmetic makes of it. It never becomes a plan
/// value and is never sampled: a comparison or a floor that gives the same answer
/// for every value in the range folds to a constant (a dropout decided at import:
/// `floor(keep_prob + U)` with keep_prob 1, `U >= rate` with rate 0); anything
/// else is refused, naming the node.
///
/// The bounds are f32 and every step computes them in f32, as TensorFlow computes
/// the elements: f32 addition and multiplication round monotonically, so the
/// rounded bounds bound the rounded elements exactly.
#[derive(Debug, Clone)]
pub struct Bounded {
    pub shape: Vec<usize>,
    pub lo: f32,
    pub hi: f32,
    /// The random node it comes from, for messages.
    pub origin: String,
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
            Slot::Unavailable | Slot::List(_) => vec![],
            Slot::Bounded(b) => b.shape.clone(),
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
            Slot::Bounded(b) => Err(undecided(at, b)),
            Slot::List(l) => Err(not_a_tensor(at, l)),
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
            Slot::Bounded(b) => Err(undecided(at, b)),
            Slot::List(l) => Err(not_a_tensor(at, l)),
            _ => Err(Error::unsupported(format!("{at}: {what} must be a constant, but it is computed from the input"))),
        }
    }

    /// Apply `op` to `ins`: fold it if every input is known, else add a plan step
    /// after checking the shapes.
    pub fn apply(&mut self, at: &Origin, op: Op, ins: &[Slot]) -> Result<Slot> {
        let fail = |msg: String| Error::unsupported(format!("{at}: {msg}"));
        let shapes: Vec<Vec<usize>> = ins.iter().map(|s| self.shape(s)).collect();
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        if let Some(Slot::List(l)) = ins.iter().find(|s| matches!(s, Slot::List(_))) {
            return Err(not_a_tensor(at, l));
        }
        let shape = op.output_shape(&shape_refs).map_err(fail)?;
        if ins.iter().any(|s| matches!(s, Slot::Bounded(_))) {
            return apply_bounded(at, &op, ins, shape);
        }
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
            Slot::Bounded(b) => Err(undecided(at, b)),
            Slot::List(l) => Err(not_a_tensor(at, l)),
        }
    }

    /// The finished plan, computing `output` (the slot of node `node`).
    pub fn finish(self, node: &str, output: Option<&Slot>) -> Result<Plan> {
        let Some(Slot::Value(out)) = output else {
            return Err(Error::bad_input(format!(
                "output `{node}` does not depend on any input: there is nothing to compute privately"
            )));
        };
        let mut steps = self.steps;
        fuse_clips(&mut steps, &self.values, *out);
        let mut plan = Plan {
            values: self.values,
            steps,
            inputs: self.inputs,
            output: *out,
            output_node: node.to_string(),
            weight_values: self.weight_values,
        };
        super::curves::fuse_curves(&mut plan);
        super::fold::fold_channel_constants(&mut plan);
        Ok(plan)
    }
}

/// Two one-sided clips in a row, of opposite sides (TensorFlow's `clip_by_value`
/// is Minimum by the upper bound, then Maximum by the lower), are one two-sided
/// clip: both comparisons in one batched ReLU, the rounds of one instead of two.
/// When nothing else reads the value between them, the first step becomes the
/// whole clip and the second a reshape to its own shape (local, free).
fn fuse_clips(steps: &mut [Step], values: &[Value], output: ValueId) {
    use crate::ops::{Clip, Unit};
    let mut readers: HashMap<ValueId, usize> = HashMap::new();
    for step in steps.iter() {
        for &v in &step.inputs {
            let count = readers.entry(v).or_default();
            *count = count.saturating_add(1);
        }
    }
    for k in 0..steps.len() {
        let Some(Step { op: Op::Unit(Unit::Clip(second)), inputs, .. }) = steps.get(k) else { continue };
        let (&[v], second) = (inputs.as_slice(), second.clone()) else { continue };
        let Some(Value { source: Source::Step(j), shape, .. }) = values.get(v) else { continue };
        let (j, shape) = (*j, shape.clone());
        let Some(Step { op: Op::Unit(Unit::Clip(first)), .. }) = steps.get(j) else { continue };
        let fused = match (first, &second) {
            (Clip { lo: None, hi: Some(hi) }, Clip { lo: Some(lo), hi: None })
            | (Clip { lo: Some(lo), hi: None }, Clip { lo: None, hi: Some(hi) })
                if lo <= hi =>
            {
                Clip { lo: Some(*lo), hi: Some(*hi) }
            }
            _ => continue,
        };
        if v == output || readers.get(&v) != Some(&1) {
            continue;
        }
        if let Some(step) = steps.get_mut(j) {
            step.op = fused.into();
        }
        if let Some(step) = steps.get_mut(k) {
            step.op = Op::Reshape(shape);
        }
    }
}

/// The refusal of a random tensor that reaches private data or an op that
/// cannot decide it.
pub fn undecided(at: &Origin, b: &Bounded) -> anyhow::Error {
    Error::unsupported(format!(
        "{at}: depends on the random values of `{}` (in [{}, {}]) in a way not decided at import; a \
         dropout must be disabled (keep_prob 1 or rate 0) for inference",
        b.origin, b.lo, b.hi
    ))
}

/// The refusal of a tensor list where a tensor is expected.
pub fn not_a_tensor(at: &Origin, l: &TensorList) -> anyhow::Error {
    Error::invalid_model(format!("{at}: reads the tensor list made by `{}` as a tensor", l.origin))
}

/// A single known float (a scalar or any one-element tensor).
pub fn known_single_float(slot: &Slot) -> Option<f32> {
    match slot {
        Slot::Known(k) if k.tensor.len() == 1 => k.tensor.to_float().iter().copied().next(),
        _ => None,
    }
}

/// Add, Sub or Mul of a bounded tensor and a known single number: the range of
/// the result (computed in f32 like the elements, see [`Bounded`]).
fn apply_bounded(at: &Origin, op: &Op, ins: &[Slot], shape: Vec<usize>) -> Result<Slot> {
    let (b, c, bounded_first) = match ins {
        [Slot::Bounded(b), other] => (b, known_single_float(other), true),
        [other, Slot::Bounded(b)] => (b, known_single_float(other), false),
        _ => {
            let b = ins.iter().find_map(|s| if let Slot::Bounded(b) = s { Some(b) } else { None });
            return Err(b.map_or_else(|| Error::invalid_model(format!("{at}: no bounded input")), |b| undecided(at, b)));
        }
    };
    let Some(c) = c.filter(|c| c.is_finite()) else { return Err(undecided(at, b)) };
    // f32 arithmetic of the bounds, as TensorFlow computes the elements.
    #[allow(clippy::arithmetic_side_effects)]
    let (x, y) = match (op, bounded_first) {
        (Op::Add, _) => (b.lo + c, b.hi + c),
        (Op::Sub, true) => (b.lo - c, b.hi - c),
        (Op::Sub, false) => (c - b.hi, c - b.lo),
        (Op::Mul, _) => (b.lo * c, b.hi * c),
        _ => return Err(undecided(at, b)),
    };
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    Ok(Slot::Bounded(Rc::new(Bounded { shape, lo, hi, origin: b.origin.clone() })))
}
