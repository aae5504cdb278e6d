//! The network transport: one session's connections to other hosts.
//!
//! A [`Link`] holds the connections a process has in one session, each between
//! one of its own parties and one peer. The party programs are ordinary threads
//! that call [`Transport::send`] and [`Transport::recv`]; tokio tasks, one reader
//! and one writer per connection, move frames between the sockets and the
//! link's mailbox. A connection that ends, or a peer that reports a failure,
//! makes the receives that wait on it fail at once, naming the peer.
//!
//! Deadlines are on liveness, not on work: an idle connection carries a
//! keepalive every quarter of the deadline, so a receive fails when the peer has
//! sent *nothing* for the deadline (it died without closing, hangs, or the
//! network is cut), not when it is merely busy with a large layer. A receive also
//! gives up after [`MAX_WAIT`] in all, in case a live peer never sends.

// Parses bytes from others: nothing here may panic on what they send.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

use super::wire::{Frame, MAX_FRAME, read_frame, write_frame};
use super::{Aborted, MsgKey, Party, Transport};

/// A byte stream to a peer: TLS in production, TCP with `--insecure`.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The longest any one receive waits for a peer that is alive but does not send.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

pub struct Link {
    session: u64,
    timeout: Duration,
    state: Mutex<LinkState>,
    changed: Condvar,
    /// Set when the session ends: the readers stop waiting for their peers.
    finished: watch::Sender<bool>,
}

#[derive(Default)]
struct LinkState {
    /// (from, to, key) → payload.
    messages: HashMap<(Party, Party, MsgKey), Vec<u8>>,
    /// (from, to) → control messages, oldest first.
    controls: HashMap<(Party, Party), Vec<Vec<u8>>>,
    /// (local, peer) → the writer of that connection.
    outgoing: HashMap<(Party, Party), mpsc::UnboundedSender<Frame>>,
    /// (local, peer) → why that connection ended.
    closed: HashMap<(Party, Party), String>,
    /// (local, peer) → when the last frame came from that peer.
    heard: HashMap<(Party, Party), Instant>,
    aborted: Option<String>,
}

impl Link {
    pub fn new(session: u64, timeout: Duration) -> Arc<Link> {
        Arc::new(Link {
            session,
            timeout,
            state: Mutex::new(LinkState::default()),
            changed: Condvar::new(),
            finished: watch::channel(false).0,
        })
    }

    pub fn session(&self) -> u64 {
        self.session
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panicking party thread cannot leave the maps half-updated (every
        // update is one insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carry the connection between `local` and `peer` over `stream`, which has
    /// already been authenticated. Must be called inside a tokio runtime.
    pub fn attach(self: &Arc<Self>, local: Party, peer: Party, stream: Box<dyn Stream>) -> Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut state = self.lock();
            if state.outgoing.contains_key(&(local, peer)) {
                bail!("{} is already connected to {} in this session", peer.name(), local.name());
            }
            state.outgoing.insert((local, peer), tx);
            state.heard.insert((local, peer), Instant::now());
        }
        self.changed.notify_all();
        let (reader, writer) = tokio::io::split(stream);
        tokio::spawn(Arc::clone(self).write_loop(local, peer, writer, rx));
        tokio::spawn(Arc::clone(self).read_loop(local, peer, reader));
        Ok(())
    }

    async fn write_loop(
        self: Arc<Self>,
        local: Party,
        peer: Party,
        writer: tokio::io::WriteHalf<Box<dyn Stream>>,
        mut rx: mpsc::UnboundedReceiver<Frame>,
    ) {
        let mut w = BufWriter::with_capacity(1 << 16, writer);
        let mut keepalive = tokio::time::interval((self.timeout / 4).max(Duration::from_millis(10)));
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result: Result<()> = async {
            loop {
                let frame = tokio::select! {
                    frame = rx.recv() => match frame {
                        Some(frame) => frame,
                        None => break,
                    },
                    _ = keepalive.tick() => Frame::Ping,
                };
                write_frame(&mut w, &frame).await?;
                // Flush when nothing else is queued: small messages share a record.
                if rx.is_empty() {
                    w.flush().await?;
                }
            }
            w.flush().await?;
            w.shutdown().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // The reader usually knows better why the connection broke: the
            // peer's alert (a refused certificate) or abort frame came before the
            // reset that failed this write. Give it a moment to say so first.
            let until = Instant::now() + Duration::from_secs(1);
            let told = || {
                let state = self.lock();
                state.closed.contains_key(&(local, peer)) || state.aborted.is_some()
            };
            while Instant::now() < until && !told() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.connection_ended(local, peer, format!("sending to {} failed: {e}", peer.name()));
        }
    }

    async fn read_loop(self: Arc<Self>, local: Party, peer: Party, reader: tokio::io::ReadHalf<Box<dyn Stream>>) {
        // Every byte is a sign of life, also in the middle of a 30 MB frame.
        let mut reader = Heard { inner: reader, link: Arc::clone(&self), from: (local, peer) };
        let mut finished = self.finished.subscribe();
        let why = loop {
            let frame = tokio::select! {
                frame = read_frame(&mut reader, MAX_FRAME) => Some(frame),
                _ = finished.wait_for(|&done| done) => None,
            };
            let Some(frame) = frame else {
                drain(&mut reader, self.timeout).await;
                return;
            };
            match frame {
                Ok(Some(Frame::Ping)) => {}
                Ok(Some(Frame::Message { key, payload })) => {
                    if key.session != self.session {
                        break format!("{} sent a message of another session", peer.name());
                    }
                    let mut state = self.lock();
                    if state.messages.insert((peer, local, key), payload).is_some() {
                        break format!("{} sent message {key:?} twice", peer.name());
                    }
                    drop(state);
                    self.changed.notify_all();
                }
                Ok(Some(Frame::Control(json))) => {
                    self.lock().controls.entry((peer, local)).or_default().push(json);
                    self.changed.notify_all();
                }
                Ok(Some(Frame::Abort(reason))) => {
                    self.stop(format!("{} stopped: {reason}", peer.name()));
                    return;
                }
                Ok(None) => break format!("{} closed the connection", peer.name()),
                Err(e) => match super::tls::received_alert(&e) {
                    // A refusal of our certificate (TLS 1.3 tells it after our handshake).
                    Some(alert) => break super::tls::alert_text(peer, local, alert),
                    None if is_abrupt_end(&e) => {
                        break format!("{} disconnected abruptly (it stopped or crashed)", peer.name());
                    }
                    None => break format!("connection to {} lost: {e:#}", peer.name()),
                },
            }
        };
        self.connection_ended(local, peer, why);
    }

    fn connection_ended(&self, local: Party, peer: Party, why: String) {
        let mut state = self.lock();
        state.closed.entry((local, peer)).or_insert(why);
        state.outgoing.remove(&(local, peer));
        drop(state);
        self.changed.notify_all();
    }

    /// Fail every waiting and later receive, without telling the peers.
    fn stop(&self, reason: String) {
        self.lock().aborted.get_or_insert(reason);
        self.changed.notify_all();
    }

    /// Send a session control message from `local` to `peer`.
    pub fn send_control(&self, local: Party, peer: Party, json: Vec<u8>) -> Result<()> {
        self.send_frame(local, peer, Frame::Control(json))
    }

    /// Wait for the next control message from `peer` to `local`.
    pub fn recv_control(&self, local: Party, peer: Party, timeout: Duration) -> Result<Vec<u8>> {
        let timed_out = || format!("{} did not answer {} within {timeout:?}", peer.name(), local.name());
        self.wait_for(local, peer, Instant::now() + timeout, timed_out, |state| {
            state.controls.get_mut(&(peer, local)).filter(|q| !q.is_empty()).map(|q| q.remove(0))
        })
    }

    fn send_frame(&self, local: Party, peer: Party, frame: Frame) -> Result<()> {
        // A peer that dials us may not have connected yet: wait for it.
        let timed_out = || format!("{} did not connect to {} within {:?}", peer.name(), local.name(), self.timeout);
        let tx = self.wait_for(local, peer, Instant::now() + self.timeout, timed_out, |state| {
            state.outgoing.get(&(local, peer)).cloned()
        })?;
        tx.send(frame).map_err(|_| anyhow!("connection to {} lost", peer.name()))
    }

    /// Wait until `take` finds what it looks for, or the connection between
    /// `local` and `peer` ends, the session is aborted, or the deadline passes.
    fn wait_for<T>(
        &self,
        local: Party,
        peer: Party,
        deadline: Instant,
        timed_out: impl Fn() -> String,
        mut take: impl FnMut(&mut LinkState) -> Option<T>,
    ) -> Result<T> {
        let mut state = self.lock();
        loop {
            if let Some(found) = take(&mut state) {
                return Ok(found);
            }
            if let Some(why) = state.closed.get(&(local, peer)) {
                bail!("{why}");
            }
            if let Some(reason) = &state.aborted {
                return Err(Aborted(reason.clone()).into());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("{}", timed_out());
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// End the session: writers flush what is queued and close their connections;
    /// readers stop.
    pub fn finish(&self) {
        self.lock().outgoing.clear();
        self.finished.send_replace(true);
        self.changed.notify_all();
    }
}

/// After this side's session ended: read and drop what the peer still sends
/// (its keepalives) until it closes, falls silent for the deadline, or an hour
/// passes. Closing a socket with unread bytes makes the kernel reset the
/// connection and discard what this side has not yet transmitted: a crypto
/// producer that finished dealing ahead of the servers would cut off the tail
/// of its own last messages.
async fn drain<R: AsyncRead + Unpin>(reader: &mut R, deadline: Duration) {
    let until = tokio::time::Instant::now() + MAX_WAIT;
    while let Ok(Ok(Some(_))) =
        tokio::time::timeout_at(until.min(tokio::time::Instant::now() + deadline), read_frame(reader, MAX_FRAME)).await
    {
    }
}

/// A reader that notes when bytes last came from the peer.
struct Heard<R> {
    inner: R,
    link: Arc<Link>,
    from: (Party, Party),
}

impl<R: AsyncRead + Unpin> AsyncRead for Heard<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let from = self.from;
            self.link.lock().heard.insert(from, Instant::now());
        }
        poll
    }
}

/// The peer's socket closed mid-stream (a killed process): TLS reports it as a
/// missing close_notify, TCP as a reset.
fn is_abrupt_end(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted))
}

impl Transport for Link {
    fn send(&self, from: Party, to: Party, key: MsgKey, payload: Vec<u8>) -> Result<()> {
        self.send_frame(from, to, Frame::Message { key, payload })
    }

    /// `timeout` is the liveness deadline: how long `from` may stay silent.
    fn recv(&self, to: Party, from: Party, key: MsgKey, timeout: Duration) -> Result<Vec<u8>> {
        let start = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(payload) = state.messages.remove(&(from, to, key)) {
                return Ok(payload);
            }
            if let Some(reason) = &state.aborted {
                return Err(Aborted(reason.clone()).into());
            }
            if let Some(why) = state.closed.get(&(to, from)) {
                bail!("{} waits for {key:?} from {}, but {why}", to.name(), from.name());
            }
            let now = Instant::now();
            let heard = state.heard.get(&(to, from)).copied().unwrap_or(start).max(start);
            if now.duration_since(heard) >= timeout {
                bail!(
                    "{} has sent nothing to {} for {timeout:?} (it, or the network to it, hangs)",
                    from.name(),
                    to.name()
                );
            }
            if now.duration_since(start) >= MAX_WAIT {
                bail!("{} waited {MAX_WAIT:?} for message {key:?} from {} in vain", to.name(), from.name());
            }
            let wake = (heard + timeout).min(start + MAX_WAIT) - now;
            state = self.changed.wait_timeout(state, wake).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stop here and tell every peer why, so that they stop too instead of
    /// waiting out their deadlines.
    fn abort(&self, reason: String) {
        let mut state = self.lock();
        state.aborted.get_or_insert(reason.clone());
        for tx in state.outgoing.values() {
            let _ = tx.send(Frame::Abort(reason.clone()));
        }
        drop(state);
        self.changed.notify_all();
    }
}
