//! Parties on separate hosts: `tfe-run serve` runs server0, server1 or the crypto
//! producer; the driver (`tfe-run MODEL INPUT --config`, `deploy`, `predict`)
//! plays the model owner and the client. The party programs are the ones of the
//! simulated mode ([`crate::runtime`]); only the transport differs.
//!
//! # A session
//!
//! Every session has a fresh random id and its own connections, so concurrent
//! sessions never share a socket or a message key. The driver, as the client (as
//! the model owner for `deploy` and `train`), dials server1, server0 and the
//! crypto producer all at once (one network delay for all three, not one each),
//! each time with a [`Control::Hello`] carrying its [`Request`], and waits for
//! [`Control::Ready`]. A prediction with a deployed model opens its three
//! connections while server1 describes the deployment, and sends the client's
//! shares right after the hellos instead of after the readies. Before it
//! answers, server0 joins server1 and the crypto producer joins both servers,
//! on connections kept open for it ([`standby`]) or dialled. Since nothing
//! orders these joins, a server
//! keeps a join whose session has not started there yet for up to
//! `--handshake-timeout` (at most 4 × `--max-sessions` such joins wait; more
//! are refused) and hands it the session when its hello arrives. The driver's
//! other party (the model owner of a prediction with its own weights, the data
//! owners of a training) then dials both servers. Each party runs its program;
//! the remote ones end with [`Control::Done`] (their statistics) or an abort
//! frame that names the cause. A deployment is the exception: it starts server1
//! before server0, so that both servers claim the model's name in one order.
//!
//! # Versions
//!
//! Every hello and every ready carries the sender's [`Version`]: its
//! [`WIRE_VERSION`] and its release. The receiving side reads the version
//! before anything else of the frame ([`declared_version`]), so a frame of
//! another format is refused for its version, naming both, and never misread
//! as this build's types. A secure program ([`crate::lower::Program`]: the
//! lowered plan, its own format version inside) travels with its digest, which
//! the server recomputes before it checks the program ([`check_program`]) and
//! before it builds anything from it.
//!
//! # Deployments
//!
//! A deployment is kept under the deploying session's id with the digest of its
//! secure program ([`Deployment`]). Its shares stay pending on each server until the
//! model owner has heard [`Control::Prepared`] from both and sends
//! [`Control::Commit`]; a prediction names the deployment it runs with, and a
//! server holding another refuses it. If a commit reaches one server only (the
//! driver dies between the two), the servers hold different deployments and
//! every prediction is refused, naming both, until the model is deployed again.

pub mod descriptions;
pub mod driver;
pub mod log;
pub mod metrics;
pub mod serve;
pub mod standby;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::lower::Program;
use crate::runtime::party::Report;
use crate::transport::network::Stream;
use crate::transport::sniff;
use crate::transport::tls::{self, Identity};
use crate::transport::wire::{Frame, read_frame, write_frame};
use crate::transport::{Party, tls::check_peer};

/// The format of everything parties send each other. Bump it with any change
/// to the JSON of [`Request`], [`Control`], [`Deployment`], [`Program`] (whose
/// own `format` covers its plan and units), [`crate::train::TrainSpec`], [`crate::train::DatasetInfo`],
/// [`Report`], or to the frames of [`crate::transport::wire`] and the payloads
/// of the protocols' messages: parties of different formats then refuse each
/// other at the hello instead of misreading each other. 0 stands for the
/// releases before versioning, whose hellos carry no version. Never change
/// [`Version`], the names `Hello` and `Ready` or [`Control::Refused`]: they are
/// how parties of different formats recognise and refuse each other.
/// 2: sessions carry the lowered secure program instead of the plan (whose
/// steps carry `op_type` and windows a `layout`); one table of message steps
/// outside the programs (training's loss and weights moved); and server 1
/// acknowledges a prediction's steps too.
/// 3: [`Request::Status`], answered by a ready with a [`PartyStatus`].
/// 4: [`Request::Standby`], connections kept open between the serving parties.
/// 5 (this release): comparisons of values at their width (64 − f bits,
/// [`crate::protocol::Width`]): the bitwise DReLU's messages and the FSS keys
/// of those comparisons are shorter.
pub const WIRE_VERSION: u32 = 5;

/// The wire format and the release a party speaks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Version {
    pub format: u32,
    /// The tfe-run release (`CARGO_PKG_VERSION`), to say which one to run.
    pub release: String,
}

impl Version {
    /// This build's.
    pub fn current() -> Version {
        Version { format: WIRE_VERSION, release: env!("CARGO_PKG_VERSION").to_string() }
    }

    /// Why `peer` and `local` (as a refusal names them, e.g. "the client", "this
    /// server") cannot work together, or `None` if they speak the same format.
    pub fn mismatch(&self, peer: &str, local: &str) -> Option<String> {
        let ours = Version::current();
        (self.format != ours.format)
            .then(|| format!("{peer} speaks {self}, {local} {ours}: run the same tfe-run release on every party"))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The release is the peer's text: bounded, and escaped for the log.
        let release: String = self.release.chars().take(32).collect();
        match self.format {
            0 => write!(f, "wire format 0 (a tfe-run from before versioning)"),
            format => write!(f, "wire format {format} (tfe-run {})", release.escape_debug()),
        }
    }
}

/// The version a hello or a ready declares (0 without one), read before the
/// rest of the frame, which another format may not fit; also who a hello says
/// it is from, if this build knows the party. `None` for other frames.
pub fn declared_version(json: &[u8]) -> Option<(Version, Option<Party>)> {
    /// Only the fields every format keeps; the others are skipped unparsed.
    #[derive(Deserialize)]
    enum Head {
        Hello {
            #[serde(default)]
            version: Version,
            #[serde(default)]
            from: Option<serde_json::Value>,
        },
        Ready {
            #[serde(default)]
            version: Version,
        },
    }
    match serde_json::from_slice(json).ok()? {
        Head::Hello { version, from } => Some((version, from.and_then(|f| serde_json::from_value(f).ok()))),
        Head::Ready { version } => Some((version, None)),
    }
}

/// Refuse a program whose digest here is not the one its sender computed
/// (altered or cut in transit, or serialised differently by another build), or
/// that this build would not run ([`Program::check`]).
pub fn check_program(program: &Program, sent: &str) -> Result<()> {
    let found = program.digest();
    if found != sent {
        bail!(
            "the secure program's digest is {found} here, {} as sent: it was altered in transit or serialised by \
             another build; run the same tfe-run release on every party",
            sent.chars().take(64).collect::<String>().escape_debug()
        );
    }
    program.check()
}

/// What a session is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Predictions with a model whose weights the model owner shares in this
    /// session; `digest` is the program's [`Program::digest`].
    Predict { program: Box<Program>, predictions: u32, digest: String },
    /// Predictions with a model deployed earlier (servers only; the driver sends
    /// the crypto producer a `Predict` with the deployment's program). Both
    /// servers run exactly `deployment`, or refuse.
    PredictDeployed { name: String, predictions: u32, deployment: Deployment },
    /// Receive a model's weight shares from the model owner and keep them (servers
    /// only): pending until the model owner commits it, which it does once both
    /// servers said they hold all their shares ([`Control::Prepared`]).
    /// Only the principal that deployed `name` replaces it, and only with
    /// `replace`. `digest` is the program's [`Program::digest`].
    Deploy {
        name: String,
        program: Box<Program>,
        #[serde(default)]
        replace: bool,
        digest: String,
    },
    /// Only answer with a deployed model's program (servers only).
    Describe { name: String },
    /// Train logistic regression on the held data sets the spec names and on rows
    /// the data owners share in this session.
    Train { spec: crate::train::TrainSpec },
    /// Receive a data owner's row shares and keep them for training (servers
    /// only) by the model-owner principals `trainers`. Only the principal that
    /// contributed `name` replaces it, and only with `replace`.
    Contribute {
        name: String,
        info: crate::train::DatasetInfo,
        #[serde(default)]
        trainers: Vec<String>,
        #[serde(default)]
        replace: bool,
    },
    /// Only answer with a held data set's public description (servers only).
    DescribeData { name: String },
    /// Only answer with the party's [`PartyStatus`] (`tfe-run status`): no
    /// session starts, and it is answered while the party drains too.
    Status,
    /// Not a session: keep this connection, open and authenticated, for a later
    /// session's join, whose hello is its next frame (between serving parties
    /// only: server0 to server1, the crypto producer to both servers), so that
    /// a session pays no TLS handshake between them. Never answered.
    Standby,
}

/// What `tfe-run status` shows of a serving party: what it runs, the limits it
/// runs with, what it does now and what it holds. Public, as the metrics are
/// (docs/DEPLOYMENT.md); only parties of the cluster's CA may ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyStatus {
    pub party: Party,
    pub version: Version,
    /// The commit the release was built from (`tfe-run --version`).
    pub commit: String,
    /// No longer taking sessions: a signal asked it to stop.
    pub draining: bool,
    pub sessions: u64,
    pub tls: bool,
    pub limits: StatusLimits,
    pub models: Vec<HeldModel>,
    pub datasets: Vec<HeldDataset>,
}

/// A party's limits, as its flags set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusLimits {
    pub max_sessions: u64,
    pub max_handshakes: u64,
    pub max_memory: u64,
    pub max_session_buffer: u64,
    /// Seconds: --timeout, --handshake-timeout, --join-timeout.
    pub timeout: f64,
    pub handshake_timeout: f64,
    pub join_timeout: f64,
}

/// A model deployed on a server: its name and which deployment of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldModel {
    pub name: String,
    pub deployment: Deployment,
}

/// A data set held for training: its name and public size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDataset {
    pub name: String,
    pub rows: u64,
    pub features: u64,
}

/// Session control messages (JSON frames).
#[derive(Debug, Serialize, Deserialize)]
pub enum Control {
    /// The first frame on every connection: the dialler's version, who dials,
    /// for which session, and (from the driver) what for.
    Hello { version: Version, from: Party, session: u64, request: Option<Box<Request>> },
    /// The party has joined its peers and starts; for a deployed model, the
    /// deployment's secure program.
    Ready {
        /// The server's version, which the driver checks as the server checked its own.
        version: Version,
        deployed: Option<Box<Program>>,
        /// For a deployed model: which deployment of it this server holds.
        #[serde(default)]
        deployment: Option<Deployment>,
        /// For `DescribeData`: the data set's public description.
        #[serde(default)]
        dataset: Option<crate::train::DatasetInfo>,
        /// For `Status`: the party's.
        #[serde(default)]
        status: Option<Box<PartyStatus>>,
    },
    /// The party's work is done.
    Done { report: Box<Report> },
    /// The party refused the session before starting. Its JSON must stay the
    /// same in every format: it is how a party tells one of another format why.
    Refused {
        reason: String,
        /// Refused because it holds another deployment of the model than the
        /// session named: one that a new session may find both servers hold.
        #[serde(default)]
        stale: bool,
    },
    /// A server holds all its shares of `deployment`, not yet visible to
    /// predictions (sent as a message keyed [`commit_key`]).
    Prepared { deployment: Deployment },
    /// The model owner: both servers hold `deployment` whole; make it the one
    /// that serves (sent as a message keyed [`commit_key`]).
    Commit { deployment: Deployment },
}

/// One deployment of a model: the id both servers keep it under (the deploying
/// session's id) and the SHA-256 of its secure program (public plan, fixed point,
/// lowering), so that a prediction can name exactly the deployment it runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: u64,
    /// [`Program::digest`] of its program.
    pub digest: String,
}

impl std::fmt::Display for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x} (plan {})", self.id, self.digest.get(..12).unwrap_or(&self.digest))
    }
}

/// A refusal because the deployment a session named is not (or no longer) the
/// one a server holds.
#[derive(Debug)]
pub struct Stale(pub String);

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stale {}

/// The key of a deployment's [`Control::Prepared`] and [`Control::Commit`]: as
/// messages, their waits end when the sender falls silent (not after a fixed
/// time), so a slow transfer of a large model's shares is no failure.
pub fn commit_key(session: u64) -> crate::transport::MsgKey {
    crate::transport::MsgKey { session, seq: u32::MAX, step: 0, tag: u32::MAX - 7 }
}

impl Control {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("control messages serialise")
    }

    pub fn decode(json: &[u8], from: &str) -> Result<Control> {
        serde_json::from_slice(json).with_context(|| format!("{from} sent a malformed control message"))
    }
}

/// How connections are secured.
#[derive(Debug, Clone)]
pub enum Security {
    /// Mutually authenticated TLS, with the certificates in this folder.
    Tls(PathBuf),
    /// Plain TCP (`--insecure`): for experiments on a closed network only.
    Insecure,
}

impl Security {
    /// From the command line: `--certs DIR`, else the cluster file's folder, else
    /// `--insecure`, else refuse.
    pub fn choose(certs: Option<&Path>, from_config: Option<&Path>, insecure: bool) -> Result<Security> {
        match (certs.or(from_config), insecure) {
            (Some(_), true) => Err(Error::bad_input("give either --certs or --insecure, not both")),
            (Some(dir), false) => Ok(Security::Tls(dir.to_path_buf())),
            (None, true) => {
                eprintln!(
                    "warning: --insecure: connections are neither encrypted nor authenticated; anyone on the \
                     network can read the masked values and impersonate a party"
                );
                Ok(Security::Insecure)
            }
            (None, false) => Err(Error::bad_input(
                "no certificates: pass --certs DIR (made by `tfe-run certs`), set [tls] certs in the cluster \
                 config, or run without TLS with --insecure",
            )),
        }
    }

    pub fn identity(&self, party: Party) -> Result<Option<Identity>> {
        self.identity_as(party, None)
    }

    /// `party`'s TLS settings from the key pair of principal `name` (`NAME.pem`,
    /// `NAME.key`), or of the role itself without a name.
    pub fn identity_as(&self, party: Party, name: Option<&str>) -> Result<Option<Identity>> {
        match self {
            Security::Tls(dir) => Ok(Some(tls::identity_as(dir, party, name.unwrap_or(party.name()))?)),
            Security::Insecure => Ok(None),
        }
    }
}

/// Dial `peer` at `address` as `local` and say hello.
pub async fn dial(
    identity: Option<&Identity>,
    local: Party,
    peer: Party,
    address: &str,
    session: u64,
    request: Option<Request>,
    timeout: Duration,
) -> Result<Box<dyn Stream>> {
    let stream = connect(identity, local, peer, address, timeout).await?;
    hello_on(stream, local, peer, address, session, request, timeout).await
}

/// [`dial`] on a connection [`connect`] opened (ahead of time): the hello.
pub async fn hello_on(
    stream: Box<dyn Stream>,
    local: Party,
    peer: Party,
    address: &str,
    session: u64,
    request: Option<Request>,
    timeout: Duration,
) -> Result<Box<dyn Stream>> {
    let hello = Control::Hello { version: Version::current(), from: local, session, request: request.map(Box::new) };
    send_hello(stream, hello, local, peer, address, timeout).await
}

/// Dial `peer` as `local` for [`Request::Standby`]: a connection that
/// [`join_on`] later gives to a session.
pub async fn dial_standby(
    identity: Option<&Identity>,
    local: Party,
    peer: Party,
    address: &str,
    timeout: Duration,
) -> Result<Box<dyn Stream>> {
    // The id names no session: it only keeps the hello's format.
    dial(identity, local, peer, address, new_session_id()?, Some(Request::Standby), timeout).await
}

/// Join `session` as `local` on a standby connection ([`dial_standby`]): one
/// frame, no handshake.
pub async fn join_on(mut stream: Box<dyn Stream>, local: Party, session: u64) -> Result<Box<dyn Stream>> {
    let hello = Control::Hello { version: Version::current(), from: local, session, request: None };
    write_frame(&mut stream, &Frame::Control(hello.encode())).await?;
    tokio::io::AsyncWriteExt::flush(&mut stream).await?;
    Ok(stream)
}

/// TCP and (unless insecure) TLS to `peer` at `address`, no hello yet (the
/// peer waits for it up to its `--handshake-timeout`).
pub async fn connect(
    identity: Option<&Identity>,
    local: Party,
    peer: Party,
    address: &str,
    timeout: Duration,
) -> Result<Box<dyn Stream>> {
    let at = || format!("{} at {address}", peer.name());
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| Error::party(peer.name(), format!("cannot reach {}: no answer within {timeout:?}", at())))?
        .with_context(|| format!("cannot reach {}", at()))?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match identity {
        Some(id) => match tokio::time::timeout(timeout, id.connector.connect(tls::server_name(peer)?, tcp)).await {
            Err(_) => return Err(Error::party(peer.name(), format!("TLS handshake with {} timed out", at()))),
            // Plain frames where a TLS record should be: the peer runs --insecure.
            Ok(Err(e)) if sniff::is_not_tls(&e) => {
                return Err(Error::party(peer.name(), sniff::peer_speaks_plaintext(peer, address, local)));
            }
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context(format!("TLS handshake with {} failed", at()))),
            Ok(Ok(tls)) => Box::new(tls),
        },
        None => Box::new(sniff::Plain::new(tcp, sniff::peer_speaks_tls(peer, address, local))),
    };
    Ok(stream)
}

/// Send the first frame, `hello`, on a connection just made to `peer`.
async fn send_hello(
    mut stream: Box<dyn Stream>,
    hello: Control,
    local: Party,
    peer: Party,
    address: &str,
    timeout: Duration,
) -> Result<Box<dyn Stream>> {
    let at = || format!("{} at {address}", peer.name());
    let sent = async {
        write_frame(&mut stream, &Frame::Control(hello.encode())).await?;
        tokio::io::AsyncWriteExt::flush(&mut stream).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = sent {
        // A peer that refused our certificate (or, TLS, our plain hello) sent
        // an alert and closed, so the write failed (a broken pipe): the alert,
        // if it came, says why.
        let mut head = [0u8; 16];
        let read = tokio::time::timeout(timeout.min(Duration::from_secs(2)), async {
            loop {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut head).await {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(anyhow::Error::from(e)),
                }
            }
        })
        .await;
        if let Ok(Some(read)) = read {
            if let Some(alert) = tls::received_alert(&read) {
                return Err(Error::party(peer.name(), tls::alert_text(peer, local, alert)));
            }
            if let Some(mismatch) = sniff::mismatch_in(&read) {
                return Err(Error::party(peer.name(), mismatch.to_string()));
            }
        }
        if let Some(alert) = tls::received_alert(&e) {
            return Err(Error::party(peer.name(), tls::alert_text(peer, local, alert)));
        }
        return Err(e.context(format!("sending the hello to {} failed", at())));
    }
    Ok(stream)
}

/// Do the first bytes on `tcp` (peeked, not taken) open a TLS ClientHello? A
/// plain hello is told from one by its sixth byte at the latest, and nearly
/// always by its first: only a prefix that could still be a ClientHello is
/// waited on (within the caller's handshake deadline).
async fn opens_with_client_hello(tcp: &TcpStream) -> Result<bool> {
    let mut head = [0u8; 6];
    loop {
        let n = tcp.peek(&mut head).await?;
        match sniff::client_hello(head.get(..n).unwrap_or_default()) {
            Some(hello) => return Ok(hello),
            // Closed before it could tell: the hello's read reports it.
            None if n == 0 => return Ok(false),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A connection closed cleanly after its handshake, before any hello: a
/// driver that opened it ahead of a session it did not start (its describe
/// failed, say). Not a refusal.
#[derive(Debug)]
pub struct ClosedUnused;

impl std::fmt::Display for ClosedUnused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed unused, before its hello")
    }
}

impl std::error::Error for ClosedUnused {}

/// Who is on the other end of an accepted connection.
pub struct Peer {
    pub party: Party,
    /// From the verified certificate ([`tls::principal_of`]), never from the
    /// hello; [`INSECURE_PRINCIPAL`] without TLS.
    pub principal: String,
}

/// The principal of every peer without TLS, where nobody is authenticated.
pub const INSECURE_PRINCIPAL: &str = "insecure";

/// Accept a connection: TLS handshake, then the hello, checked against the
/// peer's certificate.
pub async fn accept(
    identity: Option<&Identity>,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<(Box<dyn Stream>, Peer, u64, Option<Request>)> {
    tcp.set_nodelay(true)?;
    let (mut stream, cert): (Box<dyn Stream>, _) = match identity {
        Some(id) => {
            let tls = match tokio::time::timeout(timeout, id.acceptor.accept(tcp).into_fallible()).await {
                Err(_) => bail!("TLS handshake timed out"),
                // rustls has answered with an alert: let the peer read it.
                Ok(Err((e, mut tcp))) if sniff::is_not_tls(&e) => {
                    sniff::refuse(&mut tcp, &[]).await;
                    bail!("TLS handshake failed: {e}: {}", sniff::plaintext_peer());
                }
                Ok(Err((e, _))) => match tls::handshake_hint(&e) {
                    Some(hint) => bail!("TLS handshake failed: {e}: {hint}"),
                    None => bail!("TLS handshake failed: {e}"),
                },
                Ok(Ok(tls)) => tls,
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
            (Box::new(tls), cert)
        }
        None => {
            if opens_with_client_hello(&tcp).await? {
                let reason = sniff::tls_peer();
                let refusal = Control::Refused { reason: reason.clone(), stale: false };
                let mut frame = Vec::new();
                write_frame(&mut frame, &Frame::Control(refusal.encode())).await?;
                let mut tcp = tcp;
                sniff::refuse(&mut tcp, &frame).await;
                bail!("{reason}");
            }
            (Box::new(tcp), None)
        }
    };
    let frame = tokio::time::timeout(timeout, read_frame(&mut stream, 1 << 26))
        .await
        .map_err(|_| anyhow::anyhow!("no hello within {timeout:?}"))??;
    let json = match frame {
        Some(Frame::Control(json)) => json,
        None => return Err(ClosedUnused.into()),
        Some(_) => bail!("the first frame is not a hello"),
    };
    // The version first: the rest may be of another format.
    if let Some((version, from)) = declared_version(&json) {
        let peer = from.map_or("the peer".to_string(), |p| format!("the {}", p.name()));
        if let Some(reason) = version.mismatch(&peer, "this server") {
            refuse_on(&mut stream, reason.clone(), false).await;
            bail!("{reason}");
        }
    }
    let Control::Hello { from, session, request, .. } = Control::decode(&json, "the peer")? else {
        bail!("the first frame is not a hello")
    };
    let principal = match identity {
        Some(_) => {
            let cert = cert.context("the peer presented no certificate")?;
            if let Err(e) = check_peer(&cert, from) {
                // Its chain is the cluster's, so it is one of the parties, with the
                // wrong certificate: tell it which check failed.
                let name = from.name();
                let reason =
                    format!("the TLS certificate of {name} is not for `{name}`: its subjectAltName must name it");
                refuse_on(&mut stream, reason, false).await;
                return Err(e);
            }
            tls::principal_of(&cert, from)?
        }
        None => INSECURE_PRINCIPAL.to_string(),
    };
    Ok((stream, Peer { party: from, principal }, session, request.map(|r| *r)))
}

/// Send `stream`'s peer a refusal and close the connection, lingering: the
/// peer may have sent more than its hello (a client's input shares), and
/// closing on unread bytes would reset the connection and lose the refusal.
pub async fn refuse_on(stream: &mut Box<dyn Stream>, reason: String, stale: bool) {
    let mut frame = Vec::new();
    if write_frame(&mut frame, &Frame::Control(Control::Refused { reason, stale }.encode())).await.is_ok() {
        sniff::answer_and_close(stream, &frame).await;
    }
}

/// The next frame on a standby connection ([`Request::Standby`]) from `from`,
/// within `idle`: the hello of the session it joins, whose id is returned.
pub async fn read_join(stream: &mut Box<dyn Stream>, from: Party, idle: Duration) -> Result<u64> {
    let frame = match tokio::time::timeout(idle, read_frame(stream, 1 << 16)).await {
        Err(_) => bail!("joined no session within {idle:?}"),
        Ok(frame) => frame?,
    };
    let Some(Frame::Control(json)) = frame else { bail!("closed before it joined a session") };
    match Control::decode(&json, from.name())? {
        Control::Hello { from: said, session, request: None, .. } if said == from => Ok(session),
        _ => bail!("the frame after a standby hello is not a join of {}'s", from.name()),
    }
}

/// A session's id as the servers' logs and the drivers' errors both print it
/// (`session 00c0ffee12345678`), so that an error can be found in the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session {:016x}", self.0)
    }
}

/// A fresh session id from the OS's CSPRNG.
pub fn new_session_id() -> Result<u64> {
    let seed = crate::ring::os_seed()?;
    Ok(u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_from_before_versioning_is_read_as_wire_format_0() {
        let old = br#"{"Hello":{"from":"client","session":7,"request":{"Describe":{"name":"m"}}}}"#;
        let (version, from) = declared_version(old).unwrap();
        assert_eq!((version.format, from), (0, Some(Party::Client)));
        let reason = version.mismatch("the client", "this server").unwrap();
        let ours = format!("wire format {WIRE_VERSION} (tfe-run {})", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            reason,
            format!(
                "the client speaks wire format 0 (a tfe-run from before versioning), this server {ours}: run the \
                 same tfe-run release on every party"
            )
        );
    }

    #[test]
    fn a_version_is_read_from_a_frame_this_build_cannot_decode() {
        let new = br#"{"Hello":{"version":{"format":99,"release":"9.9.9\nforged log line"},"from":"server7","session":"x","request":{"Teleport":{}}}}"#;
        assert!(Control::decode(new, "x").is_err());
        let (version, from) = declared_version(new).unwrap();
        assert_eq!((version.format, from), (99, None));
        assert_eq!(version.to_string(), r"wire format 99 (tfe-run 9.9.9\nforged log line)");
        assert!(declared_version(&Control::Done { report: Box::default() }.encode()).is_none());
        assert!(declared_version(b"{\"Hello\"").is_none());
        assert!(Version::current().mismatch("a", "b").is_none());
    }

    /// A plan of one ReLU over a client input, as a driver lowers and sends it.
    fn relu_plan() -> crate::plan::Plan {
        use crate::plan::{Op, Plan, Source, Step, Value};
        let value = |name: &str, source| Value::float(name, &[1, 2], source);
        Plan {
            values: vec![value("x", Source::Input { placeholder: "x".into() }), value("y", Source::Step(0))],
            steps: vec![Step { node: "y".into(), op_type: "Relu".into(), op: Op::Relu, inputs: vec![0], output: 1 }],
            inputs: vec![0],
            output: 1,
            output_node: "y".into(),
            weight_values: Default::default(),
        }
    }

    #[test]
    fn a_program_digest_is_checked_against_the_one_sent() {
        let plan = relu_plan();
        let lower = |f| crate::lower::lower(&plan, crate::ring::FixedPoint::new(f).unwrap()).unwrap();
        let digest = lower(16).digest();
        assert!(check_program(&lower(16), &digest).is_ok());
        let e = check_program(&lower(15), &digest).unwrap_err().to_string();
        assert!(e.contains(&digest) && e.contains(&lower(15).digest()), "{e}");
    }

    #[test]
    fn a_program_that_is_not_what_its_plan_lowers_to_is_refused() {
        let plan = relu_plan();
        let mut program = crate::lower::lower(&plan, crate::ring::FixedPoint::new(16).unwrap()).unwrap();
        // A ReLU run as a local step would open the input's shares' sum.
        program.kinds[0] = crate::ops::Kind::Local(crate::ops::Local);
        let e = check_program(&program, &program.digest()).unwrap_err().to_string();
        assert!(e.contains("not the one its plan lowers to"), "{e}");
        program.format += 1;
        let e = check_program(&program, &program.digest()).unwrap_err().to_string();
        let (theirs, ours) = (crate::lower::PROGRAM_FORMAT + 1, crate::lower::PROGRAM_FORMAT);
        assert!(e.contains(&format!("format {theirs}, this build runs format {ours}")), "{e}");
    }
}
