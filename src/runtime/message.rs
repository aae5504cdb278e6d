//! The message "steps" outside every program's steps, one table for prediction
//! and training alike.
//!
//! A message is keyed by (session, seq, step, tag). A program's own messages use
//! its step numbers (a plan's steps; training's phases 0, 1, 2); what surrounds
//! them (seeds, an owner's sharing, outputs, flow control) uses these numbers
//! from the top of the u32 range, each for one meaning only, so two kinds of
//! message can never be mistaken for each other whatever their seq and tag.

/// A message step outside the program's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Outside {
    /// The crypto producer's seed to each server (seq 0, tag 0).
    Seeds = u32::MAX,
    /// An owner's sharing: its seed to server 0, value − share to server 1 (a
    /// client's inputs, the model owner's weights, a data owner's rows).
    Shares = u32::MAX - 1,
    /// The servers' shares of a prediction's output, to the client.
    Output = u32::MAX - 2,
    /// The set-up: the servers open the masked weights (or training set) once.
    Setup = u32::MAX - 3,
    /// The crypto producer's end of a prediction's dealing, to each server.
    OfflineDone = u32::MAX - 4,
    /// Server 1's acknowledgements to the crypto producer ([`super::flow`]).
    Ack = u32::MAX - 5,
    /// An epoch's summed training loss, to the model owner.
    Loss = u32::MAX - 6,
    /// The servers' shares of the trained weights, to the model owner.
    Trained = u32::MAX - 7,
}

impl Outside {
    /// The lowest of these numbers: a program's steps must stay below it.
    pub const FIRST: u32 = Outside::Trained as u32;

    pub const fn step(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::Outside;

    /// Prediction's and training's sentinels used to be two tables whose equal
    /// numbers meant different things (u32::MAX − 4 was both "the dealer is
    /// done" and "an epoch's loss"). One meaning per number, all at or above FIRST.
    #[test]
    fn every_outside_step_has_its_own_number_at_or_above_first() {
        let all = [
            Outside::Seeds,
            Outside::Shares,
            Outside::Output,
            Outside::Setup,
            Outside::OfflineDone,
            Outside::Ack,
            Outside::Loss,
            Outside::Trained,
        ];
        let mut steps: Vec<u32> = all.iter().map(|o| o.step()).collect();
        assert!(steps.iter().all(|&s| s >= Outside::FIRST));
        steps.sort_unstable();
        steps.dedup();
        assert_eq!(steps.len(), all.len());
    }
}
