//! Sigmoid and Tanh by piecewise cubics (`protocol::compare::Piecewise`), chunk by
//! chunk: the DReLU of every breakpoint, then three rounds of products.

use std::sync::OnceLock;

use anyhow::Result;

use super::{CostCx, DealerMasks, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
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
}
