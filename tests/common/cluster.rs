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
use tfe_run::transport::Party;

use crate::delay;

/// `tfe-run certs --config CONFIG --out OUT`: a fresh CA and a key pair per party.
pub fn make_certs(config: &std::path::Path, out: &std::path::Path) {
    make_certs_with(config, out, &[]);
}

/// [`make_certs`] with more arguments (e.g. `--client alice`).
pub fn make_certs_with(config: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    let made = Command::new(binary())
        .args(["certs", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
}

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
    /// More arguments for `tfe-run certs` (principals).
    certs_args: Vec<String>,
    /// Where each party really listens (the config may name delay proxies instead).
    listen: BTreeMap<&'static str, String>,
    /// Runs the delay proxies, if any.
    _proxies: Option<tokio::runtime::Runtime>,
    /// The network namespace each party runs in, if any.
    namespaces: BTreeMap<&'static str, String>,
    /// More arguments for every `serve`.
    serve_args: Vec<String>,
    /// A command every `serve` runs under (e.g. `prlimit --nofile=64`).
    wrapper: Vec<String>,
}

/// How to start a [`Cluster`]: [`Cluster::start_with`].
#[derive(Default)]
pub struct Setup {
    pub insecure: bool,
    pub timeout_secs: f64,
    /// Every connection to a party through a proxy that delays each direction by this.
    pub delay: Option<Duration>,
    /// Connections to this party through a proxy that holds back only their
    /// first bytes, by this long: a party late to join.
    pub late_join: Option<(&'static str, Duration)>,
    /// More arguments for every `serve` (e.g. `--max-sessions 1`).
    pub serve_args: Vec<String>,
    /// A command every `serve` runs under (e.g. `prlimit --nofile=64`).
    pub wrapper: Vec<String>,
    /// More arguments for `tfe-run certs` (principals: `--client alice`).
    pub certs_args: Vec<String>,
}

const PARTIES: [&str; 3] = ["server0", "server1", "crypto-producer"];

impl Cluster {
    pub fn start(insecure: bool, timeout_secs: f64) -> Cluster {
        Cluster::start_with_delay(insecure, timeout_secs, None)
    }

    /// With `delay`, every connection to a party goes through a proxy that delays
    /// each direction by it (the parties' config names the proxies).
    pub fn start_with_delay(insecure: bool, timeout_secs: f64, delay: Option<Duration>) -> Cluster {
        Cluster::start_with(Setup { insecure, timeout_secs, delay, ..Setup::default() })
    }

    /// With the certificate folder `write_certs` makes (instead of `tfe-run certs`).
    pub fn start_with_certs(timeout_secs: f64, write_certs: &dyn Fn(&std::path::Path)) -> Cluster {
        Cluster::start_inner(Setup { timeout_secs, ..Setup::default() }, Some(write_certs))
    }

    /// With certificates for the principals that `certs_args` name (e.g.
    /// `["--client", "alice", "--model-owner", "acme"]`).
    pub fn start_with_principals(timeout_secs: f64, certs_args: &[&str]) -> Cluster {
        let certs_args = certs_args.iter().map(|a| a.to_string()).collect();
        Cluster::start_with(Setup { timeout_secs, certs_args, ..Setup::default() })
    }

    pub fn start_with(setup: Setup) -> Cluster {
        Cluster::start_inner(setup, None)
    }

    fn start_inner(setup: Setup, write_certs: Option<&dyn Fn(&std::path::Path)>) -> Cluster {
        let Setup { insecure, timeout_secs, delay, late_join, serve_args, wrapper, certs_args } = setup;
        let dir = tempfile::tempdir().unwrap();
        // Hold all three ports at once so that they differ, then free them.
        let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let real: Vec<std::net::SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        drop(listeners);
        let (mut named, proxies) = match (delay, late_join) {
            (None, None) => (real.clone(), None),
            _ => {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
                let named: Vec<_> = match delay {
                    Some(d) => real.iter().map(|&a| rt.block_on(delay::spawn_delay_proxy(a, d))).collect(),
                    None => real.clone(),
                };
                (named, Some(rt))
            }
        };
        if let (Some((party, hold)), Some(rt)) = (late_join, &proxies) {
            let k = PARTIES.iter().position(|p| *p == party).unwrap();
            named[k] = rt.block_on(delay::spawn_first_bytes_proxy(named[k], hold));
        }
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
            certs_args,
            listen,
            _proxies: proxies,
            namespaces: BTreeMap::new(),
            serve_args,
            wrapper,
        };
        match write_certs {
            Some(write) => write(&cluster.certs()),
            None => cluster.make_certs(),
        }
        for party in PARTIES {
            cluster.spawn(party, timeout_secs);
        }
        cluster
    }

    /// The parties in the namespaces of `net`, listening on its addresses.
    pub fn start_in(net: &Netns, timeout_secs: f64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let addresses: Vec<String> = PARTIES.iter().map(|p| format!("{}:4440", net.ip(p))).collect();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"server0": "{}", "server1": "{}", "server2": "{}"}}"#,
                addresses[0], addresses[1], addresses[2]
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            dir,
            config,
            children: BTreeMap::new(),
            logs: BTreeMap::new(),
            insecure: false,
            certs_args: Vec::new(),
            listen: PARTIES.iter().zip(addresses).map(|(&p, a)| (p, a)).collect(),
            _proxies: None,
            namespaces: PARTIES.iter().map(|&p| (p, net.namespace(p))).collect(),
            serve_args: Vec::new(),
            wrapper: Vec::new(),
        };
        cluster.make_certs();
        for party in PARTIES {
            cluster.spawn(party, timeout_secs);
        }
        cluster
    }

    fn make_certs(&self) {
        if !self.insecure {
            let extra: Vec<&str> = self.certs_args.iter().map(String::as_str).collect();
            make_certs_with(&self.config, &self.certs(), &extra);
        }
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
        let mut command = match self.namespaces.get(party) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary());
                c
            }
            None => match self.wrapper.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg(binary());
                    c
                }
                None => Command::new(binary()),
            },
        };
        let mut child = command
            .args(["serve", "--party", party, "--timeout", &timeout_secs.to_string()])
            .args(["--listen", &self.listen[party], "--config"])
            .arg(&self.config)
            .args(self.security_args())
            .args(&self.serve_args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // --insecure warns first, the party says what it holds (and where its
        // metrics are); then where it listens.
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening on") {
                break;
            }
        }
        assert!(seen.contains("listening on"), "{party}: {seen}");
        // Keep draining the log, so the party never blocks on a full pipe.
        let log = Arc::new(Mutex::new(seen));
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

    /// Where `party` really listens (not a proxy in front of it).
    pub fn listen_address(&self, party: &str) -> std::net::SocketAddr {
        self.listen[party].parse().unwrap()
    }

    /// A copy of the cluster file in which `party` is at `address` (e.g. a proxy
    /// in front of it, for one driver only).
    pub fn config_with(&self, party: &str, address: std::net::SocketAddr) -> PathBuf {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let mut map: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        let key = if party == "crypto-producer" { "server2" } else { party };
        map.insert(key.to_string(), address.to_string());
        let path = self.dir.path().join(format!("config-{party}-{}.json", address.port()));
        std::fs::write(&path, serde_json::to_string(&map).unwrap()).unwrap();
        path
    }

    /// The driver as a process, with another cluster file.
    pub fn command_with(&self, config: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args).arg("--config").arg(config).args(self.security_args());
        cmd.env(tfe_run::remote::descriptions::CACHE_DIR_ENV, self.descriptions());
        cmd
    }

    pub fn log(&self, party: &str) -> String {
        self.logs[party].lock().unwrap().clone()
    }

    /// Assert that `party`'s log comes to contain `needle` within 10 s. A party
    /// may log after it has answered, and its log is read by another thread, so
    /// a line is not always there when the client that caused it has exited.
    pub fn expect_log(&self, party: &str, needle: &str) {
        let start = std::time::Instant::now();
        while !self.log(party).contains(needle) {
            assert!(start.elapsed() < Duration::from_secs(10), "{party} never logged `{needle}`:\n{}", self.log(party));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self, party: &str) -> u32 {
        self.children[party].id()
    }

    /// Send `party` a signal (`TERM`, `INT`).
    pub fn signal(&self, party: &str, signal: &str) {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.pid(party).to_string()]).status().unwrap();
        assert!(sent.success(), "kill -{signal} {party}");
    }

    /// Wait up to `limit` for `party` to exit; its status, or `None` if it runs on.
    pub fn wait_exit(&mut self, party: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        let child = self.children.get_mut(party).unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where `party` serves its metrics (`serve --metrics`), from its log.
    pub fn metrics_address(&self, party: &str) -> String {
        let log = self.log(party);
        let at = log.split("metrics on http://").nth(1).unwrap_or_else(|| panic!("{party} serves no metrics: {log}"));
        at.split('/').next().unwrap().to_string()
    }

    /// The party's resident memory (VmRSS), in bytes.
    pub fn rss(&self, party: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(party))).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// Where a party listens, as the config names it.
    pub fn address(&self, party: Party) -> String {
        tfe_run::cluster::Cluster::load(&self.config).unwrap().address(party).unwrap().to_string()
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
        Remote { cluster, security, timeout: Duration::from_secs(10), principal: None, descriptions: None }
    }

    /// The cluster's own cache of deployment descriptions (`predict --cache-dir`),
    /// so that no test's cache names another's cluster on a reused port.
    pub fn descriptions(&self) -> PathBuf {
        self.dir.path().join("descriptions")
    }

    /// The driver as a process.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args).arg("--config").arg(&self.config).args(self.security_args());
        cmd.env(tfe_run::remote::descriptions::CACHE_DIR_ENV, self.descriptions());
        cmd
    }

    /// The model owner's `deploy --name NAME --batch-size B MODEL`, which must succeed.
    pub fn deploy(&self, name: &str, batch_size: usize, model: &std::path::Path) {
        let out = self
            .command(&["deploy", "--name", name, "--batch-size", &batch_size.to_string()])
            .arg(model)
            .output()
            .unwrap();
        assert!(out.status.success(), "deploy {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A client's `predict --model NAME --out FILE INPUT`, which must succeed:
    /// the tensor written to FILE, and what it printed.
    pub fn predict_to_file(&self, name: &str, input: &std::path::Path) -> (ndarray::ArrayD<f32>, String) {
        let dir = tempfile::tempdir().unwrap();
        let out_file = dir.path().join("out.npy");
        let out = self.command(&["predict", "--model", name]).arg("--out").arg(&out_file).arg(input).output().unwrap();
        assert!(out.status.success(), "predict {name}: {}", String::from_utf8_lossy(&out.stderr));
        let output = tfe_run::npy::read_input(&out_file).unwrap();
        (output, String::from_utf8(out.stdout).unwrap())
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

/// Three network namespaces, one per serving party, each with a veth pair to a
/// bridge in the test's namespace (10.x.y.1 there, .10/.11/.12 in them); deleted
/// when dropped. Needs root and `ip`.
pub struct Netns {
    tag: String,
    subnet: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    pub fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let net = Netns {
            tag: format!("tfe{}", pid % 100_000),
            subnet: format!("10.{}.{}", 100 + pid % 100, pid / 100 % 250),
        };
        let br = format!("{}br", net.tag);
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.1/24", net.subnet), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for (k, party) in PARTIES.iter().enumerate() {
            let ns = net.namespace(party);
            let (outer, inner) = (format!("{}o{k}", net.tag), format!("{}i{k}", net.tag));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", &br])?;
            ip(&["link", "set", &outer, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", net.ip(party)), "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    pub fn namespace(&self, party: &str) -> String {
        let k = PARTIES.iter().position(|p| *p == party).unwrap();
        format!("{}n{k}", self.tag)
    }

    pub fn ip(&self, party: &str) -> String {
        let k = PARTIES.iter().position(|p| *p == party).unwrap();
        format!("{}.{}", self.subnet, 10 + k)
    }

    /// Delay every packet a party sends by `delay` (tc netem on its interface).
    pub fn delay(&self, delay: Duration) -> Result<(), String> {
        for (k, party) in PARTIES.iter().enumerate() {
            let ns = self.namespace(party);
            let inner = format!("{}i{k}", self.tag);
            let ms = format!("{}ms", delay.as_millis());
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "tc", "qdisc", "replace", "dev", &inner, "root", "netem", "delay", &ms])
                .output()
                .map_err(|e| format!("tc: {e}"))?;
            if !out.status.success() {
                return Err(format!("tc netem: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for party in PARTIES {
            let _ = ip(&["netns", "del", &self.namespace(party)]);
        }
        let _ = ip(&["link", "del", &format!("{}br", self.tag)]);
    }
}
