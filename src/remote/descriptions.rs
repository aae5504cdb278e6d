//! The client's cache of deployment descriptions: `predict --model NAME` needs
//! the deployed model's public program (its inputs, batch size and what the
//! crypto producer runs) before it can send a share, and asking server1 for it
//! costs a round trip to server1 on every prediction, 20 ms of a +10 ms link.
//! The program a prediction ran with is kept here, and the next prediction of
//! the same model on the same cluster names that deployment in its hellos at
//! once.
//!
//! Nothing here is trusted: the servers pin the deployment a hello names
//! (its id and its program's SHA-256) or refuse the session before anything
//! runs, so a prediction with an entry that is stale (the model was
//! redeployed), damaged or written by someone else never runs with it. The
//! driver then forgets the entry and asks server1, as without a cache. An
//! entry is only read back if it parses, its program digests to the
//! deployment it names and passes [`Program::check`] (the checks a described
//! program gets), so a bad file costs a round trip, never a panic or a wrong
//! answer.
//!
//! What is kept is what server1 tells any client: the public plan, no weights,
//! no input and no output. The files are the client's own (the folder is made
//! readable by its owner only).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Deployment;
use crate::cluster::Cluster;
use crate::lower::Program;
use crate::transport::Party;

/// Version of an entry's layout; an entry of another is ignored.
const ENTRY_FORMAT: u32 = 1;

/// An entry larger than this is not read (a program's public plan is a few
/// hundred kilobytes for the largest zoo model).
const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// The environment variable that moves the cache (`--cache-dir`'s default).
pub const CACHE_DIR_ENV: &str = "TFE_RUN_CACHE_DIR";

/// A folder of descriptions, one file per (cluster, principal, model name).
#[derive(Debug, Clone)]
pub struct Descriptions {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    deployment: Deployment,
    program: Program,
}

impl Descriptions {
    pub fn new(dir: PathBuf) -> Descriptions {
        Descriptions { dir }
    }

    /// `$XDG_CACHE_HOME/tfe-run/deployments`, else `$HOME/.cache/tfe-run/deployments`;
    /// `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = nonempty("XDG_CACHE_HOME").or_else(|| nonempty("HOME").map(|home| home.join(".cache")))?;
        Some(base.join("tfe-run").join("deployments"))
    }

    /// The entry's file: named by the SHA-256 of where the three parties listen,
    /// who asks and the model's name, so two clusters (or two principals, who
    /// may be allowed different models) never share one.
    fn path(&self, cluster: &Cluster, principal: Option<&str>, name: &str) -> PathBuf {
        let addresses: Vec<Option<&String>> =
            [Party::Server0, Party::Server1, Party::Dealer].iter().map(|p| cluster.addresses.get(p)).collect();
        let key = serde_json::to_vec(&(addresses, principal, name)).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &key);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// The deployment and program last kept for `name`, if a usable entry is there.
    pub fn load(&self, cluster: &Cluster, principal: Option<&str>, name: &str) -> Option<(Deployment, Program)> {
        let path = self.path(cluster, principal, name);
        let bytes = read_bounded(&path)?;
        let usable = serde_json::from_slice::<Entry>(&bytes).ok().filter(|entry| {
            entry.format == ENTRY_FORMAT
                && entry.program.digest() == entry.deployment.digest
                && entry.program.check().is_ok()
        });
        match usable {
            Some(entry) => Some((entry.deployment, entry.program)),
            None => {
                tracing::debug!("ignoring the unusable cached description {}", path.display());
                self.forget(cluster, principal, name);
                None
            }
        }
    }

    /// Keep `program` as deployment `deployment` of `name`. A cache that cannot
    /// be written only costs the next prediction its round trip.
    pub fn store(
        &self,
        cluster: &Cluster,
        principal: Option<&str>,
        name: &str,
        deployment: &Deployment,
        program: &Program,
    ) {
        let path = self.path(cluster, principal, name);
        let entry = Entry { format: ENTRY_FORMAT, deployment: deployment.clone(), program: program.clone() };
        if let Err(e) = self.write(&path, &entry) {
            tracing::debug!("could not cache the description of `{name}` in {}: {e:#}", path.display());
        }
    }

    /// Drop the entry of `name` (stale or unusable).
    pub fn forget(&self, cluster: &Cluster, principal: Option<&str>, name: &str) {
        let _ = std::fs::remove_file(self.path(cluster, principal, name));
    }

    fn write(&self, path: &Path, entry: &Entry) -> anyhow::Result<()> {
        create_private_dir(&self.dir)?;
        // Written aside and renamed, so a reader never sees half an entry.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, serde_json::to_vec(entry)?)?;
        std::fs::rename(&partial, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        Ok(())
    }
}

fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_ENTRY_BYTES).then_some(bytes)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(server1: &str) -> Cluster {
        let config = format!(r#"{{"server0": "127.0.0.1:1", "server1": "{server1}", "server2": "127.0.0.1:3"}}"#);
        Cluster::parse(&config, Path::new("cluster.json")).unwrap()
    }

    #[test]
    fn an_entry_is_named_by_the_clusters_addresses_the_principal_and_the_model() {
        let cache = Descriptions::new(PathBuf::from("cache"));
        let (a, b) = (cluster("127.0.0.1:2"), cluster("127.0.0.1:4"));
        let base = cache.path(&a, None, "m");
        assert_eq!(base, cache.path(&cluster("127.0.0.1:2"), None, "m"));
        for other in [cache.path(&b, None, "m"), cache.path(&a, Some("alice"), "m"), cache.path(&a, None, "n")] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_missing_damaged_or_oversized_entry_is_none_and_a_bad_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Descriptions::new(dir.path().join("deployments"));
        let cluster = cluster("127.0.0.1:2");
        assert!(cache.load(&cluster, None, "m").is_none(), "no folder yet");
        create_private_dir(&cache.dir).unwrap();
        let path = cache.path(&cluster, None, "m");
        for damaged in [&b"{\"format\": 1, \"deploy"[..], b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", b"\xff\xfe", b""] {
            std::fs::write(&path, damaged).unwrap();
            assert!(cache.load(&cluster, None, "m").is_none());
            assert!(!path.exists(), "a damaged entry is forgotten");
        }
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        std::fs::write(&path, nested).unwrap();
        assert!(cache.load(&cluster, None, "m").is_none(), "deep nesting is refused, not a stack overflow");
        let oversized = std::fs::File::create(&path).unwrap();
        oversized.set_len(MAX_ENTRY_BYTES + 1).unwrap();
        assert!(read_bounded(&path).is_none());
        assert!(cache.load(&cluster, None, "m").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a").join("deployments");
        create_private_dir(&folder).unwrap();
        assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
