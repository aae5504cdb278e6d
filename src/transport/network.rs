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
//! keepalive every quarter of the deadline, at most a second apart (each party
//! has its own `--timeout`, and a peer's may be the shorter), so a receive fails
//! when the peer has sent *nothing* for the deadline (it died without closing,
//! hangs, or the network is cut), not when it is merely busy with a large layer. A receive also
//! gives up after [`MAX_WAIT`] in all, in case a live peer never sends. A peer
//! that has not connected to the session yet is not silent but late (dialling,
//! in its TLS handshake, queued behind other sessions): it has
//! [`Limits::join_timeout`] from the session's start to join.
//!
//! Messages that arrive before their receive wait in the mailbox, and what they
//! may hold is bounded ([`Limits::max_buffer`]): each connection has a quarter
//! of it (a party has at most four peers in a session), and a connection whose
//! share is full is not read until the party takes some of its messages. That
//! is backpressure, not a refusal, because honest peers do run ahead: the
//! crypto producer deals a whole session without waiting, so a hard cap would
//! refuse long honest sessions, while with backpressure the producer's writer
//! waits for the socket, and its sends wait once a share of messages is queued
//! for the connection. Honest peers send in the order their messages
//! are taken, so when a receive waits on a connection, what is buffered from it
//! is only what the party takes later. A receive that waits on a connection
//! that is not read is therefore waiting behind messages nobody asked for (a
//! flood under unused tags, or a peer out of step): that would deadlock, so the
//! receive fails at once, naming the limit.

// The no-panic, checked-arithmetic lints of `transport/mod.rs` hold here.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

use super::wire::{Frame, MAX_FRAME, read_body, read_frame, read_len, write_frame};
use super::{Aborted, MsgKey, Party, Transport};
use crate::error::Error;

/// A byte stream to a peer: TLS in production, TCP with `--insecure`.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The longest any one receive waits for a peer that is alive but does not send.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The longest gap between keepalives on an idle connection, whatever this
/// party's deadline: a peer's deadline over a second is then always met.
const KEEPALIVE_MAX: Duration = Duration::from_secs(1);

/// What a session may cost a party, and how long its peers may take to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of messages that arrived before their receive (`--max-session-buffer`);
    /// each connection may hold a quarter of it, one frame included.
    pub max_buffer: u64,
    /// From the session's start, how long a peer may take to connect to it
    /// (`--join-timeout`); after it has, the silence deadline applies.
    pub join_timeout: Duration,
}

/// The default of `--max-session-buffer`: a quarter of it per connection is
/// the largest frame ([`MAX_FRAME`], 1 GiB), far above the largest message of
/// the shipped models at a batch of 100 (15 to 46 MB) and half of the default
/// `--max-memory`.
pub const DEFAULT_MAX_BUFFER: u64 = 4 << 30;
/// The default of `--join-timeout`.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most peers a party has in one session: server1's server0, crypto
/// producer, model owner and client. Each connection's share of the buffer.
const SHARES: u64 = 4;

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_buffer: DEFAULT_MAX_BUFFER, join_timeout: DEFAULT_JOIN_TIMEOUT }
    }
}

impl Limits {
    /// The bytes one connection may have buffered (its frame in progress included).
    pub fn share(&self) -> u64 {
        self.max_buffer / SHARES
    }
}

pub struct Link {
    session: u64,
    timeout: Duration,
    limits: Limits,
    /// When this party's part of the session began: peers join within
    /// `limits.join_timeout` of it.
    created: Instant,
    state: Mutex<LinkState>,
    changed: Condvar,
    /// Told when messages are taken: a reader waiting for room in its share.
    room: tokio::sync::Notify,
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
    /// (local, peer) → bytes buffered from that peer: its messages and control
    /// messages not yet taken, and the frame being read.
    buffered: HashMap<(Party, Party), u64>,
    /// (local, peer) → the length of the frame that connection's reader has
    /// no room for (it does not read on until the party takes messages).
    paused: HashMap<(Party, Party), u64>,
    /// All connections' buffered bytes, now and at most.
    total: u64,
    peak: u64,
    /// (local, peer) → bytes of messages handed to that connection's writer
    /// and not yet written.
    queued: HashMap<(Party, Party), u64>,
    /// (local, peer): the connection the session was started on. Once it has
    /// ended, a peer that has not joined yet never will be needed.
    starter: Option<(Party, Party)>,
    aborted: Option<String>,
}

impl LinkState {
    // The counts are bounded by the limits (a connection holds at most its
    // share); saturating keeps them panic-free, and a saturated count only
    // over-states what is held, which pauses a reader rather than admit more.
    fn hold(&mut self, from: (Party, Party), bytes: u64) {
        let held = self.buffered.entry(from).or_default();
        *held = held.saturating_add(bytes);
        self.total = self.total.saturating_add(bytes);
        self.peak = self.peak.max(self.total);
    }

    fn release(&mut self, from: (Party, Party), bytes: u64) {
        let held = self.buffered.entry(from).or_default();
        let bytes = bytes.min(*held);
        *held = held.saturating_sub(bytes);
        self.total = self.total.saturating_sub(bytes);
    }
}

/// `d` after `from`. The durations here are a day at most (`--timeout`,
/// `--join-timeout`) or [`MAX_WAIT`], so the sum exists; were it not to, the
/// deadline is `from` and the wait fails at once, naming what it waited for,
/// rather than panic in a thread that holds the link.
fn after(from: Instant, d: Duration) -> Instant {
    from.checked_add(d).unwrap_or(from)
}

/// A size for messages: MiB, or bytes when smaller.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b => format!("{b} bytes"),
    }
}

impl Link {
    pub fn new(session: u64, timeout: Duration) -> Arc<Link> {
        Link::with_limits(session, timeout, Limits::default())
    }

    pub fn with_limits(session: u64, timeout: Duration, limits: Limits) -> Arc<Link> {
        Arc::new(Link {
            session,
            timeout,
            limits,
            created: Instant::now(),
            state: Mutex::new(LinkState::default()),
            changed: Condvar::new(),
            room: tokio::sync::Notify::new(),
            finished: watch::channel(false).0,
        })
    }

    /// The session was started by `peer` on its connection to `local`: if that
    /// connection ends, waiting for peers that have not joined is in vain.
    pub fn started_by(&self, local: Party, peer: Party) {
        self.lock().starter = Some((local, peer));
    }

    /// The most bytes this session had buffered at once.
    pub fn peak_buffered(&self) -> u64 {
        self.lock().peak
    }

    /// The bytes this session has buffered now (`serve --metrics`).
    pub fn buffered(&self) -> u64 {
        self.lock().total
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
                return Err(Error::party(
                    peer.name(),
                    format!("{} is already connected to {} in this session", peer.name(), local.name()),
                ));
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
        // At most a second apart: the peer's deadline may be shorter than ours.
        let period = self.timeout.checked_div(4).unwrap_or_default().clamp(Duration::from_millis(10), KEEPALIVE_MAX);
        let mut keepalive = tokio::time::interval(period);
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
                if let Frame::Message { payload, .. } = &frame {
                    self.written(local, peer, payload.len() as u64);
                }
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
            let until = after(Instant::now(), Duration::from_secs(1));
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

    /// The writer has passed on `bytes` of a message: senders waiting for room
    /// in the connection's queue may go on.
    fn written(&self, local: Party, peer: Party, bytes: u64) {
        let mut state = self.lock();
        let queued = state.queued.entry((local, peer)).or_default();
        *queued = queued.saturating_sub(bytes);
        drop(state);
        self.changed.notify_all();
    }

    async fn read_loop(self: Arc<Self>, local: Party, peer: Party, reader: tokio::io::ReadHalf<Box<dyn Stream>>) {
        // Every byte is a sign of life, also in the middle of a 30 MB frame.
        let mut reader = Heard { inner: reader, link: Arc::clone(&self), from: (local, peer) };
        let mut finished = self.finished.subscribe();
        let lost = |e: anyhow::Error| match (super::tls::received_alert(&e), super::sniff::mismatch_in(&e)) {
            // A refusal of our certificate (TLS 1.3 tells it after our handshake).
            (Some(alert), _) => super::tls::alert_text(peer, local, alert),
            // A TLS alert where the first frame should be: we run --insecure.
            (None, Some(mismatch)) => mismatch.to_string(),
            (None, None) if is_abrupt_end(&e) => {
                format!("{} disconnected abruptly (it stopped or crashed)", peer.name())
            }
            (None, None) => format!("connection to {} lost: {e:#}", peer.name()),
        };
        let why = loop {
            let len = tokio::select! {
                len = read_len(&mut reader, MAX_FRAME) => Some(len),
                _ = finished.wait_for(|&done| done) => None,
            };
            let len = match len {
                None => {
                    drain(&mut reader, self.timeout).await;
                    return;
                }
                Some(Ok(Some(len))) => len,
                Some(Ok(None)) => break format!("{} closed the connection", peer.name()),
                Some(Err(e)) => break lost(e),
            };
            match self.make_room(local, peer, len as u64, &mut finished).await {
                Ok(()) => {}
                Err(Some(why)) => break why,
                Err(None) => {
                    drain(&mut reader, self.timeout).await;
                    return;
                }
            }
            let frame = tokio::select! {
                frame = read_body(&mut reader, len) => Some(frame),
                _ = finished.wait_for(|&done| done) => None,
            };
            let Some(frame) = frame else {
                drain(&mut reader, self.timeout).await;
                return;
            };
            // The frame's reservation becomes what it leaves in the mailbox.
            self.lock().release((local, peer), len as u64);
            match frame {
                Ok(Frame::Ping) => {}
                Ok(Frame::Message { key, payload }) => {
                    if key.session != self.session {
                        break format!("{} sent a message of another session", peer.name());
                    }
                    let mut state = self.lock();
                    let bytes = payload.len() as u64;
                    if state.messages.insert((peer, local, key), payload).is_some() {
                        break format!("{} sent message {key:?} twice", peer.name());
                    }
                    state.hold((local, peer), bytes);
                    drop(state);
                    self.changed.notify_all();
                }
                Ok(Frame::Control(json)) => {
                    let mut state = self.lock();
                    state.hold((local, peer), json.len() as u64);
                    state.controls.entry((peer, local)).or_default().push(json);
                    drop(state);
                    self.changed.notify_all();
                }
                Ok(Frame::Abort(reason)) => {
                    self.stop(format!("{} stopped: {reason}", peer.name()));
                    return;
                }
                Err(e) => break lost(e),
            }
        };
        self.connection_ended(local, peer, why);
    }

    /// Reserve room for a frame of `len` bytes from `peer` in the connection's
    /// share of the buffer, waiting (not reading) until the party has taken
    /// enough of what is buffered. `Err(None)` when the session ends first;
    /// `Err(Some(why))` for a frame that could never fit.
    async fn make_room(
        &self,
        local: Party,
        peer: Party,
        len: u64,
        finished: &mut watch::Receiver<bool>,
    ) -> std::result::Result<(), Option<String>> {
        let share = self.limits.share();
        if len > share {
            return Err(Some(format!(
                "{} sent a frame of {}, over the {} each connection may buffer (a quarter of \
                 --max-session-buffer {})",
                peer.name(),
                size(len),
                size(share),
                size(self.limits.max_buffer)
            )));
        }
        loop {
            // Made before looking, so that a take in between still wakes it.
            let taken = self.room.notified();
            {
                let mut state = self.lock();
                let held = state.buffered.get(&(local, peer)).copied().unwrap_or(0);
                // `len` is the peer's, but at most `share` (refused above).
                if held.saturating_add(len) <= share {
                    state.hold((local, peer), len);
                    state.paused.remove(&(local, peer));
                    return Ok(());
                }
                state.paused.insert((local, peer), len);
            }
            // A receive waiting on this connection now knows it waits in vain.
            self.changed.notify_all();
            tokio::select! {
                _ = taken => {}
                _ = finished.wait_for(|&done| done) => return Err(None),
            }
        }
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
        let json = self.wait_for(local, peer, after(Instant::now(), timeout), timed_out, |state| {
            let json = state.controls.get_mut(&(peer, local)).filter(|q| !q.is_empty()).map(|q| q.remove(0))?;
            state.release((local, peer), json.len() as u64);
            Some(json)
        })?;
        self.room.notify_waiters();
        Ok(json)
    }

    fn send_frame(&self, local: Party, peer: Party, frame: Frame) -> Result<()> {
        // A peer that dials us may not have connected yet: wait for it, as
        // long as it may take to join.
        let deadline = after(Instant::now(), self.timeout).max(after(self.created, self.limits.join_timeout));
        let timed_out = || {
            let join = self.limits.join_timeout;
            format!("{} did not connect to {} within {join:?} (--join-timeout)", peer.name(), local.name())
        };
        let tx =
            self.wait_for(local, peer, deadline, timed_out, |state| state.outgoing.get(&(local, peer)).cloned())?;
        if let Frame::Message { payload, .. } = &frame {
            // The sender's side of backpressure: a peer that does not read
            // (its share of our messages is full) makes the sending party
            // wait, rather than its queue grow without bound (the crypto
            // producer deals a whole session ahead). A peer that is gone or
            // stopped fails the wait at once; a live one may take its time.
            let (bytes, share) = (payload.len() as u64, self.limits.share());
            let timed_out = || format!("{} has not read what {} sent for {MAX_WAIT:?}", peer.name(), local.name());
            self.wait_for(local, peer, after(Instant::now(), MAX_WAIT), timed_out, |state| {
                let queued = state.queued.entry((local, peer)).or_default();
                (*queued < share).then(|| *queued = queued.saturating_add(bytes))
            })?;
        }
        tx.send(frame).map_err(|_| Error::party(peer.name(), format!("connection to {} lost", peer.name())))
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
                return Err(Error::party(peer.name(), why.clone()));
            }
            if let Some(reason) = &state.aborted {
                return Err(Aborted(reason.clone()).into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::party(peer.name(), timed_out()));
            }
            state = self
                .changed
                .wait_timeout(state, deadline.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
    let start = tokio::time::Instant::now();
    while let Ok(Ok(Some(_))) =
        tokio::time::timeout(deadline.min(MAX_WAIT.saturating_sub(start.elapsed())), read_frame(reader, MAX_FRAME))
            .await
    {}
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
                state.release((to, from), payload.len() as u64);
                drop(state);
                self.room.notify_waiters();
                return Ok(payload);
            }
            if let Some(reason) = &state.aborted {
                return Err(Aborted(reason.clone()).into());
            }
            if let Some(why) = state.closed.get(&(to, from)) {
                return Err(Error::party(
                    from.name(),
                    format!("{} waits for {key:?} from {}, but {why}", to.name(), from.name()),
                ));
            }
            // Paused, and still without room now that this party has taken
            // what it asked for (the reader may not have woken up yet).
            let held = state.buffered.get(&(to, from)).copied().unwrap_or(0);
            if state.paused.get(&(to, from)).is_some_and(|&next| held.saturating_add(next) > self.limits.share()) {
                return Err(Error::party(
                    from.name(),
                    format!(
                        "{} waits for {key:?} from {}, which sent {} of messages {} has not asked for: over the \
                         {} each connection may buffer (a quarter of --max-session-buffer {}), so the message \
                         cannot be read behind them",
                        to.name(),
                        from.name(),
                        size(held),
                        to.name(),
                        size(self.limits.share()),
                        size(self.limits.max_buffer)
                    ),
                ));
            }
            let now = Instant::now();
            // A peer that has not connected yet is late, not silent.
            let Some(heard) = state.heard.get(&(to, from)).copied() else {
                if let Some(why) = state.starter.and_then(|c| state.closed.get(&c)) {
                    return Err(Error::party(
                        from.name(),
                        format!("{} waits for {} to join, but {why}", to.name(), from.name()),
                    ));
                }
                let join = after(self.created, self.limits.join_timeout);
                if now >= join {
                    return Err(Error::party(
                        from.name(),
                        format!(
                            "{} has not joined {}'s session within {:?} (--join-timeout)",
                            from.name(),
                            to.name(),
                            self.limits.join_timeout
                        ),
                    ));
                }
                state = self
                    .changed
                    .wait_timeout(state, join.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            };
            let heard = heard.max(start);
            if now.duration_since(heard) >= timeout {
                return Err(Error::party(
                    from.name(),
                    format!(
                        "{} has sent nothing to {} for {timeout:?} (it, or the network to it, hangs)",
                        from.name(),
                        to.name()
                    ),
                ));
            }
            if now.duration_since(start) >= MAX_WAIT {
                return Err(Error::party(
                    from.name(),
                    format!("{} waited {MAX_WAIT:?} for message {key:?} from {} in vain", to.name(), from.name()),
                ));
            }
            // Both are positive: the checks above have just passed.
            let wake = timeout
                .saturating_sub(now.duration_since(heard))
                .min(MAX_WAIT.saturating_sub(now.duration_since(start)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u32) -> MsgKey {
        MsgKey { session: 7, seq: 1, step: 2, tag }
    }

    /// A runtime, and `link`'s connection from `peer` to server1 over an
    /// in-memory pipe whose other end the test writes frames into.
    fn connect(link: &Arc<Link>, peer: Party) -> (tokio::runtime::Runtime, tokio::io::DuplexStream) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let _guard = rt.enter();
        link.attach(Party::Server1, peer, Box::new(ours)).unwrap();
        (rt, theirs)
    }

    /// Item 7: a peer flooding messages no receive asks for filled the mailbox
    /// without limit. Its reader now stops at the connection's share, and the
    /// receive waiting behind the flood fails at once, naming the limit.
    #[test]
    fn a_flood_under_unused_tags_stops_its_reader_and_the_receive_behind_it_names_the_limit() {
        let limits = Limits { max_buffer: 4 << 20, join_timeout: DEFAULT_JOIN_TIMEOUT };
        let link = Link::with_limits(7, Duration::from_secs(10), limits);
        let (rt, mut theirs) = connect(&link, Party::Client);
        rt.spawn(async move {
            for tag in 100..200 {
                let frame = Frame::Message { key: key(tag), payload: vec![1; 100_000] };
                if write_frame(&mut theirs, &frame).await.is_err() {
                    return;
                }
            }
            // Kept open: the flood stops, the peer is not gone.
            std::future::pending::<()>().await;
        });
        let start = Instant::now();
        let e = link.recv(Party::Server1, Party::Client, key(1), Duration::from_secs(10)).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(5), "{e}");
        assert!(e.contains("server1 waits for") && e.contains("from client"), "{e}");
        assert!(e.contains("--max-session-buffer 4 MiB") && e.contains("1 MiB each connection"), "{e}");
        let state = link.lock();
        assert!(state.total <= 1 << 20, "{} bytes buffered", state.total);
    }

    /// Honest peers run ahead (the crypto producer deals a whole session
    /// without waiting): a connection over its share is only throttled, and
    /// every message still arrives, in order.
    #[test]
    fn a_peer_far_ahead_is_throttled_not_refused() {
        let limits = Limits { max_buffer: 4 << 20, join_timeout: DEFAULT_JOIN_TIMEOUT };
        let link = Link::with_limits(7, Duration::from_secs(10), limits);
        let (rt, mut theirs) = connect(&link, Party::Dealer);
        rt.spawn(async move {
            for tag in 0..100 {
                let frame = Frame::Message { key: key(tag), payload: vec![tag as u8; 100_000] };
                write_frame(&mut theirs, &frame).await.unwrap();
            }
            std::future::pending::<()>().await;
        });
        std::thread::sleep(Duration::from_millis(200));
        for tag in 0..100 {
            let payload = link.recv(Party::Server1, Party::Dealer, key(tag), Duration::from_secs(10)).unwrap();
            assert_eq!(payload, vec![tag as u8; 100_000]);
            assert!(link.lock().total <= 1 << 20);
        }
        assert!(link.peak_buffered() <= 1 << 20, "{}", link.peak_buffered());
    }

    /// A frame over the connection's share could never be buffered: it is
    /// refused at its length, before its bytes, naming the limit.
    #[test]
    fn a_frame_over_the_share_is_refused_at_its_length() {
        let limits = Limits { max_buffer: 4 << 20, join_timeout: DEFAULT_JOIN_TIMEOUT };
        let link = Link::with_limits(7, Duration::from_secs(10), limits);
        let (rt, mut theirs) = connect(&link, Party::Server0);
        rt.spawn(async move {
            use tokio::io::AsyncWriteExt;
            theirs.write_all(&(2u32 << 20).to_le_bytes()).await.unwrap();
            std::future::pending::<()>().await;
        });
        let e = link.recv(Party::Server1, Party::Server0, key(1), Duration::from_secs(10)).unwrap_err().to_string();
        assert!(e.contains("server0 sent a frame of 2 MiB, over the 1 MiB each connection may buffer"), "{e}");
    }

    /// Item 8: a receive from a peer that had not connected yet counted as
    /// silence ("crypto-producer has sent nothing to server1 for 10s" while it
    /// was only late to join). The deadline now starts when the peer connects;
    /// before, the join deadline applies.
    #[test]
    fn a_peer_that_connects_late_is_not_silent() {
        let link = Link::new(7, Duration::from_millis(200));
        let late = Arc::clone(&link);
        let joiner = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            let (rt, mut theirs) = connect(&late, Party::Dealer);
            rt.block_on(async {
                let frame = Frame::Message { key: key(1), payload: vec![5; 3] };
                write_frame(&mut theirs, &frame).await.unwrap();
                tokio::io::AsyncWriteExt::flush(&mut theirs).await.unwrap();
            });
            (rt, theirs)
        });
        let got = link.recv(Party::Server1, Party::Dealer, key(1), Duration::from_millis(200));
        assert_eq!(got.unwrap(), vec![5; 3]);
        let _keep = joiner.join().unwrap();
        // Once connected, silence counts: nothing more comes.
        let e = link.recv(Party::Server1, Party::Dealer, key(2), Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("crypto-producer has sent nothing to server1"), "{e}");
    }

    #[test]
    fn a_peer_that_never_joins_fails_at_the_join_deadline() {
        let limits = Limits { max_buffer: DEFAULT_MAX_BUFFER, join_timeout: Duration::from_millis(300) };
        let link = Link::with_limits(7, Duration::from_millis(100), limits);
        let start = Instant::now();
        let e = link.recv(Party::Server1, Party::ModelOwner, key(1), Duration::from_millis(100)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(e.to_string().contains("model-owner has not joined server1's session within 300ms (--join-timeout)"));
    }

    /// The driver gave up on a session (here: its connection closed) before a
    /// peer joined: the receive waiting for that peer fails at once, instead of
    /// holding the session for the join deadline.
    #[test]
    fn a_peer_not_joined_is_not_awaited_once_the_starter_is_gone() {
        let link = Link::new(7, Duration::from_secs(10));
        let (_rt, theirs) = connect(&link, Party::Client);
        link.started_by(Party::Server1, Party::Client);
        drop(theirs);
        let start = Instant::now();
        let e = link.recv(Party::Server1, Party::Dealer, key(1), Duration::from_secs(10)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("server1 waits for crypto-producer to join, but client closed"), "{e}");
    }

    /// A receive that fails is the peer's failure: a structured party error
    /// naming the peer at fault (not the waiting party), which the driver
    /// exits 5 with, and whose text is the one the transport always gave.
    #[test]
    fn a_failed_receive_is_a_party_error_naming_the_peer_at_fault() {
        let party_of = |e: &anyhow::Error| match e.downcast_ref::<Error>() {
            Some(Error::Party { party, .. }) => Some(party.clone()),
            _ => None,
        };
        let limits = Limits { max_buffer: DEFAULT_MAX_BUFFER, join_timeout: Duration::from_millis(100) };
        let link = Link::with_limits(7, Duration::from_millis(100), limits);
        let e = link.recv(Party::Server1, Party::ModelOwner, key(1), Duration::from_millis(100)).unwrap_err();
        assert_eq!(party_of(&e).as_deref(), Some("model-owner"), "{e}");
        assert!(e.to_string().starts_with("model-owner has not joined server1's session"), "{e}");
        assert_eq!(crate::error::exit_code_of(&e, false), crate::error::exit::PARTY);

        let link = Link::new(7, Duration::from_secs(10));
        let (_rt, theirs) = connect(&link, Party::Client);
        drop(theirs);
        let e = link.recv(Party::Server1, Party::Client, key(1), Duration::from_secs(10)).unwrap_err();
        assert_eq!(party_of(&e).as_deref(), Some("client"), "{e}");
        assert!(e.to_string().starts_with("server1 waits for"), "{e}");
        let e = link.send(Party::Server1, Party::Client, key(2), vec![1]).unwrap_err();
        assert_eq!(party_of(&e).as_deref(), Some("client"), "{e}");
        assert!(e.to_string().contains("client closed the connection"), "{e}");
    }

    /// A peer that does not read makes the sender wait once a share of
    /// messages is queued for it, instead of the queue growing without bound;
    /// when it reads again, every message goes through.
    #[test]
    fn a_sender_waits_for_a_peer_that_does_not_read() {
        let limits = Limits { max_buffer: 4 << 20, join_timeout: DEFAULT_JOIN_TIMEOUT };
        let link = Link::with_limits(7, Duration::from_secs(10), limits);
        let (rt, mut theirs) = connect(&link, Party::Server0);
        let sender = Arc::clone(&link);
        let sending = std::thread::spawn(move || {
            for tag in 0..50 {
                sender.send(Party::Server1, Party::Server0, key(tag), vec![9; 100_000]).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(!sending.is_finished(), "all 5 MB were queued for a peer that reads nothing");
        let queued = link.lock().queued.get(&(Party::Server1, Party::Server0)).copied().unwrap_or(0);
        assert!(queued <= (1 << 20) + 100_000, "{queued} bytes queued");
        let read = rt.spawn(async move {
            let mut got = 0;
            while got < 50 {
                if let Frame::Message { .. } = read_frame(&mut theirs, MAX_FRAME).await.unwrap().unwrap() {
                    got += 1;
                }
            }
            theirs
        });
        sending.join().unwrap();
        let _theirs = rt.block_on(read).unwrap();
    }
}
