//! `tfe-run status --config FILE`: each serving party's health, release,
//! limits and what it holds, as a table or one JSON object; exit 5 if any party
//! is down.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use clap::Args;

use super::args::{InspectFormat, NetworkArgs};
use crate::error::exit;
use crate::remote::{PartyStatus, driver};
use crate::transport::Party;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    /// How to print the parties' status: a table, or one JSON object (`parties`, `down`).
    #[arg(short, long, value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
}

pub fn run(args: &StatusArgs) -> Result<u8> {
    let remote = args.net.required("status")?;
    let answers = driver::status(&remote)?;
    let text = match args.format {
        InspectFormat::Text => table(&answers),
        InspectFormat::Json => json(&answers),
    };
    super::write_stdout(&text)?;
    let down: Vec<&str> = answers.iter().filter(|(_, a)| a.is_err()).map(|(p, _)| p.name()).collect();
    if down.is_empty() {
        return Ok(exit::OK);
    }
    super::ui::error(format_args!("{} of {} parties down: {}", down.len(), answers.len(), down.join(", ")));
    Ok(exit::PARTY)
}

fn state(status: &PartyStatus) -> &'static str {
    if status.draining { "draining" } else { "up" }
}

/// A size as its flag would say it: `8 GiB`, `512 MiB`, or bytes.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let value = bytes as f64 / unit as f64;
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{value:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

/// Rows of cells, each column as wide as its widest cell.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The parties as a table, then why each party that is down is, then the
/// models and data sets and which parties hold them.
pub fn table(answers: &[(Party, Result<PartyStatus>)]) -> String {
    let mut rows = vec![
        ["party", "state", "release", "commit", "wire", "sessions", "max memory", "session buffer", "timeout", "tls"]
            .map(String::from)
            .to_vec(),
    ];
    let mut reasons = String::new();
    // (name, deployment) → the parties that hold it: an interrupted redeploy
    // shows as one name on two lines.
    let mut models: BTreeMap<(String, String, String), Vec<&str>> = BTreeMap::new();
    let mut datasets: BTreeMap<(String, u64, u64), Vec<&str>> = BTreeMap::new();
    for (party, answer) in answers {
        match answer {
            Ok(s) => {
                let release: String = s.version.release.chars().take(32).collect();
                let commit: String = s.commit.chars().take(40).collect();
                rows.push(vec![
                    party.name().into(),
                    state(s).into(),
                    release.escape_debug().to_string(),
                    commit.escape_debug().to_string(),
                    s.version.format.to_string(),
                    format!("{}/{}", s.sessions, s.limits.max_sessions),
                    size(s.limits.max_memory),
                    size(s.limits.max_session_buffer),
                    format!("{}s", s.limits.timeout),
                    if s.tls { "mutual".into() } else { "NONE".into() },
                ]);
                for m in &s.models {
                    let key = (m.name.clone(), format!("{:016x}", m.deployment.id), m.deployment.digest.clone());
                    models.entry(key).or_default().push(party.name());
                }
                for d in &s.datasets {
                    datasets.entry((d.name.clone(), d.rows, d.features)).or_default().push(party.name());
                }
            }
            Err(e) => {
                let mut row = vec![party.name().to_string(), "DOWN".into()];
                row.resize(rows[0].len(), "-".into());
                rows.push(row);
                let _ = writeln!(reasons, "{}: {e:#}", party.name());
            }
        }
    }
    let mut text = columns(&rows);
    if !reasons.is_empty() {
        text.push('\n');
        text.push_str(&reasons);
    }
    text.push('\n');
    if models.is_empty() {
        text.push_str("no models deployed\n");
    } else {
        let mut rows = vec![["model", "deployment", "plan", "held by"].map(String::from).to_vec()];
        for ((name, id, digest), held) in models {
            let plan: String = digest.chars().take(12).collect();
            rows.push(vec![name.escape_debug().to_string(), id, plan, held.join(", ")]);
        }
        text.push_str(&columns(&rows));
    }
    if datasets.is_empty() {
        text.push_str("no data sets held\n");
    } else {
        let mut rows = vec![["data set", "rows", "features", "held by"].map(String::from).to_vec()];
        for ((name, r, f), held) in datasets {
            rows.push(vec![name.escape_debug().to_string(), r.to_string(), f.to_string(), held.join(", ")]);
        }
        text.push_str(&columns(&rows));
    }
    text
}

/// `--format json`: `{"parties": [{"party", "state", ...status or "error"}], "down": [names]}`.
pub fn json(answers: &[(Party, Result<PartyStatus>)]) -> String {
    let parties: Vec<serde_json::Value> = answers
        .iter()
        .map(|(party, answer)| match answer {
            Ok(s) => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert("state".into(), state(s).into());
                }
                v
            }
            Err(e) => serde_json::json!({ "party": party, "state": "down", "error": format!("{e:#}") }),
        })
        .collect();
    let down: Vec<&str> = answers.iter().filter(|(_, a)| a.is_err()).map(|(p, _)| p.name()).collect();
    let mut text =
        serde_json::to_string_pretty(&serde_json::json!({ "parties": parties, "down": down })).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_said_as_their_flags_say_them() {
        assert_eq!(size(8 << 30), "8 GiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(4 << 20), "4 MiB");
        assert_eq!(size(10), "10 B");
    }
}
