//! LeakyRelu(x) = x for x ≥ 0, alpha·x below: alpha·x + (1 − alpha)·ReLU(x),
//! which holds for any alpha. One exact ReLU, then the public combination at 2f
//! fractional bits and one truncation.
//!
//! Error: alpha and 1 − alpha are encoded with f fractional bits (at most
//! 2^−(f+1) off each), and the truncation is off by one unit in the last place,
//! so |error| ≤ (|x| + 2)·2^−(f+1) (f = 16: 7.6e-6 for |x| ≤ 1).

use anyhow::Result;

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

/// Slopes beyond this are refused: alpha·x at 2f fractional bits must stay in
/// the truncation's range, and no model uses such a slope.
pub const MAX_ALPHA: f32 = 1024.0;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeakyRelu {
    /// The slope below zero.
    pub alpha: f32,
}

impl OpUnit for LeakyRelu {
    fn name(&self) -> &'static str {
        "LeakyRelu"
    }

    fn arity(&self) -> usize {
        1
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        crate::plan::RowRule::Elementwise
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        if !self.alpha.is_finite() || self.alpha.abs() > MAX_ALPHA {
            return Err(format!("alpha {} is outside [-{MAX_ALPHA}, {MAX_ALPHA}]", self.alpha));
        }
        Ok(ins.first().map(|s| s.to_vec()).unwrap_or_default())
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        let a = self.alpha;
        match ins.first() {
            Some(Tensor::Float(x)) => Ok(Tensor::Float(x.mapv(|v| if v >= 0.0 { v } else { a * v }))),
            _ => Err("LeakyRelu needs a float input".into()),
        }
    }
}

impl SecureOp for LeakyRelu {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let fp = cx.fp;
        let (alpha, rest) = (fp.encode_value(f64::from(self.alpha)), fp.encode_value(1.0 - f64::from(self.alpha)));
        by_chunks(ins[0], 1, |x| {
            let r = relu(s, x, Width::in_range(fp))?;
            let z = x.mapv(|v| v * alpha) + r.mapv(|v| v * rest);
            truncate(s, &z, fp.frac_bits)
        })
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.in_shape(0).iter().product(), 1) {
            deal_relu(d, &[c.len()], Width::in_range(cx.fp))?;
            deal_truncate(d, &[c.len()], cx.fp.frac_bits)?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), 1, |n| relu_cost(cx.comparison, n, Width::in_range(cx.fp)) + truncate_cost(n))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
