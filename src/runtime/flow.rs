//! Flow control between the crypto producer and server 1, for every program.
//!
//! The dealer's work depends on no input, so nothing but this stops it from
//! running ahead: before it, a prediction session's dealer dealt every
//! prediction's material before server 1 had read any, all of it waiting in the
//! transport (in one process, unbounded memory; over the network, up to
//! `--max-session-buffer`, then the sender stalls).
//!
//! **The bound, in bytes**: server 1 acknowledges every [`ACK_EVERY`] program
//! steps it has finished (plan steps counted over all predictions of the
//! session, or training steps). Before dealing a step, the dealer waits while
//! what it has sent since the last step server 1 acknowledged exceeds
//! [`MAX_UNREAD`], or it is [`MAX_LAG_STEPS`] past the next acknowledgement,
//! as long as there is an acknowledgement it may wait for (one of steps it has
//! dealt). So what the transport holds for server 1 is at most
//! [`MAX_UNREAD`] plus the material of the last ACK_EVERY steps and of the step
//! being dealt. A first version bounded the steps instead (31): steps without
//! material (data movement) counted as much as a ReLU's, and batch-1 sessions,
//! whose whole material is a few MB, lost the dealer's lead over the online
//! phase (7–19% per prediction on `keras3_bn` and `functional`, BENCHMARKS.md).
//!
//! Acknowledgements are empty messages sent and read aside
//! ([`Channel::send_aside`]): counted in the totals, in no layer, in no round.

use anyhow::Result;

use super::message::Outside;
use crate::transport::{Channel, Party};

/// Server 1 acknowledges every this many steps.
pub const ACK_EVERY: u64 = 16;

/// The most bytes the dealer may have sent beyond the last acknowledged step
/// before it waits for server 1.
pub const MAX_UNREAD: u64 = 64 << 20;

/// The most steps the dealer may run ahead of server 1's acknowledgements,
/// whatever their bytes: without it, a session of cheap steps never waits, so
/// its acknowledgements pile up unread and the dealer's per-step record grows
/// with the session (16 bytes a step, for up to 2^32 predictions).
pub const MAX_LAG_STEPS: u64 = 4096;

/// Acknowledgement `n` (of n·ACK_EVERY steps) as its message's seq and tag: a
/// session's steps may pass u32, their acknowledgements' count keeps its width.
fn ack_key(n: u64) -> (u32, u32) {
    ((n & u64::from(u32::MAX)) as u32, (n >> 32) as u32)
}

/// Server 1's side: count the steps it finished, acknowledge every ACK_EVERY.
#[derive(Debug, Default)]
pub struct Acknowledge {
    done: u64,
}

impl Acknowledge {
    pub fn step_done(&mut self, net: &mut dyn Channel) -> Result<()> {
        self.done += 1;
        if self.done.is_multiple_of(ACK_EVERY) {
            send(net, self.done / ACK_EVERY)?;
        }
        Ok(())
    }
}

fn send(net: &mut dyn Channel, n: u64) -> Result<()> {
    let (seq, tag) = ack_key(n);
    let current = net.seq();
    net.set_seq(seq);
    let sent = net.send_aside(Party::Dealer, Outside::Ack.step(), tag, Vec::new());
    net.set_seq(current);
    sent
}

/// The dealer's side: wait for server 1 before running more than the bound ahead.
#[derive(Debug)]
pub struct Window {
    /// The number of steps the next acknowledgement will report.
    next: u64,
    /// For each dealt step not yet acknowledged (and the last acknowledged
    /// one): the bytes the dealer had sent before dealing it.
    sent_before: std::collections::VecDeque<(u64, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Window { next: ACK_EVERY, sent_before: std::collections::VecDeque::new() }
    }
}

impl Window {
    /// Call before dealing step `step` (counted from 0 over the session).
    pub fn before(&mut self, net: &mut dyn Channel, step: u64) -> Result<()> {
        let sent = net.traffic().0.bytes_sent;
        self.sent_before.push_back((step, sent));
        // Acknowledgement `next` covers steps below `next`: it can come only if
        // those are dealt, i.e. `next <= step`.
        while self.next <= step
            && (step - self.next >= MAX_LAG_STEPS || sent.saturating_sub(self.acknowledged_at()) > MAX_UNREAD)
        {
            self.read_upto(net, self.next)?;
        }
        Ok(())
    }

    /// What the dealer had sent before the first step server 1 has not
    /// acknowledged: everything since is unread, as far as the dealer knows.
    fn acknowledged_at(&mut self) -> u64 {
        let acknowledged = self.next.saturating_sub(ACK_EVERY);
        while self.sent_before.len() > 1 && self.sent_before.front().is_some_and(|&(k, _)| k < acknowledged) {
            self.sent_before.pop_front();
        }
        self.sent_before.front().map_or(0, |&(_, bytes)| bytes)
    }

    /// After dealing all `total` steps: read the last acknowledgements, so the
    /// dealer never hangs up on a server 1 that still has one to send.
    pub fn drain(&mut self, net: &mut dyn Channel, total: u64) -> Result<()> {
        self.read_upto(net, total)
    }

    fn read_upto(&mut self, net: &mut dyn Channel, steps: u64) -> Result<()> {
        let current = net.seq();
        while self.next <= steps {
            let (seq, tag) = ack_key(self.next / ACK_EVERY);
            net.set_seq(seq);
            let read = net.recv_aside(Party::Server1, Outside::Ack.step(), tag);
            if let Err(e) = read {
                net.set_seq(current);
                return Err(e);
            }
            self.next += ACK_EVERY;
        }
        net.set_seq(current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::transport::{Endpoint, InProcess, Transport};

    /// A session of steps without material never passed the byte bound, so the
    /// dealer read no acknowledgement: they piled up unread, and its record of
    /// steps grew by one entry a step for the whole session. Now it reads them
    /// at most MAX_LAG_STEPS behind, and the record stays that short.
    #[test]
    fn a_session_of_cheap_steps_reads_its_acknowledgements_and_keeps_its_record_short() {
        let transport: Arc<dyn Transport> = Arc::new(InProcess::new());
        let endpoint = |p| Endpoint::new(p, Arc::clone(&transport), 7, Duration::from_secs(10));
        let (mut server1, mut dealer) = (endpoint(Party::Server1), endpoint(Party::Dealer));
        let (mut acks, mut window) = (Acknowledge::default(), Window::default());
        let steps = 4 * MAX_LAG_STEPS;
        for step in 0..steps {
            window.before(&mut dealer, step).unwrap();
            acks.step_done(&mut server1).unwrap();
            assert!(window.sent_before.len() as u64 <= MAX_LAG_STEPS + 2 * ACK_EVERY, "step {step}");
        }
        assert!(window.next + MAX_LAG_STEPS >= steps, "acknowledgements left unread: next {}", window.next);
        window.drain(&mut dealer, steps).unwrap();
    }
}
