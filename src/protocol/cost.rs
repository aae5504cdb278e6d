//! What a protocol sends: the bytes each server sends and the rounds it waits.
//! Every primitive exports its own cost beside its two halves, and the cost of an
//! op or a program is the sum of its primitives': there is one formula per
//! primitive, not one per place that plans with it (tests check measured = planned).

/// Bytes one server sends, and rounds (sequential exchanges with the other
/// server); and the bytes of FSS key messages the dealer sends the two servers
/// (the material that cannot be expanded from seeds and dominates an FSS
/// program's offline traffic; zero for the bitwise protocol's primitives).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    pub bytes: u64,
    pub rounds: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keys: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Cost {
    pub const ZERO: Cost = Cost { bytes: 0, rounds: 0, keys: 0 };

    /// `words` ring elements sent in `rounds` rounds.
    pub fn words(words: usize, rounds: u64) -> Cost {
        Cost { bytes: 8 * words as u64, rounds, keys: 0 }
    }

    /// This cost with `keys` bytes of dealer key messages.
    pub fn with_keys(self, keys: u64) -> Cost {
        Cost { keys, ..self }
    }

    /// This cost `count` times over, one after the other.
    pub fn times(self, count: u64) -> Cost {
        Cost { bytes: self.bytes * count, rounds: self.rounds * count, keys: self.keys * count }
    }
}

/// One after the other: bytes and rounds add.
impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost { bytes: self.bytes + other.bytes, rounds: self.rounds + other.rounds, keys: self.keys + other.keys }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, |a, b| a + b)
    }
}
