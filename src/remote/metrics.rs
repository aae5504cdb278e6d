//! `serve --metrics ADDR`: the party's metrics in the Prometheus text format
//! (OpenMetrics, through `prometheus-client`) at `GET /metrics`, and its health
//! at `GET /healthz` (200 `ok` while it serves, 503 `draining` once it stops
//! taking sessions), on an address of their own.
//!
//! The endpoint is plain HTTP and unauthenticated, so it says only what anyone
//! on the operator's network may know: counts, sizes, durations, limits, the
//! release and the names, deployment ids and plan digests of what is held (the
//! digest is of the public plan). Never a principal, a share, an input, an
//! output, a seed or a key; no label holds a peer's text but a model's or a
//! data set's name, which their owners chose and the driver's commands print.
//!
//! What a client of the endpoint can take is bounded: [`MAX_CONNECTIONS`] at
//! once (one more is closed unanswered), its request head within
//! [`HEADER_TIMEOUT`] and at most hyper's smallest buffer (8 KiB), one request
//! per connection, each connection over after [`CONNECTION_TIMEOUT`]; a body
//! is never read.

// Serves bytes from anyone on the network: nothing here may panic on them.
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::transport::Traffic;

/// Connections to the endpoint at once; one more is closed unanswered.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection to the endpoint may last, answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    /// What the session is for: `predict`, `deploy`, `train`, ... or `join`.
    request: String,
    /// `done`, `failed` or `refused`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    /// The exit-code category of the cause: `bad_input`, `invalid_model`,
    /// `unsupported`, `party` or `internal`.
    kind: String,
    /// `refused` (before the session started) or `failed` (while it ran).
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JoinLabels {
    /// `standby` (a connection kept open, no handshake) or `dialled`.
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    name: String,
    /// The deployment's id (the deploying session's), as the log prints it.
    deployment: String,
    /// SHA-256 of the deployment's public secure program.
    digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    name: String,
    rows: String,
    features: String,
}

/// What the party holds and does now, read at each scrape.
pub struct Snapshot {
    pub running: usize,
    pub handshakes: usize,
    /// Standby connections of peers waiting for a session to join.
    pub parked: usize,
    /// Messages buffered by all running sessions, in bytes.
    pub buffered: u64,
    pub draining: bool,
    /// (name, deployment id, plan digest) of each deployed model.
    pub models: Vec<(String, u64, String)>,
    /// (name, rows, features) of each data set held.
    pub datasets: Vec<(String, u64, u64)>,
}

/// The limits a party runs with, as gauges beside what they bound.
pub struct LimitValues {
    pub max_sessions: usize,
    pub max_handshakes: usize,
    pub max_session_buffer: u64,
    pub max_memory: u64,
}

/// A serving party's metrics.
pub struct Metrics {
    registry: Registry,
    sessions: Family<SessionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    connections_refused: Counter,
    joins: Family<JoinLabels, Counter>,
    bytes_sent: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    rounds: Counter,
    duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    running: Gauge,
    handshakes: Gauge,
    parked: Gauge,
    buffered: Gauge,
    draining: Gauge,
    models: Family<ModelLabels, Gauge>,
    datasets: Family<DatasetLabels, Gauge>,
    /// One scrape at a time: each rebuilds the held families from its snapshot.
    scrape: Mutex<()>,
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 5 minutes.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// A gauge's value from a count or a size, saturating.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new(party: crate::transport::Party, limits: &LimitValues) -> Metrics {
        let mut registry = Registry::with_prefix("tfe");
        let commit = env!("TFE_RUN_COMMIT").to_string();
        registry.register(
            "build",
            "The release, commit and wire format of this tfe-run, and the party it serves",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("commit".to_string(), commit),
                ("wire_format".to_string(), super::WIRE_VERSION.to_string()),
                ("party".to_string(), party.name().to_string()),
            ]),
        );
        let m = Metrics {
            sessions: Family::default(),
            failures: Family::default(),
            connections_refused: Counter::default(),
            joins: Family::default(),
            bytes_sent: Counter::default(),
            bytes_received: Counter::default(),
            messages_sent: Counter::default(),
            rounds: Counter::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            running: Gauge::default(),
            handshakes: Gauge::default(),
            parked: Gauge::default(),
            buffered: Gauge::default(),
            draining: Gauge::default(),
            models: Family::default(),
            datasets: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register("sessions", "Sessions by request and outcome (done, failed, refused)", m.sessions.clone());
        registry.register(
            "failures",
            "Refused and failed sessions by the exit-code category of the cause",
            m.failures.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before a valid hello (TLS, version, timeout, handshake limit)",
            m.connections_refused.clone(),
        );
        registry.register(
            "joins",
            "Sessions this party joined on a peer, by connection: standby (kept open, no handshake) or dialled",
            m.joins.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes this party sent in sessions that ended",
            Unit::Bytes,
            m.bytes_sent.clone(),
        );
        registry.register_with_unit(
            "received",
            "Bytes this party received in sessions that ended",
            Unit::Bytes,
            m.bytes_received.clone(),
        );
        registry.register("messages_sent", "Protocol messages this party sent", m.messages_sent.clone());
        registry.register("rounds", "Communication rounds of this party", m.rounds.clone());
        registry.register_with_unit(
            "session_duration",
            "How long sessions ran, from the start request to their end",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register("sessions_running", "Sessions running now", m.running.clone());
        registry.register(
            "handshakes_waiting",
            "Connections in their TLS handshake or hello now",
            m.handshakes.clone(),
        );
        registry.register(
            "standby_parked",
            "Standby connections of the parties that join this one's sessions, waiting for a session",
            m.parked.clone(),
        );
        registry.register_with_unit(
            "buffered",
            "Messages buffered now by all running sessions (each bounded by tfe_session_buffer_limit_bytes)",
            Unit::Bytes,
            m.buffered.clone(),
        );
        registry.register("draining", "1 once a signal stopped new sessions, else 0", m.draining.clone());
        registry.register("model", "Deployed models: name, deployment id, plan digest (value 1)", m.models.clone());
        registry.register("dataset", "Data sets held for training: name, rows, features (value 1)", m.datasets.clone());
        let limit = |registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: u64| {
            let gauge = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            gauge.set(gauge_value(value));
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, gauge),
                None => registry.register(name, help, gauge),
            }
        };
        limit(&mut registry, "sessions_limit", "--max-sessions", None, limits.max_sessions as u64);
        limit(&mut registry, "handshakes_limit", "--max-handshakes", None, limits.max_handshakes as u64);
        limit(
            &mut registry,
            "session_buffer_limit",
            "--max-session-buffer",
            Some(Unit::Bytes),
            limits.max_session_buffer,
        );
        limit(&mut registry, "memory_limit", "--max-memory", Some(Unit::Bytes), limits.max_memory);
        Metrics { registry, ..m }
    }

    fn session(&self, request: &str, outcome: &str) {
        self.sessions.get_or_create(&SessionLabels { request: request.into(), outcome: outcome.into() }).inc();
    }

    /// A session refused before it started, for `cause`.
    pub fn refused(&self, request: &str, cause: &anyhow::Error) {
        self.session(request, "refused");
        self.failure(cause, "refused");
    }

    /// A connection closed before it said a valid hello.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// This party joined a session on a peer over a `standby` or `dialled` connection.
    pub fn joined(&self, connection: &str) {
        self.joins.get_or_create(&JoinLabels { connection: connection.into() }).inc();
    }

    /// A session that ran for `elapsed` and ended with this party's `traffic`.
    pub fn done(&self, request: &str, elapsed: Duration, traffic: &Traffic) {
        self.session(request, "done");
        self.bytes_sent.inc_by(traffic.bytes_sent);
        self.bytes_received.inc_by(traffic.bytes_received);
        self.messages_sent.inc_by(traffic.messages_sent);
        self.rounds.inc_by(traffic.rounds);
        self.observe(request, elapsed);
    }

    /// A session that failed after `elapsed`, for `cause`.
    pub fn failed(&self, request: &str, elapsed: Duration, cause: &anyhow::Error) {
        self.session(request, "failed");
        self.failure(cause, "failed");
        self.observe(request, elapsed);
    }

    fn observe(&self, request: &str, elapsed: Duration) {
        self.duration.get_or_create(&RequestLabels { request: request.into() }).observe(elapsed.as_secs_f64());
    }

    fn failure(&self, cause: &anyhow::Error, stage: &str) {
        let kind = failure_kind(cause).to_string();
        self.failures.get_or_create(&FailureLabels { kind, stage: stage.into() }).inc();
    }

    /// The text format of every metric, with the gauges of `now`.
    pub fn encode(&self, now: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.running.set(gauge_value(now.running as u64));
        self.handshakes.set(gauge_value(now.handshakes as u64));
        self.parked.set(gauge_value(now.parked as u64));
        self.buffered.set(gauge_value(now.buffered));
        self.draining.set(i64::from(now.draining));
        self.models.clear();
        for (name, id, digest) in &now.models {
            let labels = ModelLabels { name: name.clone(), deployment: format!("{id:016x}"), digest: digest.clone() };
            self.models.get_or_create(&labels).set(1);
        }
        self.datasets.clear();
        for (name, rows, features) in &now.datasets {
            let labels = DatasetLabels { name: name.clone(), rows: rows.to_string(), features: features.to_string() };
            self.datasets.get_or_create(&labels).set(1);
        }
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The exit-code category of a failure, as the metrics name it.
pub fn failure_kind(cause: &anyhow::Error) -> &'static str {
    use crate::error::exit;
    match crate::error::exit_code_of(cause, false) {
        exit::BAD_INPUT => "bad_input",
        exit::INVALID_MODEL => "invalid_model",
        exit::UNSUPPORTED => "unsupported",
        exit::PARTY => "party",
        _ if cause.chain().any(|c| c.is::<crate::transport::Aborted>()) => "party",
        _ => "internal",
    }
}

/// What the endpoint serves: the metrics and whether the party takes sessions.
pub trait Observed: Send + Sync + 'static {
    fn metrics(&self) -> String;
    /// `Err(why)` once the party takes no new sessions.
    fn health(&self) -> Result<(), &'static str>;
}

/// Serve `GET /metrics` and `GET /healthz` on `listener` until the runtime stops.
pub async fn serve_endpoint(listener: TcpListener, observed: Arc<dyn Observed>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors and the like: the sessions need them more.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let observed = Arc::clone(&observed);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = respond(observed.as_ref(), &request);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

fn respond<B>(observed: &dyn Observed, request: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, content_type: &str, body: String| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    if request.method() != hyper::Method::GET {
        return reply(405, TEXT, "only GET\n".into());
    }
    match request.uri().path() {
        "/metrics" => reply(200, "application/openmetrics-text; version=1.0.0; charset=utf-8", observed.metrics()),
        "/healthz" => match observed.health() {
            Ok(()) => reply(200, TEXT, "ok\n".into()),
            Err(why) => reply(503, TEXT, format!("{why}\n")),
        },
        _ => reply(404, TEXT, "GET /metrics or /healthz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_by_their_exit_code_category() {
        assert_eq!(failure_kind(&crate::error::Error::bad_input("x")), "bad_input");
        assert_eq!(failure_kind(&crate::error::Error::party("server1", "gone")), "party");
        let aborted = anyhow::Error::new(crate::transport::Aborted("client stopped".into()));
        assert_eq!(failure_kind(&aborted.context("session failed")), "party");
        assert_eq!(failure_kind(&anyhow::anyhow!("server0 hit an internal error")), "internal");
    }

    #[test]
    fn held_models_are_the_snapshot_s_and_the_counters_add_up() {
        let limits =
            LimitValues { max_sessions: 4, max_handshakes: 8, max_session_buffer: 1 << 20, max_memory: 1 << 30 };
        let m = Metrics::new(crate::transport::Party::Server0, &limits);
        let traffic = Traffic { bytes_sent: 100, bytes_received: 50, messages_sent: 3, rounds: 2 };
        m.done("predict", Duration::from_millis(20), &traffic);
        m.done("predict", Duration::from_millis(30), &traffic);
        let now = |models| Snapshot {
            running: 1,
            handshakes: 0,
            parked: 0,
            buffered: 7,
            draining: false,
            models,
            datasets: vec![],
        };
        let text = m.encode(&now(vec![("old".into(), 1, "aa".into())]));
        assert!(text.contains("tfe_sent_bytes_total 200\n"), "{text}");
        assert!(text.contains("tfe_sessions_total{request=\"predict\",outcome=\"done\"} 2\n"), "{text}");
        assert!(text.contains("tfe_model{name=\"old\",deployment=\"0000000000000001\",digest=\"aa\"} 1\n"), "{text}");
        let text = m.encode(&now(vec![("new".into(), 2, "bb".into())]));
        assert!(!text.contains("name=\"old\""), "a replaced model is no longer listed: {text}");
        assert!(text.contains("tfe_buffered_bytes 7\n") && text.contains("tfe_session_buffer_limit_bytes 1048576\n"));
    }
}
