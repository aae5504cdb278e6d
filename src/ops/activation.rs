//! The activations TensorFlow exports as one element-wise op of their own (Elu,
//! Selu, Softplus, Softsign, Erf): the exact function in the clear, and under
//! Pond the curve of the same name ([`Curve`], piecewise cubics with exact
//! tails; see `ops/piecewise.rs` for each curve's range and error).

use anyhow::Result;

use super::piecewise::{Curve, Piecewise};
use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activation {
    pub curve: Curve,
}

impl Activation {
    fn secure(&self) -> Piecewise {
        Piecewise { curve: self.curve }
    }
}

impl OpUnit for Activation {
    fn name(&self) -> &'static str {
        self.curve.name()
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
        let curve = self.curve;
        match ins.first() {
            Some(Tensor::Float(x)) => Ok(Tensor::Float(x.mapv(|v| curve.exact(f64::from(v)) as f32))),
            _ => Err(format!("{} needs a float input", curve.name())),
        }
    }
}

impl SecureOp for Activation {
    fn run(&self, s: &mut Server, cx: &StepCx, masks: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        self.secure().run(s, cx, masks, ins)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, masks: &mut DealerMasks) -> Result<()> {
        self.secure().deal(d, cx, masks)
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        self.secure().cost(cx)
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        self.secure().pieces(cx)
    }

    fn how(&self) -> How {
        self.curve.how()
    }
}
