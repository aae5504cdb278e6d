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

    /// Refuse values outside the range, and NaN, naming `what` and the position.
    pub fn check_range<'a>(&self, values: impl IntoIterator<Item = &'a f32>, what: &str) -> Result<()> {
        let bound = self.bound();
        if let Some((i, v)) = values.into_iter().enumerate().find(|(_, v)| v.is_nan() || f64::from(v.abs()) >= bound) {
            return Err(Error::bad_input(format!(
                "{what}: value {v} at flat index {i} is out of range (|x| must be below 2^{} = {bound:e} with {} fractional bits)",
                62 - 2 * self.frac_bits,
                self.frac_bits
            )));
        }
        Ok(())
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

/// A ChaCha20 stream: the randomness of one piece of dealer material (or one mask),
/// from one 32-byte seed and a stream number, so the dealer and a server that share
/// the seed expand the same values without any message.
pub struct Prg(ChaCha20Rng);

thread_local! {
    /// Ring elements this thread (party) expanded from seeds: what a dealer without
    /// the seed trick would have had to send.
    static EXPANDED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Ring elements the calling thread has expanded from seeds so far.
pub fn expanded_words() -> u64 {
    EXPANDED.with(std::cell::Cell::get)
}

impl Prg {
    pub fn new(seed: &[u8; 32], stream: u64) -> Prg {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        rng.set_stream(stream);
        Prg(rng)
    }

    /// Uniform ring elements.
    pub fn words(&mut self, n: usize) -> Vec<u64> {
        let mut words = vec![0u64; n];
        self.fill(&mut words);
        words
    }

    /// Overwrite `words` with uniform ring elements: the stream's bytes, read as
    /// little-endian words, written straight into place.
    pub fn fill(&mut self, words: &mut [u64]) {
        EXPANDED.with(|c| c.set(c.get() + words.len() as u64));
        self.0.fill_bytes(bytemuck::cast_slice_mut(words));
        words.iter_mut().for_each(|w| *w = u64::from_le(*w));
    }

    pub fn tensor(&mut self, shape: &[usize]) -> RingTensor {
        let mut words = vec![Wrapping(0u64); shape.iter().product()];
        self.fill(bytemuck::cast_slice_mut(&mut words));
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

/// A stream number from a domain, a prediction number, an identifier (a step or a
/// value) and a tag, so no two uses of one seed ever share a stream.
/// Layout: domain 8 bits | seq 20 | id 24 | tag 12.
pub fn stream_id(domain: u8, seq: u32, id: u32, tag: u16) -> u64 {
    debug_assert!(seq < 1 << 20 && id < 1 << 24 && tag < 1 << 12, "stream id fields out of range");
    (u64::from(domain) << 56)
        | (u64::from(seq & 0xf_ffff) << 36)
        | (u64::from(id & 0xff_ffff) << 12)
        | u64::from(tag & 0xfff)
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
        assert_eq!(Prg::new(&seed, 1).words(5), Prg::new(&seed, 1).words(5));
        assert_ne!(Prg::new(&seed, 1).words(5), Prg::new(&seed, 2).words(5));
    }
}
