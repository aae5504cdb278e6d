//! `cargo bench --bench models`: plaintext vs secure (Pond) time, traffic and rounds
//! for every test model at batch 1 and batch 100; `BENCH_SET=zoo cargo bench --bench
//! models`: the same for MobileNetV2 and the keras.applications zoo (`testdata/zoo/`)
//! at batch 1 and batch 8, with fewer repetitions (see [`ZOO`]).
//!
//! Each (model, batch) runs in a child process (this same binary, re-executed with
//! `BENCH_CHILD=model:batch`), so that a model that is slow or memory hungry under the
//! secure runtime is stopped (time limit, resident-memory limit) without taking the
//! whole run down, and so that each row's peak RSS is its own.
//!
//! Environment:
//! - `BENCH_SET=zoo` — the zoo models instead of the small ones (default `small`).
//! - `BENCH_MODELS=mnist_model,mlp` — which models of the set, in that order (default: all).
//! - `BENCH_QUICK=1` — batch 1 only.
//! - `BENCH_TIMEOUT_SECS` — per (model, batch) child (default 180; 1800 for the zoo).
//! - `BENCH_MAX_RSS_MB` — a child whose resident memory passes this is killed (default 6144).
//!
//! What is measured, per (model, batch) (the zoo's counts in brackets):
//! - plaintext: `plaintext::run`, one warm-up, then the median of at least 11 runs.
//! - secure, one-shot: one warm-up session of one prediction (excluded), then `n`
//!   sessions of one prediction each (11 at batch 1, 7 at batch 100 [3, 3]); the median
//!   wall time of `predict_many` is the latency of one prediction *including* the
//!   session set-up (weights shared and opened), the dealer's work and the online
//!   phase — what `tfe-run MODEL INPUT` pays.
//! - secure, in a session: one session of `1 + n` predictions (n = 5 at batch 1, 3 at
//!   batch 100 [2, 2]; the median of 3 such sessions [1]). Per-prediction numbers are
//!   the difference with a one-prediction session divided by `n`, so the set-up and
//!   its traffic are excluded: wall time, bytes and rounds per party. The dealer's
//!   (offline) and the servers' online times are `Stats.offline` and `Stats.online`
//!   divided by `1 + n` (neither includes the set-up).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ndarray::{ArrayD, Axis, Slice};
use serde::{Deserialize, Serialize};
use tfe_run::runtime::{self, Outcome, SecureConfig};
use tfe_run::transport::{Party, Traffic};
use tfe_run::{cli, npy, plaintext};

const ORDER: &[&str] = &[
    "mnist_model",
    "mlp",
    "maxpool_cnn",
    "keras3_bn",
    "tfkeras_bn",
    "tf1_mlp",
    "tfe_mnist",
    // Last: its Tanh is slow and memory hungry under the secure runtime.
    "functional",
];

/// MobileNetV2 and the keras.applications zoo (`testdata/gen_zoo.py`).
const ZOO_ORDER: &[&str] = &[
    "mobilenet_v2",
    "zoo_mobilenet_v3_small",
    "zoo_efficientnet_b0",
    "zoo_nasnet_mobile",
    "zoo_densenet121",
    "zoo_resnet50v2_narrow",
    "zoo_resnet20",
];

/// A set of models and how each (model, batch) of it is measured.
struct Set {
    /// The table's file under the target folder.
    report: &'static str,
    order: &'static [&'static str],
    /// The batches: 1 (the first row of the input file) and the whole input file.
    batches: [usize; 2],
    /// One-prediction sessions measured, at batch 1 and at the larger batch.
    oneshots: [usize; 2],
    /// Predictions after the first in the in-session measurement, likewise.
    in_session: [usize; 2],
    /// How many such sessions (their median).
    session_reps: usize,
    /// Default of `BENCH_TIMEOUT_SECS`.
    timeout_secs: u64,
}

const SMALL: Set = Set {
    report: "bench-models.md",
    order: ORDER,
    batches: [1, 100],
    oneshots: [11, 7],
    in_session: [5, 3],
    session_reps: 3,
    timeout_secs: 180,
};

/// The zoo runs seconds to minutes per prediction under Pond: fewer repetitions.
const ZOO: Set = Set {
    report: "bench-models-zoo.md",
    order: ZOO_ORDER,
    batches: [1, 8],
    oneshots: [3, 3],
    in_session: [2, 2],
    session_reps: 1,
    timeout_secs: 1800,
};

/// `BENCH_SET`: `small` (the default) or `zoo`.
fn set() -> Result<&'static Set> {
    match std::env::var("BENCH_SET").unwrap_or_default().trim() {
        "" | "small" => Ok(&SMALL),
        "zoo" => Ok(&ZOO),
        other => bail!("BENCH_SET: unknown set `{other}` (small or zoo)"),
    }
}

const RESULT_PREFIX: &str = "BENCH_RESULT ";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model and the files that feed it at batch 1 (first row taken) and at its
/// set's larger batch (the whole file: 100 rows, or the zoo's 8).
struct Spec {
    name: String,
    model: PathBuf,
    batch1: BTreeMap<String, PathBuf>,
    batch_n: BTreeMap<String, PathBuf>,
}

fn specs(set: &Set) -> Result<Vec<Spec>> {
    let order = set.order;
    let root = manifest_dir();
    let testdata = root.join("testdata");
    let text = std::fs::read_to_string(testdata.join("manifest.json")).context("reading testdata/manifest.json")?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = Vec::new();
    for entry in manifest["models"].as_array().ok_or_else(|| anyhow!("manifest has no models"))? {
        let name = entry["name"].as_str().unwrap_or_default();
        if !order.contains(&name) {
            continue;
        }
        let feeds: BTreeMap<String, PathBuf> = entry["inputs"]
            .as_object()
            .ok_or_else(|| anyhow!("{name}: no inputs"))?
            .iter()
            .map(|(k, v)| (k.clone(), testdata.join(v.as_str().unwrap_or_default())))
            .collect();
        out.push(Spec {
            name: name.to_string(),
            model: testdata.join(entry["model"].as_str().unwrap_or_default()),
            batch1: feeds.clone(),
            batch_n: feeds,
        });
    }
    // tf-encrypted's own MNIST CNN (release 0.9.1): its input is one row, so batch 100
    // uses testdata's 100 flattened MNIST images, of the same [N, 784] shape.
    let reference = std::env::var_os("TFE_REFERENCE_DIR")
        .map_or_else(|| root.join("../shared/tfe-reference"), std::path::PathBuf::from);
    if !order.contains(&"tfe_mnist") {
        // Not in this set.
    } else if reference.join("mnist_model.pb").is_file() {
        out.push(Spec {
            name: "tfe_mnist".to_string(),
            model: reference.join("mnist_model.pb"),
            batch1: BTreeMap::from([("Placeholder".to_string(), reference.join("mnist_input.npy"))]),
            batch_n: BTreeMap::from([("Placeholder".to_string(), testdata.join("mnist_flat100.npy"))]),
        });
    } else {
        eprintln!("skipping tfe_mnist: tf-encrypted's reference models are not in {}", reference.display());
    }
    out.sort_by_key(|s| order.iter().position(|n| *n == s.name));
    Ok(out)
}

// ---------------------------------------------------------------- child ----

#[derive(Serialize, Deserialize, Default, Clone)]
struct PartyNumbers {
    /// Per prediction, set-up excluded.
    bytes_sent: f64,
    rounds: f64,
    /// The session set-up (everything a one-prediction session has beyond one prediction).
    setup_bytes_sent: f64,
    setup_rounds: f64,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct Measured {
    rows: usize,
    plaintext_ms: f64,
    plaintext_runs: usize,
    /// Median wall time of a one-prediction session (set-up + dealer + online).
    oneshot_ms: f64,
    oneshot_min_ms: f64,
    oneshot_max_ms: f64,
    oneshot_setup_ms: f64,
    oneshot_dealer_ms: f64,
    oneshot_online_ms: f64,
    /// Per prediction in a session of 1 + n, set-up excluded.
    session_ms: f64,
    session_dealer_ms: f64,
    session_online_ms: f64,
    measured: usize,
    session_reps: usize,
    parties: BTreeMap<String, PartyNumbers>,
    traffic_deterministic: bool,
    /// Secure vs plaintext output.
    argmax_agree: usize,
    argmax_rows: usize,
    max_abs_diff: f64,
    peak_rss_mb: f64,
}

#[derive(Serialize, Deserialize)]
enum ChildResult {
    Ok(Measured),
    Err(String),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Row-wise argmax agreement and max |difference| of two outputs of the same shape.
fn compare(secure: &ArrayD<f32>, plain: &ArrayD<f32>, rows: usize) -> (usize, usize, f64) {
    let max_abs = secure.iter().zip(plain.iter()).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
    let n = plain.len();
    if rows == 0 || !n.is_multiple_of(rows) {
        return (0, 0, max_abs);
    }
    let k = n / rows;
    let argmax = |x: &[f32]| x.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    let s: Vec<f32> = secure.iter().copied().collect();
    let p: Vec<f32> = plain.iter().copied().collect();
    let agree = s.chunks(k).zip(p.chunks(k)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    (agree, rows, max_abs)
}

fn party_traffic(o: &Outcome, p: Party) -> Traffic {
    o.stats.parties.get(&p).map(|s| s.traffic.clone()).unwrap_or_default()
}

fn same_traffic(a: &Traffic, b: &Traffic) -> bool {
    (a.bytes_sent, a.bytes_received, a.messages_sent, a.rounds)
        == (b.bytes_sent, b.bytes_received, b.messages_sent, b.rounds)
}

fn run_child(set: &Set, spec: &Spec, batch: usize) -> Result<Measured> {
    let tmp = tempfile::tempdir()?;
    let feeds = if batch == 1 {
        let mut feeds = BTreeMap::new();
        for (name, path) in &spec.batch1 {
            let array = npy::read_input(path)?;
            let row = array.slice_axis(Axis(0), Slice::from(0..1)).to_owned();
            let file = tmp.path().join(format!("{}.npy", name.replace('/', "_")));
            npy::write_f32(&file, &row)?;
            feeds.insert(name.clone(), file);
        }
        feeds
    } else {
        spec.batch_n.clone()
    };
    let prepared = cli::prepare(&spec.model, None, None, &feeds)?;
    let (plan, inputs) = (prepared.plan, prepared.inputs);
    let rows = inputs.values().next().map_or(0, |a| a.shape()[0]);
    let mut m = Measured { rows, ..Measured::default() };

    // Plaintext: warm-up, then at least 11 runs and 0.3 s (at most 201 runs).
    let reference = plaintext::run(&plan, &inputs)?.to_float();
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 11 || (started.elapsed() < Duration::from_millis(300) && samples.len() < 201) {
        let t = Instant::now();
        std::hint::black_box(plaintext::run(&plan, &inputs)?);
        samples.push(ms(t.elapsed()));
    }
    m.plaintext_ms = median(&samples);
    m.plaintext_runs = samples.len();

    // Secure, one prediction per session.
    let config = SecureConfig::default();
    let which = usize::from(batch != 1);
    let n = set.in_session[which];
    // The machine's page faults make single sessions at batch 100 vary by 1.5x
    // (BENCHMARKS.md): 7 of them give a steadier median.
    let oneshots = set.oneshots[which];
    m.measured = oneshots;
    let one = vec![inputs.clone()];
    let _warm_up = runtime::predict_many(&plan, &one, &config)?;
    let mut walls = Vec::new();
    let mut singles = Vec::new();
    for _ in 0..oneshots {
        let t = Instant::now();
        let o = runtime::predict_many(&plan, &one, &config)?;
        walls.push(ms(t.elapsed()));
        singles.push(o);
    }
    m.oneshot_ms = median(&walls);
    m.oneshot_min_ms = walls.iter().copied().fold(f64::INFINITY, f64::min);
    m.oneshot_max_ms = walls.iter().copied().fold(0.0, f64::max);
    m.oneshot_setup_ms = median(&singles.iter().map(|o| ms(o.stats.setup)).collect::<Vec<_>>());
    m.oneshot_dealer_ms = median(&singles.iter().map(|o| ms(o.stats.offline)).collect::<Vec<_>>());
    m.oneshot_online_ms = median(&singles.iter().map(|o| ms(o.stats.online)).collect::<Vec<_>>());

    // Secure, 1 + n predictions in one session.
    // Sessions are noisy (at batch 1 short, at batch 100 page faults): the median of 3.
    let many = vec![inputs.clone(); 1 + n];
    let reps = set.session_reps;
    let mut per_pred = Vec::new();
    let mut dealer = Vec::new();
    let mut online = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let session = runtime::predict_many(&plan, &many, &config)?;
        per_pred.push((ms(t.elapsed()) - m.oneshot_ms) / n as f64);
        dealer.push(ms(session.stats.offline) / (1 + n) as f64);
        online.push(ms(session.stats.online) / (1 + n) as f64);
        sessions.push(session);
    }
    m.session_ms = median(&per_pred);
    m.session_dealer_ms = median(&dealer);
    m.session_online_ms = median(&online);
    m.session_reps = reps;
    let session = &sessions[0];

    let single = &singles[0];
    m.traffic_deterministic = singles
        .iter()
        .all(|o| Party::ALL.iter().all(|&p| same_traffic(&party_traffic(o, p), &party_traffic(single, p))))
        && sessions
            .iter()
            .all(|o| Party::ALL.iter().all(|&p| same_traffic(&party_traffic(o, p), &party_traffic(session, p))));
    for p in Party::ALL {
        let (s1, sn) = (party_traffic(single, p), party_traffic(session, p));
        let per_bytes = (sn.bytes_sent as f64 - s1.bytes_sent as f64) / n as f64;
        let per_rounds = (sn.rounds as f64 - s1.rounds as f64) / n as f64;
        m.parties.insert(
            p.name().to_string(),
            PartyNumbers {
                bytes_sent: per_bytes,
                rounds: per_rounds,
                setup_bytes_sent: s1.bytes_sent as f64 - per_bytes,
                setup_rounds: s1.rounds as f64 - per_rounds,
            },
        );
    }

    // Every secure output against the plaintext reference.
    let mut agree = 0;
    let mut total = 0;
    let mut max_abs: f64 = 0.0;
    for out in singles.iter().flat_map(|o| o.outputs.iter()).chain(sessions.iter().flat_map(|o| o.outputs.iter())) {
        let (a, t, d) = compare(&out.to_float(), &reference, rows);
        agree += a;
        total += t;
        max_abs = max_abs.max(d);
    }
    m.argmax_agree = agree;
    m.argmax_rows = total;
    m.max_abs_diff = max_abs;
    m.peak_rss_mb = peak_rss_mb();
    Ok(m)
}

fn child_main(which: &str) -> ! {
    // As the CLI does for every command but `serve`.
    tfe_run::keep_freed_memory();
    let result = (|| -> Result<Measured> {
        let (name, batch) = which.split_once(':').ok_or_else(|| anyhow!("BENCH_CHILD must be model:batch"))?;
        let batch: usize = batch.parse()?;
        let set = set()?;
        let spec = specs(set)?.into_iter().find(|s| s.name == name).ok_or_else(|| anyhow!("unknown model `{name}`"))?;
        run_child(set, &spec, batch)
    })();
    let out = match result {
        Ok(m) => ChildResult::Ok(m),
        Err(e) => ChildResult::Err(format!("{e:#}")),
    };
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&out).expect("serialisable"));
    std::process::exit(0)
}

// --------------------------------------------------------------- parent ----

enum Row {
    Done(Box<Measured>),
    Failed(String),
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// Run one (model, batch) in a child; stop it at the time or memory limit.
fn run_in_child(name: &str, batch: usize, timeout: Duration, max_rss_mb: f64) -> Row {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Row::Failed(format!("cannot find the bench binary: {e}")),
    };
    let mut child = match Command::new(exe)
        .env("BENCH_CHILD", format!("{name}:{batch}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Row::Failed(format!("cannot start a child: {e}")),
    };
    let pid = child.id();
    let started = Instant::now();
    let mut peak: f64 = 0.0;
    let killed = loop {
        match child.try_wait() {
            Ok(Some(_)) => break None,
            Ok(None) => {}
            Err(e) => break Some(format!("waiting for the child failed: {e}")),
        }
        if let Some(rss) = rss_mb(pid) {
            peak = peak.max(rss);
            if rss > max_rss_mb {
                break Some(format!(
                    "stopped: resident memory passed {max_rss_mb:.0} MB (BENCH_MAX_RSS_MB) after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        if started.elapsed() > timeout {
            break Some(format!(
                "stopped: still running after {} s (BENCH_TIMEOUT_SECS); peak RSS seen {peak:.0} MB",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(why) = killed {
        let _ = child.kill();
        let _ = child.wait();
        return Row::Failed(why);
    }
    let status = child.wait().ok();
    let mut line = None;
    if let Some(stdout) = child.stdout.take() {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = l.strip_prefix(RESULT_PREFIX) {
                line = Some(json.to_string());
            }
        }
    }
    match line.map(|l| serde_json::from_str::<ChildResult>(&l)) {
        Some(Ok(ChildResult::Ok(m))) => Row::Done(Box::new(m)),
        Some(Ok(ChildResult::Err(e))) => Row::Failed(format!("error: {e}")),
        Some(Err(e)) => Row::Failed(format!("unreadable child result: {e}")),
        None => Row::Failed(format!(
            "the child died without a result ({})",
            status.map_or("unknown status".to_string(), |s| s.to_string())
        )),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.3}", bytes / 1e6)
}

fn f1(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The 1-minute load average: other work on the machine skews every number here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn render(results: &[(String, usize, Row)], total: Duration, load: (&str, &str)) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::new();
    s += &format!(
        "Machine: {cpu}, {cores} hardware threads; 1-minute load average {} at the start, {} at the end. Release build; all five parties are threads of one process (in-process transport). Total bench time {:.0} s.\n\n",
        load.0,
        load.1,
        total.as_secs_f64()
    );
    s += "### Time\n\n";
    s += "| model | batch | plaintext ms | secure ms, 1 prediction (median; min–max) | secure / plaintext | rows/s (1 prediction) | set-up ms | dealer ms | online ms | in-session ms/pred | rows/s in session | dealer ms/pred in session | online ms/pred in session | argmax = plaintext | max abs diff | peak RSS MB |\n";
    s += "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (name, batch, row) in results {
        match row {
            Row::Done(m) => {
                s += &format!(
                    "| {name} | {batch} | {} | {} ({}–{}) | {:.0}× | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {:.1e} | {:.0} |\n",
                    f1(m.plaintext_ms),
                    f1(m.oneshot_ms),
                    f1(m.oneshot_min_ms),
                    f1(m.oneshot_max_ms),
                    m.oneshot_ms / m.plaintext_ms,
                    f1(m.rows as f64 * 1e3 / m.oneshot_ms),
                    f1(m.oneshot_setup_ms),
                    f1(m.oneshot_dealer_ms),
                    f1(m.oneshot_online_ms),
                    f1(m.session_ms),
                    f1(m.rows as f64 * 1e3 / m.session_ms),
                    f1(m.session_dealer_ms),
                    f1(m.session_online_ms),
                    m.argmax_agree,
                    m.argmax_rows,
                    m.max_abs_diff,
                    m.peak_rss_mb,
                );
            }
            Row::Failed(why) => {
                s += &format!(
                    "| {name} | {batch} | {} |{}\n",
                    why.replace('|', "\\|").replace('\n', " "),
                    " |".repeat(14)
                );
            }
        }
    }
    s += "\n### Communication per prediction (session set-up excluded)\n\n";
    s += "| model | batch | server0 MB sent | server1 MB sent | dealer MB sent | client MB sent | server0 rounds | set-up MB sent (all parties) | set-up rounds (server0) |\n";
    s += "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (name, batch, row) in results {
        let Row::Done(m) = row else { continue };
        let p = |party: Party| m.parties.get(party.name()).cloned().unwrap_or_default();
        let setup: f64 = m.parties.values().map(|p| p.setup_bytes_sent).sum();
        s += &format!(
            "| {name} | {batch} | {} | {} | {} | {} | {:.0} | {} | {:.0} |{}\n",
            mb(p(Party::Server0).bytes_sent),
            mb(p(Party::Server1).bytes_sent),
            mb(p(Party::Dealer).bytes_sent),
            mb(p(Party::Client).bytes_sent),
            p(Party::Server0).rounds,
            mb(setup),
            p(Party::Server0).setup_rounds,
            if m.traffic_deterministic { "" } else { " (traffic differed between sessions)" }
        );
    }
    s += "\nColumns: *secure ms, 1 prediction* is the wall time of `predict_many` with one prediction \
(session set-up, dealer and online phase: what `tfe-run MODEL INPUT` pays), median of the measured \
sessions after one warm-up session; *set-up / dealer / online ms* are those sessions' `Stats` \
(medians): `setup` (weights shared and their masks opened), `offline` (the dealer's work) and `online` \
(server 0, from receiving the input shares to sending the output shares). The dealer deals \
beside the online phase, on the same two cores, and server 1 waits only for material not yet \
dealt, so one prediction takes less than dealer + online. *In session* numbers come from one session of 1 + n predictions: wall time \
and traffic minus a one-prediction session, divided by n (set-up excluded; the dealer runs ahead on \
its own thread, competing for the cores), dealer and online time divided by 1 + n. Rounds and bytes \
are each party's own counts (`Stats.parties[p].traffic`).\n";
    s
}

fn main() -> Result<()> {
    if let Ok(which) = std::env::var("BENCH_CHILD") {
        child_main(&which);
    }
    let set = set()?;
    let all = specs(set)?;
    let wanted: Vec<String> = match std::env::var("BENCH_MODELS") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        }
        _ => all.iter().map(|s| s.name.clone()).collect(),
    };
    for w in &wanted {
        if !all.iter().any(|s| &s.name == w) {
            bail!(
                "BENCH_MODELS: unknown model `{w}` (known: {})",
                all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let batches: &[usize] = if quick { &set.batches[..1] } else { &set.batches };
    let timeout = Duration::from_secs(env_u64("BENCH_TIMEOUT_SECS", set.timeout_secs));
    let max_rss = env_u64("BENCH_MAX_RSS_MB", 6144) as f64;

    let started = Instant::now();
    let load_start = load_average();
    let mut results = Vec::new();
    for name in &wanted {
        let mut stopped = false;
        for &batch in batches {
            if stopped {
                let why = "skipped: batch 1 was stopped".to_string();
                eprintln!("{name} batch {batch}: {why}");
                results.push((name.clone(), batch, Row::Failed(why)));
                continue;
            }
            let t = Instant::now();
            let row = run_in_child(name, batch, timeout, max_rss);
            match &row {
                Row::Done(m) => eprintln!(
                    "{name} batch {batch}: plaintext {:.2} ms, secure {:.1} ms (1 prediction), {:.1} ms/pred in session, server0 {:.2} MB/pred, {:.0} rounds [{:.1} s]",
                    m.plaintext_ms,
                    m.oneshot_ms,
                    m.session_ms,
                    m.parties.get(Party::Server0.name()).map_or(0.0, |p| p.bytes_sent) / 1e6,
                    m.parties.get(Party::Server0.name()).map_or(0.0, |p| p.rounds),
                    t.elapsed().as_secs_f64()
                ),
                Row::Failed(why) => {
                    eprintln!("{name} batch {batch}: {why}");
                    stopped = why.starts_with("stopped");
                }
            }
            results.push((name.clone(), batch, row));
        }
    }
    let table = render(&results, started.elapsed(), (&load_start, &load_average()));
    print!("{table}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir().join("target"));
    let path = target.join(set.report);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&target)?;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(table.as_bytes())?;
        Ok(())
    };
    match write() {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e:#}", path.display()),
    }
    Ok(())
}
