//! Flow control between the crypto producer and server 1, for every program.
//!
//! The dealer's work depends on no input, so nothing but this stops it from
//! running ahead: before it, a prediction session's dealer dealt every
//! prediction's material before server 1 had read any, all of it waiting in the
//! transport (in one process, unbounded memory; over the network, up to
//! `--max-session-buffer`, then the sender stalls).
//!
//! **The bound, in steps**: server 1 acknowledges every [`ACK_EVERY`] program
//! steps it has finished (plan steps counted over all predictions of the
//! session, or training steps), and the dealer deals step g only once server 1
//! has acknowledged g − ACK_EVERY steps, rounded down to a multiple of
//! ACK_EVERY. So at most 2·ACK_EVERY − 1 = 31 steps' material is dealt and not
//! yet consumed: what the transport holds for server 1 is capped by the 31
//! largest steps' corrections (mnist_model has 14 plan steps: a little over
//! two predictions' instead of all). Counted in steps, not bytes, because both sides
//! know the step count without a message, and the lag a step allows is what
//! keeps the dealer's overlap with the online phase; the byte bound of a
//! network session is the transport's (`--max-session-buffer`).
//!
//! Acknowledgements are empty messages sent and read aside
//! ([`Channel::send_aside`]): counted in the totals, in no layer, in no round.

use anyhow::Result;

use super::message::Outside;
use crate::transport::{Channel, Party};

/// Server 1 acknowledges every this many steps.
pub const ACK_EVERY: u64 = 16;

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
}

impl Default for Window {
    fn default() -> Self {
        Window { next: ACK_EVERY }
    }
}

impl Window {
    /// Call before dealing step `step` (counted from 0 over the session).
    pub fn before(&mut self, net: &mut dyn Channel, step: u64) -> Result<()> {
        if step >= 2 * ACK_EVERY {
            self.read_upto(net, step - ACK_EVERY)?;
        }
        Ok(())
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
