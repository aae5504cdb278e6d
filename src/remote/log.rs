//! `serve`'s log, through `tracing`: one line per event on stderr, with its
//! time (UTC, RFC 3339), its level, and the spans it happened in: `serve`
//! (the party) and, for what belongs to a session, `session` (its id, as
//! [`super::SessionId`] prints it). As text for people, or as JSON lines
//! (`--log-format json`) for a log pipeline.
//!
//! What is logged is what the messages always said: parties, sessions, models
//! and causes, never a share, an input, an output, a seed or a key.

use tracing::level_filters::LevelFilter;

/// How `serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-02T16:22:22.123456Z  INFO serve{party=server0}:session{id=…}: message`
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields.message`, `span`, `spans`.
    Json,
}

/// Send this process's `tracing` events (INFO and above) to stderr in
/// `format`. `--quiet` does not apply: a server's log is its record of what
/// it served. A second call changes nothing.
pub fn init(format: LogFormat) {
    let builder =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(LevelFilter::INFO).with_target(false);
    // Only the first subscriber of a process takes effect (tests may start
    // several servers in one); a later one is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}

/// The span of everything one serving party logs.
pub fn party_span(party: crate::transport::Party) -> tracing::Span {
    tracing::info_span!("serve", party = party.name())
}

/// The span of what belongs to one session, under `parent` (the party's).
pub fn session_span(parent: &tracing::Span, session: u64) -> tracing::Span {
    tracing::info_span!(parent: parent, "session", id = %format_args!("{session:016x}"))
}
