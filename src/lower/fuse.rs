//! Fusions: rewrites of the lowered units that save rounds or work and keep the
//! result and its range.

use crate::kernels::Window;
use crate::kernels::linear::window_ranges;
use crate::ops::{Kind, LiftedAdd, ShiftPool};
use crate::plan::{Op, Plan, Source, ValueId};

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
    let consumers =
        |v: ValueId| -> Vec<usize> { (0..run_steps).filter(|&k| plan.steps[k].inputs.contains(&v)).collect() };
    // The one step that consumes `v` (within the steps run on shares), if `v` has
    // exactly one consumer and is not what the servers open.
    let only_consumer = |v: ValueId| -> Option<usize> {
        let c = consumers(v);
        (c.len() == 1
            && v != revealed
            && v != plan.output
            && plan.steps[c[0]].inputs.iter().filter(|&&i| i == v).count() == 1)
            .then(|| c[0])
    };
    for p in 0..kinds.len() {
        if !matches!(&kinds[p], Kind::Product(product) if product.truncates) {
            continue;
        }
        let Some(mut next) = only_consumer(plan.steps[p].output) else { continue };
        let mut add = None;
        if matches!(plan.steps[next].op, Op::Add) {
            let step = &plan.steps[next];
            let lift = usize::from(step.inputs[0] == plan.steps[p].output);
            let bias = step.inputs[lift];
            // The bias broadcasts onto the product, not the other way round.
            let product_shape = &plan.values[plan.steps[p].output].shape;
            if !matches!(plan.values[bias].source, Source::Weight) || &plan.values[step.output].shape != product_shape {
                continue;
            }
            add = Some((next, lift));
            let Some(after) = only_consumer(step.output) else { continue };
            next = after;
        }
        if !matches!(plan.steps[next].op, Op::Relu) {
            continue;
        }
        let relu = next;
        let Some(pool) = only_consumer(plan.steps[relu].output) else { continue };
        let Op::AvgPool(w) = &plan.steps[pool].op else { continue };
        let Some(e) = uniform_pow2_count(&plan.values[plan.steps[pool].inputs[0]].shape, w) else { continue };
        if let Kind::Product(product) = &mut kinds[p] {
            product.truncates = false;
        }
        if let Some((a, lift)) = add {
            kinds[a] = Kind::LiftedAdd(LiftedAdd { lift });
        }
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
