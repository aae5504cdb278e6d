//! Exp(x) of a private tensor (TensorFlow's `Exp`, Keras' `exponential`
//! activation) by piecewise cubics (`protocol::compare::Piecewise`, the
//! machinery of Sigmoid and Tanh): one batched DReLU of 45 breakpoints, then
//! three rounds of products.
//!
//! Range [−12, 10], cubics on 44 segments of width 1/2. Below −12 the result is
//! exactly 0 (e^−12 = 6.1e-6 is below half a unit at 16 fractional bits); from 10
//! on it saturates to exactly e^10 = 22026.47 (a larger value would leave the
//! range of the products that follow: |x| < 2^15). Inside, the error is at most
//! 4.6e-5·e^x relative (the cubics' own) plus the fixed-point rounding; under
//! Pond at most 1e-4·e^x + 2^−14 (measured on a grid by `tests/ops.rs`; the
//! cubics alone by `exp_is_accurate_on_its_range_and_exact_outside`).

use anyhow::Result;

use super::{CostCx, Curve, DealerMasks, How, OpUnit, Piecewise, SecureOp, ServerMasks, StepCx};
use crate::protocol::compare;
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

/// The range's ends and its segments.
pub const LOW: f64 = -12.0;
pub const HIGH: f64 = 10.0;
const SEGMENTS: usize = 44;

/// The curve every party fits from the name [`Curve::Exp`].
pub(super) fn curve() -> compare::Piecewise {
    compare::Piecewise::fit(f64::exp, LOW, HIGH, SEGMENTS, 0.0, HIGH.exp())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exp;

const PIECEWISE: Piecewise = Piecewise { curve: Curve::Exp };

impl OpUnit for Exp {
    fn name(&self) -> &'static str {
        "Exp"
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
            Some(Tensor::Float(x)) => Ok(Tensor::Float(x.mapv(f32::exp))),
            _ => Err("Exp needs a float input".into()),
        }
    }
}

impl SecureOp for Exp {
    fn run(&self, s: &mut Server, cx: &StepCx, masks: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        PIECEWISE.run(s, cx, masks, ins)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, masks: &mut DealerMasks) -> Result<()> {
        PIECEWISE.deal(d, cx, masks)
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        PIECEWISE.cost(cx)
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        PIECEWISE.pieces(cx)
    }

    fn how(&self) -> How {
        PIECEWISE.curve.how()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_on_its_range_and_exact_outside() {
        let pw = curve();
        // Relative error inside: the approximation's own, on 100k points.
        let worst = (0..=100_000)
            .map(|i| LOW + (HIGH - LOW) * i as f64 / 100_000.0)
            .map(|x| ((pw.eval(x) - x.exp()) / x.exp()).abs())
            .fold(0.0, f64::max);
        eprintln!("exp: max relative error on [{LOW}, {HIGH}] {worst:.2e}");
        assert!(worst < 5e-5, "{worst}");
        assert_eq!((pw.eval(-12.001), pw.eval(-1e6), pw.eval(10.0), pw.eval(1e6)), (0.0, 0.0, HIGH.exp(), HIGH.exp()));
    }
}
