//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis};
use serde::Deserialize;

/// A path under `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// Where tf-encrypted's reference models are: `$TFE_REFERENCE_DIR`, by default
/// `../shared/tfe-reference` (CI checks the project out with `shared/` beside it;
/// they are not copied into this repository).
pub fn reference_dir() -> PathBuf {
    match std::env::var_os("TFE_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tfe-reference"),
    }
}

/// Whether the reference models are there; if not, say on the real stderr (past the
/// test harness's capture, so that `cargo test` shows it) that `test` is skipped.
pub fn have_reference(test: &str) -> bool {
    let dir = reference_dir();
    if dir.join("mnist_model.pb").is_file() {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: tf-encrypted's reference models are not in {} (set TFE_REFERENCE_DIR to where they are)",
        dir.display()
    );
    false
}

/// A path under tf-encrypted's reference models; call [`have_reference`] first.
pub fn reference(rel: &str) -> PathBuf {
    let dir = reference_dir();
    assert!(dir.is_dir(), "tf-encrypted's reference models are expected in {}", dir.display());
    dir.join(rel)
}

/// `testdata/manifest.json`, written by `testdata/generate.py`.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub versions: BTreeMap<String, String>,
    pub models: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    pub name: String,
    pub model: String,
    pub inputs: BTreeMap<String, String>,
    pub expected: String,
    pub output_node: String,
    pub description: String,
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(testdata("manifest.json")).expect("testdata/manifest.json");
    serde_json::from_str(&text).expect("manifest.json matches the schema")
}

pub fn load(path: &Path) -> ArrayD<f32> {
    tfe_run::npy::read_input(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// Compare with TensorFlow's output: every element within `rel · max(1, |expected|)`,
/// and the same argmax over the last axis in every row. Returns the largest error.
pub fn assert_matches(name: &str, actual: &ArrayD<f32>, expected: &ArrayD<f32>, rel: f32) -> f32 {
    assert_eq!(actual.shape(), expected.shape(), "{name}: output shape");
    let mut worst = 0.0f32;
    for (i, (&a, &e)) in actual.iter().zip(expected.iter()).enumerate() {
        let err = (a - e).abs();
        assert!(err <= rel * e.abs().max(1.0), "{name}: element {i} is {a}, TensorFlow computed {e}");
        worst = worst.max(err / e.abs().max(1.0));
    }
    if expected.ndim() >= 2 {
        let last = Axis(expected.ndim() - 1);
        for (row, (a, e)) in actual.lanes(last).into_iter().zip(expected.lanes(last)).enumerate() {
            assert_eq!(argmax(a.iter()), argmax(e.iter()), "{name}: argmax of row {row}");
        }
    }
    worst
}

pub fn argmax<'a>(values: impl Iterator<Item = &'a f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Plan and run a model in plaintext, feeding each placeholder by name.
pub fn run_plaintext(
    model: &Path,
    output_node: Option<&str>,
    feeds: &BTreeMap<String, PathBuf>,
) -> (tfe_run::plan::Plan, ArrayD<f32>) {
    let prepared =
        tfe_run::cli::prepare(model, output_node, None, feeds).unwrap_or_else(|e| panic!("{}: {e:#}", model.display()));
    let out = tfe_run::plaintext::run(&prepared.plan, &prepared.inputs)
        .unwrap_or_else(|e| panic!("{}: {e:#}", model.display()));
    (prepared.plan, out.to_float())
}

/// testdata/training's data set `prefix` ("bc" or "mnist") as `tfe-run train`
/// loads it: its two owners' rows, and the held-out rows.
pub fn training_data(prefix: &str) -> (Vec<tfe_run::train::OwnerData>, tfe_run::train::OwnerData) {
    let dir = testdata("training");
    let mut files = Vec::new();
    for owner in ["a", "b", "test"] {
        let x = dir.join(format!("{prefix}_{owner}_features.npy"));
        let y = dir.join(format!("{prefix}_{owner}_labels.npy"));
        files.push(
            tfe_run::train::read_owner(
                &tfe_run::npy::Input::File(x.clone()),
                &tfe_run::npy::Input::File(y.clone()),
                32.0,
            )
            .unwrap(),
        );
    }
    let (mut owners, _) = tfe_run::train::encode_labels(files, None).unwrap();
    let test = owners.pop().unwrap();
    (owners, test)
}

/// The spec `tfe-run train` makes for `owners` with these hyperparameters (no
/// shuffle, default bound and fixed point).
pub fn training_spec(
    owners: &[tfe_run::train::OwnerData],
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
) -> tfe_run::train::TrainSpec {
    tfe_run::train::TrainSpec {
        owners: owners.iter().map(|o| o.features.nrows()).collect(),
        features: owners[0].features.ncols(),
        outputs: owners[0].labels.ncols(),
        epochs,
        batch_size,
        learning_rate,
        feature_bound: 32.0,
        shuffle: None,
        frac_bits: 16,
        held: Vec::new(),
        comparison: Default::default(),
    }
}

/// The `tfe-run` binary, run from the crate's root (so `testdata/...` paths resolve).
pub fn tfe_run() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("tfe-run").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Run `tfe-run` and return (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = tfe_run().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// Compare with `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}
