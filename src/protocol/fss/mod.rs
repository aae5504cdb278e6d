//! Comparison with zero by function secret sharing: DReLU and ReLU in one round.
//!
//! The dealer deals, per element, a fresh uniform mask r ∈ Z_2^64 (server b
//! expands its share r_b from its seed) and a pair of DCF keys ([`dcf`]) for
//! the comparison [y < r'] over 63-bit y, r' the low 63 bits of r. The servers
//! open x̂ = x + r (one round, one word per element each way) and evaluate their
//! key at y = x̂' (the low 63 bits of x̂), locally.
//!
//! **The sign.** Write x̂ = 2^63·a + x̂', r = 2^63·c + r' (a, c their top bits).
//! Then x = x̂ − r = 2^63·(a − c) + (x̂' − r'), and the low part borrows exactly
//! when x̂' < r', so
//!
//! ```text
//! msb(x) = a ⊕ c ⊕ w,   w = [x̂' < r'],
//! ```
//!
//! exactly, for every x in the ring. a is public once x̂ is open; c is the
//! dealer's. The XOR with c is made linear by the payload: with β₁ = 1 − 2c the
//! DCF gives shares of (1 − 2c)·w, and with shares of c,
//! c ⊕ w = c + (1 − 2c)·w; then, a being public, msb(x) = a + (1 − 2a)·(c ⊕ w)
//! and d = [x ≥ 0] = 1 − msb(x) are linear in the shares.
//!
//! **ReLU** = d·x = d·x̂ − d·r. d·x̂ is linear (x̂ public). d·r needs shares of
//! (c ⊕ w)·r = c·r + (1 − 2c)·r·w: a second payload word β₂ = (1 − 2c)·r, and
//! shares of c·r from the dealer. With u = c ⊕ w and v = u·r,
//!
//! ```text
//! d·x = (1 − a)·(x̂ − r) − (1 − 2a)·(u·x̂ − v),
//! ```
//!
//! each term a public multiple of a share. So a ReLU costs what a DReLU does:
//! one round, one word per element per server.
//!
//! **What each server sees**: x̂ = x + r, with r uniform and fresh for this
//! element and this use (drawn from a material stream of its own tag, never
//! again), so x̂ is uniform and independent of x; its DCF key (its own root seed
//! and the correction words, the same in both keys), which by the DCF's
//! security reveals nothing of r' or β to a party without the other key; and
//! its shares of c and c·r (uniform, from its own stream, or server 1's
//! correction c − c₀).
//!
//! **Material.** Per element, server 0 draws [r₀, root₀ (2 words), c₀, (c·r)₀]
//! from the gate's stream and server 1 draws [r₁, root₁]; the dealer sends, per
//! block of [`BLOCK`] elements under a material tag of its own, the block's
//! correction words to both servers, and to server 1 first its corrections
//! c − c₀ (and c·r − (c·r)₀). DCF keys cannot be expanded from a seed (the
//! correction words depend on both roots and on r): they are the bulk of what
//! the dealer sends ([`dealer_bytes`]).

pub mod dcf;

use std::num::Wrapping;

use anyhow::Result;

use super::{Cost, Dealer, Server};
use crate::ring::{Prg, RingTensor, from_words};
use crate::transport::{Party, WordWriter, read_words};

const LOW63: u64 = (1 << 63) - 1;

/// Input bits of the DCF: the low 63 bits of x̂ against those of r.
const BITS: u32 = 63;

/// Elements per dealer message: a message of correction words is about 1.5–2 KB
/// per element, so a block is 1.5–2 MB and neither a server nor the dealer
/// holds the keys of a whole tensor.
pub const BLOCK: usize = 1024;

/// Which gate: what it outputs, and so its payload and correlations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Arithmetic shares of d = [x ≥ 0].
    Drelu,
    /// Arithmetic shares of x·[x ≥ 0].
    Relu,
}

impl Gate {
    fn shape(self) -> dcf::Shape {
        dcf::Shape::new(BITS, self.payload())
    }

    /// Words of β: (1 − 2c), and for ReLU (1 − 2c)·r.
    fn payload(self) -> usize {
        match self {
            Gate::Drelu => 1,
            Gate::Relu => 2,
        }
    }

    /// Correlated words per element: c, and for ReLU c·r.
    fn correlated(self) -> usize {
        self.payload()
    }

    /// Words per element of a server's stream: r, the root seed, and (server 0)
    /// its shares of the correlated words.
    fn stream_words(self, first: bool) -> usize {
        3 + if first { self.correlated() } else { 0 }
    }
}

/// What a gate over `n` elements sends: x + r, once; and its dealer key messages.
pub fn cost(gate: Gate, n: usize) -> Cost {
    let [to0, to1] = dealer_bytes(gate, n);
    Cost::words(n, 1).with_keys(to0 + to1)
}

/// Bytes the dealer sends server 0 and server 1 for a gate over `n` elements:
/// the DCF correction words to both, the corrections to server 1.
pub fn dealer_bytes(gate: Gate, n: usize) -> [u64; 2] {
    let keys = (n * gate.shape().key_bytes()) as u64;
    [keys, keys + 8 * (n * gate.correlated()) as u64]
}

/// Ring elements server 0 and server 1 expand from their seeds for a gate over
/// `n` elements.
pub fn expanded_words(gate: Gate, n: usize) -> [u64; 2] {
    [(n * gate.stream_words(true)) as u64, (n * gate.stream_words(false)) as u64]
}

fn blocks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n).step_by(BLOCK).map(move |start| start..(start + BLOCK).min(n))
}

fn root(words: &[u64]) -> u128 {
    u128::from(words[0]) | u128::from(words[1]) << 64
}

/// Server: shares of [x ≥ 0] (`Gate::Drelu`, an integer 0 or 1) or of
/// x·[x ≥ 0] (`Gate::Relu`) for every element of `x`. One round.
pub fn run(s: &mut Server, gate: Gate, x: &RingTensor) -> Result<RingTensor> {
    let n = x.len();
    let first = s.is_first();
    let per = gate.stream_words(first);
    let tag = s.at.next_material()?;
    let mut mat = vec![0u64; per * n];
    s.material(tag).fill(&mut mat);
    let xw: Vec<u64> = x.iter().map(|v| v.0).collect();
    let masked: Vec<u64> = xw.iter().zip(mat.chunks_exact(per)).map(|(&x, m)| x.wrapping_add(m[0])).collect();
    let theirs = s.exchange(&masked)?;
    let opened: Vec<u64> = masked.iter().zip(&theirs).map(|(a, b)| a.wrapping_add(*b)).collect();
    drop((masked, theirs));
    let shape = gate.shape();
    let (k, key_len, corr) = (gate.payload(), shape.key_bytes(), gate.correlated());
    let mut out = Vec::with_capacity(n);
    for range in blocks(n) {
        let m = range.len();
        let tag = s.at.next_material()?;
        let received = if first { 0 } else { 8 * corr * m };
        let message = s.dealer_message(tag, received + key_len * m)?;
        let (corrections, keys) = message.split_at(received);
        let corrections = read_words(corrections);
        let roots: Vec<u128> = range.clone().map(|e| root(&mat[per * e + 1..per * e + 3])).collect();
        let low: Vec<u64> = opened[range.clone()].iter().map(|v| v & LOW63).collect();
        let mut y = vec![0u64; k * m];
        dcf::evaluate(shape, s.i, &roots, keys, &low, &mut y);
        for (i, e) in range.enumerate() {
            let own = &mat[per * e..per * (e + 1)];
            let c = |j: usize| Wrapping(if first { own[3 + j] } else { corrections[corr * i + j] });
            let a = Wrapping(opened[e] >> 63);
            let one = Wrapping(1u64);
            let public = |v: Wrapping<u64>| if first { v } else { Wrapping(0) };
            // u = c ⊕ w = c + (1 − 2c)·w.
            let u = c(0) + Wrapping(y[k * i]);
            out.push(match gate {
                // d = 1 − msb(x) = (1 − a) − (1 − 2a)·u.
                Gate::Drelu => (public(one - a) - (one - Wrapping(2) * a) * u).0,
                Gate::Relu => {
                    // v = u·r = c·r + (1 − 2c)·r·w.
                    let v = c(1) + Wrapping(y[k * i + 1]);
                    let xh = Wrapping(opened[e]);
                    let share = public(xh) - Wrapping(own[0]);
                    ((one - a) * share - (one - Wrapping(2) * a) * (u * xh - v)).0
                }
            });
        }
    }
    Ok(from_words(x.shape(), out))
}

/// Dealer half of [`run`] over `n` elements.
pub fn deal(d: &mut Dealer, gate: Gate, n: usize) -> Result<()> {
    let tag = d.at.next_material()?;
    let mut p: [Prg; 2] = [d.material(0, tag), d.material(1, tag)];
    let (per0, per1) = (gate.stream_words(true), gate.stream_words(false));
    let shape = gate.shape();
    let (key_len, corr) = (shape.key_bytes(), gate.correlated());
    let (mut m0, mut m1) = (Vec::new(), Vec::new());
    for range in blocks(n) {
        let m = range.len();
        let tag = d.at.next_material()?;
        m0.resize(per0 * m, 0);
        m1.resize(per1 * m, 0);
        p[0].fill(&mut m0);
        p[1].fill(&mut m1);
        let mut keys = Vec::with_capacity(key_len * m);
        let mut corrections = WordWriter::with_capacity(corr * m + key_len * m / 8);
        for (w0, w1) in m0.chunks_exact(per0).zip(m1.chunks_exact(per1)) {
            let r = w0[0].wrapping_add(w1[0]);
            let c = r >> 63;
            let one_minus_2c = 1u64.wrapping_sub(2 * c);
            let beta = [one_minus_2c, one_minus_2c.wrapping_mul(r)];
            dcf::generate(shape, r & LOW63, &beta[..gate.payload()], [root(&w0[1..3]), root(&w1[1..3])], &mut keys);
            corrections.push(c.wrapping_sub(w0[3]));
            if gate == Gate::Relu {
                corrections.push(c.wrapping_mul(r).wrapping_sub(w0[4]));
            }
        }
        let mut to_server1 = corrections.into_bytes();
        to_server1.extend_from_slice(&keys);
        d.send(Party::Server0, tag, keys)?;
        d.send(Party::Server1, tag, to_server1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_identity_holds_at_the_edges() {
        // msb(x̂ − r) = msb(x̂) ⊕ msb(r) ⊕ [x̂' < r'], over edge values of both.
        let edges = [0u64, 1, LOW63, 1 << 63, u64::MAX, 1 << 62, (1 << 63) + 1, 12345];
        for &xh in &edges {
            for &r in &edges {
                let w = u64::from((xh & LOW63) < (r & LOW63));
                assert_eq!(xh.wrapping_sub(r) >> 63, (xh >> 63) ^ (r >> 63) ^ w, "x̂ = {xh}, r = {r}");
            }
        }
    }

    #[test]
    fn dealer_bytes_are_the_key_sizes() {
        assert_eq!(dealer_bytes(Gate::Drelu, 10), [15_360, 15_440]);
        assert_eq!(dealer_bytes(Gate::Relu, 10), [20_480, 20_640]);
    }
}
