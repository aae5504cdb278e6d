//! ReLU(x) = x · [x ≥ 0], exactly, in the comparison's rounds, chunk by chunk.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relu;

impl SecureOp for Relu {
    fn run(&self, s: &mut Server, _: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        by_chunks(ins[0], 1, |x| relu(s, x))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.in_shape(0).iter().product(), 1) {
            deal_relu(d, &[c.len()])?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), 1, |n| relu_cost(cx.comparison, n))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
