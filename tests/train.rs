//! Private training against real data and a real reference.
//!
//! testdata/training/ holds scikit-learn's breast-cancer set (binary) and an MNIST
//! subset (ten classes), each split between two data owners with different label
//! encodings, plus what `generate_training.py` computed with numpy for the same
//! SGD: the weights and every epoch's loss. The exported models there were
//! written by `tfe-run train --plaintext` and run by TensorFlow
//! (`verify_export.py`), whose outputs are the `.expected.npy` files.

mod common;
#[path = "common/mpc.rs"]
mod mpc;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array2, ArrayD, Ix2};
use prost::Message;
use serde_json::Value;
use tfe_run::runtime::SecureConfig;
use tfe_run::train::{self, OwnerData, TrainSpec, export, secure};
use tfe_run::transport::{Party, Transport};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/training").join(name)
}

fn manifest(dataset: &str) -> Value {
    let text = std::fs::read_to_string(data("manifest.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all["datasets"][dataset].clone()
}

/// A data set as the `train` command loads it: both owners, the test rows, and
/// the spec with the generator's hyperparameters.
struct Case {
    name: &'static str,
    spec: TrainSpec,
    owners: Vec<OwnerData>,
    test_x: Array2<f32>,
    test_y: Array2<f32>,
    reference: Value,
}

fn case(name: &'static str, prefix: &str) -> Case {
    let m = manifest(name);
    let h = &m["hyperparameters"];
    let (owners, test) = common::training_data(prefix);
    let (epochs, batch) = (h["epochs"].as_u64().unwrap() as usize, h["batch_size"].as_u64().unwrap() as usize);
    let spec = common::training_spec(&owners, epochs, batch, h["learning_rate"].as_f64().unwrap());
    assert_eq!(spec.features as u64, m["num_features"].as_u64().unwrap());
    assert_eq!(spec.outputs as u64, m["num_outputs"].as_u64().unwrap());
    Case { name, spec, owners, test_x: test.features, test_y: test.labels, reference: m }
}

fn breast_cancer() -> Case {
    case("breast_cancer", "bc")
}

fn mnist() -> Case {
    case("mnist", "mnist")
}

fn npy64(name: &str) -> ArrayD<f64> {
    let bytes = std::fs::read(data(name)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    ArrayD::from_shape_vec(shape, npy.into_vec::<f64>().unwrap()).unwrap()
}

fn max_diff<'a>(a: impl IntoIterator<Item = &'a f64>, b: impl IntoIterator<Item = &'a f64>) -> f64 {
    a.into_iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn reference_losses(c: &Case) -> Vec<f64> {
    c.reference["reference_epoch_losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// Our plaintext trainer is the algorithm numpy ran: same weights and losses to
/// rounding, and the same test accuracy.
#[test]
fn plaintext_training_matches_numpy() {
    for (c, prefix) in [(breast_cancer(), "bc"), (mnist(), "mnist")] {
        let trained = train::train_plaintext(&c.spec, &c.owners, |_, _| {}).unwrap();
        let w = npy64(&format!("{prefix}_reference_weights.npy"));
        let b = npy64(&format!("{prefix}_reference_bias.npy"));
        let dw = max_diff(trained.model.weights.iter(), w.iter());
        let db = max_diff(trained.model.bias.iter(), b.iter());
        let dl = max_diff(&trained.epoch_losses, &reference_losses(&c));
        eprintln!("{}: |W − numpy| {dw:.1e}, |b − numpy| {db:.1e}, losses {dl:.1e}", c.name);
        assert!(dw < 1e-9 && db < 1e-9 && dl < 1e-12, "{}: weights {dw}, bias {db}, losses {dl}", c.name);
        let acc = trained.model.accuracy(&c.test_x, &c.test_y);
        assert_eq!(acc, c.reference["reference_test_accuracy"].as_f64().unwrap(), "{}", c.name);
    }
}

/// The bar: secure training's test accuracy within one percentage point
/// of plaintext training with the same hyperparameters on the same real data;
/// and, much tighter, the same model up to fixed-point rounding.
fn secure_matches_plaintext(c: Case, weight_tolerance: f64) {
    let plain = train::train_plaintext(&c.spec, &c.owners, |_, _| {}).unwrap();
    let epochs = std::sync::Mutex::new(Vec::new());
    let on_epoch = |e: usize, l: f64| epochs.lock().unwrap().push((e, l));
    let outcome = secure::train(&c.spec, &c.owners, &SecureConfig::default(), &on_epoch, None).unwrap();
    let secure = outcome.trained;
    let (acc_plain, acc_secure) =
        (plain.model.accuracy(&c.test_x, &c.test_y), secure.model.accuracy(&c.test_x, &c.test_y));
    let dw = max_diff(secure.model.weights.iter(), plain.model.weights.iter());
    let db = max_diff(secure.model.bias.iter(), plain.model.bias.iter());
    let dl = max_diff(&secure.epoch_losses, &plain.epoch_losses);
    eprintln!(
        "{}: test accuracy secure {:.2}% vs plaintext {:.2}%; |W| diff {dw:.2e}, |b| diff {db:.2e}, loss diff {dl:.2e}",
        c.name,
        100.0 * acc_secure,
        100.0 * acc_plain
    );
    assert!((acc_secure - acc_plain).abs() <= 0.01, "{}: {acc_secure} vs {acc_plain}", c.name);
    assert!(dw < weight_tolerance && db < weight_tolerance, "{}: weights differ by {dw}, bias by {db}", c.name);
    assert!(dl < 1e-3, "{}: losses differ by {dl}", c.name);
    // The model owner heard every epoch's loss, in order, as it came.
    let heard = epochs.into_inner().unwrap();
    assert_eq!(heard.iter().map(|(e, _)| *e).collect::<Vec<_>>(), (0..c.spec.epochs).collect::<Vec<_>>());
    // Server 0 sends, phase by phase, exactly what the formulas plan.
    let server0 = &outcome.stats.parties[&Party::Server0];
    let planned: Vec<u64> = secure::planned(&c.spec).iter().map(|p| p.bytes).collect();
    let measured: Vec<u64> = (0..3).map(|k| server0.per_layer[&k].bytes_sent).collect();
    assert_eq!(measured, planned, "{}: bytes per phase, measured vs planned", c.name);
    assert!(outcome.owners.len() == 2);
}

#[test]
fn secure_training_matches_plaintext_on_breast_cancer() {
    secure_matches_plaintext(breast_cancer(), 2e-3);
}

/// The sigmoid's comparisons by function secret sharing (`train --comparison
/// fss`) train the same model, and send what the formulas plan for that protocol.
#[test]
fn secure_training_under_fss_matches_plaintext_on_breast_cancer() {
    let mut c = breast_cancer();
    c.spec.comparison = tfe_run::protocol::Comparison::Fss;
    secure_matches_plaintext(c, 2e-3);
}

#[test]
fn secure_training_matches_plaintext_on_mnist() {
    secure_matches_plaintext(mnist(), 2e-3);
}

/// Shuffled epochs: the same public order for the plaintext and the secure run,
/// a different one per epoch, and the same accuracy.
#[test]
fn shuffled_secure_training_matches_plaintext() {
    let mut c = breast_cancer();
    c.spec.shuffle = Some([42; 32]);
    c.spec.epochs = 3;
    secure_matches_plaintext(c, 2e-3);
}

/// The exporter's GraphDef is byte for byte the one TensorFlow loaded and ran
/// (testdata/training/*_model.pb, from `train --plaintext`), so TensorFlow loads
/// what tfe-run exports; and tfe-run, privately, predicts what TensorFlow did.
#[test]
fn exported_model_is_what_tensorflow_ran_and_tfe_run_serves_it() {
    for (c, prefix) in [(breast_cancer(), "bc"), (mnist(), "mnist")] {
        let trained = train::train_plaintext(&c.spec, &c.owners, |_, _| {}).unwrap();
        let bytes = export::graph(&trained.model).encode_to_vec();
        let committed = std::fs::read(data(&format!("{prefix}_model.pb"))).unwrap();
        assert!(bytes == committed, "{}: the export differs from the GraphDef TensorFlow ran", c.name);

        let tf = common::load(&data(&format!("{prefix}_model.expected.npy")));
        let prepared = tfe_run::cli::prepare(
            &data(&format!("{prefix}_model.pb")),
            None,
            Some(&data(&format!("{prefix}_test_features.npy"))),
            &BTreeMap::new(),
        )
        .unwrap();
        let secure = tfe_run::runtime::predict(&prepared.plan, &prepared.inputs, &SecureConfig::default())
            .unwrap()
            .outputs
            .remove(0)
            .to_float();
        let err = common::assert_matches(c.name, &secure, &tf, 1e-3);
        eprintln!("{}: secure prediction with the exported model vs TensorFlow: max error {err:.1e}", c.name);
        // The same decisions as TensorFlow's outputs, and as the trainer's model.
        let tf2 = tf.into_dimensionality::<Ix2>().unwrap();
        let decide = |p: ndarray::ArrayView1<f32>| {
            if p.len() == 1 { usize::from(p[0] >= 0.5) } else { common::argmax(p.iter()) }
        };
        let secure2 = secure.into_dimensionality::<Ix2>().unwrap();
        for (r, (a, b)) in secure2.rows().into_iter().zip(tf2.rows()).enumerate() {
            assert_eq!(decide(a), decide(b), "{}: row {r}", c.name);
        }
        let p = trained.model.predict(&c.test_x).mapv(|v| v as f32);
        assert!(p.iter().zip(tf2.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "{}: trainer's model vs TF", c.name);
    }
}

/// Two epochs of secure training on breast cancer, every message recorded.
fn recorded_breast_cancer_training() -> (Case, Arc<mpc::Recording>, secure::TrainOutcome) {
    let mut c = breast_cancer();
    c.spec.epochs = 2;
    let recording = Arc::new(mpc::Recording::new());
    let transport: Arc<dyn Transport> = recording.clone();
    let outcome =
        secure::train_over(transport, &c.spec, &c.owners, &SecureConfig::default(), &|_, _| {}, None).unwrap();
    (c, recording, outcome)
}

/// The training run with every message recorded: no plaintext value (the
/// encoding of a nonzero feature, or of a trained weight, and their negatives)
/// appears as a word in anything a server or the dealer received, nor in the sum
/// or XOR of a server's message and the other server's under the same key (what
/// an opening shows it). The labels are 0/1 and so cannot be searched for; they
/// are shared exactly as the features are.
#[test]
fn training_transcripts_contain_no_plaintext() {
    let (c, recording, outcome) = recorded_breast_cancer_training();
    let fp = c.spec.fp();
    let mut targets = HashSet::new();
    let mut add = |v: f64| {
        let w = fp.encode_value(v).0;
        if w != 0 && w != fp.encode_value(1.0).0 {
            targets.insert(w);
            targets.insert(w.wrapping_neg());
        }
    };
    c.owners.iter().flat_map(|o| o.features.iter()).for_each(|&v| add(f64::from(v)));
    outcome.trained.model.weights.iter().chain(outcome.trained.model.bias.iter()).for_each(|&v| add(v));
    assert!(targets.len() > 10_000, "enough distinct plaintext words: {}", targets.len());
    let hits = |words: &[u64]| words.iter().filter(|w| targets.contains(w)).count();
    let (mut received, mut opened) = (0, 0);
    let transcript = recording.transcript();
    for m in &transcript {
        if !matches!(m.to, Party::Server0 | Party::Server1 | Party::Dealer) {
            continue;
        }
        let words = m.words();
        received += words.len();
        assert_eq!(hits(&words), 0, "{} received plaintext from {} ({:?})", m.to.name(), m.from.name(), m.key);
        if matches!(m.from, Party::Server0 | Party::Server1) && matches!(m.to, Party::Server0 | Party::Server1) {
            let mine = recording.sent().into_iter().find(|s| s.from == m.to && s.to == m.from && s.key == m.key);
            let mine = mine.expect("each server sends under the key it receives").words();
            let sum: Vec<u64> = mine.iter().zip(&words).map(|(a, b)| a.wrapping_add(*b)).collect();
            let xor: Vec<u64> = mine.iter().zip(&words).map(|(a, b)| a ^ b).collect();
            assert_eq!(hits(&sum) + hits(&xor), 0, "{} learns plaintext from an opening ({:?})", m.to.name(), m.key);
            opened += words.len();
        }
    }
    eprintln!(
        "searched {received} words received and {opened} words of openings for {} plaintext words",
        targets.len()
    );
    assert!(received > 100_000 && opened > 10_000, "the whole run was searched");
}

// ---- the command line ----

const BC: [&str; 8] = [
    "--features",
    "testdata/training/bc_a_features.npy",
    "--labels",
    "testdata/training/bc_a_labels.npy",
    "--features",
    "testdata/training/bc_b_features.npy",
    "--labels",
    "testdata/training/bc_b_labels.npy",
];

/// `train --plaintext` prints the run, the losses, the held-out accuracy and the
/// files (a golden file); the files are the model TensorFlow ran.
#[test]
fn train_command_prints_losses_and_writes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bc.pb");
    let mut args = vec!["train"];
    args.extend(BC);
    let hyper = ["--epochs", "10", "--batch-size", "32", "--learning-rate", "0.5", "--plaintext"];
    let test = ["--test-features", "testdata/training/bc_test_features.npy"];
    let test_y = ["--test-labels", "testdata/training/bc_test_labels.npy"];
    args.extend(hyper.iter().chain(&test).chain(&test_y));
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, stdout, stderr) = common::run(&args);
    assert_eq!(code, 0, "{stderr}");
    let shown = stdout.replace(dir.path().to_str().unwrap(), "OUT");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/train_bc_plaintext.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &shown).unwrap();
    }
    assert_eq!(shown, std::fs::read_to_string(&golden).unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(data("bc_model.pb")).unwrap());
    let w = common::load(&dir.path().join("bc.weights.npy"));
    assert_eq!(w.shape(), [30, 1]);
    assert_eq!(common::load(&dir.path().join("bc.bias.npy")).shape(), [1]);

    // Secure, with --stats: the same losses to 3 decimals, and the stats table.
    let mut args = vec!["train"];
    args.extend(BC);
    args.extend(hyper[..6].iter().chain(&test).chain(&test_y));
    args.extend(["--out", out.to_str().unwrap(), "--stats"]);
    let (code, stdout, stderr) = common::run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("trained secure (Pond): 455 rows from 2 data owner(s)"), "{stdout}");
    assert!(stdout.contains("epoch  10: loss 0.057"), "{stdout}");
    assert!(stdout.contains("accuracy on `testdata/training/bc_test_features.npy`: 97.37%"), "{stdout}");
    for needle in ["secure training: 150 steps", "data-owner 2", "sigmoid and loss", "crypto-producer"] {
        assert!(stderr.contains(needle), "--stats should show {needle:?}: {stderr}");
    }

    // The exported model then serves private predictions: class = p ≥ 0.5.
    let (code, stdout, _) = common::run(&[out.to_str().unwrap(), "testdata/training/bc_test_features.npy"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("row 0: class 1 | 1.0000\nrow 1: class 0 | 0.01"), "{stdout}");
}

/// Every bad input is refused before any party starts, with exit code 2 and a
/// message naming the file, row or option at fault.
#[test]
fn train_command_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, a: &ArrayD<f32>| {
        let p = dir.path().join(name);
        tfe_run::npy::write_f32(&p, a).unwrap();
        p.to_str().unwrap().to_string()
    };
    let x = write("x.npy", &ArrayD::from_shape_vec(vec![3, 2], vec![0.5, 1.0, -1.0, 2.0, 0.0, 0.25]).unwrap());
    let y = write("y.npy", &ArrayD::from_shape_vec(vec![3], vec![0.0, 1.0, 1.0]).unwrap());
    let y_bad = write("y_bad.npy", &ArrayD::from_shape_vec(vec![3], vec![0.0, 0.5, 1.0]).unwrap());
    let y_rows = write("y_rows.npy", &ArrayD::from_shape_vec(vec![2], vec![0.0, 1.0]).unwrap());
    let hot_bad = write("hot.npy", &ArrayD::from_shape_vec(vec![3, 2], vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0]).unwrap());
    let x_big = write("x_big.npy", &ArrayD::from_shape_vec(vec![3, 2], vec![0.5, 1.0, -1.0, 200.0, 0.0, 0.0]).unwrap());
    let x_nan =
        write("x_nan.npy", &ArrayD::from_shape_vec(vec![3, 2], vec![0.5, 1.0, -1.0, 2.0, 0.0, f32::NAN]).unwrap());
    let x3 = write("x3.npy", &ArrayD::from_shape_vec(vec![3, 3], vec![0.0; 9]).unwrap());
    let out = dir.path().join("m.pb");
    let out = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--features", &x, "--labels", &y, "--features", &x], vec!["2 --features but 1 --labels"]),
        (vec!["--features", &x, "--labels", &y_bad], vec!["y_bad.npy", "row 1 is 0.5"]),
        (vec!["--features", &x, "--labels", &y_rows], vec!["y_rows.npy", "to match the 3 rows"]),
        (vec!["--features", &x, "--labels", &hot_bad], vec!["hot.npy", "row 0 is not one-hot"]),
        (vec!["--features", &x_big, "--labels", &y], vec!["x_big.npy", "row 1, column 1", "--feature-bound"]),
        (vec!["--features", &x_nan, "--labels", &y], vec!["x_nan.npy", "NaN"]),
        (vec!["--features", &x, "--labels", &y, "--features", &x3, "--labels", &y], vec!["x3.npy", "3 columns"]),
        (
            vec!["--features", &x, "--labels", &y, "--learning-rate", "1e9"],
            vec!["--learning-rate", "fixed-point range"],
        ),
        (vec!["--features", &x, "--labels", &y, "--epochs", "0"], vec!["--epochs 0"]),
        (vec!["--features", "missing.npy", "--labels", &y], vec!["missing.npy"]),
        (vec!["--features", &x, "--labels", &y, "--feature-bound", "0.5"], vec!["--feature-bound 0.5"]),
        (vec!["--features", &x, "--labels", &y, "--feature-bound", "NaN"], vec!["--feature-bound NaN"]),
        (vec!["--data", "a"], vec!["--data", "needs --config"]),
        (vec!["--features", &x, "--labels", &y, "--max-memory", "1M"], vec!["--max-memory limit of 1 MB"]),
    ];
    for (mut args, needles) in cases {
        args.splice(0..0, ["train"]);
        args.extend(["--out", out]);
        let (code, stdout, stderr) = common::run(&args);
        assert_eq!(code, 2, "tfe-run {args:?}: {stderr}");
        assert!(stdout.is_empty());
        for n in needles {
            assert!(stderr.contains(n), "tfe-run {args:?} should mention {n:?}: {stderr}");
        }
    }
    assert!(!Path::new(out).exists(), "no model is written on failure");

    // `contribute` shares with a cluster's servers: it needs one, and checks its
    // input before dialling anyone.
    let (code, _, stderr) = common::run(&["contribute", "--name", "a", "--features", &x, "--labels", &y]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`tfe-run contribute` needs --config FILE"), "{stderr}");
}

/// The update is truncated by f + P bits (P the precision of lr/|B|), which the
/// truncation supports up to 62. `--frac-bits 24` with this small a learning
/// rate once chose P = 40, a truncation by 64 bits, and trained to weights of
/// about 1e10 (loss 3150; in plaintext 0.69): such settings are refused, naming
/// the bound and the options to change.
#[test]
fn an_update_truncation_of_more_than_62_bits_is_refused() {
    let mnist = [
        "train",
        "--features",
        "testdata/training/mnist_a_features.npy",
        "--labels",
        "testdata/training/mnist_a_labels.npy",
        "--feature-bound",
        "1",
        "--batch-size",
        "1",
        "--learning-rate",
        "5.3e-9",
        "--epochs",
        "1",
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.pb");
    let mut args = mnist.to_vec();
    args.extend(["--frac-bits", "24", "--out", out.to_str().unwrap()]);
    let (code, stdout, stderr) = common::run(&args);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for needle in ["62 bits", "--frac-bits 24", "--learning-rate", "--batch-size"] {
        assert!(stderr.contains(needle), "should mention {needle:?}: {stderr}");
    }
    assert!(!out.exists(), "no model is written on failure");

    // With 16 fractional bits the same learning rate fits, and trains honestly:
    // a learning rate this small leaves every sigmoid near 0.5.
    let mut args = mnist.to_vec();
    args.extend(["--frac-bits", "16", "--out", out.to_str().unwrap()]);
    let (code, stdout, stderr) = common::run(&args);
    assert_eq!(code, 0, "{stderr}");
    let loss: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("epoch   1: loss "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 0.01, "loss {loss}: {stdout}");
}

/// Training refused runs of 2^20 - 1 steps or more, because the old stream
/// number had 20 bits for the step: streams no longer wrap, so the only limit
/// left is the u32 that numbers the steps.
#[test]
fn training_past_2_pow_20_steps_is_not_refused_and_past_u32_steps_is() {
    let spec = TrainSpec {
        owners: vec![1 << 21],
        features: 2,
        outputs: 1,
        epochs: 1,
        batch_size: 1,
        learning_rate: 0.1,
        feature_bound: 8.0,
        shuffle: None,
        frac_bits: 16,
        held: Vec::new(),
        comparison: Default::default(),
    };
    spec.check().unwrap();
    let e = TrainSpec { epochs: 1 << 11, ..spec }.check().unwrap_err().to_string();
    assert!(e.contains("too many steps") && e.contains(&u32::MAX.saturating_sub(1).to_string()), "{e}");
}

/// Sorted, merged intervals of ring words around plaintext values: a secure
/// value is only within some units in the last place of the plaintext
/// reference's, so a leak shows a word *near* it.
struct Near(Vec<(u64, u64)>);

impl Near {
    /// Words within `window` units of ±encode(v), for every v whose encoding is
    /// farther than `window` from zero (smaller ones cannot be told from the
    /// small public integers of a run).
    fn new(values: impl IntoIterator<Item = f64>, fp: tfe_run::ring::FixedPoint, window: u64) -> Near {
        let mut spans = Vec::new();
        for v in values {
            let w = fp.encode_value(v).0;
            if w.min(w.wrapping_neg()) <= window {
                continue;
            }
            for c in [w, w.wrapping_neg()] {
                spans.push((c.wrapping_sub(window), c.wrapping_add(window)));
            }
        }
        // Far from zero, no span wraps around.
        spans.retain(|(lo, hi)| lo <= hi);
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for (lo, hi) in spans {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Near(merged)
    }

    fn contains(&self, w: u64) -> bool {
        let i = self.0.partition_point(|(lo, _)| *lo <= w);
        i > 0 && self.0[i - 1].1 >= w
    }

    /// The fraction of all 2^64 words covered (the chance a uniform word hits).
    fn coverage(&self) -> f64 {
        self.0.iter().map(|(lo, hi)| (hi - lo + 1) as f64).sum::<f64>() / 2f64.powi(64)
    }
}

/// The training transcript searched for what the servers compute on shares at
/// every step, from the same SGD in f64: the weights W_t each step opens masked,
/// the products z = X_B·W_t, and the residuals p − y (within 2^9 units for
/// the weights and 2^13 for z and the residuals: the secure run's piecewise
/// sigmoid and truncations keep it that close). No word near any of them appears in
/// anything a server, the dealer or the model owner received, nor in an opening.
#[test]
fn training_transcripts_contain_no_per_step_weight_product_or_residual() {
    let (c, recording, outcome) = recorded_breast_cancer_training();
    let (x, y) = train::stack_rows(&c.owners).unwrap();
    let mut w = Array2::<f64>::zeros((x.ncols(), c.spec.outputs));
    let (mut weights, mut inner) = (Vec::new(), Vec::new());
    for (_, rows) in c.spec.steps() {
        let xb = x.select(ndarray::Axis(0), &rows);
        let z = xb.dot(&w);
        let r = z.mapv(train::sigmoid) - &y.select(ndarray::Axis(0), &rows);
        weights.extend(w.iter().copied());
        inner.extend(z.iter().chain(r.iter()).copied());
        w.scaled_add(-c.spec.learning_rate / rows.len() as f64, &xb.t().dot(&r));
    }
    // The replica is the run: its final weights are the secure ones, closely.
    let secure_w: Vec<f64> = outcome.trained.model.weights.iter().copied().collect();
    let replica_w: Vec<f64> = w.slice(ndarray::s![..-1, ..]).iter().copied().collect();
    let drift = secure_w.iter().zip(&replica_w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(drift < 2e-3, "the secure weights drifted {drift} from the replica's");
    let fp = c.spec.fp();
    let targets = [Near::new(weights, fp, 1 << 9), Near::new(inner, fp, 1 << 13)];
    let coverage: f64 = targets.iter().map(Near::coverage).sum();
    let hit = |words: &[u64]| words.iter().copied().find(|&w| targets.iter().any(|t| t.contains(w)));
    let sent = recording.sent();
    let mut searched = 0usize;
    for m in recording.transcript() {
        if m.to == Party::Client {
            continue;
        }
        let words = m.words();
        searched += words.len();
        assert_eq!(hit(&words), None, "{} received a plaintext word from {} ({:?})", m.to.name(), m.from.name(), m.key);
        if matches!((m.from, m.to), (Party::Server0, Party::Server1) | (Party::Server1, Party::Server0)) {
            let mine = sent.iter().find(|s| s.from == m.to && s.to == m.from && s.key == m.key).expect("an exchange");
            let mine = mine.words();
            let sum: Vec<u64> = mine.iter().zip(&words).map(|(a, b)| a.wrapping_add(*b)).collect();
            let xor: Vec<u64> = mine.iter().zip(&words).map(|(a, b)| a ^ b).collect();
            assert_eq!(hit(&sum), None, "{} opens a plaintext word ({:?})", m.to.name(), m.key);
            assert_eq!(hit(&xor), None, "{} XOR-opens a plaintext word ({:?})", m.to.name(), m.key);
            searched += 2 * words.len();
        }
    }
    eprintln!(
        "searched {searched} words; the targets cover {coverage:.1e} of the ring (expected false hits {:.1e})",
        coverage * searched as f64
    );
    assert!(coverage * (searched as f64) < 1e-4, "the search would hit by chance");
    assert!(searched > 100_000, "the whole run was searched");
}
