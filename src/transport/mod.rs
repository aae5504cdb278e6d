//! How parties talk: one trait, implementations per medium, every byte counted.
//!
//! Every message is a byte string keyed by (session, prediction, step, tag), so
//! messages may arrive in any order and two sessions never mix (as Moose keys its
//! messages by session and rendezvous key). The protocol code sees only a
//! [`Channel`] (which [`Endpoint`] implements): the same code runs over the
//! in-process transport and over the network.

// Carries what peers send: nothing in the transport may panic or overflow on it.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod in_process;
pub mod network;
pub mod sniff;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

pub use in_process::InProcess;

/// The five roles of a Pond deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Party {
    #[serde(rename = "server0")]
    Server0,
    #[serde(rename = "server1")]
    Server1,
    /// The crypto producer: deals correlated randomness, never sees data.
    #[serde(rename = "crypto-producer")]
    Dealer,
    #[serde(rename = "model-owner")]
    ModelOwner,
    #[serde(rename = "client")]
    Client,
}

impl Party {
    pub const ALL: [Party; 5] = [Party::Server0, Party::Server1, Party::Dealer, Party::ModelOwner, Party::Client];

    pub fn name(self) -> &'static str {
        match self {
            Party::Server0 => "server0",
            Party::Server1 => "server1",
            Party::Dealer => "crypto-producer",
            Party::ModelOwner => "model-owner",
            Party::Client => "client",
        }
    }

    pub fn server(i: usize) -> Party {
        if i == 0 { Party::Server0 } else { Party::Server1 }
    }
}

/// Which message: of which session, which prediction in it (0 is the set-up that
/// shares the weights), which step of the plan, and which message of that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgKey {
    pub session: u64,
    pub seq: u32,
    pub step: u32,
    pub tag: u32,
}

/// A medium that carries byte strings between parties.
pub trait Transport: Send + Sync {
    fn send(&self, from: Party, to: Party, key: MsgKey, payload: Vec<u8>) -> Result<()>;
    /// Wait for the message `key` from `from`, at most `timeout`.
    fn recv(&self, to: Party, from: Party, key: MsgKey, timeout: Duration) -> Result<Vec<u8>>;
    /// A party failed: make every waiting and later receive fail at once, instead
    /// of waiting out its deadline.
    fn abort(&self, reason: String);
}

/// The error a receive returns after another party failed.
#[derive(Debug)]
pub struct Aborted(pub String);

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped because {}", self.0)
    }
}

impl std::error::Error for Aborted {}

/// Traffic counters of one party.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    /// Communication rounds: sends that follow a receive (or start the party's work).
    pub rounds: u64,
}

impl Traffic {
    pub fn add(&mut self, other: &Traffic) {
        // Counters of what parties report saturate, never wrap.
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
        self.messages_sent = self.messages_sent.saturating_add(other.messages_sent);
        self.rounds = self.rounds.saturating_add(other.rounds);
    }
}

/// What a party's protocol code sends and receives through: byte messages to
/// and from a party under (step, tag) of the current prediction, counted.
///
/// The protocol (`protocol::Server`, `protocol::Dealer`) only sends and
/// receives. The party runtime, which knows the program, says which prediction
/// is current and which layer (a plan step, a training phase) the traffic
/// belongs to, and reads the counters at the end. One dynamic call per message.
pub trait Channel: Send {
    fn me(&self) -> Party;
    fn send(&mut self, to: Party, step: u32, tag: u32, payload: Vec<u8>) -> Result<()>;
    fn recv(&mut self, from: Party, step: u32, tag: u32) -> Result<Vec<u8>>;
    /// Flow-control traffic (an acknowledgement): counted in the totals under
    /// no layer, and neither starting nor ending a round, so that the rounds
    /// of the protocol's own messages stay as planned wherever it falls.
    fn send_aside(&mut self, to: Party, step: u32, tag: u32, payload: Vec<u8>) -> Result<()>;
    /// The receiving side of [`Channel::send_aside`].
    fn recv_aside(&mut self, from: Party, step: u32, tag: u32) -> Result<Vec<u8>>;
    /// The prediction (or training step) whose messages follow.
    fn set_seq(&mut self, seq: u32);
    fn seq(&self) -> u32;
    /// Attribute the following traffic to `layer` (`None`: outside every layer).
    fn set_layer(&mut self, layer: Option<usize>);
    /// What was counted: in total, and per layer.
    fn traffic(&self) -> (&Traffic, &BTreeMap<usize, Traffic>);
}

/// One party's view of the transport: it sends as itself, counts what it sends and
/// receives, and attributes the traffic to the current plan step (`layer`).
pub struct Endpoint {
    me: Party,
    transport: Arc<dyn Transport>,
    timeout: Duration,
    pub session: u64,
    pub seq: u32,
    layer: Option<usize>,
    /// Whether the last thing this party did was a receive (a send after one starts a round).
    received_since_send: bool,
    pub total: Traffic,
    pub per_layer: BTreeMap<usize, Traffic>,
}

impl Endpoint {
    pub fn new(me: Party, transport: Arc<dyn Transport>, session: u64, timeout: Duration) -> Endpoint {
        Endpoint {
            me,
            transport,
            timeout,
            session,
            seq: 0,
            layer: None,
            received_since_send: true,
            total: Traffic::default(),
            per_layer: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> Party {
        self.me
    }

    /// Attribute the following traffic to plan step `layer` (`None`: set-up, input, output).
    pub fn set_layer(&mut self, layer: Option<usize>) {
        self.layer = layer;
    }

    fn key(&self, step: u32, tag: u32) -> MsgKey {
        MsgKey { session: self.session, seq: self.seq, step, tag }
    }

    fn count(&mut self, f: impl Fn(&mut Traffic)) {
        f(&mut self.total);
        if let Some(l) = self.layer {
            f(self.per_layer.entry(l).or_default());
        }
    }

    pub fn send(&mut self, to: Party, step: u32, tag: u32, payload: Vec<u8>) -> Result<()> {
        let n = payload.len() as u64;
        let new_round = std::mem::replace(&mut self.received_since_send, false);
        self.count(|t| {
            t.bytes_sent = t.bytes_sent.saturating_add(n);
            t.messages_sent = t.messages_sent.saturating_add(1);
            if new_round {
                t.rounds = t.rounds.saturating_add(1);
            }
        });
        self.transport.send(self.me, to, self.key(step, tag), payload)
    }

    pub fn recv(&mut self, from: Party, step: u32, tag: u32) -> Result<Vec<u8>> {
        let payload = self.transport.recv(self.me, from, self.key(step, tag), self.timeout)?;
        let n = payload.len() as u64;
        self.received_since_send = true;
        self.count(|t| t.bytes_received = t.bytes_received.saturating_add(n));
        Ok(payload)
    }
}

impl Channel for Endpoint {
    fn me(&self) -> Party {
        self.me
    }

    fn send(&mut self, to: Party, step: u32, tag: u32, payload: Vec<u8>) -> Result<()> {
        Endpoint::send(self, to, step, tag, payload)
    }

    fn recv(&mut self, from: Party, step: u32, tag: u32) -> Result<Vec<u8>> {
        Endpoint::recv(self, from, step, tag)
    }

    fn send_aside(&mut self, to: Party, step: u32, tag: u32, payload: Vec<u8>) -> Result<()> {
        self.total.bytes_sent = self.total.bytes_sent.saturating_add(payload.len() as u64);
        self.total.messages_sent = self.total.messages_sent.saturating_add(1);
        self.transport.send(self.me, to, self.key(step, tag), payload)
    }

    fn recv_aside(&mut self, from: Party, step: u32, tag: u32) -> Result<Vec<u8>> {
        let payload = self.transport.recv(self.me, from, self.key(step, tag), self.timeout)?;
        self.total.bytes_received = self.total.bytes_received.saturating_add(payload.len() as u64);
        Ok(payload)
    }

    fn set_seq(&mut self, seq: u32) {
        self.seq = seq;
    }

    fn seq(&self) -> u32 {
        self.seq
    }

    fn set_layer(&mut self, layer: Option<usize>) {
        Endpoint::set_layer(self, layer)
    }

    fn traffic(&self) -> (&Traffic, &BTreeMap<usize, Traffic>) {
        (&self.total, &self.per_layer)
    }
}

/// Ring words written straight into a message's bytes (8 little-endian bytes
/// each), so that a large message is not built as words and then copied.
#[derive(Debug, Default)]
pub struct WordWriter(Vec<u8>);

impl WordWriter {
    pub fn with_capacity(words: usize) -> WordWriter {
        WordWriter(Vec::with_capacity(words.saturating_mul(8)))
    }

    #[inline]
    pub fn push(&mut self, word: u64) {
        self.0.extend_from_slice(&word.to_le_bytes());
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl Extend<u64> for WordWriter {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, words: I) {
        words.into_iter().for_each(|w| self.push(w));
    }
}

/// The words of a received message (whose length was checked), read in place where
/// the buffer is aligned for them, as the allocator's buffers are.
pub fn read_words(bytes: &[u8]) -> std::borrow::Cow<'_, [u64]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(words) if cfg!(target_endian = "little") => std::borrow::Cow::Borrowed(words),
        _ => std::borrow::Cow::Owned(
            bytes
                .chunks_exact(8)
                .map(|c| c.iter().rev().fold(0u64, |word, &byte| (word << 8) | u64::from(byte)))
                .collect(),
        ),
    }
}

/// Ring elements on the wire: 8 little-endian bytes each.
pub fn encode_words(words: &[u64]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        return bytemuck::cast_slice(words).to_vec();
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The inverse of [`encode_words`], checking the length the receiver expects.
pub fn decode_words(bytes: &[u8], expected: usize, from: Party) -> Result<Vec<u64>> {
    check_words(bytes, expected, from)?;
    Ok(read_words(bytes).into_owned())
}

/// Refuse a message that is not `expected` ring elements long.
pub fn check_words(bytes: &[u8], expected: usize, from: Party) -> Result<()> {
    // An expected length past usize is no length a message can have.
    if expected.checked_mul(8) != Some(bytes.len()) {
        anyhow::bail!(
            "{} sent {} bytes where {} ring elements ({} bytes) were expected",
            from.name(),
            bytes.len(),
            expected,
            expected.saturating_mul(8)
        );
    }
    Ok(())
}
