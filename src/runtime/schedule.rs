//! How a plan runs under Pond: which protocol each step uses, what the client
//! computes after it opens the output, and the communication the formulas predict.

use anyhow::Result;

use crate::error::Error;
use crate::kernels::linear::window_ranges;
use crate::plan::{Op, Plan, Source, ValueId};
use crate::protocol::compare::{Piecewise, drelu_open_words, pair_up, relu_open_words};

/// The protocol of one step.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Local on shares: data movement, Add, Sub, Neg, Sum.
    Local,
    /// A Beaver product (MatMul, Conv2D, Mul), then truncation.
    Product,
    /// A Beaver product whose truncation is deferred: its output keeps 2f
    /// fractional bits until a [`Kind::ShiftPool`] (see [`defer_truncations`]).
    ProductKeepScale,
    /// Add with one operand at 2f fractional bits: the other, at f, is lifted by
    /// the public 2^f first (`lift` is its input position).
    LiftedAdd {
        lift: usize,
    },
    /// A local sum times a public scale (AvgPool, Mean), then truncation.
    Scaled,
    /// AvgPool of a value at 2f fractional bits whose every window holds 2^e
    /// elements: the local sum, truncated by f + e (the product's deferred f and
    /// the division by the count in one truncation).
    ShiftPool {
        e: u32,
    },
    Relu,
    /// Max over groups of elements by tournament (MaxPool, Max), or ArgMax.
    Tournament {
        groups: Vec<Vec<usize>>,
        with_index: bool,
    },
    Piecewise(Piecewise),
}

/// What the client applies, in the clear, to the opened output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFinal {
    /// The servers open the logits minus the first logit of each row: softmax is
    /// invariant under that shift, and the differences log p_i − log p_0 are a
    /// function of the softmax output itself, so the client learns nothing more.
    Softmax,
    /// Sigmoid is a bijection: its input and its output tell the same.
    Sigmoid,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    /// The public plan: shapes and architecture, no weights.
    pub plan: Plan,
    /// One kind per plan step that runs on shares.
    pub kinds: Vec<Kind>,
    /// The value the servers open to the client.
    pub revealed: ValueId,
    pub client_final: Option<ClientFinal>,
    /// Fractional bits of the revealed value (0 for ArgMax's integer output).
    pub revealed_frac_bits: Option<u32>,
    /// Weights that enter products, masked and opened once per session.
    pub masked_weights: Vec<ValueId>,
}

impl Schedule {
    pub fn new(plan: &Plan) -> Result<Schedule> {
        let plan = plan.public();
        if plan.steps.len() > MAX_PLAN_STEPS || plan.values.len() > MAX_PLAN_VALUES {
            return Err(Error::unsupported(format!(
                "a plan of {} steps and {} values: at most {MAX_PLAN_STEPS} steps and {MAX_PLAN_VALUES} values",
                plan.steps.len(),
                plan.values.len()
            )));
        }
        let last = plan.steps.iter().position(|s| s.output == plan.output);
        let client_final = last.and_then(|i| match plan.steps[i].op {
            Op::Softmax => Some(ClientFinal::Softmax),
            Op::Sigmoid => Some(ClientFinal::Sigmoid),
            _ => None,
        });
        let run_steps = match (last, client_final) {
            (Some(i), Some(_)) => i,
            _ => plan.steps.len(),
        };
        let revealed = if client_final.is_some() { plan.steps[run_steps].inputs[0] } else { plan.output };
        let mut kinds = Vec::with_capacity(run_steps);
        for step in &plan.steps[..run_steps] {
            let shape = |v: ValueId| plan.values[v].shape.clone();
            let unsupported = |why: &str| {
                Error::unsupported(format!("{} `{}`: {why}; run it with --plaintext", step.op_type, step.node))
            };
            let kind = match &step.op {
                op if op.is_data_movement() => Kind::Local,
                Op::Add | Op::Sub | Op::Neg | Op::Sum { .. } => Kind::Local,
                Op::MatMul { .. } | Op::Conv2D(_) | Op::Mul => Kind::Product,
                Op::AvgPool(_) | Op::Mean { .. } => Kind::Scaled,
                Op::Relu => Kind::Relu,
                Op::MaxPool(w) => {
                    Kind::Tournament { groups: pool_groups(&shape(step.inputs[0]), w), with_index: false }
                }
                Op::Max { axes, .. } => {
                    Kind::Tournament { groups: reduce_groups(&shape(step.inputs[0]), axes), with_index: false }
                }
                Op::ArgMax { axis } if step.output == plan.output => {
                    Kind::Tournament { groups: reduce_groups(&shape(step.inputs[0]), &[*axis]), with_index: true }
                }
                Op::ArgMax { .. } => {
                    return Err(unsupported("ArgMax runs securely only as the model's output"));
                }
                Op::Sigmoid => Kind::Piecewise(Piecewise::sigmoid()),
                Op::Tanh => Kind::Piecewise(Piecewise::tanh()),
                Op::Softmax => {
                    return Err(unsupported(
                        "Softmax runs securely only as the model's last op (the client applies it)",
                    ));
                }
                Op::Rsqrt => {
                    return Err(unsupported("Rsqrt of a private value is not supported under Pond"));
                }
                Op::CastToInt | Op::CastToFloat => {
                    return Err(unsupported("a cast of a private value is not supported under Pond"));
                }
                other => {
                    return Err(unsupported(&format!("{} has no secure protocol", other.name())));
                }
            };
            if step.inputs.iter().any(|&v| plan.values[v].vtype == crate::plan::ValueType::Int) {
                return Err(unsupported("integer values cannot be computed on"));
            }
            kinds.push(kind);
        }
        defer_truncations(&plan, &mut kinds, revealed);
        let mut masked_weights: Vec<ValueId> = plan.steps[..run_steps]
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| matches!(k, Kind::Product | Kind::ProductKeepScale))
            .flat_map(|(s, _)| s.inputs.iter().copied())
            .filter(|&v| matches!(plan.values[v].source, Source::Weight))
            .collect();
        masked_weights.sort_unstable();
        masked_weights.dedup();
        let revealed_int = plan.values[revealed].vtype == crate::plan::ValueType::Int;
        Ok(Schedule {
            plan,
            kinds,
            revealed,
            client_final,
            revealed_frac_bits: if revealed_int { Some(0) } else { None },
            masked_weights,
        })
    }

    /// Planned bytes each server sends, and rounds, for each step; plus the set-up
    /// (opening the masked weights) and per-prediction totals. See docs/PROTOCOL.md.
    pub fn planned(&self) -> Vec<Planned> {
        let mut opened = vec![false; self.plan.values.len()];
        self.kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let step = &self.plan.steps[i];
                let out: usize = self.plan.values[step.output].len();
                match kind {
                    Kind::Local => Planned::default(),
                    Kind::Product | Kind::ProductKeepScale => {
                        // The activations not yet opened in this prediction, in one
                        // round; then the truncation's, unless it is deferred.
                        let mut words = 0;
                        for &v in &step.inputs {
                            if !matches!(self.plan.values[v].source, Source::Weight) && !opened[v] {
                                opened[v] = true;
                                words += self.plan.values[v].len();
                            }
                        }
                        let opening = Planned { bytes: 8 * words as u64, rounds: u64::from(words > 0) };
                        let truncation = match kind {
                            Kind::Product => Planned { bytes: 8 * out as u64, rounds: 1 },
                            _ => Planned::default(),
                        };
                        opening.add(truncation)
                    }
                    Kind::LiftedAdd { .. } => Planned::default(),
                    Kind::Scaled | Kind::ShiftPool { .. } => Planned { bytes: 8 * out as u64, rounds: 1 },
                    Kind::Relu => chunks(out, 1)
                        .into_iter()
                        .map(|c| Planned { bytes: 8 * relu_open_words(c.len()) as u64, rounds: 8 })
                        .fold(Planned::default(), Planned::add),
                    Kind::Tournament { groups, with_index } => {
                        let mut groups = groups.clone();
                        let mut p = Planned::default();
                        while groups.iter().any(|g| g.len() > 1) {
                            let crate::protocol::compare::Pairing { pairs, next, .. } = pair_up(&groups);
                            let n = pairs.len();
                            let operands = if *with_index { 2 } else { 1 };
                            p.bytes += drelu_bytes(n) + 8 * ((1 + operands) * n) as u64;
                            p.rounds += 9;
                            groups = next;
                        }
                        p
                    }
                    Kind::Piecewise(pw) => chunks(out, pw.breaks.len())
                        .into_iter()
                        .map(|c| {
                            // DReLU of every breakpoint; u² and u³ (a pair of operands
                            // and a truncation each); three products and a truncation.
                            let n = c.len();
                            Planned { bytes: drelu_bytes(pw.breaks.len() * n) + 8 * (13 * n) as u64, rounds: 8 + 6 }
                        })
                        .fold(Planned::default(), Planned::add),
                }
            })
            .collect()
    }

    /// Bytes each server sends at set-up: its share of every masked weight.
    /// An estimate of the peak memory of a secure prediction with all parties in
    /// one process, in bytes, fitted to measured peak RSS (BENCHMARKS.md, Memory):
    /// the dealer's material for a whole prediction waits in the mailbox before the
    /// online phase (about 1.1x the words the servers exchange); the servers keep
    /// shares, masks and opened values of the plan's values (about 6x their
    /// 8-byte size in all); and the largest chunk of a step is in flight with its
    /// temporaries (about 7x its messages).
    pub fn estimate_memory(&self) -> u64 {
        let values: u64 = self.plan.values.iter().map(|v| v.len() as u64 * 8).sum();
        let planned = self.planned();
        let exchanged: u64 = planned.iter().map(|p| p.bytes).sum();
        let largest_chunk = planned
            .iter()
            .zip(&self.kinds)
            .zip(&self.plan.steps)
            .map(|((p, kind), step)| {
                let n = self.plan.values[step.output].len();
                let pieces = match kind {
                    Kind::Relu => chunks(n, 1).len(),
                    Kind::Piecewise(pw) => chunks(n, pw.breaks.len()).len(),
                    _ => 1,
                };
                p.bytes / pieces.max(1) as u64
            })
            .max()
            .unwrap_or(0);
        BASE_MEMORY + 6 * values + 7 * largest_chunk + exchanged + exchanged / 8
    }

    pub fn planned_setup_bytes(&self) -> u64 {
        self.masked_weights.iter().map(|&w| 8 * self.plan.values[w].len() as u64).sum()
    }
}

/// The process itself: code, thread stacks, the runtime's buffers, and the arena
/// mimalloc commits up front (a batch-1 prediction of `mnist_model` peaks at 41 MB
/// with it, 14 MB without; 32 MB here, from before the allocator change, was
/// below that).
pub const BASE_MEMORY: u64 = 48 << 20;

/// Plan steps number the step field (a u32) of message and stream keys, whose
/// top five numbers name the messages outside the plan's steps (seeds, shares,
/// outputs, set-up, end of dealing).
pub const MAX_PLAN_STEPS: usize = u32::MAX as usize - 5;
/// Value ids number mask and sharing streams (a u32), and the share message of
/// an input or a weight is tag id + 1.
pub const MAX_PLAN_VALUES: usize = u32::MAX as usize;

/// Element-wise comparisons over large tensors run in chunks of at most this many
/// DReLUs, so that neither a server nor the dealer holds the material of millions at
/// once (the `functional` test model's Tanh over 627k elements is 15.7M DReLUs:
/// 5.8 GB in one piece). Each chunk costs its own rounds.
pub const MAX_DRELUS_PER_CHUNK: usize = 1 << 20;

/// The element ranges of an element-wise step over `n` elements that needs
/// `drelus_per_element` comparisons each. Public: servers, dealer and the cost
/// formulas all cut the same way.
pub fn chunks(n: usize, drelus_per_element: usize) -> Vec<std::ops::Range<usize>> {
    let size = (MAX_DRELUS_PER_CHUNK / drelus_per_element.max(1)).max(1);
    (0..n).step_by(size).map(|start| start..(start + size).min(n)).collect()
}

/// Bytes a server sends for `n` DReLUs: the AND openings and the packed B2A bits.
fn drelu_bytes(n: usize) -> u64 {
    8 * drelu_open_words(n) as u64
}

/// What the formulas predict for one step, per server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Planned {
    pub bytes: u64,
    pub rounds: u64,
}

impl Planned {
    fn add(self, other: Planned) -> Planned {
        Planned { bytes: self.bytes + other.bytes, rounds: self.rounds + other.rounds }
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
fn defer_truncations(plan: &Plan, kinds: &mut [Kind], revealed: ValueId) {
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
        if !matches!(kinds[p], Kind::Product) {
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
        kinds[p] = Kind::ProductKeepScale;
        if let Some((a, lift)) = add {
            kinds[a] = Kind::LiftedAdd { lift };
        }
        kinds[pool] = Kind::ShiftPool { e };
    }
}

/// e if every window of the pool over an NHWC input of `shape` covers exactly 2^e
/// input pixels.
fn uniform_pow2_count(shape: &[usize], w: &crate::kernels::Window) -> Option<u32> {
    let (h, wd) = (shape[1], shape[2]);
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

/// For each output element of a pool (NHWC, row-major), the flat input indices its
/// window covers, padding excluded.
pub fn pool_groups(shape: &[usize], w: &crate::kernels::Window) -> Vec<Vec<usize>> {
    let (n, h, wd, c) = (shape[0], shape[1], shape[2], shape[3]);
    let g = w.geometry([h, wd]).expect("pool geometry checked at plan time");
    let mut groups = Vec::with_capacity(n * g.out[0] * g.out[1] * c);
    for b in 0..n {
        for oy in 0..g.out[0] {
            for ox in 0..g.out[1] {
                let (ys, xs) = window_ranges(w, &g, [h, wd], [oy, ox]);
                for ch in 0..c {
                    let mut members = Vec::new();
                    for iy in ys.clone() {
                        for ix in xs.clone() {
                            members.push(((b * h + iy) * wd + ix) * c + ch);
                        }
                    }
                    groups.push(members);
                }
            }
        }
    }
    groups
}

/// For each element of a reduction's output (row-major, reduced axes removed), the
/// flat input indices reduced into it, in row-major order.
pub fn reduce_groups(shape: &[usize], axes: &[usize]) -> Vec<Vec<usize>> {
    let strides: Vec<usize> = (0..shape.len()).map(|i| shape[i + 1..].iter().product()).collect();
    let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
    let out_count: usize = kept.iter().map(|&a| shape[a]).product();
    let red_count: usize = axes.iter().map(|&a| shape[a]).product();
    let index_of = |dims: &[usize], mut k: usize| -> Vec<usize> {
        let mut idx = vec![0; dims.len()];
        for (j, &a) in dims.iter().enumerate().rev() {
            idx[j] = k % shape[a];
            k /= shape[a];
        }
        idx
    };
    (0..out_count)
        .map(|o| {
            let base: usize = kept.iter().zip(index_of(&kept, o)).map(|(&a, i)| i * strides[a]).sum();
            (0..red_count)
                .map(|r| base + axes.iter().zip(index_of(axes, r)).map(|(&a, i)| i * strides[a]).sum::<usize>())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_groups_follow_row_major_order() {
        // [2, 3] reduced over axis 1: rows; over axis 0: columns.
        assert_eq!(reduce_groups(&[2, 3], &[1]), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(reduce_groups(&[2, 3], &[0]), vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
        assert_eq!(reduce_groups(&[2, 2, 2], &[0, 2]), vec![vec![0, 1, 4, 5], vec![2, 3, 6, 7]]);
    }
}
