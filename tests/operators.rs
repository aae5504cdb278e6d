//! What an operator of `tfe-run serve` sees and does (issue 16): the metrics
//! and health endpoint, the JSON log with its session spans, the drain on
//! SIGTERM, and `tfe-run status`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/delay.rs"]
mod delay;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use cluster::{Cluster, Setup};
use common::*;
use tfe_run::remote::driver;
use tfe_run::transport::Party;

fn start(serve_args: &[&str]) -> Cluster {
    Cluster::start_with(Setup {
        timeout_secs: 10.0,
        serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
        ..Setup::default()
    })
}

/// One HTTP/1.1 request to `address`: the status code and the body ("" and
/// 0 if the connection was closed unanswered).
fn http(address: &str, request: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8(answer).unwrap();
    let Some((head, body)) = answer.split_once("\r\n\r\n") else { return (0, answer) };
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string())
}

fn get(address: &str, path: &str) -> (u16, String) {
    http(address, &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"))
}

/// A sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse the Prometheus / OpenMetrics text format: `# HELP`, `# TYPE`, `# EOF`
/// lines, and `name{label="value",...} number` samples.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF: {text}");
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => value.push(chars.next().unwrap().1),
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value in {line}"),
                        }
                    };
                    labels.insert(key.to_string(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_string(), labels)
            }
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

fn scrape(cluster: &Cluster, party: &str) -> Vec<Sample> {
    let (code, body) = get(&cluster.metrics_address(party), "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_metrics(&body)
}

#[test]
fn metrics_count_the_sessions_bytes_and_rounds_of_a_deploy_and_a_prediction() {
    let cluster = start(&["--metrics", "127.0.0.1:0"]);
    let before = scrape(&cluster, "server0");
    assert_eq!(value(&before, "tfe_sessions_total", &[]), 0.0);
    assert_eq!(value(&before, "tfe_sessions_limit", &[]), 64.0);
    assert_eq!(value(&before, "tfe_session_buffer_limit_bytes", &[]), 4.0 * f64::from(1 << 30));
    let build = before.iter().find(|s| s.name == "tfe_build_info").expect("tfe_build_info");
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build.labels["party"], "server0");

    let p = tfe_run::cli::prepare(
        &testdata("mnist_model.pb"),
        None,
        Some(&testdata("mnist_input.npy")),
        &Default::default(),
    )
    .unwrap();
    let remote = cluster.remote();
    let fp = tfe_run::ring::FixedPoint::default();
    let deployed = driver::deploy(&remote, "mnist", &p.plan, fp, false).unwrap();
    let input = p.inputs.clone();
    let (_, output, predicted) = driver::predict_deployed(&remote, "mnist", |_| Ok(input.clone())).unwrap();
    let expected = load(&testdata("mnist_model.single.expected.npy"));
    assert_matches("mnist deployed", &output.to_float(), &expected, 1e-2);

    // The counters moved by what the parties themselves reported, exactly.
    for (party, name) in [(Party::Server0, "server0"), (Party::Server1, "server1"), (Party::Dealer, "crypto-producer")]
    {
        let after = scrape(&cluster, name);
        let traffic = |o: &tfe_run::runtime::Outcome| o.stats.parties.get(&party).map(|s| s.traffic.clone());
        let mut total = tfe_run::transport::Traffic::default();
        for t in [traffic(&deployed), traffic(&predicted)].into_iter().flatten() {
            total.add(&t);
        }
        assert!(total.bytes_sent > 0, "{name} sent nothing");
        assert_eq!(value(&after, "tfe_sent_bytes_total", &[]), total.bytes_sent as f64, "{name} sent");
        assert_eq!(value(&after, "tfe_received_bytes_total", &[]), total.bytes_received as f64, "{name} received");
        assert_eq!(value(&after, "tfe_rounds_total", &[]), total.rounds as f64, "{name} rounds");
        let predictions = value(&after, "tfe_sessions_total", &[("request", "predict"), ("outcome", "done")]);
        assert_eq!(predictions, 1.0, "{name}");
        let timed = value(&after, "tfe_session_duration_seconds_count", &[("request", "predict")]);
        assert_eq!(timed, 1.0, "{name}");
        assert!(value(&after, "tfe_session_duration_seconds_sum", &[("request", "predict")]) > 0.0);
        assert_eq!(value(&after, "tfe_sessions_total", &[("outcome", "failed")]), 0.0, "{name}");
        assert_eq!(value(&after, "tfe_sessions_running", &[]), 0.0, "{name}");
        if party == Party::Dealer {
            assert_eq!(value(&after, "tfe_model", &[]), 0.0, "the crypto producer holds no models");
            continue;
        }
        assert_eq!(value(&after, "tfe_sessions_total", &[("request", "deploy"), ("outcome", "done")]), 1.0);
        let model = after.iter().find(|s| s.name == "tfe_model").unwrap_or_else(|| panic!("{name}: no tfe_model"));
        assert_eq!(model.labels["name"], "mnist");
        assert_eq!(model.labels["deployment"].len(), 16);
        assert_eq!(model.labels["digest"].len(), 64);
    }
    // server1 described the deployment to the client first.
    let server1 = scrape(&cluster, "server1");
    assert_eq!(value(&server1, "tfe_sessions_total", &[("request", "describe"), ("outcome", "done")]), 1.0);

    // A refused session is counted with its kind.
    let out = cluster.command(&["predict", "--model", "nosuch"]).arg(testdata("mnist_input.npy")).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let server1 = scrape(&cluster, "server1");
    assert_eq!(value(&server1, "tfe_sessions_total", &[("request", "describe"), ("outcome", "refused")]), 1.0);
    assert_eq!(value(&server1, "tfe_failures_total", &[("stage", "refused")]), 1.0);
    // So is an input the deployment's plan refuses, after the describe.
    let out = cluster.command(&["predict", "--model", "mnist"]).arg(testdata("mnist_labels100.npy")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // The connections the driver opened ahead for the predictions closed
    // unused: no refusal anywhere.
    for party in ["server0", "server1", "crypto-producer"] {
        assert_eq!(value(&scrape(&cluster, party), "tfe_connections_refused_total", &[]), 0.0, "{party}");
    }
}

/// Connections between the parties persist across sessions: once server1
/// holds the standby connections of server0 and the crypto producer, a
/// prediction's joins dial nothing (no TLS handshake between the parties), and
/// the next session finds new ones.
#[test]
fn sessions_join_the_servers_on_standby_connections_without_a_handshake() {
    let cluster = start(&["--metrics", "127.0.0.1:0"]);
    let parked = |party: &str, wanted: f64| {
        let t = std::time::Instant::now();
        loop {
            let now = value(&scrape(&cluster, party), "tfe_standby_parked", &[]);
            if now >= wanted {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "{party} parks {now} standby connections, not {wanted}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let out = cluster.command(&["deploy", "--name", "m"]).arg(testdata("mnist_model.pb")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for round in 1..=2 {
        // server1: server0's and the crypto producer's; server0: the crypto producer's.
        parked("server1", 2.0);
        parked("server0", 1.0);
        let before = |party: &str, connection: &str| {
            value(&scrape(&cluster, party), "tfe_joins_total", &[("connection", connection)])
        };
        let (s0, dealer) = (before("server0", "standby"), before("crypto-producer", "standby"));
        let (s0_dialled, dealer_dialled) = (before("server0", "dialled"), before("crypto-producer", "dialled"));
        let out = cluster.command(&["predict", "--model", "m"]).arg(testdata("mnist_input.npy")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(before("server0", "standby"), s0 + 1.0, "prediction {round}: server0 joined server1 on standby");
        assert_eq!(before("crypto-producer", "standby"), dealer + 2.0, "prediction {round}: both servers on standby");
        assert_eq!(before("server0", "dialled"), s0_dialled, "prediction {round}: server0 dialled");
        assert_eq!(before("crypto-producer", "dialled"), dealer_dialled, "prediction {round}: the dealer dialled");
    }
}

/// `predict --model` keeps the deployment it ran with and names it at once
/// the next time (server1 describes it once), and an entry that a redeploy
/// made stale, that no longer fits the input, that is damaged or that names a
/// deployment no server holds costs one refused start and a fresh
/// description, never a wrong answer.
#[test]
fn a_cached_description_skips_server1s_and_a_stale_or_damaged_one_is_described_afresh() {
    let cluster = start(&["--metrics", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().unwrap();
    let rows = |all: &str, shape: &[usize]| {
        let all = load(&testdata(all));
        let four = all.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..4)).to_owned();
        four.into_shape_with_order(shape.to_vec()).unwrap()
    };
    let images = dir.path().join("images.npy");
    tfe_run::npy::write_f32(&images, &rows("mnist_batch100.npy", &[4, 28, 28, 1])).unwrap();
    let flat = dir.path().join("flat.npy");
    tfe_run::npy::write_f32(&flat, &rows("mnist_flat100.npy", &[4, 784])).unwrap();
    let expected = |model: &str| {
        let all = load(&testdata(&format!("{model}.expected.npy")));
        all.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..4)).to_owned()
    };
    let deploy = |model: &str| {
        let args = ["deploy", "--name", "m", "--batch-size", "4", "--replace"];
        let out = cluster.command(&args).arg(testdata(&format!("{model}.pb"))).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let described = || value(&scrape(&cluster, "server1"), "tfe_sessions_total", &[("request", "describe")]);
    let entries = || -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(cluster.descriptions()) {
            Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    };
    let out_file = dir.path().join("out.npy");
    let predict = |input: &std::path::Path, model: &str, extra: &[&str], case: &str| {
        let _ = std::fs::remove_file(&out_file);
        let out = cluster
            .command(&["predict", "--model", "m", "--out", out_file.to_str().unwrap()])
            .args(extra)
            .arg(input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        assert_matches(case, &load(&out_file), &expected(model), 1e-2);
    };

    deploy("mnist_model");
    predict(&images, "mnist_model", &[], "the first prediction");
    assert_eq!(described(), 1.0);
    assert_eq!(entries().len(), 1, "one entry for one model on one cluster");
    let entry = entries().remove(0);
    predict(&images, "mnist_model", &[], "with the cached description");
    assert_eq!(described(), 1.0, "the second prediction asked server1 for the description");

    // Redeployed with another model of the same input: the servers refuse the
    // cached deployment, and the prediction is the new model's.
    deploy("maxpool_cnn");
    predict(&images, "maxpool_cnn", &[], "after a redeploy");
    assert_eq!(described(), 2.0);
    predict(&images, "maxpool_cnn", &[], "with the renewed entry");
    assert_eq!(described(), 2.0);

    // Redeployed with a model of another input: the cached plan does not take
    // the input, and the fresh one does.
    deploy("mlp");
    predict(&flat, "mlp", &[], "an input only the new deployment takes");
    assert_eq!(described(), 3.0);

    // A damaged entry, and one naming a deployment that no server holds.
    std::fs::write(&entry, b"{\"format\": 1, \"deployment\": ").unwrap();
    predict(&flat, "mlp", &[], "with a damaged entry");
    assert_eq!(described(), 4.0);
    let text = std::fs::read_to_string(&entry).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("the damaged entry was rewritten");
    json["deployment"]["id"] = serde_json::json!(12345);
    std::fs::write(&entry, serde_json::to_vec(&json).unwrap()).unwrap();
    predict(&flat, "mlp", &[], "with an entry of another deployment");
    assert_eq!(described(), 5.0);

    // --no-cache asks every time and keeps nothing.
    std::fs::remove_dir_all(cluster.descriptions()).unwrap();
    predict(&flat, "mlp", &["--no-cache"], "without a cache");
    predict(&flat, "mlp", &["--no-cache"], "without a cache, again");
    assert_eq!(described(), 7.0);
    assert!(entries().is_empty(), "--no-cache kept {:?}", entries());
}

/// A cache folder that cannot be made or written (here, a path below a
/// regular file) costs the round trip to server1 on every prediction, never
/// the prediction itself.
#[test]
fn an_unwritable_cache_folder_only_costs_server1s_description() {
    let cluster = start(&["--metrics", "127.0.0.1:0"]);
    let out = cluster.command(&["deploy", "--name", "m"]).arg(testdata("mnist_model.pb")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let below = file.join("deployments");
    let expected = load(&testdata("mnist_model.single.expected.npy"));
    for k in 0..2 {
        let out_file = dir.path().join(format!("out{k}.npy"));
        let out = cluster
            .command(&[
                "predict",
                "--model",
                "m",
                "--cache-dir",
                below.to_str().unwrap(),
                "--out",
                out_file.to_str().unwrap(),
            ])
            .arg(testdata("mnist_input.npy"))
            .output()
            .unwrap();
        assert!(out.status.success(), "prediction {k}: {}", String::from_utf8_lossy(&out.stderr));
        assert_matches("with an unwritable cache", &load(&out_file), &expected, 1e-2);
    }
    let described = value(&scrape(&cluster, "server1"), "tfe_sessions_total", &[("request", "describe")]);
    assert_eq!(described, 2.0, "nothing was cached, so each prediction asked server1");
}

/// A party that accepts connections and answers nothing fails a prediction
/// within one deadline, with a cached description or without (`--no-cache`):
/// the driver neither dials the hung party again after its connection opened
/// ahead timed out, nor asks server1 and waits for it a second time.
#[test]
fn a_hung_server_fails_a_prediction_within_one_deadline_cached_or_not() {
    let cluster = start(&[]);
    let out = cluster.command(&["deploy", "--name", "m"]).arg(testdata("mnist_model.pb")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let predict = |extra: &[&str]| {
        let mut command = cluster.command(&["predict", "--model", "m", "--timeout", "3"]);
        command.args(extra).arg(testdata("mnist_input.npy"));
        let t = std::time::Instant::now();
        let out = command.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), t.elapsed())
    };
    let (code, stderr, _) = predict(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read_dir(cluster.descriptions()).unwrap().count(), 1, "the description is cached");
    let pid = cluster.pid("server0").to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let (uncached_code, uncached_stderr, uncached) = predict(&["--no-cache"]);
    let (code, stderr, cached) = predict(&[]);
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
    for (code, stderr) in [(uncached_code, &uncached_stderr), (code, &stderr)] {
        assert_eq!(code, Some(5), "{stderr}");
        assert!(stderr.contains("server0"), "{stderr}");
    }
    // One 3 s deadline, with room for a loaded machine; a second would make 6 s.
    for (what, waited) in [("with the cache", cached), ("without", uncached)] {
        assert!(waited < Duration::from_secs(5), "{what} the driver took {waited:?}: {stderr} / {uncached_stderr}");
    }
}

#[test]
fn healthz_answers_ok_and_the_endpoint_bounds_its_clients() {
    let cluster = start(&["--metrics", "127.0.0.1:0"]);
    let address = cluster.metrics_address("server1");
    assert_eq!(get(&address, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(&address, "/nope").0, 404);
    let post = http(&address, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert_eq!(post.0, 405);
    // A request head over hyper's buffer is refused, not buffered.
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Junk: {}\r\n\r\n", "a".repeat(64 << 10));
    assert_ne!(http(&address, &huge).0, 200);
    // The endpoint frees that connection's slot only once its task ends, which
    // may be after we read its answer: were it still held below, the 16th idle
    // connection would be refused and the 17th served once it is freed.
    std::thread::sleep(Duration::from_millis(300));
    // At most 16 connections at once: one more is closed unanswered, and the
    // endpoint answers again once they have gone.
    let idle: Vec<_> = (0..16).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&address, "/healthz").0, 0, "a 17th connection was served");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&address, "/healthz").0, 200);
    // The endpoint says nothing of the parties' principals or certificates.
    let (_, metrics) = get(&address, "/metrics");
    for private in ["client", "model-owner", "BEGIN", "principal"] {
        assert!(!metrics.contains(private), "`{private}` in the metrics: {metrics}");
    }
}

#[test]
fn serve_logs_json_lines_with_a_timestamp_a_level_and_the_session_span() {
    let cluster = start(&["--log-format", "json"]);
    let out = cluster.command(&[]).arg(testdata("mnist_model.pb")).arg(testdata("mnist_input.npy")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cluster.expect_log("server0", "done (");
    cluster.expect_log("server0", "holds no models and no data sets");
    let log = cluster.log("server0");
    let mut session_lines = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        let timestamp = v["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp: {line}"));
        assert!(timestamp.len() >= 20 && timestamp.ends_with('Z') && timestamp.contains('T'), "{line}");
        assert!(["INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap_or("")), "{line}");
        let message = v["fields"]["message"].as_str().unwrap_or_else(|| panic!("no message: {line}"));
        assert_eq!(v["spans"][0]["name"], "serve", "{line}");
        assert_eq!(v["spans"][0]["party"], "server0", "{line}");
        if let Some(id) = message.strip_prefix("session ").and_then(|m| m.get(..16)) {
            session_lines += 1;
            assert_eq!(v["span"]["name"], "session", "{line}");
            assert_eq!(v["span"]["id"], id, "the span carries the id the message names: {line}");
        }
    }
    assert!(session_lines >= 2, "{log}");
}

#[test]
fn sigterm_drains_a_running_session_refuses_new_ones_and_exits_0() {
    let mut cluster = Cluster::start_with(Setup {
        timeout_secs: 10.0,
        // Every message takes 20 ms each way: the session runs for seconds.
        delay: Some(Duration::from_millis(20)),
        serve_args: ["--metrics", "127.0.0.1:0", "--drain-timeout", "60"].map(String::from).to_vec(),
        ..Setup::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.npy");
    let running = cluster
        .command(&[])
        .arg(testdata("mnist_model.pb"))
        .arg(testdata("mnist_batch100.npy"))
        .arg("--out")
        .arg(&out_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cluster.expect_log("server0", "weights shared now from client");
    cluster.signal("server0", "TERM");
    cluster.expect_log("server0", "SIGTERM: draining: 1 session(s) running");
    assert_eq!(get(&cluster.metrics_address("server0"), "/healthz"), (503, "draining\n".to_string()));
    // A new session is refused, saying why.
    let late = cluster.command(&[]).arg(testdata("mnist_model.pb")).arg(testdata("mnist_input.npy")).output().unwrap();
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert_eq!(late.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("server0 is shutting down (draining its running sessions)"), "{stderr}");
    assert!(cluster.wait_exit("server0", Duration::from_millis(10)).is_none(), "server0 left its session");
    // The running one completes, with TensorFlow's answer.
    let done = running.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_matches("drained mnist", &load(&out_file), &load(&testdata("mnist_model.expected.npy")), 1e-2);
    let status = cluster.wait_exit("server0", Duration::from_secs(30)).expect("server0 exits once drained");
    assert_eq!(status.code(), Some(0), "{}", cluster.log("server0"));
    cluster.expect_log("server0", "drained: every session has ended");
}

#[test]
fn a_second_signal_stops_serve_at_once_cutting_its_sessions() {
    let mut cluster =
        Cluster::start_with(Setup { timeout_secs: 10.0, delay: Some(Duration::from_millis(20)), ..Setup::default() });
    let running = cluster
        .command(&[])
        .arg(testdata("mnist_model.pb"))
        .arg(testdata("mnist_batch100.npy"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cluster.expect_log("server1", "weights shared now from client");
    cluster.signal("server1", "INT");
    cluster.expect_log("server1", "SIGINT: draining");
    cluster.signal("server1", "TERM");
    let status = cluster.wait_exit("server1", Duration::from_secs(5)).expect("server1 stops at once");
    assert_eq!(status.code(), Some(1), "{}", cluster.log("server1"));
    let done = running.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(5), "a cut session is no answer: {}", String::from_utf8_lossy(&done.stdout));
    assert!(done.stdout.is_empty());
}

/// The commit the binary was built from, as `--version` prints it.
fn commit() -> String {
    let out = std::process::Command::new(cluster::binary()).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("(commit ").nth(1).and_then(|c| c.split(')').next()).unwrap().to_string()
}

/// `tfe-run status`'s output with what changes from run to run replaced by
/// names: the release and commit, deployment ids (16 hex digits), plan
/// digests (12) and ports; column padding is collapsed to two spaces.
fn normalised(text: &str) -> String {
    let text = text.replace(&commit(), "COMMIT").replace(env!("CARGO_PKG_VERSION"), "RELEASE");
    let mut out = String::new();
    let mut token = String::new();
    let mut after_colon = false;
    let flush = |token: &mut String, out: &mut String, after_colon: bool| {
        let hex = token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        let digits = !token.is_empty() && token.chars().all(|c| c.is_ascii_digit());
        out.push_str(match token.len() {
            _ if after_colon && digits => "PORT",
            16 if hex => "DEPLOYMENT",
            12 if hex => "PLAN",
            _ => token,
        });
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
        } else {
            flush(&mut token, &mut out, after_colon);
            after_colon = c == ':';
            out.push(c);
        }
    }
    flush(&mut token, &mut out, after_colon);
    // Columns are as wide as their cells: a `-dirty` commit widens one.
    out.lines().map(|l| l.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect::<Vec<_>>().join("  ")).fold(
        String::new(),
        |mut text, line| {
            text.push_str(&line);
            text.push('\n');
            text
        },
    )
}

#[test]
fn status_shows_each_party_its_limits_and_models_and_a_party_that_is_down() {
    let mut cluster = start(&["--max-sessions", "8"]);
    cluster.deploy("mnist", 1, &testdata("mnist_model.pb"));
    let status = |cluster: &Cluster, format: &str| {
        let out = cluster.command(&["status", "--format", format]).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, up, stderr) = status(&cluster, "text");
    assert_eq!(code, Some(0), "{stderr}");
    cluster.kill("crypto-producer");
    let (code, down, stderr) = status(&cluster, "text");
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("1 of 3 parties down: crypto-producer"), "{stderr}");
    golden(
        "status.txt",
        &normalised(&format!("$ tfe-run status\n{up}\n$ tfe-run status (crypto-producer stopped)\n{down}")),
    );

    let (code, json, _) = status(&cluster, "json");
    assert_eq!(code, Some(5));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["down"], serde_json::json!(["crypto-producer"]));
    let parties = v["parties"].as_array().unwrap();
    assert_eq!(parties.len(), 3);
    for server in &parties[..2] {
        assert_eq!(server["state"], "up");
        assert_eq!(server["limits"]["max_sessions"], 8);
        assert_eq!(server["version"]["release"], env!("CARGO_PKG_VERSION"));
        assert_eq!(server["commit"], commit());
        assert_eq!(server["models"][0]["name"], "mnist");
    }
    assert_eq!(parties[0]["models"][0]["deployment"], parties[1]["models"][0]["deployment"]);
    assert_eq!(parties[2]["state"], "down");
    assert!(parties[2]["error"].as_str().unwrap().contains("crypto-producer"), "{json}");
}
