//! Maximum and Minimum of two private tensors (NumPy broadcasting), exactly:
//! max(a, b) = a + ReLU(b − a) and min(a, b) = a − ReLU(a − b), one ReLU each.

use anyhow::Result;
use ndarray::{ArrayD, IxDyn, Zip};

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::plan::broadcast_shape;
use crate::protocol::compare::{deal_relu, relu, relu_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Maximum;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Minimum;

/// The two ops differ only in which way round the ReLU goes.
trait Extremum {
    const NAME: &'static str;
    fn pick<T: PartialOrd + Copy>(a: T, b: T) -> T;
    /// The output from a and ReLU(sign·(b − a)).
    const MAX: bool;
}

impl Extremum for Maximum {
    const NAME: &'static str = "Maximum";
    const MAX: bool = true;
    fn pick<T: PartialOrd + Copy>(a: T, b: T) -> T {
        if b > a { b } else { a }
    }
}

impl Extremum for Minimum {
    const NAME: &'static str = "Minimum";
    const MAX: bool = false;
    fn pick<T: PartialOrd + Copy>(a: T, b: T) -> T {
        if b < a { b } else { a }
    }
}

fn output_shape(ins: &[&[usize]], name: &str) -> Result<Vec<usize>, String> {
    let [a, b] = ins else { return Err(format!("{name} takes two inputs, has {}", ins.len())) };
    broadcast_shape(a, b)
}

fn eval<E: Extremum>(ins: &[&Tensor]) -> Result<Tensor, String> {
    fn both<T: PartialOrd + Copy, E: Extremum>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>, String> {
        let shape = broadcast_shape(a.shape(), b.shape())?;
        let (a, b) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape)));
        let (Some(a), Some(b)) = (a, b) else { return Err(format!("{} of shapes that do not broadcast", E::NAME)) };
        Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| E::pick(x, y)))
    }
    match ins {
        [Tensor::Float(a), Tensor::Float(b)] => Ok(Tensor::Float(both::<_, E>(a, b)?)),
        [Tensor::Int(a), Tensor::Int(b)] => Ok(Tensor::Int(both::<_, E>(a, b)?)),
        _ => Err(format!("{} needs two inputs of one kind", E::NAME)),
    }
}

fn run<E: Extremum>(s: &mut Server, cx: &StepCx, ins: &[&RingTensor]) -> Result<RingTensor> {
    let shape = IxDyn(cx.out_shape());
    let broadcast = |x: &RingTensor| {
        x.broadcast(shape.clone()).map(|v| v.to_owned()).ok_or_else(|| anyhow::anyhow!("shapes do not broadcast"))
    };
    let (a, b) = (broadcast(ins[0])?, broadcast(ins[1])?);
    let diff = if E::MAX { &b - &a } else { &a - &b };
    let r = by_chunks(&diff, 1, |x| relu(s, x, Width::in_range(cx.fp)))?;
    Ok(if E::MAX { a + r } else { a - r })
}

fn deal(d: &mut Dealer, cx: &StepCx) -> Result<()> {
    for c in chunks(cx.out_len(), 1) {
        deal_relu(d, &[c.len()], Width::in_range(cx.fp))?;
    }
    Ok(())
}

macro_rules! extremum_unit {
    ($ty:ty) => {
        impl OpUnit for $ty {
            fn name(&self) -> &'static str {
                <$ty as Extremum>::NAME
            }

            fn arity(&self) -> usize {
                2
            }

            fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
                crate::plan::RowRule::Elementwise
            }

            fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
                output_shape(ins, <$ty as Extremum>::NAME)
            }

            fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
                eval::<$ty>(ins)
            }
        }

        impl SecureOp for $ty {
            fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
                run::<$ty>(s, cx, ins)
            }

            fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
                deal(d, cx)
            }

            fn cost(&self, cx: &mut CostCx) -> Cost {
                chunked_cost(cx.out_len(), 1, |n| relu_cost(cx.comparison, n, Width::in_range(cx.fp)))
            }

            fn pieces(&self, cx: &CostCx) -> usize {
                chunks(cx.out_len(), 1).len()
            }

            fn how(&self) -> How {
                How::Comparison
            }
        }
    };
}

extremum_unit!(Maximum);
extremum_unit!(Minimum);
