//! The driver: the model owner and the client of a remote session, as
//! tf-encrypted's `bin/run` played them. It dials the serving parties, runs its
//! own parties' programs (the same ones as in the simulated mode) and collects the
//! servers' statistics.

use crate::protocol::Comparison;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use ndarray::ArrayD;

use super::{Control, Deployment, PartyStatus, Request, Security, commit_key, connect, dial, hello_on, new_session_id};
use crate::cluster::Cluster;
use crate::error::Error;
use crate::lower::{Program, lower};
use crate::plan::{Plan, ValueId};
use crate::ring::FixedPoint;
use crate::runtime::party::{self, Report};
use crate::runtime::{Outcome, assemble, spawn_party};
use crate::tensor::Tensor;
use crate::train::secure::{self, TrainOutcome};
use crate::train::{DatasetInfo, OwnerData, TrainSpec};
use crate::transport::network::{Link, Stream};
use crate::transport::tls::Identity;
use crate::transport::{Party, Transport};

/// Arrays by placeholder name.
type Feeds = BTreeMap<String, ArrayD<f32>>;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct Remote {
    pub cluster: Cluster,
    pub security: Security,
    pub timeout: Duration,
    /// The principal whose key pair (`NAME.pem`, `NAME.key`) the command's own
    /// role uses (`--as NAME`): the model owner's for `deploy` and `train`, the
    /// client's otherwise. `None`: the role's own pair.
    pub principal: Option<String>,
    /// Where `predict --model` keeps the descriptions of deployments it ran
    /// with ([`super::descriptions`]); `None`: ask server1 every time.
    pub descriptions: Option<super::descriptions::Descriptions>,
}

/// What a ready message describes: a deployed model's secure program and which
/// deployment of it, or a held data set.
#[derive(Default)]
struct Ready {
    deployed: Option<Box<Program>>,
    deployment: Option<Deployment>,
    dataset: Option<DatasetInfo>,
    status: Option<Box<PartyStatus>>,
}

/// Connections being opened ahead of their hellos ([`Session::open`]).
#[derive(Default)]
struct Opened(BTreeMap<Party, tokio::task::JoinHandle<Opening>>);

/// A connection opened ahead, or why it could not be.
type Opening = std::result::Result<Box<dyn Stream>, Unopened>;

/// Why a connection opened ahead failed, and whether its deadline had passed
/// by then (a party that accepts connections and answers nothing).
struct Unopened {
    error: anyhow::Error,
    deadline_spent: bool,
}

/// One session as the driver sees it.
struct Session {
    runtime: tokio::runtime::Runtime,
    link: Arc<Link>,
    remote: Remote,
    /// The local party that starts the serving parties (sends the request, hears
    /// their ready, refusal and report): the client, or the model owner when it
    /// acts alone (`deploy`, `train`).
    starter: Party,
    /// Each local party's TLS settings, read from disk once, before any party is
    /// dialled (a session dials up to five connections).
    identities: BTreeMap<Party, Option<Identity>>,
}

impl Session {
    /// The session as the driver's own party threads see it.
    fn parties(&self) -> party::Session {
        party::Session {
            transport: Arc::clone(&self.link) as Arc<dyn Transport>,
            id: self.link.session(),
            timeout: self.remote.timeout,
        }
    }

    /// A session in which `starter` starts `peers` with `request` and `joiner`
    /// (if any) then joins both servers.
    fn with_joiner(
        remote: &Remote,
        starter: Party,
        joiner: Option<Party>,
        peers: &[Party],
        request: &Request,
    ) -> Result<Session> {
        let locals: Vec<Party> = std::iter::once(starter).chain(joiner).collect();
        let session = Session::new(remote, starter, &locals)?;
        session.start_all(peers.iter().map(|&peer| (peer, request.clone())).collect())?;
        if let Some(joiner) = joiner {
            session.connect_all(joiner, &[(Party::Server0, None), (Party::Server1, None)])?;
        }
        Ok(session)
    }

    /// A session played by the local parties `locals`, the first of which starts
    /// the serving parties. Every certificate they need is loaded now, so a
    /// missing one is refused (naming the file) before any party is contacted.
    fn new(remote: &Remote, starter: Party, locals: &[Party]) -> Result<Session> {
        let mut identities = BTreeMap::new();
        identities.insert(starter, remote.security.identity_as(starter, remote.principal.as_deref())?);
        for &party in locals {
            if let std::collections::btree_map::Entry::Vacant(slot) = identities.entry(party) {
                slot.insert(remote.security.identity(party)?);
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        Ok(Session {
            runtime,
            link: Link::new(new_session_id()?, remote.timeout),
            remote: remote.clone(),
            starter,
            identities,
        })
    }

    /// This session's id, as the servers log it.
    fn id(&self) -> super::SessionId {
        super::SessionId(self.link.session())
    }

    /// Dial each peer as `local`, all at once (each dial's handshakes cost one
    /// network delay's worth of time, not one each), with a request or joining,
    /// and attach the connections. Of several failures the first peer's is
    /// reported.
    fn connect_all(&self, local: Party, peers: &[(Party, Option<Request>)]) -> Result<()> {
        self.connect_all_opened(local, peers, Opened::default())
    }

    /// `local`'s TLS settings, loaded when the session was made.
    fn identity(&self, local: Party) -> Result<Option<Identity>> {
        self.identities.get(&local).cloned().with_context(|| format!("this session plays no {}", local.name()))
    }

    /// Open connections (TCP and TLS, no hello) to `peers` as `local` in the
    /// background, while the caller waits for something else: a prediction's
    /// three connections during its describe, so its start costs no handshake.
    fn open(&self, local: Party, peers: &[Party]) -> Result<Opened> {
        let identity = self.identity(local)?;
        let timeout = self.remote.timeout;
        let mut opened = Opened::default();
        for &peer in peers {
            let (identity, address) = (identity.clone(), self.remote.cluster.address(peer)?.to_string());
            let open = self.runtime.spawn(async move {
                let began = std::time::Instant::now();
                connect(identity.as_ref(), local, peer, &address, timeout)
                    .await
                    .map_err(|error| Unopened { error, deadline_spent: began.elapsed() >= timeout })
            });
            opened.0.insert(peer, open);
        }
        Ok(opened)
    }

    /// Close the connections `opened` without a hello, cleanly (TLS
    /// close_notify), so that their servers take them for unused, not refused.
    fn close_unused(&self, opened: Opened) {
        let timeout = self.remote.timeout;
        self.runtime.block_on(async move {
            for open in opened.0.into_values() {
                if let Ok(Ok(Ok(mut stream))) = tokio::time::timeout(timeout, open).await {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                }
            }
        });
    }

    /// [`Session::connect_all`], saying the hellos on the connections `opened`
    /// ahead where there are some. One that failed or has been closed since
    /// (its peer waits for the hello only so long) is dialled anew: a real
    /// refusal is then reported by the new dial. But one whose opening failed
    /// only when the deadline had passed (a party that accepts connections and
    /// answers nothing) is reported as it failed: dialling again would wait a
    /// second deadline for the same silence.
    fn connect_all_opened(&self, local: Party, peers: &[(Party, Option<Request>)], mut opened: Opened) -> Result<()> {
        let identity = self.identity(local)?;
        let timeout = self.remote.timeout;
        let mut dials = Vec::new();
        for (peer, request) in peers {
            let (peer, request, identity) = (*peer, request.clone(), identity.clone());
            let address = self.remote.cluster.address(peer)?.to_string();
            let link = Arc::clone(&self.link);
            let open = opened.0.remove(&peer);
            dials.push(self.runtime.spawn(async move {
                let session = link.session();
                let ahead = match open {
                    Some(open) => match open.await {
                        Ok(Ok(stream)) => {
                            hello_on(stream, local, peer, &address, session, request.clone(), timeout).await.ok()
                        }
                        Ok(Err(Unopened { error, deadline_spent: true })) => return Err(error),
                        _ => None,
                    },
                    None => None,
                };
                let stream = match ahead {
                    Some(stream) => stream,
                    None => dial(identity.as_ref(), local, peer, &address, session, request, timeout).await?,
                };
                link.attach(local, peer, stream)
            }));
        }
        self.runtime.block_on(async move {
            let mut first = Ok(());
            for dial in dials {
                let done = dial.await.unwrap_or_else(|e| Err(anyhow::anyhow!("a dial failed: {e}")));
                if first.is_ok() {
                    first = done;
                }
            }
            first
        })
    }

    /// Wait for `peer`'s next control message to `local`.
    fn control(&self, local: Party, peer: Party, timeout: Duration) -> Result<Control> {
        let json = self.link.recv_control(local, peer, timeout)?;
        Control::decode(&json, peer.name())
    }

    /// Start `peer` with `request` and wait until it is ready; return what the
    /// ready message says.
    fn start(&self, peer: Party, request: Request) -> Result<Ready> {
        Ok(self.start_all(vec![(peer, request)])?.remove(0))
    }

    /// Start every peer with its request, all at once, and wait until each is
    /// ready; what their ready messages say, in the order given. The servers
    /// accept a join that overtakes the hello starting its session, so the
    /// peers need no order.
    fn start_all(&self, starts: Vec<(Party, Request)>) -> Result<Vec<Ready>> {
        self.start_all_opened(starts, Opened::default())
    }

    /// [`Session::start_all`] on connections [`Session::open`] opened ahead.
    fn start_all_opened(&self, starts: Vec<(Party, Request)>, opened: Opened) -> Result<Vec<Ready>> {
        let peers = self.hellos(starts, opened)?;
        self.readies(&peers)
    }

    /// The first half of [`Session::start_all_opened`]: say each peer's hello
    /// with its request; the peers, in order.
    fn hellos(&self, starts: Vec<(Party, Request)>, opened: Opened) -> Result<Vec<Party>> {
        let peers: Vec<Party> = starts.iter().map(|(peer, _)| *peer).collect();
        let starts: Vec<(Party, Option<Request>)> = starts.into_iter().map(|(p, r)| (p, Some(r))).collect();
        self.connect_all_opened(self.starter, &starts, opened)?;
        Ok(peers)
    }

    /// The second half: what each peer's ready message says, in order. Of
    /// several failures, a peer's own (its refusal) is reported rather than the
    /// session's abort it caused: a client that sent its shares with the hellos
    /// fails when a refusing server closes, and stops the session before the
    /// other readies are read.
    fn readies(&self, peers: &[Party]) -> Result<Vec<Ready>> {
        let mut readies = Vec::with_capacity(peers.len());
        let mut stopped = None;
        for &peer in peers {
            match self.ready_of(peer) {
                Ok(ready) => readies.push(ready),
                Err(e) if e.chain().any(|c| c.is::<crate::transport::Aborted>()) => {
                    stopped.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match stopped {
            Some(e) => Err(e),
            None => Ok(readies),
        }
    }

    /// `peer`'s answer to the request that started it.
    fn ready_of(&self, peer: Party) -> Result<Ready> {
        let json = self.link.recv_control(self.starter, peer, self.remote.timeout)?;
        // The version first: the rest may be of another format.
        if let Some((version, _)) = super::declared_version(&json)
            && let Some(reason) = version.mismatch(peer.name(), &format!("this {}", self.starter.name()))
        {
            return Err(Error::party(peer.name(), reason));
        }
        match Control::decode(&json, peer.name())? {
            Control::Ready { deployed, deployment, dataset, status, .. } => {
                Ok(Ready { deployed, deployment, dataset, status })
            }
            Control::Refused { reason, stale: true } => {
                Err(super::Stale(format!("{} refused {}: {reason}", peer.name(), self.id())).into())
            }
            Control::Refused { reason, .. } => {
                Err(Error::party(peer.name(), format!("{} refused {}: {reason}", peer.name(), self.id())))
            }
            other => Err(Error::party(peer.name(), format!("{} answered {other:?} instead of ready", peer.name()))),
        }
    }

    /// Collect the serving parties' reports once the local programs are done.
    fn finish(self, local: Vec<(Party, Result<Report>)>, remote: &[Party], predictions: usize) -> Result<Outcome> {
        assemble(self.collect(local, remote), predictions)
    }

    /// Every party's report: the local ones, then the serving parties' (unless a
    /// local party failed); the session is over after it.
    fn collect(self, local: Vec<(Party, Result<Report>)>, remote: &[Party]) -> Vec<(Party, Result<Report>)> {
        let mut results = local;
        // After a local failure the error to report is the local one (which
        // names the party that caused it); the others' reports will not come.
        if results.iter().all(|(_, r)| r.is_ok()) {
            for &peer in remote {
                let report = match self.control(self.starter, peer, self.remote.timeout) {
                    Ok(Control::Done { report }) => Ok(*report),
                    Ok(other) => {
                        Err(Error::party(peer.name(), format!("{} sent {other:?} instead of its report", peer.name())))
                    }
                    Err(e) => Err(e),
                };
                results.push((peer, report));
            }
        }
        self.link.finish();
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        results
    }
}

/// Run the driver's own parties in this session: the model owner if it has
/// `weights`, the client if it has `batches`.
fn run_local(
    session: &Session,
    program: &Arc<Program>,
    weights: Option<&BTreeMap<ValueId, ArrayD<f32>>>,
    batches: Option<&[Feeds]>,
) -> Vec<(Party, Result<Report>)> {
    let ctx = party::Context { session: session.parties(), program: Arc::clone(program) };
    std::thread::scope(|scope| {
        let (c, t) = (&ctx, &ctx.session.transport);
        let mut handles = Vec::new();
        if let Some(weights) = weights {
            handles.push(spawn_party(scope, t, Party::ModelOwner, move || party::model_owner(c, weights)));
        }
        if let Some(batches) = batches {
            handles.push(spawn_party(scope, t, Party::Client, move || party::client(c, batches)));
        }
        handles.into_iter().map(|h| h.join().expect("a party thread panicked")).collect()
    })
}

/// `tfe-run MODEL INPUT --config`: the driver holds the model and the input;
/// the servers get shares of both for this session only.
pub fn predict(
    remote: &Remote,
    plan: &Plan,
    batches: &[BTreeMap<String, ArrayD<f32>>],
    fp: FixedPoint,
) -> Result<Outcome> {
    predict_program(remote, &Arc::new(lower(plan, fp)?), &plan.weight_values, batches)
}

/// [`predict`] of a program lowered (and sized) by the caller.
pub fn predict_program(
    remote: &Remote,
    program: &Arc<Program>,
    weights: &BTreeMap<ValueId, ArrayD<f32>>,
    batches: &[BTreeMap<String, ArrayD<f32>>],
) -> Result<Outcome> {
    let predictions = crate::runtime::prediction_count(batches.len())?;
    party::check_values(&program.plan, program.fp(), Some(weights), batches)?;
    let digest = program.digest();
    let request = Request::Predict { program: Box::new(Program::clone(program)), predictions, digest };
    let peers = [Party::Server1, Party::Server0, Party::Dealer];
    let session = Session::with_joiner(remote, Party::Client, Some(Party::ModelOwner), &peers, &request)?;
    let local = run_local(&session, program, Some(weights), Some(batches));
    session.finish(local, &[Party::Server0, Party::Server1, Party::Dealer], batches.len())
}

/// `tfe-run train --config`: the driver plays the model owner and the data
/// owners of `owners` (after the data sets the servers hold, which `spec.held`
/// names); the servers and the crypto producer train on the shares.
pub fn train(
    remote: &Remote,
    spec: &TrainSpec,
    owners: &[OwnerData],
    on_epoch: &(dyn Fn(usize, f64) + Sync),
) -> Result<TrainOutcome> {
    spec.check()?;
    check_frame(spec.largest_message(), "the set-up's opening of the masked training set")?;
    let held = spec.held.len();
    if owners.iter().map(|o| o.features.nrows()).ne(spec.owners[held..].iter().copied()) {
        bail!("the data owners' row counts differ from the training spec");
    }
    for data in owners {
        secure::check_owner(spec.fp(), data)?;
    }
    let request = Request::Train { spec: spec.clone() };
    let peers = [Party::Server1, Party::Server0, Party::Dealer];
    // The model owner starts the session; the local data owners (if any) join
    // the servers as clients.
    let joiner = (!owners.is_empty()).then_some(Party::Client);
    let session = Session::with_joiner(remote, Party::ModelOwner, joiner, &peers, &request)?;
    let ctx = session.parties();
    let local = std::thread::scope(|scope| {
        let ctx = &ctx;
        let t = &ctx.transport;
        let mut handles =
            vec![spawn_party(scope, t, Party::ModelOwner, move || secure::model_owner(ctx, spec, on_epoch))];
        for (j, data) in owners.iter().enumerate() {
            let fp = spec.fp();
            handles.push(spawn_party(scope, t, Party::Client, move || secure::data_owner(ctx, fp, held + j, data)));
        }
        handles.into_iter().map(|h| h.join().expect("a party thread panicked")).collect()
    });
    secure::assemble(spec, session.collect(local, &[Party::Server0, Party::Server1, Party::Dealer]))
}

/// Messages between hosts are single frames of at most 1 GiB: refuse a data set
/// whose shares or opening would not fit, before anything is sent.
fn check_frame(bytes: u64, what: &str) -> Result<()> {
    let limit = crate::transport::wire::MAX_FRAME as u64;
    if bytes > limit {
        return Err(Error::bad_input(format!(
            "{what} would be one message of {:.0} MB, over the {:.0} MB limit between hosts: \
             train on fewer rows or features",
            bytes as f64 / 1e6,
            limit as f64 / 1e6
        )));
    }
    Ok(())
}

/// How a contribution is kept: who may train on it, and whether it replaces
/// the contributor's own data set of that name.
#[derive(Debug, Clone)]
pub struct Keep {
    /// The model-owner principals that may train on the rows.
    pub trainers: Vec<String>,
    pub replace: bool,
}

/// `tfe-run contribute`: as a data owner, secret-share rows with the servers,
/// which keep them under `name` for later training sessions.
pub fn contribute(
    remote: &Remote,
    name: &str,
    data: &OwnerData,
    info: DatasetInfo,
    keep: &Keep,
) -> Result<Vec<Report>> {
    info.check()?;
    check_frame(8 * info.rows as u64 * info.features as u64, "the shares of the features")?;
    let fp = FixedPoint::new(info.frac_bits)?;
    secure::check_owner(fp, data)?;
    let request =
        Request::Contribute { name: name.to_string(), info, trainers: keep.trainers.clone(), replace: keep.replace };
    let session = Session::new(remote, Party::Client, &[])?;
    for peer in [Party::Server1, Party::Server0] {
        session.start(peer, request.clone())?;
    }
    let ctx = session.parties();
    let local = vec![(Party::Client, secure::data_owner(&ctx, fp, 0, data))];
    let results = session.collect(local, &[Party::Server0, Party::Server1]);
    results.into_iter().map(|(party, r)| r.with_context(|| format!("{} failed", party.name()))).collect()
}

/// The public description of data set `name`, from server1 (server0 checks its
/// own copy against the training spec when training starts), asked by the model
/// owner.
pub fn describe_data(remote: &Remote, name: &str) -> Result<DatasetInfo> {
    let session = Session::new(remote, Party::ModelOwner, &[])?;
    let info = session.start(Party::Server1, Request::DescribeData { name: name.to_string() })?.dataset;
    session.collect(Vec::new(), &[]);
    let info = info.with_context(|| format!("server1 did not describe data set `{name}`"))?;
    info.check()
        .map_err(|e| Error::party("server1", format!("server1 described data set `{name}` impossibly: {e}")))?;
    Ok(info)
}

/// `tfe-run deploy`: as the model owner alone, share the weights with the
/// servers, which keep them under `name` as a new deployment (the session's id).
/// It becomes the one that serves only once both servers hold it whole: each
/// says so ([`Control::Prepared`]), then the model owner commits it on both.
/// A name deployed already is replaced only with `replace`, and only by the
/// principal that deployed it.
pub fn deploy(remote: &Remote, name: &str, plan: &Plan, fp: FixedPoint, replace: bool) -> Result<Outcome> {
    deploy_with(remote, name, plan, fp, Comparison::Bitwise, replace)
}

/// [`deploy`] with every comparison of the deployed program by `comparison`:
/// clients' predictions of the deployment run it.
pub fn deploy_with(
    remote: &Remote,
    name: &str,
    plan: &Plan,
    fp: FixedPoint,
    comparison: Comparison,
    replace: bool,
) -> Result<Outcome> {
    deploy_lowered(remote, name, plan, fp, comparison, replace, &[Party::Server1, Party::Server0])
}

/// [`deploy`], committing only on `commit_to`: for tests of what the servers do
/// when a commit is lost.
#[doc(hidden)]
pub fn deploy_committing(
    remote: &Remote,
    name: &str,
    plan: &Plan,
    fp: FixedPoint,
    replace: bool,
    commit_to: &[Party],
) -> Result<Outcome> {
    deploy_lowered(remote, name, plan, fp, Comparison::Bitwise, replace, commit_to)
}

fn deploy_lowered(
    remote: &Remote,
    name: &str,
    plan: &Plan,
    fp: FixedPoint,
    comparison: Comparison,
    replace: bool,
    commit_to: &[Party],
) -> Result<Outcome> {
    party::check_values(plan, fp, Some(&plan.weight_values), &[])?;
    let program = Arc::new(crate::lower::lower_with(plan, fp, comparison)?);
    let deployment = Deployment { id: 0, digest: program.digest() };
    let digest = deployment.digest.clone();
    let request =
        Request::Deploy { name: name.to_string(), program: Box::new(Program::clone(&program)), replace, digest };
    let session = Session::new(remote, Party::ModelOwner, &[])?;
    // One server at a time, server1 first, unlike a prediction: each claims the
    // name as it starts, and the same order for every deployment is what lets at
    // most one of two concurrent deployments of a name claim it on both.
    for server in [Party::Server1, Party::Server0] {
        session.start(server, request.clone())?;
    }
    let deployment = Deployment { id: session.link.session(), ..deployment };
    let mut local = run_local(&session, &program, Some(&plan.weight_values), None);
    if local.iter().all(|(_, r)| r.is_ok())
        && let Err(e) = commit(&session, &deployment, commit_to)
    {
        local.push((Party::ModelOwner, Err(e)));
    }
    session.finish(local, commit_to, 0)
}

/// Wait until both servers hold all their shares of `deployment`, then commit it
/// on `commit_to`. A failure before every commit is sent leaves the servers not
/// told on the deployment before.
fn commit(session: &Session, deployment: &Deployment, commit_to: &[Party]) -> Result<()> {
    let key = commit_key(session.link.session());
    for server in [Party::Server0, Party::Server1] {
        let answer = session.link.recv(Party::ModelOwner, server, key, session.remote.timeout)?;
        match Control::decode(&answer, server.name())? {
            Control::Prepared { deployment: d } if d == *deployment => {}
            Control::Prepared { deployment: d } => {
                return Err(Error::party(
                    server.name(),
                    format!("{} prepared deployment {d}, not {deployment}", server.name()),
                ));
            }
            other => {
                return Err(Error::party(
                    server.name(),
                    format!("{} sent {other:?} instead of preparing deployment {deployment}", server.name()),
                ));
            }
        }
    }
    for &server in commit_to {
        let commit = Control::Commit { deployment: deployment.clone() };
        session.link.send(Party::ModelOwner, server, key, commit.encode())?;
    }
    Ok(())
}

/// `tfe-run predict --model NAME`: the client, who never holds the weights, gets
/// predictions for all rows of its inputs from a deployed model. The rows go in
/// batches of the deployment's batch size, all in one session (the weights'
/// masks are opened once); the last batch is padded with zero rows, whose
/// outputs are dropped.
/// `inputs` maps the deployment's public plan to the arrays to feed (the
/// caller only then knows which placeholder a positional input is for).
/// A session that finds the servers on another deployment than the one described
/// (a redeploy committed in between, or committed on one server a moment before
/// the other) is refused before anything runs, and started afresh this often.
/// With a cache of descriptions, the deployment last run with is named at once.
/// If the inputs do not fit it, or the servers refuse it as not theirs, the entry
/// is forgotten and the prediction starts afresh with server1's description, so
/// that such an error is only ever reported about the deployment server1 holds.
/// Any other failure to start (another refusal, a party that does not answer)
/// is reported as it is, and not waited for a second time; the entry is
/// forgotten all the same.
pub fn predict_deployed(
    remote: &Remote,
    name: &str,
    inputs: impl Fn(&Plan) -> Result<BTreeMap<String, ArrayD<f32>>>,
) -> Result<(Arc<Program>, Tensor, Outcome)> {
    const ATTEMPTS: u32 = 3;
    let cached = remote.descriptions.as_ref().map(|c| c.entry(&remote.cluster, remote.principal.as_deref(), name));
    if let Some(entry) = &cached
        && let Some((deployment, program)) = entry.load()
    {
        let (e, afresh) = match predict_described(remote, name, || split_inputs(program, deployment, &inputs)) {
            Attempt::Ran(result) => return result.map(|(program, output, outcome, _)| (program, output, outcome)),
            // The inputs do not fit the cached plan; server1's may take them.
            Attempt::NotDescribed(e) => (e, true),
            // Only a refusal of the deployment as not the servers' is the entry's doing.
            Attempt::NotStarted(e) => {
                let stale = e.downcast_ref::<super::Stale>().is_some();
                (e, stale)
            }
        };
        entry.forget();
        if !afresh {
            return Err(e);
        }
        tracing::debug!("the cached description of `{name}` did not start a session, asking server1: {e:#}");
    }
    let mut attempt = 1;
    loop {
        let result = match predict_described(remote, name, || describe(remote, name, &inputs)) {
            Attempt::Ran(result) => result,
            Attempt::NotDescribed(e) | Attempt::NotStarted(e) => Err(e),
        };
        match result {
            Err(e) if attempt < ATTEMPTS && e.downcast_ref::<super::Stale>().is_some() => {
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                attempt += 1;
            }
            Ok((program, output, outcome, deployment)) => {
                if let Some(entry) = &cached {
                    entry.store(&deployment, &program);
                }
                return Ok((program, output, outcome));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a prediction runs with: the deployment, its program, and the client's
/// inputs split into that deployment's batches.
struct Described {
    program: Arc<Program>,
    deployment: Deployment,
    batches: crate::batches::Batches,
    predictions: u32,
}

/// How far a prediction got: it ran (and this is its result); its description
/// did not fit the inputs (or server1 gave none), before any hello; or its
/// session did not start (a party refused it or did not answer).
enum Attempt<T> {
    Ran(Result<T>),
    NotDescribed(anyhow::Error),
    NotStarted(anyhow::Error),
}

/// A successful prediction and the deployment it ran with.
type Ran = (Arc<Program>, Tensor, Outcome, Deployment);

/// The deployment server1 describes, on a connection of its own.
fn describe(
    remote: &Remote,
    name: &str,
    inputs: &impl Fn(&Plan) -> Result<BTreeMap<String, ArrayD<f32>>>,
) -> Result<Described> {
    let describe = Session::new(remote, Party::Client, &[])?;
    let ready = describe.start(Party::Server1, Request::Describe { name: name.to_string() })?;
    describe.finish(Vec::new(), &[], 0)?;
    let missing = || format!("server1 did not send the program of model `{name}`");
    let (program, deployment) = (ready.deployed.with_context(missing)?, ready.deployment.with_context(missing)?);
    // The crypto producer runs the program sent to it: the one whose digest
    // both servers check as the deployment's.
    if program.digest() != deployment.digest {
        return Err(Error::party(
            "server1",
            format!("server1 sent a program of model `{name}` that is not the one of its deployment {deployment}"),
        ));
    }
    program
        .check()
        .map_err(|e| Error::party("server1", format!("server1 sent a program this build does not run: {e:#}")))?;
    split_inputs(*program, deployment, inputs)
}

/// The deployment a cached description names or server1 describes (a cached one
/// was checked by [`super::descriptions::Descriptions::load`] as [`describe`]
/// checks server1's), and the client's inputs cut into its batches.
fn split_inputs(
    program: Program,
    deployment: Deployment,
    inputs: &impl Fn(&Plan) -> Result<BTreeMap<String, ArrayD<f32>>>,
) -> Result<Described> {
    let plan = &program.plan;
    let inputs = inputs(plan)?;
    // The batch is the deployment's, maybe chosen with --batch-size: a model
    // that combines the rows of its batch runs exactly one batch.
    let batches = crate::batches::split(plan, &inputs, crate::batches::WholeBatches::Refused)?;
    let predictions = crate::runtime::prediction_count(batches.feeds.len())?;
    party::check_values(plan, program.fp(), None, &batches.feeds)?;
    Ok(Described { program: Arc::new(program), deployment, batches, predictions })
}

/// One session of a prediction with the deployment `describe` gives, which runs
/// while the session's connections are being opened.
fn predict_described(remote: &Remote, name: &str, describe: impl FnOnce() -> Result<Described>) -> Attempt<Ran> {
    // The prediction's own connections are opened while server1 describes the
    // deployment: its start then costs no TLS handshake.
    let session = match Session::new(remote, Party::Client, &[]) {
        Ok(session) => session,
        Err(e) => return Attempt::NotStarted(e),
    };
    let servers = [Party::Server1, Party::Server0];
    let opened = match session.open(Party::Client, &[servers[0], servers[1], Party::Dealer]) {
        Ok(opened) => opened,
        Err(e) => return Attempt::NotStarted(e),
    };
    // Whatever fails before the hellos closes the connections opened for them unused.
    let Described { program, deployment, batches, predictions } = match describe() {
        Ok(described) => described,
        Err(e) => {
            session.close_unused(opened);
            return Attempt::NotDescribed(e);
        }
    };
    let crate::batches::Batches { feeds: batches, rows } = batches;
    let plan = program.plan.clone();
    // Each server pins the deployment named here, or refuses.
    let request = Request::PredictDeployed { name: name.to_string(), predictions, deployment: deployment.clone() };
    let digest = deployment.digest.clone();
    let dealt = Request::Predict { program: Box::new(Program::clone(&program)), predictions, digest };
    let starts = vec![(servers[0], request.clone()), (servers[1], request), (Party::Dealer, dealt)];
    let peers = match session.hellos(starts, opened) {
        Ok(peers) => peers,
        Err(e) => return Attempt::NotStarted(e),
    };
    // The client's shares follow the hellos at once rather than a round trip
    // later, after the readies: each server gets only what it would get then
    // (a seed, or the input minus the other's share), and a server that
    // refuses the session drops it unread. A refusal is reported as such,
    // and stops the client.
    let started = || -> Result<()> {
        let readies = session.readies(&peers)?;
        for (server, ready) in servers.into_iter().zip(readies) {
            let theirs = ready.deployment;
            if theirs.as_ref() != Some(&deployment) {
                return Err(Error::party(
                    server.name(),
                    format!("model `{name}`: {} started with deployment {theirs:?}, not {deployment}", server.name()),
                ));
            }
        }
        Ok(())
    };
    let (local, started) = std::thread::scope(|scope| {
        let local = scope.spawn(|| run_local(&session, &program, None, Some(&batches)));
        let started = started();
        if let Err(e) = &started {
            Transport::abort(&*session.link, format!("{e:#}"));
        }
        (local.join().expect("the client thread panicked"), started)
    });
    if let Err(e) = started {
        return Attempt::NotStarted(e);
    }
    Attempt::Ran((|| {
        let outcome = session.finish(local, &[Party::Server0, Party::Server1, Party::Dealer], batches.len())?;
        let output = crate::batches::join(&plan, outcome.outputs.clone(), rows)?;
        Ok((program, output, outcome, deployment))
    })())
}

/// `tfe-run status`: each serving party's [`PartyStatus`], asked as the client
/// (or `--as` principal) over its authenticated connection, all three at once;
/// for a party that did not answer, why. A certificate of this side's that
/// cannot be read is refused before any party is asked.
pub fn status(remote: &Remote) -> Result<Vec<(Party, Result<PartyStatus>)>> {
    remote.security.identity_as(Party::Client, remote.principal.as_deref())?;
    let parties = [Party::Server0, Party::Server1, Party::Dealer];
    Ok(std::thread::scope(|scope| {
        let asked: Vec<_> = parties.iter().map(|&p| (p, scope.spawn(move || status_of(remote, p)))).collect();
        asked
            .into_iter()
            .map(|(p, h)| (p, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("asking {} panicked", p.name())))))
            .collect()
    }))
}

fn status_of(remote: &Remote, party: Party) -> Result<PartyStatus> {
    let session = Session::new(remote, Party::Client, &[])?;
    let ready = session.start(party, Request::Status);
    session.collect(Vec::new(), &[]);
    let status = ready?.status.with_context(|| format!("{} answered without its status", party.name()))?;
    if status.party != party {
        bail!("the party at {}'s address says it is {}", party.name(), status.party.name());
    }
    Ok(*status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_over_one_frame_is_refused_before_sending() {
        let limit = crate::transport::wire::MAX_FRAME as u64;
        assert!(check_frame(limit, "x").is_ok());
        let e = check_frame(limit + 1, "the shares of the features").unwrap_err().to_string();
        assert!(e.contains("the shares of the features would be one message of 1074 MB"), "{e}");
        // 170 000 rows of 784 features fit; 172 000 do not.
        let spec = |rows| TrainSpec {
            owners: vec![rows],
            features: 784,
            outputs: 10,
            epochs: 1,
            batch_size: 32,
            learning_rate: 0.5,
            feature_bound: 32.0,
            shuffle: None,
            frac_bits: 16,
            held: Vec::new(),
            comparison: Default::default(),
        };
        assert!(check_frame(spec(170_000).largest_message(), "x").is_ok());
        assert!(check_frame(spec(172_000).largest_message(), "x").is_err());
    }
}
