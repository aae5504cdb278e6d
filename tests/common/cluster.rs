//! Three `tfe-run serve` processes on loopback for tests and benchmarks, with
//! an optional delay proxy in front of each party.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tfe_run::remote::Security;
use tfe_run::remote::driver::Remote;

use crate::delay;

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tfe-run"))
}

/// Three serving processes on free loopback ports, killed when dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    children: BTreeMap<&'static str, Child>,
    logs: BTreeMap<&'static str, Arc<Mutex<String>>>,
    insecure: bool,
    /// Where each party really listens (the config may name delay proxies instead).
    listen: BTreeMap<&'static str, String>,
    /// Runs the delay proxies, if any.
    _proxies: Option<tokio::runtime::Runtime>,
}

const PARTIES: [&str; 3] = ["server0", "server1", "crypto-producer"];

impl Cluster {
    pub fn start(insecure: bool, timeout_secs: f64) -> Cluster {
        Cluster::start_with_delay(insecure, timeout_secs, None)
    }

    /// With `delay`, every connection to a party goes through a proxy that delays
    /// each direction by it (the parties' config names the proxies).
    pub fn start_with_delay(insecure: bool, timeout_secs: f64, delay: Option<Duration>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // Hold all three ports at once so that they differ, then free them.
        let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let real: Vec<std::net::SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        drop(listeners);
        let (named, proxies) = match delay {
            None => (real.clone(), None),
            Some(d) => {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
                let named = real.iter().map(|&a| rt.block_on(delay::spawn_delay_proxy(a, d))).collect();
                (named, Some(rt))
            }
        };
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"server0": "{}", "server1": "{}", "server2": "{}", "prediction-client": "127.0.0.1:1"}}"#,
                named[0], named[1], named[2]
            ),
        )
        .unwrap();
        let listen = PARTIES.iter().zip(&real).map(|(&p, a)| (p, a.to_string())).collect();
        let mut cluster = Cluster {
            dir,
            config,
            children: BTreeMap::new(),
            logs: BTreeMap::new(),
            insecure,
            listen,
            _proxies: proxies,
        };
        if !insecure {
            let out = Command::new(binary())
                .args(["certs", "--config"])
                .arg(&cluster.config)
                .arg("--out")
                .arg(cluster.certs())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        for party in PARTIES {
            cluster.spawn(party, timeout_secs);
        }
        cluster
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn security_args(&self) -> Vec<String> {
        if self.insecure {
            vec!["--insecure".into()]
        } else {
            vec!["--certs".into(), self.certs().display().to_string()]
        }
    }

    fn spawn(&mut self, party: &'static str, timeout_secs: f64) {
        let mut child = Command::new(binary())
            .args(["serve", "--party", party, "--timeout", &timeout_secs.to_string()])
            .args(["--listen", &self.listen[party], "--config"])
            .arg(&self.config)
            .args(self.security_args())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // --insecure warns first; then the party says where it listens.
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            if line.contains("listening on") {
                break;
            }
        }
        assert!(seen.contains("listening on"), "{party}: {seen}");
        // Keep draining the log, so the party never blocks on a full pipe.
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        self.children.insert(party, child);
        self.logs.insert(party, log);
    }

    pub fn log(&self, party: &str) -> String {
        self.logs[party].lock().unwrap().clone()
    }

    pub fn pid(&self, party: &str) -> u32 {
        self.children[party].id()
    }

    pub fn kill(&mut self, party: &str) {
        let child = self.children.get_mut(party).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The driver through the library.
    pub fn remote(&self) -> Remote {
        let cluster = tfe_run::cluster::Cluster::load(&self.config).unwrap();
        let security = if self.insecure { Security::Insecure } else { Security::Tls(self.certs()) };
        Remote { cluster, security, timeout: Duration::from_secs(10) }
    }

    /// The driver as a process.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args).arg("--config").arg(&self.config).args(self.security_args());
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
