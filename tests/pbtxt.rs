//! Text GraphDefs (`.pbtxt`): testdata/pbtxt/ holds TensorFlow's own text form
//! (`tf.io.write_graph(..., as_text=True)`) of committed binary models, with what
//! TensorFlow computed from the text (written by testdata/gen_pbtxt.py, pinned
//! versions in testdata/requirements.txt). A text model plans and predicts as its
//! binary model does, in plaintext and under Pond, and matches TensorFlow; bad
//! text is refused with its line and column.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/delay.rs"]
mod delay;

use std::collections::BTreeMap;

use cluster::Cluster;
use common::*;
use tfe_run::runtime::{self, SecureConfig};

/// (text model, its binary model, input).
const MODELS: &[(&str, &str, &str)] = &[
    ("mnist_model", "mnist_model.pb", "mnist_batch100.npy"),
    ("tfkeras_bn", "tfkeras_bn.pb", "mnist_batch100.npy"),
    ("relu6_keras_conv_bn", "ops/relu6_keras_conv_bn.pb", "ops/relu6_keras_conv_bn.input.npy"),
    ("depthwise_keras", "ops/depthwise_keras.pb", "ops/depthwise_keras.input.npy"),
    ("seq_transformer_block", "seq/seq_transformer_block.pb", "seq/transformer20.npy"),
];

#[test]
fn text_graphdefs_predict_as_their_binary_models_and_tensorflow_in_plaintext_and_under_pond() {
    for &(name, model, input) in MODELS {
        let text = testdata(&format!("pbtxt/{name}.pbtxt"));
        let feeds = BTreeMap::new();
        let from_text = tfe_run::cli::prepare(&text, None, Some(&testdata(input)), &feeds).unwrap();
        let from_binary = tfe_run::cli::prepare(&testdata(model), None, Some(&testdata(input)), &feeds).unwrap();
        assert_eq!(format!("{:?}", from_text.plan), format!("{:?}", from_binary.plan), "{name}: the same plan");

        let plain = tfe_run::plaintext::run(&from_text.plan, &from_text.inputs).unwrap().to_float();
        let plain_binary = tfe_run::plaintext::run(&from_binary.plan, &from_binary.inputs).unwrap().to_float();
        assert_eq!(plain, plain_binary, "{name}: plaintext of the text and the binary model");
        let expected = load(&testdata(&format!("pbtxt/{name}.expected.npy")));
        let plain_err = assert_matches(&format!("{name} plaintext"), &plain, &expected, 1e-3);

        let outcome = runtime::predict(&from_text.plan, &from_text.inputs, &SecureConfig::default()).unwrap();
        let secure = outcome.outputs[0].to_float();
        let secure_err = assert_matches(&format!("{name} secure"), &secure, &expected, 1e-2);
        assert_matches(&format!("{name} secure vs plaintext"), &secure, &plain, 1e-2);
        eprintln!("{name:<24} max error vs TensorFlow: plaintext {plain_err:.1e}, secure {secure_err:.1e}");
    }
}

/// testdata/formats/dense.pbtxt, which tfe-run refused (exit 4, "does not read
/// yet") before text GraphDefs were read, now runs from the CLI and `inspect`s.
#[test]
fn the_text_graphdef_once_refused_runs_from_the_cli() {
    let model = testdata("formats/dense.pbtxt");
    let input = testdata("formats/input.npy");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.npy");
    let args = [model.to_str().unwrap(), input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_matches("dense.pbtxt", &load(&out), &load(&testdata("formats/expected.npy")), 1e-2);
    let (code, stdout, stderr) = run(&["inspect", model.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("MatMul") && stdout.contains("supported"), "{stdout}");
}

/// Malformed text exits 3 with the file, the line and the column at fault.
#[test]
fn malformed_text_is_refused_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(testdata("pbtxt/depthwise_keras.pbtxt")).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        // A field NodeDef does not have, on line 4.
        (
            "unknown_field.pbtxt",
            good.replacen("  op: \"Placeholder\"", "  op: \"Placeholder\"\n  colour: \"red\"", 1),
            vec!["line 4, column 3", "field 'colour' not found for message 'tensorflow.NodeDef'"],
        ),
        // Cut in the middle.
        ("truncated.pbtxt", good[..good[..good.len() / 2].rfind('\n').unwrap()].to_string(), vec!["end of input"]),
        // A dtype TensorFlow does not have.
        (
            "bad_enum.pbtxt",
            "node {\n  name: \"x\"\n  op: \"Placeholder\"\n  attr {\n    key: \"dtype\"\n    value {\n      type: DT_FLOAT99\n    }\n  }\n}\n".into(),
            vec!["line 7, column 13", "DT_FLOAT99"],
        ),
    ];
    for (file, text, needles) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        for args in [
            vec![path.to_str().unwrap(), "testdata/ops/depthwise_keras.input.npy"],
            vec!["inspect", path.to_str().unwrap()],
        ] {
            let (code, stdout, stderr) = run(&args);
            assert_eq!(code, 3, "{file} {args:?}: {stderr}");
            assert!(stdout.is_empty(), "{stdout}");
            assert!(stderr.contains(file), "{file}: {stderr}");
            for n in &needles {
                assert!(stderr.contains(n), "{file}: {n:?} not in {stderr}");
            }
        }
    }
}

/// A text file over the size bound is refused before it is read (exit 4, with
/// the command that converts it); a huge repeated field within the bound is
/// refused by the constant's shape, not by exhausting memory.
#[test]
fn a_huge_text_graphdef_does_not_exhaust_memory() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.pbtxt");
    let file = std::fs::File::create(&huge).unwrap();
    // Sparse: no disk used; 1 GiB of zeros, read no further than the bound.
    file.set_len(1 << 30).unwrap();
    let start = std::time::Instant::now();
    let (code, _, stderr) = run(&["inspect", huge.to_str().unwrap()]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("is a text GraphDef of 1073741824 bytes, more than the 16 MiB"), "{stderr}");
    assert!(stderr.contains("text_format.Parse(open("), "{stderr}");
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());

    // 4 million values (8 MB of text) for a constant of 2 elements.
    let many = dir.path().join("many.pbtxt");
    let values = "1,".repeat(4_000_000);
    let text = format!(
        "node {{ name: \"x\" op: \"Placeholder\" attr {{ key: \"dtype\" value {{ type: DT_FLOAT }} }} }}\n\
         node {{ name: \"c\" op: \"Const\" attr {{ key: \"dtype\" value {{ type: DT_FLOAT }} }} \
         attr {{ key: \"value\" value {{ tensor {{ dtype: DT_FLOAT tensor_shape {{ dim {{ size: 2 }} }} \
         float_val: [{values}1] }} }} }} }}\n\
         node {{ name: \"y\" op: \"Add\" input: \"x\" input: \"c\" attr {{ key: \"T\" value {{ type: DT_FLOAT }} }} }}\n"
    );
    std::fs::write(&many, text).unwrap();
    let (code, _, stderr) = run(&["--plaintext", many.to_str().unwrap(), "testdata/formats/input.npy"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("4000001 values for a shape of 2 elements"), "{stderr}");
}

/// `deploy` of a `.pbtxt` to remote parties: the client's predictions match
/// TensorFlow's.
#[test]
fn deploy_of_a_text_graphdef_on_remote_parties_matches_tensorflow() {
    let cluster = Cluster::start(false, 10.0);
    cluster.deploy("text", 32, &testdata("pbtxt/tfkeras_bn.pbtxt"));
    let (output, _) = cluster.predict_to_file("text", &testdata("mnist_batch100.npy"));
    let worst =
        assert_matches("deployed tfkeras_bn.pbtxt", &output, &load(&testdata("pbtxt/tfkeras_bn.expected.npy")), 1e-2);
    eprintln!("deployed tfkeras_bn.pbtxt: max error vs TensorFlow {worst:.1e}");
}
