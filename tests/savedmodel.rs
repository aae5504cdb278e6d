//! SavedModel directories (testdata/savedmodel/, written by
//! testdata/gen_savedmodel.py with TensorFlow 2.21 / Keras 3.15.1: Keras 3
//! `model.export`, `tf.saved_model.save` of a `tf.Module`, TF1's
//! `saved_model.Builder`): every signature output in plaintext and under Pond
//! against what TensorFlow's loaded SavedModel computed, `inspect`'s listing of
//! the signatures, a `deploy` of a directory on remote parties, and bad bundles
//! refused naming the file and the variable.
//!
//! Golden files: `UPDATE_GOLDEN=1 cargo test --release --test savedmodel`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/delay.rs"]
mod delay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster::Cluster;
use common::*;
use prost::Message;
use serde::Deserialize;
use tfe_run::frontend::{Choice, savedmodel};
use tfe_run::runtime::{self, SecureConfig};

#[derive(Debug, Deserialize)]
struct SmManifest {
    models: Vec<SmEntry>,
}

#[derive(Debug, Deserialize)]
struct SmEntry {
    name: String,
    dir: String,
    writer: String,
    signatures: BTreeMap<String, SmSignature>,
    runs: Vec<SmRun>,
}

#[derive(Debug, Deserialize)]
struct SmSignature {
    inputs: BTreeMap<String, SmTensor>,
    outputs: BTreeMap<String, SmTensor>,
}

#[derive(Debug, Deserialize)]
struct SmTensor {
    dtype: String,
    shape: Option<Vec<Option<i64>>>,
}

#[derive(Debug, Deserialize)]
struct SmRun {
    signature: String,
    inputs: BTreeMap<String, String>,
    outputs: BTreeMap<String, String>,
}

fn sm(rel: &str) -> PathBuf {
    testdata("savedmodel").join(rel)
}

fn manifest() -> SmManifest {
    let text = std::fs::read_to_string(sm("manifest.json")).expect("testdata/savedmodel/manifest.json");
    serde_json::from_str(&text).expect("the SavedModel manifest matches the schema")
}

fn choice<'a>(signature: &'a str, output: &'a str) -> Choice<'a> {
    Choice {
        output_node: None,
        saved_model: savedmodel::Choice { signature: Some(signature), output: Some(output), first_output: false },
    }
}

/// Every output of every signature run of the manifest, in plaintext and under
/// Pond, against TensorFlow's loaded SavedModel: the same argmax on every row and
/// max |y - tf| <= 1e-2 max(1, |tf|) (plaintext: 1e-4).
#[test]
fn every_savedmodel_output_matches_tensorflow_in_plaintext_and_under_pond() {
    let m = manifest();
    assert!(m.models.len() >= 4, "the three writers and MobileNetV2");
    for writer in ["keras.Model.export", "tf.saved_model.save", "tf.compat.v1.saved_model.Builder"] {
        assert!(m.models.iter().any(|e| e.writer.starts_with(writer)), "no model by {writer}");
    }
    for entry in &m.models {
        for r in &entry.runs {
            let feeds: BTreeMap<String, PathBuf> = r.inputs.iter().map(|(k, f)| (k.clone(), sm(f))).collect();
            for (key, expected) in &r.outputs {
                let name = format!("{}/{}/{key}", entry.name, r.signature);
                let p = tfe_run::cli::prepare_choice(
                    &sm(&entry.dir),
                    choice(&r.signature, key),
                    None,
                    &feeds,
                    &Default::default(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                let expected = load(&sm(expected));
                let plain = tfe_run::plaintext::run(&p.plan, &p.inputs).unwrap().to_float();
                let plain_err = assert_matches(&format!("{name} plaintext"), &plain, &expected, 1e-4);
                let batches = std::slice::from_ref(&p.inputs);
                let secure = runtime::predict_many(&p.plan, batches, &SecureConfig::default())
                    .unwrap_or_else(|e| panic!("{name} secure: {e:#}"));
                let secure_err =
                    assert_matches(&format!("{name} secure"), &secure.outputs[0].to_float(), &expected, 1e-2);
                eprintln!("{name}: plaintext {plain_err:.1e}, secure {secure_err:.1e} from TensorFlow");
            }
        }
    }
}

/// `inspect --format json` lists every signature with the keys, dtypes and
/// shapes TensorFlow reads from the directory; the text form is golden.
#[test]
fn inspect_lists_every_signature_with_its_keys_dtypes_and_shapes() {
    for entry in &manifest().models {
        let dir = format!("testdata/savedmodel/{}", entry.dir);
        let (code, out, err) = run(&["inspect", "--format", "json", &dir]);
        assert_eq!(code, 0, "{dir}: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let listed = doc["saved_model"]["signatures"].as_array().unwrap();
        assert_eq!(listed.len(), entry.signatures.len(), "{dir}: {out}");
        for s in listed {
            let want = &entry.signatures[s["name"].as_str().unwrap()];
            for (side, want) in [("inputs", &want.inputs), ("outputs", &want.outputs)] {
                let got = s[side].as_array().unwrap();
                assert_eq!(got.len(), want.len(), "{dir} {side}");
                for t in got {
                    let w = &want[t["key"].as_str().unwrap()];
                    assert_eq!(t["dtype"], w.dtype.as_str(), "{dir}: {t}");
                    let shape: Option<Vec<Option<i64>>> = serde_json::from_value(t["shape"].clone()).unwrap();
                    assert_eq!(shape, w.shape, "{dir}: {t}");
                }
            }
        }
        assert_eq!(doc["saved_model"]["signature"], "serving_default");
    }
    let (code, out, err) = run(&["inspect", "testdata/savedmodel/tf1_mlp"]);
    assert_eq!(code, 0, "{err}");
    golden("inspect_savedmodel_tf1_mlp.txt", &out);
}

/// The CLI names inputs and outputs by signature keys: the positional INPUT
/// feeds the one input, `--input KEY=FILE`, `--signature`, `--output`.
#[test]
fn the_cli_runs_a_savedmodel_directory_by_signature_keys() {
    let (code, out, err) =
        run(&["--plaintext", "testdata/savedmodel/tf1_mlp", "testdata/savedmodel/tf1_mlp.images.input.npy"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# mode: plaintext, output: scores, shape: [20, 10]"), "{out}");
    golden("savedmodel_tf1_mlp.txt", &out);
    let (code, out, err) = run(&[
        "--plaintext",
        "--signature",
        "probabilities",
        "--input",
        "images=testdata/savedmodel/tf1_mlp.images.input.npy",
        "testdata/savedmodel/tf1_mlp",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# mode: plaintext, output: probabilities, shape: [20, 10]"), "{out}");
    let input = "testdata/savedmodel/module_mlp.pixels.input.npy";
    let (code, out, err) = run(&["--plaintext", "--output", "probabilities", "testdata/savedmodel/module_mlp", input]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# mode: plaintext, output: probabilities, shape: [20, 10]"), "{out}");
}

fn fails(args: &[&str], code: i32, needles: &[&str]) {
    let (got, stdout, stderr) = run(args);
    assert_eq!(got, code, "exit code of {args:?}: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for n in needles {
        assert!(stderr.contains(n), "stderr of {args:?} should mention {n:?}: {stderr}");
    }
}

#[test]
fn wrong_signatures_keys_and_flags_are_usage_errors_naming_what_there_is() {
    let tf1 = "testdata/savedmodel/tf1_mlp";
    let x = "testdata/savedmodel/tf1_mlp.images.input.npy";
    fails(&["--signature", "nosuch", tf1, x], 2, &["has no signature `nosuch`", "`probabilities`, `serving_default`"]);
    fails(&["--output", "logits", tf1, x], 2, &["--output logits", "no output `logits`", "`scores`"]);
    fails(&["--output-node", "scores", tf1, x], 2, &["SavedModel directory", "--output KEY"]);
    fails(&["--input", "pixels=x.npy", tf1], 2, &["no placeholder `pixels`"]);
    fails(
        &["--signature", "serving_default", "testdata/mnist_model.pb", "testdata/mnist_input.npy"],
        2,
        &["--signature is for SavedModel directories"],
    );
    let mlp = "testdata/savedmodel/module_mlp";
    fails(
        &[mlp, "testdata/savedmodel/module_mlp.pixels.input.npy"],
        2,
        &["has 2 outputs (`logits`, `probabilities`): choose one with --output KEY"],
    );
    // Its graph alone is pointed at its directory.
    fails(&[&format!("{tf1}/saved_model.pb"), x], 4, &["a SavedModel's graph", &format!("`tfe-run {tf1} INPUT.npy`")]);
}

/// A copy of a real SavedModel directory, to damage.
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = sm(name);
    std::fs::copy(src.join("saved_model.pb"), tmp.path().join("saved_model.pb")).unwrap();
    std::fs::create_dir(tmp.path().join("variables")).unwrap();
    for f in std::fs::read_dir(src.join("variables")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), tmp.path().join("variables").join(f.file_name())).unwrap();
    }
    tmp
}

fn damaged(dir: &Path, code: i32, needles: &[&str]) {
    let d = dir.to_str().unwrap();
    let x = sm("tf1_mlp.images.input.npy");
    fails(&["--plaintext", d, x.to_str().unwrap()], code, needles);
    fails(&["inspect", d], code, needles);
}

const SHARD: &str = "variables.data-00000-of-00001";

#[test]
fn a_corrupt_shard_is_refused_naming_the_shard_and_the_variable() {
    let tmp = copy_of("tf1_mlp");
    let shard = tmp.path().join("variables").join(SHARD);
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    damaged(tmp.path(), 3, &[SHARD, "fails its checksum: the shard is corrupt", "variable `"]);
    // Truncated: the variable past its end is named.
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    damaged(tmp.path(), 3, &[SHARD, "past the end of the shard", "it is truncated"]);
    std::fs::remove_file(&shard).unwrap();
    damaged(tmp.path(), 3, &[SHARD, "cannot read the data shard that holds variable `"]);
}

#[test]
fn a_truncated_or_corrupt_index_is_refused_naming_the_index() {
    let tmp = copy_of("tf1_mlp");
    let index = tmp.path().join("variables").join("variables.index");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() - 10]).unwrap();
    damaged(tmp.path(), 3, &["variables.index", "not a TensorBundle index", "table footer"]);
    let mut flipped = bytes.clone();
    flipped[3] ^= 0x01;
    std::fs::write(&index, &flipped).unwrap();
    damaged(tmp.path(), 3, &["variables.index", "fails its checksum"]);
    std::fs::write(&index, &bytes[..20]).unwrap();
    damaged(tmp.path(), 3, &["variables.index", "too short for a table"]);
}

/// A graph whose variable has no value in the bundle (here: the TF1 variable
/// `fc2/biases` renamed in saved_model.pb, so its key is not in the index).
#[test]
fn a_variable_missing_from_the_bundle_is_refused_naming_it_and_its_key() {
    use tfe_run::frontend::tf::proto::tensorflow::SavedModel;
    let tmp = copy_of("tf1_mlp");
    let pb = tmp.path().join("saved_model.pb");
    let mut model = SavedModel::decode(std::fs::read(&pb).unwrap().as_slice()).unwrap();
    let graph = model.meta_graphs[0].graph_def.as_mut().unwrap();
    for n in &mut graph.node {
        if n.name == "fc2/biases" {
            n.name = "fc2/biases_renamed".into();
        }
        for i in &mut n.input {
            if i == "fc2/biases" {
                *i = "fc2/biases_renamed".into();
            }
        }
    }
    std::fs::write(&pb, model.encode_to_vec()).unwrap();
    damaged(
        tmp.path(),
        3,
        &["variables.index", "variable `fc2/biases_renamed` (VariableV2) has no value", "no key `fc2/biases_renamed`"],
    );
}

/// The model owner deploys a SavedModel directory; a client predicts by its keys.
#[test]
fn deploy_of_a_savedmodel_directory_on_remote_parties_matches_tensorflow() {
    let cluster = Cluster::start(false, 10.0);
    for (dir, name, input, expected) in [
        ("tf1_mlp", "tf1", "tf1_mlp.images.input.npy", "tf1_mlp.serving_default.scores.expected.npy"),
        ("keras_cnn", "cnn", "keras_cnn.image.input.npy", "keras_cnn.serving_default.output_0.expected.npy"),
    ] {
        cluster.deploy(name, 20, &sm(dir));
        let (output, _) = cluster.predict_to_file(name, &sm(input));
        assert_matches(&format!("deployed {dir}"), &output, &load(&sm(expected)), 1e-2);
    }
}

/// The signature of a remote run is chosen at `deploy` (its message names it):
/// the deployed `probabilities` signature of the TF1 MLP gives TensorFlow's
/// probabilities, and a `predict` that names a signature, an output or a node is
/// refused with where to choose it, not given the deployed one silently.
#[test]
fn deploy_chooses_the_signature_and_predict_refuses_one() {
    let cluster = Cluster::start(false, 10.0);
    let dir = sm("tf1_mlp");
    let out = cluster
        .command(&["deploy", "--name", "probs", "--batch-size", "20", "--signature", "probabilities"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deploy: {err}");
    assert!(err.contains("(signature `probabilities`, output `probabilities`) as `probs`"), "{err}");
    let (output, _) = cluster.predict_to_file("probs", &sm("tf1_mlp.images.input.npy"));
    let expected = load(&sm("tf1_mlp.probabilities.probabilities.expected.npy"));
    assert_matches("deployed tf1_mlp/probabilities", &output, &expected, 1e-2);
    let input = sm("tf1_mlp.images.input.npy");
    for flag in [["--signature", "serving_default"], ["--output", "scores"], ["--output-node", "scores"]] {
        let out = cluster.command(&["predict", "--model", "probs", flag[0], flag[1]]).arg(&input).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "predict {flag:?}: {err}");
        assert!(out.stdout.is_empty());
        let shown = format!("{} {}", flag[0], flag[1]);
        assert!(err.contains(&shown) && err.contains("chosen when it was deployed"), "{err}");
        assert!(err.contains("tfe-run deploy DIR --name NAME --signature SIG"), "{err}");
    }
}
