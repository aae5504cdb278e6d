//! The default transport: all parties are threads of one process, and messages go
//! through a shared mailbox, serialised exactly as they would be on a wire.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Aborted, MsgKey, Party, Transport};

#[derive(Default)]
pub struct InProcess {
    mailbox: Mutex<Mailbox>,
    arrived: Condvar,
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
}

impl Transport for InProcess {
    fn send(&self, from: Party, to: Party, key: MsgKey, payload: Vec<u8>) -> Result<()> {
        let mut mailbox = self.mailbox.lock().map_err(|_| anyhow::anyhow!("a party thread panicked"))?;
        if mailbox.messages.insert((from, to, key), payload).is_some() {
            anyhow::bail!("{} sent message {key:?} to {} twice", from.name(), to.name());
        }
        self.arrived.notify_all();
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
                self.arrived.wait_timeout(mailbox, left).map_err(|_| anyhow::anyhow!("a party thread panicked"))?.0;
        }
    }

    fn abort(&self, reason: String) {
        if let Ok(mut mailbox) = self.mailbox.lock() {
            mailbox.aborted.get_or_insert(reason);
        }
        self.arrived.notify_all();
    }
}
