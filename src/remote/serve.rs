//! `tfe-run serve`: one party (server0, server1 or the crypto producer) serving
//! sessions until it is stopped.
//!
//! Each connection is handled in its own task and each session's program in its
//! own thread, so a connection that sends garbage, a session that fails or a peer
//! that hangs costs only that connection or session. The log (stderr) names
//! parties, sessions and causes; it never holds a share, a seed or a key.
//!
//! What others can make a server hold is bounded: at most `--max-sessions`
//! sessions at once, at most `--max-handshakes` connections that have not yet
//! sent a valid hello, each for at most `--handshake-timeout`, and per session
//! the bytes of early messages ([`Limits`]).
//!
//! Operators see it through its log ([`super::log`]), its metrics and health
//! endpoint (`--metrics`, [`super::metrics`]) and `tfe-run status`. SIGTERM or
//! SIGINT drains it: new sessions are refused, the running ones go on until
//! they end or `--drain-timeout` passes, then it exits; a second signal stops
//! it at once.

// Parses bytes from others: nothing here may panic on what they send.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{Instrument as _, error, info, warn};

use super::metrics::{LimitValues, Metrics, Observed, Snapshot};
use super::standby;
use super::{
    Control, Deployment, HeldDataset, HeldModel, PartyStatus, Peer, Request, Security, SessionId, StatusLimits,
    Version, accept, check_program, commit_key, dial,
};
use crate::cluster::Cluster;
use crate::lower::Program;
use crate::runtime::party::{self, Report, WeightShares, Weights};
use crate::train::secure::{self, HeldShares};
use crate::train::{DatasetInfo, TrainSpec};
use crate::transport::network::{Limits, Link, Stream};
use crate::transport::tls::Identity;
use crate::transport::{Party, Transport};

pub struct ServeOptions {
    pub party: Party,
    /// Where to listen (default: the party's address in the cluster file).
    pub listen: Option<String>,
    pub timeout: Duration,
    pub security: Security,
    /// Refuse sessions whose estimated peak memory exceeds this many bytes.
    pub max_memory: u64,
    /// Refuse a session while this many are running (`--max-sessions`).
    pub max_sessions: usize,
    /// Connections that may wait for their TLS handshake and hello at once
    /// (`--max-handshakes`).
    pub max_handshakes: usize,
    /// How long a connection may take to finish its TLS handshake and say hello.
    pub handshake_timeout: Duration,
    /// Per session: early messages, and how long peers may take to join.
    pub limits: Limits,
    /// Serve `GET /metrics` and `GET /healthz` here (`--metrics`).
    pub metrics: Option<String>,
    /// After SIGTERM or SIGINT, how long running sessions may take to end.
    pub drain_timeout: Duration,
}

/// The defaults of the limits' flags.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
pub const DEFAULT_MAX_HANDSHAKES: usize = 128;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A model deployed to this server: its secure program and this server's weight
/// shares, as one deployment (a session pins the `Arc`, so a redeploy during it
/// changes nothing it sees).
struct Deployed {
    program: Arc<Program>,
    shares: Arc<WeightShares>,
    deployment: Deployment,
    /// The principal that deployed it: the only one that may replace it.
    owner: String,
}

/// A data set contributed for training: this server's shares, the principal
/// that contributed them (the only one that may replace them) and the
/// model-owner principals that may train on them.
struct Held {
    shares: Arc<HeldShares>,
    contributor: String,
    trainers: Vec<String>,
}

/// What a server keeps under a name for later sessions, and who put it there.
trait Owned {
    const KIND: Kind;
    /// The principal that put it there: the only one that may replace it.
    fn owner(&self) -> &str;
}

impl Owned for Deployed {
    const KIND: Kind = Kind::Model;
    fn owner(&self) -> &str {
        &self.owner
    }
}

impl Owned for Held {
    const KIND: Kind = Kind::DataSet;
    fn owner(&self) -> &str {
        &self.contributor
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Model,
    DataSet,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::DataSet => "data set",
        }
    }

    /// What its owner did, the command that does it again, and what the log
    /// says of a new one.
    fn verbs(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Model => ("deployed", "redeploy", "deployed"),
            Kind::DataSet => ("contributed", "contribute", "held"),
        }
    }
}

type Registry<T> = Mutex<HashMap<String, Arc<T>>>;

struct State {
    me: Party,
    cluster: Cluster,
    identity: Option<Identity>,
    timeout: Duration,
    max_memory: u64,
    max_sessions: usize,
    handshake_timeout: Duration,
    limits: Limits,
    handshakes: Handshakes,
    /// Refused connections are logged at most this often one by one.
    refusals: Mutex<LogLimit>,
    sessions: Mutex<HashMap<u64, Arc<Link>>>,
    /// Joins that arrived before the session they join was started here (the
    /// driver starts the parties at once, so server0's dial may overtake the
    /// client's hello to server1), each waiting for the session's link. Taken
    /// under the `sessions` lock, so a session is never started between a
    /// join's look-up and its wait.
    early: Mutex<EarlyJoins>,
    models: Registry<Deployed>,
    /// Data sets contributed for training.
    datasets: Registry<Held>,
    /// The names with a deployment under way here ([`Claim`]).
    deploying: Arc<Mutex<HashSet<String>>>,
    /// Set by the first SIGTERM or SIGINT: new sessions are refused.
    draining: AtomicBool,
    metrics: Metrics,
    /// Connections this party keeps open to the servers it joins.
    kept: Arc<standby::Kept>,
    /// Standby connections of the parties that join this one's sessions.
    parked: standby::Parked,
    /// The party's span ([`super::log::party_span`]), parent of every session's.
    span: tracing::Span,
}

/// Joins waiting for their session to start here ([`State::early`]).
#[derive(Default)]
struct EarlyJoins {
    by_session: HashMap<u64, Vec<tokio::sync::oneshot::Sender<Arc<Link>>>>,
}

impl EarlyJoins {
    fn waiting(&self) -> usize {
        self.by_session.values().map(Vec::len).sum()
    }

    /// Wait for `session`'s link, unless `limit` joins wait already.
    fn wait(&mut self, session: u64, limit: usize) -> Result<tokio::sync::oneshot::Receiver<Arc<Link>>> {
        if self.waiting() >= limit {
            bail!("{limit} joins already wait for sessions not started here (4 × --max-sessions)");
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.by_session.entry(session).or_default().push(tx);
        Ok(rx)
    }

    /// `session` has started: hand its link to the joins waiting for it.
    fn started(&mut self, session: u64, link: &Arc<Link>) {
        for tx in self.by_session.remove(&session).unwrap_or_default() {
            let _ = tx.send(Arc::clone(link));
        }
    }

    /// Drop the waits of `session` that gave up.
    fn forget(&mut self, session: u64) {
        if let Some(waits) = self.by_session.get_mut(&session) {
            waits.retain(|tx| !tx.is_closed());
            if waits.is_empty() {
                self.by_session.remove(&session);
            }
        }
    }
}

/// A name being deployed on this server, until the deployment commits or fails.
/// Two deployments of one name at once could commit in one order on server0 and
/// in the other on server1; with one claim per name per server (both taken, in
/// the same order, server1 first, before any share moves), at most one of them
/// is prepared on both servers, and only that one commits.
struct Claim {
    names: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Claim {
    fn take(names: &Arc<Mutex<HashSet<String>>>, name: &str) -> Result<Claim> {
        if !names.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string()) {
            bail!("another deployment of model `{name}` is under way here: try again when it has ended");
        }
        Ok(Claim { names: Arc::clone(names), name: name.to_string() })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

/// Serve until a signal drains the party (then `Ok`, or an error if sessions
/// had to be cut). `on_listening` is told the bound address.
pub fn serve(cluster: Cluster, options: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let me = options.party;
    let identity = options.security.identity(me)?;
    let (listen, from_config) = match options.listen {
        Some(a) => (a, false),
        None => (cluster.address(me)?.to_string(), true),
    };
    let span = super::log::party_span(me);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = async move {
        // Before any session: a signal that arrives from now on drains.
        let mut signals = Signals::new()?;
        let listener =
            TcpListener::bind(&listen).await.map_err(|e| cannot_listen(me, &listen, from_config, &cluster, e))?;
        let limits = LimitValues {
            max_sessions: options.max_sessions,
            max_handshakes: options.max_handshakes,
            max_session_buffer: options.limits.max_buffer,
            max_memory: options.max_memory,
        };
        // Set-up, not silence: as long as an incoming handshake may take.
        let dial_deadline = options.timeout.max(options.handshake_timeout);
        let addresses = standby::peers_of(me)
            .iter()
            .map(|&peer| Ok((peer, cluster.address(peer)?.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let kept = standby::Kept::start(me, identity.clone(), addresses, dial_deadline);
        let state = Arc::new(State {
            me,
            cluster,
            identity,
            timeout: options.timeout,
            max_memory: options.max_memory,
            max_sessions: options.max_sessions,
            handshake_timeout: options.handshake_timeout,
            limits: options.limits,
            handshakes: Handshakes::new(options.max_handshakes),
            refusals: Mutex::new(LogLimit::default()),
            sessions: Mutex::new(HashMap::new()),
            early: Mutex::new(EarlyJoins::default()),
            models: Mutex::new(HashMap::new()),
            datasets: Mutex::new(HashMap::new()),
            deploying: Arc::new(Mutex::new(HashSet::new())),
            draining: AtomicBool::new(false),
            metrics: Metrics::new(me, &limits),
            kept,
            parked: standby::Parked::new(me),
            span: tracing::Span::current(),
        });
        if let Some(address) = &options.metrics {
            let endpoint = TcpListener::bind(address)
                .await
                .with_context(|| format!("{} cannot serve its metrics on {address} (--metrics)", me.name()))?;
            info!("metrics on http://{}/metrics, health on /healthz", endpoint.local_addr()?);
            let observed: Arc<dyn Observed> = Arc::clone(&state) as Arc<dyn Observed>;
            tokio::spawn(super::metrics::serve_endpoint(endpoint, observed).instrument(tracing::Span::current()));
        }
        info!("{}", state.holdings("holds"));
        on_listening(listener.local_addr()?);
        let stop = loop {
            tokio::select! {
                accepted = listener.accept() => Arc::clone(&state).accepted(accepted).await,
                stop = signals.next() => break stop,
            }
        };
        state.drain(&listener, stop, &mut signals, options.drain_timeout).await
    };
    runtime.block_on(served.instrument(span))
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        let listen = |kind| signal(kind).context("cannot listen for SIGTERM and SIGINT");
        Ok(Signals { terminate: listen(SignalKind::terminate())?, interrupt: listen(SignalKind::interrupt())? })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Why `me` cannot listen on `listen`, and what to do: a busy port is the
/// usual case (another `tfe-run serve` still running).
fn cannot_listen(me: Party, listen: &str, from_config: bool, cluster: &Cluster, e: std::io::Error) -> anyhow::Error {
    let origin = if from_config {
        format!(" ({}'s address in `{}`)", me.name(), cluster.source.display())
    } else {
        " (--listen)".to_string()
    };
    let what = format!("{} cannot listen on {listen}{origin}", me.name());
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{what}: port {} is in use, perhaps by another `tfe-run serve`: stop it, or listen on another port \
             with --listen HOST:PORT (and give the other parties that address in their cluster config)",
            listen.rsplit_once(':').map_or(listen, |(_, port)| port)
        ),
        _ => anyhow::Error::new(e).context(what),
    }
}

/// What a session is for, as the metrics label it.
fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Predict { .. } | Request::PredictDeployed { .. } => "predict",
        Request::Deploy { .. } => "deploy",
        Request::Describe { .. } => "describe",
        Request::Train { .. } => "train",
        Request::Contribute { .. } => "contribute",
        Request::DescribeData { .. } => "describe_data",
        Request::Status => "status",
        Request::Standby => "standby",
    }
}

impl State {
    /// A connection accepted (or not) on the parties' listener.
    async fn accepted(self: Arc<Self>, accepted: std::io::Result<(TcpStream, SocketAddr)>) {
        match accepted {
            Ok((tcp, addr)) => {
                let span = self.span.clone();
                tokio::spawn(self.handle(tcp, addr).instrument(span));
            }
            Err(e) => {
                // Out of file descriptors and the like: free the one held
                // longest by a connection still in its handshake, so that
                // idle connections cannot lock sessions out; do not spin.
                let freed = self.handshakes.close_oldest();
                self.refused(format!("accept failed: {e}{}", if freed { "; closed the oldest handshake" } else { "" }));
                tokio::time::sleep(Duration::from_millis(if freed { 10 } else { 100 })).await;
            }
        }
    }

    /// After the first signal: refuse new sessions, keep serving the running
    /// ones (their peers may still connect) until they have ended, at most for
    /// `timeout`; a second signal stops at once.
    async fn drain(
        self: &Arc<Self>,
        listener: &TcpListener,
        stop: &str,
        signals: &mut Signals,
        timeout: Duration,
    ) -> Result<()> {
        self.draining.store(true, Ordering::SeqCst);
        let running: Vec<Weak<Link>> = self.running().iter().map(Arc::downgrade).collect();
        info!(
            "{stop}: draining: {} session(s) running, new sessions are refused; stopping when they have ended, \
             within --drain-timeout {timeout:?} (a second signal stops at once)",
            running.len()
        );
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                accepted = listener.accept() => Arc::clone(self).accepted(accepted).await,
                again = signals.next() => {
                    let cut = self.cut(&format!("{again} while draining"));
                    bail!("{}: stopped at once by a second signal ({again}), cutting {cut} running session(s)", self.me.name());
                }
                _ = &mut deadline => {
                    let cut = self.cut("--drain-timeout passed");
                    if cut == 0 {
                        info!("drained: every session has ended (some connections were still closing); {}", self.holdings("stops; it held"));
                        return Ok(());
                    }
                    bail!("{}: --drain-timeout {timeout:?} passed with {cut} session(s) running: they were cut", self.me.name());
                }
                _ = tick.tick() => {
                    // Over once every session has left the table and its last
                    // connection has flushed and closed.
                    if self.running().is_empty() && running.iter().all(|l| l.strong_count() == 0) {
                        info!("drained: every session has ended; {}", self.holdings("stops; it held"));
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The running sessions' links.
    fn running(&self) -> Vec<Arc<Link>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Abort every running session, telling its peers why; how many there were.
    fn cut(&self, why: &str) -> usize {
        let running = self.running();
        for link in &running {
            link.abort(format!("{} stopped: {why}", self.me.name()));
        }
        if !running.is_empty() {
            error!("{why}: cutting {} running session(s)", running.len());
        }
        running.len()
    }

    /// What the party holds, for the log: "`verb` 1 model(s): `m` (deployment …); no data sets".
    fn holdings(&self, verb: &str) -> String {
        let status = self.status();
        let models = match status.models.len() {
            0 => "no models".to_string(),
            n => format!(
                "{n} model(s): {}",
                (status.models.iter())
                    .map(|m| format!("`{}` (deployment {})", m.name, m.deployment))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let datasets = match status.datasets.len() {
            0 => "no data sets".to_string(),
            n => format!(
                "{n} data set(s): {}",
                (status.datasets.iter())
                    .map(|d| format!("`{}` ({} rows)", d.name, d.rows))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!("{verb} {models} and {datasets}")
    }

    /// This party's answer to `tfe-run status`.
    fn status(&self) -> PartyStatus {
        let mut models: Vec<HeldModel> = (self.models.lock().unwrap_or_else(|e| e.into_inner()).iter())
            .map(|(name, m)| HeldModel { name: name.clone(), deployment: m.deployment.clone() })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        let mut datasets: Vec<HeldDataset> = (self.datasets.lock().unwrap_or_else(|e| e.into_inner()).iter())
            .map(|(name, d)| HeldDataset {
                name: name.clone(),
                rows: d.shares.info.rows as u64,
                features: d.shares.info.features as u64,
            })
            .collect();
        datasets.sort_by(|a, b| a.name.cmp(&b.name));
        PartyStatus {
            party: self.me,
            version: Version::current(),
            commit: env!("TFE_RUN_COMMIT").to_string(),
            draining: self.draining.load(Ordering::SeqCst),
            sessions: self.sessions.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            tls: self.identity.is_some(),
            limits: StatusLimits {
                max_sessions: self.max_sessions as u64,
                max_handshakes: self.handshakes.limit as u64,
                max_memory: self.max_memory,
                max_session_buffer: self.limits.max_buffer,
                timeout: self.timeout.as_secs_f64(),
                handshake_timeout: self.handshake_timeout.as_secs_f64(),
                join_timeout: self.limits.join_timeout.as_secs_f64(),
            },
            models,
            datasets,
        }
    }

    /// Log a refused connection, at most [`LogLimit::LINES`] a second one by
    /// one: a flood of connections must not flood the log.
    fn refused(&self, line: String) {
        self.metrics.connection_refused();
        let mut limit = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(summary) = limit.admit(Instant::now()) {
            warn!("{summary}");
        }
        if limit.logged <= LogLimit::LINES {
            warn!("{line}");
        }
    }

    async fn handle(self: Arc<Self>, tcp: TcpStream, addr: SocketAddr) {
        let (ticket, closed) = self.handshakes.enter();
        let deadline = self.handshake_timeout;
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(deadline, accept(self.identity.as_ref(), tcp, deadline)) => {
                accepted.unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("no TLS handshake and hello within {deadline:?} (--handshake-timeout)"))
                })
            }
            why = closed => Err(anyhow::anyhow!(
                "closed before its hello to make room for a newer connection: {}",
                why.unwrap_or_else(|_| "the server stops".into())
            )),
        };
        self.handshakes.leave(ticket);
        let (stream, peer, session, request) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if e.downcast_ref::<super::ClosedUnused>().is_some() => {
                tracing::debug!("connection from {addr} {e}");
                return;
            }
            Err(e) => {
                self.refused(format!("connection from {addr} refused: {e:#}"));
                return;
            }
        };
        let from = peer.party;
        let kind = request.as_ref().map_or("join", request_kind);
        let span = super::log::session_span(&self.span, session);
        let outcome = match request {
            Some(Request::Standby) => return self.park(stream, from, session).await,
            Some(request) => self.clone().start(stream, peer, session, request).instrument(span.clone()).await,
            None => self.join(stream, from, session).await,
        };
        if let Err(refusal) = outcome {
            self.refuse(session, from, kind, refusal).await;
        }
    }

    /// Tell `from` why its `kind` of `session` was refused, if it can still hear.
    async fn refuse(&self, session: u64, from: Party, kind: &str, (stream, e): Refusal) {
        let span = super::log::session_span(&self.span, session);
        span.in_scope(|| warn!("{}: {} refused: {e:#}", SessionId(session), from.name()));
        self.metrics.refused(kind, &e);
        if let Some(mut stream) = stream {
            let stale = e.downcast_ref::<super::Stale>().is_some();
            super::refuse_on(&mut stream, format!("{}: {e:#}", self.me.name()), stale).await;
        }
    }

    /// A standby connection from `from`: parked until it joins a session. One
    /// that ends unused (renewed by its dialler, idle too long) is no refusal.
    async fn park(&self, mut stream: Box<dyn Stream>, from: Party, hello: u64) {
        if !self.parked.admits(from) {
            let e = anyhow::anyhow!("{} keeps no standby connection to {}", from.name(), self.me.name());
            return self.refuse(hello, from, "standby", (Some(stream), e)).await;
        }
        match self.parked.wait_for_join(&mut stream, from).await {
            Ok(session) => {
                if let Err(refusal) = self.join(stream, from, session).await {
                    self.refuse(session, from, "join", refusal).await;
                }
            }
            Err(e) => tracing::debug!("a standby connection of {} ended: {e:#}", from.name()),
        }
    }

    /// A peer joins a session this server takes part in, or will within
    /// `--handshake-timeout`: the driver starts all parties at once, so a join
    /// may arrive before the hello that starts the session here.
    async fn join(&self, stream: Box<dyn Stream>, from: Party, session: u64) -> Result<(), Refusal> {
        let allowed = match self.me {
            Party::Server1 => [Party::Server0, Party::Dealer, Party::ModelOwner, Party::Client].contains(&from),
            Party::Server0 => [Party::Dealer, Party::ModelOwner, Party::Client].contains(&from),
            _ => false,
        };
        if !allowed {
            return Err((Some(stream), anyhow::anyhow!("{} does not dial {}", from.name(), self.me.name())));
        }
        let started = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.get(&session) {
                Some(link) => Ok(Arc::clone(link)),
                None => {
                    let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
                    // Each session has at most four joiners here (server0, the
                    // crypto producer, the model owner and the client).
                    match early.wait(session, self.max_sessions.saturating_mul(4)) {
                        Ok(waiting) => Err(waiting),
                        Err(e) => return Err((Some(stream), e)),
                    }
                }
            }
        };
        let link = match started {
            Ok(link) => Some(link),
            Err(waiting) => {
                let link = tokio::time::timeout(self.handshake_timeout, waiting).await.ok().and_then(Result::ok);
                if link.is_none() {
                    self.early.lock().unwrap_or_else(|e| e.into_inner()).forget(session);
                }
                link
            }
        };
        match link {
            Some(link) => link.attach(self.me, from, stream).map_err(|e| (None, e)),
            None => Err((
                Some(stream),
                anyhow::anyhow!("no {} here (not started within --handshake-timeout)", SessionId(session)),
            )),
        }
    }

    /// A connection to `peer` that has joined `session`: the standby one kept
    /// for it, else (none kept, or it broke) a new one.
    async fn join_peer(&self, peer: Party, session: u64) -> Result<Box<dyn Stream>> {
        if let Some(kept) = self.kept.take(peer).await {
            match super::join_on(kept, self.me, session).await {
                Ok(stream) => {
                    self.metrics.joined("standby");
                    return Ok(stream);
                }
                Err(e) => tracing::debug!("the standby connection to {} broke: {e:#}", peer.name()),
            }
        }
        let address = self.cluster.address(peer)?;
        // Set-up, not silence: as long as an incoming handshake may take.
        let deadline = self.timeout.max(self.handshake_timeout);
        let stream = dial(self.identity.as_ref(), self.me, peer, address, session, None, deadline).await?;
        self.metrics.joined("dialled");
        Ok(stream)
    }

    /// The driver starts a session: check the request, join the peers, answer
    /// ready, and run this party's program in its own thread.
    async fn start(
        self: Arc<Self>,
        stream: Box<dyn Stream>,
        peer: Peer,
        session: u64,
        request: Request,
    ) -> Result<(), Refusal> {
        let began = Instant::now();
        let Peer { party: from, principal } = peer;
        let starters: &[Party] = match &request {
            Request::Deploy { .. } | Request::Train { .. } => &[Party::ModelOwner],
            Request::DescribeData { .. } | Request::Status => &[Party::ModelOwner, Party::Client],
            _ => &[Party::Client],
        };
        if !starters.contains(&from) {
            let who = starters.iter().map(|p| p.name()).collect::<Vec<_>>().join(" or the ");
            return Err((Some(stream), anyhow::anyhow!("only the {who} starts {}", describe(&request))));
        }
        if let Request::Status = request {
            // Answered whatever runs here (draining, at --max-sessions): it
            // joins no peer and takes no place among the sessions.
            let link = Link::with_limits(session, self.timeout, self.limits);
            link.attach(self.me, from, stream).map_err(|e| (None, e))?;
            let status = Some(Box::new(self.status()));
            let ready =
                Control::Ready { version: Version::current(), deployed: None, deployment: None, dataset: None, status };
            let _ = link.send_control(self.me, from, ready.encode());
            link.finish();
            self.metrics.done("status", began.elapsed(), &Default::default());
            return Ok(());
        }
        if self.draining.load(Ordering::SeqCst) {
            let e =
                anyhow::anyhow!("{} is shutting down (draining its running sessions): try again later", self.me.name());
            return Err((Some(stream), e));
        }
        let prepared = match self.prepare(&request, &principal) {
            Ok(p) => p,
            Err(e) => return Err((Some(stream), e)),
        };
        let link = Link::with_limits(session, self.timeout, self.limits);
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.contains_key(&session) {
                return Err((Some(stream), anyhow::anyhow!("{} exists already", SessionId(session))));
            }
            if sessions.len() >= self.max_sessions {
                let (n, limit) = (sessions.len(), self.max_sessions);
                let e = anyhow::anyhow!("{n} session(s) are running here, the limit of --max-sessions {limit}");
                return Err((Some(stream), e));
            }
            sessions.insert(session, Arc::clone(&link));
            self.early.lock().unwrap_or_else(|e| e.into_inner()).started(session, &link);
        }
        if let Err(e) = link.attach(self.me, from, stream) {
            self.end(session, &link);
            return Err((None, e));
        }
        link.started_by(self.me, from);
        let peers = standby::peers_of(self.me);
        // Both peers at once: the crypto producer's two joins cost one
        // handshake's time, and none on a standby connection.
        let dials: Vec<_> = peers
            .iter()
            .map(|&peer| {
                let state = Arc::clone(&self);
                tokio::spawn(async move { state.join_peer(peer, session).await }.in_current_span())
            })
            .collect();
        for (&peer, dial) in peers.iter().zip(dials) {
            let dialled = dial.await.unwrap_or_else(|e| Err(anyhow::anyhow!("dialling {} failed: {e}", peer.name())));
            match dialled.and_then(|s| link.attach(self.me, peer, s)) {
                Ok(()) => {}
                Err(e) => {
                    let reason = Control::Refused { reason: format!("{}: {e:#}", self.me.name()), stale: false };
                    let _ = link.send_control(self.me, from, reason.encode());
                    warn!("{}: {e:#}", SessionId(session));
                    self.metrics.refused(request_kind(&request), &e);
                    self.end(session, &link);
                    return Ok(());
                }
            }
        }
        let (deployed, deployment) = match &prepared {
            Prepared::Predict { program, deployment: Some(d), .. } => {
                (Some(Box::new(Program::clone(program))), Some(d.clone()))
            }
            _ => (None, None),
        };
        let dataset = match &prepared {
            Prepared::Data(info) => Some(*info),
            _ => None,
        };
        let ready = Control::Ready { version: Version::current(), deployed, deployment, dataset, status: None };
        let _ = link.send_control(self.me, from, ready.encode());
        if matches!(request, Request::Describe { .. } | Request::DescribeData { .. }) {
            self.end(session, &link);
            self.metrics.done(request_kind(&request), began.elapsed(), &Default::default());
            return Ok(());
        }
        info!("{}: {} from {} `{principal}`", SessionId(session), describe(&request), from.name());

        let state = Arc::clone(&self);
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name(format!("{}-{session:016x}", self.me.name()))
            .spawn(move || {
                let _in_session = span.enter();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    state.run(&link, from, &principal, prepared, &request)
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{} hit an internal error", state.me.name())));
                let kind = request_kind(&request);
                match result {
                    Ok(report) => {
                        state.metrics.done(kind, began.elapsed(), &report.stats.traffic);
                        let _ = link.send_control(state.me, from, Control::Done { report: Box::new(report) }.encode());
                        let peak = link.peak_buffered() as f64 / 1e6;
                        info!("{}: done ({peak:.1} MB of messages buffered at most)", SessionId(session));
                    }
                    Err(e) => {
                        state.metrics.failed(kind, began.elapsed(), &e);
                        link.abort(format!("{}: {e:#}", state.me.name()));
                        error!("{}: failed: {e:#}", SessionId(session));
                    }
                }
                state.end(session, &link);
            })
            .map_err(|e| (None, e.into()))?;
        Ok(())
    }

    fn end(&self, session: u64, link: &Link) {
        link.finish();
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&session);
    }

    /// The checked secure program and the weights a request of `principal` runs with.
    fn prepare(&self, request: &Request, principal: &str) -> Result<Prepared> {
        let mut claim = None;
        let (program, weights, deployment) = match (request, self.me) {
            (Request::Contribute { .. } | Request::DescribeData { .. }, Party::Dealer) => {
                bail!("the crypto producer holds no data")
            }
            (Request::Train { spec }, _) => {
                spec.check()?;
                crate::runtime::check_memory(spec.estimate_memory(), self.max_memory, "this training session")?;
                let held = if self.me == Party::Dealer { Vec::new() } else { self.held_for(spec, principal)? };
                return Ok(Prepared::Train(Arc::new(spec.clone()), held));
            }
            (Request::Contribute { name, info, trainers, replace }, _) => {
                info.check()?;
                if trainers.is_empty() || trainers.len() > 64 || trainers.iter().any(|t| t.is_empty() || t.len() > 63) {
                    bail!("data set `{name}` must name 1 to 64 trainers (model-owner principals), each 1 to 63 bytes");
                }
                self.may_put(&self.datasets, name, principal, *replace)?;
                crate::runtime::check_memory(info.bytes(), self.max_memory, "this data set")?;
                return Ok(Prepared::Data(*info));
            }
            (Request::DescribeData { name }, _) => {
                let held = self.datasets.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
                let held = held.with_context(|| format!("no data set named `{name}` is held here"))?;
                return Ok(Prepared::Data(held.shares.info));
            }
            (Request::Status, _) => bail!("a status request is answered before any session"),
            (Request::Standby, _) => bail!("a standby connection starts no session"),
            (Request::Deploy { .. } | Request::PredictDeployed { .. } | Request::Describe { .. }, Party::Dealer) => {
                bail!("the crypto producer holds no models")
            }
            (Request::Predict { program, digest, .. }, _) => {
                check_program(program, digest)?;
                (Arc::new(Program::clone(program)), Weights::FromOwner, None)
            }
            (Request::Deploy { name, program, replace, digest }, _) => {
                check_program(program, digest)?;
                self.may_put(&self.models, name, principal, *replace)?;
                claim = Some(Claim::take(&self.deploying, name)?);
                (Arc::new(Program::clone(program)), Weights::FromOwner, None)
            }
            (Request::PredictDeployed { name, .. } | Request::Describe { name }, _) => {
                let model = self.models.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
                let model = model.with_context(|| format!("no model named `{name}` is deployed here"))?;
                if let Request::PredictDeployed { deployment: wanted, .. } = request
                    && *wanted != model.deployment
                {
                    return Err(super::Stale(self.mismatch(name, &model.deployment, wanted)).into());
                }
                let weights = Weights::Held(Arc::clone(&model.shares));
                (Arc::clone(&model.program), weights, Some(model.deployment.clone()))
            }
        };
        // The program is checked (or was, when deployed), and nothing is built
        // from it yet. The estimate is for all parties in one process: more than
        // one party needs.
        crate::runtime::check_memory(program.estimate_memory(), self.max_memory, "this session")?;
        Ok(Prepared::Predict { program, weights, deployment, claim })
    }

    /// Why a session for deployment `wanted` of `name` is refused here, where
    /// `ours` serves. The client asks server1 first, with the deployment server1
    /// described: so at server1 the model was redeployed since, and at server0
    /// the two servers hold different deployments.
    fn mismatch(&self, name: &str, ours: &Deployment, wanted: &Deployment) -> String {
        match self.me {
            Party::Server0 => format!(
                "model `{name}`: server0 holds deployment {ours}, server1 holds {wanted}; the servers hold \
                 different deployments of it (an interrupted redeploy): deploy it again"
            ),
            _ => format!(
                "model `{name}` was redeployed: {} now holds deployment {ours}, not {wanted}; try again",
                self.me.name()
            ),
        }
    }

    /// Without TLS no peer is authenticated: every peer is the principal
    /// `insecure`, so who deployed or contributed what cannot be told apart.
    fn insecure(&self) -> bool {
        self.identity.is_none()
    }

    /// May `principal` put something under `name` in `registry`? Only the
    /// principal that put what is there, and only when it says so (`replace`).
    fn may_put<T: Owned>(&self, registry: &Registry<T>, name: &str, principal: &str, replace: bool) -> Result<()> {
        let held = registry.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        self.may_replace::<T>(name, held.as_deref().map(T::owner), principal, replace)
    }

    fn may_replace<T: Owned>(&self, name: &str, existing: Option<&str>, principal: &str, replace: bool) -> Result<()> {
        let (done, command, _) = T::KIND.verbs();
        let what = format!("{} `{name}`", T::KIND.noun());
        match existing {
            None => Ok(()),
            Some(owner) if owner != principal && !self.insecure() => {
                bail!("{what} was {done} by `{owner}`: `{principal}` may not replace it")
            }
            Some(owner) if !replace => {
                bail!("{what} was {done} already (by `{owner}`): {command} with --replace to replace it")
            }
            Some(_) => Ok(()),
        }
    }

    /// Put `value` under `name` in `registry`, checking again that `principal`
    /// may (another may have put something there meanwhile); log it.
    fn put<T: Owned>(&self, registry: &Registry<T>, name: &str, principal: &str, value: T, line: &str) -> Result<()> {
        let mut held = registry.lock().unwrap_or_else(|e| e.into_inner());
        self.may_replace::<T>(name, held.get(name).map(|h| h.owner()), principal, true)?;
        let replaced = held.insert(name.to_string(), Arc::new(value));
        drop(held);
        let (_, _, kept) = T::KIND.verbs();
        let what = if replaced.is_some() { "replaced" } else { kept };
        info!("{} `{name}` {what}: {line}", T::KIND.noun());
        Ok(())
    }

    /// This server's shares of the data sets `spec` names, checked against it
    /// and against who may train on them.
    fn held_for(&self, spec: &TrainSpec, trainer: &str) -> Result<Vec<Arc<HeldShares>>> {
        let datasets = self.datasets.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = Vec::with_capacity(spec.held.len());
        for (name, &rows) in spec.held.iter().zip(&spec.owners) {
            let entry = datasets.get(name).with_context(|| format!("no data set named `{name}` is held here"))?;
            if !self.insecure() && !entry.trainers.iter().any(|t| t == trainer) {
                bail!(
                    "data set `{name}` (contributed by `{}`) may be trained on by {} only, not by `{trainer}`",
                    entry.contributor,
                    entry.trainers.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                );
            }
            let h = &entry.shares;
            let want = DatasetInfo { feature_bound: h.info.feature_bound, ..DatasetInfo::of_owner(spec, rows) };
            if h.info != want || h.info.feature_bound > spec.feature_bound {
                bail!("data set `{name}` is {:?}, which does not match the training spec", h.info);
            }
            held.push(Arc::clone(h));
        }
        Ok(held)
    }

    fn run(
        &self,
        link: &Arc<Link>,
        from: Party,
        principal: &str,
        prepared: Prepared,
        request: &Request,
    ) -> Result<Report> {
        let i = if self.me == Party::Server0 { 0 } else { 1 };
        let ctx = party::Session {
            transport: Arc::clone(link) as Arc<dyn Transport>,
            id: link.session(),
            timeout: self.timeout,
        };
        let (program, weights, claim) = match prepared {
            Prepared::Train(spec, held) => {
                return match self.me {
                    Party::Dealer => secure::dealer(&ctx, &spec),
                    _ => secure::server(&ctx, &spec, i, None, &held),
                };
            }
            Prepared::Data(info) => {
                let Request::Contribute { name, trainers, .. } = request else {
                    bail!("only a contribution receives a data set");
                };
                let (shares, report) = secure::receive_contribution(&ctx, i, info)?;
                let listed = trainers.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
                let line = format!("from `{principal}`, for training by {listed}");
                let held =
                    Held { shares: Arc::new(shares), contributor: principal.to_string(), trainers: trainers.clone() };
                self.put(&self.datasets, name, principal, held, &line)?;
                return Ok(report);
            }
            Prepared::Predict { program, weights, claim, .. } => (program, weights, claim),
        };
        // Held until this session's deployment (if it is one) commits or fails.
        let _claim = claim;
        let ctx = party::Context { session: ctx, program: Arc::clone(&program) };
        match (request, self.me) {
            (Request::Predict { predictions, .. }, Party::Dealer) => party::dealer(&ctx, *predictions as usize),
            (Request::Predict { predictions, .. } | Request::PredictDeployed { predictions, .. }, server) => {
                let i = if server == Party::Server0 { 0 } else { 1 };
                party::server(&ctx, i, *predictions as usize, None, weights)
            }
            (
                Request::Describe { .. }
                | Request::Train { .. }
                | Request::Contribute { .. }
                | Request::DescribeData { .. }
                | Request::Status
                | Request::Standby,
                _,
            ) => bail!("answered before any program runs, or run above"),
            (Request::Deploy { name, digest, .. }, server) => {
                let i = if server == Party::Server0 { 0 } else { 1 };
                let (shares, report) = party::receive_weights(&ctx, i)?;
                // `prepare` checked that the digest sent is the program's.
                let deployment = Deployment { id: link.session(), digest: digest.clone() };
                self.await_commit(link, from, name, &deployment)?;
                let owner = principal.to_string();
                let model = Deployed { program, shares: Arc::new(shares), deployment, owner };
                let line = format!("deployment {}, by `{principal}`", model.deployment);
                self.put(&self.models, name, principal, model, &line)?;
                Ok(report)
            }
        }
    }
}

impl State {
    /// Prepare, then commit: the shares of `deployment` stay pending (no
    /// prediction can see them) until the model owner, having heard from both
    /// servers that they hold all their shares, commits. Any interruption before
    /// that (a cut link, a killed driver, the other server failing) leaves the
    /// deployment before it serving here; the other server, which has not been
    /// told to commit either, keeps its own.
    fn await_commit(&self, link: &Link, owner: Party, name: &str, deployment: &Deployment) -> Result<()> {
        let key = commit_key(link.session());
        let abandoned = || format!("model `{name}`: deployment {deployment} abandoned before its commit");
        let prepared = Control::Prepared { deployment: deployment.clone() };
        link.send(self.me, owner, key, prepared.encode()).with_context(abandoned)?;
        let answer = link.recv(self.me, owner, key, self.timeout).with_context(abandoned)?;
        match Control::decode(&answer, owner.name()).with_context(abandoned)? {
            Control::Commit { deployment: d } if d == *deployment => Ok(()),
            other => {
                Err(anyhow::anyhow!("{} sent {other:?} instead of the commit", owner.name())).with_context(abandoned)
            }
        }
    }
}

impl Observed for State {
    fn metrics(&self) -> String {
        let status = self.status();
        let running = self.running();
        let now = Snapshot {
            running: running.len(),
            handshakes: self.handshakes.waiting(),
            parked: self.parked.waiting(),
            buffered: running.iter().map(|l| l.buffered()).fold(0, u64::saturating_add),
            draining: status.draining,
            models: status.models.into_iter().map(|m| (m.name, m.deployment.id, m.deployment.digest)).collect(),
            datasets: status.datasets.into_iter().map(|d| (d.name, d.rows, d.features)).collect(),
        };
        self.metrics.encode(&now)
    }

    fn health(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) { Err("draining") } else { Ok(()) }
    }
}

/// Why a connection is refused, and the connection to tell it on (if still ours).
type Refusal = (Option<Box<dyn Stream>>, anyhow::Error);

/// What a session runs with, checked before it starts.
enum Prepared {
    /// Predictions or a deployment: the checked secure program and the weights.
    Predict {
        program: Arc<Program>,
        weights: Weights,
        /// For a deployed model: the deployment the session is pinned to.
        deployment: Option<Deployment>,
        /// For a deployment: this server's claim on the name.
        claim: Option<Claim>,
    },
    /// Training: the spec and this server's shares of the data sets it names.
    Train(Arc<TrainSpec>, Vec<Arc<HeldShares>>),
    /// A data set to receive (`Contribute`) or to describe (`DescribeData`).
    Data(DatasetInfo),
}

fn describe(request: &Request) -> String {
    match request {
        Request::Predict { predictions, .. } => format!("{predictions} prediction(s), weights shared now"),
        Request::PredictDeployed { name, predictions, deployment } => {
            format!("{predictions} prediction(s) with model `{name}`, deployment {deployment}")
        }
        Request::Deploy { name, .. } => format!("deployment of model `{name}`"),
        Request::Describe { name } => format!("the secure program of model `{name}`"),
        Request::Contribute { name, info, .. } => format!("data set `{name}` ({} rows) for training", info.rows),
        Request::DescribeData { name } => format!("the description of data set `{name}`"),
        Request::Status => "the party's status".to_string(),
        Request::Standby => "a standby connection".to_string(),
        Request::Train { spec } => {
            format!("training on {} rows of {} data owner(s), {} epochs", spec.rows(), spec.owners.len(), spec.epochs)
        }
    }
}

/// The connections that have not yet sent a valid hello, oldest first: at most
/// `limit`. A connection over it closes the oldest one rather than being
/// refused itself: an honest party finishes its handshake in milliseconds, so
/// idle or slow connections are the ones that wait longest, and to push out an
/// honest handshake a flood would have to open `limit` connections within it.
pub(crate) struct Handshakes {
    limit: usize,
    /// What a connection closed for the limit is told.
    full: String,
    waiting: Mutex<Waiting>,
}

/// The last ticket given, and each waiting connection's ticket and what tells it to close.
#[derive(Default)]
struct Waiting {
    last: u64,
    queue: VecDeque<(u64, tokio::sync::oneshot::Sender<String>)>,
}

impl Handshakes {
    /// For `--max-handshakes`.
    fn new(limit: usize) -> Handshakes {
        let full = format!("{limit} connections were in their handshake, the limit of --max-handshakes {limit}");
        Handshakes::with_reason(limit, full)
    }

    /// At most `limit` waiting; one closed for the limit is told `full`.
    pub(crate) fn with_reason(limit: usize, full: String) -> Handshakes {
        Handshakes { limit: limit.max(1), full, waiting: Mutex::default() }
    }

    /// A place for a new connection, and what tells it to close.
    pub(crate) fn enter(&self) -> (u64, tokio::sync::oneshot::Receiver<String>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while waiting.queue.len() >= self.limit {
            if let Some((_, oldest)) = waiting.queue.pop_front() {
                let _ = oldest.send(self.full.clone());
            }
        }
        // Tickets only need to differ among the waiting ones (at most `limit`).
        waiting.last = waiting.last.wrapping_add(1);
        let ticket = waiting.last;
        waiting.queue.push_back((ticket, tx));
        (ticket, rx)
    }

    /// How many connections wait now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).queue.len()
    }

    pub(crate) fn leave(&self, ticket: u64) {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).queue.retain(|(t, _)| *t != ticket);
    }

    /// Close the connection that has waited longest; false if none waits.
    fn close_oldest(&self) -> bool {
        let oldest = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).queue.pop_front();
        oldest.map(|(_, tx)| tx.send("this server ran out of file descriptors".into())).is_some()
    }
}

/// At most [`LogLimit::LINES`] lines a second, then one that counts the rest.
#[derive(Default)]
struct LogLimit {
    since: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    const LINES: u32 = 10;

    /// Count one more line; a summary of the last second's unlogged ones when a
    /// new second begins.
    fn admit(&mut self, now: Instant) -> Option<String> {
        let mut summary = None;
        if self.since.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            if self.suppressed > 0 {
                summary = Some(format!("{} more refused connection(s) were not logged one by one", self.suppressed));
            }
            *self = LogLimit { since: Some(now), logged: 0, suppressed: 0 };
        }
        self.logged = self.logged.saturating_add(1);
        if self.logged > Self::LINES {
            self.suppressed = self.suppressed.saturating_add(1);
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_over_max_handshakes_closes_the_oldest() {
        let slots = Handshakes::new(2);
        let (a, mut closed_a) = slots.enter();
        let (_b, mut closed_b) = slots.enter();
        let (_c, mut closed_c) = slots.enter();
        assert!(closed_a.try_recv().is_ok(), "the oldest is told to close");
        assert!(closed_b.try_recv().is_err() && closed_c.try_recv().is_err());
        slots.leave(a);
        assert_eq!(slots.waiting.lock().unwrap().queue.len(), 2);
        assert!(slots.close_oldest());
        assert!(closed_b.try_recv().is_ok());
    }

    #[test]
    fn a_join_overtaking_its_session_gets_the_link_when_the_session_starts() {
        let mut early = EarlyJoins::default();
        let mut first = early.wait(7, 3).unwrap();
        let mut second = early.wait(7, 3).unwrap();
        let other = early.wait(8, 3).unwrap();
        let refused = early.wait(9, 3).err().unwrap().to_string();
        assert!(refused.contains("3 joins already wait") && refused.contains("--max-sessions"), "{refused}");
        let link = Link::new(7, Duration::from_secs(1));
        early.started(7, &link);
        assert!(Arc::ptr_eq(&first.try_recv().unwrap(), &link) && Arc::ptr_eq(&second.try_recv().unwrap(), &link));
        assert_eq!(early.waiting(), 1);
        // A join that gave up (timed out, its receiver dropped) is forgotten.
        drop(other);
        early.forget(8);
        assert_eq!(early.waiting(), 0);
        assert!(early.by_session.is_empty());
    }

    #[test]
    fn refused_connections_are_logged_at_most_ten_a_second() {
        let mut limit = LogLimit::default();
        let t = Instant::now();
        for _ in 0..25 {
            assert!(limit.admit(t).is_none());
        }
        assert_eq!((limit.logged, limit.suppressed), (25, 15));
        let summary = limit.admit(t + Duration::from_secs(1)).unwrap();
        assert!(summary.starts_with("15 more refused connection(s)"), "{summary}");
        assert_eq!((limit.logged, limit.suppressed), (1, 0));
    }
}
