//! Less: [x < y] element-wise (with NumPy broadcasting), as a fixed-point 0 or 1.
//! Keras 3's `take` (its Embedding) wraps negative ids with
//! `where(ids < 0, ids + V, ids)`: the comparison is this unit, the selection a
//! product (`frontend/tf/ops/math.rs`, `select_v2`).
//!
//! [x < y] = 1 − [x − y ≥ 0]: one DReLU of the difference (local), exact, then the
//! integer bit times 2^f (local). The servers see what DReLU shows them: masked
//! values and bits.

use anyhow::Result;

use super::{
    CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks, public_share,
};
use crate::protocol::compare::{deal_drelu, drelu, drelu_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Less;

impl OpUnit for Less {
    fn name(&self) -> &'static str {
        "Less"
    }

    fn arity(&self) -> usize {
        2
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        crate::plan::RowRule::Elementwise
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [x, y] = ins else { return Err(format!("expects 2 inputs, has {}", ins.len())) };
        crate::plan::broadcast_shape(x, y)
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        match ins {
            [Tensor::Float(x), Tensor::Float(y)] => {
                let shape = crate::plan::broadcast_shape(x.shape(), y.shape())?;
                let (x, y) = broadcast_both(x, y, &shape)?;
                Ok(Tensor::Float(ndarray::Zip::from(&x).and(&y).map_collect(|a, b| f32::from(u8::from(a < b)))))
            }
            [Tensor::Int(x), Tensor::Int(y)] => {
                let shape = crate::plan::broadcast_shape(x.shape(), y.shape())?;
                let (x, y) = broadcast_both(x, y, &shape)?;
                Ok(Tensor::Int(ndarray::Zip::from(&x).and(&y).map_collect(|a, b| i64::from(a < b))))
            }
            _ => Err("Less of a float and an integer tensor".into()),
        }
    }
}

fn broadcast_both<'a, T>(
    x: &'a ndarray::ArrayD<T>,
    y: &'a ndarray::ArrayD<T>,
    shape: &[usize],
) -> Result<(ndarray::ArrayViewD<'a, T>, ndarray::ArrayViewD<'a, T>), String> {
    let fail = || format!("shapes {:?} and {:?} do not broadcast", x.shape(), y.shape());
    Ok((x.broadcast(shape).ok_or_else(fail)?, y.broadcast(shape).ok_or_else(fail)?))
}

impl SecureOp for Less {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let shape = cx.out_shape();
        let (x, y) = (ins[0].broadcast(shape), ins[1].broadcast(shape));
        let (Some(x), Some(y)) = (x, y) else { anyhow::bail!("Less: inputs do not broadcast to {shape:?}") };
        let diff: RingTensor = &x - &y;
        let one = std::num::Wrapping(1u64 << cx.fp.frac_bits);
        let public_one = public_share(s, one);
        by_chunks(&diff, 1, |d| Ok(drelu(s, d, Width::in_range(cx.fp))?.mapv(|bit| public_one - bit * one)))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        for c in chunks(cx.out_len(), 1) {
            deal_drelu(d, c.len(), Width::in_range(cx.fp))?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        chunked_cost(cx.out_len(), 1, |n| drelu_cost(cx.comparison, n, Width::in_range(cx.fp)))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), 1).len()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}
