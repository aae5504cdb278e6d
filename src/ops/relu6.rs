//! Relu6(x) = min(max(x, 0), 6) (MobileNet's activation), exactly:
//! ReLU(x) − ReLU(x − 6), both comparisons in one batched ReLU, so it costs the
//! rounds of one ReLU and the bytes of two.

use anyhow::Result;
use ndarray::{Axis, IxDyn, concatenate};

use super::{
    CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks, public_share,
};
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relu6;

/// Both of an element's comparisons (x ≥ 0 and x ≥ 6) are in the same chunk.
const DRELUS_PER_ELEMENT: usize = 2;

impl OpUnit for Relu6 {
    fn name(&self) -> &'static str {
        "Relu6"
    }

    fn arity(&self) -> usize {
        1
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        crate::plan::RowRule::Elementwise
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(ins.first().map(|s| s.to_vec()).unwrap_or_default())
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        Ok(match ins.first() {
            Some(Tensor::Float(x)) => Tensor::Float(x.mapv(|v| v.clamp(0.0, 6.0))),
            Some(Tensor::Int(x)) => Tensor::Int(x.mapv(|v| v.clamp(0, 6))),
            None => return Err("Relu6 needs an input".into()),
        })
    }
}

/// The comparisons' width: x and x − 6 are values, or differences of a value
/// and 6, which is in the range at every supported number of fractional bits.
fn width(fp: crate::ring::FixedPoint) -> Width {
    Width::for_thresholds(fp, &[fp.encode_value(6.0)])
}

impl SecureOp for Relu6 {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let six = public_share(s, cx.fp.encode_value(6.0));
        by_chunks(ins[0], DRELUS_PER_ELEMENT, |x| {
            let flat = x.to_shape(IxDyn(&[x.len()]))?;
            let shifted = flat.mapv(|v| v - six);
            let both = relu(s, &concatenate(Axis(0), &[flat.view(), shifted.view()])?, width(cx.fp))?;
            let (low, high) = both.view().split_at(Axis(0), x.len());
            let out: RingTensor = &low - &high;
            Ok(out.into_shape_with_order(x.raw_dim())?)
        })
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.in_shape(0).iter().product(), DRELUS_PER_ELEMENT) {
            deal_relu(d, &[DRELUS_PER_ELEMENT * c.len()], width(cx.fp))?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), DRELUS_PER_ELEMENT, |n| {
            relu_cost(cx.comparison, DRELUS_PER_ELEMENT * n, width(cx.fp))
        })
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), DRELUS_PER_ELEMENT).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
