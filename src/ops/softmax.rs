//! Softmax over the last axis inside a graph (one that feeds other ops; a final
//! Softmax is still applied by the client, which is cheaper and exact):
//!
//! ```text
//! m = max of each row (tournament)     d = x − m ≤ 0 (local)
//! e = exp(d) on (−∞, 0] (piecewise)    s = Σ e over the row (local), s ∈ [1, n]
//! r = 1/s (protocol::inverse on [2^−1, 2^(⌊log2 n⌋+2)))    out = e·r (one product)
//! ```
//!
//! The exponential is cubics on 24 segments of [−12, 0] (width 1/2), exactly 0
//! below −12 and exactly 1 at 0 (the row's maximum), relative error ≤ 4.6e-5
//! inside. The row's sum is at least 1 (its maximum's term) and at most n, so
//! the reciprocal needs only the octaves between, a few comparisons per row
//! rather than the 25 of a general reciprocal.
//!
//! Error: |out − softmax(x)| ≤ 1e-4 (measured on random rows by `tests/ops.rs`),
//! mostly the fixed-point rounding of e and r.

use std::sync::OnceLock;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::tournament::reduce_groups;
use super::{CostCx, DealerMasks, Groups, How, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{
    self, deal_piecewise, deal_tournament, piecewise, piecewise_many_cost, tournament, tournament_cost,
};
use crate::protocol::inverse::{Inverse, Power, deal_inverse, inverse, inverse_cost};
use crate::protocol::mul::{deal_mul_pairs, mul_pairs, mul_pairs_cost};
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::{RingTensor, Z};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Softmax;

/// exp on [−12, 0]: exactly 0 below, exactly 1 from 0 on.
fn exp_curve() -> &'static compare::Piecewise {
    static CURVE: OnceLock<compare::Piecewise> = OnceLock::new();
    CURVE.get_or_init(|| compare::Piecewise::fit(f64::exp, -12.0, 0.0, 24, 0.0, 1.0))
}

/// The reciprocal of a row's sum, for rows of `n`: s ∈ [1, n] (up to rounding).
fn row_inverse(n: usize) -> Inverse {
    let bits = (usize::BITS - n.leading_zeros()) as i32;
    Inverse { power: Power::Reciprocal, lo: -1, hi: bits + 1 }
}

/// The shape's rows: (how many, their length).
fn rows(shape: &[usize]) -> (usize, usize) {
    let n = shape.last().copied().unwrap_or(1).max(1);
    (shape.iter().product::<usize>() / n, n)
}

fn groups(shape: &[usize]) -> Groups {
    Groups::Reduce { shape: shape.to_vec(), axes: vec![shape.len().saturating_sub(1)] }
}

impl SecureOp for Softmax {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let (fp, x, shape) = (cx.fp, ins[0], cx.in_shape(0));
        let (count, n) = rows(shape);
        let (max, _) = tournament(s, x, &reduce_groups(shape, &[shape.len() - 1]), false, Width::in_range(fp))?;
        let max: Vec<Z> = max.iter().copied().collect();
        let shifted: Vec<Z> = x.iter().enumerate().map(|(i, &v)| v - max[i / n]).collect();
        let shifted = ArrayD::from_shape_vec(IxDyn(&[count * n]), shifted)?;
        let curve = exp_curve();
        let e = by_chunks(&shifted, curve.breaks.len(), |c| piecewise(s, c, curve, fp))?;
        let terms: Vec<Z> = e.iter().copied().collect();
        let sums: Vec<Z> = terms.chunks(n).map(|row| row.iter().copied().sum()).collect();
        let sums = ArrayD::from_shape_vec(IxDyn(&[count]), sums)?;
        let inv = row_inverse(n);
        let r = by_chunks(&sums, inv.breaks(), |c| inverse(s, c, &inv, fp))?;
        let spread = ArrayD::from_shape_vec(IxDyn(&[count * n]), (0..count * n).map(|i| r[[i / n]]).collect())?;
        let z = mul_pairs(s, &[(&e, &spread)])?.remove(0);
        Ok(truncate(s, &z, fp.frac_bits)?.into_shape_with_order(IxDyn(shape))?)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let (fp, shape) = (cx.fp, cx.in_shape(0));
        let (count, n) = rows(shape);
        deal_tournament(d, &reduce_groups(shape, &[shape.len() - 1]), false, Width::in_range(fp))?;
        let curve = exp_curve();
        for c in chunks(count * n, curve.breaks.len()) {
            deal_piecewise(d, &[c.len()], curve, fp)?;
        }
        let inv = row_inverse(n);
        for c in chunks(count, inv.breaks()) {
            deal_inverse(d, c.len(), &inv, fp)?;
        }
        deal_mul_pairs(d, &[&[count * n]])?;
        deal_truncate(d, &[count * n], fp.frac_bits)
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let shape = &cx.plan.values[cx.step.inputs[0]].shape;
        let (count, n) = rows(shape);
        let breaks = exp_curve().breaks.len();
        let inv = row_inverse(n);
        let w = exp_curve().width(cx.fp);
        tournament_cost(cx.comparison, &groups(shape).sizes(), false, Width::in_range(cx.fp))
            + chunked_cost(count * n, breaks, |c| piecewise_many_cost(cx.comparison, c, breaks, 1, w))
            + chunked_cost(count, inv.breaks(), |c| inverse_cost(cx.comparison, c, &inv, cx.fp))
            + mul_pairs_cost(&[count * n])
            + truncate_cost(count * n)
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), exp_curve().breaks.len()).len()
    }

    /// The tournament's groups: one per row.
    fn materialised(&self, cx: &CostCx) -> u64 {
        let (count, n) = rows(&cx.plan.values[cx.step.inputs[0]].shape);
        (8 * n as u64 + 24) * count as u64
    }

    fn how(&self) -> How {
        How::Approximation {
            function: "softmax",
            range: [f64::NEG_INFINITY, f64::INFINITY],
            error: "|error| ≤ 1e-4 (tests/ops.rs, on random rows)".into(),
            outside: "no input is outside: exp runs on x − max ≤ 0, exactly 0 below −12".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exponential_on_the_negative_half_line_is_accurate_and_exact_at_its_ends() {
        let pw = exp_curve();
        let worst = (0..=100_000)
            .map(|i| -12.0 * i as f64 / 100_000.0)
            .map(|x: f64| ((pw.eval(x) - x.exp()) / x.exp()).abs())
            .fold(0.0, f64::max);
        eprintln!("softmax's exp: max relative error on [-12, 0] {worst:.2e}");
        assert!(worst < 5e-5, "{worst}");
        assert_eq!((pw.eval(0.0), pw.eval(-12.001), pw.eval(-1e6)), (1.0, 0.0, 0.0));
    }

    #[test]
    fn a_row_sum_lies_inside_its_reciprocals_range() {
        for n in [1usize, 2, 3, 10, 16, 1000] {
            let inv = row_inverse(n);
            assert!(2f64.powi(inv.lo) <= 0.5 && (n as f64) * 1.01 < 2f64.powi(inv.hi), "{n}: {inv:?}");
        }
    }
}
