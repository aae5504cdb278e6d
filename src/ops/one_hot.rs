//! OneHot of private token ids, for an embedding lookup by private ids (Keras'
//! `Embedding`: a `GatherV2` whose indices are the client's input, planned as
//! OneHot then a product with the table).
//!
//! For an id x (fixed point) and depth V, one batched DReLU gives the V + 1 bits
//! d_v = [x ≥ v − ½] for v = 0..=V; their differences d_v − d_{v+1} are the one-hot
//! row: 1 at the v with v − ½ ≤ x < v + ½, the nearest integer to x (an integer id
//! exactly). The bits are shares of the integer 0 or 1; multiplying them by 2^f
//! (local) makes them fixed-point ones. An id outside [−½, V − ½) sets no bit:
//! its row is zero (as TensorFlow's GPU kernel gives for an out-of-range index;
//! its CPU kernel refuses — which the servers cannot do without learning
//! something of the id).
//!
//! The servers see only what DReLU shows them (masked values and bits); the
//! dealer sees nothing of the ids. Cost: (V + 1) DReLUs per id, in DReLU's rounds.

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, chunked_cost, chunks};
use crate::protocol::compare::{deal_drelu_thresholds, drelu_thresholds, drelu_thresholds_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::{RingTensor, Z};
use crate::tensor::Tensor;

/// The largest depth (vocabulary) a secure OneHot takes: each id costs depth + 1
/// comparisons, all in one chunk.
pub const MAX_DEPTH: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OneHot {
    /// How many classes (rows of the table): the output's last axis.
    pub depth: usize,
}

impl OneHot {
    fn drelus_per_id(&self) -> usize {
        self.depth.saturating_add(1)
    }
}

impl OpUnit for OneHot {
    fn name(&self) -> &'static str {
        "OneHot"
    }

    fn arity(&self) -> usize {
        1
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        // The batch axis of its input (not of a filter).
        crate::plan::RowRule::Batch(vec![0])
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [x] = ins else { return Err(format!("expects 1 input, has {}", ins.len())) };
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(format!("a one-hot depth of {} (1 to {MAX_DEPTH})", self.depth));
        }
        let mut out = x.to_vec();
        out.push(self.depth);
        crate::tensor::element_count(&out).ok_or_else(|| format!("an output of shape {out:?} is too large"))?;
        Ok(out)
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        let depth = self.depth;
        let hot = |nearest: Option<usize>, v: usize| if nearest == Some(v) { 1.0 } else { 0.0 };
        let ids: Vec<Option<usize>> = match ins {
            // The v with v − ½ ≤ x < v + ½, as the secure comparisons find it.
            [Tensor::Float(x)] => x
                .iter()
                .map(|&x| (x + 0.5).floor())
                .map(|v| (v >= 0.0 && v < depth as f32).then_some(v as usize))
                .collect(),
            [Tensor::Int(x)] => x.iter().map(|&x| usize::try_from(x).ok().filter(|&v| v < depth)).collect(),
            _ => return Err("OneHot needs one input".into()),
        };
        let shape = self.output_shape(&[ins.first().map(|t| t.shape()).unwrap_or_default()])?;
        let values = ids.iter().flat_map(|&id| (0..depth).map(move |v| hot(id, v))).collect();
        ArrayD::from_shape_vec(IxDyn(&shape), values).map(Tensor::Float).map_err(|e| e.to_string())
    }
}

impl OneHot {
    /// v − 1/2 for every v up to the depth: the edges [id ≥ v − 1/2] is read at.
    fn thresholds(&self, fp: crate::ring::FixedPoint) -> Vec<Z> {
        (0..self.drelus_per_id()).map(|v| fp.encode_value(v as f64 - 0.5)).collect()
    }

    /// The comparisons' width: the ids' (values), or the ring for a depth
    /// beyond the range.
    fn width(&self, fp: crate::ring::FixedPoint) -> Width {
        Width::for_thresholds(fp, &self.thresholds(fp))
    }
}

impl SecureOp for OneHot {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let per = self.drelus_per_id();
        let flat: Vec<Z> = ins[0].iter().copied().collect();
        let thresholds = self.thresholds(cx.fp);
        let one = std::num::Wrapping(1u64 << cx.fp.frac_bits);
        let mut out = Vec::with_capacity(flat.len() * self.depth);
        for c in chunks(flat.len(), per) {
            let ids = ArrayD::from_shape_vec(IxDyn(&[c.len()]), flat[c].to_vec())?;
            // bits[[v, i]] = [id_i ≥ v − 1/2].
            let bits = drelu_thresholds(s, &ids, &thresholds, Width::for_thresholds(cx.fp, &thresholds))?;
            for i in 0..ids.len() {
                out.extend((1..per).map(|v| (bits[[v - 1, i]] - bits[[v, i]]) * one));
            }
        }
        Ok(ArrayD::from_shape_vec(IxDyn(cx.out_shape()), out)?)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let per = self.drelus_per_id();
        for c in chunks(cx.in_shape(0).iter().product(), per) {
            deal_drelu_thresholds(d, c.len(), per, self.width(cx.fp))?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let per = self.drelus_per_id();
        let ids = cx.plan.values[cx.step.inputs[0]].len();
        chunked_cost(ids, per, |n| drelu_thresholds_cost(cx.comparison, n, per, self.width(cx.fp)))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.plan.values[cx.step.inputs[0]].len(), self.drelus_per_id()).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
