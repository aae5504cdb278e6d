//! A Beaver product (MatMul, Conv2D, Mul), then its truncation unless lowering
//! deferred it (see `lower::fuse`).
//!
//! Each operand enters in masked form: a weight was masked and opened at set-up;
//! an activation is opened the first time a product needs it in this prediction
//! (all of a step's openings in one round), then reused by later products.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx};
use crate::plan::{Op, Source, ValueId};
use crate::protocol::mul::{Bilinear, Masked, deal_product, open_cost, product};
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub map: Bilinear,
    /// False when the output keeps 2f fractional bits for a later step to
    /// truncate (a deferred truncation).
    pub truncates: bool,
}

impl Product {
    /// The bilinear map of a product op, if it is one.
    pub fn map_of(op: &Op) -> Option<Bilinear> {
        match op {
            Op::MatMul { transpose_a, transpose_b } => {
                Some(Bilinear::MatMul { transpose_a: *transpose_a, transpose_b: *transpose_b })
            }
            Op::Conv2D(w) => Some(Bilinear::Conv2D(*w)),
            Op::Mul => Some(Bilinear::Elementwise),
            _ => None,
        }
    }
}

/// `Product` or `ProductKeepScale`: what matters when reading a lowered program.
impl std::fmt::Debug for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.truncates { "Product" } else { "ProductKeepScale" })
    }
}

impl SecureOp for Product {
    fn run(&self, s: &mut Server, cx: &StepCx, masks: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let operands = masked_operands(s, cx, masks, ins)?;
        let z = product(s, &self.map, operands[0], operands[1], cx.out_shape())?;
        if self.truncates { truncate(s, &z, cx.fp.frac_bits) } else { Ok(z) }
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, masks: &mut DealerMasks) -> Result<()> {
        // Each operand's whole mask, drawn the first time this prediction needs
        // it, then read where it is kept (a weight's for the whole session).
        for &v in &cx.step.inputs {
            if !masks.weights.contains_key(&v) {
                masks.activations.entry(v).or_insert_with(|| d.mask(cx.seq, v as u32, cx.shape(v)));
            }
        }
        let mask = |v: ValueId| masks.weights.get(&v).or_else(|| masks.activations.get(&v)).expect("drawn above");
        deal_product(d, &self.map, mask(cx.step.inputs[0]), mask(cx.step.inputs[1]))?;
        if self.truncates {
            deal_truncate(d, cx.out_shape(), cx.fp.frac_bits)?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        // The activations not yet opened in this prediction, in one round; then
        // the truncation's, unless it is deferred.
        let mut words = 0;
        for &v in &cx.step.inputs {
            if !matches!(cx.plan.values[v].source, Source::Weight) && !cx.opened[v] {
                cx.opened[v] = true;
                words += cx.plan.values[v].len();
            }
        }
        let truncation = if self.truncates { truncate_cost(cx.out_len()) } else { Cost::ZERO };
        open_cost(words) + truncation
    }

    fn masks_operands(&self) -> bool {
        true
    }

    fn how(&self) -> How {
        How::Product
    }
}

/// The masked form of each operand: weights were opened at set-up; activations
/// not yet opened in this prediction are opened now, all in one round. Read
/// where they are kept, not copied: a weight's mask and opening are as large as
/// the weight, and serve every prediction of the session.
fn masked_operands<'m>(
    s: &mut Server,
    cx: &StepCx,
    masks: &'m mut ServerMasks,
    ins: &[&RingTensor],
) -> Result<Vec<&'m Masked>> {
    let mut to_open: Vec<(ValueId, &RingTensor)> = cx
        .step
        .inputs
        .iter()
        .copied()
        .zip(ins.iter().copied())
        .filter(|(v, _)| !masks.weights.contains_key(v) && !masks.activations.contains_key(v))
        .collect();
    to_open.dedup_by_key(|(v, _)| *v);
    if !to_open.is_empty() {
        let mask_shares: Vec<RingTensor> = to_open.iter().map(|(v, x)| s.mask(cx.seq, *v as u32, x.shape())).collect();
        let diffs: Vec<RingTensor> = to_open.iter().zip(&mask_shares).map(|((_, x), m)| *x - m).collect();
        let opened = s.open(&diffs.iter().collect::<Vec<_>>())?;
        for (((v, _), mask), opened) in to_open.into_iter().zip(mask_shares).zip(opened) {
            masks.activations.insert(v, Masked { mask, opened });
        }
    }
    Ok(cx
        .step
        .inputs
        .iter()
        .map(|v| masks.weights.get(v).or_else(|| masks.activations.get(v)).expect("masked above"))
        .collect())
}
