//! Exact comparison with zero, and what is built on it: ReLU, max/argmax by
//! tournament, and piecewise-linear sigmoid and tanh.
//!
//! **DReLU** ([x ≥ 0] for shared x = x0 + x1 mod 2^64). The sign is the top bit:
//!
//! ```text
//! msb(x) = msb(x0) ⊕ msb(x1) ⊕ carry,   carry = [x0' + x1' ≥ 2^63]
//! ```
//!
//! with x' the low 63 bits. The carry is a millionaires' comparison between a value
//! only server 0 knows, u = x0', and one only server 1 knows, v = 2^63 − 1 − x1':
//! carry = [u > v]. It is computed on XOR shares with the dealer's AND triples:
//!
//! * level 0, per bit lane: g = u ∧ ¬v (u is greater here) and e = ¬(u ⊕ v)
//!   (equal). Each server knows one operand of g outright, so a *one-sided* AND
//!   suffices: each sends its operand masked by the dealer's random word, one word
//!   per element;
//! * levels 1–6 combine neighbouring lanes, most significant first:
//!   (G, E) ← (G_hi ⊕ E_hi·G_lo, E_hi·E_lo). The lanes of all elements are packed in
//!   one bit stream; splitting it into odd (hi) and even (lo) bits halves every
//!   element's width, so each level opens only live bits (3 × 32, 16, 8, 4, 2 bits,
//!   then 2 × 1 bit per element) and the last bit left is [u > v].
//!
//! The result is exact for every x in the ring: no polynomial approximation, no
//! range restriction. A comparison of a model's values needs fewer bits
//! ([`Width`]): over width k it compares the k − 1 bits below bit k − 1, packed
//! k − 1 lanes per element (padded to even, and padded again wherever a level
//! leaves an odd count), so level 0 and every AND level open fewer bits.
//! Seven rounds of AND openings (about 4 words per element per server over the
//! ring, 3 over a value's 48 bits), then one last round that opens the bit masked by a dealt random bit ρ
//! (1 bit per element) and turns it into what the caller needs:
//!
//! * **DReLU** (an arithmetic share of the bit d, for MaxPool and the piecewise
//!   functions): d = m + ρ − 2mρ with m = d ⊕ ρ opened and ρ arithmetically shared;
//! * **ReLU** = x·d without a separate product. In the same last round the servers
//!   also open e = x − b for a dealt random b, and with the dealer's shares of ρ
//!   and of b·ρ,
//!
//!   ```text
//!   x·d = m·x + (1 − 2m)·ρ·x,   ρ·x = e·ρ + b·ρ,
//!   ```
//!
//!   all linear in shares once m and e are public. Against a DReLU followed by a
//!   Beaver product this saves a round and one word per element per server.
//!
//! Everything a server receives is a value XOR-masked by an AND-triple operand it
//! does not know, a bit masked by a random bit, or x masked by a random b: uniform,
//! independent of x.
//!
//! **Layout of the material.** Each server draws its material section by section
//! (level 0, the six AND levels, the last round), and within a section element by
//! element (or word by word), its random words and — server 0 only — its correlated
//! words side by side: level 0 `[r, c]`, an AND level `[a, b₁, b₂, c₁, c₂]`, the
//! ReLU's last round `[b, ρ, bρ]` after the packed ρ bits. Server 1 draws the same
//! minus the correlated words, which the dealer sends it in the same order. So the
//! dealer deals block by block, holding neither server's material for a whole
//! tensor, and the servers hold one section at a time.

use std::borrow::Cow;
use std::num::Wrapping;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use super::comparison::{Comparison, Width};
use super::fss::{self, Gate};
use super::mul::{deal_mul_many, deal_mul_pairs, mul_many, mul_many_cost, mul_pairs, mul_pairs_cost};
use super::trunc::{deal_truncate, truncate, truncate_cost};
use super::{Cost, Dealer, Server};
use crate::ring::{FixedPoint, Prg, RingTensor, Z, from_words};
use crate::transport::{WordWriter, read_words};

/// Lanes per element entering each AND level of a bitwise DReLU of width `w`:
/// level 0 compares the w − 1 bits below the sign, padded to an even count;
/// each level halves the lanes, and an odd count above one gets a neutral lane
/// on top (G = 0, E = 1). 64, 32, …, 2 for the ring; 48, 24, 12, 6, 4, 2 for
/// 48 bits (3 lanes padded to 4): as many levels, a quarter fewer bits.
fn level_widths(w: Width) -> Vec<usize> {
    let mut lanes = (w.bits() as usize - 1).next_multiple_of(2);
    let mut widths = Vec::new();
    while lanes > 1 {
        widths.push(lanes);
        lanes /= 2;
        if lanes > 1 && lanes % 2 == 1 {
            lanes += 1;
        }
    }
    widths
}

fn words_for(n: usize, bits: usize) -> usize {
    (n * bits).div_ceil(64)
}

/// Words each server sends for `n` DReLUs of width `w`: level 0, the AND levels,
/// the B2A bits.
pub fn drelu_open_words(n: usize, w: Width) -> usize {
    let widths = level_widths(w);
    let ands: usize = widths.iter().enumerate().map(|(l, &k)| (1 + ands(l, &widths)) * words_for(n, k / 2)).sum();
    words_for(n, widths[0]) + ands + words_for(n, 1)
}

/// Words each server sends for `n` ReLUs: a DReLU's, and the masked x − b.
pub fn relu_open_words(n: usize, w: Width) -> usize {
    drelu_open_words(n, w) + n
}

/// Rounds of a DReLU of width `w`: level 0, the AND levels (six for every
/// width above 32 bits), the packed B2A bits.
pub fn drelu_rounds(w: Width) -> u64 {
    2 + level_widths(w).len() as u64
}

/// What the bitwise [`drelu`] of `n` elements sends.
pub fn bitwise_drelu_cost(n: usize, w: Width) -> Cost {
    Cost::words(drelu_open_words(n, w), drelu_rounds(w))
}

/// What the bitwise [`relu`] of `n` elements sends: a DReLU's, with the masked
/// x − b in its last round.
pub fn bitwise_relu_cost(n: usize, w: Width) -> Cost {
    Cost::words(relu_open_words(n, w), drelu_rounds(w))
}

/// What [`drelu`] of `n` elements sends under `cmp`.
pub fn drelu_cost(cmp: Comparison, n: usize, w: Width) -> Cost {
    cmp.drelu_cost(n, w)
}

/// What [`relu`] of `n` elements sends under `cmp`.
pub fn relu_cost(cmp: Comparison, n: usize, w: Width) -> Cost {
    cmp.relu_cost(n, w)
}

/// What one level of [`tournament`] with `pairs` comparisons sends: their DReLUs,
/// then the selection of `operands` tensors (the value, and the index); a
/// maximum alone is one ReLU (max(a, b) = b + ReLU(a − b)), in the ReLU's
/// rounds under either protocol.
pub fn tournament_level_cost(cmp: Comparison, pairs: usize, operands: usize, w: Width) -> Cost {
    if operands == 1 {
        return relu_cost(cmp, pairs, w);
    }
    drelu_cost(cmp, pairs, w) + mul_many_cost(pairs, &vec![pairs; operands])
}

/// What [`tournament`] sends over groups of these sizes (size → how many
/// groups): level by level, as [`pair_up`] pairs them, from the sizes alone, so
/// that the groups need not be built to plan (or refuse) a run.
pub fn tournament_cost(
    cmp: Comparison,
    group_sizes: &std::collections::BTreeMap<usize, usize>,
    with_index: bool,
    w: Width,
) -> Cost {
    let mut sizes = group_sizes.clone();
    let mut cost = Cost::ZERO;
    while sizes.keys().any(|&len| len > 1) {
        let pairs: usize = sizes.iter().map(|(len, count)| len / 2 * count).sum();
        cost = cost + tournament_level_cost(cmp, pairs, 1 + usize::from(with_index), w);
        let mut next = std::collections::BTreeMap::new();
        for (len, count) in sizes {
            *next.entry(len.div_ceil(2)).or_insert(0) += count;
        }
        sizes = next;
    }
    cost
}

/// What [`piecewise_many`] of `count` functions with `breaks` breakpoints over
/// `n` elements sends: the comparisons with every breakpoint (of width `w`,
/// [`Piecewise::width`]); u² and u³ (a pair of operands and a truncation each);
/// the coefficient products and their one truncation.
pub fn piecewise_many_cost(cmp: Comparison, n: usize, breaks: usize, count: usize, w: Width) -> Cost {
    let power = mul_pairs_cost(&[n]) + truncate_cost(n);
    drelu_thresholds_cost(cmp, n, breaks, w)
        + power
        + power
        + mul_pairs_cost(&vec![n; 3 * count])
        + truncate_cost(count * n)
}

/// Correction words the dealer sends server 1 for `n` DReLUs of width `w`.
pub fn drelu_correction_words(n: usize, w: Width) -> usize {
    carry_correction_words(n, w) + n
}

/// Correction words the dealer sends server 1 for `n` ReLUs: shares of ρ and bρ.
pub fn relu_correction_words(n: usize, w: Width) -> usize {
    carry_correction_words(n, w) + 2 * n
}

fn carry_correction_words(n: usize, w: Width) -> usize {
    let widths = level_widths(w);
    words_for(n, widths[0])
        + widths.iter().enumerate().map(|(l, &k)| ands(l, &widths) * words_for(n, k / 2)).sum::<usize>()
}

/// ANDs at AND level `l` of `widths`: (G, E) both, except at the last level,
/// which needs G only.
fn ands(level: usize, widths: &[usize]) -> usize {
    if level + 1 == widths.len() { 1 } else { 2 }
}

/// A word's even bits compressed into its low 32 bits and its odd bits into its
/// high 32 (Hacker's Delight, 7-2: the outer perfect unshuffle, five swaps).
fn unshuffle(mut x: u64) -> u64 {
    for (shift, mask) in [
        (1, 0x2222_2222_2222_2222u64),
        (2, 0x0c0c_0c0c_0c0c_0c0c),
        (4, 0x00f0_00f0_00f0_00f0),
        (8, 0x0000_ff00_0000_ff00),
        (16, 0x0000_0000_ffff_0000),
    ] {
        let t = (x ^ (x >> shift)) & mask;
        x ^= t ^ (t << shift);
    }
    x
}

/// Split a packed lane stream into its odd (more significant) and even lanes, each
/// packed again, `len` words each. Linear, so each server applies it to its XOR share.
/// Each pass is a plain map that vectorises (it was 11% of a MobileNetV2
/// prediction's instructions), and the outputs are built by extending, never
/// zeroed first (the zeroing was another 2.7%).
fn split_lanes(stream: &[u64], len: usize) -> (Vec<u64>, Vec<u64>) {
    const LOW: u64 = 0xffff_ffff;
    // Every word's even bits in its low half and its odd bits in its high half.
    let unshuffled: Vec<u64> = stream.iter().take(2 * len).map(|&w| unshuffle(w)).collect();
    let pairs = unshuffled.chunks_exact(2);
    let tail = pairs.remainder().first().copied();
    let (mut hi, mut lo) = (Vec::with_capacity(len), Vec::with_capacity(len));
    hi.extend(pairs.clone().map(|p| p[0] >> 32 | (p[1] & !LOW)));
    lo.extend(pairs.map(|p| (p[0] & LOW) | p[1] << 32));
    // An odd last word pairs with zeros, and so do the words past the stream.
    if let Some(u) = tail {
        hi.push(u >> 32);
        lo.push(u & LOW);
    }
    hi.resize(len, 0);
    lo.resize(len, 0);
    (hi, lo)
}

fn bit(words: &[u64], i: usize) -> u64 {
    (words[i / 64] >> (i % 64)) & 1
}

/// A tensor's ring elements as words, without a copy when it is contiguous.
fn words_of(x: &RingTensor) -> std::borrow::Cow<'_, [u64]> {
    match x.as_slice() {
        Some(words) => std::borrow::Cow::Borrowed(bytemuck::cast_slice(words)),
        None => std::borrow::Cow::Owned(x.iter().map(|w| w.0).collect()),
    }
}

/// Where a server's correlated words come from: server 0 draws them from its own
/// stream, beside its random words; server 1 reads them, in the same order, from the
/// dealer's message for the material.
struct Correlated {
    received: Option<Vec<u8>>,
    at: usize,
}

impl Correlated {
    fn new(s: &mut Server, tag: u32, len: usize) -> Result<Correlated> {
        let received = if s.is_first() { None } else { Some(s.correction_message(tag, len)?) };
        Ok(Correlated { received, at: 0 })
    }

    /// Server 1's next `len` correction words (server 0 gets none).
    fn next(&mut self, len: usize) -> Cow<'_, [u64]> {
        match &self.received {
            Some(bytes) => {
                self.at += len;
                read_words(&bytes[8 * (self.at - len)..8 * self.at])
            }
            None => Cow::Borrowed(&[]),
        }
    }
}

/// Server: XOR shares of [x ≥ 0] for every element of `x`, packed one bit per
/// element, exact for every x the width `w` admits, after level 0 and the AND
/// levels (seven rounds at every width above 32 bits). Over width k the
/// operand is x mod 2^k: its sign is bit k − 1 = msb(x0) ⊕ msb(x1) ⊕ carry,
/// the carry out of the k − 1 bits below. The local work between the openings
/// is in the `level0_*`, `and_level_*` and [`sign_bits`] functions, which
/// `benches/kernels.rs` runs alone.
fn drelu_bits(s: &mut Server, prg: &mut Prg, cor: &mut Correlated, x: &[u64], w: Width) -> Result<Vec<u64>> {
    let n = x.len();
    let first = s.is_first();
    let widths = level_widths(w);
    let per = if first { 2 } else { 1 };
    let operand = level0_operand(first, x, w, widths[0]);
    let mat = prg.words(per * operand.len());
    let theirs = s.exchange_message(level0_masked(&operand, &mat, per))?;
    let theirs = read_words(&theirs);
    let mut g = level0_g(first, &operand, &mat, &theirs, &cor.next(operand.len()));
    drop((mat, theirs));
    let mut e = operand;
    for level in 0..widths.len() {
        let lanes = and_level_lanes(&g, &e, &widths, level, n);
        let mat = prg.words(and_level_material_words(first, &widths, level, n));
        let theirs = s.exchange_message(and_level_masked(first, &lanes, &mat))?;
        let theirs = read_words(&theirs);
        let received = cor.next(lanes.ands * lanes.len);
        let (next_g, next_e) = and_level_combine(first, &lanes, &mat, &theirs, &received);
        (g, e) = padded_for_next(first, next_g, next_e, &widths, level, n);
    }
    Ok(sign_bits(first, g, x, w))
}

/// Level 0, what a server's operand is, packed `lanes` (`level_widths(w)[0]`) per
/// element: its share's w − 1 bits below the sign (server 0 holds u = x0' outright,
/// server 1 holds ¬v = x1', v = 2^(w−1) − 1 − x1'), so that g = u ∧ ¬v (u is
/// greater in this lane) and e = ¬(u ⊕ v) = x0' ⊕ x1' (equal) are lane-wise in
/// the operands. A padding lane on top is neutral: g = 0 there, because server 0's
/// bit is 0, and e = 1, through server 1's bit. This is also the server's share
/// of e, which needs no opening.
fn level0_operand(first: bool, x: &[u64], w: Width, lanes: usize) -> Vec<u64> {
    let carry_lanes = w.bits() - 1;
    let low = (1u64 << carry_lanes) - 1;
    let neutral = if !first && lanes as u32 > carry_lanes { 1 << carry_lanes } else { 0 };
    if lanes == 64 {
        return x.iter().map(|&v| v & low | neutral).collect();
    }
    let mut packed = vec![0u64; words_for(x.len(), lanes)];
    for (i, &v) in x.iter().enumerate() {
        put_field(&mut packed, i * lanes, lanes, v & low | neutral);
    }
    packed
}

/// Write the `width` low bits of `v` (no higher ones set) at bit `at` of a
/// zeroed packed stream.
fn put_field(packed: &mut [u64], at: usize, width: usize, v: u64) {
    let (word, offset) = (at / 64, at % 64);
    packed[word] |= v << offset;
    if offset + width > 64 {
        packed[word + 1] |= v >> (64 - offset);
    }
}

/// The `width` bits at bit `at` of a packed stream (zeros past its end).
fn get_field(packed: &[u64], at: usize, width: usize) -> u64 {
    let (word, offset) = (at / 64, at % 64);
    let mut v = packed[word] >> offset;
    if offset + width > 64 {
        v |= packed.get(word + 1).copied().unwrap_or(0) << (64 - offset);
    }
    if width == 64 { v } else { v & ((1 << width) - 1) }
}

/// AND level `level`'s output (G, E) of `n` elements, given a neutral lane on
/// top if the next level's width is one more than half this level's (an odd
/// count padded to even); as it is otherwise.
fn padded_for_next(
    first: bool,
    g: Vec<u64>,
    e: Vec<u64>,
    widths: &[usize],
    level: usize,
    n: usize,
) -> (Vec<u64>, Vec<u64>) {
    match widths.get(level + 1) {
        Some(&next) if next != widths[level] / 2 => {
            (pad_lane(&g, n, next - 1, false), pad_lane(&e, n, next - 1, !first))
        }
        _ => (g, e),
    }
}

/// A packed stream of `n` elements of `width` lanes, each given a lane on top
/// set to `top` (a share of a neutral lane: G = 0 in both shares, E = 1 in
/// server 1's), so that the next AND level halves an even count.
fn pad_lane(packed: &[u64], n: usize, width: usize, top: bool) -> Vec<u64> {
    let slot = width + 1;
    let len = words_for(n, slot);
    if 64 % slot == 0 {
        // Whole elements per output word (3 lanes into 4 at f = 16): one read
        // of the word's input bits, spread slot by slot. The slots past the
        // n-th element hold what the input holds past its end: never read.
        let per = 64 / slot;
        let lanes = (1u64 << width) - 1;
        let tops = if top { (0..per).fold(0u64, |m, j| m | 1 << (j * slot + width)) } else { 0 };
        let spread = |v: u64| {
            if width == 3 {
                spread_3_to_4(v)
            } else {
                (0..per).fold(0, |out, j| out | (v >> (j * width) & lanes) << (j * slot))
            }
        };
        return (0..len).map(|k| tops | spread(get_field(packed, k * per * width, per * width))).collect();
    }
    let mut out = vec![0u64; len];
    for i in 0..n {
        put_field(&mut out, i * slot, slot, get_field(packed, i * width, width) | u64::from(top) << width);
    }
    out
}

/// Sixteen 3-bit groups (the low 48 bits) moved into 4-bit slots, halving
/// the distance in four steps (as a perfect shuffle does): the 3 → 4 lanes
/// padding of a value's comparison at 16 fractional bits.
fn spread_3_to_4(mut x: u64) -> u64 {
    x = (x & 0x0000_0000_00ff_ffff) | (x & 0x0000_ffff_ff00_0000) << 8;
    x = (x & 0x0000_0fff_0000_0fff) | (x & 0x00ff_f000_00ff_f000) << 4;
    x = (x & 0x003f_003f_003f_003f) | (x & 0x0fc0_0fc0_0fc0_0fc0) << 2;
    (x & 0x0707_0707_0707_0707) | (x & 0x3838_3838_3838_3838) << 1
}

/// Level 0, what a server sends: its packed operand, masked. `mat` is the
/// level's material, `per` words per packed word: [r, c] for server 0, [r] for
/// server 1.
fn level0_masked(operand: &[u64], mat: &[u64], per: usize) -> WordWriter {
    let mut masked = WordWriter::with_capacity(operand.len());
    masked.extend(operand.iter().zip(mat.chunks_exact(per)).map(|(&w, m)| w ^ m[0]));
    masked
}

/// Level 0, this server's XOR share of g from the other's masked operand `theirs`
/// (and, for server 1, the dealer's correction words `c`).
/// x∧y = (x ∧ (y⊕b)) ⊕ ((x⊕a) ∧ b) ⊕ (a∧b): server 0 holds x, a; server 1 holds y, b.
fn level0_g(first: bool, operand: &[u64], mat: &[u64], theirs: &[u64], c: &[u64]) -> Vec<u64> {
    let len = operand.len();
    if first {
        (0..len).map(|i| (operand[i] & theirs[i]) ^ mat[2 * i + 1]).collect()
    } else {
        (0..len).map(|i| (theirs[i] & mat[i]) ^ c[i]).collect()
    }
}

/// The lanes an AND level combines: G and E split into their odd (hi) and even
/// (lo) lanes, `len` words each; `ands` ANDs per word (2, or 1 at the last level).
struct Lanes {
    ands: usize,
    len: usize,
    g_hi: Vec<u64>,
    g_lo: Vec<u64>,
    e_hi: Vec<u64>,
    e_lo: Vec<u64>,
}

/// AND level `level` of `widths` over `n` elements: its input lanes, split.
fn and_level_lanes(g: &[u64], e: &[u64], widths: &[usize], level: usize, n: usize) -> Lanes {
    let len = words_for(n, widths[level] / 2);
    let (g_hi, g_lo) = split_lanes(g, len);
    let (e_hi, e_lo) = split_lanes(e, len);
    Lanes { ands: ands(level, widths), len, g_hi, g_lo, e_hi, e_lo }
}

/// Words of material a server draws for AND level `level` of `n` elements: per word
/// [a, b_1..b_ands] and, for server 0, [c_1..c_ands].
fn and_level_material_words(first: bool, widths: &[usize], level: usize, n: usize) -> usize {
    let ands = ands(level, widths);
    (1 + ands + if first { ands } else { 0 }) * words_for(n, widths[level] / 2)
}

/// One round of ANDs sharing the left operand E_hi, word by word: what this server
/// sends, its operands masked. What it sends is recomputed in
/// [`and_level_combine`] rather than kept.
fn and_level_masked(first: bool, lanes: &Lanes, mat: &[u64]) -> WordWriter {
    let ands = lanes.ands;
    let per = 1 + ands + if first { ands } else { 0 };
    let operands = |w: usize| [lanes.e_hi[w], lanes.g_lo[w], lanes.e_lo[w]];
    let sent = 1 + ands;
    let mut masked = WordWriter::with_capacity(sent * lanes.len);
    for (w, m) in mat.chunks_exact(per).enumerate() {
        let ops = operands(w);
        masked.extend((0..sent).map(|j| ops[j] ^ m[j]));
    }
    masked
}

/// The ANDs' results from the other server's masked operands `theirs` (and, for
/// server 1, the dealer's correction words `received`): this server's shares of
/// the next level's (G, E), (G_hi ⊕ E_hi·G_lo, E_hi·E_lo). E is empty after the
/// last level, which needs G only.
fn and_level_combine(
    first: bool,
    lanes: &Lanes,
    mat: &[u64],
    theirs: &[u64],
    received: &[u64],
) -> (Vec<u64>, Vec<u64>) {
    let (len, ands) = (lanes.len, lanes.ands);
    let per = 1 + ands + if first { ands } else { 0 };
    let operands = |w: usize| [lanes.e_hi[w], lanes.g_lo[w], lanes.e_lo[w]];
    let sent = 1 + ands;
    let mut next_g = Vec::with_capacity(len);
    let mut next_e = Vec::with_capacity(if ands == 2 { len } else { 0 });
    for (w, m) in mat.chunks_exact(per).enumerate() {
        let ops = operands(w);
        let opened = |j: usize| ops[j] ^ m[j] ^ theirs[w * sent + j];
        let dl = opened(0);
        for j in 0..ands {
            let er = opened(1 + j);
            let c = if first { m[1 + ands + j] } else { received[w * ands + j] };
            let mut z = c ^ (dl & m[1 + j]) ^ (er & m[0]);
            if first {
                z ^= dl & er;
            }
            if j == 0 {
                next_g.push(lanes.g_hi[w] ^ z);
            } else {
                next_e.push(z);
            }
        }
    }
    (next_g, next_e)
}

/// d = ¬msb(x) = 1 ⊕ msb(x0) ⊕ msb(x1) ⊕ carry, as XOR shares of one bit, from
/// this server's share `carry` of the last level's G; msb is bit w − 1.
fn sign_bits(first: bool, carry: Vec<u64>, x: &[u64], w: Width) -> Vec<u64> {
    let sign = w.bits() - 1;
    let mut d = carry;
    for (word, chunk) in x.chunks(64).enumerate() {
        let msbs = chunk.iter().enumerate().fold(0u64, |acc, (j, v)| acc | (v >> sign & 1) << j);
        let ones = if first { u64::MAX >> (64 - chunk.len()) } else { 0 };
        d[word] ^= msbs ^ ones;
    }
    d
}

/// The dealer deals block by block: per block, the next words of both servers'
/// streams.
const BLOCK: usize = 4096;

#[derive(Default)]
struct Blocks {
    m0: Vec<u64>,
    m1: Vec<u64>,
}

impl Blocks {
    /// The next `len0` words of server 0's stream and `len1` of server 1's.
    fn draw(&mut self, p: &mut [Prg; 2], len0: usize, len1: usize) -> (&[u64], &[u64]) {
        self.m0.resize(len0, 0);
        self.m1.resize(len1, 0);
        p[0].fill(&mut self.m0);
        p[1].fill(&mut self.m1);
        (&self.m0, &self.m1)
    }
}

/// Dealer half of [`drelu_bits`] of width `w`: appends server 1's corrections.
fn deal_drelu_bits(p: &mut [Prg; 2], n: usize, w: Width, corrections: &mut WordWriter) {
    let widths = level_widths(w);
    let mut blocks = Blocks::default();
    // Level 0, per packed word: server 0's [r0, c0], server 1's [r1]; c1 = (r0 ∧ r1) ⊕ c0.
    let len = words_for(n, widths[0]);
    for start in (0..len).step_by(BLOCK) {
        let b = BLOCK.min(len - start);
        let (m0, m1) = blocks.draw(p, 2 * b, b);
        corrections.extend(m0.chunks_exact(2).zip(m1).map(|(w0, r1)| (w0[0] & r1) ^ w0[1]));
    }
    for (level, &width) in widths.iter().enumerate() {
        let len = words_for(n, width / 2);
        let ands = ands(level, &widths);
        let (per0, per1) = (1 + 2 * ands, 1 + ands);
        for start in (0..len).step_by(BLOCK) {
            let b = BLOCK.min(len - start);
            let (m0, m1) = blocks.draw(p, per0 * b, per1 * b);
            for (w0, w1) in m0.chunks_exact(per0).zip(m1.chunks_exact(per1)) {
                let a = w0[0] ^ w1[0];
                corrections.extend((0..ands).map(|j| (a & (w0[1 + j] ^ w1[1 + j])) ^ w0[1 + ands + j]));
            }
        }
    }
}

/// The material of one DReLU or ReLU for server `s`, and server 1's corrections.
fn begin_material(s: &mut Server, correction_words: usize) -> Result<(Prg, Correlated)> {
    let tag = s.at.next_material()?;
    let prg = s.material(tag);
    let cor = Correlated::new(s, tag, correction_words)?;
    Ok((prg, cor))
}

/// The dealer's two streams for the next DReLU or ReLU.
fn begin_dealing(d: &mut Dealer) -> Result<(u32, [Prg; 2])> {
    let tag = d.at.next_material()?;
    Ok((tag, [d.material(0, tag), d.material(1, tag)]))
}

/// Server: arithmetic shares of [x ≥ 0] (an integer, 0 or 1) for every element
/// of x, by the server's comparison protocol: exact for every x the width `w`
/// admits ([`Width`] says which widths hold for which operands).
pub fn drelu(s: &mut Server, x: &RingTensor, w: Width) -> Result<RingTensor> {
    match s.comparison {
        Comparison::Bitwise => bitwise_drelu(s, x, w),
        Comparison::Fss => fss::run(s, Gate::Drelu(w), x),
    }
}

/// Server: shares of [x ≥ t] (integers 0 or 1) for every element of the flat
/// `x` and every public threshold t (ring-encoded), as a [thresholds, n]
/// tensor: the breakpoints of a piecewise curve. Bitwise, a DReLU of every
/// x − t; FSS, one opening and one key per element for all thresholds
/// ([`fss::drelu_at`], interval containment). Exact for x − t within the width
/// `w`: every threshold must keep it ([`Width::for_thresholds`] chooses one
/// that does), or the comparison is refused.
pub fn drelu_thresholds(s: &mut Server, x: &RingTensor, thresholds: &[Z], w: Width) -> Result<RingTensor> {
    let n = x.len();
    if let Some(t) = thresholds.iter().find(|t| !w.admits_threshold(**t)) {
        anyhow::bail!("a threshold of {} ulp is too large for a comparison over {} bits", t.0 as i64, w.bits());
    }
    match s.comparison {
        Comparison::Bitwise => {
            let first = s.is_first();
            // x − t, threshold by threshold, written once (not zeroed first).
            let mut diffs = Vec::with_capacity(thresholds.len() * n);
            for &t in thresholds {
                let t = if first { t } else { Wrapping(0) };
                diffs.extend(x.iter().map(|&v| v - t));
            }
            bitwise_drelu(s, &RingTensor::from_shape_vec(IxDyn(&[thresholds.len(), n]), diffs)?, w)
        }
        Comparison::Fss => {
            let ts: Vec<u64> = thresholds.iter().map(|t| t.0).collect();
            fss::drelu_at(s, x, &ts, w)
        }
    }
}

/// Dealer half of [`drelu_thresholds`], for `n` elements and `thresholds`
/// thresholds.
pub fn deal_drelu_thresholds(d: &mut Dealer, n: usize, thresholds: usize, w: Width) -> Result<()> {
    match d.comparison {
        Comparison::Bitwise => deal_bitwise_drelu(d, thresholds * n, w),
        Comparison::Fss => fss::deal(d, Gate::Drelu(w), n),
    }
}

/// What [`drelu_thresholds`] of `n` elements and `thresholds` thresholds sends:
/// under FSS, one DReLU's per element.
pub fn drelu_thresholds_cost(cmp: Comparison, n: usize, thresholds: usize, w: Width) -> Cost {
    match cmp {
        Comparison::Bitwise => drelu_cost(cmp, thresholds * n, w),
        Comparison::Fss => drelu_cost(cmp, n, w),
    }
}

/// Dealer half of [`drelu`], for `n` elements.
pub fn deal_drelu(d: &mut Dealer, n: usize, w: Width) -> Result<()> {
    match d.comparison {
        Comparison::Bitwise => deal_bitwise_drelu(d, n, w),
        Comparison::Fss => fss::deal(d, Gate::Drelu(w), n),
    }
}

/// Server: ReLU(x) = x · [x ≥ 0], exactly for every x the width `w` admits, by
/// the server's comparison protocol.
pub fn relu(s: &mut Server, x: &RingTensor, w: Width) -> Result<RingTensor> {
    match s.comparison {
        Comparison::Bitwise => bitwise_relu(s, x, w),
        Comparison::Fss => fss::run(s, Gate::Relu(w), x),
    }
}

/// Dealer half of [`relu`].
pub fn deal_relu(d: &mut Dealer, shape: &[usize], w: Width) -> Result<()> {
    match d.comparison {
        Comparison::Bitwise => deal_bitwise_relu(d, shape, w),
        Comparison::Fss => fss::deal(d, Gate::Relu(w), shape.iter().product()),
    }
}

/// Server: ReLU(z) / 2^shift to one ulp, in the ReLU's one round: a product's
/// truncation fused into its ReLU. FSS only: the bitwise protocol has no such
/// gate (lowering fuses it only under `fss`, [`crate::lower`]).
pub fn relu_shift(s: &mut Server, z: &RingTensor, shift: u32) -> Result<RingTensor> {
    match s.comparison {
        Comparison::Fss => fss::run(s, Gate::ReluShift(shift), z),
        Comparison::Bitwise => anyhow::bail!("a ReLU with a fused truncation needs --comparison fss"),
    }
}

/// Dealer half of [`relu_shift`], for `n` elements.
pub fn deal_relu_shift(d: &mut Dealer, n: usize, shift: u32) -> Result<()> {
    match d.comparison {
        Comparison::Fss => fss::deal(d, Gate::ReluShift(shift), n),
        Comparison::Bitwise => anyhow::bail!("a ReLU with a fused truncation needs --comparison fss"),
    }
}

/// What [`relu_shift`] of `n` elements sends: an FSS ReLU's one word and round,
/// with larger keys.
pub fn relu_shift_cost(n: usize, shift: u32) -> Cost {
    fss::cost(Gate::ReluShift(shift), n)
}

/// The bitwise [`drelu`].
fn bitwise_drelu(s: &mut Server, x: &RingTensor, w: Width) -> Result<RingTensor> {
    let n = x.len();
    let first = s.is_first();
    let (mut prg, mut cor) = begin_material(s, drelu_correction_words(n, w))?;
    let d = drelu_bits(s, &mut prg, &mut cor, &words_of(x), w)?;
    // B2A: open m = d ⊕ ρ, then d = m + ρ − 2mρ with ρ arithmetically shared.
    let w1 = words_for(n, 1);
    let rho = prg.words(w1 + if first { n } else { 0 });
    let (rho_bits, rho_arith) = rho.split_at(w1);
    let received = cor.next(n);
    let rho_arith: &[u64] = if first { rho_arith } else { &received };
    let masked: Vec<u64> = d.iter().zip(rho_bits).map(|(d, r)| d ^ r).collect();
    let m = s.open_xor(&masked)?;
    let arith: Vec<u64> = (0..n)
        .map(|i| {
            let (m, ra) = (Wrapping(bit(&m, i)), Wrapping(rho_arith[i]));
            let public = if first { m } else { Wrapping(0) };
            (public + ra - Wrapping(2) * m * ra).0
        })
        .collect();
    Ok(from_words(x.shape(), arith))
}

/// Dealer half of [`bitwise_drelu`], for `n` elements.
fn deal_bitwise_drelu(d: &mut Dealer, n: usize, w: Width) -> Result<()> {
    let (tag, mut p) = begin_dealing(d)?;
    let mut corrections = WordWriter::with_capacity(drelu_correction_words(n, w));
    deal_drelu_bits(&mut p, n, w, &mut corrections);
    let w1 = words_for(n, 1);
    let (rho0, rho1) = (p[0].words(w1 + n), p[1].words(w1));
    let (rho0_bits, rho0_arith) = rho0.split_at(w1);
    corrections.extend((0..n).map(|i| (Wrapping(bit(rho0_bits, i) ^ bit(&rho1, i)) - Wrapping(rho0_arith[i])).0));
    d.send_corrections(tag, corrections)
}

/// Server: ReLU(x) = x · [x ≥ 0], exactly, in the comparison's eight rounds.
fn bitwise_relu(s: &mut Server, x: &RingTensor, w: Width) -> Result<RingTensor> {
    let n = x.len();
    let first = s.is_first();
    let (mut prg, mut cor) = begin_material(s, relu_correction_words(n, w))?;
    let xw = words_of(x);
    let d = drelu_bits(s, &mut prg, &mut cor, &xw, w)?;
    // The last round opens m = d ⊕ ρ and e = x − b together; per element server 0
    // draws [b, ρ, bρ] (arithmetic shares of ρ and b·ρ), server 1 draws [b] and
    // receives [ρ, bρ].
    let w1 = words_for(n, 1);
    let per = if first { 3 } else { 1 };
    let mat = prg.words(w1 + per * n);
    let (rho_bits, mat) = mat.split_at(w1);
    let mut masked = WordWriter::with_capacity(w1 + n);
    masked.extend(d.iter().zip(rho_bits).map(|(d, r)| d ^ r));
    masked.extend(xw.iter().zip(mat.chunks_exact(per)).map(|(&x, m)| x.wrapping_sub(m[0])));
    let theirs = s.exchange_message(masked)?;
    let theirs = read_words(&theirs);
    let received = cor.next(2 * n);
    let z: Vec<u64> = (0..n)
        .map(|i| {
            let m = (d[i / 64] ^ rho_bits[i / 64] ^ theirs[i / 64]) >> (i % 64) & 1;
            let e = Wrapping(xw[i].wrapping_sub(mat[per * i])) + Wrapping(theirs[w1 + i]);
            let (rho, b_rho) =
                if first { (mat[3 * i + 1], mat[3 * i + 2]) } else { (received[2 * i], received[2 * i + 1]) };
            let rho_x = e * Wrapping(rho) + Wrapping(b_rho);
            let m = Wrapping(m);
            (m * Wrapping(xw[i]) + (Wrapping(1) - Wrapping(2) * m) * rho_x).0
        })
        .collect();
    Ok(from_words(x.shape(), z))
}

/// Dealer half of [`bitwise_relu`].
fn deal_bitwise_relu(d: &mut Dealer, shape: &[usize], w: Width) -> Result<()> {
    let n: usize = shape.iter().product();
    let (tag, mut p) = begin_dealing(d)?;
    let mut corrections = WordWriter::with_capacity(relu_correction_words(n, w));
    deal_drelu_bits(&mut p, n, w, &mut corrections);
    let w1 = words_for(n, 1);
    let (rho0, rho1) = (p[0].words(w1), p[1].words(w1));
    let mut blocks = Blocks::default();
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let (m0, m1) = blocks.draw(&mut p, 3 * len, len);
        for (i, (w0, &b1)) in m0.chunks_exact(3).zip(m1).enumerate() {
            let rho = Wrapping(bit(&rho0, start + i) ^ bit(&rho1, start + i));
            let b = Wrapping(w0[0]) + Wrapping(b1);
            corrections.push((rho - Wrapping(w0[1])).0);
            corrections.push((b * rho - Wrapping(w0[2])).0);
        }
    }
    d.send_corrections(tag, corrections)
}

/// One tournament level: who meets whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// (earlier, later) candidates compared at this level.
    pub pairs: Vec<(usize, usize)>,
    /// Candidates without a partner, passed on unchanged.
    pub carried: Vec<usize>,
    /// Each group's candidates at the next level: indices into [winners…, carried…].
    pub next: Vec<Vec<usize>>,
}

/// Pair up the candidates of each group for one tournament level: the pairs
/// (earlier, later) and, for the next level, each group's candidates as indices
/// into [winners of the pairs..., then the odd ones carried over].
/// Public: both servers and the dealer compute it from shapes alone.
pub fn pair_up(groups: &[Vec<usize>]) -> Pairing {
    let mut pairs = Vec::new();
    let mut carried = Vec::new();
    let mut next_groups = Vec::with_capacity(groups.len());
    let total_pairs: usize = groups.iter().map(|g| g.len() / 2).sum();
    for g in groups {
        let mut next = Vec::new();
        for p in g.chunks(2) {
            if let [a, b] = p {
                next.push(pairs.len());
                pairs.push((*a, *b));
            } else {
                next.push(total_pairs + carried.len());
                carried.push(p[0]);
            }
        }
        next_groups.push(next);
    }
    Pairing { pairs, carried, next: next_groups }
}

/// Server: the maximum of each group of elements of `x` (flat indices), and if
/// `with_index`, the position of the first maximum within its group (an integer).
/// Each level compares pairs (a, b) and keeps b + ReLU(a − b) (the maximum
/// alone), or b + d·(a − b) and the index likewise with d = DReLU(a − b) (with
/// the index): ties keep the earlier element, as TensorFlow's ArgMax. Exact when every a − b is
/// within the width `w` ([`Width::in_range`] for values of a computation).
pub fn tournament(
    s: &mut Server,
    x: &RingTensor,
    groups: &[Vec<usize>],
    with_index: bool,
    w: Width,
) -> Result<(RingTensor, Option<RingTensor>)> {
    let flat: Vec<_> = x.iter().copied().collect();
    let mut values: Vec<Wrapping<u64>> = flat;
    // Positions within each group start public: server 0 holds them.
    let mut index: Vec<Wrapping<u64>> = vec![Wrapping(0); values.len()];
    if with_index {
        for g in groups {
            for (pos, &i) in g.iter().enumerate() {
                index[i] = if s.is_first() { Wrapping(pos as u64) } else { Wrapping(0) };
            }
        }
    }
    let mut groups = groups.to_vec();
    while groups.iter().any(|g| g.len() > 1) {
        let Pairing { pairs, carried, next } = pair_up(&groups);
        let p = pairs.len();
        let diff = ArrayD::from_shape_vec(IxDyn(&[p]), pairs.iter().map(|&(a, b)| values[a] - values[b]).collect())
            .expect("shape");
        let selected = if !with_index {
            // max(a, b) = b + ReLU(a − b): the ReLU's rounds (one under FSS,
            // eight bitwise), without a product after them.
            vec![relu(s, &diff, w)?]
        } else {
            let d = drelu(s, &diff, w)?;
            let mut operands = vec![diff];
            if with_index {
                operands.push(
                    ArrayD::from_shape_vec(IxDyn(&[p]), pairs.iter().map(|&(a, b)| index[a] - index[b]).collect())
                        .expect("shape"),
                );
            }
            mul_many(s, &d, &operands.iter().collect::<Vec<_>>())?
        };
        let mut new_values: Vec<_> =
            pairs.iter().zip(selected[0].iter()).map(|(&(_, b), &sel)| values[b] + sel).collect();
        new_values.extend(carried.iter().map(|&i| values[i]));
        if with_index {
            let mut new_index: Vec<_> =
                pairs.iter().zip(selected[1].iter()).map(|(&(_, b), &sel)| index[b] + sel).collect();
            new_index.extend(carried.iter().map(|&i| index[i]));
            index = new_index;
        }
        values = new_values;
        groups = next;
    }
    let n = groups.len();
    let pick = |v: &[Wrapping<u64>]| {
        ArrayD::from_shape_vec(IxDyn(&[n]), groups.iter().map(|g| v[g[0]]).collect()).expect("shape")
    };
    let max = pick(&values);
    Ok((max, with_index.then(|| pick(&index))))
}

/// Dealer half of [`tournament`].
pub fn deal_tournament(d: &mut Dealer, groups: &[Vec<usize>], with_index: bool, w: Width) -> Result<()> {
    let mut groups = groups.to_vec();
    while groups.iter().any(|g| g.len() > 1) {
        let Pairing { pairs, next, .. } = pair_up(&groups);
        let p = [pairs.len()];
        if !with_index {
            deal_relu(d, &p, w)?;
        } else {
            deal_drelu(d, pairs.len(), w)?;
            let shapes: Vec<&[usize]> = if with_index { vec![&p, &p] } else { vec![&p] };
            deal_mul_many(d, &p, &shapes)?;
        }
        groups = next;
    }
    Ok(())
}

/// A function approximated piecewise: on each of K segments [t_k, t_{k+1}) by a
/// cubic in the centred variable u = x − m_k (|u| ≤ h/2, so the rounded
/// coefficients lose little), by an exact line `below + below_slope·x` below t_0,
/// and by an exact line `above + above_slope·x` from t_K on.
#[derive(Debug, Clone, PartialEq)]
pub struct Piecewise {
    /// Breakpoints t_0 < … < t_K.
    pub breaks: Vec<f64>,
    /// Centre m_k of each segment.
    pub centres: Vec<f64>,
    /// Coefficients c_0..c_3 of each segment's cubic in u.
    pub coeffs: Vec<[f64; 4]>,
    /// The lower tail's value at 0 and slope (ELU's −α, 0; 0, 0 for a sigmoid).
    pub below: f64,
    pub below_slope: f64,
    /// The upper tail's, likewise (softplus(x) → x: 0, 1).
    pub above: f64,
    /// Slope of the upper tail; 0 for a saturating function.
    pub above_slope: f64,
}

/// The grid the fitted curves of [`Piecewise::fit_exact`] put their breakpoints,
/// centres and coefficients c_1..c_3 on: 2^−16, what 16 fractional bits (the
/// default) encode exactly, so the protocol evaluates the very cubic that was
/// measured (c_0 is encoded at 2f bits: its rounding is 2^−33).
pub const CURVE_GRID: f64 = 1.0 / 65536.0;

fn on_grid(v: f64) -> f64 {
    (v / CURVE_GRID).round() * CURVE_GRID
}

/// Samples per segment of the least-squares fits and of their error measurement.
const FIT_SAMPLES: usize = 400;

impl Piecewise {
    /// Least-squares cubics for `f` on `segments` equal parts of [lo, hi].
    pub fn fit(f: impl Fn(f64) -> f64, lo: f64, hi: f64, segments: usize, below: f64, above: f64) -> Piecewise {
        let h = (hi - lo) / segments as f64;
        let breaks: Vec<f64> = (0..=segments).map(|k| lo + h * k as f64).collect();
        let centres: Vec<f64> = (0..segments).map(|k| lo + h * (k as f64 + 0.5)).collect();
        let coeffs = centres
            .iter()
            .map(|&m| {
                // Normal equations of the least-squares fit over dense samples.
                let mut ata = [[0.0f64; 4]; 4];
                let mut aty = [0.0f64; 4];
                for i in 0..=400 {
                    let u = -h / 2.0 + h * i as f64 / 400.0;
                    let pows = [1.0, u, u * u, u * u * u];
                    let y = f(m + u);
                    for r in 0..4 {
                        aty[r] += pows[r] * y;
                        for c in 0..4 {
                            ata[r][c] += pows[r] * pows[c];
                        }
                    }
                }
                solve4(ata, aty)
            })
            .collect();
        Piecewise { breaks, centres, coeffs, below, below_slope: 0.0, above, above_slope: 0.0 }
    }

    /// Sigmoid: cubics on 24 segments of [-10, 10]; exactly 0 below, 1 above.
    pub fn sigmoid() -> Piecewise {
        Piecewise::fit(|x| 1.0 / (1.0 + (-x).exp()), -10.0, 10.0, 24, 0.0, 1.0)
    }

    /// Tanh: cubics on 24 segments of [-5.5, 5.5]; exactly −1 below, 1 above.
    pub fn tanh() -> Piecewise {
        Piecewise::fit(f64::tanh, -5.5, 5.5, 24, -1.0, 1.0)
    }

    /// Softplus, ln(1 + e^x), the logistic loss's building block: cubics on the
    /// sigmoid's 24 segments of [-10, 10] (so both share one comparison batch);
    /// exactly 0 below and x above (the tails are off by at most 4.6e-5).
    pub fn softplus() -> Piecewise {
        Piecewise { above_slope: 1.0, ..Piecewise::fit(crate::kernels::float::softplus, -10.0, 10.0, 24, 0.0, 0.0) }
    }

    /// Cubics for `f` on the segments between `breaks` (increasing; put on
    /// [`CURVE_GRID`]), with the exact tail lines `below` and `above`, each
    /// (value at 0, slope). Each segment's centre and its coefficients c_3, c_2,
    /// c_1 are put on the grid one after the other, the lower ones refitted after
    /// each rounding (least squares in u/r, r the half-width, which keeps the
    /// normal equations well conditioned on wide segments): the cubic measured by
    /// [`Piecewise::max_error`] is then exactly the one 16 fractional bits encode,
    /// whatever the segment's width.
    pub fn fit_exact(f: impl Fn(f64) -> f64, breaks: &[f64], below: (f64, f64), above: (f64, f64)) -> Piecewise {
        let breaks: Vec<f64> = breaks.iter().map(|&t| on_grid(t)).collect();
        let (centres, coeffs) = breaks.windows(2).map(|w| fit_segment(&f, w[0], w[1])).unzip();
        Piecewise {
            breaks,
            centres,
            coeffs,
            below: below.0,
            below_slope: below.1,
            above: above.0,
            above_slope: above.1,
        }
    }

    /// The width of the comparisons with the breakpoints at `fp`: the values'
    /// ([`Width::in_range`]) when every breakpoint is in the range, which the
    /// fitted curves' are by far.
    pub fn width(&self, fp: FixedPoint) -> Width {
        let breaks: Vec<Z> = self.breaks.iter().map(|&t| fp.encode_value(t)).collect();
        Width::for_thresholds(fp, &breaks)
    }

    /// The approximation in the clear (what the protocol computes, up to rounding).
    pub fn eval(&self, x: f64) -> f64 {
        if x < self.breaks[0] {
            return self.below + self.below_slope * x;
        }
        match self.breaks.iter().rposition(|&t| x >= t) {
            Some(k) if k < self.coeffs.len() => {
                let u = x - self.centres[k];
                let c = self.coeffs[k];
                c[0] + u * (c[1] + u * (c[2] + u * c[3]))
            }
            _ => self.above + self.above_slope * x,
        }
    }

    /// The largest |approximation − f| over a fine grid of [lo, hi].
    pub fn max_error(&self, f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        (0..=100_000)
            .map(|i| lo + (hi - lo) * i as f64 / 100_000.0)
            .map(|x| (self.eval(x) - f(x)).abs())
            .fold(0.0, f64::max)
    }
}

/// Breakpoints `lo, lo + step, …` up to `hi` (a whole number of steps).
pub fn uniform_breaks(lo: f64, hi: f64, segments: usize) -> Vec<f64> {
    (0..=segments).map(|k| lo + (hi - lo) * k as f64 / segments as f64).collect()
}

/// One segment [a, b) of [`Piecewise::fit_exact`]: its centre and coefficients.
fn fit_segment(f: &impl Fn(f64) -> f64, a: f64, b: f64) -> (f64, [f64; 4]) {
    let m = on_grid((a + b) / 2.0);
    let r = ((b - a) / 2.0).max(CURVE_GRID);
    let us: Vec<f64> = (0..=FIT_SAMPLES).map(|i| a - m + (b - a) * i as f64 / FIT_SAMPLES as f64).collect();
    let ys: Vec<f64> = us.iter().map(|&u| f(m + u)).collect();
    let mut c = [0.0f64; 4];
    // Degree 3, then 2, then 1 with the higher coefficients fixed on the grid;
    // then the constant, which is encoded at 2f bits and kept as fitted.
    for degree in (0..=3).rev() {
        let rest: Vec<f64> = us
            .iter()
            .zip(&ys)
            .map(|(&u, &y)| y - (degree + 1..4).map(|j| c[j] * u.powi(j as i32)).sum::<f64>())
            .collect();
        let fitted = least_squares(&us, &rest, r, degree);
        for (j, v) in fitted.iter().enumerate() {
            c[j] = *v;
        }
        if degree > 0 {
            c[degree] = on_grid(c[degree]);
        }
    }
    (m, c)
}

/// Least-squares polynomial of `degree` for (u, y), in u: fitted in s = u/r.
fn least_squares(us: &[f64], ys: &[f64], r: f64, degree: usize) -> Vec<f64> {
    let k = degree + 1;
    let mut ata = vec![vec![0.0f64; k]; k];
    let mut aty = vec![0.0f64; k];
    for (&u, &y) in us.iter().zip(ys) {
        let s = u / r;
        let pows: Vec<f64> = (0..k).map(|j| s.powi(j as i32)).collect();
        for row in 0..k {
            aty[row] += pows[row] * y;
            for col in 0..k {
                ata[row][col] += pows[row] * pows[col];
            }
        }
    }
    solve(ata, aty).iter().enumerate().map(|(j, a)| a / r.powi(j as i32)).collect()
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let factor = a[row][col] / pivot_row[col];
            for (x, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *x -= factor * p;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x
}

/// Gaussian elimination with partial pivoting for a 4×4 system.
fn solve4(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> [f64; 4] {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).expect("rows");
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..4 {
            let factor = a[row][col] / pivot_row[col];
            for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *x -= factor * p;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = [0.0; 4];
    for row in (0..4).rev() {
        let tail: f64 = (row + 1..4).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x
}

/// Server: the piecewise function of every element of x.
pub fn piecewise(s: &mut Server, x: &RingTensor, pw: &Piecewise, fp: FixedPoint) -> Result<RingTensor> {
    Ok(piecewise_many(s, x, &[pw], fp)?.remove(0))
}

/// Server: several piecewise functions with the same segments, of every element
/// of x, for the cost of one (plus one product per function and coefficient).
///
/// d_k = [x ≥ t_k] for every breakpoint in one batched comparison; the segment
/// indicator s_k = d_k − d_{k+1} is one-hot (or all zero outside [t_0, t_K]). The
/// segment's centre and coefficients are then *local* linear combinations,
/// m(x) = Σ s_k·m_k and c_j(x) = Σ s_k·c_kj, and so is u = x − m(x). Three rounds
/// of products give u², u³ and Σ_j c_j(x)·u^j; below and above, every c_j is
/// exactly zero, so whatever u is, only the tail remains (outside, m(x) = 0 and
/// u = x, so a tail's slope enters as c_1 = d_K·slope above, (1 − d_0)·slope
/// below).
pub fn piecewise_many(s: &mut Server, x: &RingTensor, fns: &[&Piecewise], fp: FixedPoint) -> Result<Vec<RingTensor>> {
    let pw0 = fns[0];
    debug_assert!(fns.iter().all(|f| f.breaks == pw0.breaks), "functions evaluated together share their segments");
    let n = x.len();
    let k1 = pw0.breaks.len();
    let segments = pw0.coeffs.len();
    let flat = x.to_shape(IxDyn(&[n])).expect("flat").to_owned();
    let first = s.is_first();
    let public = |v: Wrapping<u64>| if first { v } else { Wrapping(0) };
    let breaks: Vec<Z> = pw0.breaks.iter().map(|&t| fp.encode_value(t)).collect();
    let d = drelu_thresholds(s, &flat, &breaks, pw0.width(fp))?;
    let fp2 = FixedPoint { frac_bits: 2 * fp.frac_bits };
    let zeros = || RingTensor::zeros(IxDyn(&[n]));
    let mut centre = zeros();
    // Per function: c1, c2, c3 (f fractional bits) and c0 (2f, added after the products).
    let mut coeffs: Vec<[RingTensor; 4]> = fns.iter().map(|_| [zeros(), zeros(), zeros(), zeros()]).collect();
    for i in 0..n {
        let below = public(Wrapping(1)) - d[[0, i]];
        let above = d[[k1 - 1, i]];
        let onehots: Vec<Z> = (0..segments).map(|k| d[[k, i]] - d[[k + 1, i]]).collect();
        centre[[i]] = onehots.iter().zip(&pw0.centres).map(|(&h, &m)| h * fp.encode_value(m)).sum();
        for (pw, [c1, c2, c3, c0]) in fns.iter().zip(coeffs.iter_mut()) {
            let mut acc = [Wrapping(0u64); 4];
            for (&h, c) in onehots.iter().zip(&pw.coeffs) {
                acc[0] += h * fp.encode_value(c[1]);
                acc[1] += h * fp.encode_value(c[2]);
                acc[2] += h * fp.encode_value(c[3]);
                acc[3] += h * fp2.encode_value(c[0]);
            }
            acc[0] += above * fp.encode_value(pw.above_slope) + below * fp.encode_value(pw.below_slope);
            acc[3] += above * fp2.encode_value(pw.above) + below * fp2.encode_value(pw.below);
            c1[[i]] = acc[0];
            c2[[i]] = acc[1];
            c3[[i]] = acc[2];
            c0[[i]] = acc[3];
        }
    }
    let u = &flat - &centre;
    let square = mul_pairs(s, &[(&u, &u)])?.remove(0);
    let u2 = truncate(s, &square, fp.frac_bits)?;
    let cube = mul_pairs(s, &[(&u2, &u)])?.remove(0);
    let u3 = truncate(s, &cube, fp.frac_bits)?;
    let pairs: Vec<(&RingTensor, &RingTensor)> =
        coeffs.iter().flat_map(|[c1, c2, c3, _]| [(c1, &u), (c2, &u2), (c3, &u3)]).collect();
    let terms = mul_pairs(s, &pairs)?;
    let sums: Vec<RingTensor> =
        coeffs.iter().zip(terms.chunks(3)).map(|([.., c0], t)| c0 + &(&(&t[0] + &t[1]) + &t[2])).collect();
    // One truncation for all functions: their sums side by side.
    let views: Vec<_> = sums.iter().map(|t| t.view()).collect();
    let stacked = ndarray::concatenate(ndarray::Axis(0), &views).expect("same shapes");
    let out = truncate(s, &stacked, fp.frac_bits)?;
    Ok(out
        .axis_chunks_iter(ndarray::Axis(0), n)
        .map(|part| part.to_owned().into_shape_with_order(x.raw_dim()).expect("shape"))
        .collect())
}

pub fn deal_piecewise(d: &mut Dealer, shape: &[usize], pw: &Piecewise, fp: FixedPoint) -> Result<()> {
    deal_piecewise_many(d, shape, 1, pw, fp)
}

/// Dealer half of [`piecewise_many`] for `count` functions with `pw`'s segments.
pub fn deal_piecewise_many(
    d: &mut Dealer,
    shape: &[usize],
    count: usize,
    pw: &Piecewise,
    fp: FixedPoint,
) -> Result<()> {
    let n: usize = shape.iter().product();
    let flat = [n];
    deal_drelu_thresholds(d, n, pw.breaks.len(), pw.width(fp))?;
    for _ in 0..2 {
        deal_mul_pairs(d, &[&flat])?;
        deal_truncate(d, &flat, fp.frac_bits)?;
    }
    deal_mul_pairs(d, &vec![&flat[..]; 3 * count])?;
    deal_truncate(d, &[count * n], fp.frac_bits)
}

/// The local work of DReLU's bit comparison, for `benches/kernels.rs`: one server's
/// work at one level, between two openings, without the network. The inputs are
/// uniform words of the lengths a DReLU of `n` elements has there: the work does
/// not depend on their values. Not an API: it may change with the protocol.
#[doc(hidden)]
pub mod bench_api {
    use super::*;
    use crate::ring::StreamKey;

    /// Level 0, the AND levels (1..=6 for every width above 32 bits), then the
    /// sign bits.
    pub fn levels(w: Width) -> usize {
        level_widths(w).len() + 2
    }

    /// What a level produced: the message it sends (empty for the sign bits) and
    /// this server's shares of the next (G, E) (the sign bits in G for the last).
    pub type Output = (Vec<u8>, Vec<u64>, Vec<u64>);

    /// One server's inputs at one level.
    pub struct Level {
        first: bool,
        level: usize,
        n: usize,
        width: Width,
        x: Vec<u64>,
        g: Vec<u64>,
        e: Vec<u64>,
        mat: Vec<u64>,
        theirs: Vec<u64>,
        received: Vec<u64>,
    }

    impl Level {
        /// Server 0's (`first`) or server 1's inputs at `level` (below
        /// [`levels`]) of a DReLU of `n` elements of width `width`.
        pub fn new(first: bool, level: usize, n: usize, width: Width) -> Level {
            let mut prg = Prg::derive(&[0x5a; 32], StreamKey { domain: 0, seq: 0, id: level as u32, tag: 0 });
            let widths = level_widths(width);
            let (gw, mat, sent, received) = match level {
                0 => {
                    let len = words_for(n, widths[0]);
                    (0, if first { 2 * len } else { len }, len, if first { 0 } else { len })
                }
                l if l <= widths.len() => {
                    let i = l - 1;
                    let len = words_for(n, widths[i] / 2);
                    let g = words_for(n, widths[i]);
                    let ands = ands(i, &widths);
                    let mat = and_level_material_words(first, &widths, i, n);
                    (g, mat, (1 + ands) * len, if first { 0 } else { ands * len })
                }
                _ => (words_for(n, 1), 0, 0, 0),
            };
            Level {
                first,
                level,
                n,
                width,
                x: prg.words(n),
                g: prg.words(gw),
                e: prg.words(gw),
                mat: prg.words(mat),
                theirs: prg.words(sent),
                received: prg.words(received),
            }
        }

        /// The level's local work, exactly as [`drelu`] and [`relu`] do it.
        pub fn run(&self) -> Output {
            let (first, n) = (self.first, self.n);
            let widths = level_widths(self.width);
            match self.level {
                0 => {
                    let per = if first { 2 } else { 1 };
                    let operand = level0_operand(first, &self.x, self.width, widths[0]);
                    let masked = level0_masked(&operand, &self.mat, per).into_bytes();
                    let g = level0_g(first, &operand, &self.mat, &self.theirs, &self.received);
                    (masked, g, operand)
                }
                l if l <= widths.len() => {
                    let lanes = and_level_lanes(&self.g, &self.e, &widths, l - 1, n);
                    let masked = and_level_masked(first, &lanes, &self.mat).into_bytes();
                    let (g, e) = and_level_combine(first, &lanes, &self.mat, &self.theirs, &self.received);
                    let (g, e) = padded_for_next(first, g, e, &widths, l - 1, n);
                    (masked, g, e)
                }
                _ => (Vec::new(), sign_bits(first, self.g.clone(), &self.x, self.width), Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {

    /// The even bits of a word in its low 32 bits, one at a time: the reference
    /// of `split_lanes`.
    fn even_bits_by_bit(x: u64) -> u64 {
        (0..32).map(|i| ((x >> (2 * i)) & 1) << i).sum()
    }

    #[test]
    fn split_lanes_takes_odd_and_even_bits_of_each_pair_of_words() {
        // SplitMix64: any words will do.
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for words in [0usize, 1, 2, 3, 7, 64, 65] {
            let stream: Vec<u64> = (0..words).map(|_| next()).collect();
            for len in [words.div_ceil(2), words / 2] {
                let (hi, lo) = split_lanes(&stream, len);
                for w in 0..len {
                    let (w0, w1) = (stream[2 * w], stream.get(2 * w + 1).copied().unwrap_or(0));
                    assert_eq!(hi[w], even_bits_by_bit(w0 >> 1) | even_bits_by_bit(w1 >> 1) << 32, "{words} words");
                    assert_eq!(lo[w], even_bits_by_bit(w0) | even_bits_by_bit(w1) << 32, "{words} words");
                }
            }
        }
    }
    use super::*;

    #[test]
    fn piecewise_sigmoid_and_tanh_are_accurate_and_saturate() {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let s = Piecewise::sigmoid();
        let t = Piecewise::tanh();
        let (es, et) = (s.max_error(sigmoid, -12.0, 12.0), t.max_error(f64::tanh, -12.0, 12.0));
        eprintln!("max error on [-12, 12]: sigmoid {es:.2e}, tanh {et:.2e}");
        assert!(es < 6e-5 && et < 1e-4, "sigmoid {es}, tanh {et}");
        assert_eq!((s.eval(-10.5), s.eval(10.0), s.eval(1e6)), (0.0, 1.0, 1.0));
        assert_eq!((t.eval(-5.6), t.eval(5.5), t.eval(-1e6)), (-1.0, 1.0, -1.0));
    }

    #[test]
    fn piecewise_softplus_is_accurate_and_linear_above() {
        let p = Piecewise::softplus();
        let err = p.max_error(crate::kernels::float::softplus, -40.0, 40.0);
        eprintln!("softplus max error on [-40, 40]: {err:.2e}");
        assert!(err < 6e-5, "softplus {err}");
        assert_eq!((p.eval(-10.5), p.eval(10.0), p.eval(1e3)), (0.0, 10.0, 1e3));
        assert_eq!(p.breaks, Piecewise::sigmoid().breaks, "evaluated with the sigmoid's comparisons");
    }

    /// The benchmark's levels send what a DReLU sends, level by level, so they
    /// measure the protocol's work at its sizes (n not a multiple of 64 included).
    #[test]
    fn bench_levels_have_the_protocol_sizes() {
        for w in [Width::RING, Width::in_range(FixedPoint::default()), Width::new(33).unwrap()] {
            let levels = bench_api::levels(w);
            for n in [1, 63, 64, 1000] {
                for first in [true, false] {
                    let sent: usize =
                        (0..levels).map(|l| bench_api::Level::new(first, l, n, w).run().0.len() / 8).sum();
                    assert_eq!(sent + words_for(n, 1), drelu_open_words(n, w), "n = {n}, {w:?}");
                    let (_, d, _) = bench_api::Level::new(first, levels - 1, n, w).run();
                    assert_eq!(d.len(), words_for(n, 1));
                }
            }
        }
    }

    /// The lane trees: the ring's six levels of 64 down to 2 lanes; 48 bits
    /// (16 fractional) with 3 lanes padded to 4; 33 bits with five levels.
    #[test]
    fn level_widths_halve_with_neutral_padding() {
        assert_eq!(level_widths(Width::RING), [64, 32, 16, 8, 4, 2]);
        assert_eq!(level_widths(Width::in_range(FixedPoint::default())), [48, 24, 12, 6, 4, 2]);
        assert_eq!(level_widths(Width::new(33).unwrap()), [32, 16, 8, 4, 2]);
        assert_eq!(level_widths(Width::new(2).unwrap()), [2]);
        assert_eq!(level_widths(Width::new(36).unwrap()), [36, 18, 10, 6, 4, 2]);
        for bits in 2..=64 {
            let widths = level_widths(Width::new(bits).unwrap());
            assert!(widths[0] as u32 >= bits - 1 && widths.iter().all(|w| w % 2 == 0), "{bits}: {widths:?}");
            assert!(widths.windows(2).all(|p| p[1] == p[0] / 2 || p[1] == p[0] / 2 + 1), "{bits}: {widths:?}");
        }
        assert_eq!(drelu_rounds(Width::RING), 8);
        assert_eq!(drelu_rounds(Width::new(33).unwrap()), 7);
    }

    #[test]
    fn packed_fields_round_trip_across_word_edges() {
        for width in [1usize, 3, 5, 7, 9, 15, 24, 31, 47, 48, 63, 64] {
            for n in [1usize, 17, 200] {
                let mask = if width == 64 { u64::MAX } else { (1 << width) - 1 };
                let values: Vec<u64> =
                    (0..n as u64).map(|i| (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask).collect();
                let mut packed = vec![0u64; words_for(n, width)];
                for (i, &v) in values.iter().enumerate() {
                    put_field(&mut packed, i * width, width, v);
                }
                for (i, &v) in values.iter().enumerate() {
                    assert_eq!(get_field(&packed, i * width, width), v, "width {width}, element {i}");
                }
                if width < 64 {
                    // Whole slots per word (1, 3, 7, 15, 31 lanes) and the rest.
                    for top in [true, false] {
                        let padded = pad_lane(&packed, n, width, top);
                        assert_eq!(padded.len(), words_for(n, width + 1));
                        for (i, &v) in values.iter().enumerate() {
                            let want = v | u64::from(top) << width;
                            assert_eq!(get_field(&padded, i * (width + 1), width + 1), want, "width {width}, n {n}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pair_up_keeps_order_and_carries_odd_ones() {
        let p = pair_up(&[vec![0, 1, 2], vec![3], vec![4, 5]]);
        assert_eq!(p.pairs, vec![(0, 1), (4, 5)]);
        assert_eq!(p.carried, vec![2, 3]);
        assert_eq!(p.next, vec![vec![0, 2], vec![3], vec![1]]);
    }
}
