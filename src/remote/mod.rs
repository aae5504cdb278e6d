//! Parties on separate hosts: `tfe-run serve` runs server0, server1 or the crypto
//! producer; the driver (`tfe-run MODEL INPUT --config`, `deploy`, `predict`)
//! plays the model owner and the client. The party programs are the ones of the
//! simulated mode ([`crate::runtime`]); only the transport differs.
//!
//! # A session
//!
//! Every session has a fresh random id and its own connections, so concurrent
//! sessions never share a socket or a message key. The driver, as the client,
//! dials server1, server0 and the crypto producer in that order, each time with a
//! [`Control::Hello`] carrying its [`Request`], and waits for [`Control::Ready`].
//! Before it answers, server0 dials server1 and the crypto producer dials both
//! servers (so a dial always finds the session it joins). The model owner then
//! dials both servers. Each party runs its program; the remote ones end with
//! [`Control::Done`] (their statistics) or an abort frame that names the cause.

pub mod driver;
pub mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::plan::Plan;
use crate::runtime::party::Report;
use crate::transport::network::Stream;
use crate::transport::tls::{self, Identity};
use crate::transport::wire::{Frame, read_frame, write_frame};
use crate::transport::{Party, tls::check_peer};

/// What a session is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Predictions with a model whose weights the model owner shares in this session.
    Predict { plan: Plan, predictions: u32, frac_bits: u32 },
    /// Predictions with a model deployed earlier (servers only; the driver sends
    /// the crypto producer a `Predict` with the deployment's public plan).
    PredictDeployed { name: String, predictions: u32 },
    /// Receive a model's weight shares from the model owner and keep them (servers only).
    Deploy { name: String, plan: Plan, frac_bits: u32 },
    /// Only answer with a deployed model's public plan (servers only).
    Describe { name: String },
    /// Train logistic regression on the held data sets the spec names and on rows
    /// the data owners share in this session.
    Train { spec: crate::train::TrainSpec },
    /// Receive a data owner's row shares and keep them for training (servers only).
    Contribute { name: String, info: crate::train::DatasetInfo },
    /// Only answer with a held data set's public description (servers only).
    DescribeData { name: String },
}

/// Session control messages (JSON frames).
#[derive(Debug, Serialize, Deserialize)]
pub enum Control {
    /// The first frame on every connection: who dials, for which session, and
    /// (from the driver) what for.
    Hello { from: Party, session: u64, request: Option<Box<Request>> },
    /// The party has joined its peers and starts; for a deployed model, the
    /// deployment's public plan and fixed-point setting.
    Ready {
        deployed: Option<(Plan, u32)>,
        /// For `DescribeData`: the data set's public description.
        #[serde(default)]
        dataset: Option<crate::train::DatasetInfo>,
    },
    /// The party's work is done.
    Done { report: Box<Report> },
    /// The party refused the session before starting.
    Refused { reason: String },
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
            (Some(_), true) => Err(crate::error::Error::bad_input("give either --certs or --insecure, not both")),
            (Some(dir), false) => Ok(Security::Tls(dir.to_path_buf())),
            (None, true) => {
                eprintln!(
                    "warning: --insecure: connections are neither encrypted nor authenticated; anyone on the \
                     network can read the masked values and impersonate a party"
                );
                Ok(Security::Insecure)
            }
            (None, false) => Err(crate::error::Error::bad_input(
                "no certificates: pass --certs DIR (made by `tfe-run certs`), set [tls] certs in the cluster \
                 config, or run without TLS with --insecure",
            )),
        }
    }

    pub fn identity(&self, party: Party) -> Result<Option<Identity>> {
        match self {
            Security::Tls(dir) => Ok(Some(tls::identity(dir, party)?)),
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
    let at = || format!("{} at {address}", peer.name());
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {}: no answer within {timeout:?}", at()))?
        .with_context(|| format!("cannot reach {}", at()))?;
    tcp.set_nodelay(true)?;
    let mut stream: Box<dyn Stream> = match identity {
        Some(id) => Box::new(
            tokio::time::timeout(timeout, id.connector.connect(tls::server_name(peer), tcp))
                .await
                .map_err(|_| anyhow::anyhow!("TLS handshake with {} timed out", at()))?
                .with_context(|| format!("TLS handshake with {} failed", at()))?,
        ),
        None => Box::new(tcp),
    };
    let hello = Control::Hello { from: local, session, request: request.map(Box::new) };
    let sent = async {
        write_frame(&mut stream, &Frame::Control(hello.encode())).await?;
        tokio::io::AsyncWriteExt::flush(&mut stream).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = sent {
        // A peer that refused our certificate sent an alert and closed, so the
        // write failed (a broken pipe): the alert, if it came, says why.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(timeout.min(Duration::from_secs(2)), async {
            tokio::io::AsyncReadExt::read(&mut stream, &mut byte).await
        })
        .await;
        if let Ok(Err(read)) = read
            && let Some(alert) = tls::received_alert(&read.into())
        {
            bail!("{}", tls::alert_text(peer, local, alert));
        }
        if let Some(alert) = tls::received_alert(&e) {
            bail!("{}", tls::alert_text(peer, local, alert));
        }
        return Err(e.context(format!("sending the hello to {} failed", at())));
    }
    Ok(stream)
}

/// Accept a connection: TLS handshake, then the hello, checked against the
/// peer's certificate.
pub async fn accept(
    identity: Option<&Identity>,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<(Box<dyn Stream>, Party, u64, Option<Request>)> {
    tcp.set_nodelay(true)?;
    let (mut stream, cert): (Box<dyn Stream>, _) = match identity {
        Some(id) => {
            let tls = match tokio::time::timeout(timeout, id.acceptor.accept(tcp)).await {
                Err(_) => bail!("TLS handshake timed out"),
                Ok(Err(e)) => match tls::handshake_hint(&e) {
                    Some(hint) => bail!("TLS handshake failed: {e}: {hint}"),
                    None => bail!("TLS handshake failed: {e}"),
                },
                Ok(Ok(tls)) => tls,
            };
            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
            (Box::new(tls), cert)
        }
        None => (Box::new(tcp), None),
    };
    let frame = tokio::time::timeout(timeout, read_frame(&mut stream, 1 << 26))
        .await
        .map_err(|_| anyhow::anyhow!("no hello within {timeout:?}"))??;
    let Some(Frame::Control(json)) = frame else { bail!("the first frame is not a hello") };
    let Control::Hello { from, session, request } = Control::decode(&json, "the peer")? else {
        bail!("the first frame is not a hello")
    };
    if identity.is_some() {
        let cert = cert.context("the peer presented no certificate")?;
        if let Err(e) = check_peer(&cert, from) {
            // Its chain is the cluster's, so it is one of the parties, with the
            // wrong certificate: tell it which check failed.
            let name = from.name();
            let reason = format!("the TLS certificate of {name} is not for `{name}`: its subjectAltName must name it");
            let _ = write_frame(&mut stream, &Frame::Control(Control::Refused { reason }.encode())).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return Err(e);
        }
    }
    Ok((stream, from, session, request.map(|r| *r)))
}

/// A fresh session id from the OS's CSPRNG.
pub fn new_session_id() -> Result<u64> {
    let seed = crate::ring::os_seed()?;
    Ok(u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")))
}
