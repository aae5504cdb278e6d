//! Deployments on a loopback cluster (three `tfe-run serve` processes): a
//! deployment becomes visible only when both servers hold it whole, a prediction
//! runs with one deployment on both servers, and the certificates a command
//! needs are checked before any party is contacted; a model or data set is
//! replaced only by the principal that put it there, and only when it says so.
//!
//! The expected outputs are TensorFlow's (`testdata/generate.py`): mnist_model
//! and maxpool_cnn on the first rows of `mnist_batch100.npy`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/delay.rs"]
mod delay;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::Cluster;
use common::*;
use ndarray::{ArrayD, Axis, Slice};

const ROWS: usize = 4;
/// A redeploy by the same principal says that it replaces.
const REPLACE: &[&str] = &["--replace"];

/// The first `ROWS` rows of `mnist_batch100.npy`, written to `dir`.
fn input_rows(dir: &Path) -> PathBuf {
    let all = load(&testdata("mnist_batch100.npy"));
    let path = dir.join("rows.npy");
    tfe_run::npy::write_f32(&path, &all.slice_axis(Axis(0), Slice::from(0..ROWS)).to_owned()).unwrap();
    path
}

/// TensorFlow's outputs of `model` (a testdata name) for those rows.
fn expected_rows(model: &str) -> ArrayD<f32> {
    load(&testdata(&format!("{model}.expected.npy"))).slice_axis(Axis(0), Slice::from(0..ROWS)).to_owned()
}

/// Within the tolerance of the secure protocol (as `assert_matches`, without panicking).
fn close(actual: &ArrayD<f32>, expected: &ArrayD<f32>) -> bool {
    actual.shape() == expected.shape()
        && actual.iter().zip(expected.iter()).all(|(a, e)| (a - e).abs() <= 1e-2 * e.abs().max(1.0))
}

fn deploy_args<'a>(name: &'a str, model: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["deploy", "--name", name, "--batch-size", "4"];
    args.extend_from_slice(extra);
    args.push(model.to_str().unwrap());
    args
}

fn deploy(cluster: &Cluster, name: &str, model: &str, extra: &[&str]) -> Output {
    let model = testdata(&format!("{model}.pb"));
    cluster.command(&deploy_args(name, &model, extra)).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `predict --model NAME` on `input`: the exit code, the output (if it wrote one) and stderr.
fn predict(cluster: &Cluster, name: &str, input: &Path, out: &Path) -> (Option<i32>, Option<ArrayD<f32>>, String) {
    let _ = std::fs::remove_file(out);
    let result = cluster
        .command(&["predict", "--model", name, "--out", out.to_str().unwrap()])
        .arg(input)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let output = out.exists().then(|| load(out));
    (result.status.code(), output, text(&result.stderr))
}

/// Predict and require the answer of `model`.
fn assert_serves(cluster: &Cluster, name: &str, model: &str, dir: &Path) {
    let (code, output, stderr) = predict(cluster, name, &input_rows(dir), &dir.join("out.npy"));
    assert_eq!(code, Some(0), "{stderr}");
    let output = output.unwrap();
    let expected = expected_rows(model);
    assert!(close(&output, &expected), "`{name}` answered {output:?}, {model} computes {expected:?}");
}

/// A cluster serving maxpool_cnn as `m`, and a config whose server1 is behind a
/// proxy that cuts or stalls each connection after 100 kB (mnist_model's shares
/// for server1 are 176 kB, so a redeploy of it through the config stops part-way;
/// maxpool_cnn's are 21 kB). Keep the runtime: it runs the proxy.
fn serving_with_a_cut_link(cut: delay::Cut) -> (Cluster, PathBuf, Arc<AtomicBool>, tokio::runtime::Runtime) {
    let cluster = Cluster::start(false, 10.0);
    let out = deploy(&cluster, "m", "maxpool_cnn", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let target = cluster.listen_address("server1");
    let (proxy, tripped) = rt.block_on(delay::spawn_cut_proxy(target, 100_000, cut));
    let config = cluster.config_with("server1", proxy);
    (cluster, config, tripped, rt)
}

/// The model owner's link to server1 broken after 100 kB of a redeploy of
/// another model: the deploy fails, and the deployment before it still serves
/// on both servers.
#[test]
fn a_redeploy_cut_half_way_leaves_the_previous_deployment_serving() {
    let (cluster, config, tripped, _proxy) = serving_with_a_cut_link(delay::Cut::Close);
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("mnist_model.pb");
    let out = cluster.command_with(&config, &deploy_args("m", &model, REPLACE)).output().unwrap();
    assert!(tripped.load(Ordering::SeqCst), "the proxy did not cut the link");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));

    assert_serves(&cluster, "m", "maxpool_cnn", dir.path());
    std::thread::sleep(Duration::from_millis(200));
    for server in ["server0", "server1"] {
        let log = cluster.log(server);
        assert!(!log.contains("model `m` replaced"), "{server}: {log}");
    }
}

/// The deploy driver killed (SIGKILL) while server1 has only part of the shares
/// (its link stalls after 100 kB) and server0 has all of its own: both servers
/// keep the deployment before it.
#[test]
fn a_deploy_driver_killed_mid_way_leaves_the_previous_deployment_serving() {
    let (cluster, config, stalled, _proxy) = serving_with_a_cut_link(delay::Cut::Stall);
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("mnist_model.pb");
    let mut child = cluster
        .command_with(&config, &deploy_args("m", &model, REPLACE))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !stalled.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(20), "the redeploy never reached 100 kB");
        std::thread::sleep(Duration::from_millis(10));
    }
    // server0 has had all it gets (a seed) since the start: give a server that
    // commits on its own share alone the time to do so, as main's did.
    let waited = Instant::now();
    while !cluster.log("server0").contains("model `m` replaced") && waited.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_serves(&cluster, "m", "maxpool_cnn", dir.path());
    assert!(!cluster.log("server0").contains("model `m` replaced"), "{}", cluster.log("server0"));
}

/// 20 redeploys of one name (mnist_model twice, maxpool_cnn twice, ...) racing
/// 100 predictions on it from four clients: every prediction that exits 0 is one
/// of the two models' answers; every other one is refused with exit 5.
#[test]
fn a_redeploy_racing_predictions_never_mixes_deployments() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let out = deploy(&cluster, "m", "mnist_model", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let input = input_rows(dir.path());
    let answers = [expected_rows("mnist_model"), expected_rows("maxpool_cnn")];
    let done = std::sync::atomic::AtomicBool::new(false);

    let (right, refused, wrong, redeploys) = std::thread::scope(|scope| {
        let redeployer = scope.spawn(|| {
            let mut failed = Vec::new();
            for k in 0..20 {
                let model = if k / 2 % 2 == 0 { "maxpool_cnn" } else { "mnist_model" };
                let out = deploy(&cluster, "m", model, REPLACE);
                if !out.status.success() {
                    failed.push(text(&out.stderr));
                }
            }
            done.store(true, Ordering::SeqCst);
            failed
        });
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (cluster, input, answers, dir) = (&cluster, &input, &answers, dir.path());
                scope.spawn(move || {
                    let (mut right, mut refused, mut wrong) = (0, Vec::new(), Vec::new());
                    for k in 0..25 {
                        let out = dir.join(format!("out{c}-{k}.npy"));
                        match predict(cluster, "m", input, &out) {
                            (Some(0), Some(y), _) if answers.iter().any(|a| close(&y, a)) => right += 1,
                            (Some(0), y, stderr) => wrong.push(format!("{y:?} {stderr}")),
                            (Some(5), _, stderr) => refused.push(stderr),
                            (code, _, stderr) => wrong.push(format!("exit {code:?}: {stderr}")),
                        }
                    }
                    (right, refused, wrong)
                })
            })
            .collect();
        let mut totals = (0, Vec::new(), Vec::new());
        for client in clients {
            let (r, f, w) = client.join().unwrap();
            totals.0 += r;
            totals.1.extend(f);
            totals.2.extend(w);
        }
        let failed = redeployer.join().unwrap();
        (totals.0, totals.1, totals.2, failed)
    });
    eprintln!("{right} right, {} refused, {} wrong; {} redeploys failed", refused.len(), wrong.len(), redeploys.len());
    assert!(wrong.is_empty(), "{} wrong answers or exit codes: {:#?}", wrong.len(), wrong);
    assert!(redeploys.is_empty(), "{redeploys:#?}");
    for stderr in &refused {
        assert!(stderr.contains("model `m`"), "a refusal that does not name the model: {stderr}");
    }
    assert!(right >= 50, "only {right} of 100 predictions were answered: {refused:#?}");
    // After the race, the last deployment (mnist_model) serves.
    assert_serves(&cluster, "m", "mnist_model", dir.path());
}

/// A model deployed with `--comparison fss` (the protocol is the deployment's)
/// predicts on remote parties what TensorFlow computed, and its `--stats` show
/// every layer's measured bytes and rounds equal to the planned ones.
#[test]
fn a_deployment_under_fss_serves_tensorflows_answer_with_measured_equal_to_planned() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let out = deploy(&cluster, "m", "mnist_model", &["--comparison", "fss"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out_file = dir.path().join("out.npy");
    let result = cluster
        .command(&["predict", "--model", "m", "--stats", "--out", out_file.to_str().unwrap()])
        .arg(input_rows(dir.path()))
        .output()
        .unwrap();
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let (output, expected) = (load(&out_file), expected_rows("mnist_model"));
    assert!(close(&output, &expected), "under fss: {output:?}, TensorFlow: {expected:?}");
    // Per layer: step, op, node, sent MB, planned MB, rounds, planned rounds, ms.
    let is_step = |l: &&str| l.split_whitespace().next().is_some_and(|t| t.parse::<usize>().is_ok());
    let layers: Vec<&str> = stderr.lines().filter(|l| l.matches(" MB").count() == 2).filter(is_step).collect();
    assert!(layers.iter().any(|l| l.contains("Relu")), "no per-layer lines: {stderr}");
    for line in layers {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let mb: Vec<usize> = (0..cols.len()).filter(|&i| cols[i] == "MB").collect();
        assert_eq!(cols[mb[0] - 1], cols[mb[1] - 1], "measured vs planned bytes: {line}");
        assert_eq!(cols[mb[1] + 1], cols[mb[1] + 2], "measured vs planned rounds: {line}");
    }
    // The servers' rounds under fss: at most 8 online for this network (issue #15).
    let server0 = stderr.lines().find(|l| l.starts_with("server0 ")).unwrap_or_else(|| panic!("{stderr}"));
    let rounds: u32 = server0.split_whitespace().last().unwrap().parse().unwrap();
    assert!(rounds <= 10, "server0 took {rounds} rounds under fss: {server0}");
}

/// A certificate folder with only what the model owner needs for `deploy`.
fn owner_only_certs(cluster: &Cluster, dir: &Path, pair: &str) -> PathBuf {
    let certs = dir.join(format!("only-{pair}"));
    std::fs::create_dir_all(&certs).unwrap();
    for file in ["ca.pem".to_string(), format!("{pair}.pem"), format!("{pair}.key")] {
        std::fs::copy(cluster.certs().join(&file), certs.join(&file)).unwrap();
    }
    certs
}

fn deploy_with_certs(cluster: &Cluster, certs: &Path, name: &str) -> Output {
    Command::new(cluster::binary())
        .args(["deploy", "--name", name, "--batch-size", "4", "--config"])
        .arg(&cluster.config)
        .arg("--certs")
        .arg(certs)
        .arg(testdata("mnist_model.pb"))
        .output()
        .unwrap()
}

/// docs/DEPLOYMENT.md: the model owner needs only `ca.pem model-owner.pem model-owner.key`.
#[test]
fn deploy_needs_only_the_model_owners_certificates() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let certs = owner_only_certs(&cluster, dir.path(), "model-owner");
    let out = deploy_with_certs(&cluster, &certs, "m");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_serves(&cluster, "m", "mnist_model", dir.path());
}

/// With only the client's key pair, `deploy` is refused before any party is
/// contacted (main opened a session, and server0 waited 10 s for the model owner).
#[test]
fn deploy_without_the_model_owners_certificate_is_refused_before_dialling() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let certs = owner_only_certs(&cluster, dir.path(), "client");
    let start = Instant::now();
    let out = deploy_with_certs(&cluster, &certs, "m");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("model-owner.pem"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    std::thread::sleep(Duration::from_millis(200));
    for server in ["server0", "server1"] {
        assert!(!cluster.log(server).contains("session"), "{server}: {}", cluster.log(server));
    }
}

/// The deployment id a server logged for its last commit of `name`.
fn logged_deployment(cluster: &Cluster, server: &str, name: &str) -> String {
    let log = cluster.log(server);
    let committed = [format!("model `{name}` deployed: deployment "), format!("model `{name}` replaced: deployment ")];
    let line = log.lines().rev().find(|l| committed.iter().any(|c| l.contains(c.as_str())));
    let line = line.unwrap_or_else(|| panic!("{server} logged no deployment of `{name}`: {log}"));
    line.split(": deployment ").nth(1).unwrap().split(' ').next().unwrap().to_string()
}

/// A redeploy whose commit reaches server1 only (the model owner's commit to
/// server0 lost): the servers hold different deployments, and a prediction is
/// refused with exit 5, naming the model and both deployments; server0 keeps
/// the deployment before.
#[test]
fn servers_holding_different_deployments_refuse_the_prediction_naming_both() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let out = deploy(&cluster, "m", "mnist_model", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = logged_deployment(&cluster, "server0", "m");

    let input = input_rows(dir.path());
    let p = tfe_run::cli::prepare(&testdata("mnist_model.pb"), None, Some(&input), &Default::default()).unwrap();
    let fp = tfe_run::ring::FixedPoint::default();
    let only = [tfe_run::transport::Party::Server1];
    tfe_run::remote::driver::deploy_committing(&cluster.remote(), "m", &p.plan, fp, true, &only).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = logged_deployment(&cluster, "server1", "m");
    assert_ne!(first, second);
    assert_eq!(logged_deployment(&cluster, "server0", "m"), first, "server0 committed without being told");
    cluster.expect_log("server0", "abandoned before its commit");

    let (code, output, stderr) = predict(&cluster, "m", &input, &dir.path().join("out.npy"));
    assert_eq!(code, Some(5), "{stderr}");
    assert!(output.is_none());
    assert!(
        stderr.contains(&format!("model `m`: server0 holds deployment {first}"))
            && stderr.contains(&format!("server1 holds {second}")),
        "{stderr}"
    );
    // Deploying again mends it.
    let out = deploy(&cluster, "m", "mnist_model", REPLACE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_serves(&cluster, "m", "mnist_model", dir.path());
}

fn run(cluster: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let out = cluster.command(args).stdout(Stdio::null()).output().unwrap();
    (out.status.code(), text(&out.stderr))
}

/// Every client shared the certificate name `client`, so any of them could
/// replace another's deployed model or held data set. Now principals have names
/// of their own (`certs --client alice --model-owner acme`, `--as NAME`); a
/// replacement by another principal is refused, naming both, and the owner
/// replaces only with --replace.
#[test]
fn another_principal_cannot_replace_a_deployed_model_or_a_held_data_set() {
    let principals = ["--client", "alice", "--client", "bob", "--model-owner", "acme", "--model-owner", "globex"];
    let cluster = Cluster::start_with_principals(10.0, &principals);
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("mnist_model.pb");
    let model = model.to_str().unwrap();
    let deploy_as = |who: &str, extra: &[&str]| {
        let mut args = vec!["deploy", "--as", who, "--name", "m", "--batch-size", "4"];
        args.extend_from_slice(extra);
        args.push(model);
        run(&cluster, &args)
    };
    let (code, stderr) = deploy_as("acme", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    cluster.expect_log("server0", "by `acme`");
    let (code, stderr) = deploy_as("globex", &["--replace"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("model `m` was deployed by `acme`: `globex` may not replace it"), "{stderr}");
    let (code, stderr) = deploy_as("acme", &[]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("model `m` was deployed already (by `acme`): redeploy with --replace"), "{stderr}");
    // A client's certificate is not a model owner's.
    let (code, stderr) = deploy_as("alice", &["--replace"]);
    assert_eq!(code, Some(5), "{stderr}");
    let (code, stderr) = deploy_as("acme", &["--replace"]);
    assert_eq!(code, Some(0), "{stderr}");
    let input = input_rows(dir.path());
    let out = dir.path().join("out.npy");
    let (code, stderr) = run(
        &cluster,
        &["predict", "--as", "bob", "--model", "m", "--out", out.to_str().unwrap(), input.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(close(&load(&out), &expected_rows("mnist_model")));

    // Data sets: alice's rows, for acme only.
    let d = |name: &str| testdata("training").join(name).to_str().unwrap().to_string();
    let (features, labels) = (d("bc_a_features.npy"), d("bc_a_labels.npy"));
    let contribute_as = |who: &str, extra: &[&str]| {
        let mut args = vec!["contribute", "--as", who, "--name", "bc", "--features", &features, "--labels", &labels];
        args.extend_from_slice(extra);
        run(&cluster, &args)
    };
    let (code, stderr) = contribute_as("alice", &["--trainer", "acme"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = contribute_as("bob", &["--trainer", "globex", "--replace"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("data set `bc` was contributed by `alice`: `bob` may not replace it"), "{stderr}");
    assert!(!cluster.log("server0").contains("data set `bc` replaced"), "{}", cluster.log("server0"));

    let lr = dir.path().join("lr.pb");
    let train_as = |who: &str| {
        run(&cluster, &["train", "--as", who, "--data", "bc", "--epochs", "1", "--out", lr.to_str().unwrap()])
    };
    let (code, stderr) = train_as("globex");
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains("data set `bc` (contributed by `alice`) may be trained on by `acme` only, not by `globex`"),
        "{stderr}"
    );
    let (code, stderr) = train_as("acme");
    assert_eq!(code, Some(0), "{stderr}");
    // The contributor replaces its own rows only with --replace.
    let (code, stderr) = contribute_as("alice", &["--trainer", "acme"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("contribute with --replace"), "{stderr}");
    let (code, stderr) = contribute_as("alice", &["--trainer", "acme", "--replace"]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// Without TLS there are no principals (every peer is `insecure`), but a
/// deployed name is still replaced only with --replace.
#[test]
fn without_tls_a_redeploy_still_needs_the_replace_flag() {
    let cluster = Cluster::start(true, 10.0);
    let out = deploy(&cluster, "m", "mnist_model", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = deploy(&cluster, "m", "mnist_model", &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("by `insecure`): redeploy with --replace"), "{}", text(&out.stderr));
    let out = deploy(&cluster, "m", "mnist_model", REPLACE);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Two redeploys of one name at once could commit in one order on server0 and
/// in the other on server1, leaving the servers on different deployments: here
/// mnist_model's model owner has a slow link (200 ms each way) to server1 and
/// maxpool_cnn's a slow link to server0, so each reaches one server first (on
/// main's design, each won one server). A server takes one deployment of a name
/// at a time, so at most one of the two commits (on both), and the name keeps
/// serving: three rounds, each followed by a prediction that must be one of the
/// two models' answers.
#[test]
fn two_redeploys_at_once_never_leave_the_servers_on_different_deployments() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let out = deploy(&cluster, "m", "mnist_model", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let slow = |server: &str| {
        let proxy = rt.block_on(delay::spawn_delay_proxy(cluster.listen_address(server), Duration::from_millis(200)));
        cluster.config_with(server, proxy)
    };
    let routes = [("mnist_model", slow("server1")), ("maxpool_cnn", slow("server0"))];
    let input = input_rows(dir.path());
    let answers = [expected_rows("mnist_model"), expected_rows("maxpool_cnn")];
    let mut committed = 0;
    for round in 0..3 {
        let children: Vec<_> = routes
            .iter()
            .map(|(model, config)| {
                let model = testdata(&format!("{model}.pb"));
                let mut command = cluster.command_with(config, &deploy_args("m", &model, REPLACE));
                command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            match out.status.code() {
                Some(0) => committed += 1,
                Some(5) => assert!(text(&out.stderr).contains("model `m`"), "{}", text(&out.stderr)),
                code => panic!("round {round}: deploy exited {code:?}: {}", text(&out.stderr)),
            }
        }
        let (code, output, stderr) = predict(&cluster, "m", &input, &dir.path().join("out.npy"));
        assert_eq!(code, Some(0), "round {round}: {stderr}");
        let output = output.unwrap();
        assert!(answers.iter().any(|a| close(&output, a)), "round {round}: {output:?}");
    }
    eprintln!("{committed} of 6 concurrent redeploys committed");
}

/// `train` on held data sets needs only the model owner's certificates (main
/// refused without `client.pem`); with a local data owner's rows it needs the
/// client's too, and says so before contacting any party.
#[test]
fn train_on_held_data_needs_only_the_model_owners_certificates() {
    let cluster = Cluster::start(false, 10.0);
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| testdata("training").join(name).to_str().unwrap().to_string();
    let (code, stderr) = run(
        &cluster,
        &["contribute", "--name", "bc", "--features", &d("bc_a_features.npy"), "--labels", &d("bc_a_labels.npy")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let certs = owner_only_certs(&cluster, dir.path(), "model-owner");
    let lr = dir.path().join("lr.pb");
    let train = |extra: &[&str]| {
        let out = Command::new(cluster::binary())
            .args(["train", "--data", "bc", "--epochs", "1", "--out", lr.to_str().unwrap(), "--config"])
            .arg(&cluster.config)
            .arg("--certs")
            .arg(&certs)
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = train(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("rows from 1 data owner(s)"), "{stdout}");
    let sessions = cluster.log("server1").matches("session").count();
    let (code, _, stderr) = train(&["--features", &d("bc_b_features.npy"), "--labels", &d("bc_b_labels.npy")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("client.pem"), "{stderr}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cluster.log("server1").matches("session").count(), sessions, "{}", cluster.log("server1"));
}
