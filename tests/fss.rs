//! The comparison gates by function secret sharing (src/protocol/fss), run between
//! real party threads with the harness of `common/mpc.rs`: exact against the
//! plaintext sign over random and edge values and share splits (the ReLU with a
//! fused truncation within one ulp of the shifted ReLU, unbiased), their traffic
//! exactly the formulas (one round, one word per element per server; the dealer's
//! keys), and what a server receives fresh and uniform-looking.

mod common;
#[path = "common/mpc.rs"]
mod mpc;

use std::collections::HashSet;

use proptest::prelude::*;

use mpc::{Keys, Run, labelled, ring, run, run_shares, signed};
use tfe_run::protocol::compare;
use tfe_run::protocol::fss::{self, Gate};
use tfe_run::protocol::{Comparison, Dealer, Server, Width};
use tfe_run::ring::{RingTensor, from_words, os_seed};
use tfe_run::transport::Party;

fn fss_server(s: &mut Server) -> &mut Server {
    s.comparison = Comparison::Fss;
    s
}

fn fss_dealer(d: &mut Dealer) -> &mut Dealer {
    d.comparison = Comparison::Fss;
    d
}

/// Server shares `x0`, `x1` through the FSS gate `gate`.
fn gate_on_shares(gate: Gate, x0: Vec<u64>, x1: Vec<u64>) -> Run {
    let n = x0.len();
    run_shares(
        &Keys::fresh(),
        [vec![from_words(&[n], x0)], vec![from_words(&[n], x1)]],
        |s, mut xs| {
            let x = xs.remove(0);
            let s = fss_server(s);
            Ok(vec![match gate {
                Gate::Drelu(w) => compare::drelu(s, &x, w)?,
                Gate::Relu(w) => compare::relu(s, &x, w)?,
                Gate::ReluShift(shift) => compare::relu_shift(s, &x, shift)?,
            }])
        },
        |d| match gate {
            Gate::Drelu(w) => compare::deal_drelu(fss_dealer(d), n, w),
            Gate::Relu(w) => compare::deal_relu(fss_dealer(d), &[n], w),
            Gate::ReluShift(shift) => compare::deal_relu_shift(fss_dealer(d), n, shift),
        },
    )
}

/// Zero, ±1, ±2^62, 2^63 − 1, −2^63 and neighbours of every power of two edge.
fn edge_values() -> Vec<i64> {
    let mut v = vec![0, 1, -1, 2, -2, 1 << 62, -(1 << 62), i64::MAX, i64::MIN, i64::MIN + 1, i64::MAX - 1];
    for e in [16, 31, 32, 46, 47, 61, 62] {
        for d in [-1i64, 0, 1] {
            v.push((1i64 << e).wrapping_add(d));
            v.push((1i64 << e).wrapping_add(d).wrapping_neg());
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Every edge value as shares (x0, x1) under several splits: one share zero,
/// shares with the top bit set, all ones, random (a PRG labelled `label`).
fn edge_splits(label: u64) -> (Vec<u64>, Vec<u64>, Vec<i64>) {
    let mut prg = labelled(&os_seed().unwrap(), label);
    let (mut x0, mut x1, mut xs) = (Vec::new(), Vec::new(), Vec::new());
    for &x in &edge_values() {
        let x = x as u64;
        let random = prg.words(3);
        for a in [0, x, 1, u64::MAX, 1 << 63, (1 << 63) - 1, x ^ (1 << 63), random[0], random[1], random[2]] {
            xs.push(x as i64);
            x0.push(a);
            x1.push(x.wrapping_sub(a));
        }
    }
    (x0, x1, xs)
}

/// Every edge value under several share splits (one share zero, shares with the
/// top bit set, all ones, random), through both gates: exact.
#[test]
fn fss_drelu_and_relu_are_exact_at_the_edges() {
    let (x0, x1, xs) = edge_splits(0);
    let d = gate_on_shares(Gate::Drelu(Width::RING), x0.clone(), x1.clone());
    let r = gate_on_shares(Gate::Relu(Width::RING), x0, x1);
    for ((&x, dg), rg) in xs.iter().zip(signed(d.output())).zip(signed(r.output())) {
        assert_eq!(dg, i64::from(x >= 0), "DReLU({x})");
        assert_eq!(rg, x.max(0), "ReLU({x})");
    }
}

/// The shifts the fused gate is checked at: none, one bit, f = 16 (a product's
/// truncation), f + 2 (before a 2×2 pool), 2f, and the largest.
const SHIFTS: [u32; 7] = [0, 1, 16, 18, 32, 62, 63];

/// ReLU(x) >> shift or one more: what the fused gate may output for x.
fn check_relu_shift(x: i64, shift: u32, got: i64) -> Result<(), String> {
    let want = x.max(0) >> shift;
    if (x < 0 && got != 0) || (x >= 0 && got != want && got != want + 1) {
        return Err(format!("ReLU({x}) >> {shift}: got {got}, want {want} (or {} for x ≥ 0)", want + 1));
    }
    Ok(())
}

/// The ReLU with a fused truncation at every edge value (0, ±1 ulp, ±2^62,
/// the ring's extremes, powers of two and their neighbours) under the same
/// share splits as above, at every shift: 0 for x < 0, else x >> s or one more;
/// and for x = 2^s·k exactly (nothing dropped) exactly x >> s.
#[test]
fn fss_relu_shift_is_within_one_ulp_at_the_edges() {
    let (x0, x1, xs) = edge_splits(6);
    for shift in SHIFTS {
        let run = gate_on_shares(Gate::ReluShift(shift), x0.clone(), x1.clone());
        for (&x, got) in xs.iter().zip(signed(run.output())) {
            check_relu_shift(x, shift, got).unwrap();
            let exact = shift == 0 || x >= 0 && x.trailing_zeros() >= shift;
            if exact {
                assert_eq!(got, x.max(0) >> shift, "ReLU({x}) >> {shift}: nothing is dropped");
            }
        }
    }
}

/// The fused gate rounds without bias: x = 2^16·k + 2^14 (a quarter of an ulp
/// dropped), 8,192 times under fresh masks, rounds up a quarter of the time
/// (within 6 standard deviations: 1.6e-2), so sums of its outputs (a pool) do
/// not drift.
#[test]
fn fss_relu_shift_rounds_up_with_the_dropped_fraction() {
    let (n, shift) = (8192usize, 16u32);
    let x: i64 = (12345 << shift) + (1 << (shift - 2));
    let x0 = labelled(&os_seed().unwrap(), 7).words(n);
    let x1: Vec<u64> = x0.iter().map(|a| (x as u64).wrapping_sub(*a)).collect();
    let run = gate_on_shares(Gate::ReluShift(shift), x0, x1);
    let ups = signed(run.output()).iter().filter(|&&v| v == 12346).count();
    assert!(signed(run.output()).iter().all(|&v| v == 12345 || v == 12346));
    let fraction = ups as f64 / n as f64;
    let sigma = (0.25f64 * 0.75 / n as f64).sqrt();
    assert!((fraction - 0.25).abs() < 6.0 * sigma, "rounded up {fraction:.4} of the time, not 1/4");
}

fn ring_value() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), -(1i64 << 20)..(1i64 << 20), prop::sample::select(edge_values())]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// DReLU and ReLU by FSS equal the plaintext sign and max(x, 0) for random
    /// values and random splits.
    #[test]
    fn fss_gates_match_the_plaintext_sign(x in prop::collection::vec(ring_value(), 1..200), seed in any::<[u8; 32]>()) {
        let a = labelled(&seed, 1).words(x.len());
        let x0 = a.clone();
        let x1: Vec<u64> = x.iter().zip(&a).map(|(&x, a)| (x as u64).wrapping_sub(*a)).collect();
        let d = gate_on_shares(Gate::Drelu(Width::RING), x0.clone(), x1.clone());
        let r = gate_on_shares(Gate::Relu(Width::RING), x0, x1);
        for (i, &x) in x.iter().enumerate() {
            prop_assert_eq!(signed(d.output())[i], i64::from(x >= 0), "DReLU({})", x);
            prop_assert_eq!(signed(r.output())[i], x.max(0), "ReLU({})", x);
        }
    }

    /// Gates of any width 2–64 (keys over the bits below the sign) are exact
    /// for every value the width admits, its edges included, under any split.
    #[test]
    fn fss_gates_of_any_width_are_exact_on_what_it_admits(
        bits in prop_oneof![Just(48u32), Just(36u32), 2u32..=64],
        raw in prop::collection::vec(any::<u64>(), 1..150),
        seed in any::<[u8; 32]>(),
    ) {
        let w = Width::new(bits).unwrap();
        let top = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
        let edges = [0, 1, -1, top, -top, -top - 1];
        let x: Vec<i64> = raw
            .iter()
            .enumerate()
            .map(|(i, &r)| if i < edges.len() { edges[i] } else if bits == 64 { r as i64 } else { (r as i64) >> (65 - bits) })
            .collect();
        let x0 = labelled(&seed, 11).words(x.len());
        let x1: Vec<u64> = x.iter().zip(&x0).map(|(&x, a)| (x as u64).wrapping_sub(*a)).collect();
        let d = gate_on_shares(Gate::Drelu(w), x0.clone(), x1.clone());
        let r = gate_on_shares(Gate::Relu(w), x0, x1);
        for (i, &x) in x.iter().enumerate() {
            prop_assert!(w.contains(x), "{} bits: {} is outside", bits, x);
            prop_assert_eq!(signed(d.output())[i], i64::from(x >= 0), "{} bits: DReLU({})", bits, x);
            prop_assert_eq!(signed(r.output())[i], x.max(0), "{} bits: ReLU({})", bits, x);
        }
    }

    /// The ReLU with a fused truncation against the plaintext shift, for random
    /// values (the whole ring, small, edges), shifts and splits.
    #[test]
    fn fss_relu_shift_matches_the_plaintext_shift(
        x in prop::collection::vec(ring_value(), 1..200),
        shift in prop_oneof![prop::sample::select(SHIFTS.to_vec()), 0u32..64],
        seed in any::<[u8; 32]>(),
    ) {
        let x0 = labelled(&seed, 8).words(x.len());
        let x1: Vec<u64> = x.iter().zip(&x0).map(|(&x, a)| (x as u64).wrapping_sub(*a)).collect();
        let run = gate_on_shares(Gate::ReluShift(shift), x0, x1);
        for (&x, got) in x.iter().zip(signed(run.output())) {
            prop_assert!(check_relu_shift(x, shift, got).is_ok(), "{}", check_relu_shift(x, shift, got).unwrap_err());
        }
    }

    /// Max and argmax tournaments under FSS (max(a, b) = b + ReLU(a − b); argmax by
    /// DReLU and a product) are exact, ties keeping the first maximum.
    #[test]
    fn fss_tournaments_are_exact(
        groups in prop::collection::vec(1usize..=9, 1..6),
        with_index in any::<bool>(),
        seed in any::<[u8; 32]>(),
        ties in any::<bool>(),
    ) {
        let n: usize = groups.iter().sum();
        let values: Vec<i64> = labelled(&seed, 2)
            .words(n)
            .into_iter()
            .map(|w| if ties { (w % 3) as i64 - 1 } else { (w as i64) >> 2 })
            .collect();
        let mut at = 0;
        let groups: Vec<Vec<usize>> = groups.iter().map(|&g| { at += g; (at - g..at).collect() }).collect();
        let x = ring(&[n], values.iter().copied());
        let out = run(
            &Keys::fresh(),
            std::slice::from_ref(&x),
            |s, xs| {
                let (max, index) = compare::tournament(fss_server(s), &xs[0], &groups, with_index, Width::RING)?;
                Ok(std::iter::once(max).chain(index).collect())
            },
            |d| compare::deal_tournament(fss_dealer(d), &groups, with_index, Width::RING),
        );
        for (g, members) in groups.iter().enumerate() {
            let best = members.iter().map(|&i| values[i]).max().unwrap();
            let first = members.iter().position(|&i| values[i] == best).unwrap();
            prop_assert_eq!(signed(&out.outputs[0])[g], best);
            if with_index {
                prop_assert_eq!(signed(&out.outputs[1])[g], first as i64);
            }
        }
    }
}

/// Shares of [x ≥ t] for every public threshold t, by `comparison`: a
/// [thresholds, n] tensor.
fn thresholds_on_shares(comparison: Comparison, x0: Vec<u64>, x1: Vec<u64>, thresholds: &[i64]) -> Run {
    thresholds_of_width(comparison, x0, x1, thresholds, Width::RING)
}

fn thresholds_of_width(comparison: Comparison, x0: Vec<u64>, x1: Vec<u64>, thresholds: &[i64], w: Width) -> Run {
    let n = x0.len();
    let ts: Vec<std::num::Wrapping<u64>> = thresholds.iter().map(|&t| std::num::Wrapping(t as u64)).collect();
    run_shares(
        &Keys::fresh(),
        [vec![from_words(&[n], x0)], vec![from_words(&[n], x1)]],
        |s, xs| {
            s.comparison = comparison;
            Ok(vec![compare::drelu_thresholds(s, &xs[0], &ts, w)?])
        },
        |d| {
            d.comparison = comparison;
            compare::deal_drelu_thresholds(d, n, ts.len(), w)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The comparisons with many public thresholds (a piecewise curve's
    /// breakpoints) equal the ring's sign of x − t, by FSS (one key per element,
    /// evaluated at every threshold) and bitwise alike, for random and edge
    /// values and thresholds.
    #[test]
    fn comparisons_with_many_thresholds_match_the_plaintext(
        x in prop::collection::vec(ring_value(), 1..120),
        thresholds in prop::collection::vec(ring_value(), 1..12),
        seed in any::<[u8; 32]>(),
    ) {
        let x0 = labelled(&seed, 9).words(x.len());
        let x1: Vec<u64> = x.iter().zip(&x0).map(|(&x, a)| (x as u64).wrapping_sub(*a)).collect();
        for comparison in [Comparison::Fss, Comparison::Bitwise] {
            let run = thresholds_on_shares(comparison, x0.clone(), x1.clone(), &thresholds);
            prop_assert_eq!(run.output().shape(), &[thresholds.len(), x.len()]);
            let got = signed(run.output());
            let n = x.len();
            for (j, &t) in thresholds.iter().enumerate() {
                for (i, &x) in x.iter().enumerate() {
                    let want = i64::from(x.wrapping_sub(t) >= 0);
                    prop_assert_eq!(got[j * n + i], want, "{}: [{} ≥ {}]", comparison, x, t);
                }
            }
        }
    }

    /// The same at the width of values (16 fractional bits): values in the
    /// range against thresholds in it, both protocols exact.
    #[test]
    fn in_range_comparisons_with_many_thresholds_match_the_plaintext(
        x in prop::collection::vec(-(1i64 << 46) + 1..(1i64 << 46), 1..120),
        thresholds in prop::collection::vec(-(1i64 << 46) + 1..(1i64 << 46), 1..12),
        seed in any::<[u8; 32]>(),
    ) {
        let w = Width::in_range(tfe_run::ring::FixedPoint::default());
        let x0 = labelled(&seed, 12).words(x.len());
        let x1: Vec<u64> = x.iter().zip(&x0).map(|(&x, a)| (x as u64).wrapping_sub(*a)).collect();
        for comparison in [Comparison::Fss, Comparison::Bitwise] {
            let got = signed(thresholds_of_width(comparison, x0.clone(), x1.clone(), &thresholds, w).output());
            let n = x.len();
            for (j, &t) in thresholds.iter().enumerate() {
                for (i, &x) in x.iter().enumerate() {
                    prop_assert_eq!(got[j * n + i], i64::from(x >= t), "{}: [{} ≥ {}]", comparison, x, t);
                }
            }
        }
    }
}

/// A threshold too large for the width is refused, not compared wrongly.
#[test]
fn a_threshold_outside_the_width_is_refused() {
    let w = Width::in_range(tfe_run::ring::FixedPoint::default());
    let ts = [std::num::Wrapping(1u64 << 46)];
    assert!(!w.admits_threshold(ts[0]) && w.admits_threshold(std::num::Wrapping((1u64 << 46) - 1)));
    assert_eq!(Width::for_thresholds(tfe_run::ring::FixedPoint::default(), &ts), Width::RING);
}

/// Under FSS, comparing with many thresholds costs what one DReLU costs: one
/// round, one word per element per server, and one key per element from the
/// dealer, whatever the number of thresholds; the planner's formula says so.
#[test]
fn fss_thresholds_cost_one_opening_and_one_key_per_element() {
    for (n, m) in [(1usize, 1usize), (7, 25), (fss::BLOCK + 3, 9)] {
        let x = labelled(&os_seed().unwrap(), 10).words(n);
        let thresholds: Vec<i64> = (0..m as i64).map(|t| (t - 12) << 16).collect();
        let run = thresholds_on_shares(Comparison::Fss, x, vec![0; n], &thresholds);
        for (to, from) in [(Party::Server0, Party::Server1), (Party::Server1, Party::Server0)] {
            assert_eq!(run.words(to, from).len(), n, "n = {n}, {m} thresholds");
            assert_eq!(run.messages(to, from).count(), 1, "one round");
        }
        let [to0, to1] = fss::dealer_bytes(Gate::Drelu(Width::RING), n);
        for (server, planned) in [(Party::Server0, to0), (Party::Server1, to1)] {
            let sent: usize = run.messages(server, Party::Dealer).map(|m| m.payload.len()).sum();
            assert_eq!(sent as u64, planned, "n = {n}, {m} thresholds: dealer bytes to {}", server.name());
        }
        let cost = compare::drelu_thresholds_cost(Comparison::Fss, n, m, Width::RING);
        assert_eq!((cost.bytes, cost.rounds, cost.keys), (8 * n as u64, 1, to0 + to1));
    }
}

/// Each server sends one word per element in one round; the dealer sends server
/// 0 exactly the keys' bytes and server 1 those and its corrections, one message
/// per block of `fss::BLOCK` elements: the formulas the planner uses.
#[test]
fn fss_traffic_matches_the_formulas() {
    let narrow = Width::in_range(tfe_run::ring::FixedPoint::default());
    let gates = [
        Gate::Drelu(Width::RING),
        Gate::Relu(Width::RING),
        Gate::Drelu(narrow),
        Gate::Relu(narrow),
        Gate::ReluShift(16),
        Gate::ReluShift(18),
    ];
    for gate in gates {
        for n in [1usize, 2, 63, 1000, fss::BLOCK, fss::BLOCK + 1, 2 * fss::BLOCK + 5] {
            let x = labelled(&os_seed().unwrap(), 3).words(n);
            let run = gate_on_shares(gate, x, vec![0; n]);
            for (to, from) in [(Party::Server0, Party::Server1), (Party::Server1, Party::Server0)] {
                assert_eq!(run.words(to, from).len(), n, "{gate:?}, n = {n}: words {} got", to.name());
                assert_eq!(run.messages(to, from).count(), 1, "{gate:?}, n = {n}: one round");
            }
            let cost = fss::cost(gate, n);
            assert_eq!((cost.bytes, cost.rounds), (8 * n as u64, 1));
            let [to0, to1] = fss::dealer_bytes(gate, n);
            for (server, planned) in [(Party::Server0, to0), (Party::Server1, to1)] {
                let sent: usize = run.messages(server, Party::Dealer).map(|m| m.payload.len()).sum();
                assert_eq!(sent as u64, planned, "{gate:?}, n = {n}: dealer bytes to {}", server.name());
                assert_eq!(run.messages(server, Party::Dealer).count(), n.div_ceil(fss::BLOCK));
            }
            assert_eq!(cost.keys, to0 + to1);
        }
    }
}

/// The masks are fresh: the same input (all zeros, so x̂ = r) through three gates
/// in one session, and within one gate, never opens the same word twice.
#[test]
fn fss_masks_are_never_reused() {
    let n = 3000;
    let zeros = RingTensor::zeros(ndarray::IxDyn(&[n]));
    let run = run(
        &Keys::fresh(),
        std::slice::from_ref(&zeros),
        |s, xs| {
            let s = fss_server(s);
            let w = Width::RING;
            Ok(vec![compare::relu(s, &xs[0], w)?, compare::drelu(s, &xs[0], w)?, compare::relu_shift(s, &xs[0], 16)?])
        },
        |d| {
            compare::deal_relu(fss_dealer(d), &[n], Width::RING)?;
            compare::deal_drelu(d, n, Width::RING)?;
            compare::deal_relu_shift(d, n, 16)
        },
    );
    assert!(run.outputs[0].iter().all(|v| v.0 == 0) && run.outputs[1].iter().all(|v| v.0 == 1));
    assert!(run.outputs[2].iter().all(|v| v.0 == 0));
    // What server 0 received from server 1: x1 + r1 of the three gates.
    let words = run.words(Party::Server0, Party::Server1);
    assert_eq!(words.len(), 3 * n);
    let distinct: HashSet<u64> = words.iter().copied().collect();
    assert_eq!(distinct.len(), words.len(), "a mask word repeats");
}

/// Each server's view of the other (x_b + r_b, and what it learns, x̂ = its own
/// message plus the other's) is uniform and distributed the same for an all-zero
/// input, large random values and all −1 (chi-square on bytes and top nibbles,
/// bit balance; two-sample homogeneity across inputs); and the dealer's key bytes
/// to server 0 are distributed the same whatever the input (the dealer never sees
/// it); for the ReLU and for the ReLU with a fused truncation (shift 18). Keys and
/// inputs are reproducible (`TFE_TEST_SEED`).
#[test]
fn fss_views_are_uniform_and_independent_of_the_input() {
    const ALPHA: f64 = 1e-4;
    let n = 4096;
    let seed = mpc::test_seed();
    let random: Vec<i64> = labelled(&seed, 5).words(n).into_iter().map(|w| (w as i64) >> 2).collect();
    let inputs = [vec![0i64; n], random, vec![-1i64; n]];
    for (g, shift) in [(0u64, None), (1, Some(18u32))] {
        let mut received = Vec::new();
        let mut keys = Vec::new();
        for (j, x) in inputs.iter().enumerate() {
            let x = ring(&[n], x.iter().copied());
            let run = mpc::run1(
                &Keys::fixed(500 + 10 * g + j as u64),
                &x,
                |s, x| match shift {
                    None => compare::relu(fss_server(s), &x, Width::RING),
                    Some(shift) => compare::relu_shift(fss_server(s), &x, shift),
                },
                |d| match shift {
                    None => compare::deal_relu(fss_dealer(d), &[n], Width::RING),
                    Some(shift) => compare::deal_relu_shift(fss_dealer(d), n, shift),
                },
            );
            let want: Vec<i64> = signed(&x).into_iter().map(|v| v.max(0) >> shift.unwrap_or(0)).collect();
            for ((got, want), x) in signed(run.output()).into_iter().zip(want).zip(signed(&x)) {
                assert!(got == want || shift.is_some() && x >= 0 && got == want + 1, "{x} ({shift:?}): {got}");
            }
            let got = run.words(Party::Server0, Party::Server1);
            let m = run.messages(Party::Server0, Party::Server1).next().expect("one opening");
            let mine = run.sent_message(Party::Server0, Party::Server1, m.key).expect("its own half").words();
            let opened: Vec<u64> = mine.iter().zip(&got).map(|(a, b)| a.wrapping_add(*b)).collect();
            for (what, words) in [("received", &got), ("opened x̂", &opened)] {
                for (test, p) in [
                    ("bytes", mpc::chi2_uniform(&mpc::byte_histogram(words)).1),
                    ("top 4 bits", mpc::chi2_uniform(&mpc::top_nibble_histogram(words)).1),
                    ("bit balance", mpc::bit_balance(words).1),
                ] {
                    assert!(p > ALPHA, "input {j} ({shift:?}), server 0's {what}: {test} p = {p:.2e}");
                }
            }
            received.push(opened);
            let bytes: Vec<u8> =
                run.messages(Party::Server0, Party::Dealer).flat_map(|m| m.payload.iter().copied()).collect();
            keys.push(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<u64>>());
        }
        for j in 1..inputs.len() {
            for (what, a, b) in [("opened x̂", &received[0], &received[j]), ("dealer keys", &keys[0], &keys[j])] {
                let p = mpc::chi2_homogeneity(&mpc::byte_histogram(a), &mpc::byte_histogram(b)).1;
                assert!(p > ALPHA, "{what} ({shift:?}): bytes, input 0 vs {j}: p = {p:.2e}");
            }
        }
    }
}
