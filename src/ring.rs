//! The ring Z_2^64 and fixed-point numbers in it.
//!
//! A real number x is stored as round(x · 2^f) in two's complement, f = `frac_bits`
//! (16 by default). Sums wrap modulo 2^64, which additive secret sharing needs; a
//! product of two fixed-point numbers has 2f fractional bits and is truncated back
//! to f by the protocol (see `protocol::trunc`).
//!
//! **Range.** Truncation is exact (to one unit in the last place) for every value
//! whose 2f-bit representation is below 2^62 in magnitude, so every value of a
//! computation, including the accumulated sums inside a MatMul or Conv2D before
//! truncation, must stay below `bound() = 2^(62 - 2f)` (2^30 ≈ 1.07e9 at f = 16).
//! Inputs and weights outside that range are refused.

use std::num::Wrapping;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use anyhow::Result;
use ndarray::{ArrayD, IxDyn};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::error::Error;

/// An element of Z_2^64; `Wrapping` makes `+`, `-` and `*` wrap, as the ring does.
pub type Z = Wrapping<u64>;

/// A tensor of ring elements: a share, a mask, or a masked (public) value.
pub type RingTensor = ArrayD<Z>;

/// The fixed-point encoding in force for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FixedPoint {
    pub frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint { frac_bits: 16 }
    }
}

impl FixedPoint {
    pub const MIN_FRAC_BITS: u32 = 4;
    pub const MAX_FRAC_BITS: u32 = 28;

    pub fn new(frac_bits: u32) -> Result<FixedPoint> {
        if !(Self::MIN_FRAC_BITS..=Self::MAX_FRAC_BITS).contains(&frac_bits) {
            return Err(Error::bad_input(format!(
                "--frac-bits {frac_bits}: must be between {} and {}",
                Self::MIN_FRAC_BITS,
                Self::MAX_FRAC_BITS
            )));
        }
        Ok(FixedPoint { frac_bits })
    }

    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// The largest magnitude a value may have anywhere in a computation.
    pub fn bound(&self) -> f64 {
        2f64.powi(62 - 2 * self.frac_bits as i32)
    }

    /// One unit in the last place.
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale()
    }

    pub fn encode_value(&self, x: f64) -> Z {
        Wrapping((x * self.scale()).round() as i64 as u64)
    }

    /// Encode a tensor, refusing values outside the range: a silent wrap-around
    /// would print a wrong answer.
    pub fn encode(&self, x: &ArrayD<f32>, what: &str) -> Result<RingTensor> {
        self.check_range(x.iter(), what)?;
        Ok(x.mapv(|v| self.encode_value(f64::from(v))))
    }

    /// Refuse values outside the range, and NaN, naming `what` and the position
    /// (an [`OutOfRange`]: a bad input, whose text is for the data's owner only).
    pub fn check_range<'a>(&self, values: impl IntoIterator<Item = &'a f32>, what: &str) -> Result<()> {
        let bound = self.bound();
        if let Some((i, v)) = values.into_iter().enumerate().find(|(_, v)| v.is_nan() || f64::from(v.abs()) >= bound) {
            let range = self.range();
            let message = format!("{what}: value {v} at flat index {i} is out of range ({range})");
            return Err(OutOfRange { message, range }.into());
        }
        Ok(())
    }

    fn range(&self) -> String {
        format!(
            "|x| must be below 2^{} = {:e} with {} fractional bits",
            62 - 2 * self.frac_bits,
            self.bound(),
            self.frac_bits
        )
    }

    /// Decode a value with `frac_bits` fractional bits (0 for integers).
    pub fn decode_with(x: &RingTensor, frac_bits: u32) -> ArrayD<f32> {
        let scale = (1u64 << frac_bits) as f64;
        x.mapv(|v| (v.0 as i64 as f64 / scale) as f32)
    }

    pub fn decode(&self, x: &RingTensor) -> ArrayD<f32> {
        Self::decode_with(x, self.frac_bits)
    }
}

/// A value outside the fixed-point range: a bad input (exit code 2). Its message
/// quotes the value and its flat index, which are the owner's own data: for the
/// owner's user (its stderr) only. What another party may be told is
/// [`OutOfRange::public`], which holds no value.
#[derive(Debug)]
pub struct OutOfRange {
    message: String,
    range: String,
}

impl OutOfRange {
    /// The kind of failure, without the value or where it is.
    pub fn public(&self) -> String {
        format!("a value is out of range ({})", self.range)
    }
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OutOfRange {}

/// A stream of uniform words: the randomness of one piece of dealer material (or
/// one mask), from one 32-byte seed and the [`StreamKey`] of its purpose, so the
/// dealer and a server that share the seed expand the same values without any
/// message.
///
/// The stream is AES-128 in counter mode under a key derived for this stream
/// alone ([`Prg::derive`]): block i is AES_k(i), i a 128-bit little-endian counter
/// from 0, read as two little-endian words. The `aes` crate picks AES-NI at run
/// time where the CPU has it and a constant-time software AES elsewhere. It
/// replaced a ChaCha20 stream (`rand_chacha`), which was a third of the
/// instructions of a MobileNetV2 prediction (BENCHMARKS.md).
///
/// The counter blocks are built here rather than by the `ctr` crate: its
/// `apply_keystream` XORs into a buffer that must first be zeroed, and a whole
/// MobileNetV2 prediction (batch 1) took 1.12× the instructions with it (callgrind,
/// 3.336 G against 2.973 G, same output), for the few lines below.
pub struct Prg {
    cipher: Aes128,
    /// The next block's counter. A stream would need 2^132 bytes to wrap it.
    counter: u128,
    /// The words of the last block not yet handed out, `spare[used..]`: a fill
    /// continues the stream word by word, however the previous fill ended.
    spare: [u64; 2],
    used: usize,
    /// Where the words this stream expands are counted, if anywhere.
    counted: Option<Expansion>,
}

/// Blocks encrypted per call: AES-NI pipelines 8 at a time, and 64 (1 KiB of
/// stream) keep the buffer on the stack and in L1.
const BLOCKS: usize = 64;

/// Ring elements a party expanded from seeds: what a dealer without the seed
/// trick would have had to send it. The count travels with each stream
/// ([`Prg::counted`]), so a fill is counted for its party whichever thread runs
/// it: one atomic add per fill, not per element.
#[derive(Debug, Clone, Default)]
pub struct Expansion(Arc<AtomicU64>);

impl Expansion {
    pub fn words(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which stream of a seed: what it is for (`domain`), the prediction (or training
/// step) `seq`, an identifier `id` (a plan step, a value, a data owner) and a `tag`
/// (the material counter of a step, a part). Every field keeps its full width: two
/// different keys never name the same stream, however large a session grows.
///
/// The session needs no field: every seed is drawn fresh for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub domain: u8,
    pub seq: u32,
    pub id: u32,
    pub tag: u32,
}

impl Prg {
    /// The stream `key` of `seed`.
    ///
    /// Its AES key is one block of ChaCha20 under the seed, at nonce (domain,
    /// seq) and block counter (id, tag): ChaCha20's block function is a PRF of
    /// its 128 nonce and counter bits, and the 104 bits of a key map into them
    /// one-to-one, so distinct keys get independent-looking AES keys with nothing
    /// truncated (the old 64-bit stream number packed seq into 20 bits and tag
    /// into 12, and wrapped). The seed is used for nothing else. One derivation
    /// and one key schedule per stream: a few blocks, against the megabytes a
    /// stream of material expands.
    pub fn derive(seed: &[u8; 32], key: StreamKey) -> Prg {
        let mut prf = ChaCha20Rng::from_seed(*seed);
        prf.set_stream((u64::from(key.domain) << 32) | u64::from(key.seq));
        let block = (u64::from(key.id) << 32) | u64::from(key.tag);
        // 16 words of 32 bits per block.
        prf.set_word_pos(u128::from(block) << 4);
        let mut stream_key = [0u8; 16];
        prf.fill_bytes(&mut stream_key);
        Prg { cipher: Aes128::new(&stream_key.into()), counter: 0, spare: [0; 2], used: 2, counted: None }
    }

    /// [`Prg::derive`], counting what the stream expands into `expansion`.
    pub fn counted(seed: &[u8; 32], key: StreamKey, expansion: &Expansion) -> Prg {
        Prg { counted: Some(expansion.clone()), ..Prg::derive(seed, key) }
    }

    /// Uniform ring elements.
    pub fn words(&mut self, n: usize) -> Vec<u64> {
        let mut words = Vec::with_capacity(n);
        self.extend(&mut words, n);
        words
    }

    /// Overwrite `words` with the stream's next words.
    pub fn fill(&mut self, words: &mut [u64]) {
        self.count(words.len());
        let mut at = 0;
        while at < words.len() {
            let rest = &mut words[at..];
            at += self.next_words(rest.len(), |chunk| rest[..chunk.len()].copy_from_slice(chunk));
        }
    }

    /// Append the stream's next `n` words to `out`: [`Prg::fill`] without
    /// zeroing the memory first.
    fn extend(&mut self, out: &mut Vec<u64>, n: usize) {
        self.count(n);
        let mut left = n;
        while left > 0 {
            left -= self.next_words(left, |chunk| out.extend_from_slice(chunk));
        }
    }

    fn count(&self, n: usize) {
        if let Some(expansion) = &self.counted {
            expansion.0.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Hand `put` the stream's next words, at most `want` (at least one if
    /// `want` is), and return how many: the spare word of the last block if there
    /// is one, else fresh blocks, up to [`BLOCKS`]. A block cut in half keeps its
    /// second word for the next call.
    fn next_words(&mut self, want: usize, put: impl FnOnce(&[u64])) -> usize {
        if self.used < 2 {
            let end = (self.used + want).min(2);
            put(&self.spare[self.used..end]);
            let given = end - self.used;
            self.used = end;
            return given;
        }
        let count = want.div_ceil(2).min(BLOCKS);
        let mut blocks = [aes::Block::default(); BLOCKS];
        let blocks = &mut blocks[..count];
        for block in blocks.iter_mut() {
            block.copy_from_slice(&self.counter.to_le_bytes());
            self.counter = self.counter.wrapping_add(1);
        }
        self.cipher.encrypt_blocks(blocks);
        let mut words = [0u64; 2 * BLOCKS];
        for (pair, block) in words.chunks_exact_mut(2).zip(blocks.iter()) {
            let (lo, hi) = block.split_at(8);
            pair[0] = u64::from_le_bytes(lo.try_into().unwrap_or_default());
            pair[1] = u64::from_le_bytes(hi.try_into().unwrap_or_default());
        }
        let given = want.min(2 * count);
        put(&words[..given]);
        if given % 2 == 1 {
            self.spare = [0, words[given]];
            self.used = 1;
        }
        given
    }

    pub fn tensor(&mut self, shape: &[usize]) -> RingTensor {
        let n = shape.iter().product();
        let mut words = Vec::with_capacity(n);
        self.extend(&mut words, n);
        let words: Vec<Z> = bytemuck::allocation::cast_vec(words);
        ArrayD::from_shape_vec(IxDyn(shape), words).expect("shape")
    }
}

/// A fresh 32-byte seed from the operating system's CSPRNG.
pub fn os_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("the operating system's random number generator failed: {e}"))?;
    Ok(seed)
}

pub fn to_words(t: &RingTensor) -> Vec<u64> {
    t.iter().map(|w| w.0).collect()
}

pub fn from_words(shape: &[usize], words: Vec<u64>) -> RingTensor {
    ArrayD::from_shape_vec(IxDyn(shape), words.into_iter().map(Wrapping).collect())
        .expect("word count matches the shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let fp = FixedPoint::default();
        let x = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0f32, -1.5, 3.25, -1e6]).unwrap();
        let back = fp.decode(&fp.encode(&x, "x").unwrap());
        assert_eq!(back, x);
    }

    #[test]
    fn out_of_range_is_refused() {
        let fp = FixedPoint::default();
        let x = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f32, 2e9]).unwrap();
        let err = format!("{:#}", fp.encode(&x, "weight `w`").unwrap_err());
        assert!(err.contains("weight `w`") && err.contains("out of range") && err.contains("flat index 1"), "{err}");
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let seed = [7u8; 32];
        let key = |tag| StreamKey { domain: 1, seq: 2, id: 3, tag };
        assert_eq!(Prg::derive(&seed, key(1)).words(5), Prg::derive(&seed, key(1)).words(5));
        assert_ne!(Prg::derive(&seed, key(1)).words(5), Prg::derive(&seed, key(2)).words(5));
        assert_ne!(Prg::derive(&seed, key(1)).words(5), Prg::derive(&[8u8; 32], key(1)).words(5));
    }

    /// The fields the old stream number truncated: seq past 20 bits, id past 24,
    /// tag past 12, and the bits where one field used to end and the next begin.
    #[test]
    fn streams_whose_keys_differ_only_past_the_old_field_widths_differ() {
        let seed = [7u8; 32];
        let base = StreamKey { domain: 2, seq: 1, id: 1, tag: 1 };
        let first = |key| Prg::derive(&seed, key).words(4);
        for other in [
            StreamKey { seq: 1 + (1 << 20), ..base },
            StreamKey { id: 1 + (1 << 24), ..base },
            StreamKey { tag: 1 + (1 << 12), ..base },
            StreamKey { tag: 1 + (1 << 31), ..base },
            StreamKey { seq: u32::MAX, ..base },
        ] {
            assert_ne!(first(base), first(other), "{other:?}");
        }
    }

    /// The stream is the same words however it is cut into fills: the dealer and
    /// a server may expand one piece of material in different chunks.
    #[test]
    fn a_stream_is_the_same_however_its_fills_are_cut() {
        let seed = [5u8; 32];
        let key = StreamKey { domain: 3, seq: 0, id: 9, tag: 1 };
        let whole = Prg::derive(&seed, key).words(1000);
        for cuts in [vec![1, 1, 1, 997], vec![3, 128, 129, 5, 735], vec![127, 1, 872], vec![999, 1]] {
            let mut prg = Prg::derive(&seed, key);
            let mut got = Vec::new();
            for (k, n) in cuts.into_iter().enumerate() {
                if k % 2 == 0 {
                    got.extend(prg.words(n));
                } else {
                    let mut buf = vec![0u64; n];
                    prg.fill(&mut buf);
                    got.extend(buf);
                }
            }
            assert_eq!(got, whole);
        }
        let tensor = Prg::derive(&seed, key).tensor(&[10, 100]);
        assert_eq!(tensor.iter().map(|w| w.0).collect::<Vec<_>>(), whole);
    }

    /// The stream is AES-128 in counter mode: block i = AES_k(i) (FIPS-197's
    /// key schedule and cipher; its appendix C.1 vector checks the `aes` crate),
    /// under the key ChaCha20 derives for the stream.
    #[test]
    fn the_stream_is_aes_ctr_under_the_derived_key() {
        use aes::cipher::generic_array::GenericArray;
        // FIPS-197 appendix C.1: AES-128.
        let fips = Aes128::new(&GenericArray::from(std::array::from_fn::<u8, 16, _>(|i| i as u8)));
        let mut block = GenericArray::from(std::array::from_fn::<u8, 16, _>(|i| (i as u8) * 0x11));
        fips.encrypt_block(&mut block);
        assert_eq!(
            block.as_slice(),
            &[0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a]
        );

        let seed = [11u8; 32];
        let key = StreamKey { domain: 1, seq: 4, id: 2, tag: 0 };
        let mut prf = ChaCha20Rng::from_seed(seed);
        prf.set_stream((1u64 << 32) | 4);
        prf.set_word_pos(u128::from(2u64 << 32) << 4);
        let mut k = [0u8; 16];
        prf.fill_bytes(&mut k);
        let cipher = Aes128::new(&k.into());
        let words = Prg::derive(&seed, key).words(6);
        for i in 0..3u128 {
            let mut block = GenericArray::from(i.to_le_bytes());
            cipher.encrypt_block(&mut block);
            let (lo, hi) = block.split_at(8);
            assert_eq!(words[2 * i as usize], u64::from_le_bytes(lo.try_into().unwrap()));
            assert_eq!(words[2 * i as usize + 1], u64::from_le_bytes(hi.try_into().unwrap()));
        }
    }

    proptest::proptest! {
        /// Any two distinct keys name different streams (and equal keys the same).
        #[test]
        fn distinct_stream_keys_give_distinct_streams(
            a in (proptest::prelude::any::<u8>(), proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>()),
            b in (proptest::prelude::any::<u8>(), proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>(), proptest::prelude::any::<u32>()),
            // Keys one bit apart, in any field: the likeliest collision of a packing.
            bit in 0u32..104,
        ) {
            let seed = [0x33u8; 32];
            let key = |(domain, seq, id, tag): (u8, u32, u32, u32)| StreamKey { domain, seq, id, tag };
            let (ka, kb) = (key(a), key(b));
            let words = |k| Prg::derive(&seed, k).words(2);
            proptest::prop_assert_eq!(ka == kb, words(ka) == words(kb));
            let mut flipped = ka;
            match bit {
                0..8 => flipped.domain ^= 1 << bit,
                8..40 => flipped.seq ^= 1 << (bit - 8),
                40..72 => flipped.id ^= 1 << (bit - 40),
                _ => flipped.tag ^= 1 << (bit - 72),
            }
            proptest::prop_assert_ne!(words(ka), words(flipped));
        }
    }
}
