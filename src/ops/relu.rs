//! ReLU(x) = x · [x ≥ 0], exactly, in the comparison's rounds, chunk by chunk;
//! and [`ReluShift`], the ReLU of a product at 2f fractional bits that also
//! takes the product's truncation (by f, or f + e for a pool after it).

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{deal_relu, deal_relu_shift, relu, relu_cost, relu_shift, relu_shift_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relu;

impl SecureOp for Relu {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        by_chunks(ins[0], 1, |x| relu(s, x, Width::in_range(cx.fp)))
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

/// ReLU of a value at 2f fractional bits (a product whose truncation lowering
/// deferred, `lower::fuse`), output at f bits divided by 2^e: ReLU(z) / 2^(f + e)
/// to one unit in the last place, in the one round of an FSS ReLU (the DCF's
/// opening also gives the wrap bit the shift needs; `protocol::fss`). e > 0 when
/// the ReLU's only reader is an AvgPool of 2^e-pixel windows, which then only
/// sums ([`super::SumPool`]). FSS only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReluShift {
    pub e: u32,
}

impl ReluShift {
    fn shift(&self, frac_bits: u32) -> u32 {
        frac_bits + self.e
    }
}

impl SecureOp for ReluShift {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let shift = self.shift(cx.fp.frac_bits);
        by_chunks(ins[0], 1, |x| relu_shift(s, x, shift))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let shift = self.shift(cx.fp.frac_bits);
        for c in chunks(cx.in_shape(0).iter().product(), 1) {
            deal_relu_shift(d, c.len(), shift)?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let shift = self.shift(cx.fp.frac_bits);
        chunked_cost(cx.out_len(), 1, |n| relu_shift_cost(n, shift))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::ComparisonTruncation
    }
}
