//! Reciprocal 1/x of a private tensor (TensorFlow's `Reciprocal` and `Inv`, and
//! `RealDiv` by a private divisor): `protocol::inverse` over its whole range,
//! chunk by chunk.
//!
//! At 16 fractional bits: x in [2^−8, 2^16), |error| ≤ 6e-5/x + 2^−15 (measured
//! on a log grid by `tests/ops.rs`); below 2^−8 (x ≤ 0 included) exactly 256
//! (the value at the range's start), from 2^16 on 0 (1/x is below one unit).

use anyhow::Result;

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::inverse::{Inverse, Power, deal_inverse, inverse, inverse_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::{FixedPoint, RingTensor};
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reciprocal;

impl OpUnit for Reciprocal {
    fn name(&self) -> &'static str {
        "Reciprocal"
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
        match ins.first() {
            Some(Tensor::Float(x)) => Ok(Tensor::Float(x.mapv(|v| 1.0 / v))),
            _ => Err("Reciprocal needs a float input".into()),
        }
    }
}

impl SecureOp for Reciprocal {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        run_power(s, Power::Reciprocal, cx.fp, ins[0])
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_power(d, Power::Reciprocal, cx.fp, cx.out_len())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        power_cost(cx.comparison, Power::Reciprocal, cx.fp, cx.out_len())
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        let inv = Inverse::full(Power::Reciprocal, cx.fp);
        chunks(cx.out_len(), inv.breaks()).len()
    }

    fn how(&self) -> How {
        How::Approximation {
            function: "1/x",
            range: [1.0 / 256.0, 65536.0],
            error: "|error| ≤ 1e-4/x + 2^-15 at 16 fractional bits (tests/ops.rs, on a log grid)".into(),
            outside: "256 below (x ≤ 0 included), within 1e-4 relative; 0 from 2^16 on".into(),
        }
    }
}

/// x^−1 or x^−1/2 element-wise over the whole range, chunk by chunk: the server half.
pub(super) fn run_power(s: &mut Server, power: Power, fp: FixedPoint, x: &RingTensor) -> Result<RingTensor> {
    let inv = Inverse::full(power, fp);
    by_chunks(x, inv.breaks(), |c| inverse(s, c, &inv, fp))
}

/// The dealer half of [`run_power`] over `n` elements.
pub(super) fn deal_power(d: &mut Dealer, power: Power, fp: FixedPoint, n: usize) -> Result<()> {
    let inv = Inverse::full(power, fp);
    for c in chunks(n, inv.breaks()) {
        deal_inverse(d, c.len(), &inv, fp)?;
    }
    Ok(())
}

/// The cost of [`run_power`] over `n` elements.
pub(super) fn power_cost(cmp: crate::protocol::Comparison, power: Power, fp: FixedPoint, n: usize) -> Cost {
    let inv = Inverse::full(power, fp);
    chunked_cost(n, inv.breaks(), |m| inverse_cost(cmp, m, &inv, fp))
}
