//! Which protocol compares with zero: the one choice behind every DReLU and ReLU.
//!
//! The op units call [`super::compare::drelu`] and [`super::compare::relu`] (and
//! what is built on them: tournaments, piecewise functions, the inverses'
//! octave); those dispatch on the comparison the server and the dealer were
//! given, which is the lowered program's ([`crate::lower::Program::comparison`]),
//! so every party runs the same protocol and the cost model plans it.

use anyhow::Result;

use super::Cost;
use crate::ring::{FixedPoint, Z};

/// How many low bits of a shared operand decide its sign: a comparison of
/// width k reads only x mod 2^k and returns bit k − 1 of it, which is the sign
/// of x exactly when −2^(k−1) ≤ x < 2^(k−1) as a signed ring integer. The
/// bitwise protocol then combines k − 1 lanes instead of 63, and the FSS keys
/// are over k − 1 bits instead of 63.
///
/// A width is chosen where the bound is known, never guessed: [`Width::RING`]
/// (every ring element), or [`Width::in_range`], which holds for any value of a
/// computation by the representable range that every truncation already
/// assumes (inputs and weights are checked against it when they are shared,
/// [`FixedPoint::check_range`]), and for the difference of two such values or
/// of one and a public threshold inside the range ([`Width::for_thresholds`]
/// checks the thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Width(u32);

impl Width {
    /// The whole ring: exact for every x.
    pub const RING: Width = Width(64);

    /// A width of `bits` (2 to 64: a sign bit and at least one lane).
    pub fn new(bits: u32) -> Result<Width> {
        if !(2..=64).contains(&bits) {
            anyhow::bail!("a comparison over {bits} bits: 2 to 64 are possible");
        }
        Ok(Width(bits))
    }

    /// Values at `fp`'s f fractional bits are below 2^(62−2f) in magnitude
    /// (the representable range), so below 2^(62−f) as ring integers; their
    /// differences, and their differences with a public value in the range,
    /// are below 2^(63−f): 64 − f bits (48 at f = 16).
    pub fn in_range(fp: FixedPoint) -> Width {
        Width((64 - fp.frac_bits.min(62)).max(2))
    }

    /// [`Width::in_range`] if every public threshold t, ring-encoded, is a
    /// value in the range (|t| < 2^(62−f)), so that x − t is a difference of
    /// two; otherwise the whole ring.
    pub fn for_thresholds(fp: FixedPoint, thresholds: &[Z]) -> Width {
        let narrow = Width::in_range(fp);
        if thresholds.iter().all(|t| narrow.admits_threshold(*t)) { narrow } else { Width::RING }
    }

    /// Whether x − t keeps this width's bound for every x the width admits as
    /// a value: |t| below half the bound (always, for the ring).
    pub fn admits_threshold(self, t: Z) -> bool {
        self == Width::RING || (t.0 as i64).unsigned_abs() < 1u64 << (self.0 - 2)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether a signed ring integer `x` is one this width compares exactly.
    pub fn contains(self, x: i64) -> bool {
        self == Width::RING || (-(1i64 << (self.0 - 1))..(1i64 << (self.0 - 1))).contains(&x)
    }
}

/// The protocol of every comparison in a program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// A bit decomposition with the dealer's AND triples: eight rounds, about five
    /// words per element per server, little dealer traffic (`compare`).
    #[default]
    Bitwise,
    /// Function secret sharing (a DCF per element): one round, one word per element
    /// per server, about 3–5 KB of dealer keys per element (`fss`).
    Fss,
}

impl Comparison {
    pub fn is_bitwise(&self) -> bool {
        *self == Comparison::Bitwise
    }

    pub fn name(self) -> &'static str {
        match self {
            Comparison::Bitwise => "bitwise",
            Comparison::Fss => "fss",
        }
    }

    /// What a DReLU of `n` elements of width `w` sends.
    pub fn drelu_cost(self, n: usize, w: Width) -> Cost {
        match self {
            Comparison::Bitwise => super::compare::bitwise_drelu_cost(n, w),
            Comparison::Fss => super::fss::cost(super::fss::Gate::Drelu(w), n),
        }
    }

    /// What a ReLU of `n` elements of width `w` sends.
    pub fn relu_cost(self, n: usize, w: Width) -> Cost {
        match self {
            Comparison::Bitwise => super::compare::bitwise_relu_cost(n, w),
            Comparison::Fss => super::fss::cost(super::fss::Gate::Relu(w), n),
        }
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
