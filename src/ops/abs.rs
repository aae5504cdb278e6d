//! Abs(x) = x·(2·[x ≥ 0] − 1) = 2·ReLU(x) − x, exactly: one ReLU (the comparison
//! and its product in the ReLU's rounds), then a local combination.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Abs;

impl OpUnit for Abs {
    fn name(&self) -> &'static str {
        "Abs"
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
            Some(Tensor::Float(x)) => Tensor::Float(x.mapv(f32::abs)),
            Some(Tensor::Int(x)) => Tensor::Int(x.mapv(i64::wrapping_abs)),
            None => return Err("Abs needs an input".into()),
        })
    }
}

impl SecureOp for Abs {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        by_chunks(ins[0], 1, |x| {
            let r = relu(s, x, Width::in_range(cx.fp))?;
            Ok(r.mapv(|v| v + v) - x)
        })
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.in_shape(0).iter().product(), 1) {
            deal_relu(d, &[c.len()], Width::in_range(cx.fp))?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), 1, |n| relu_cost(cx.comparison, n, Width::in_range(cx.fp)))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
