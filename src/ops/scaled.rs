//! AvgPool and Mean: a local sum times the public 1/count, then one truncation.
//! [`ShiftPool`] is the AvgPool that also takes a product's deferred truncation;
//! [`SumPool`] the AvgPool whose division a [`super::ReluShift`] before it took.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx};
use crate::kernels::linear;
use crate::plan::Op;
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::{FixedPoint, RingTensor};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaled;

impl Scaled {
    pub fn fits(op: &Op) -> bool {
        matches!(op, Op::AvgPool(_) | Op::Mean { .. })
    }
}

impl SecureOp for Scaled {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let z = scaled_sum(&cx.step.op, ins[0], cx.fp);
        truncate(s, &z, cx.fp.frac_bits + scale_bits(&cx.step.op, ins[0].shape()))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_truncate(d, cx.out_shape(), cx.fp.frac_bits + scale_bits(&cx.step.op, cx.in_shape(0)))
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        truncate_cost(cx.out_len())
    }

    fn how(&self) -> How {
        How::Scaled
    }
}

/// AvgPool of a value at 2f fractional bits whose every window holds 2^e
/// elements: the local sum, truncated by f + e (the product's deferred f and the
/// division by the count in one truncation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShiftPool {
    pub e: u32,
}

impl SecureOp for ShiftPool {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let Op::AvgPool(w) = &cx.step.op else { anyhow::bail!("a shift pool is an AvgPool") };
        truncate(s, &linear::sum_pool(ins[0], w).0, cx.fp.frac_bits + self.e)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_truncate(d, cx.out_shape(), cx.fp.frac_bits + self.e)
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        truncate_cost(cx.out_len())
    }

    fn how(&self) -> How {
        How::Scaled
    }
}

/// AvgPool whose every window holds 2^e elements, after a [`super::ReluShift`]
/// that already divided each element by 2^e: the local sum of each window.
/// Each element is within one ulp of its quotient, so the mean is within 2^e
/// ulps (rounding is unbiased: each ulp is added with the dropped fraction's
/// probability).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SumPool {
    pub e: u32,
}

impl SecureOp for SumPool {
    fn run(&self, _: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let Op::AvgPool(w) = &cx.step.op else { anyhow::bail!("a sum pool is an AvgPool") };
        Ok(linear::sum_pool(ins[0], w).0)
    }

    fn deal(&self, _: &mut Dealer, _: &StepCx, _: &mut DealerMasks) -> Result<()> {
        Ok(())
    }

    fn cost(&self, _: &mut CostCx) -> Cost {
        Cost::ZERO
    }

    fn how(&self) -> How {
        How::Local
    }
}

/// Extra fractional bits for the public 1/count of AvgPool and Mean: e =
/// ⌈log2(count)⌉, so that 1/count, encoded with f + e bits, is an integer of at
/// least 2^f and its rounding costs at most 2^−(f+1) relative (with f bits alone,
/// 1/784 would be 84/2^16: 0.6% off).
pub fn scale_bits(op: &Op, input_shape: &[usize]) -> u32 {
    let count = match op {
        Op::AvgPool(w) => w.kernel[0] * w.kernel[1],
        Op::Mean { axes, .. } => axes.iter().map(|&a| input_shape[a]).product(),
        _ => 1,
    };
    count.max(1).next_power_of_two().trailing_zeros()
}

/// AvgPool and Mean: a local sum times the public 1/count with f + e fractional
/// bits; the caller truncates by f + e.
fn scaled_sum(op: &Op, x: &RingTensor, fp: FixedPoint) -> RingTensor {
    let scale = FixedPoint { frac_bits: fp.frac_bits + scale_bits(op, x.shape()) };
    match op {
        Op::AvgPool(w) => {
            let (mut sums, counts) = linear::sum_pool(x, w);
            // The counts are per output pixel, wherever the layout keeps its rows and columns.
            for (at, v) in sums.indexed_iter_mut() {
                let [_, oy, ox, _] = w.layout.split(ndarray::Dimension::slice(&at)).expect("a pool's output is 4-D");
                *v *= scale.encode_value(1.0 / counts[[oy, ox]] as f64);
            }
            sums
        }
        Op::Mean { axes, keep_dims } => {
            let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
            let factor = scale.encode_value(1.0 / count as f64);
            linear::reduce_sum(x, axes, *keep_dims).mapv(|v| v * factor)
        }
        // Lowering gives this unit AvgPool and Mean only (`Scaled::fits`).
        _ => x.clone(),
    }
}
