//! Sigmoid and Tanh by piecewise cubics (`protocol::compare::Piecewise`), chunk by
//! chunk: the DReLU of every breakpoint, then three rounds of products.

use std::sync::OnceLock;

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{self, deal_piecewise, piecewise, piecewise_many_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

/// The approximated functions, by name: the program carries the name, and every
/// party fits the same curve from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Curve {
    Sigmoid,
    Tanh,
    Exp,
}

impl Curve {
    pub fn name(self) -> &'static str {
        match self {
            Curve::Sigmoid => "sigmoid",
            Curve::Tanh => "tanh",
            Curve::Exp => "exp",
        }
    }

    /// The function itself, which the curve approximates.
    pub fn reference(self) -> fn(f64) -> f64 {
        match self {
            Curve::Sigmoid => |x| 1.0 / (1.0 + (-x).exp()),
            Curve::Tanh => f64::tanh,
            Curve::Exp => f64::exp,
        }
    }

    /// Its documented range, its error there (measured on the grid of
    /// [`compare::Piecewise::max_error`]; relative for Exp, whose values span
    /// e^−12 to e^10) and its exact tails.
    pub fn how(self) -> How {
        let pw = self.piecewise();
        let (lo, hi) = (pw.breaks.first().copied().unwrap_or(0.0), pw.breaks.last().copied().unwrap_or(0.0));
        let error = match self {
            Curve::Exp => {
                let worst = (0..=100_000)
                    .map(|i| lo + (hi - lo) * i as f64 / 100_000.0)
                    .map(|x| ((pw.eval(x) - x.exp()) / x.exp()).abs())
                    .fold(0.0, f64::max);
                format!("max relative error {worst:.1e}")
            }
            _ => format!("max error {:.1e}", pw.max_error(self.reference(), lo, hi)),
        };
        let above = if pw.above_slope == 0.0 {
            format!("{}", pw.above)
        } else {
            format!("{} + {}·x", pw.above, pw.above_slope)
        };
        How::Approximation {
            function: self.name(),
            range: [lo, hi],
            error,
            outside: format!("exactly {} below, {above} above", pw.below),
        }
    }

    pub fn piecewise(self) -> &'static compare::Piecewise {
        static SIGMOID: OnceLock<compare::Piecewise> = OnceLock::new();
        static TANH: OnceLock<compare::Piecewise> = OnceLock::new();
        static EXP: OnceLock<compare::Piecewise> = OnceLock::new();
        match self {
            Curve::Sigmoid => SIGMOID.get_or_init(compare::Piecewise::sigmoid),
            Curve::Tanh => TANH.get_or_init(compare::Piecewise::tanh),
            Curve::Exp => EXP.get_or_init(super::exp::curve),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Piecewise {
    pub curve: Curve,
}

impl Piecewise {
    fn breaks(&self) -> usize {
        self.curve.piecewise().breaks.len()
    }
}

impl SecureOp for Piecewise {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let pw = self.curve.piecewise();
        by_chunks(ins[0], self.breaks(), |x| piecewise(s, x, pw, cx.fp))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let pw = self.curve.piecewise();
        for c in chunks(cx.in_shape(0).iter().product(), self.breaks()) {
            deal_piecewise(d, &[c.len()], pw, cx.fp)?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let breaks = self.breaks();
        chunked_cost(cx.out_len(), breaks, |n| piecewise_many_cost(n, breaks, 1))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), self.breaks()).len()
    }

    fn how(&self) -> How {
        self.curve.how()
    }
}
