//! Greater(a, b) = [a > b] of two private (or weight) tensors, NumPy
//! broadcasting, exactly, as the fixed-point 1.0 or 0.0: 1 − DReLU(b − a), one
//! DReLU whose bit is lifted to the fixed point locally (times 2^f). It is what
//! `tf.where(x > 0, …)` exports beside SelectV2 (Keras 3's `ELU(alpha ≠ 1)` is
//! `SelectV2(Greater(x, 0), Elu(x), alpha·Elu(x))`), which the importer turns
//! into e + c·(t − e): one product.
//!
//! The servers receive only what a DReLU opens (masked values and a masked bit).

use std::num::Wrapping;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn, Zip};

use super::{
    CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks, public_share,
};
use crate::plan::broadcast_shape;
use crate::protocol::compare::{deal_drelu, drelu, drelu_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Greater;

impl OpUnit for Greater {
    fn name(&self) -> &'static str {
        "Greater"
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [a, b] = ins else { return Err(format!("Greater takes two inputs, has {}", ins.len())) };
        broadcast_shape(a, b)
    }

    /// 1.0 where a > b, else 0.0 (TensorFlow's bool, as the float a product takes).
    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        fn both<T: PartialOrd + Copy>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<f32>, String> {
            let shape = broadcast_shape(a.shape(), b.shape())?;
            let (a, b) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape)));
            let (Some(a), Some(b)) = (a, b) else { return Err("Greater of shapes that do not broadcast".into()) };
            Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| if x > y { 1.0 } else { 0.0 }))
        }
        match ins {
            [Tensor::Float(a), Tensor::Float(b)] => Ok(Tensor::Float(both(a, b)?)),
            [Tensor::Int(a), Tensor::Int(b)] => Ok(Tensor::Float(both(a, b)?)),
            _ => Err("Greater needs two inputs of one kind".into()),
        }
    }
}

impl SecureOp for Greater {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let shape = IxDyn(cx.out_shape());
        let broadcast = |x: &RingTensor| {
            x.broadcast(shape.clone()).map(|v| v.to_owned()).ok_or_else(|| anyhow::anyhow!("shapes do not broadcast"))
        };
        let (a, b) = (broadcast(ins[0])?, broadcast(ins[1])?);
        let d = by_chunks(&(&b - &a), 1, |x| drelu(s, x))?;
        let unit = Wrapping(1u64 << cx.fp.frac_bits);
        let one = public_share(s, unit);
        Ok(d.mapv(|bit| one - bit * unit))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.out_len(), 1) {
            deal_drelu(d, c.len())?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), 1, drelu_cost)
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
