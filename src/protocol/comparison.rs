//! Which protocol compares with zero: the one choice behind every DReLU and ReLU.
//!
//! The op units call [`super::compare::drelu`] and [`super::compare::relu`] (and
//! what is built on them: tournaments, piecewise functions, the inverses'
//! octave); those dispatch on the comparison the server and the dealer were
//! given, which is the lowered program's ([`crate::lower::Program::comparison`]),
//! so every party runs the same protocol and the cost model plans it.

use super::Cost;

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

    /// What a DReLU of `n` elements sends.
    pub fn drelu_cost(self, n: usize) -> Cost {
        match self {
            Comparison::Bitwise => super::compare::bitwise_drelu_cost(n),
            Comparison::Fss => super::fss::cost(super::fss::Gate::Drelu, n),
        }
    }

    /// What a ReLU of `n` elements sends.
    pub fn relu_cost(self, n: usize) -> Cost {
        match self {
            Comparison::Bitwise => super::compare::bitwise_relu_cost(n),
            Comparison::Fss => super::fss::cost(super::fss::Gate::Relu, n),
        }
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
