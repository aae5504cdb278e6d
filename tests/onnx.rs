//! ONNX models (testdata/onnx/, written by testdata/gen_onnx.py: torch.onnx.export
//! with the versions pinned in testdata/onnx/requirements.txt, expected outputs
//! from onnxruntime): every model in plaintext and under Pond against
//! onnxruntime, `inspect`, a remote `deploy` + `predict` of an `.onnx` file, and
//! the refusals (an unsupported op named by node and op, external data, a
//! truncated file, an opset outside 13..21).
//!
//! Golden files: `UPDATE_GOLDEN=1 cargo test --release --test onnx`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/delay.rs"]
mod delay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster::Cluster;
use common::*;
use serde::Deserialize;
use tfe_run::runtime::{self, SecureConfig};

#[derive(Debug, Deserialize)]
struct OnnxManifest {
    models: Vec<OnnxEntry>,
}

#[derive(Debug, Deserialize)]
struct OnnxEntry {
    name: String,
    model: String,
    input: String,
    /// The graph input's name: `input`, or tf2onnx's `input:0`.
    #[serde(default = "default_input")]
    input_name: String,
    expected: String,
    opset: i64,
    ops: BTreeMap<String, usize>,
    /// How far the plaintext (float32) may be from onnxruntime, relative to
    /// max(1, |y|): 1e-4, or for a float16 model what float16 rounding moved
    /// onnxruntime's outputs from float32 (twice over, from the generator).
    #[serde(default = "default_plaintext_tolerance")]
    plaintext_tolerance: f32,
}

fn default_plaintext_tolerance() -> f32 {
    1e-4
}

fn default_input() -> String {
    "input".into()
}

fn manifest() -> OnnxManifest {
    let text = std::fs::read_to_string(testdata("onnx/manifest.json")).expect("testdata/onnx/manifest.json");
    serde_json::from_str(&text).expect("the ONNX manifest matches the schema")
}

fn feeds(name: &str, input: &Path) -> BTreeMap<String, PathBuf> {
    [(name.to_string(), input.to_path_buf())].into()
}

/// Every model in plaintext (within 1e-4 of onnxruntime, or for a float16 model
/// what float16 rounding explains) and under Pond (the same argmax on every row,
/// max |y − ort| ≤ 1e-2·max(1, |ort|)), onnxruntime having run the float16 graph.
#[test]
fn every_onnx_model_matches_onnxruntime_in_plaintext_and_under_pond() {
    let m = manifest();
    let names = [
        "mnist_cnn",
        "mnist_cnn_half",
        "mobilenet_v2",
        "ops_mix",
        "resnet18_fp16",
        "tf2onnx_mnist_model",
        "tf2onnx_mlp",
    ];
    for name in names {
        assert!(m.models.iter().any(|e| e.name == name), "no {name} in the manifest");
    }
    for entry in &m.models {
        assert!((13..=21).contains(&entry.opset), "{}: opset {}", entry.name, entry.opset);
        let model = testdata(&entry.model);
        let expected = load(&testdata(&entry.expected));
        let feeds = feeds(&entry.input_name, &testdata(&entry.input));
        let (plan, plain) = run_plaintext(&model, None, &feeds);
        let plain_err =
            assert_matches(&format!("{} plaintext", entry.name), &plain, &expected, entry.plaintext_tolerance);
        let p = tfe_run::cli::prepare(&model, None, None, &feeds).unwrap();
        let secure = runtime::predict_many(&plan, std::slice::from_ref(&p.inputs), &SecureConfig::default())
            .unwrap_or_else(|e| panic!("{} secure: {e:#}", entry.name));
        let secure_err =
            assert_matches(&format!("{} secure", entry.name), &secure.outputs[0].to_float(), &expected, 1e-2);
        eprintln!(
            "{}: {} steps, plaintext {plain_err:.1e}, secure {secure_err:.1e} from onnxruntime",
            entry.name,
            plan.steps.len()
        );
    }
}

/// NCHW window ops are planned in NCHW: the MNIST CNN has no transposes at all.
#[test]
fn nchw_convolutions_and_pools_are_planned_without_transposes() {
    let input = testdata("onnx/mnist_cnn.input.npy");
    let (plan, _) = run_plaintext(&testdata("onnx/mnist_cnn.onnx"), None, &feeds("input", &input));
    let names: Vec<&str> = plan.steps.iter().map(|s| s.op.name()).collect();
    assert!(!names.contains(&"Transpose"), "{names:?}");
    assert!(names.contains(&"Conv2D") && names.contains(&"MaxPool") && names.contains(&"AvgPool"), "{names:?}");
}

/// Depthwise convolutions (MobileNetV2), a transposed convolution and a bilinear
/// resize (ops_mix) are planned in NCHW too: no Transpose feeds them or reads
/// their output (the filters' transposes fold at import).
#[test]
fn depthwise_and_transposed_convolutions_and_resizes_are_planned_in_nchw_without_transposes() {
    for (name, wanted) in
        [("mobilenet_v2", &["DepthwiseConv2D"][..]), ("ops_mix", &["Conv2DTranspose", "ResizeBilinear"][..])]
    {
        let input = testdata(&format!("onnx/{name}.input.npy"));
        let (plan, _) = run_plaintext(&testdata(&format!("onnx/{name}.onnx")), None, &feeds("input", &input));
        let producer = |v: usize| plan.steps.iter().find(|s| s.output == v);
        for want in wanted {
            let steps: Vec<_> = plan.steps.iter().filter(|s| s.op.name() == *want).collect();
            assert!(!steps.is_empty(), "{name}: no {want}");
            for step in steps {
                let fed_by_transpose = producer(step.inputs[0]).is_some_and(|p| p.op.name() == "Transpose");
                let read_by_transpose =
                    plan.steps.iter().any(|s| s.op.name() == "Transpose" && s.inputs.contains(&step.output));
                assert!(!fed_by_transpose && !read_by_transpose, "{name}: {want} `{}` between transposes", step.node);
            }
        }
    }
}

/// `inspect` lists every op type with its count, as the exporter wrote them,
/// all supported; the text form of the MNIST CNN is golden.
#[test]
fn inspect_lists_the_ops_of_every_onnx_model() {
    for entry in &manifest().models {
        let path = format!("testdata/{}", entry.model);
        let (code, out, err) = run(&["inspect", "--format", "json", &path]);
        assert_eq!(code, 0, "{path}: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let ops = doc["ops"].as_array().unwrap_or_else(|| panic!("{out}"));
        let listed: BTreeMap<String, usize> = ops
            .iter()
            .map(|o| {
                assert_eq!(o["supported"], true, "{path}: {o}");
                (o["op"].as_str().unwrap().to_string(), o["count"].as_u64().unwrap() as usize)
            })
            .collect();
        assert_eq!(listed, entry.ops, "{path}");
    }
    let (code, out, err) = run(&["inspect", "testdata/onnx/mnist_cnn.onnx"]);
    assert_eq!(code, 0, "{err}");
    golden("inspect_onnx_mnist_cnn.txt", &out);
}

/// The CLI runs an `.onnx` file as it runs a GraphDef.
#[test]
fn the_cli_runs_an_onnx_file() {
    let (code, out, err) = run(&["--plaintext", "testdata/onnx/mnist_cnn.onnx", "testdata/onnx/mnist_cnn.input.npy"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("# mode: plaintext, output: logits, shape: [100, 10]"), "{out}");
    // Told from its bytes, whatever its name.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("model.bin");
    std::fs::copy(testdata("onnx/mnist_cnn.onnx"), &renamed).unwrap();
    let (code, same, err) = run(&["--plaintext", renamed.to_str().unwrap(), "testdata/onnx/mnist_cnn.input.npy"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(same, out);
}

/// The model owner deploys an `.onnx` file; a client predicts on remote parties.
#[test]
fn deploy_of_an_onnx_file_on_remote_parties_matches_onnxruntime() {
    let cluster = Cluster::start(false, 10.0);
    cluster.deploy("cnn", 100, &testdata("onnx/mnist_cnn.onnx"));
    let (output, _) = cluster.predict_to_file("cnn", &testdata("onnx/mnist_cnn.input.npy"));
    assert_matches("deployed mnist_cnn.onnx", &output, &load(&testdata("onnx/mnist_cnn.expected.npy")), 1e-2);
}

fn fails(args: &[&str], code: i32, needles: &[&str]) {
    let (got, stdout, stderr) = run(args);
    assert_eq!(got, code, "exit code of {args:?}: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for n in needles {
        assert!(stderr.contains(n), "stderr of {args:?} should mention {n:?}: {stderr}");
    }
}

/// A copy of the MNIST CNN changed by `edit`, written to a temporary file.
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, String) {
    edited_model("onnx/mnist_cnn.onnx", edit)
}

fn edited_model(model: &str, edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, String) {
    let mut bytes = std::fs::read(testdata(model)).unwrap();
    edit(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.onnx");
    std::fs::write(&path, bytes).unwrap();
    let shown = path.to_str().unwrap().to_string();
    (dir, shown)
}

/// Replace every occurrence of `from` by `to` (same length: the protobuf framing holds).
fn replace(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn an_unsupported_op_is_refused_naming_its_node_and_op_and_inspect_lists_it() {
    // The exporter's Relu nodes renamed to an op tfe-run does not read (same length).
    let (_dir, path) = edited(|b| assert!(replace(b, b"\x22\x04Relu", b"\x22\x04Celu") >= 1));
    let x = "testdata/onnx/mnist_cnn.input.npy";
    fails(&[&path, x], 4, &["unsupported op type(s) (Celu)", "Celu `/Relu`"]);
    let (code, out, err) = run(&["inspect", &path]);
    assert_eq!(code, 4, "{err}");
    assert!(out.contains("Celu") && out.contains("unsupported"), "{out}");
}

#[test]
fn a_truncated_onnx_file_is_refused_as_invalid() {
    let (_dir, path) = edited(|b| b.truncate(b.len() / 2));
    fails(&[&path, "testdata/onnx/mnist_cnn.input.npy"], 3, &["not a valid ONNX model", "edited.onnx"]);
}

#[test]
fn an_opset_outside_13_to_21_is_refused_with_the_conversion_command() {
    // opset_import { version: 18 } (the default domain) → version 12.
    let (_dir, path) = edited(|b| assert_eq!(replace(b, b"\x42\x02\x10\x12", b"\x42\x02\x10\x0c"), 1));
    fails(&[&path, "testdata/onnx/mnist_cnn.input.npy"], 4, &["ONNX opset 12", "opsets 13 to 21", "convert_version"]);
}

#[test]
fn external_data_is_refused_naming_the_initializer() {
    let x = "testdata/onnx/mnist_cnn.input.npy";
    fails(&["testdata/onnx/external_data.onnx", x], 4, &["initializer `", "external data", "save_as_external_data"]);
}

/// A float16 weight that is infinite (0x7C00) or NaN (0x7E00) is refused naming
/// the initializer, not computed with: the model is invalid.
#[test]
fn a_non_finite_float16_weight_is_refused_naming_the_initializer() {
    let x = "testdata/onnx/mnist_cnn_half.input.npy";
    for (bits, shown) in [([0x00, 0x7c], "inf"), ([0x00, 0x7e], "NaN")] {
        let (_dir, path) = edited_model("onnx/mnist_cnn_half.onnx", |b| {
            // The initializer `fc2.bias`: its name (field 8), then raw_data (field 9, 20 bytes).
            let at = b.windows(10).position(|w| w == b"fc2.bias\x4a\x14").expect("fc2.bias in the model") + 10;
            b[at..at + 2].copy_from_slice(&bits);
        });
        fails(&[&path, x], 3, &["weight `fc2.bias` contains", shown]);
    }
}

/// A float16 model's input is a float16 `.npy` (`<f2`): read exactly, and the
/// same prediction as from the same values in float32.
#[test]
fn a_float16_input_file_feeds_a_float16_model() {
    let dir = tempfile::tempdir().unwrap();
    let half = testdata("onnx/mnist_cnn_half.input.npy");
    let x = load(&half);
    let wide = dir.path().join("input32.npy");
    tfe_run::npy::write_f32(&wide, &x).unwrap();
    let (code, from_half, stderr) = run(&["--plaintext", "testdata/onnx/mnist_cnn_half.onnx", half.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, from_wide, stderr) = run(&["--plaintext", "testdata/onnx/mnist_cnn_half.onnx", wide.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(from_half, from_wide);
    assert!(from_half.contains("shape: [100, 10]"), "{from_half}");
}
