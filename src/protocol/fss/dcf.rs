//! A distributed comparison function (DCF): keys k_0, k_1 such that
//! Eval(0, k_0, x) + Eval(1, k_1, x) = β·[x < α] in (Z_2^64)^k for every n-bit
//! x, while either key alone reveals nothing about α or β.
//!
//! This is the DCF of Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee,
//! "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure Computation"
//! (EUROCRYPT 2021), Fig. 1 (section 3), with the output group (Z_2^64)^k so that
//! one key carries a small vector payload (ReLU needs two words, see the parent
//! module). The tree has one level per input bit, most significant first. At
//! every level each party expands its seed s into (s_L, t_L, s_R, t_R, v_L, v_R);
//! the dealer's correction word (s_CW, V_CW, t_CW^L, t_CW^R) makes the two
//! parties' seeds equal (and their control bits equal) off the path to α, so
//! that everything below cancels, and adds β to the value of every left subtree
//! the path to α leaves (those x share a prefix with α and have a 0 where α has
//! a 1: x < α). A last word CW^(n+1) cancels the value at α itself.
//!
//! **PRG.** G(s) is fixed-key AES in the Matyas–Meyer–Oseas mode, block j being
//! AES_K(s ⊕ j) ⊕ s ⊕ j under one public key K (as LLAMA, Orca and SIGMA do with
//! fixed keys): block 0 is the left seed (its low bit is the control bit t_L,
//! cleared in the seed), block 1 the right seed, then ⌈k/2⌉ blocks of left value
//! words and ⌈k/2⌉ of right ones. Evaluation needs only the side x takes at each
//! level: 1 + ⌈k/2⌉ blocks per level, all elements of a batch encrypted together
//! so that AES-NI pipelines them. The final seed's value words come from its
//! left value blocks. The root seeds are 128-bit strings each party expands from
//! its own seed stream ([`crate::ring::Prg`]), so the dealer sends only the
//! correction words, which are the same in both keys.
//!
//! **Key size**, the correction words of one key ([`key_bytes`]):
//! 16·n (seeds) + 8·k·n (values) + ⌈2n/8⌉ (control bits) + 8·k (last word)
//! bytes: 1,536 for n = 63, k = 1, 2,048 for k = 2 and 2,560 for k = 3.
//!
//! **Oracle.** The `fss-rs` crate's DCF is not used as a test oracle: its keys
//! come from its own PRG (Hirose double-block AES-256) and layout, so neither
//! side can evaluate the other's keys, and what both compute once reconstructed,
//! β·[x < α], the tests check directly against the plaintext, exactly.

use std::sync::OnceLock;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};

/// The largest payload (words of β) a key carries: the gates need at most 3.
pub const MAX_PAYLOAD: usize = 4;

/// Input bits and payload words of a family of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// n: inputs are below 2^n (1 ≤ n ≤ 64).
    pub bits: u32,
    /// k: words of the payload β (1 ≤ k ≤ [`MAX_PAYLOAD`]).
    pub payload: usize,
}

impl Shape {
    pub fn new(bits: u32, payload: usize) -> Shape {
        assert!(
            (1..=64).contains(&bits) && (1..=MAX_PAYLOAD).contains(&payload),
            "a DCF of {bits} bits, {payload} words"
        );
        Shape { bits, payload }
    }

    fn levels(self) -> usize {
        self.bits as usize
    }

    /// AES blocks of value words per side.
    fn value_blocks(self) -> usize {
        self.payload.div_ceil(2)
    }

    /// Bytes of one key's correction words (the root seed is not sent).
    pub fn key_bytes(self) -> usize {
        let n = self.levels();
        16 * n + 8 * self.payload * n + (2 * n).div_ceil(8) + 8 * self.payload
    }

    fn values_at(self) -> usize {
        16 * self.levels()
    }

    fn bits_at(self) -> usize {
        self.values_at() + 8 * self.payload * self.levels()
    }

    fn last_at(self) -> usize {
        self.bits_at() + (2 * self.levels()).div_ceil(8)
    }
}

/// [`Shape::key_bytes`]: the exact size of the correction words of one key.
pub fn key_bytes(bits: u32, payload: usize) -> usize {
    Shape::new(bits, payload).key_bytes()
}

/// The PRG's public AES key, expanded once: any fixed key will do (the
/// construction's security is that of AES as a random permutation); this is
/// the first 16 bytes of SHA-256("tfe-run DCF PRG").
fn cipher() -> &'static Aes128 {
    static CIPHER: OnceLock<Aes128> = OnceLock::new();
    CIPHER.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, b"tfe-run DCF PRG");
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        Aes128::new(&key.into())
    })
}

/// MMO: each block u (an s ⊕ j) becomes AES_K(u) ⊕ u, in place, through a
/// stack buffer of blocks encrypted together.
fn mmo(blocks: &mut [u128]) {
    let cipher = cipher();
    let mut buf = [aes::Block::default(); 128];
    for chunk in blocks.chunks_mut(128) {
        let buf = &mut buf[..chunk.len()];
        for (b, u) in buf.iter_mut().zip(chunk.iter()) {
            b.copy_from_slice(&u.to_le_bytes());
        }
        cipher.encrypt_blocks(buf);
        for (u, b) in chunk.iter_mut().zip(buf.iter()) {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(b);
            *u ^= u128::from_le_bytes(bytes);
        }
    }
}

/// Tweaks: block j of G(s) encrypts s ⊕ j.
const LEFT_SEED: u128 = 0;
const RIGHT_SEED: u128 = 1;
fn value_tweak(shape: Shape, side: usize, j: usize) -> u128 {
    (2 + side * shape.value_blocks() + j) as u128
}

/// A seed's control bit (its low bit) and the seed with it cleared.
fn split_seed(block: u128) -> (u128, u8) {
    (block & !1, (block & 1) as u8)
}

/// k value words from the value blocks of one side.
fn value_words(blocks: &[u128], k: usize, out: &mut [u64]) {
    for (j, w) in out.iter_mut().enumerate().take(k) {
        *w = (blocks[j / 2] >> (64 * (j % 2))) as u64;
    }
}

/// One level's expansion of a seed, both sides (key generation).
struct Expanded<const K: usize> {
    seed: [u128; 2],
    t: [u8; 2],
    value: [[u64; K]; 2],
}

/// The blocks G(s) encrypts, in order: left seed, right seed, left values, right values.
fn fill_expansion(shape: Shape, s: u128, blocks: &mut [u128]) {
    let h = shape.value_blocks();
    blocks[0] = s ^ LEFT_SEED;
    blocks[1] = s ^ RIGHT_SEED;
    for side in 0..2 {
        for j in 0..h {
            blocks[2 + side * h + j] = s ^ value_tweak(shape, side, j);
        }
    }
}

/// The expansion from the blocks [`fill_expansion`] laid out, once through [`mmo`].
fn read_expansion<const K: usize>(shape: Shape, blocks: &[u128]) -> Expanded<K> {
    let h = shape.value_blocks();
    let (l, tl) = split_seed(blocks[0]);
    let (r, tr) = split_seed(blocks[1]);
    let mut value = [[0u64; K]; 2];
    for (side, v) in value.iter_mut().enumerate() {
        value_words(&blocks[2 + side * h..2 + (side + 1) * h], K, v);
    }
    Expanded { seed: [l, r], t: [tl, tr], value }
}

/// The final seed's value words (Convert(s^(n))): its left value blocks.
fn convert(shape: Shape, s: u128, out: &mut [u64]) {
    let h = shape.value_blocks();
    let mut blocks = [0u128; MAX_PAYLOAD.div_ceil(2)];
    let blocks = &mut blocks[..h];
    for (j, b) in blocks.iter_mut().enumerate() {
        *b = s ^ value_tweak(shape, 0, j);
    }
    mmo(blocks);
    value_words(blocks, shape.payload, out);
}

fn input_bit(shape: Shape, x: u64, level: usize) -> usize {
    ((x >> (shape.bits as usize - 1 - level)) & 1) as usize
}

/// (−1)^t as a ring multiplier.
fn sign(t: u8) -> u64 {
    if t == 0 { 1 } else { u64::MAX }
}

/// Generate the correction words of a key pair for f(x) = β·[x < α], from the two
/// parties' root seeds, appending them to `out` ([`Shape::key_bytes`] bytes).
/// α must be below 2^n; β has `shape.payload` words.
pub fn generate(shape: Shape, alpha: u64, beta: &[u64], roots: [u128; 2], out: &mut Vec<u8>) {
    generate_many(shape, &[alpha], beta, &[roots], out);
}

/// One level of key generation for one key: from both parties' expansions `e`
/// of their seeds `s` (control bits `t`), write the level's correction words
/// into `key` and step `s`, `t` and the value on the path to α, `v_alpha`.
#[allow(clippy::too_many_arguments)]
fn correct_level<const K: usize>(
    shape: Shape,
    level: usize,
    alpha: u64,
    beta: &[u64],
    e: &[Expanded<K>; 2],
    s: &mut [u128; 2],
    t: &mut [u8; 2],
    v_alpha: &mut [u64; K],
    key: &mut [u8],
) {
    debug_assert!(shape.bits == 64 || alpha >> shape.bits == 0, "α below 2^n");
    let k = K;
    let a = input_bit(shape, alpha, level);
    let (keep, lose) = (a, 1 - a);
    let s_cw = e[0].seed[lose] ^ e[1].seed[lose];
    let sg = sign(t[1]);
    let mut v_cw = [0u64; K];
    for j in 0..k {
        let mut v = e[1].value[lose][j].wrapping_sub(e[0].value[lose][j]).wrapping_sub(v_alpha[j]);
        if lose == 0 {
            // The left subtree the path leaves: every x there is below α.
            v = v.wrapping_add(beta[j]);
        }
        v_cw[j] = sg.wrapping_mul(v);
        v_alpha[j] = v_alpha[j]
            .wrapping_sub(e[1].value[keep][j])
            .wrapping_add(e[0].value[keep][j])
            .wrapping_add(sg.wrapping_mul(v_cw[j]));
    }
    let t_cw = [e[0].t[0] ^ e[1].t[0] ^ a as u8 ^ 1, e[0].t[1] ^ e[1].t[1] ^ a as u8];
    key[16 * level..16 * (level + 1)].copy_from_slice(&s_cw.to_le_bytes());
    for (j, v) in v_cw.iter().enumerate().take(k) {
        let at = shape.values_at() + 8 * (level * k + j);
        key[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    let bit = 2 * level;
    key[shape.bits_at() + bit / 8] |= (t_cw[0] | t_cw[1] << 1) << (bit % 8);
    for b in 0..2 {
        s[b] = e[b].seed[keep] ^ if t[b] == 1 { s_cw } else { 0 };
        t[b] = e[b].t[keep] ^ (t[b] & t_cw[keep]);
    }
}

/// The last correction word, which cancels the value at α itself.
fn finish_key(shape: Shape, s: [u128; 2], t: [u8; 2], v_alpha: &[u64], key: &mut [u8]) {
    let (mut c0, mut c1) = ([0u64; MAX_PAYLOAD], [0u64; MAX_PAYLOAD]);
    convert(shape, s[0], &mut c0);
    convert(shape, s[1], &mut c1);
    for j in 0..shape.payload {
        let last = sign(t[1]).wrapping_mul(c1[j].wrapping_sub(c0[j]).wrapping_sub(v_alpha[j]));
        let at = shape.last_at() + 8 * j;
        key[at..at + 8].copy_from_slice(&last.to_le_bytes());
    }
}

/// [`generate`] for many key pairs at once, appending them to `out` one after
/// the other: element e compares against `alphas[e]` with payload
/// `betas[e·k..(e+1)·k]` and root seeds `roots[e]`. The same bytes as one
/// [`generate`] per element; level by level over [`LANES`] elements, so that
/// one AES call encrypts both parties' expansions of them all (2·(2 + 2⌈k/2⌉)
/// blocks each) and AES-NI's pipeline stays full, where one key at a time
/// offers it 4–8 blocks.
pub fn generate_many(shape: Shape, alphas: &[u64], betas: &[u64], roots: &[[u128; 2]], out: &mut Vec<u8>) {
    assert!(alphas.len() == roots.len() && betas.len() == shape.payload * alphas.len(), "batch sizes");
    // One loop body per payload size: the per-word loops unroll.
    match shape.payload {
        1 => generate_many_k::<1>(shape, alphas, betas, roots, out),
        2 => generate_many_k::<2>(shape, alphas, betas, roots, out),
        3 => generate_many_k::<3>(shape, alphas, betas, roots, out),
        _ => generate_many_k::<MAX_PAYLOAD>(shape, alphas, betas, roots, out),
    }
}

/// [`generate_many`] for payloads of `K` words.
fn generate_many_k<const K: usize>(
    shape: Shape,
    alphas: &[u64],
    betas: &[u64],
    roots: &[[u128; 2]],
    out: &mut Vec<u8>,
) {
    debug_assert_eq!(shape.payload, K);
    let (n, k, h) = (shape.levels(), K, shape.value_blocks());
    let len = shape.key_bytes();
    let per = 2 * (2 + 2 * h);
    let start = out.len();
    out.resize(start + len * alphas.len(), 0);
    let mut blocks = vec![0u128; LANES * per];
    for first in (0..alphas.len()).step_by(LANES) {
        let m = LANES.min(alphas.len() - first);
        let keys = &mut out[start + first * len..start + (first + m) * len];
        let mut s: Vec<[u128; 2]> = roots[first..first + m].iter().map(|r| [r[0] & !1, r[1] & !1]).collect();
        let mut t = vec![[0u8, 1u8]; m];
        let mut v_alpha = vec![[0u64; K]; m];
        for level in 0..n {
            for (e, s) in s.iter().enumerate() {
                for (b, &seed) in s.iter().enumerate() {
                    let at = e * per + b * (2 + 2 * h);
                    fill_expansion(shape, seed, &mut blocks[at..at + 2 + 2 * h]);
                }
            }
            mmo(&mut blocks[..m * per]);
            for e in 0..m {
                let at = e * per;
                let ex = [
                    read_expansion(shape, &blocks[at..at + 2 + 2 * h]),
                    read_expansion(shape, &blocks[at + 2 + 2 * h..at + per]),
                ];
                let beta = &betas[(first + e) * k..(first + e + 1) * k];
                let key = &mut keys[e * len..(e + 1) * len];
                correct_level(shape, level, alphas[first + e], beta, &ex, &mut s[e], &mut t[e], &mut v_alpha[e], key);
            }
        }
        for e in 0..m {
            let key = &mut keys[e * len..(e + 1) * len];
            finish_key(shape, s[e], t[e], &v_alpha[e], key);
        }
    }
}

fn word(key: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[at..at + 8]);
    u64::from_le_bytes(b)
}

fn seed_cw(key: &[u8], level: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&key[16 * level..16 * (level + 1)]);
    u128::from_le_bytes(b)
}

/// Elements evaluated together, level by level: enough blocks per AES call
/// (2 × 64 for k ≤ 2) to keep AES-NI's pipeline full, few enough to stay in L1.
const LANES: usize = 64;

/// Party `party`'s shares of β_e·[x_e < α_e] for every element e: `roots[e]` its
/// root seed, `keys` the elements' correction words one after the other
/// ([`Shape::key_bytes`] each), `x[e]` the input (below 2^n). Writes
/// `shape.payload` words per element into `out`.
pub fn evaluate(shape: Shape, party: usize, roots: &[u128], keys: &[u8], x: &[u64], out: &mut [u64]) {
    evaluate_at(shape, party, roots, keys, x, 1, out);
}

/// [`evaluate`] of each element's key at `m` points: element e's points are
/// `points[e·m..(e + 1)·m]` (below 2^n), and its shares of β_e·[p < α_e] go to
/// `out[(e·m + j)·k..]` for its point j. The points' common prefix (the top
/// levels where all of an element's points take the same side) is walked
/// once: a piecewise curve's breakpoints, shifted by one mask, share most of
/// their 63 bits.
pub fn evaluate_at(shape: Shape, party: usize, roots: &[u128], keys: &[u8], points: &[u64], m: usize, out: &mut [u64]) {
    let len = shape.key_bytes();
    assert!(
        m >= 1
            && roots.len() * m == points.len()
            && keys.len() == len * roots.len()
            && out.len() == shape.payload * points.len(),
        "batch sizes"
    );
    // One loop body per payload size: the per-word loops unroll.
    match shape.payload {
        1 => evaluate_k::<1>(shape, party, roots, keys, points, m, out),
        2 => evaluate_k::<2>(shape, party, roots, keys, points, m, out),
        3 => evaluate_k::<3>(shape, party, roots, keys, points, m, out),
        _ => evaluate_k::<MAX_PAYLOAD>(shape, party, roots, keys, points, m, out),
    }
}

/// One element's evaluation state down the tree: its seed, control bit and
/// the value words gathered so far.
#[derive(Clone, Copy)]
struct Walker<const K: usize> {
    s: u128,
    t: u8,
    acc: [u64; K],
}

/// Step every element e of a lane from level `from[e]` to `to[e]` along the
/// path of `xs[e]`, level by level, the active elements' expansions encrypted
/// together.
#[allow(clippy::too_many_arguments)]
fn walk<const K: usize>(
    shape: Shape,
    neg: bool,
    keys: &[&[u8]],
    xs: &[u64],
    from: &[usize],
    to: &[usize],
    state: &mut [Walker<K>],
    blocks: &mut [u128],
) {
    let h = shape.value_blocks();
    let per = 1 + h;
    let (values_at, bits_at) = (shape.values_at(), shape.bits_at());
    let tweaks: [[u128; MAX_PAYLOAD.div_ceil(2)]; 2] =
        std::array::from_fn(|side| std::array::from_fn(|j| value_tweak(shape, side, j)));
    let (Some(&low), Some(&high)) = (from.iter().min(), to.iter().max()) else { return };
    let mut active = [0usize; LANES];
    for level in low..high {
        let shift = shape.bits as usize - 1 - level;
        let mut count = 0;
        for e in 0..xs.len() {
            if from[e] <= level && level < to[e] {
                active[count] = e;
                count += 1;
            }
        }
        for (&e, b) in active[..count].iter().zip(blocks.chunks_exact_mut(per)) {
            let side = ((xs[e] >> shift) & 1) as usize;
            let s = state[e].s;
            b[0] = s ^ side as u128; // LEFT_SEED = 0, RIGHT_SEED = 1
            for (v, tw) in b[1..].iter_mut().zip(&tweaks[side]) {
                *v = s ^ tw;
            }
        }
        mmo(&mut blocks[..count * per]);
        let v_at = values_at + 8 * level * K;
        let (bit_byte, bit_shift) = (bits_at + (2 * level) / 8, (2 * level) % 8);
        for (&e, b) in active[..count].iter().zip(blocks.chunks_exact(per)) {
            let key = keys[e];
            let side = ((xs[e] >> shift) & 1) as usize;
            let (seed, tb) = split_seed(b[0]);
            let t_cw = (key[bit_byte] >> (bit_shift + side)) & 1;
            let w = &mut state[e];
            let corrected = w.t == 1;
            let cw_words = &key[v_at..v_at + 8 * K];
            for j in 0..K {
                let mut add = (b[1 + j / 2] >> (64 * (j % 2))) as u64;
                if corrected {
                    add = add.wrapping_add(u64::from_le_bytes(cw_words[8 * j..8 * j + 8].try_into().expect("8 bytes")));
                }
                let a = &mut w.acc[j];
                *a = if neg { a.wrapping_sub(add) } else { a.wrapping_add(add) };
            }
            w.s = seed ^ if corrected { seed_cw(key, level) } else { 0 };
            w.t = tb ^ (w.t & t_cw);
        }
    }
}

/// [`evaluate_at`] for payloads of `K` words, `LANES` elements at a time.
#[allow(clippy::too_many_arguments)]
fn evaluate_k<const K: usize>(
    shape: Shape,
    party: usize,
    roots: &[u128],
    keys: &[u8],
    points: &[u64],
    m: usize,
    out: &mut [u64],
) {
    debug_assert_eq!(shape.payload, K);
    let n = shape.levels();
    let len = shape.key_bytes();
    let last_at = shape.last_at();
    let neg = party == 1;
    let mut blocks = vec![0u128; LANES * (1 + shape.value_blocks())];
    for start in (0..roots.len()).step_by(LANES) {
        let lane = LANES.min(roots.len() - start);
        let keys: Vec<&[u8]> = keys[start * len..(start + lane) * len].chunks_exact(len).collect();
        let mut shared = [Walker { s: 0, t: party as u8, acc: [0u64; K] }; LANES];
        for (w, r) in shared.iter_mut().zip(&roots[start..start + lane]) {
            w.s = r & !1;
        }
        // The levels all of an element's points share: above its points'
        // highest differing bit.
        let mut common = [n; LANES];
        let mut first = [0u64; LANES];
        for e in 0..lane {
            let ps = &points[(start + e) * m..(start + e + 1) * m];
            let differ = ps.iter().fold(0u64, |d, &p| d | (p ^ ps[0]));
            first[e] = ps[0];
            if differ != 0 {
                common[e] = n - 1 - (63 - differ.leading_zeros() as usize);
            }
        }
        let zero = [0usize; LANES];
        walk(shape, neg, &keys, &first[..lane], &zero[..lane], &common[..lane], &mut shared[..lane], &mut blocks);
        let end = [n; LANES];
        let mut xs = [0u64; LANES];
        for j in 0..m {
            let mut state = shared;
            for e in 0..lane {
                xs[e] = points[(start + e) * m + j];
            }
            walk(shape, neg, &keys, &xs[..lane], &common[..lane], &end[..lane], &mut state[..lane], &mut blocks);
            for e in 0..lane {
                let (key, w) = (keys[e], &state[e]);
                let mut c = [0u64; MAX_PAYLOAD];
                convert(shape, w.s, &mut c);
                let at = ((start + e) * m + j) * K;
                for i in 0..K {
                    let mut add = c[i];
                    if w.t == 1 {
                        add = add.wrapping_add(word(key, last_at + 8 * i));
                    }
                    let a = w.acc[i];
                    out[at + i] = if neg { a.wrapping_sub(add) } else { a.wrapping_add(add) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reconstruct(shape: Shape, alpha: u64, beta: &[u64], roots: [u128; 2], xs: &[u64]) -> Vec<Vec<u64>> {
        let mut key = Vec::new();
        generate(shape, alpha, beta, roots, &mut key);
        assert_eq!(key.len(), shape.key_bytes());
        let keys: Vec<u8> = xs.iter().flat_map(|_| key.iter().copied()).collect();
        let k = shape.payload;
        let mut y = [vec![0u64; k * xs.len()], vec![0u64; k * xs.len()]];
        for (party, y) in y.iter_mut().enumerate() {
            evaluate(shape, party, &vec![roots[party]; xs.len()], &keys, xs, y);
        }
        (0..xs.len()).map(|e| (0..k).map(|j| y[0][e * k + j].wrapping_add(y[1][e * k + j])).collect()).collect()
    }

    fn mask(bits: u32) -> u64 {
        if bits == 64 { u64::MAX } else { (1 << bits) - 1 }
    }

    #[test]
    fn key_sizes_are_the_formula() {
        assert_eq!(key_bytes(63, 1), 1536);
        assert_eq!(key_bytes(63, 2), 2048);
        assert_eq!(key_bytes(63, 3), 2560);
        assert_eq!(key_bytes(1, 1), 16 + 8 + 1 + 8);
    }

    #[test]
    fn every_input_of_a_small_domain_compares_exactly() {
        for bits in 1..=5u32 {
            for alpha in 0..1u64 << bits {
                let shape = Shape::new(bits, 2);
                let beta = [0xdead_beef_u64, u64::MAX - 6];
                let xs: Vec<u64> = (0..1u64 << bits).collect();
                let roots = [0x1234_5678_9abc_def0_1122_3344_5566_7788 ^ u128::from(alpha), 0xfeed ^ u128::from(bits)];
                for (x, y) in xs.iter().zip(reconstruct(shape, alpha, &beta, roots, &xs)) {
                    let want = if *x < alpha { beta.to_vec() } else { vec![0, 0] };
                    assert_eq!(y, want, "n = {bits}, α = {alpha}, x = {x}");
                }
            }
        }
    }

    proptest! {
        /// Random α, β, roots; x random and at the edges α − 1, α, α + 1, 0, 2^n − 1.
        #[test]
        fn dcf_reconstructs_beta_below_alpha(
            bits in prop_oneof![Just(63u32), Just(64u32), 1u32..=64],
            payload in 1usize..=MAX_PAYLOAD,
            alpha in any::<u64>(),
            beta in proptest::collection::vec(any::<u64>(), MAX_PAYLOAD),
            roots in any::<[u128; 2]>(),
            random in proptest::collection::vec(any::<u64>(), 8),
        ) {
            let shape = Shape::new(bits, payload);
            let m = mask(bits);
            let alpha = alpha & m;
            let beta = &beta[..payload];
            let mut xs: Vec<u64> = random.iter().map(|x| x & m).collect();
            xs.extend([alpha.wrapping_sub(1) & m, alpha, alpha.wrapping_add(1) & m, 0, m]);
            for (x, y) in xs.iter().zip(reconstruct(shape, alpha, beta, roots, &xs)) {
                let want: Vec<u64> = if *x < alpha { beta.to_vec() } else { vec![0; payload] };
                prop_assert_eq!(y, want, "x = {}", x);
            }
        }

        /// A key evaluated at many points per element (clustered points that
        /// share a long prefix, spread ones, repeats, across the lanes'
        /// boundaries) gives, point for point, what one evaluation per point
        /// gives, and so β·[p < α].
        #[test]
        fn many_points_per_key_are_the_evaluations_one_at_a_time(
            bits in prop_oneof![Just(63u32), 1u32..=64],
            payload in 1usize..=MAX_PAYLOAD,
            count in 1usize..=LANES + 3,
            points_per in 1usize..=7,
            spread in 0u32..=64,
            words in proptest::collection::vec(any::<u64>(), (LANES + 3) * (12 + MAX_PAYLOAD)),
        ) {
            let shape = Shape::new(bits, payload);
            let alphas: Vec<u64> = (0..count).map(|e| words[e] & mask(bits)).collect();
            let betas: Vec<u64> = words[count..count + count * payload].to_vec();
            let at = count * (1 + payload);
            let roots: Vec<[u128; 2]> = (0..count)
                .map(|e| [u128::from(words[at + e]) << 3 | 5, u128::from(words[at + e]).rotate_left(40)])
                .collect();
            let mut keys = Vec::new();
            generate_many(shape, &alphas, &betas, &roots, &mut keys);
            // Element e's points: a base near α plus offsets below 2^spread.
            let offsets = |w: u64| if spread == 64 { w } else { w & ((1u64 << spread) - 1) };
            let at = at + count;
            let points: Vec<u64> = (0..count * points_per)
                .map(|i| {
                    let e = i / points_per;
                    alphas[e].wrapping_add(offsets(words[at + i])).wrapping_sub(offsets(words[at + e])) & mask(bits)
                })
                .collect();
            let k = payload;
            for party in 0..2 {
                let own: Vec<u128> = roots.iter().map(|r| r[party]).collect();
                let mut many = vec![0u64; k * points.len()];
                evaluate_at(shape, party, &own, &keys, &points, points_per, &mut many);
                let len = shape.key_bytes();
                for (i, &p) in points.iter().enumerate() {
                    let e = i / points_per;
                    let mut one = vec![0u64; k];
                    evaluate(shape, party, &own[e..e + 1], &keys[e * len..(e + 1) * len], &[p], &mut one);
                    prop_assert_eq!(&many[i * k..(i + 1) * k], &one[..], "party {}, element {}, point {}", party, e, p);
                }
            }
        }

        /// Many keys at once (across the lanes' boundaries) are byte for byte
        /// the keys made one at a time, and each reconstructs β·[x < α].
        #[test]
        fn many_keys_at_once_are_the_keys_one_at_a_time(
            bits in prop_oneof![Just(63u32), 1u32..=64],
            payload in 1usize..=MAX_PAYLOAD,
            count in 1usize..=2 * LANES + 3,
            words in proptest::collection::vec(any::<u64>(), (2 * LANES + 3) * (5 + MAX_PAYLOAD)),
        ) {
            let shape = Shape::new(bits, payload);
            let alphas: Vec<u64> = (0..count).map(|e| words[e] & mask(bits)).collect();
            let betas: Vec<u64> = words[count..count + count * payload].to_vec();
            let at = count * (1 + payload);
            let roots: Vec<[u128; 2]> = (0..count)
                .map(|e| {
                    let w = &words[at + 4 * e..at + 4 * e + 4];
                    [u128::from(w[0]) | u128::from(w[1]) << 64, u128::from(w[2]) | u128::from(w[3]) << 64]
                })
                .collect();
            let mut many = Vec::new();
            generate_many(shape, &alphas, &betas, &roots, &mut many);
            let mut one_by_one = Vec::new();
            for e in 0..count {
                generate(shape, alphas[e], &betas[e * payload..(e + 1) * payload], roots[e], &mut one_by_one);
            }
            prop_assert_eq!(&many, &one_by_one);
            // x = α − 1 and α for every element: β, then 0.
            for (offset, below) in [(1u64, true), (0, false)] {
                let xs: Vec<u64> = alphas.iter().map(|a| a.wrapping_sub(offset) & mask(bits)).collect();
                let mut y = [vec![0u64; payload * count], vec![0u64; payload * count]];
                for (party, y) in y.iter_mut().enumerate() {
                    let own: Vec<u128> = roots.iter().map(|r| r[party]).collect();
                    evaluate(shape, party, &own, &many, &xs, y);
                }
                for e in 0..count {
                    let want = below && alphas[e] > 0;
                    for j in 0..payload {
                        let got = y[0][e * payload + j].wrapping_add(y[1][e * payload + j]);
                        prop_assert_eq!(got, if want { betas[e * payload + j] } else { 0 });
                    }
                }
            }
        }

        /// One party's shares alone look nothing like β·[x < α]: they change with
        /// the other party's root (a smoke check of the masking, not a proof).
        #[test]
        fn one_share_depends_on_both_roots(alpha in any::<u64>(), roots in any::<[u128; 2]>(), other in any::<u128>()) {
            prop_assume!(other & !1 != roots[1] & !1);
            let shape = Shape::new(63, 1);
            let alpha = alpha & mask(63);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            generate(shape, alpha, &[1], roots, &mut a);
            generate(shape, alpha, &[1], [roots[0], other], &mut b);
            prop_assert_ne!(a, b);
        }
    }
}
