//! What a program costs: per step, the bytes each server sends and its rounds
//! (the sum of its unit's primitives), and the peak memory of a run.

use super::Program;
use crate::ops::CostCx;
use crate::protocol::Cost;

/// The process itself: code, thread stacks, the runtime's buffers, and the arena
/// mimalloc commits up front (a batch-1 prediction of `mnist_model` peaks at 41 MB
/// with it, 14 MB without; 32 MB here, from before the allocator change, was
/// below that).
pub const BASE_MEMORY: u64 = 48 << 20;

impl Program {
    /// Planned bytes each server sends, and rounds, for each step of one
    /// prediction. See docs/PROTOCOL.md.
    pub fn planned(&self) -> Vec<Cost> {
        let mut opened = vec![false; self.plan.values.len()];
        self.kinds
            .iter()
            .zip(&self.plan.steps)
            .map(|(kind, step)| {
                kind.op().cost(&mut CostCx {
                    plan: &self.plan,
                    fp: self.fp(),
                    comparison: self.comparison,
                    step,
                    opened: &mut opened,
                })
            })
            .collect()
    }

    /// Bytes each server sends at set-up: its share of every masked weight.
    pub fn planned_setup_bytes(&self) -> u64 {
        self.masked_weights.iter().map(|&w| 8 * self.plan.values[w].len() as u64).sum()
    }

    /// An estimate of the peak memory of a secure prediction with all parties in
    /// one process, in bytes, fitted to measured peak RSS (BENCHMARKS.md, Memory):
    /// the dealer's material for a whole prediction waits in the mailbox before the
    /// online phase (about 1.1x the words the servers exchange); the servers keep
    /// shares, masks and opened values of the plan's values (about 6x their
    /// 8-byte size in all); the largest chunk of a step is in flight with its
    /// temporaries (about 7x its messages); and what the units build from the
    /// program (a tournament's groups), computed without building it.
    pub fn estimate_memory(&self) -> u64 {
        let values: u64 = self.plan.values.iter().map(|v| v.len() as u64 * 8).sum();
        let planned = self.planned();
        let exchanged: u64 = planned.iter().map(|p| p.bytes).sum();
        let mut opened = vec![false; self.plan.values.len()];
        let (mut largest_chunk, mut materialised) = (0, 0);
        for ((p, kind), step) in planned.iter().zip(&self.kinds).zip(&self.plan.steps) {
            let cx = CostCx { plan: &self.plan, fp: self.fp(), comparison: self.comparison, step, opened: &mut opened };
            largest_chunk = largest_chunk.max(p.bytes / kind.op().pieces(&cx).max(1) as u64);
            materialised += kind.op().materialised(&cx);
        }
        BASE_MEMORY + 6 * values + 7 * largest_chunk + exchanged + exchanged / 8 + materialised + waiting_keys(&planned)
    }
}

/// FSS keys the transport may hold unread: flow control ([`crate::runtime::flow`])
/// lets the dealer run [`MAX_UNREAD`](crate::runtime::flow::MAX_UNREAD) bytes
/// ahead of server 1 plus the last ACK_EVERY steps and the one being dealt
/// (bounded here by the largest such steps), and never more than all of them.
fn waiting_keys(planned: &[crate::protocol::Cost]) -> u64 {
    use crate::runtime::flow::{ACK_EVERY, MAX_UNREAD};
    let total: u64 = planned.iter().map(|p| p.keys).sum();
    let mut largest: Vec<u64> = planned.iter().map(|p| p.keys).collect();
    largest.sort_unstable_by(|a, b| b.cmp(a));
    let steps: u64 = largest.iter().take(ACK_EVERY as usize + 1).sum();
    total.min(MAX_UNREAD + steps)
}
