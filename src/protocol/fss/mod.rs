//! Comparison with zero by function secret sharing: DReLU, ReLU, and ReLU with a
//! product's truncation fused in, each in one round; and the DReLUs of x − t
//! for many public t from one key per element ([`drelu_at`]).
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
//! **ReLU with a truncation** (`Gate::ReluShift(s)`, LLAMA's and SIGMA's
//! ReLU-then-shift): x a product at 2f fractional bits, the output shares of
//! ReLU(x) / 2^s in the same one opening. Write r_h = r >> s, x̂_h = x̂ >> s.
//! For 0 ≤ x < 2^63, x + r wraps past 2^64 exactly when c = 1 and a = 0 (if
//! c = 0 it cannot; if c = 1 it does iff x̂ < 2^63), so over the integers
//! x = x̂ − r + 2^64·(1 − a)·c, and
//!
//! ```text
//! x >> s = x̂_h − r_h + 2^(64−s)·(1 − a)·c − [x̂ mod 2^s < r mod 2^s],
//! ```
//!
//! the last term the borrow of the low parts, which the gate drops: its output
//! is x >> s or one more, one more with probability (x mod 2^s)/2^s over r, so
//! the rounding is unbiased. With d = [x ≥ 0] the output is
//!
//! ```text
//! d·t = x̂_h·d − d·r_h + (1 − a)·2^(64−s)·c·w,   t = x̂_h − r_h + 2^(64−s)·(1 − a)·c,
//! ```
//!
//! because for a = 0, d = 1 − u and (1 − u)·c = c − c·(1 − w) = c·w; for a = 1
//! the wrap term vanishes. d·r_h = (1 − a)·r_h − (1 − 2a)·u·r_h needs
//! u·r_h = c·r_h + (1 − 2c)·r_h·w. So the payload is β = (1 − 2c, (1 − 2c)·r_h, c)
//! (2,560 key bytes) and the dealer also shares c, c·r_h and r_h. Exact in the
//! sign for every x in the ring; within one ulp in the shift for every x ≥ 0:
//! no range beyond the ring's (the separate truncation needs |x| < 2^62).
//!
//! **Width.** `Gate::Drelu(w)` and `Gate::Relu(w)` compare over the k = w.bits()
//! low bits ([`Width`]): a and c are bit k − 1 of x̂ and r and the DCF is over
//! the k − 1 bits below, the same identity in Z_2^k, exact for every x the width
//! admits; the ReLU's d·x = d·x̂ − d·r keeps the whole 64-bit x̂ and r.
//! ReluShift's operand is a product at 2f bits: it keeps 63 bits below bit 63.
//!
//! **What each server sees**: x̂ = x + r, with r uniform and fresh for this
//! element and this use (drawn from a material stream of its own tag, never
//! again), so x̂ is uniform and independent of x; its DCF key (its own root seed
//! and the correction words, the same in both keys), which by the DCF's
//! security reveals nothing of r' or β to a party without the other key; and
//! its shares of c and c·r, or of c, c·r_h and r_h (uniform, from its own
//! stream, or server 1's corrections such as c − c₀).
//!
//! **Material.** Per element, server 0 draws [r₀, root₀ (2 words), c₀, (c·r)₀]
//! (for ReluShift [r₀, root₀, c₀, (c·r_h)₀, (r_h)₀]) from the gate's stream and
//! server 1 draws [r₁, root₁]; the dealer sends, per block of [`BLOCK`]
//! elements under a material tag of its own, the block's correction words to
//! both servers, and to server 1 first its corrections c − c₀ (and c·r − (c·r)₀,
//! or c·r_h − (c·r_h)₀ and r_h − (r_h)₀). DCF keys cannot be expanded from a seed (the
//! correction words depend on both roots and on r): they are the bulk of what
//! the dealer sends ([`dealer_bytes`]).

pub mod dcf;

use std::num::Wrapping;

use anyhow::Result;

use super::{Cost, Dealer, Server};
use crate::ring::{Prg, RingTensor, from_words};
use crate::transport::{Party, WordWriter, read_words};

use super::comparison::Width;

/// Elements per dealer message: a message of correction words is about 1.5–2.6 KB
/// per element, so a block is 1.5–2.6 MB and neither a server nor the dealer
/// holds the keys of a whole tensor.
pub const BLOCK: usize = 1024;

/// Which gate: what it outputs, and so its payload and correlations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Arithmetic shares of d = [x ≥ 0], for x the width admits.
    Drelu(Width),
    /// Arithmetic shares of x·[x ≥ 0], for x the width admits.
    Relu(Width),
    /// Arithmetic shares of ReLU(x) / 2^shift, to one unit in the last place
    /// (rounded up with probability equal to the dropped fraction): a product's
    /// truncation in the ReLU's own opening ([`Gate::check`]: 0 ≤ shift ≤ 63).
    ReluShift(u32),
}

impl Gate {
    /// The sign's bit: k − 1 for a width of k bits; 63 for ReluShift, whose
    /// operand is a product at 2f bits, which may use the whole ring below 2^62.
    fn sign_bit(self) -> u32 {
        match self {
            Gate::Drelu(w) | Gate::Relu(w) => w.bits() - 1,
            Gate::ReluShift(_) => 63,
        }
    }

    /// The bits below the sign, which the DCF compares.
    fn low_mask(self) -> u64 {
        (1u64 << self.sign_bit()) - 1
    }

    /// The DCF's input: the bits below the sign of x̂ against those of r.
    fn shape(self) -> dcf::Shape {
        dcf::Shape::new(self.sign_bit(), self.payload())
    }

    /// Words of β: (1 − 2c), and for ReLU (1 − 2c)·r; for ReluShift
    /// (1 − 2c)·r_h and c (r_h = r >> shift).
    fn payload(self) -> usize {
        match self {
            Gate::Drelu(_) => 1,
            Gate::Relu(_) => 2,
            Gate::ReluShift(_) => 3,
        }
    }

    /// Correlated words per element: c, and for ReLU c·r; for ReluShift c·r_h
    /// and r_h.
    fn correlated(self) -> usize {
        match self {
            Gate::Drelu(_) => 1,
            Gate::Relu(_) => 2,
            Gate::ReluShift(_) => 3,
        }
    }

    /// A shift of 64 or more is not a truncation of a 64-bit ring element.
    pub fn check(self) -> Result<()> {
        if let Gate::ReluShift(shift) = self
            && shift > 63
        {
            anyhow::bail!("a ReLU truncated by {shift} bits: at most 63 are possible");
        }
        Ok(())
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

/// 2^(64 − shift) in the ring: the weight of the wrap of x + r past 2^64 once
/// shifted (0 for shift 0, where the wrap vanishes mod 2^64).
fn wrap_weight(shift: u32) -> Wrapping<u64> {
    Wrapping(if shift == 0 { 0 } else { 1u64 << (64 - shift) })
}

fn root(words: &[u64]) -> u128 {
    u128::from(words[0]) | u128::from(words[1]) << 64
}

/// Server: shares of [x ≥ 0] (`Gate::Drelu`, an integer 0 or 1), of
/// x·[x ≥ 0] (`Gate::Relu`) (both exact for every x their width admits) or of x·[x ≥ 0] >> shift to one ulp
/// (`Gate::ReluShift`) for every element of `x`. One round.
pub fn run(s: &mut Server, gate: Gate, x: &RingTensor) -> Result<RingTensor> {
    Ok(from_words(x.shape(), run_at(s, gate, x, &[0])?))
}

/// Server: shares of [x ≥ t] (integers 0 or 1) for every element of `x` and
/// every public threshold t (ring-encoded), threshold by threshold: a tensor
/// of shape [thresholds, x.len()]. One round, and one opening and one key per
/// element whatever the number of thresholds (interval containment, Boyle et
/// al. 2021, §4): x − t + r = x̂ − t, so the key of [`Gate::Drelu`] for the
/// mask r, evaluated at x̂ − t, is the DReLU of x − t. Dealt by
/// [`deal`]`(Gate::Drelu(w), x.len())`. Exact for x − t within the width.
pub fn drelu_at(s: &mut Server, x: &RingTensor, thresholds: &[u64], w: Width) -> Result<RingTensor> {
    let out = run_at(s, Gate::Drelu(w), x, thresholds)?;
    Ok(from_words(&[thresholds.len(), x.len()], out))
}

/// [`run`] of x − t for every public t in `points`, point by point (one
/// mask, opening and key per element; the points are public shifts of the
/// opened x̂).
fn run_at(s: &mut Server, gate: Gate, x: &RingTensor, points: &[u64]) -> Result<Vec<u64>> {
    gate.check()?;
    let n = x.len();
    let first = s.is_first();
    let per = gate.stream_words(first);
    let tag = s.at.next_material()?;
    let mut mat = vec![0u64; per * n];
    s.material(tag).fill(&mut mat);
    let masked: Vec<u64> = x.iter().zip(mat.chunks_exact(per)).map(|(x, m)| x.0.wrapping_add(m[0])).collect();
    let theirs = s.exchange(&masked)?;
    let opened: Vec<u64> = masked.iter().zip(&theirs).map(|(a, b)| a.wrapping_add(*b)).collect();
    drop((masked, theirs));
    let shape = gate.shape();
    let (k, key_len, corr) = (gate.payload(), shape.key_bytes(), gate.correlated());
    let (sign, low_mask) = (gate.sign_bit(), gate.low_mask());
    let mut out = vec![0u64; points.len() * n];
    let (mut low, mut y) = (Vec::new(), Vec::new());
    for range in blocks(n) {
        let m = range.len();
        let tag = s.at.next_material()?;
        let received = if first { 0 } else { 8 * corr * m };
        let message = s.dealer_message(tag, received + key_len * m)?;
        let (corrections, keys) = message.split_at(received);
        let corrections = read_words(corrections);
        let roots: Vec<u128> = range.clone().map(|e| root(&mat[per * e + 1..per * e + 3])).collect();
        // x − t masked by r: x̂ − t, public; every point of an element at once,
        // so that their common prefix in the key's tree is walked once.
        let p = points.len();
        let shifted = |e: usize, j: usize| opened[e].wrapping_sub(points[j]);
        low.clear();
        low.extend(range.clone().flat_map(|e| (0..p).map(move |j| shifted(e, j) & low_mask)));
        y.clear();
        y.resize(k * m * p, 0);
        dcf::evaluate_at(shape, s.i, &roots, keys, &low, p, &mut y);
        for j in 0..p {
            for (i, e) in range.clone().enumerate() {
                let own = &mat[per * e..per * (e + 1)];
                let c = |w: usize| Wrapping(if first { own[3 + w] } else { corrections[corr * i + w] });
                let opened = shifted(e, j);
                let a = Wrapping(opened >> sign & 1);
                let one = Wrapping(1u64);
                let public = |v: Wrapping<u64>| if first { v } else { Wrapping(0) };
                // u = c ⊕ w = c + (1 − 2c)·w.
                let at = k * (i * p + j);
                let u = c(0) + Wrapping(y[at]);
                out[j * n + e] = match gate {
                    // d = 1 − msb(x) = (1 − a) − (1 − 2a)·u.
                    Gate::Drelu(_) => (public(one - a) - (one - Wrapping(2) * a) * u).0,
                    Gate::Relu(_) => {
                        // v = u·r = c·r + (1 − 2c)·r·w.
                        let v = c(1) + Wrapping(y[at + 1]);
                        let xh = Wrapping(opened);
                        let share = public(xh) - Wrapping(own[0]);
                        ((one - a) * share - (one - Wrapping(2) * a) * (u * xh - v)).0
                    }
                    Gate::ReluShift(shift) => {
                        // d = (1 − a) − (1 − 2a)·u; v = u·r_h = c·r_h + (1 − 2c)·r_h·w;
                        // d·r_h = (1 − a)·r_h − (1 − 2a)·v; c·w from the third word.
                        // d·(x >> shift) = x̂_h·d − d·r_h + (1 − a)·2^(64 − shift)·c·w,
                        // up by one ulp when the low parts borrow (module docs).
                        let v = c(1) + Wrapping(y[at + 1]);
                        let cw = Wrapping(y[at + 2]);
                        let d = public(one - a) - (one - Wrapping(2) * a) * u;
                        let d_rh = (one - a) * c(2) - (one - Wrapping(2) * a) * v;
                        let xh_high = Wrapping(opened >> shift);
                        (xh_high * d - d_rh + (one - a) * wrap_weight(shift) * cw).0
                    }
                };
            }
        }
    }
    Ok(out)
}

/// Dealer half of [`run`] over `n` elements.
pub fn deal(d: &mut Dealer, gate: Gate, n: usize) -> Result<()> {
    gate.check()?;
    let tag = d.at.next_material()?;
    let mut p: [Prg; 2] = [d.material(0, tag), d.material(1, tag)];
    let (per0, per1) = (gate.stream_words(true), gate.stream_words(false));
    let shape = gate.shape();
    let (key_len, corr) = (shape.key_bytes(), gate.correlated());
    let (sign, low_mask) = (gate.sign_bit(), gate.low_mask());
    let (mut m0, mut m1) = (Vec::new(), Vec::new());
    for range in blocks(n) {
        let m = range.len();
        let tag = d.at.next_material()?;
        m0.resize(per0 * m, 0);
        m1.resize(per1 * m, 0);
        p[0].fill(&mut m0);
        p[1].fill(&mut m1);
        let k = gate.payload();
        let (mut alphas, mut betas, mut roots) =
            (Vec::with_capacity(m), Vec::with_capacity(k * m), Vec::with_capacity(m));
        let mut corrections = WordWriter::with_capacity(corr * m + key_len * m / 8);
        for (w0, w1) in m0.chunks_exact(per0).zip(m1.chunks_exact(per1)) {
            let r = w0[0].wrapping_add(w1[0]);
            let c = r >> sign & 1;
            let one_minus_2c = 1u64.wrapping_sub(2 * c);
            alphas.push(r & low_mask);
            roots.push([root(&w0[1..3]), root(&w1[1..3])]);
            match gate {
                Gate::Drelu(_) | Gate::Relu(_) => {
                    let beta = [one_minus_2c, one_minus_2c.wrapping_mul(r)];
                    betas.extend_from_slice(&beta[..k]);
                    corrections.push(c.wrapping_sub(w0[3]));
                    if matches!(gate, Gate::Relu(_)) {
                        corrections.push(c.wrapping_mul(r).wrapping_sub(w0[4]));
                    }
                }
                Gate::ReluShift(shift) => {
                    let r_h = r >> shift;
                    betas.extend_from_slice(&[one_minus_2c, one_minus_2c.wrapping_mul(r_h), c]);
                    corrections.push(c.wrapping_sub(w0[3]));
                    corrections.push(c.wrapping_mul(r_h).wrapping_sub(w0[4]));
                    corrections.push(r_h.wrapping_sub(w0[5]));
                }
            }
        }
        let mut keys = Vec::with_capacity(key_len * m);
        dcf::generate_many(shape, &alphas, &betas, &roots, &mut keys);
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

    const LOW63: u64 = (1 << 63) - 1;

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
        assert_eq!(dealer_bytes(Gate::Drelu(Width::RING), 10), [15_360, 15_440]);
        assert_eq!(dealer_bytes(Gate::Relu(Width::RING), 10), [20_480, 20_640]);
        // 47 levels instead of 63 at 16 fractional bits.
        let narrow = Width::in_range(crate::ring::FixedPoint::default());
        assert_eq!(dealer_bytes(Gate::Drelu(narrow), 10), [11_480, 11_560]);
        assert_eq!(dealer_bytes(Gate::Relu(narrow), 10), [15_320, 15_480]);
        assert_eq!(dealer_bytes(Gate::ReluShift(16), 10), [25_600, 25_840]);
    }

    /// The sign identity in a ring of k bits, what a gate of width k computes:
    /// for every x the width admits and any r, the sign of x is
    /// a ⊕ c ⊕ [x̂ mod 2^(k−1) < r mod 2^(k−1)], a and c bit k − 1 of x̂ and r.
    #[test]
    fn the_sign_identity_holds_in_every_width() {
        let rs = [0u64, 1, LOW63, 1 << 63, u64::MAX, 1 << 46, (1 << 47) - 1, 0x1234_5678_9abc_def0];
        for bits in [2u32, 3, 17, 36, 47, 48, 60, 63, 64] {
            let w = Width::new(bits).unwrap();
            let gate = Gate::Drelu(w);
            let (sign, low) = (gate.sign_bit(), gate.low_mask());
            let top = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
            for x in [0i64, 1, -1, top, -top, -top - 1, top / 3, -top / 5] {
                assert!(w.contains(x));
                for &r in &rs {
                    let xh = (x as u64).wrapping_add(r);
                    let msb = (xh >> sign & 1) ^ (r >> sign & 1) ^ u64::from((xh & low) < (r & low));
                    assert_eq!(msb, u64::from(x < 0), "{bits} bits, x = {x}, r = {r}");
                }
            }
        }
    }

    /// The shift identity on plain integers, the cases the gate's shares
    /// compute: for 0 ≤ x < 2^63, (x̂ >> s) − (r >> s) + 2^(64−s)·(1 − a)·c
    /// is x >> s or one more, and one more exactly when the low s bits borrow.
    #[test]
    fn the_shift_identity_holds_at_the_edges() {
        let xs = [0u64, 1, 2, 0xffff, 1 << 16, (1 << 62) - 1, 1 << 62, LOW63 - 1, LOW63];
        let rs = [0u64, 1, LOW63, 1 << 63, u64::MAX, 1 << 62, (1 << 63) + 1, 0x1234_5678_9abc_def0];
        for shift in [0u32, 1, 16, 32, 34, 62, 63] {
            for &x in &xs {
                for &r in &rs {
                    let xh = x.wrapping_add(r);
                    let (a, c) = (xh >> 63, r >> 63);
                    let t = (xh >> shift)
                        .wrapping_sub(r >> shift)
                        .wrapping_add(((1 - a) * c).wrapping_mul(wrap_weight(shift).0));
                    let low = if shift == 0 { 0 } else { u64::MAX >> (64 - shift) };
                    let borrow = u64::from((xh & low) < (r & low));
                    assert_eq!(t, (x >> shift) + borrow, "x = {x}, r = {r}, shift {shift}");
                }
            }
        }
    }
}
