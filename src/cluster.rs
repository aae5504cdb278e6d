//! Where the parties run: a cluster configuration, in tf-encrypted's `config.json`
//! form or in TOML.
//!
//! tf-encrypted's file is one JSON object from player name to "host:port":
//!
//! ```json
//! { "server0": "10.0.0.10:4440", "server1": "10.0.0.11:4440", "server2": "10.0.0.12:4440",
//!   "model-owner": "10.0.0.13:4440", "prediction-client": "10.0.0.14:4440" }
//! ```
//!
//! The TOML form has the same table under `[parties]` and can also carry the
//! certificate folder and the deadline:
//!
//! ```toml
//! [parties]
//! server0 = "10.0.0.10:4440"
//! server1 = "10.0.0.11:4440"
//! crypto-producer = "10.0.0.12:4440"
//!
//! [tls]
//! certs = "certs"        # relative to this file
//!
//! [network]
//! timeout_secs = 10
//! ```
//!
//! Only the servers and the crypto producer listen; the model owner and the client
//! (tf-encrypted's input and output players) dial out, so their addresses, if
//! given, are accepted and ignored.

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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::Error;
use crate::transport::Party;

/// The default deadline for any one message between hosts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster: the listening parties' addresses and the optional settings.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Where server0, server1 and the crypto producer listen ("host:port").
    pub addresses: BTreeMap<Party, String>,
    /// The certificate folder named in the file (resolved against the file's folder).
    pub certs: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// The file, for messages.
    pub source: PathBuf,
}

/// The player names tfe-run understands, tf-encrypted's among them.
fn party_of(name: &str) -> Option<Option<Party>> {
    Some(match name {
        "server0" => Some(Party::Server0),
        "server1" => Some(Party::Server1),
        "server2" | "crypto-producer" | "crypto_producer" => Some(Party::Dealer),
        "model-owner" | "model_owner" | "model-trainer" | "model-provider" | "weights-provider" | "input-provider"
        | "prediction-client" | "prediction_client" | "client" => None,
        _ => return None,
    })
}

const KNOWN: &str = "server0, server1, server2 (or crypto-producer), and the ignored model-owner, \
                     model-trainer, input-provider, prediction-client, client";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    parties: BTreeMap<String, String>,
    #[serde(default)]
    tls: Option<TomlTls>,
    #[serde(default)]
    network: Option<TomlNetwork>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlTls {
    certs: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlNetwork {
    timeout_secs: Option<f64>,
}

impl Cluster {
    /// Read a cluster file: TOML if its name ends in `.toml`, else tf-encrypted's JSON.
    pub fn load(path: &Path) -> Result<Cluster> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::bad_input(format!("cannot read cluster config `{}`: {e}", path.display())))?;
        Cluster::parse(&text, path)
    }

    /// Parse a cluster file's text; `path` says which form (by its extension),
    /// names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Cluster> {
        let in_file = |e: String| Error::bad_input(format!("cluster config `{}`: {e}", path.display()));
        let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let (players, certs, timeout) = if is_toml {
            let file: TomlFile = toml::from_str(text).map_err(|e| in_file(e.to_string()))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let certs = file.tls.and_then(|t| t.certs).map(|c| dir.join(c));
            let timeout = match file.network.and_then(|n| n.timeout_secs) {
                Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Some(Duration::from_secs_f64(t)),
                Some(t) => return Err(in_file(format!("timeout_secs = {t}: must be between 0 and 86400"))),
                None => None,
            };
            (file.parties, certs, timeout)
        } else {
            let players: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
                in_file(format!("{e} (expected tf-encrypted's form: an object from player name to \"host:port\")"))
            })?;
            (players, None, None)
        };
        let mut addresses = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, address) in players {
            let party = party_of(&name).ok_or_else(|| in_file(format!("unknown player `{name}` (known: {KNOWN})")))?;
            check_address(&address).map_err(|e| in_file(format!("player `{name}`: {e}")))?;
            let Some(party) = party else { continue };
            if let Some(other) = seen.insert(address.clone(), name.clone()) {
                return Err(in_file(format!("`{other}` and `{name}` have the same address {address}")));
            }
            if addresses.insert(party, address).is_some() {
                return Err(in_file(format!("{} is given twice (as `{name}` and an alias)", party.name())));
            }
        }
        for party in [Party::Server0, Party::Server1, Party::Dealer] {
            if !addresses.contains_key(&party) {
                // tf-encrypted's configs call the crypto producer `server2`:
                // a file written for it names the third server so.
                let hint = match party {
                    Party::Dealer if is_toml => {
                        " (add `crypto-producer = \"HOST:PORT\"` to [parties], or `server2`, \
                                                 tf-encrypted's name for it)"
                    }
                    Party::Dealer => {
                        " (add `\"server2\": \"HOST:PORT\"`, tf-encrypted's name for it, or \
                                      `\"crypto-producer\"`)"
                    }
                    _ => "",
                };
                return Err(in_file(format!("no address for {}{hint}", party.name())));
            }
        }
        Ok(Cluster { addresses, certs, timeout, source: path.to_path_buf() })
    }

    pub fn address(&self, party: Party) -> Result<&str> {
        self.addresses
            .get(&party)
            .map(String::as_str)
            .with_context(|| format!("cluster config `{}` has no address for {}", self.source.display(), party.name()))
    }
}

/// "host:port" with a port number: checked when read, so a typo is reported
/// before any party starts.
fn check_address(address: &str) -> std::result::Result<(), String> {
    let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("`{address}` is not host:port"))?;
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{address}` has no valid port")),
    }
}

/// The party a `--party` name means (only the listening ones can serve).
pub fn serving_party(name: &str) -> Result<Party> {
    match party_of(name) {
        Some(Some(p)) => Ok(p),
        Some(None) => Err(Error::bad_input(format!(
            "`{name}` does not serve: only server0, server1 and the crypto producer do (the model owner \
             and the client run `tfe-run deploy`, `tfe-run predict` or `tfe-run MODEL INPUT --config`)"
        ))),
        None => Err(Error::bad_input(format!("unknown party `{name}` (known: server0, server1, crypto-producer)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Cluster::load(&path)
    }

    #[test]
    fn reads_tf_encrypted_config() {
        let c = load(
            "config.json",
            r#"{"server0": "localhost:4440", "server1": "localhost:4441", "server2": "localhost:4442",
                "model-owner": "localhost:4443", "prediction-client": "localhost:4444"}"#,
        )
        .unwrap();
        assert_eq!(c.address(Party::Dealer).unwrap(), "localhost:4442");
        assert_eq!(c.addresses.len(), 3);
    }

    #[test]
    fn reads_toml_with_settings() {
        let c = load(
            "cluster.toml",
            "[parties]\nserver0 = \"a:1\"\nserver1 = \"b:2\"\ncrypto-producer = \"c:3\"\n\
             [tls]\ncerts = \"certs\"\n[network]\ntimeout_secs = 2.5\n",
        )
        .unwrap();
        assert!(c.certs.unwrap().ends_with("certs"));
        assert_eq!(c.timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn rejects_unknown_duplicate_and_missing() {
        let e = load("c.json", r#"{"server0": "a:1", "server1": "b:2", "server3": "c:3"}"#).unwrap_err();
        assert!(format!("{e:#}").contains("unknown player `server3`"), "{e:#}");
        let e = load("c.json", r#"{"server0": "a:1", "server1": "a:1", "server2": "c:3"}"#).unwrap_err();
        assert!(format!("{e:#}").contains("same address a:1"), "{e:#}");
        let e = load("c.json", r#"{"server0": "a:1", "server1": "b:2"}"#).unwrap_err();
        assert!(format!("{e:#}").contains("no address for crypto-producer"), "{e:#}");
        let e = load("c.json", r#"{"server0": "a", "server1": "b:2", "server2": "c:3"}"#).unwrap_err();
        assert!(format!("{e:#}").contains("`a` is not host:port"), "{e:#}");
        let e = load("c.json", r#"{"server0": "a:1", "server1": "b:2", "server2": "c:3", "#).unwrap_err();
        assert!(format!("{e:#}").contains("c.json"), "{e:#}");
    }
}
