//! The command line, end to end: golden output files, `--out`, and a test for
//! every bad input, checking the exit code and that the message names the culprit.
//!
//! Golden files live in tests/golden/; regenerate them with
//! `UPDATE_GOLDEN=1 cargo test --test cli` and review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use prost::Message;
use tfe_run::frontend::tf::proto::build::*;
use tfe_run::frontend::tf::proto::tensorflow::attr_value::Value;

/// Expect failure with `code`, and a message on stderr that contains every `needle`.
fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let (got, stdout, stderr) = run(args);
    assert_eq!(got, code, "exit code of tfe-run {args:?}; stderr: {stderr}");
    assert!(stdout.is_empty(), "nothing on stdout on failure, got {stdout}");
    for n in needles {
        assert!(stderr.contains(n), "stderr of tfe-run {args:?} should mention {n:?}: {stderr}");
    }
    stderr
}

fn temp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A .npy file with any header, for the kinds of file numpy can write but tfe-run refuses.
fn raw_npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    // A structured dtype is written as a list, a plain one as a quoted string.
    let descr = if descr.starts_with('[') { descr.to_string() } else { format!("'{descr}'") };
    let mut header = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn f32_npy(shape: &str, values: &[f32]) -> Vec<u8> {
    raw_npy("<f4", shape, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---- golden output ----

/// The numbers of a text output: (class, values) per row.
fn parse_rows(stdout: &str) -> Vec<(i64, Vec<f32>)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("row "))
        .map(|l| {
            let (head, values) = l.split_once(" | ").expect("row with class and values");
            let class = head.rsplit(' ').next().unwrap().parse().unwrap();
            (class, values.split(' ').map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn readme_example_text_output() {
    // Plaintext output is deterministic: golden.
    let (code, plain, stderr) = run(&["--plaintext", "testdata/mnist_model.pb", "testdata/mnist_input.npy"]);
    assert_eq!(code, 0, "{stderr}");
    golden("mnist_model.txt", &plain);
    // The README's command runs securely by default; its last digits depend on the
    // masks (truncation rounds either way), so it is compared with tolerance.
    let (code, secure, stderr) = run(&["testdata/mnist_model.pb", "testdata/mnist_input.npy"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(secure.starts_with("# mode: secure (Pond), output: Identity, shape: [1, 10]\n"), "{secure}");
    let (plain_rows, secure_rows) = (parse_rows(&plain), parse_rows(&secure));
    assert_eq!(secure_rows.len(), 1);
    assert_eq!(secure_rows[0].0, 7);
    for (s, p) in secure_rows[0].1.iter().zip(&plain_rows[0].1) {
        assert!((s - p).abs() <= 1e-2 * p.abs().max(1.0), "secure {s} vs plaintext {p}");
    }
}

#[test]
fn stats_report_traffic_per_party_and_layer() {
    let (code, stdout, stderr) = run(&["--stats", "testdata/mlp.pb", "testdata/mnist_flat100.npy"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 101, "stats go to stderr, not stdout");
    for needle in [
        "server0",
        "server1",
        "crypto-producer",
        "model-owner",
        "client",
        "dealer (offline)",
        "servers (online)",
        "thanks to seeds",
        "per layer",
        "MatMul",
        "Relu",
    ] {
        assert!(stderr.contains(needle), "--stats should mention {needle}: {stderr}");
    }
    // Measured bytes per layer equal the planned ones (the formulas are exact).
    for line in stderr.lines().filter(|l| l.contains(" MB ") && (l.contains("MatMul") || l.contains("Relu"))) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let mb: Vec<&str> = cols.iter().copied().filter(|c| c.parse::<f64>().is_ok() && c.contains('.')).collect();
        assert_eq!(mb[0], mb[1], "measured vs planned bytes: {line}");
    }
}

/// `--stats` as a whole is golden, with what a clock decides masked: the
/// "time:" line and the per-layer milliseconds. Bytes, rounds, messages, the
/// memory estimate and the dealer's saving are deterministic.
#[test]
fn stats_report_matches_its_golden_file_with_times_masked() {
    let (code, _, stderr) = run(&["--stats", "testdata/mlp.pb", "testdata/mnist_flat100.npy"]);
    assert_eq!(code, 0, "{stderr}");
    let mut in_layers = false;
    let mut masked = String::new();
    for line in stderr.lines() {
        if line.starts_with("time:") {
            masked.push_str("time: (masked)\n");
            continue;
        }
        if in_layers && line.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            // Drop the last column (ms), keep its width out of the comparison.
            let cut = line.trim_end().rfind(' ').unwrap();
            masked.push_str(line[..cut].trim_end());
        } else {
            masked.push_str(line);
        }
        in_layers |= line.starts_with("per layer");
        masked.push('\n');
    }
    golden("stats_mlp_batch100.txt", &masked);
}

#[test]
fn frac_bits_is_validated() {
    fails(&["--frac-bits", "40", "testdata/mlp.pb", "testdata/mnist_flat100.npy"], 2, &["--frac-bits 40"]);
}

#[test]
fn out_of_range_input_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = vec![0.5f32; 784];
    big[3] = 3e9;
    let input = temp_file(&dir, "big.npy", &f32_npy("(1, 784)", &big));
    fails(
        &["testdata/mlp.pb", s(&input)],
        2,
        &["input for `input`", "value 3000000000 at flat index 3 is out of range"],
    );
    // The plaintext reference has no such limit.
    let (code, _, _) = run(&["--plaintext", "testdata/mlp.pb", s(&input)]);
    assert_eq!(code, 0);
}

#[test]
fn batch_text_output() {
    let (code, stdout, _) = run(&["--plaintext", "testdata/maxpool_cnn.pb", "testdata/mnist_batch100.npy"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 101, "a header and one line per row");
    golden("maxpool_cnn_batch100.txt", &stdout);
}

#[test]
fn tf_encrypted_mnist_model_prints_seven() {
    if !have_reference("tf_encrypted_mnist_model_prints_seven") {
        return;
    }
    let model = reference("mnist_model.pb");
    let input = reference("mnist_input.npy");
    let (code, stdout, _) = run(&["--plaintext", s(&model), s(&input)]);
    assert_eq!(code, 0);
    golden("tfe_mnist_model.txt", &stdout);
    assert!(stdout.contains("row 0: class 7 |"));
}

#[test]
fn json_output() {
    let (code, stdout, _) =
        run(&["--plaintext", "--format", "json", "testdata/mnist_model.pb", "testdata/mnist_input.npy"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(doc["mode"], "plaintext");
    assert_eq!(doc["output_node"], "Identity");
    assert_eq!(doc["shape"], serde_json::json!([1, 10]));
    assert_eq!(doc["rows"][0]["class"], 7);
    let values: Vec<f32> =
        doc["rows"][0]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let expected = load(&testdata("mnist_model.single.expected.npy"));
    for (v, e) in values.iter().zip(expected.iter()) {
        assert!((v - e).abs() <= 1e-4 * e.abs().max(1.0), "{v} vs TensorFlow's {e}");
    }
    // The rest of the document, numbers rounded, is golden.
    let mut doc = doc;
    for v in doc["rows"][0]["values"].as_array_mut().unwrap() {
        *v = serde_json::json!((v.as_f64().unwrap() * 1e3).round() / 1e3);
    }
    golden("mnist_model.json", &(serde_json::to_string_pretty(&doc).unwrap() + "\n"));
}

#[test]
fn inspect_output() {
    let (code, stdout, _) = run(&["inspect", "testdata/keras3_bn.pb"]);
    assert_eq!(code, 0);
    golden("inspect_keras3_bn.txt", &stdout);
    if !have_reference("inspect_output (its tf-encrypted part)") {
        return;
    }
    let model = reference("mnist_model.pb");
    let (code, stdout, _) = run(&["inspect", s(&model)]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Placeholder  float32  [?, 784]"), "{stdout}");
    assert!(stdout.contains("output: fc2/add"), "{stdout}");
    assert!(stdout.contains("parameters: 33542"), "{stdout}");
}

/// `inspect` says how each op's steps run under Pond, with an approximation's
/// range and measured error, and the client's final op as what it is.
#[test]
fn inspect_says_how_every_op_runs_under_pond() {
    let inspect = |model: &str| {
        let (code, stdout, _) = run(&["inspect", model]);
        assert_eq!(code, 0, "{stdout}");
        stdout
    };
    let line = |out: &str, op: &str| out.lines().find(|l| l.starts_with(&format!("  {op} "))).unwrap_or("").to_string();
    let functional = inspect("testdata/functional.pb");
    assert!(line(&functional, "Relu").ends_with("supported  comparison 1"), "{functional}");
    assert!(line(&functional, "Conv2D").ends_with("supported  product 3"), "{functional}");
    assert!(line(&functional, "Tanh").ends_with("supported  approximation 1"), "{functional}");
    assert!(line(&functional, "Const").ends_with("no step: folded at import or pass-through"), "{functional}");
    assert!(line(&functional, "Placeholder").ends_with("the client's input, secret-shared"), "{functional}");
    let tanh = functional.lines().find(|l| l.contains("approximation of Tanh")).unwrap_or("");
    assert!(tanh.contains("on [-5.5, 5.5]: max error 8.4e-5; outside: exactly -1 below, 1 above"), "{functional}");
    let keras3_bn = inspect("testdata/keras3_bn.pb");
    assert!(line(&keras3_bn, "Softmax").ends_with("client 1"), "{keras3_bn}");
    assert!(keras3_bn.contains("1 step   the client applies Softmax after opening (exact)"), "{keras3_bn}");
    // A Softmax inside the graph runs on shares, with its reciprocal's error.
    let activations = inspect("testdata/ops/activations.pb");
    assert!(line(&activations, "Softmax").ends_with("approximation 1"), "{activations}");
    assert!(activations.contains("approximation of softmax on [-inf, inf]: |error| ≤ 1e-4"), "{activations}");
}

/// `tfe-run ops` prints docs/OPS.md's op table (the registry it is generated from).
#[test]
fn ops_prints_the_op_table_of_docs_ops_md() {
    let (code, stdout, _) = run(&["ops"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("| op | notes | under Pond |"), "{stdout}");
    let doc = std::fs::read_to_string("docs/OPS.md").unwrap();
    assert!(doc.contains(&stdout), "docs/OPS.md's op table is not `tfe-run ops`'s output");
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(readme.contains("(docs/OPS.md)"), "README.md links the op table");
}

#[test]
fn inspect_json_and_plan() {
    let (code, stdout, _) = run(&["inspect", "--format", "json", "testdata/ops/two_inputs.pb"]);
    assert_eq!(code, 0);
    golden("inspect_two_inputs.json", &stdout);
    let (code, stdout, _) = run(&["inspect", "--plan", "testdata/tfkeras_bn.pb"]);
    assert_eq!(code, 0);
    golden("inspect_plan_tfkeras_bn.txt", &stdout);
}

#[test]
fn out_writes_the_output_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let (code, _, _) = run(&["--plaintext", "testdata/mlp.pb", "testdata/mnist_flat100.npy", "--out", s(&out)]);
    assert_eq!(code, 0);
    let written = load(&out);
    assert_matches("--out", &written, &load(&testdata("mlp.expected.npy")), 1e-4);
}

#[test]
fn named_inputs_and_output_node() {
    if !have_reference("named_inputs_and_output_node") {
        return;
    }
    let x = reference("2inputs_input_example.npy");
    let model = reference("2inputs.pb");
    let (code, stdout, _) = run(&["--plaintext", s(&model), s(&x), "--input", &format!("Placeholder_1={}", s(&x))]);
    assert_eq!(code, 0);
    assert!(stdout.contains("row 0: class 1 | 0.6086 0.9999"), "{stdout}");
    // Every placeholder by name, no positional input.
    let (code, stdout2, _) = run(&[
        "--plaintext",
        s(&model),
        "--input",
        &format!("Placeholder={}", s(&x)),
        "--input",
        &format!("Placeholder_1={}", s(&x)),
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout, stdout2);
    // An inner node as the output.
    let (code, stdout, _) = run(&[
        "--plaintext",
        "--output-node",
        "sequential/dense/BiasAdd",
        "testdata/tfkeras_bn.pb",
        "testdata/mnist_input.npy",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("# mode: plaintext, output: sequential/dense/BiasAdd, shape: [1, 10]"), "{stdout}");
}

#[test]
fn integer_and_float64_inputs_are_converted() {
    if !have_reference("integer_and_float64_inputs_are_converted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // uint8 pixels 0..255 of a blank image, and a float64 copy of the MNIST image.
    let u8_input = temp_file(&dir, "u8.npy", &raw_npy("|u1", "(1, 784)", &[0u8; 784]));
    let model = reference("mnist_model.pb");
    let (code, _, stderr) = run(&["--plaintext", s(&model), s(&u8_input)]);
    assert_eq!(code, 0, "{stderr}");
    let image = load(&reference("mnist_input.npy"));
    let f64_bytes: Vec<u8> = image.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
    let f64_input = temp_file(&dir, "f64.npy", &raw_npy("<f8", "(1, 784)", &f64_bytes));
    let (code, stdout, _) = run(&["--plaintext", s(&model), s(&f64_input)]);
    assert_eq!(code, 0);
    assert!(stdout.contains("class 7"));
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "Exit codes:",
        "--plaintext",
        "--input <NAME=FILE.npy>",
        "--out",
        "--output-node",
        "inspect",
        "Examples:",
        "--max-memory",
        "--config",
        "serve",
        "deploy",
        "5  a party could not be reached",
    ] {
        assert!(stdout.contains(needle), "--help should mention {needle}");
    }
    for sub in ["serve", "certs", "deploy", "predict"] {
        let (code, stdout, _) = run(&[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("--config"), "`{sub} --help` should mention --config");
    }
}

// ---- bad input: exit code 2 ----

#[test]
fn usage_errors() {
    fails(&[], 2, &["MODEL"]);
    fails(&["testdata/mnist_model.pb"], 2, &["no input given"]);
    fails(&["testdata/mnist_model.pb", "--input", "no-equals-sign"], 2, &["NAME=FILE.npy"]);
    fails(&["testdata/mnist_model.pb", "--format", "xml", "testdata/mnist_input.npy"], 2, &["xml"]);
}

#[test]
fn missing_files_are_named() {
    fails(&["testdata/nope.pb", "testdata/mnist_input.npy"], 2, &["cannot read model", "testdata/nope.pb"]);
    fails(&["testdata/mnist_model.pb", "testdata/nope.npy"], 2, &["cannot read input", "testdata/nope.npy"]);
}

#[test]
fn bad_npy_files_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = "testdata/mlp.pb";
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (temp_file(&dir, "text.npy", b"0.1 0.2 0.3\n"), "not a .npy file"),
        (temp_file(&dir, "nan.npy", &f32_npy("(1, 784)", &[f32::NAN; 784])), "NaN at flat index 0 is not finite"),
        (
            temp_file(&dir, "object.npy", &raw_npy("|O", "(2,)", b"\x80\x02N.")),
            "object (pickled) arrays are not supported",
        ),
        (temp_file(&dir, "complex.npy", &raw_npy("<c8", "(1, 784)", &[0u8; 8 * 784])), "dtype `<c8` is not supported"),
        (temp_file(&dir, "strings.npy", &raw_npy("<U3", "(2,)", &[0u8; 24])), "is not supported"),
        (temp_file(&dir, "truncated.npy", &f32_npy("(1, 784)", &[0.5; 100])), "truncated"),
        (temp_file(&dir, "record.npy", &raw_npy("[('a', '<f4')]", "(1,)", &[0u8; 4])), "structured arrays"),
        (temp_file(&dir, "shape.npy", &f32_npy("(2, 783)", &[0.5; 2 * 783])), "placeholder `input` expects [?, 784]"),
    ];
    let mut inf = vec![0.0f32; 784];
    inf[5] = f32::INFINITY;
    cases.push((temp_file(&dir, "inf.npy", &f32_npy("(1, 784)", &inf)), "inf at flat index 5 is not finite"));
    let huge = raw_npy("<f8", "(1, 784)", &1e300f64.to_le_bytes().repeat(784));
    cases.push((temp_file(&dir, "huge.npy", &huge), "does not fit in float32"));
    for (path, message) in &cases {
        fails(&[model, s(path)], 2, &[s(path), message]);
    }
}

/// Found by the `npy` fuzz target: a format-3 header whose 4-byte length says
/// 4 GiB made the reader allocate 4 GiB for a file of 200 bytes.
#[test]
fn npy_header_length_beyond_the_file_is_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    for version in [1u8, 2, 3] {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend_from_slice(&[version, 0]);
        bytes.extend_from_slice(if version == 1 { &[0xff, 0xff][..] } else { &[0xff, 0xff, 0xff, 0xff][..] });
        bytes.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 784), }\n");
        let path = temp_file(&dir, &format!("header{version}.npy"), &bytes);
        let why = if version == 1 {
            "the file is truncated: its header says 65535 bytes"
        } else {
            "over the 65536-byte limit"
        };
        fails(&["testdata/mlp.pb", s(&path)], 2, &[s(&path), why]);
    }
    let path = temp_file(&dir, "version9.npy", b"\x93NUMPY\x09\x00\x10\x00{}");
    fails(&["testdata/mlp.pb", s(&path)], 2, &[s(&path), "format version 9"]);
}

/// Found by the `npy` fuzz target: a header of nested braces sent the header
/// parser into exponential backtracking (2.6 s for 12 levels in 166 bytes).
#[test]
fn npy_header_nesting_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let header = format!("{}'descr': '<f4', 'shape': (1, 784), }}\n", "{".repeat(40));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let path = temp_file(&dir, "nested.npy", &bytes);
    let started = std::time::Instant::now();
    fails(&["testdata/mlp.pb", s(&path)], 2, &[s(&path), "its header nests more than 4 deep"]);
    // Not a timing assertion of speed: 40 levels would run for years.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// Found by the `npy` fuzz target: 40 unary plus signs before a number in the
/// header took the header parser 1.4 s; headers hold only what numpy writes.
#[test]
fn npy_header_with_what_numpy_does_not_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let npy = |header: &str, data: &[u8]| {
        let header = format!("{header}\n");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    };
    let plus = format!("{{'descr': '<f4', 'fortran_order': {}1, 'shape': (1, 784), }}", "+".repeat(60));
    let cases = [
        (plus.as_str(), "the character '+'"),
        ("{'descr': '<f4', 'fortran_order': Nope, 'shape': (1, 784), }", "the character 'N'"),
        ("{'descr': '<f4', 'fortran_order': Fals, 'shape': (1, 784), }", "a bare word"),
        ("{'descr': '<f4\\x', 'fortran_order': False, 'shape': (1, 784), }", "unusual characters"),
    ];
    for (k, (header, why)) in cases.iter().enumerate() {
        let path = temp_file(&dir, &format!("odd{k}.npy"), &npy(header, &[]));
        fails(&["testdata/mlp.pb", s(&path)], 2, &[s(&path), why]);
    }
    // What numpy writes is still read.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 784), }";
    let path = temp_file(&dir, "py2.npy", &npy(header, &[0u8; 4 * 784]));
    let (code, _, stderr) = run(&["--plaintext", "testdata/mlp.pb", s(&path)]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn placeholders_must_all_be_fed_correctly() {
    if !have_reference("placeholders_must_all_be_fed_correctly") {
        return;
    }
    let model = reference("2inputs.pb");
    let x = reference("2inputs_input_example.npy");
    fails(&[s(&model), s(&x)], 2, &["2 placeholders without an input", "`Placeholder`", "`Placeholder_1`", "--input"]);
    fails(
        &[s(&model), "--input", &format!("Placeholder={}", s(&x))],
        2,
        &["no input for placeholder(s) `Placeholder_1`"],
    );
    fails(&[s(&model), s(&x), "--input", &format!("nope={}", s(&x))], 2, &["the model has no placeholder `nope`"]);
    fails(
        &[s(&model), s(&x), "--input", &format!("Placeholder={}", s(&x)), "--input", &format!("Placeholder={}", s(&x))],
        2,
        &["given twice"],
    );
}

#[test]
fn output_node_must_exist_and_depend_on_the_input() {
    if !have_reference("output_node_must_exist_and_depend_on_the_input") {
        return;
    }
    fails(&["--output-node", "nope", "testdata/mlp.pb", "testdata/mnist_flat100.npy"], 2, &["--output-node `nope`"]);
    let model = reference("mnist_model.pb");
    let input = reference("mnist_input.npy");
    fails(
        &["--output-node", "conv1/Variable", s(&model), s(&input)],
        2,
        &["output `conv1/Variable` does not depend on any input"],
    );
}

// ---- invalid model: exit code 3 ----

fn write_graph(dir: &tempfile::TempDir, name: &str, nodes: Vec<tfe_run::frontend::tf::proto::NodeDef>) -> PathBuf {
    temp_file(dir, name, &graph(nodes).encode_to_vec())
}

#[test]
fn invalid_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 4)", &[1.0; 4]));
    // An .npy file is not a GraphDef.
    // An array given as the model is named as one (testdata/formats covers the other files).
    fails(&["testdata/mnist_input.npy", s(&input)], 2, &["testdata/mnist_input.npy", "is a NumPy array, not a model"]);
    let empty = temp_file(&dir, "empty.pb", b"");
    fails(&[s(&empty), s(&input)], 3, &["empty.pb", "the graph has no nodes"]);
    let cyclic = write_graph(
        &dir,
        "cycle.pb",
        vec![placeholder("x", &[-1, 4]), node("a", "Add", &["x", "b"]), node("b", "Relu", &["a"])],
    );
    fails(&["--output-node", "b", s(&cyclic), s(&input)], 3, &["cycle", "`a`"]);
    let dangling =
        write_graph(&dir, "dangling.pb", vec![placeholder("x", &[-1, 4]), node("y", "Relu", &["x", "^init"])]);
    fails(&[s(&dangling), s(&input)], 3, &["Relu `y`", "`^init` names a node that is not in the graph"]);
    let bad_const = {
        let mut c = const_f32("w", &[4, 4], &[]);
        if let Some(Value::Tensor(t)) = c.attr.get_mut("value").and_then(|a| a.value.as_mut()) {
            t.tensor_content = vec![0; 10];
        }
        write_graph(&dir, "bad_const.pb", vec![placeholder("x", &[-1, 4]), c, node("y", "MatMul", &["x", "w"])])
    };
    fails(&[s(&bad_const), s(&input)], 3, &["Const `w`", "tensor_content has 10 bytes, the shape needs 64"]);
}

// ---- unsupported model: exit code 4 ----

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 4)", &[1.0; 4]));
    let model = write_graph(
        &dir,
        "unsupported.pb",
        vec![
            placeholder("x", &[-1, 4]),
            node("lg/Lgamma", "Lgamma", &["x"]),
            node("relu", "Relu", &["lg/Lgamma"]),
            node("lg2/Lgamma", "Lgamma", &["relu"]),
            node("cum", "Cumsum", &["lg2/Lgamma"]),
        ],
    );
    let err = fails(
        &[s(&model), s(&input)],
        4,
        &[
            "unsupported.pb",
            "2 unsupported op type(s) (Cumsum, Lgamma) in 3 node(s)",
            "Lgamma `lg/Lgamma`",
            "Lgamma `lg2/Lgamma`",
            "Cumsum `cum`",
        ],
    );
    assert!(!err.contains("Relu"), "supported ops are not listed: {err}");
    let (code, stdout, _) = run(&["inspect", s(&model)]);
    assert_eq!(code, 4);
    assert!(stdout.contains("Lgamma          2  UNSUPPORTED"), "{stdout}");
}

#[test]
fn shape_errors_name_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 8, 8, 8)", &[0.5; 512]));
    let conv = with_attr(
        with_attr(node("conv2d_1/Conv2D", "Conv2D", &["x", "w"]), "strides", ints(&[1, 1, 1, 1])),
        "padding",
        Value::S(b"VALID".to_vec()),
    );
    let model = write_graph(
        &dir,
        "conv.pb",
        vec![placeholder("x", &[-1, 8, 8, 8]), const_f32("w", &[3, 3, 16, 4], &[0.1]), conv],
    );
    fails(&[s(&model), s(&input)], 4, &["Conv2D `conv2d_1/Conv2D`: filter expects 16 input channels, input has 8"]);
    let matmul = write_graph(
        &dir,
        "matmul.pb",
        vec![
            placeholder("x", &[-1, 8, 8, 8]),
            const_f32("w", &[5, 3], &[0.1]),
            node("dense/MatMul", "MatMul", &["x", "w"]),
        ],
    );
    fails(
        &[s(&matmul), s(&input)],
        4,
        &["MatMul `dense/MatMul`: MatMul needs two matrices, has [1, 8, 8, 8] and [5, 3]"],
    );
}

// ---- hostile models and resource limits ----

#[test]
fn hostile_shapes_and_constants_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 4)", &[1.0; 4]));
    let with_const = |name: &str, c: tfe_run::frontend::tf::proto::NodeDef| {
        write_graph(&dir, name, vec![placeholder("x", &[-1, 4]), c, node("y", "Add", &["x", "w"])])
    };
    // A few bytes that declare a constant of 2^40 elements, filled from one value.
    let splat = with_const("splat.pb", const_f32("w", &[1 << 20, 1 << 20], &[1.0]));
    fails(&[s(&splat), s(&input)], 3, &["Const `w`", "too many elements"]);
    // Dimensions whose product overflows 64 bits.
    let overflow = with_const("overflow.pb", const_f32("w", &[1 << 40, 1 << 40], &[1.0]));
    fails(&[s(&overflow), s(&input)], 3, &["Const `w`", "too many elements"]);
    let negative = with_const("negative.pb", const_f32("w", &[-3, 4], &[1.0]));
    fails(&[s(&negative), s(&input)], 3, &["Const `w`", "dimension -3 is negative"]);
    // More data than the declared shape holds (fewer is TensorFlow's fill-with-the-last).
    let long = with_const("long.pb", const_f32("w", &[1, 4], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    fails(&[s(&long), s(&input)], 3, &["Const `w`", "5 values for a shape of 4 elements"]);
    // Two small constants whose broadcast sum would be 2^32 elements.
    let folded = write_graph(
        &dir,
        "folded.pb",
        vec![
            placeholder("x", &[-1, 1]),
            const_f32("a", &[1 << 16, 1], &[1.0]),
            const_f32("b", &[1, 1 << 16], &[1.0]),
            node("ab", "AddV2", &["a", "b"]),
            node("y", "Mul", &["x", "ab"]),
        ],
    );
    let one = temp_file(&dir, "one.npy", &f32_npy("(1, 1)", &[1.0]));
    fails(&[s(&folded), s(&one)], 4, &["AddV2 `ab`", "folding it would make a constant of shape [65536, 65536]"]);
    let bad_placeholder = write_graph(&dir, "ph.pb", vec![placeholder("x", &[-7, 4]), node("y", "Relu", &["x"])]);
    fails(&[s(&bad_placeholder), s(&input)], 3, &["`x`", "dimension -7 is negative"]);
}

#[test]
fn a_graph_of_100k_nodes_imports_plans_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let mut nodes = vec![placeholder("x", &[-1, 4])];
    for i in 0..n {
        let prev = if i == 0 { "x".to_string() } else { format!("neg{}", i - 1) };
        nodes.push(node(&format!("neg{i}"), "Neg", &[&prev]));
    }
    let model = write_graph(&dir, "long.pb", nodes);
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 4)", &[1.0, -2.0, 3.5, 0.25]));
    for mode in [&["--plaintext"][..], &[][..]] {
        let (code, stdout, stderr) = run(&[mode, &[s(&model), s(&input)]].concat());
        assert_eq!(code, 0, "{stderr}");
        // An even number of negations is the identity.
        let rows = parse_rows(&stdout);
        assert_eq!(rows[0].1, vec![1.0, -2.0, 3.5, 0.25], "{stdout}");
    }
}

#[test]
fn max_memory_refuses_a_run_with_its_estimate() {
    let (model, input) = ("testdata/mnist_model.pb", "testdata/mnist_batch100.npy");
    let err = fails(&["--max-memory", "100M", model, input], 2, &["the secure run of `testdata/mnist_model.pb`"]);
    assert!(err.contains("needs an estimated") && err.contains("over the --max-memory limit of 100 MB"), "{err}");
    fails(&["--plaintext", "--max-memory", "1M", model, input], 2, &["the plaintext run", "limit of 1 MB"]);
    fails(&["--max-memory", "lots", model, input], 2, &["`lots` is not a size"]);
    // Issue 16: `--max-memory 10` was reported as a limit of "0 MB".
    fails(&["--max-memory", "10", model, input], 2, &["over the --max-memory limit of 10 bytes"]);
    fails(&["--max-memory", "1", model, input], 2, &["over the --max-memory limit of 1 byte;"]);
    fails(&["--max-memory", "20K", model, input], 2, &["over the --max-memory limit of 20.0 KB"]);
    // The default leaves room for every shipped model.
    let (code, _, stderr) = run(&["--max-memory", "1G", model, input]);
    assert_eq!(code, 0, "{stderr}");
}

/// Found while holding the importer to the no-panic lint: a placeholder without
/// a dtype attribute, left unfed, made `tfe-run` and `inspect` panic.
#[test]
fn placeholder_without_dtype_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_graph(
        &dir,
        "nodtype.pb",
        vec![node("x", "Placeholder", &[]), placeholder("y", &[-1, 4]), node("z", "AddV2", &["x", "y"])],
    );
    let input = temp_file(&dir, "y.npy", &f32_npy("(1, 4)", &[1.0; 4]));
    let feed = format!("y={}", s(&input));
    fails(&["--plaintext", s(&model), "--input", &feed], 2, &["placeholder `x` (which declares no dtype) is not fed"]);
    // inspect prints its report, and exits as the run does (its verdict is the run's).
    let (code, stdout, stderr) = run(&["inspect", s(&model)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.contains("plan (batch of 1): not possible: placeholder `x`"), "{stdout}");
}

/// Found by the `graphdef` fuzz target: a Pad with huge paddings made the
/// importer plan a private tensor of 21 billion elements (which a server would
/// refuse); the importer now refuses it, naming the node.
#[test]
fn a_pad_to_billions_of_elements_is_refused_at_import() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_graph(
        &dir,
        "bigpad.pb",
        vec![
            placeholder("x", &[-1, 4]),
            const_i32("p", &[2, 2], &[0, i32::MAX, 0, i32::MAX]),
            node("padded", "Pad", &["x", "p"]),
        ],
    );
    let input = temp_file(&dir, "x.npy", &f32_npy("(1, 4)", &[1.0; 4]));
    fails(&[s(&model), s(&input)], 4, &["Pad `padded`", "over 17179869184 elements"]);
}

// ---- certificates and a closed stdout ----

/// A cluster file for `certs`, `serve` and the driver; nothing listens there.
fn cluster_config(dir: &tempfile::TempDir) -> String {
    let config =
        temp_file(dir, "c.json", br#"{"server0": "127.0.0.1:1", "server1": "127.0.0.1:2", "server2": "127.0.0.1:3"}"#);
    config.to_str().unwrap().to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `certs` once replaced an existing CA and every key without a word, which cuts
/// off every host that still has the old ones.
#[test]
fn certs_refuses_to_replace_an_existing_ca_or_key_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(&dir);
    let out = dir.path().join("certs");
    let certs = ["certs", "--config", &config, "--out", out.to_str().unwrap()];
    let (code, _, stderr) = run(&certs);
    assert_eq!(code, 0, "{stderr}");
    let ca = std::fs::read(out.join("ca.pem")).unwrap();
    let key = std::fs::read(out.join("server0.key")).unwrap();
    fails(&certs, 2, &["ca.pem", "already exists", "--force"]);
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca, "the CA is untouched");
    assert_eq!(std::fs::read(out.join("server0.key")).unwrap(), key, "the keys are untouched");

    // One file left over is enough to refuse, before anything is written.
    std::fs::remove_file(out.join("ca.pem")).unwrap();
    fails(&certs, 2, &["server0.pem", "--force"]);
    assert!(!out.join("ca.pem").exists(), "nothing is written on refusal");

    let mut forced = certs.to_vec();
    forced.push("--force");
    let (code, _, stderr) = run(&forced);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(std::fs::read(out.join("server0.key")).unwrap(), key, "--force replaces the keys");
}

/// Key files are 0600 whatever the umask, also when a file of that name
/// existed with other permissions (it once kept them).
#[cfg(unix)]
#[test]
fn certs_writes_key_files_0600_whatever_the_umask_or_an_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(&dir);
    let out = dir.path().join("certs");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("client.key"), b"old").unwrap();
    set_mode(&out.join("client.key"), 0o644);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tfe-run"));
    let script =
        format!("umask 000; exec '{}' certs --config '{config}' --out '{}' --force", bin.display(), out.display());
    let status = std::process::Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    for party in ["server0", "server1", "crypto-producer", "model-owner", "client"] {
        assert_eq!(mode(&out.join(format!("{party}.key"))), 0o600, "{party}.key");
        assert_eq!(mode(&out.join(format!("{party}.pem"))) & 0o022, 0, "{party}.pem is writable by others");
    }
}

/// `serve` and the driver once loaded a private key that anyone on the host
/// could read.
#[cfg(unix)]
#[test]
fn serve_and_the_driver_refuse_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(&dir);
    let out = dir.path().join("certs");
    let (code, _, stderr) = run(&["certs", "--config", &config, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let certs = out.to_str().unwrap();
    for mode in [0o644, 0o640, 0o604] {
        set_mode(&out.join("server0.key"), mode);
        let serve = tfe_run()
            .args(["serve", "--party", "server0", "--listen", "127.0.0.1:0", "--config", &config, "--certs", certs])
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&serve.stderr);
        assert_eq!(serve.status.code(), Some(2), "mode {mode:o}: {stderr}");
        assert!(stderr.contains("server0.key") && stderr.contains("chmod 600"), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");

        set_mode(&out.join("client.key"), mode);
        let model = testdata("mnist_model.pb");
        let input = testdata("mnist_input.npy");
        fails(
            &[model.to_str().unwrap(), input.to_str().unwrap(), "--config", &config, "--certs", certs],
            2,
            &["client.key", "chmod 600"],
        );
        set_mode(&out.join("client.key"), 0o600);
    }
}

/// Only a closed stdout is a silent broken pipe (`tfe-run ... | head -c1`).
#[test]
fn a_closed_stdout_still_exits_0_silently() {
    let mut child = std::process::Command::new(PathBuf::from(env!("CARGO_BIN_EXE_tfe-run")))
        .arg(testdata("mnist_model.pb"))
        .arg(testdata("mnist_input.npy"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the prediction is printed: its write fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Model files tfe-run does not read, as real exporters write them
/// (testdata/gen_formats.py, which also checks that each printed command converts
/// its file into a GraphDef tfe-run runs): each is named for what it is, with the
/// command that converts it, exit 4; never "protobuf decoding failed".
#[test]
fn model_files_tfe_run_does_not_read_are_named_with_their_conversion_command() {
    let input = "testdata/formats/input.npy";
    for (model, what, command) in [
        (
            "dense.keras",
            "is a zip archive (a Keras 3 `.keras` model)",
            "keras.saving.load_model('testdata/formats/dense.keras')",
        ),
        (
            "dense.h5",
            "is an HDF5 file (a Keras `.h5` model)",
            "tf_keras.models.load_model('testdata/formats/dense.h5')",
        ),
        // The directory itself is read (tests/savedmodel.rs); its graph alone points at it.
        (
            "dense_saved_model/saved_model.pb",
            "is a SavedModel's graph",
            "`tfe-run testdata/formats/dense_saved_model INPUT.npy`",
        ),
        (
            "unfrozen.pb",
            "the graph is not frozen: VariableV2 `w` holds a variable",
            "python -m tensorflow.python.tools.freeze_graph",
        ),
    ] {
        let path = format!("testdata/formats/{model}");
        for args in [vec![path.as_str(), input], vec!["inspect", path.as_str()]] {
            let (code, stdout, stderr) = run(&args);
            assert_eq!(code, 4, "{args:?}: {stderr}");
            assert!(stdout.is_empty(), "{args:?}: {stdout}");
            assert!(stderr.contains(what) && stderr.contains(command), "{args:?}: {stderr}");
            assert!(!stderr.contains("decoding failed"), "{args:?}: {stderr}");
        }
    }
    // The arguments swapped: an array given as the model is the user's mistake.
    let (code, _, stderr) = run(&[input, input]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is a NumPy array, not a model: the model comes first"), "{stderr}");
    // A directory that is no SavedModel.
    let (code, _, stderr) = run(&["testdata/ops", input]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`testdata/ops` is a directory, not a model file"), "{stderr}");
}

/// A TF1 graph's `keep_prob = placeholder_with_default(1.0, [])` needs no input:
/// the positional INPUT feeds the one placeholder without a default.
#[test]
fn a_placeholder_with_default_leaves_the_positional_input_to_the_other_placeholder() {
    let (code, out, stderr) = run(&["--plaintext", "testdata/tf1_cnn_dropout.pb", "testdata/mnist_flat100.npy"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("output: probs, shape: [100, 10]"), "{out}");
}

/// `--public NAME=NUMBER` feeds a placeholder a public number: keep_prob 1.0
/// gives what its default gives; 0.5 leaves the dropout undecided, refused by name.
#[test]
fn a_public_keep_prob_decides_the_dropout_or_is_refused_naming_the_node() {
    let model = "testdata/tf1_cnn_dropout.pb";
    let (code, default, stderr) = run(&["--plaintext", model, "testdata/mnist_flat100.npy"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, fed, stderr) = run(&["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "keep_prob=1.0"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fed, default);
    fails(
        &["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "keep_prob=0.5"],
        4,
        &["GreaterEqual `dropout/GreaterEqual`", "RandomUniform", "not decided"],
    );
    fails(&["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "keep_prob=x"], 2, &["NAME=NUMBER"]);
}

/// A TF1 graph's bool `is_training` (a `placeholder_with_default(False)` that two
/// tf.conds read) takes `--public is_training=0|1`, under control flow v1
/// (Switch/Merge) and v2 (StatelessIf): 0 is its default; 1 takes the dropout
/// branch, whose random mask is refused by name; any other number is bad input.
#[test]
fn a_public_bool_is_training_picks_the_tf_cond_branch_or_is_refused_naming_the_node() {
    for (model, undecided) in [
        ("testdata/loops/cond_tf1_v1.pb", "GreaterEqual `dropout/dropout/GreaterEqual`"),
        ("testdata/loops/cond_tf1_v2.pb", "GreaterEqual `dropout/then/dropout/GreaterEqual`"),
    ] {
        let (code, default, stderr) = run(&["--plaintext", model, "testdata/mnist_flat100.npy"]);
        assert_eq!(code, 0, "{stderr}");
        let fed = run(&["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "is_training=0"]);
        assert_eq!((fed.0, fed.1.as_str()), (0, default.as_str()), "{}", fed.2);
        let training = ["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "is_training=1"];
        fails(&training, 4, &[undecided, "RandomUniform", "a dropout must be disabled"]);
        let two = ["--plaintext", model, "testdata/mnist_flat100.npy", "--public", "is_training=2"];
        fails(&two, 2, &["placeholder `is_training` is bool", "is_training=0 (false) or is_training=1 (true)"]);
    }
}

/// Token ids feed an int32 placeholder (an Embedding's) as TensorFlow takes them:
/// integers, from an integer or a float file; a fraction is refused by file and
/// placeholder, without showing the value, instead of rounded by the lookup.
#[test]
fn an_int32_token_placeholder_takes_integer_ids_and_refuses_a_fraction_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = "testdata/seq/seq_embedding_tfkeras.pb";
    let ids: Vec<f32> = (0..32).map(|i| ((i * 37) % 200) as f32).collect();
    let whole = temp_file(&dir, "ids.npy", &f32_npy("(1, 32)", &ids));
    let (code, stdout, stderr) = run(&["--plaintext", model, s(&whole)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("row 0: class"), "{stdout}");
    let mut fractional = ids.clone();
    fractional[5] = 17.25;
    let bad = temp_file(&dir, "bad.npy", &f32_npy("(1, 32)", &fractional));
    let stderr =
        fails(&["--plaintext", model, s(&bad)], 2, &["bad.npy", "`input`", "int32", "not an integer", "index 5"]);
    assert!(!stderr.contains("17.25"), "the value is the client's: {stderr}");
}

/// `inspect`'s exit code is the one a secure run of the model ends with, for the
/// same reason (issue 16: `inspect` passed what the run refused, and fed a TF1
/// graph's `keep_prob = placeholder_with_default(1.0)` as a private input, so it
/// called the dropout undecided where the run decides it).
#[test]
fn inspect_verdict_is_the_runs_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let dropout = "testdata/tf1_cnn_dropout.pb";
    let (code, stdout, stderr) = run(&["inspect", dropout]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("not possible"), "{stdout}");
    let (code, _, stderr) = run(&[dropout, "testdata/mnist_flat100.npy"]);
    assert_eq!(code, 0, "{stderr}");
    // An undecided dropout: both refuse it, naming the node.
    let undecided = ["GreaterEqual `dropout/GreaterEqual`", "not decided"];
    let (code, stdout, stderr) = run(&["inspect", "--public", "keep_prob=0.5", dropout]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(undecided.iter().all(|n| stdout.contains(n) && stderr.contains(n)), "{stdout}{stderr}");
    fails(&[dropout, "testdata/mnist_flat100.npy", "--public", "keep_prob=0.5"], 4, &undecided);
    // A step with no secure protocol (an ArgMax inside the graph): it plans, so the
    // report is complete, but the secure run is refused, and so is inspect.
    let mut argmax = node("am", "ArgMax", &["x", "axis"]);
    argmax = with_attr(argmax, "output_type", Value::Type(3));
    let cast = with_attr(node("c", "Cast", &["am"]), "DstT", Value::Type(1));
    let model = write_graph(
        &dir,
        "argmax_mid.pb",
        vec![placeholder("x", &[-1, 4]), const_i32("axis", &[], &[1]), argmax, cast, node("y", "Neg", &["c"])],
    );
    let input = temp_file(&dir, "x.npy", &f32_npy("(2, 4)", &[1.0, 3.0, 2.0, 0.0, 5.0, 1.0, 0.0, 2.0]));
    let why = ["ArgMax `am`", "--plaintext"];
    let (code, stdout, stderr) = run(&["inspect", s(&model)]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("under Pond: not possible: ArgMax `am`"), "{stdout}");
    assert!(why.iter().all(|n| stderr.contains(n)), "{stderr}");
    fails(&[s(&model), s(&input)], 4, &why);
    let (code, stdout, stderr) = run(&["--plaintext", s(&model), s(&input)]);
    assert_eq!(code, 0, "{stderr}");
    // -argmax of each row: -1 and 0.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("row ")).collect();
    assert!(rows.len() == 2 && rows[0].ends_with(" -1.0000") && rows[1].ends_with(" 0.0000"), "{stdout}");
}

/// A model with a fixed batch runs a file of several of its batches, one batch
/// after the other, as `predict` does on remote parties (issue 16: it refused
/// every file but one of exactly its batch). Each row of the batched run is the
/// run of that row alone (a last batch that is not full is filled up only
/// when the model's rows are independent: the test after this one).
#[test]
fn a_fixed_batch_model_runs_a_batch_file_in_batches() {
    if !have_reference("a_fixed_batch_model_runs_a_batch_file_in_batches") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = reference("2lfc.pb");
    let example = load(&reference("2lfc_input_example.npy"));
    let expected = load(&reference("2lfc.expected.npy"));
    // Row 0 is tf-encrypted's example (whose TensorFlow output we have); the
    // others are scaled copies of it.
    let rows: Vec<Vec<f32>> = (0..5).map(|k| example.iter().map(|v| v * (1.0 - 0.3 * k as f32)).collect()).collect();
    let batch = temp_file(&dir, "five.npy", &f32_npy("(5, 16)", &rows.concat()));
    let (code, plain, stderr) = run(&["--plaintext", s(&model), s(&batch)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(plain.contains("shape: [5, 2]"), "{plain}");
    let plain_rows = parse_rows(&plain);
    for (k, row) in rows.iter().enumerate() {
        let one = temp_file(&dir, &format!("row{k}.npy"), &f32_npy("(1, 16)", row));
        let (code, alone, stderr) = run(&["--plaintext", s(&model), s(&one)]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(parse_rows(&alone)[0], plain_rows[k], "row {k} batched vs alone");
    }
    for (v, e) in plain_rows[0].1.iter().zip(expected.iter()) {
        assert!((v - e).abs() <= 1e-3 * e.abs().max(1.0), "row 0 {v} vs TensorFlow {e}");
    }
    let (code, secure, stderr) = run(&[s(&model), s(&batch)]);
    assert_eq!(code, 0, "{stderr}");
    for ((sc, sv), (pc, pv)) in parse_rows(&secure).iter().zip(&plain_rows) {
        assert_eq!(sc, pc, "{secure}");
        for (a, b) in sv.iter().zip(pv) {
            assert!((a - b).abs() <= 1e-2 * b.abs().max(1.0), "secure {a} vs plaintext {b}");
        }
    }
    assert_eq!(parse_rows(&secure).len(), 5);
    // Two inputs of different row counts, or rows that do not fill whole batches.
    let model2 = reference("2inputs.pb");
    let two = temp_file(&dir, "two.npy", &f32_npy("(2, 16)", &rows[..2].concat()));
    fails(
        &["--plaintext", s(&model2), "--input", &format!("Placeholder={}", s(&batch)), s(&two)],
        2,
        &["cannot be cut into the same batches"],
    );
}

/// Issue 16: `tfe-run inspct x.pb` said "cannot read model `inspct`"; an unknown
/// `--input NAME` did not say which names there are.
#[test]
fn a_mistyped_command_gets_did_you_mean_and_an_unknown_input_lists_the_placeholders() {
    let stderr = fails(&["inspct", "testdata/mnist_model.pb"], 2, &["did you mean `tfe-run inspect`?"]);
    golden("error_mistyped_command.txt", &stderr);
    let stderr =
        fails(&["testdata/mnist_model.pb", "--input", "nope=testdata/mnist_input.npy"], 2, &["no placeholder `nope`"]);
    golden("error_unknown_input.txt", &stderr);
    // A model file whose name is close to a command is still a model.
    fails(&["nonexistent_model.pb", "x.npy"], 2, &["nonexistent_model.pb"]);
}

/// A model whose placeholder fixes the batch at 8 runs a file of 10 rows as a
/// batch and a filled-up batch (its rows are independent), in plaintext and
/// under Pond, as TensorFlow computed them; a model that combines the rows of
/// its batch is run only in whole batches, never filled up.
#[test]
fn a_fixed_batch_model_fills_up_its_last_batch_only_when_its_rows_are_independent() {
    let (model, ten) = ("testdata/rows/rows_fixed8_mlp.pb", "testdata/rows/mnist10.npy");
    let expected = load(&testdata("rows/rows_fixed8_mlp.expected.npy"));
    for mode in [&["--plaintext"][..], &[]] {
        let (code, stdout, stderr) = run(&[mode, &[model, ten]].concat());
        assert_eq!(code, 0, "{mode:?}: {stderr}");
        let rows = parse_rows(&stdout);
        assert_eq!(rows.len(), 10, "{stdout}");
        for (k, (class, values)) in rows.iter().enumerate() {
            let want = expected.index_axis(ndarray::Axis(0), k);
            assert_eq!(*class as usize, argmax(want.iter()), "{mode:?} row {k}");
            for (v, e) in values.iter().zip(want.iter()) {
                assert!((v - e).abs() <= 1e-2 * e.abs().max(1.0), "{mode:?} row {k}: {v} vs TensorFlow {e}");
            }
        }
    }
    // The analysis on the real graphs: the centred model (a dynamic batch,
    // refused by `predict` in remote.rs) takes a mean over the batch.
    let plan = tfe_run::frontend::load(Path::new("testdata/rows/rows_centred_mlp.pb"), None, |_| {
        Ok([("input".to_string(), tfe_run::frontend::Feed { shape: vec![8, 784], source: "rows".into() })].into())
    })
    .unwrap()
    .into_plan()
    .unwrap();
    let why = tfe_run::plan::independent(&plan, 8).unwrap_err();
    assert!(why.contains("Mean `Mean` combines the rows of the batch"), "{why}");
    let plan = tfe_run::frontend::load(Path::new(model), None, |_| {
        Ok([("input".to_string(), tfe_run::frontend::Feed { shape: vec![8, 784], source: "rows".into() })].into())
    })
    .unwrap()
    .into_plan()
    .unwrap();
    assert_eq!(tfe_run::plan::independent(&plan, 8), Ok(()));
}

// ---- conventions (issue 16) ----

#[test]
fn version_names_the_commit_it_was_built_from() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let prefix = concat!("tfe-run ", env!("CARGO_PKG_VERSION"), " (commit ");
    let commit = stdout.trim().strip_prefix(prefix).and_then(|r| r.strip_suffix(')'));
    let commit = commit.unwrap_or_else(|| panic!("--version should be `{prefix}...)`: {stdout}"));
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match git {
        Ok(out) if out.status.success() => {
            let head = String::from_utf8(out.stdout).unwrap();
            assert_eq!(commit.trim_end_matches("-dirty"), head.trim(), "--version names HEAD");
        }
        // A tarball, or no git: the stamp says so instead of failing the build.
        _ => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn the_parser_has_no_clashing_flags_and_short_flags_work() {
    use clap::CommandFactory;
    // Panics on two arguments with one short flag, in any subcommand.
    tfe_run::cli::Cli::command().debug_assert();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let (code, stdout, stderr) =
        run(&["--plaintext", "-f", "json", "-o", s(&out), "testdata/mnist_model.pb", "testdata/mnist_input.npy"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("-f json prints JSON");
    assert_eq!(doc["rows"][0]["class"], 7);
    assert_eq!(load(&out).shape(), &[1, 10], "-o writes the output tensor");
    let (code, stdout, _) = run(&["inspect", "-f", "json", "testdata/mlp.pb"]);
    assert_eq!(code, 0);
    serde_json::from_str::<serde_json::Value>(&stdout).expect("inspect -f json prints JSON");
}

#[test]
fn json_mode_is_a_key_and_jsonl_prints_one_object_per_row() {
    let args = |format: &'static str, plaintext: bool| {
        let mut a = vec!["-f", format, "testdata/mlp.pb", "testdata/mnist_flat100.npy"];
        if plaintext {
            a.insert(0, "--plaintext");
        }
        a
    };
    let (code, stdout, stderr) = run(&args("json", false));
    assert_eq!(code, 0, "{stderr}");
    let secure: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(secure["mode"], "secure", "a key, not the text output's phrase");
    let (code, stdout, _) = run(&args("json", true));
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["mode"], "plaintext");
    let (code, stdout, _) = run(&args("jsonl", true));
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(lines.len(), 100, "one line per input row");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &doc["rows"][i], "line {i} is row {i} of --format json");
    }
}

#[test]
fn completions_and_the_man_page_are_generated_from_the_parser() {
    use clap::CommandFactory;
    let command = tfe_run::cli::Cli::command();
    let subcommands: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    assert!(subcommands.contains(&"inspect") && subcommands.contains(&"completions"), "{subcommands:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, stdout, stderr) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for sub in &subcommands {
            assert!(stdout.contains(sub), "{shell} completions should offer `{sub}`");
        }
        assert!(stdout.contains("max-memory"), "{shell} completions should offer the flags");
    }
    let (code, stdout, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(".ie") && stdout.contains(".TH tfe-run 1"), "roff: {}", &stdout[..200]);
    for sub in &subcommands {
        assert!(stdout.contains(&format!("tfe\\-run\\-{}", sub.replace('-', "\\-"))), "man page lists `{sub}`");
    }
    fails(&["completions", "tcsh"], 2, &["tcsh"]);
}

#[test]
fn inspect_help_describes_its_own_format() {
    let (code, stdout, _) = run(&["inspect", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("-f, --format <FORMAT>") && stdout.contains("How to print the report"), "{stdout}");
    assert!(stdout.contains("text: For people: inputs, output, one line per op type"), "{stdout}");
    assert!(!stdout.contains("jsonl") && !stdout.contains("One line per input row"), "not the prediction's: {stdout}");
}

#[test]
fn quiet_silences_information_lines_but_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(&dir);
    let certs = dir.path().join("certs");
    let (code, _, stderr) = run(&["certs", "--config", &config, "-o", s(&certs)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.starts_with("wrote "), "{stderr}");
    // Before the subcommand as after it.
    for args in [["-q", "certs"], ["certs", "--quiet"]] {
        let (code, stdout, stderr) = run(&[&args[..], &["--config", &config, "-o", s(&certs), "--force"]].concat());
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.is_empty() && stderr.is_empty(), "{args:?} prints nothing: {stderr}");
    }
    fails(&["-q", "inspect", "nonexistent.pb"], 2, &["error: cannot read model `nonexistent.pb`"]);
    fails(&["-q", "inspct", "x.pb"], 2, &["did you mean `tfe-run inspect`?"]);
    let (code, stdout, stderr) = run(&["-q", "--plaintext", "testdata/mnist_model.pb", "testdata/mnist_input.npy"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.contains("class 7"), "the prediction is printed: {stdout}");
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let error = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = tfe_run();
        cmd.args(args).arg("nonexistent.pb").arg("x.npy").env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    let red = "\u{1b}[1m\u{1b}[31merror:\u{1b}[0m cannot read model";
    assert!(error(&["--color", "always"], &[]).starts_with(red));
    assert!(error(&["--color=always"], &[("NO_COLOR", "1")]).starts_with(red), "the flag wins over NO_COLOR");
    assert!(error(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]).starts_with("error: cannot read model"));
    // auto: stderr is a pipe here, so no color, unless forced, and never with NO_COLOR.
    assert!(error(&[], &[]).starts_with("error: cannot read model"));
    assert!(error(&[], &[("CLICOLOR_FORCE", "1")]).starts_with(red));
    assert!(error(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).starts_with("error: cannot read model"));
    // clap's own usage errors follow the same choice.
    let (code, _, stderr) = run(&["--color", "always", "--colr"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\u{1b}["), "{stderr}");
    fails(&["--color", "sometimes", "x.pb"], 2, &["sometimes", "auto", "always", "never"]);
}

// ---- errors that say what to do (issue 16) ----

/// A shape error said what was expected, not how to get there from the array in hand.
#[test]
fn a_shape_error_says_how_to_fix_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let image: Vec<f32> = (0..784).map(|i| (i % 255) as f32 / 255.0).collect();
    let cases = [
        ("nobatch.npy", "(28, 28, 1)", "np.expand_dims(x, 0)"),
        ("flat.npy", "(1, 784)", "x.reshape(-1, 28, 28, 1)"),
        ("nchw.npy", "(1, 1, 28, 28)", "np.transpose(x, (0, 2, 3, 1))"),
    ];
    let mut messages = String::new();
    for (name, shape, fix) in cases {
        let path = temp_file(&dir, name, &f32_npy(shape, &image));
        for mode in [&["--plaintext"][..], &[]] {
            let args = [mode, &["testdata/mnist_model.pb", s(&path)]].concat();
            let stderr = fails(&args, 2, &[name, "placeholder `input` expects [?, 28, 28, 1]", fix]);
            if mode.is_empty() {
                messages.push_str(&stderr.replace(dir.path().to_str().unwrap(), "DIR"));
            }
        }
    }
    golden("error_shape_fixes.txt", &messages);
    // A shape with no one obvious fix still gets the plain message.
    let odd = temp_file(&dir, "odd.npy", &f32_npy("(1, 100)", &image[..100]));
    let stderr = fails(&["testdata/mnist_model.pb", s(&odd)], 2, &["has shape [1, 100]"]);
    assert!(!stderr.contains("np."), "{stderr}");
}

/// uint8 images fed to a float model ran silently on 0-255 pixels.
#[test]
fn integer_images_fed_to_a_float_placeholder_get_a_warning_that_they_are_not_scaled() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..784).map(|i| (i % 256) as u8).collect();
    let u8_path = temp_file(&dir, "u8.npy", &raw_npy("|u1", "(1, 28, 28, 1)", &pixels));
    let (code, stdout, stderr) = run(&["--plaintext", "testdata/mnist_model.pb", s(&u8_path)]);
    assert_eq!(code, 0, "a warning, not a refusal: {stderr}");
    assert!(stdout.starts_with("# mode: plaintext"), "{stdout}");
    golden("warning_unscaled_uint8.txt", &stderr.replace(dir.path().to_str().unwrap(), "DIR"));
    // Still a warning under --quiet; none for floats, or for 0/1 integers.
    let (_, _, quiet) = run(&["-q", "--plaintext", "testdata/mnist_model.pb", s(&u8_path)]);
    assert_eq!(quiet, stderr);
    let bits: Vec<u8> = (0..784).map(|i| (i % 2) as u8).collect();
    let bits = temp_file(&dir, "bits.npy", &raw_npy("|u1", "(1, 28, 28, 1)", &bits));
    for quiet_input in [s(&bits), "testdata/mnist_input.npy"] {
        let (code, _, stderr) = run(&["--plaintext", "testdata/mnist_model.pb", quiet_input]);
        assert_eq!((code, stderr.as_str()), (0, ""), "{quiet_input}");
    }
}

/// `serve` on a busy port said only "cannot listen on ...: Address in use".
#[test]
fn serve_on_a_busy_port_names_the_port_and_suggests_listen() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let config = temp_file(
        &dir,
        "c.json",
        format!(r#"{{"server0": "127.0.0.1:{port}", "server1": "127.0.0.1:2", "server2": "127.0.0.1:3"}}"#).as_bytes(),
    );
    let (code, _, stderr) = run(&["serve", "--config", s(&config), "--party", "server0", "--insecure"]);
    assert_eq!(code, 1, "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(error.contains(&format!("port {port} is in use")) && error.contains("--listen HOST:PORT"), "{error}");
    let error = error.replace(&port.to_string(), "PORT").replace(dir.path().to_str().unwrap(), "DIR");
    golden("error_serve_busy_port.txt", &format!("{error}\n"));
}

/// A tf-encrypted config names the crypto producer `server2`; a config without
/// it said "no address for crypto-producer" without the name to add.
#[test]
fn a_cluster_config_without_a_crypto_producer_mentions_server2() {
    let dir = tempfile::tempdir().unwrap();
    let json = temp_file(&dir, "c.json", br#"{"server0": "127.0.0.1:1", "server1": "127.0.0.1:2"}"#);
    let toml = temp_file(&dir, "c.toml", b"[parties]\nserver0 = \"127.0.0.1:1\"\nserver1 = \"127.0.0.1:2\"\n");
    let out = dir.path().join("certs");
    let mut messages = String::new();
    for config in [&json, &toml] {
        let stderr =
            fails(&["certs", "--config", s(config), "-o", s(&out)], 2, &["no address for crypto-producer", "server2"]);
        messages.push_str(&stderr.replace(dir.path().to_str().unwrap(), "DIR"));
    }
    golden("error_config_without_crypto_producer.txt", &messages);
}

/// testdata's 100 MNIST images (flat) scaled by 40, written to `dir`: inside
/// the input range at 28 fractional bits (|x| < 64), but not the MLP's
/// activations on them.
fn scaled_mnist(dir: &tempfile::TempDir) -> PathBuf {
    let scaled = dir.path().join("scaled.npy");
    let images = tfe_run::npy::read_input(&testdata("mnist_flat100.npy")).unwrap();
    tfe_run::npy::write_f32(&scaled, &images.mapv(|v| 40.0 * v)).unwrap();
    scaled
}

/// A plaintext run whose values leave the representable range says so, naming
/// the node: at 28 fractional bits the range is |x| < 2^6 = 64, and MNIST
/// images scaled by 40 pass the input check there but drive the MLP's hidden
/// activations past it (a secure run of that input would truncate and compare
/// them wrongly). The images as they are stay inside, and so does everything
/// at the default 16 bits (|x| < 2^30).
#[test]
fn a_plaintext_run_outside_the_secure_range_warns_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let scaled = scaled_mnist(&dir);
    let model = testdata("mlp.pb");
    let (model, scaled) = (model.to_str().unwrap(), scaled.to_str().unwrap());
    let (code, _, err) = run(&[model, scaled, "--plaintext", "--frac-bits", "28"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("first node to leave the secure range") && err.contains("28 fractional bits"), "{err}");
    assert!(err.contains("`sequential_1/dense_1/MatMul`"), "names the first node: {err}");
    let original = testdata("mnist_flat100.npy");
    for args in [vec![model, original.to_str().unwrap(), "--frac-bits", "28"], vec![model, scaled]] {
        let (code, _, err) = run(&[&args[..], &["--plaintext"]].concat());
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("secure range"), "{args:?}: {err}");
    }
}

/// Regression: the same scaled images at 28 fractional bits ran under Pond,
/// printed logits of garbage (class and values changing from run to run) and
/// exited 0. The secure output is now checked against the range at the client,
/// which owns it: one outside it can only come from a value that left the
/// range inside the computation, so it is refused (exit 2), and nothing is
/// printed. At 16 bits the same input runs.
#[test]
fn a_secure_output_outside_the_range_is_refused_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let scaled = scaled_mnist(&dir);
    let model = testdata("mlp.pb");
    let (model, scaled) = (model.to_str().unwrap(), scaled.to_str().unwrap());
    let (code, out, err) = run(&[model, scaled, "--frac-bits", "28"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "nothing printed: {out}");
    assert!(err.contains("left the fixed-point range") && err.contains("the secure output of `Identity`"), "{err}");
    let (code, out, err) = run(&[model, scaled]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("row 99: class"), "{out}");
}
