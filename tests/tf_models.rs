//! Every model exported by real TensorFlow, run in plaintext and compared with the
//! outputs TensorFlow computed (testdata/manifest.json, made by testdata/generate.py
//! with the versions pinned in testdata/requirements.txt), and tf-encrypted's own
//! reference models.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;

/// The plaintext reference must match TensorFlow to 1e-4·max(1, |x|).
const TOLERANCE: f32 = 1e-4;

#[test]
fn every_testdata_model_matches_tensorflow() {
    let manifest = manifest();
    assert!(manifest.models.len() >= 20, "the manifest lists {} models", manifest.models.len());
    for entry in &manifest.models {
        let feeds: BTreeMap<String, PathBuf> = entry.inputs.iter().map(|(k, v)| (k.clone(), testdata(v))).collect();
        // No --output-node: the sink must be found as TensorFlow's export left it.
        let (plan, out) = run_plaintext(&testdata(&entry.model), None, &feeds);
        assert_eq!(plan.output_node, entry.output_node, "{}: output node", entry.name);
        let expected = load(&testdata(&entry.expected));
        let worst = assert_matches(&entry.name, &out, &expected, TOLERANCE);
        eprintln!("{:<36} max relative error {worst:.2e}", entry.name);
    }
}

#[test]
fn mnist_models_classify_most_test_images_right() {
    // A sanity check on the test data itself: the models learned something.
    let labels = load(&testdata("mnist_labels100.npy"));
    for name in ["mnist_model", "mlp", "maxpool_cnn", "keras3_bn", "tfkeras_bn", "tf1_mlp"] {
        let entry = manifest().models.into_iter().find(|e| e.name == name).expect(name);
        let feeds = entry.inputs.iter().map(|(k, v)| (k.clone(), testdata(v))).collect();
        let (_, out) = run_plaintext(&testdata(&entry.model), None, &feeds);
        let correct =
            out.outer_iter().zip(labels.iter()).filter(|(row, label)| argmax(row.iter()) == **label as usize).count();
        assert!(correct >= 85, "{name}: {correct}/100 right");
    }
}

#[test]
fn tf_encrypted_mnist_model_prints_seven() {
    if !have_reference("tf_encrypted_mnist_model_prints_seven") {
        return;
    }
    let feeds = BTreeMap::from([("Placeholder".to_string(), reference("mnist_input.npy"))]);
    let (plan, out) = run_plaintext(&reference("mnist_model.pb"), None, &feeds);
    assert_eq!(plan.output_node, "fc2/add");
    assert_matches("tfe mnist_model", &out, &load(&reference("mnist_model.expected.npy")), TOLERANCE);
    assert_eq!(argmax(out.iter()), 7);
}

#[test]
fn tf_encrypted_2lfc_accepts_a_float64_input() {
    if !have_reference("tf_encrypted_2lfc_accepts_a_float64_input") {
        return;
    }
    let feeds = BTreeMap::from([("Placeholder".to_string(), reference("2lfc_input_example.npy"))]);
    let (plan, out) = run_plaintext(&reference("2lfc.pb"), None, &feeds);
    assert_eq!(plan.output_node, "MatMul_2");
    assert_matches("tfe 2lfc", &out, &load(&reference("2lfc.expected.npy")), TOLERANCE);
}

#[test]
fn tf_encrypted_2inputs_feeds_both_placeholders() {
    if !have_reference("tf_encrypted_2inputs_feeds_both_placeholders") {
        return;
    }
    let x = reference("2inputs_input_example.npy");
    let feeds = BTreeMap::from([("Placeholder".to_string(), x.clone()), ("Placeholder_1".to_string(), x)]);
    let (plan, out) = run_plaintext(&reference("2inputs.pb"), None, &feeds);
    assert_eq!(plan.output_node, "Sigmoid");
    assert_matches("tfe 2inputs", &out, &load(&reference("2inputs.expected.npy")), TOLERANCE);
}

#[test]
fn weights_are_private_to_the_model_owner_and_inputs_to_the_client() {
    use tfe_run::plan::Owner;
    let entry = manifest().models.into_iter().find(|e| e.name == "keras3_bn").unwrap();
    let feeds = entry.inputs.iter().map(|(k, v)| (k.clone(), testdata(v))).collect();
    let (plan, _) = run_plaintext(&testdata(&entry.model), None, &feeds);
    assert_eq!(plan.inputs.len(), 1);
    assert_eq!(plan.values[plan.inputs[0]].owner(), Owner::Client);
    assert_eq!(plan.values[plan.inputs[0]].shape, vec![100, 28, 28, 1], "the batch is fixed from the input file");
    // Keras 3 writes BatchNormalization as Rsqrt/Mul/Sub on its statistics: folded
    // into weights, so no Rsqrt (or Shape, StridedSlice, Pack) is left to run.
    for step in &plan.steps {
        assert!(
            !matches!(step.op_type.as_str(), "Rsqrt" | "Shape" | "StridedSlice" | "Pack"),
            "{} left in the plan",
            step.op_type
        );
    }
    assert!(plan.weights().count() >= 6);
    for (_, value) in plan.weights() {
        assert_eq!(value.owner(), Owner::ModelOwner);
    }
    for step in &plan.steps {
        assert_eq!(plan.values[step.output].owner(), Owner::Shared);
    }
}

/// A Mul by a per-channel weight after Conv2D, DepthwiseConv2dNative or MatMul
/// (BatchNormalization's scale in a frozen Keras graph) is folded into the
/// filter at import, and Adds of weights in a row into one: a private product
/// and two rounds less per layer. What must not fold (tests/fold_refused: a
/// value read twice, a spatial or rank-growing scale) stays; every one of these
/// models matches TensorFlow in `every_testdata_model_matches_tensorflow` and
/// under Pond.
#[test]
fn a_mul_by_a_per_channel_weight_after_a_linear_op_is_folded_into_its_filter() {
    let entries = manifest().models;
    let plan_of = |name: &str| {
        let entry = entries.iter().find(|e| e.name == name).unwrap();
        let feeds = entry.inputs.iter().map(|(k, v)| (k.clone(), testdata(v))).collect();
        run_plaintext(&testdata(&entry.model), None, &feeds).0
    };
    let count = |plan: &tfe_run::plan::Plan, op: &str| plan.steps.iter().filter(|s| s.op.name() == op).count();
    let keras = plan_of("ops_fold_keras_bn");
    // Conv2D+bias, DepthwiseConv2D and Dense+bias, each then BatchNormalization:
    // no Mul, and one Add after each linear op (bias and offset summed).
    assert_eq!((count(&keras, "Mul"), count(&keras, "Add")), (0, 4), "{}", keras.describe());
    // The one Mul left scales a Relu's output, not a linear op's.
    let cases = plan_of("ops_fold_cases");
    assert_eq!((count(&cases, "Mul"), count(&cases, "Add")), (1, 1), "{}", cases.describe());
    let refused = plan_of("ops_fold_refused");
    assert_eq!(count(&refused, "Mul"), 4, "{}", refused.describe());
    // The zoo's rounds per prediction in its steps (server 0; `--stats` counts
    // two more, sharing the input and opening the output) at batch 1 (a larger
    // batch may run a step in more chunks): MobileNetV2 491 before, ResNet-20
    // 237, DenseNet121 580 (its pre-activation BatchNormalizations follow a
    // Concat or a MaxPool and stay products). DenseNet121's 3×3 MaxPool took 4
    // rounds more (538) before a bitwise maximum was one ReLU per level.
    let dir = tempfile::tempdir().unwrap();
    for (name, rounds) in [("mobilenet_v2", 387), ("zoo_resnet20", 195), ("zoo_densenet121", 534)] {
        let entry = entries.iter().find(|e| e.name == name).unwrap();
        let (key, file) = entry.inputs.iter().next().unwrap();
        let first = load(&testdata(file)).slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
        let row = dir.path().join(format!("{name}.npy"));
        tfe_run::npy::write_f32(&row, &first).unwrap();
        let plan = run_plaintext(&testdata(&entry.model), None, &BTreeMap::from([(key.clone(), row)])).0;
        let program = tfe_run::lower::lower(&plan, Default::default()).unwrap();
        assert_eq!(program.planned().iter().map(|c| c.rounds).sum::<u64>(), rounds, "{name}");
    }
}
