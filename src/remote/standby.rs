//! Connections kept open between the serving parties, so that a session pays
//! no TLS handshake between them (one network round trip each, on the critical
//! path of every session: server0 joins server1, the crypto producer joins both
//! servers, before they answer the driver).
//!
//! The dialling side ([`Kept`]) holds one connection per peer, opened with a
//! [`Request::Standby`](super::Request::Standby) hello and renewed every
//! [`RENEW`]; a session takes it and sends its join's hello on it, and a new
//! one is dialled at once for the next session. The accepting side parks each
//! standby connection ([`Parked`]) until its next frame, a join's hello, for at
//! most [`IDLE`], and at most [`PER_PEER`] of them per dialling party (one
//! more closes the one parked longest). A standby connection is the session's
//! own from its join on: no two sessions ever share one, and it carries
//! nothing before the join.

// Runs on connections from peers: nothing here may panic on them.
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{Instrument, debug};

use crate::transport::Party;
use crate::transport::network::Stream;
use crate::transport::tls::Identity;

/// How long a kept connection is used before it is replaced by a fresh one,
/// well within the acceptor's [`IDLE`].
pub const RENEW: Duration = Duration::from_secs(60);
/// How long an accepted standby connection may wait for its join.
pub const IDLE: Duration = Duration::from_secs(120);
/// Standby connections parked at once per dialling party: the one it keeps,
/// the one it renews it with, and slack for sessions starting at once.
pub const PER_PEER: usize = 4;

/// The servers `me` joins in every session, and so keeps standby connections
/// to: server0 joins server1, the crypto producer both servers.
pub fn peers_of(me: Party) -> &'static [Party] {
    match me {
        Party::Server0 => &[Party::Server1],
        Party::Dealer => &[Party::Server0, Party::Server1],
        _ => &[],
    }
}

/// A kept connection per peer, with when it was opened.
type Slots = HashMap<Party, (Instant, Box<dyn Stream>)>;

/// The dialling side: one connection kept per peer.
pub struct Kept {
    slots: Mutex<Slots>,
    /// Per peer: its connection was taken (or found dead), dial another.
    taken: HashMap<Party, Arc<Notify>>,
}

impl Kept {
    /// Keep a connection open to each of `me`'s [`peers_of`], dialled at
    /// `address(peer)` with `identity`, each handshake within `timeout`. The
    /// keepers run on the current runtime until it stops.
    pub fn start(
        me: Party,
        identity: Option<Identity>,
        addresses: Vec<(Party, String)>,
        timeout: Duration,
    ) -> Arc<Kept> {
        let taken: HashMap<Party, Arc<Notify>> =
            addresses.iter().map(|(peer, _)| (*peer, Arc::new(Notify::new()))).collect();
        let kept = Arc::new(Kept { slots: Mutex::new(HashMap::new()), taken });
        for (peer, address) in addresses {
            let keeper = Arc::clone(&kept);
            let identity = identity.clone();
            tokio::spawn(async move { keeper.keep(me, peer, identity, address, timeout).await }.in_current_span());
        }
        kept
    }

    /// Keep one connection to `peer` open and younger than [`RENEW`]. A peer
    /// that cannot be reached (not started yet, restarting) is retried after
    /// 1 s, then less often, up to every 30 s; sessions dial it meanwhile.
    async fn keep(&self, me: Party, peer: Party, identity: Option<Identity>, address: String, timeout: Duration) {
        let Some(taken) = self.taken.get(&peer).cloned() else { return };
        let mut backoff = Duration::from_secs(1);
        loop {
            let age = self.lock().get(&peer).map(|(born, _)| born.elapsed());
            match age {
                Some(age) if age < RENEW => {
                    let renew = RENEW.saturating_sub(age);
                    tokio::select! {
                        _ = taken.notified() => {}
                        _ = tokio::time::sleep(renew) => {}
                    }
                }
                _ => match super::dial_standby(identity.as_ref(), me, peer, &address, timeout).await {
                    Ok(stream) => {
                        // Replacing an aged one closes it: its acceptor stops waiting.
                        self.lock().insert(peer, (Instant::now(), stream));
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        debug!("no standby connection to {}: {e:#}", peer.name());
                        tokio::time::sleep(backoff).await;
                        backoff = backoff.saturating_mul(2).min(Duration::from_secs(30));
                    }
                },
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept connection to `peer`, if there is one that is young enough and
    /// still open; its keeper dials the next at once.
    pub async fn take(&self, peer: Party) -> Option<Box<dyn Stream>> {
        let kept = self.lock().remove(&peer);
        if let Some(taken) = self.taken.get(&peer) {
            taken.notify_one();
        }
        let (born, stream) = kept?;
        if born.elapsed() >= RENEW {
            return None;
        }
        open(stream).await
    }
}

/// `stream` if it is still open: nothing to read yet. The acceptor sends
/// nothing on a standby connection, so end of stream, an error or any byte
/// means it is of no use (closed at [`IDLE`], or by a restart). TLS records
/// that carry no data (session tickets) are taken by rustls and read as nothing.
async fn open(mut stream: Box<dyn Stream>) -> Option<Box<dyn Stream>> {
    let mut byte = [0u8; 1];
    // A zero timeout polls the read once: pending means open and silent.
    match tokio::time::timeout(Duration::ZERO, tokio::io::AsyncReadExt::read(&mut stream, &mut byte)).await {
        Err(_) => Some(stream),
        Ok(_) => None,
    }
}

/// The accepting side: the standby connections parked per dialling party.
pub struct Parked {
    by_party: HashMap<Party, super::serve::Handshakes>,
}

impl Parked {
    /// For the parties that keep standby connections to `me`.
    pub fn new(me: Party) -> Parked {
        let by_party = [Party::Server0, Party::Dealer]
            .into_iter()
            .filter(|dialler| peers_of(*dialler).contains(&me))
            .map(|dialler| {
                let full = format!("{PER_PEER} standby connections of {} were parked here", dialler.name());
                (dialler, super::serve::Handshakes::with_reason(PER_PEER, full))
            })
            .collect();
        Parked { by_party }
    }

    /// Does `from` keep standby connections to this party?
    pub fn admits(&self, from: Party) -> bool {
        self.by_party.contains_key(&from)
    }

    /// Park a standby connection from `from` until its next frame, at most
    /// [`IDLE`]: the session it joins, or why it ended.
    pub async fn wait_for_join(&self, stream: &mut Box<dyn Stream>, from: Party) -> anyhow::Result<u64> {
        let Some(slots) = self.by_party.get(&from) else {
            anyhow::bail!("{} keeps no standby connection here", from.name());
        };
        let (ticket, closed) = slots.enter();
        let next = tokio::select! {
            next = super::read_join(stream, from, IDLE) => next,
            why = closed => Err(anyhow::anyhow!(
                "closed for a newer one: {}",
                why.unwrap_or_else(|_| "the server stops".into())
            )),
        };
        slots.leave(ticket);
        next
    }

    /// Standby connections parked now.
    pub fn waiting(&self) -> usize {
        self.by_party.values().map(super::serve::Handshakes::waiting).fold(0, usize::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server0_keeps_connections_to_server1_and_the_crypto_producer_to_both() {
        assert_eq!(peers_of(Party::Server0), &[Party::Server1]);
        assert_eq!(peers_of(Party::Dealer), &[Party::Server0, Party::Server1]);
        assert!(peers_of(Party::Server1).is_empty() && peers_of(Party::Client).is_empty());
        let parked = |me| {
            let mut v: Vec<Party> = Parked::new(me).by_party.keys().copied().collect();
            v.sort_by_key(|p| p.name());
            v
        };
        assert_eq!(parked(Party::Server1), vec![Party::Dealer, Party::Server0]);
        assert_eq!(parked(Party::Server0), vec![Party::Dealer]);
        assert!(parked(Party::Dealer).is_empty());
    }
}
