//! Steps that are local on shares: data movement, Add, Sub, Neg and Sum are
//! linear, and linear maps commute with additive sharing. No messages, no material.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx};
use crate::kernels::{layout, linear};
use crate::plan::Op;
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Local;

impl Local {
    /// Does `op` run locally on shares?
    pub fn fits(op: &Op) -> bool {
        op.is_data_movement() || matches!(op, Op::Add | Op::Sub | Op::Neg | Op::Sum { .. })
    }
}

impl SecureOp for Local {
    fn run(&self, _: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        Ok(match &cx.step.op {
            Op::Add => ins[0] + ins[1],
            Op::Sub => ins[0] - ins[1],
            Op::Neg => ins[0].mapv(|v| -v),
            Op::Sum { axes, keep_dims } => linear::reduce_sum(ins[0], axes, *keep_dims),
            Op::Concat { axis } => layout::concat(ins, *axis),
            other => other.move_data(ins[0]),
        })
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
