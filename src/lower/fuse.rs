//! Fusions: rewrites of the lowered units that save rounds or work and keep the
//! result and its range.

use crate::kernels::Window;
use crate::kernels::linear::window_ranges;
use crate::ops::{Kind, LiftedAdd, ReluShift, ShiftPool, SumPool};
use crate::plan::{Op, Plan, Source, ValueId};

/// The one step that consumes `v` among the first `run_steps` steps, if `v` has
/// exactly one consumer, read once, and is neither what the servers open nor
/// the plan's output.
fn only_consumer(plan: &Plan, run_steps: usize, revealed: ValueId, v: ValueId) -> Option<usize> {
    let c: Vec<usize> = (0..run_steps).filter(|&k| plan.steps[k].inputs.contains(&v)).collect();
    (c.len() == 1
        && v != revealed
        && v != plan.output
        && plan.steps[c[0]].inputs.iter().filter(|&&i| i == v).count() == 1)
        .then(|| c[0])
}

/// The bias Add after product step `p`, if it is one, and the input position
/// of its bias (a weight broadcast onto the product, not the other way round).
fn bias_add(plan: &Plan, p: usize, next: usize) -> Option<(usize, usize)> {
    let step = &plan.steps[next];
    if !matches!(step.op, Op::Add) {
        return None;
    }
    let lift = usize::from(step.inputs[0] == plan.steps[p].output);
    let bias = step.inputs[lift];
    let product_shape = &plan.values[plan.steps[p].output].shape;
    (matches!(plan.values[bias].source, Source::Weight) && &plan.values[step.output].shape == product_shape)
        .then_some((next, lift))
}

/// A block of a truncating product step: its optional bias Add (step, lift) and
/// the ReLU that its output, alone, flows into.
struct ReluBlock {
    add: Option<(usize, usize)>,
    relu: usize,
}

/// The [`ReluBlock`] of step `p`, if `p` is a product that truncates and its
/// output reaches a ReLU through nothing but an optional bias Add.
fn relu_block(plan: &Plan, kinds: &[Kind], p: usize, only: impl Fn(ValueId) -> Option<usize>) -> Option<ReluBlock> {
    if !matches!(&kinds[p], Kind::Product(product) if product.truncates) {
        return None;
    }
    let mut next = only(plan.steps[p].output)?;
    let add = bias_add(plan, p, next);
    if let Some((a, _)) = add {
        next = only(plan.steps[a].output)?;
    }
    matches!(plan.steps[next].op, Op::Relu).then_some(ReluBlock { add, relu: next })
}

/// The ReLU's only reader, if it is an AvgPool whose windows all hold 2^e
/// elements: (pool step, e).
fn pow2_pool_after(plan: &Plan, relu: usize, only: impl Fn(ValueId) -> Option<usize>) -> Option<(usize, u32)> {
    let pool = only(plan.steps[relu].output)?;
    let Op::AvgPool(w) = &plan.steps[pool].op else { return None };
    uniform_pow2_count(&plan.values[plan.steps[pool].inputs[0]].shape, w).map(|e| (pool, e))
}

/// The product of `block` keeps its 2f bits; its bias Add lifts the bias to them.
fn keep_product_scale(kinds: &mut [Kind], p: usize, block: &ReluBlock) {
    if let Kind::Product(product) = &mut kinds[p] {
        product.truncates = false;
    }
    if let Some((a, lift)) = block.add {
        kinds[a] = Kind::LiftedAdd(LiftedAdd { lift });
    }
}

/// Under `--comparison fss`: a product whose output only flows, through an
/// optional bias Add, into a ReLU keeps its 2f fractional bits, and the ReLU
/// becomes a [`ReluShift`] that truncates in its own opening (one round for
/// ReLU and truncation, where they took two). When the ReLU's only reader is an
/// AvgPool whose windows all hold 2^e elements, the gate shifts by f + e and the
/// pool only sums ([`SumPool`]): Conv2D → Add → Relu → AvgPool costs the
/// product's opening and the gate's, nothing else. The ReLU's input at 2f bits
/// needs no range beyond the ring's: the gate's sign is exact for every ring
/// element, and its shift for every non-negative one (docs/PROTOCOL.md).
pub(super) fn fuse_relu_truncations(plan: &Plan, kinds: &mut [Kind], revealed: ValueId) {
    let run_steps = kinds.len();
    let only = |v: ValueId| only_consumer(plan, run_steps, revealed, v);
    for p in 0..kinds.len() {
        let Some(block) = relu_block(plan, kinds, p, only) else { continue };
        if !matches!(kinds[block.relu], Kind::Relu(_)) {
            continue;
        }
        let pool = pow2_pool_after(plan, block.relu, only).filter(|&(pool, _)| matches!(kinds[pool], Kind::Scaled(_)));
        keep_product_scale(kinds, p, &block);
        let e = pool.map_or(0, |(_, e)| e);
        kinds[block.relu] = Kind::ReluShift(ReluShift { e });
        if let Some((pool, e)) = pool {
            kinds[pool] = Kind::SumPool(SumPool { e });
        }
    }
}

/// Defer a product's truncation when its output only flows, through an optional
/// bias Add and a ReLU, into an AvgPool whose windows all hold 2^e elements
/// (Conv2D → Add → Relu → AvgPool, the classic CNN block). ReLU does not care
/// about the scale, and the pool's own truncation by f + e can take the
/// product's f as well: one truncation instead of two, on a quarter of the
/// elements for a 2×2 pool, and one round less. The range does not change: the
/// pool's sum at 2f bits is below 2^62 exactly when the mean is below
/// 2^(62−2f−e), the AvgPool's range already (docs/PROTOCOL.md).
pub(super) fn defer_truncations(plan: &Plan, kinds: &mut [Kind], revealed: ValueId) {
    let run_steps = kinds.len();
    let only = |v: ValueId| only_consumer(plan, run_steps, revealed, v);
    for p in 0..kinds.len() {
        let Some(block) = relu_block(plan, kinds, p, only) else { continue };
        let Some((pool, e)) = pow2_pool_after(plan, block.relu, only) else { continue };
        keep_product_scale(kinds, p, &block);
        kinds[pool] = Kind::ShiftPool(ShiftPool { e });
    }
}

/// e if every window of the pool over an input of `shape` (in its layout) covers
/// exactly 2^e input pixels.
fn uniform_pow2_count(shape: &[usize], w: &Window) -> Option<u32> {
    let [_, h, wd, _] = w.layout.split(shape)?;
    let g = w.geometry([h, wd])?;
    let mut count = None;
    for oy in 0..g.out[0] {
        for ox in 0..g.out[1] {
            let (ys, xs) = window_ranges(w, &g, [h, wd], [oy, ox]);
            let c = ys.len() * xs.len();
            if *count.get_or_insert(c) != c {
                return None;
            }
        }
    }
    count.filter(|c: &usize| c.is_power_of_two()).map(|c| c.trailing_zeros())
}
