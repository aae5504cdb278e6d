//! Add with one operand at 2f fractional bits (a product whose truncation is
//! deferred): the other, at f, is lifted by the public 2^f first. Local.

use std::num::Wrapping;

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiftedAdd {
    /// The input position of the operand at f bits.
    pub lift: usize,
}

impl SecureOp for LiftedAdd {
    fn run(&self, _: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let lifted = ins[self.lift].mapv(|v| v * Wrapping(1u64 << cx.fp.frac_bits));
        Ok(ins[1 - self.lift] + &lifted)
    }

    fn deal(&self, _: &mut Dealer, _: &StepCx, _: &mut DealerMasks) -> Result<()> {
        Ok(())
    }

    fn cost(&self, _: &mut CostCx) -> Cost {
        Cost::ZERO
    }

    fn how(&self) -> How {
        How::Local
    }
}
