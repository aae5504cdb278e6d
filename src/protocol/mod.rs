//! The Pond protocol: two servers hold 2-out-of-2 additive shares of fixed-point
//! values in Z_2^64; a crypto producer (the dealer) supplies correlated randomness.
//!
//! Every primitive comes in two halves written side by side: what a server does
//! (`Server`), and what the dealer does to supply it (`Dealer`). Both halves draw
//! their material in the same order from the same ChaCha20 streams, so they cannot
//! drift apart:
//!
//! * server 0 expands *all* of its material from a 32-byte seed the dealer sent it
//!   once — no other dealer message ever reaches server 0;
//! * server 1 expands the uniformly random parts (its mask shares) from its own seed,
//!   and receives only the *corrections* that make the correlation hold (e.g.
//!   `c1 = a·b − c0`).
//!
//! What a server receives from the other server is always a value masked by
//! randomness it does not know (a masked operand `x − a`, a masked truncation input
//! `x + r`, a masked AND input): uniformly distributed, independent of the data.

pub mod compare;
pub mod comparison;
pub mod fss;
pub mod inverse;
pub mod mul;
pub mod trunc;

mod cost;
pub use comparison::{Comparison, Width};
pub use cost::Cost;

use anyhow::Result;

use std::num::Wrapping;

use crate::ring::{Expansion, Prg, RingTensor, StreamKey};
use crate::transport::{Channel, Party, WordWriter, check_words, decode_words, encode_words, read_words};

/// Stream domains, so a seed never yields the same stream for two purposes.
pub mod domain {
    /// The mask of a private value (its id is the value id).
    pub const MASK: u8 = 1;
    /// Material of one primitive inside a step.
    pub const MATERIAL: u8 = 2;
    /// The sharing of an input or a weight by its owner.
    pub const SHARING: u8 = 3;
}

/// Where a primitive is in the run: prediction `seq` (0 is set-up), plan step
/// `step`, and counters for the step's dealer material and server-to-server
/// openings. Messages are keyed by sender too, so the two counters never collide,
/// and the dealer only has to mirror the material counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    pub seq: u32,
    pub step: u32,
    pub material: u32,
    pub open: u32,
}

impl Cursor {
    pub fn at(seq: u32, step: u32) -> Cursor {
        Cursor { seq, step, material: 0, open: 0 }
    }

    /// The step's next material tag. A counter that would wrap is refused (in
    /// release builds too): a repeated tag would reuse material.
    pub fn next_material(&mut self) -> Result<u32> {
        self.material = next_counter(self.material, "pieces of dealer material", self.step)?;
        Ok(self.material)
    }

    /// The step's next opening tag (refused, likewise, where it would wrap).
    pub fn next_open(&mut self) -> Result<u32> {
        self.open = next_counter(self.open, "openings", self.step)?;
        Ok(self.open)
    }

    pub fn material_stream(&self, tag: u32) -> StreamKey {
        StreamKey { domain: domain::MATERIAL, seq: self.seq, id: self.step, tag }
    }
}

fn next_counter(count: u32, what: &str, step: u32) -> Result<u32> {
    count
        .checked_add(1)
        .ok_or_else(|| anyhow::anyhow!("step {step} needs more than {} {what}, the most one step can number", u32::MAX))
}

/// The stream of the mask of value `id` in prediction `seq`.
fn mask_stream(seq: u32, id: u32) -> StreamKey {
    StreamKey { domain: domain::MASK, seq, id, tag: 0 }
}

/// One server's protocol state for a session.
pub struct Server {
    /// 0 or 1.
    pub i: usize,
    pub net: Box<dyn Channel>,
    /// The seed the dealer sent this server: expands its share of all material.
    seed: [u8; 32],
    pub at: Cursor,
    /// What this server's material and masks expanded from its seed.
    expansion: Expansion,
    /// The protocol of its comparisons: the program's.
    pub comparison: Comparison,
}

impl Server {
    pub fn new(i: usize, net: impl Channel + 'static, seed: [u8; 32]) -> Server {
        Server {
            i,
            net: Box::new(net),
            seed,
            at: Cursor::default(),
            expansion: Expansion::default(),
            comparison: Comparison::default(),
        }
    }

    pub fn peer(&self) -> Party {
        Party::server(1 - self.i)
    }

    pub fn is_first(&self) -> bool {
        self.i == 0
    }

    /// Start a plan step (prediction `seq`, step number `step`): the protocol's
    /// cursor only. Which messages and which layer's counters the step's traffic
    /// goes to is the party runtime's to say (on [`Server::net`]).
    pub fn begin(&mut self, seq: u32, step: u32) {
        self.at = Cursor::at(seq, step);
    }

    /// This server's PRG for material `tag` of the current step.
    pub fn material(&self, tag: u32) -> Prg {
        Prg::counted(&self.seed, self.at.material_stream(tag), &self.expansion)
    }

    /// This server's share of the mask of value `id` in prediction `seq`.
    pub fn mask(&self, seq: u32, id: u32, shape: &[usize]) -> RingTensor {
        Prg::counted(&self.seed, mask_stream(seq, id), &self.expansion).tensor(shape)
    }

    /// Ring elements this server's material and masks expanded from its seed so
    /// far (on any thread): what a dealer without seeds would have sent it. An
    /// owner's sharing expands from the owner's seed and is not counted here.
    pub fn expanded_words(&self) -> u64 {
        self.expansion.words()
    }

    /// Server 1's corrections for material `tag`: `len` ring elements from the dealer.
    pub fn corrections(&mut self, tag: u32, len: usize) -> Result<Vec<u64>> {
        let bytes = self.correction_message(tag, len)?;
        decode_words(&bytes, len, Party::Dealer)
    }

    /// [`Server::corrections`] as the message itself, its length checked: for
    /// reading the words in place ([`read_words`]) instead of copying them.
    pub fn correction_message(&mut self, tag: u32, len: usize) -> Result<Vec<u8>> {
        debug_assert_eq!(self.i, 1, "server 0 expands its material from its seed");
        let bytes = self.net.recv(Party::Dealer, self.at.step, tag)?;
        check_words(&bytes, len, Party::Dealer)?;
        Ok(bytes)
    }

    /// A dealer message for material `tag` of the current step that must be
    /// exactly `len` bytes: what FSS keys come in, to either server.
    pub fn dealer_message(&mut self, tag: u32, len: usize) -> Result<Vec<u8>> {
        let bytes = self.net.recv(Party::Dealer, self.at.step, tag)?;
        if bytes.len() != len {
            anyhow::bail!("the crypto producer sent {} bytes where {len} were expected", bytes.len());
        }
        Ok(bytes)
    }

    /// Swap messages with the other server under the step's next opening tag:
    /// send ours, return theirs, which must be as long.
    fn swap(&mut self, message: Vec<u8>) -> Result<Vec<u8>> {
        let tag = self.at.next_open()?;
        let peer = self.peer();
        let len = message.len();
        self.net.send(peer, self.at.step, tag, message)?;
        let theirs = self.net.recv(peer, self.at.step, tag)?;
        if theirs.len() != len {
            anyhow::bail!(
                "{} sent {} bytes where {} ring elements ({len} bytes) were expected",
                peer.name(),
                theirs.len(),
                len / 8
            );
        }
        Ok(theirs)
    }

    /// Exchange words with the other server: send ours, return theirs.
    pub fn exchange(&mut self, words: &[u64]) -> Result<Vec<u64>> {
        let theirs = self.swap(encode_words(words))?;
        decode_words(&theirs, words.len(), self.peer())
    }

    /// Exchange a message of words with the other server: send ours, return
    /// theirs (as long; read it with [`read_words`]).
    pub fn exchange_message(&mut self, message: WordWriter) -> Result<Vec<u8>> {
        self.swap(message.into_bytes())
    }

    /// Open shared tensors: both servers learn their sums. One round.
    ///
    /// Written for large tensors (a training set, a batch's activations): the
    /// shares are encoded straight into the message, and the peer's words are
    /// added straight into a copy of ours, with no intermediate vectors.
    pub fn open(&mut self, shares: &[&RingTensor]) -> Result<Vec<RingTensor>> {
        let total: usize = shares.iter().map(|s| s.len()).sum();
        let mut message = Vec::with_capacity(total * 8);
        for s in shares {
            match s.as_slice() {
                Some(words) if cfg!(target_endian = "little") => message.extend_from_slice(bytemuck::cast_slice(words)),
                _ => s.iter().for_each(|w| message.extend_from_slice(&w.0.to_le_bytes())),
            }
        }
        let theirs = self.swap(message)?;
        let theirs = read_words(&theirs);
        let mut words = theirs.iter().copied();
        Ok(shares
            .iter()
            .map(|s| {
                let mut sum = (*s).clone();
                sum.iter_mut().zip(words.by_ref()).for_each(|(v, w)| *v += Wrapping(w));
                sum
            })
            .collect())
    }

    /// XOR-open bit words: both servers learn `a ⊕ b`. One round.
    pub fn open_xor(&mut self, words: &[u64]) -> Result<Vec<u64>> {
        let theirs = self.exchange(words)?;
        Ok(words.iter().zip(theirs).map(|(a, b)| a ^ b).collect())
    }

    /// A public tensor as this server's share of it: server 0 holds it, server 1 zero.
    pub fn public(&self, t: &RingTensor) -> RingTensor {
        if self.is_first() { t.clone() } else { RingTensor::zeros(t.raw_dim()) }
    }
}

/// The dealer's state for a session: both servers' seeds.
pub struct Dealer {
    pub net: Box<dyn Channel>,
    seeds: [[u8; 32]; 2],
    pub at: Cursor,
    /// The protocol of its comparisons: the program's.
    pub comparison: Comparison,
}

impl Dealer {
    pub fn new(net: impl Channel + 'static, seeds: [[u8; 32]; 2]) -> Dealer {
        Dealer { net: Box::new(net), seeds, at: Cursor::default(), comparison: Comparison::default() }
    }

    /// Start dealing a plan step: the protocol's cursor only (see [`Server::begin`]).
    pub fn begin(&mut self, seq: u32, step: u32) {
        self.at = Cursor::at(seq, step);
    }

    /// Server `i`'s PRG for material `tag` of the current step.
    pub fn material(&self, i: usize, tag: u32) -> Prg {
        Prg::derive(&self.seeds[i], self.at.material_stream(tag))
    }

    /// The whole mask of value `id` (both servers' shares added).
    pub fn mask(&self, seq: u32, id: u32, shape: &[usize]) -> RingTensor {
        let stream = mask_stream(seq, id);
        Prg::derive(&self.seeds[0], stream).tensor(shape) + Prg::derive(&self.seeds[1], stream).tensor(shape)
    }

    /// Send `to` (a server) a message for material `tag` of the current step.
    pub fn send(&mut self, to: Party, tag: u32, bytes: Vec<u8>) -> Result<()> {
        self.net.send(to, self.at.step, tag, bytes)
    }

    /// Send server 1 its corrections for material `tag`.
    pub fn send_corrections(&mut self, tag: u32, words: WordWriter) -> Result<()> {
        self.net.send(Party::Server1, self.at.step, tag, words.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::InProcess;
    use std::sync::Arc;

    fn server0() -> Server {
        let transport: Arc<dyn crate::transport::Transport> = Arc::new(InProcess::new());
        let net = crate::transport::Endpoint::new(Party::Server0, transport, 1, std::time::Duration::from_secs(1));
        Server::new(0, net, [9u8; 32])
    }

    /// A kernel may fill a server's material on another thread: the words are
    /// the server's expansion all the same.
    #[test]
    fn a_material_fill_on_another_thread_is_counted_for_its_server() {
        let mut s = server0();
        s.begin(1, 0);
        let mut prg = s.material(1);
        std::thread::spawn(move || prg.words(100)).join().unwrap();
        let _ = s.mask(1, 3, &[7]);
        assert_eq!(s.expanded_words(), 107);
    }
}
