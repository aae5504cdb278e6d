//! Max over groups of elements by tournament (MaxPool, Max), or ArgMax: each
//! level compares pairs by DReLU and selects with one product.
//!
//! The program carries what the groups are (a pool's window over a shape, or a
//! reduction's axes), not the groups: a MaxPool of 8.4M outputs would otherwise
//! be 730 MB of indices on the wire. Each party builds them once, when the step
//! first runs, and the memory estimate counts them; their cost needs only their
//! sizes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::Result;
use ndarray::IxDyn;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx};
use crate::kernels::Window;
use crate::kernels::linear::{self, window_ranges};
use crate::protocol::compare::{deal_tournament, tournament, tournament_cost};
use crate::protocol::{Cost, Dealer, Server, Width};
use crate::ring::RingTensor;

/// Which input elements each output element is the maximum of.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Groups {
    /// A pool's windows over an input of `shape` (in the window's layout).
    Pool { shape: Vec<usize>, window: Window },
    /// A reduction over `axes` of an input of `shape`.
    Reduce { shape: Vec<usize>, axes: Vec<usize> },
}

impl Groups {
    pub fn build(&self) -> Vec<Vec<usize>> {
        match self {
            Groups::Pool { shape, window } => pool_groups(shape, window),
            Groups::Reduce { shape, axes } => reduce_groups(shape, axes),
        }
    }

    /// Group size → how many groups have it, without building the groups.
    pub fn sizes(&self) -> BTreeMap<usize, usize> {
        let mut sizes = BTreeMap::new();
        match self {
            Groups::Pool { shape, window } => {
                let Some([n, h, wd, c]) = window.layout.split(shape) else { return sizes };
                let Some(g) = window.geometry([h, wd]) else { return sizes };
                for oy in 0..g.out[0] {
                    for ox in 0..g.out[1] {
                        let (ys, xs) = window_ranges(window, &g, [h, wd], [oy, ox]);
                        *sizes.entry(ys.len() * xs.len()).or_insert(0) += n * c;
                    }
                }
            }
            Groups::Reduce { shape, axes } => {
                let reduced: usize = axes.iter().map(|&a| shape[a]).product();
                let total: usize = shape.iter().product();
                if reduced > 0 {
                    sizes.insert(reduced, total / reduced);
                }
            }
        }
        sizes
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Tournament {
    pub groups: Groups,
    /// ArgMax: the position of the first maximum, not the maximum.
    pub with_index: bool,
    /// The groups, built the first time the step runs (shared by the parties of
    /// one process, which run the same program).
    #[serde(skip)]
    built: OnceLock<Vec<Vec<usize>>>,
}

impl Tournament {
    pub fn new(groups: Groups, with_index: bool) -> Tournament {
        Tournament { groups, with_index, built: OnceLock::new() }
    }

    /// Whether the groups have been built (they are, when the step first runs).
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }

    fn built(&self) -> &[Vec<usize>] {
        self.built.get_or_init(|| self.groups.build())
    }
}

impl PartialEq for Tournament {
    fn eq(&self, other: &Tournament) -> bool {
        self.groups == other.groups && self.with_index == other.with_index
    }
}

impl std::fmt::Debug for Tournament {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tournament").field("groups", &self.groups).field("with_index", &self.with_index).finish()
    }
}

impl SecureOp for Tournament {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let (max, index) = tournament(s, ins[0], self.built(), self.with_index, Width::in_range(cx.fp))?;
        let out = index.unwrap_or(max);
        Ok(out.into_shape_with_order(IxDyn(cx.out_shape()))?)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_tournament(d, self.built(), self.with_index, Width::in_range(cx.fp))
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        tournament_cost(cx.comparison, &self.groups.sizes(), self.with_index, Width::in_range(cx.fp))
    }

    /// The groups' indices and each group's vector header.
    fn materialised(&self, _: &CostCx) -> u64 {
        self.groups.sizes().iter().map(|(&len, &count)| (8 * len as u64 + 24) * count as u64).sum()
    }

    fn how(&self) -> How {
        How::Comparison
    }
}

/// For each output element of a pool (row-major, in the window's layout), the
/// flat input indices its window covers, padding excluded.
pub fn pool_groups(shape: &[usize], w: &Window) -> Vec<Vec<usize>> {
    linear::pool_windows(shape, w).expect("pool geometry checked at plan time")
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
    use crate::kernels::{Layout, Padding};

    #[test]
    fn reduce_groups_follow_row_major_order() {
        // [2, 3] reduced over axis 1: rows; over axis 0: columns.
        assert_eq!(reduce_groups(&[2, 3], &[1]), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(reduce_groups(&[2, 3], &[0]), vec![vec![0, 3], vec![1, 4], vec![2, 5]]);
        assert_eq!(reduce_groups(&[2, 2, 2], &[0, 2]), vec![vec![0, 1, 4, 5], vec![2, 3, 6, 7]]);
    }

    /// The cost model and the memory estimate count groups from their sizes:
    /// these must be the sizes of the groups the servers build.
    #[test]
    fn group_sizes_without_building_are_the_built_groups_sizes() {
        let same =
            Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        for groups in [
            Groups::Pool { shape: vec![2, 7, 5, 3], window: same },
            Groups::Pool { shape: vec![1, 6, 6, 2], window: Window { padding: Padding::Valid, ..same } },
            Groups::Reduce { shape: vec![3, 4, 5], axes: vec![0, 2] },
            Groups::Reduce { shape: vec![3, 4], axes: vec![1] },
        ] {
            let mut counted = BTreeMap::new();
            for g in groups.build() {
                *counted.entry(g.len()).or_insert(0) += 1;
            }
            assert_eq!(groups.sizes(), counted, "{groups:?}");
        }
    }
}
