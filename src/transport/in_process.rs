//! The default transport: all parties are threads of one process, and messages go
//! through a shared mailbox, serialised exactly as they would be on a wire.
//!
//! Each party waits on its own condition variable, and a message wakes only its
//! recipient. With one shared variable every message woke every waiting party —
//! in a session, also the crypto producer waiting for server 1's
//! acknowledgements — and on two cores those needless wake-ups cost batch-1
//! predictions in a session about a sixth of their time (BENCHMARKS.md).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Aborted, MsgKey, Party, Transport};

#[derive(Default)]
pub struct InProcess {
    mailbox: Mutex<Mailbox>,
    /// One per party (see [`InProcess::arrived`]): notified when a message to it arrives.
    arrived: [Condvar; Party::ALL.len()],
}

#[derive(Default)]
struct Mailbox {
    messages: HashMap<(Party, Party, MsgKey), Vec<u8>>,
    aborted: Option<String>,
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::default()
    }

    /// The condition variable `party` waits on.
    fn arrived(&self, party: Party) -> &Condvar {
        let [server0, server1, dealer, owner, client] = &self.arrived;
        match party {
            Party::Server0 => server0,
            Party::Server1 => server1,
            Party::Dealer => dealer,
            Party::ModelOwner => owner,
            Party::Client => client,
        }
    }
}

impl Transport for InProcess {
    fn send(&self, from: Party, to: Party, key: MsgKey, payload: Vec<u8>) -> Result<()> {
        let mut mailbox = self.mailbox.lock().map_err(|_| anyhow::anyhow!("a party thread panicked"))?;
        if mailbox.messages.insert((from, to, key), payload).is_some() {
            anyhow::bail!("{} sent message {key:?} to {} twice", from.name(), to.name());
        }
        // All of the recipient's waiters: a party may wait on more than one thread.
        self.arrived(to).notify_all();
        Ok(())
    }

    fn recv(&self, to: Party, from: Party, key: MsgKey, timeout: Duration) -> Result<Vec<u8>> {
        // A timeout past what an Instant can hold waits as long as one can.
        let deadline = Instant::now().checked_add(timeout);
        let mut mailbox = self.mailbox.lock().map_err(|_| anyhow::anyhow!("a party thread panicked"))?;
        loop {
            if let Some(payload) = mailbox.messages.remove(&(from, to, key)) {
                return Ok(payload);
            }
            if let Some(reason) = &mailbox.aborted {
                return Err(Aborted(reason.clone()).into());
            }
            let now = Instant::now();
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
            if left.is_zero() {
                anyhow::bail!("{} waited {timeout:?} for message {key:?} from {} in vain", to.name(), from.name());
            }
            mailbox =
                self.arrived(to).wait_timeout(mailbox, left).map_err(|_| anyhow::anyhow!("a party thread panicked"))?.0;
        }
    }

    fn abort(&self, reason: String) {
        if let Ok(mut mailbox) = self.mailbox.lock() {
            mailbox.aborted.get_or_insert(reason);
        }
        for arrived in &self.arrived {
            arrived.notify_all();
        }
    }
}
