//! Clip(x) to public bounds, exactly (TensorFlow's ClipByValue, and Minimum or
//! Maximum of a private tensor and a public number, which `tf.clip_by_value`
//! and Keras's `ReLU(max_value=…)` export to):
//!
//! ```text
//! max(x, lo)         = lo + ReLU(x − lo)
//! min(x, hi)         = x − ReLU(x − hi)
//! min(max(x, lo), hi) = lo + ReLU(x − lo) − ReLU(x − hi)     (lo ≤ hi)
//! ```
//!
//! Both comparisons of a two-sided clip run in one batched ReLU, as Relu6's do
//! (the rounds of one ReLU, the bytes of two). The bounds are public: the
//! servers see them in the plan, as they see Relu6's 6. They are encoded with f
//! fractional bits, so the result is exact for bounds on that grid (any
//! multiple of 2^−f) and otherwise off by at most 2^−(f+1).

use anyhow::Result;
use ndarray::{Axis, IxDyn, concatenate};

use super::{
    CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks, public_share,
};
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

/// Bounds beyond this are refused: x − bound must stay in the fixed-point range
/// of the comparison, and no model clips there.
pub const MAX_BOUND: f32 = 16384.0;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Clip {
    pub lo: Option<f32>,
    pub hi: Option<f32>,
}

impl Clip {
    fn comparisons(&self) -> usize {
        usize::from(self.lo.is_some()) + usize::from(self.hi.is_some())
    }

    /// The comparisons' width: x − bound is a difference of values when both
    /// bounds are in the range at `fp` (a bound of 16384 is not at 28
    /// fractional bits: then the whole ring).
    fn width(&self, fp: crate::ring::FixedPoint) -> Width {
        let bounds: Vec<_> = [self.lo, self.hi].into_iter().flatten().map(|b| fp.encode_value(f64::from(b))).collect();
        Width::for_thresholds(fp, &bounds)
    }
}

impl OpUnit for Clip {
    fn name(&self) -> &'static str {
        "Clip"
    }

    fn arity(&self) -> usize {
        1
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        crate::plan::RowRule::Elementwise
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        for b in [self.lo, self.hi].into_iter().flatten() {
            if !b.is_finite() || b.abs() > MAX_BOUND {
                return Err(format!("clip bound {b} is outside [-{MAX_BOUND}, {MAX_BOUND}]"));
            }
        }
        match (self.lo, self.hi) {
            (None, None) => return Err("a clip without bounds".into()),
            (Some(lo), Some(hi)) if lo > hi => return Err(format!("clip bounds {lo} > {hi}")),
            _ => {}
        }
        Ok(ins.first().map(|s| s.to_vec()).unwrap_or_default())
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        let (lo, hi) = (self.lo, self.hi);
        match ins.first() {
            Some(Tensor::Float(x)) => Ok(Tensor::Float(x.mapv(|v| {
                let v = lo.map_or(v, |lo| if v < lo { lo } else { v });
                hi.map_or(v, |hi| if v > hi { hi } else { v })
            }))),
            _ => Err("Clip needs a float input".into()),
        }
    }
}

impl SecureOp for Clip {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let encode = |b: Option<f32>| b.map(|b| public_share(s, cx.fp.encode_value(f64::from(b))));
        let (lo, hi) = (encode(self.lo), encode(self.hi));
        let w = self.width(cx.fp);
        by_chunks(ins[0], self.comparisons(), |x| {
            Ok(match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    let flat = x.to_shape(IxDyn(&[x.len()]))?;
                    let (above_lo, above_hi) = (flat.mapv(|v| v - lo), flat.mapv(|v| v - hi));
                    let both = relu(s, &concatenate(Axis(0), &[above_lo.view(), above_hi.view()])?, w)?;
                    let (low, high) = both.view().split_at(Axis(0), x.len());
                    let out: RingTensor = (&low - &high).mapv(|v| v + lo);
                    out.into_shape_with_order(x.raw_dim())?
                }
                (Some(lo), None) => relu(s, &x.mapv(|v| v - lo), w)?.mapv(|v| v + lo),
                (None, Some(hi)) => x - &relu(s, &x.mapv(|v| v - hi), w)?,
                (None, None) => x.clone(),
            })
        })
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let k = self.comparisons();
        for c in chunks(cx.in_shape(0).iter().product(), k) {
            deal_relu(d, &[k * c.len()], self.width(cx.fp))?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let k = self.comparisons();
        chunked_cost(cx.out_len(), k, |n| relu_cost(cx.comparison, k * n, self.width(cx.fp)))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), self.comparisons()).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
