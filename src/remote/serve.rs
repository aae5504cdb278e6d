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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::net::{TcpListener, TcpStream};

use super::{
    Control, Deployment, Peer, Request, Security, SessionId, Version, accept, check_program, commit_key, dial,
};
use crate::cluster::Cluster;
use crate::lower::Program;
use crate::runtime::party::{self, Report, WeightShares, Weights};
use crate::train::secure::{self, HeldShares};
use crate::train::{DatasetInfo, TrainSpec};
use crate::transport::network::{Limits, Link, Stream};
use crate::transport::tls::Identity;
use crate::transport::wire::Frame;
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
}

/// The defaults of the limits' flags.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
pub const DEFAULT_MAX_HANDSHAKES: usize = 128;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
    models: Registry<Deployed>,
    /// Data sets contributed for training.
    datasets: Registry<Held>,
    /// The names with a deployment under way here ([`Claim`]).
    deploying: Arc<Mutex<HashSet<String>>>,
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

/// Serve until the process is stopped. `on_listening` is told the bound address.
pub fn serve(cluster: Cluster, options: ServeOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let me = options.party;
    let identity = options.security.identity(me)?;
    let (listen, from_config) = match options.listen {
        Some(a) => (a, false),
        None => (cluster.address(me)?.to_string(), true),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            TcpListener::bind(&listen).await.map_err(|e| cannot_listen(me, &listen, from_config, &cluster, e))?;
        on_listening(listener.local_addr()?);
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
            models: Mutex::new(HashMap::new()),
            datasets: Mutex::new(HashMap::new()),
            deploying: Arc::new(Mutex::new(HashSet::new())),
        });
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: free the one held
                    // longest by a connection still in its handshake, so that
                    // idle connections cannot lock sessions out; do not spin.
                    let freed = state.handshakes.close_oldest();
                    state.refused(format!(
                        "accept failed: {e}{}",
                        if freed { "; closed the oldest handshake" } else { "" }
                    ));
                    tokio::time::sleep(Duration::from_millis(if freed { 10 } else { 100 })).await;
                    continue;
                }
            };
            tokio::spawn(Arc::clone(&state).handle(tcp, addr));
        }
    })
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

fn log(me: Party, line: &str) {
    eprintln!("tfe-run serve [{}]: {line}", me.name());
}

impl State {
    /// Log a refused connection, at most [`LogLimit::LINES`] a second one by
    /// one: a flood of connections must not flood the log.
    fn refused(&self, line: String) {
        let mut limit = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(summary) = limit.admit(Instant::now()) {
            log(self.me, &summary);
        }
        if limit.logged <= LogLimit::LINES {
            log(self.me, &line);
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
            Err(e) => {
                self.refused(format!("connection from {addr} refused: {e:#}"));
                return;
            }
        };
        let from = peer.party;
        let outcome = match request {
            Some(request) => self.clone().start(stream, peer, session, request).await,
            None => self.join(stream, from, session),
        };
        if let Err((stream, e)) = outcome {
            log(self.me, &format!("{}: {} refused: {e:#}", SessionId(session), from.name()));
            if let Some(mut stream) = stream {
                let stale = e.downcast_ref::<super::Stale>().is_some();
                let refusal = Control::Refused { reason: format!("{}: {e:#}", self.me.name()), stale };
                let _ = crate::transport::wire::write_frame(&mut stream, &Frame::Control(refusal.encode())).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            }
        }
    }

    /// A peer joins a session this server already takes part in.
    fn join(&self, stream: Box<dyn Stream>, from: Party, session: u64) -> Result<(), Refusal> {
        let allowed = match self.me {
            Party::Server1 => [Party::Server0, Party::Dealer, Party::ModelOwner, Party::Client].contains(&from),
            Party::Server0 => [Party::Dealer, Party::ModelOwner, Party::Client].contains(&from),
            _ => false,
        };
        if !allowed {
            return Err((Some(stream), anyhow::anyhow!("{} does not dial {}", from.name(), self.me.name())));
        }
        let link = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(&session).cloned();
        match link {
            Some(link) => link.attach(self.me, from, stream).map_err(|e| (None, e)),
            None => Err((Some(stream), anyhow::anyhow!("no {} here", SessionId(session)))),
        }
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
        let Peer { party: from, principal } = peer;
        let starters: &[Party] = match &request {
            Request::Deploy { .. } | Request::Train { .. } => &[Party::ModelOwner],
            Request::DescribeData { .. } => &[Party::ModelOwner, Party::Client],
            _ => &[Party::Client],
        };
        if !starters.contains(&from) {
            let who = starters.iter().map(|p| p.name()).collect::<Vec<_>>().join(" or the ");
            return Err((Some(stream), anyhow::anyhow!("only the {who} starts {}", describe(&request))));
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
        }
        if let Err(e) = link.attach(self.me, from, stream) {
            self.end(session, &link);
            return Err((None, e));
        }
        link.started_by(self.me, from);
        let peers: &[Party] = match self.me {
            Party::Server0 => &[Party::Server1],
            Party::Dealer => &[Party::Server0, Party::Server1],
            _ => &[],
        };
        for &peer in peers {
            let dialled = async {
                let address = self.cluster.address(peer)?;
                // Set-up, not silence: as long as an incoming handshake may take.
                let deadline = self.timeout.max(self.handshake_timeout);
                dial(self.identity.as_ref(), self.me, peer, address, session, None, deadline).await
            }
            .await;
            match dialled.and_then(|s| link.attach(self.me, peer, s)) {
                Ok(()) => {}
                Err(e) => {
                    let reason = Control::Refused { reason: format!("{}: {e:#}", self.me.name()), stale: false };
                    let _ = link.send_control(self.me, from, reason.encode());
                    log(self.me, &format!("{}: {e:#}", SessionId(session)));
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
        let ready = Control::Ready { version: Version::current(), deployed, deployment, dataset };
        let _ = link.send_control(self.me, from, ready.encode());
        if matches!(request, Request::Describe { .. } | Request::DescribeData { .. }) {
            self.end(session, &link);
            return Ok(());
        }
        log(self.me, &format!("{}: {} from {} `{principal}`", SessionId(session), describe(&request), from.name()));

        let state = Arc::clone(&self);
        std::thread::Builder::new()
            .name(format!("{}-{session:016x}", self.me.name()))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    state.run(&link, from, &principal, prepared, &request)
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{} hit an internal error", state.me.name())));
                match result {
                    Ok(report) => {
                        let _ = link.send_control(state.me, from, Control::Done { report: Box::new(report) }.encode());
                        let peak = link.peak_buffered() as f64 / 1e6;
                        log(
                            state.me,
                            &format!("{}: done ({peak:.1} MB of messages buffered at most)", SessionId(session)),
                        );
                    }
                    Err(e) => {
                        link.abort(format!("{}: {e:#}", state.me.name()));
                        log(state.me, &format!("{}: failed: {e:#}", SessionId(session)));
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
        log(self.me, &format!("{} `{name}` {what}: {line}", T::KIND.noun()));
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
                | Request::DescribeData { .. },
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
struct Handshakes {
    limit: usize,
    waiting: Mutex<Waiting>,
}

/// The last ticket given, and each waiting connection's ticket and what tells it to close.
#[derive(Default)]
struct Waiting {
    last: u64,
    queue: VecDeque<(u64, tokio::sync::oneshot::Sender<String>)>,
}

impl Handshakes {
    fn new(limit: usize) -> Handshakes {
        Handshakes { limit: limit.max(1), waiting: Mutex::default() }
    }

    /// A place for a new connection, and what tells it to close.
    fn enter(&self) -> (u64, tokio::sync::oneshot::Receiver<String>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while waiting.queue.len() >= self.limit {
            if let Some((_, oldest)) = waiting.queue.pop_front() {
                let limit = self.limit;
                let _ = oldest.send(format!(
                    "{limit} connections were in their handshake, the limit of --max-handshakes {limit}"
                ));
            }
        }
        // Tickets only need to differ among the waiting ones (at most `limit`).
        waiting.last = waiting.last.wrapping_add(1);
        let ticket = waiting.last;
        waiting.queue.push_back((ticket, tx));
        (ticket, rx)
    }

    fn leave(&self, ticket: u64) {
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
