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

    /// The folder a client keeps descriptions in: `dir` if given, else
    /// `$TFE_RUN_CACHE_DIR` ([`CACHE_DIR_ENV`]), else [`Descriptions::default_dir`];
    /// `None` when none of them is set. The CLI's `--cache-dir` and Python's
    /// `cluster.predict(..., cache=DIR)` both come here.
    pub fn chosen(dir: Option<PathBuf>) -> Option<Descriptions> {
        let from_env = || std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        dir.or_else(from_env).or_else(Descriptions::default_dir).map(Descriptions::new)
    }

    /// `$XDG_CACHE_HOME/tfe-run/deployments`, else `$HOME/.cache/tfe-run/deployments`;
    /// `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        let base = nonempty("XDG_CACHE_HOME").or_else(|| nonempty("HOME").map(|home| home.join(".cache")))?;
        Some(base.join("tfe-run").join("deployments"))
    }

    /// The entry of model `name` on `cluster` as `principal` asks for it: a
    /// file named by the SHA-256 of where the three parties listen, who asks and
    /// the model's name, so two clusters (or two principals, who may be allowed
    /// different models) never share one.
    pub fn entry(&self, cluster: &Cluster, principal: Option<&str>, name: &str) -> Description {
        let addresses: Vec<Option<&String>> =
            [Party::Server0, Party::Server1, Party::Dealer].iter().map(|p| cluster.addresses.get(p)).collect();
        let key = serde_json::to_vec(&(addresses, principal, name)).unwrap_or_default();
        let path = self.dir.join(format!("{}.json", crate::lower::sha256_hex(&key)));
        Description { path, name: name.to_string() }
    }
}

/// One model's entry in [`Descriptions`].
#[derive(Debug, Clone)]
pub struct Description {
    path: PathBuf,
    /// The model's name, for messages.
    name: String,
}

impl Description {
    /// The deployment and program last kept, if a usable entry is there.
    pub fn load(&self) -> Option<(Deployment, Program)> {
        let bytes = read_bounded(&self.path)?;
        let usable = serde_json::from_slice::<Entry>(&bytes).ok().filter(|entry| {
            entry.format == ENTRY_FORMAT
                && entry.program.digest() == entry.deployment.digest
                && entry.program.check().is_ok()
        });
        match usable {
            Some(entry) => Some((entry.deployment, entry.program)),
            None => {
                tracing::debug!("ignoring the unusable cached description {}", self.path.display());
                self.forget();
                None
            }
        }
    }

    /// Keep `program` as deployment `deployment`. A cache that cannot be
    /// written only costs the next prediction its round trip.
    pub fn store(&self, deployment: &Deployment, program: &Program) {
        let entry = Entry { format: ENTRY_FORMAT, deployment: deployment.clone(), program: program.clone() };
        if let Err(e) = self.write(&entry) {
            tracing::debug!("could not cache the description of `{}` in {}: {e:#}", self.name, self.path.display());
        }
    }

    /// Drop the entry (stale or unusable).
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    fn write(&self, entry: &Entry) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        // Written aside and renamed, so a reader never sees half an entry.
        let partial = self.path.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, serde_json::to_vec(entry)?)?;
        std::fs::rename(&partial, &self.path).inspect_err(|_| {
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
        let path = |cluster: &Cluster, principal, name| cache.entry(cluster, principal, name).path;
        let base = path(&a, None, "m");
        assert_eq!(base, path(&cluster("127.0.0.1:2"), None, "m"));
        for other in [path(&b, None, "m"), path(&a, Some("alice"), "m"), path(&a, None, "n")] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_missing_damaged_or_oversized_entry_is_none_and_a_bad_one_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Descriptions::new(dir.path().join("deployments"));
        let entry = cache.entry(&cluster("127.0.0.1:2"), None, "m");
        assert!(entry.load().is_none(), "no folder yet");
        create_private_dir(&cache.dir).unwrap();
        let path = entry.path.clone();
        for damaged in [&b"{\"format\": 1, \"deploy"[..], b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", b"\xff\xfe", b""] {
            std::fs::write(&path, damaged).unwrap();
            assert!(entry.load().is_none());
            assert!(!path.exists(), "a damaged entry is forgotten");
        }
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        std::fs::write(&path, nested).unwrap();
        assert!(entry.load().is_none(), "deep nesting is refused, not a stack overflow");
        let oversized = std::fs::File::create(&path).unwrap();
        oversized.set_len(MAX_ENTRY_BYTES + 1).unwrap();
        assert!(read_bounded(&path).is_none());
        assert!(entry.load().is_none());
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
