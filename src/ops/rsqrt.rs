//! Rsqrt 1/√x of a private tensor (the plan's `Rsqrt`: LayerNormalization's
//! 1/√(variance + ε)); of a public one it folds at import, as in BatchNorm).
//! `protocol::inverse` over its whole range, chunk by chunk.
//!
//! At 16 fractional bits: x in [2^−8, 2^30) (2^30 is the bound of every value),
//! relative error ≤ 6e-5 plus 2^−15 (measured on a log grid by `tests/ops.rs`);
//! below 2^−8 (x ≤ 0 included) exactly 16, the value at the range's start.

use anyhow::Result;

use super::reciprocal::{deal_power, power_cost, run_power};
use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx, chunks};
use crate::protocol::inverse::{Inverse, Power};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rsqrt;

impl SecureOp for Rsqrt {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        run_power(s, Power::Rsqrt, cx.fp, ins[0])
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_power(d, Power::Rsqrt, cx.fp, cx.out_len())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        power_cost(cx.comparison, Power::Rsqrt, cx.fp, cx.out_len())
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), Inverse::full(Power::Rsqrt, cx.fp).breaks()).len()
    }

    fn how(&self) -> How {
        How::Approximation {
            function: "1/√x",
            range: [1.0 / 256.0, (1u64 << 30) as f64],
            error: "|error| ≤ 1e-4/√x + 2^-15 at 16 fractional bits (tests/ops.rs, on a log grid)".into(),
            outside: "16 below (x ≤ 0 included), within 1e-4 relative".into(),
        }
    }
}
