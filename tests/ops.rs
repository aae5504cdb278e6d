//! The ops defined whole in their own module (`src/ops/`: Relu6, LeakyRelu,
//! Maximum, Minimum, Exp, Reciprocal, Rsqrt, Softmax inside a graph), on hand-made one-step plans whose inputs sit on and around
//! every boundary the op treats differently: under Pond against the plaintext
//! meaning, with measured = planned traffic. Against real TensorFlow they run in
//! `tf_models.rs` and `secure_models.rs` (testdata/ops/relu6*, leaky_relu*,
//! maximum*, minimum*, made by testdata/generate.py).

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use tfe_run::plan::{Op, Plan, Source, Step, Value, ValueType};
use tfe_run::runtime::{self, SecureConfig};
use tfe_run::transport::Party;

/// A plan of one step over client inputs of these shapes.
fn one_step(op: Op, inputs: &[&[usize]]) -> Plan {
    let mut values: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, shape)| Value {
            name: format!("x{i}"),
            shape: shape.to_vec(),
            vtype: ValueType::Float,
            source: Source::Input { placeholder: format!("x{i}") },
        })
        .collect();
    let shape = op.output_shape(inputs).unwrap();
    let n = values.len();
    values.push(Value { name: "y".into(), shape, vtype: ValueType::Float, source: Source::Step(0) });
    Plan {
        values,
        steps: vec![Step { node: "y".into(), op_type: op.name().into(), op, inputs: (0..n).collect(), output: n }],
        inputs: (0..n).collect(),
        output: n,
        output_node: "y".into(),
        weight_values: BTreeMap::new(),
    }
}

fn array(shape: &[usize], values: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()
}

fn feeds(inputs: &[ArrayD<f32>]) -> BTreeMap<String, ArrayD<f32>> {
    inputs.iter().enumerate().map(|(i, x)| (format!("x{i}"), x.clone())).collect()
}

/// Run `plan` under Pond, after checking that every server sent the bytes and
/// rounds the units plan.
fn secure(plan: &Plan, inputs: &[ArrayD<f32>]) -> ArrayD<f32> {
    let outcome = runtime::predict(plan, &feeds(inputs), &SecureConfig::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let planned = runtime::lower(plan, Default::default()).unwrap().planned();
    for server in [Party::Server0, Party::Server1] {
        for (k, p) in planned.iter().enumerate() {
            let m = outcome.stats.parties[&server].per_layer.get(&k).cloned().unwrap_or_default();
            assert_eq!((m.bytes_sent, m.rounds), (p.bytes, p.rounds), "{} step {k}", server.name());
        }
    }
    outcome.outputs[0].to_float()
}

/// Run `plan` under Pond and in the clear; the largest difference, after
/// checking that every server sent the bytes and rounds the unit plans.
fn secure_vs_plaintext(plan: &Plan, inputs: &[ArrayD<f32>]) -> f32 {
    let (secure, clear) = secure_and_plaintext(plan, inputs);
    secure.iter().zip(clear.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// The same, each difference relative to max(1, |plaintext|) (an exact linear
/// tail is exact up to the fixed point's relative rounding).
fn secure_vs_plaintext_relative(plan: &Plan, inputs: &[ArrayD<f32>]) -> f32 {
    let (secure, clear) = secure_and_plaintext(plan, inputs);
    secure.iter().zip(clear.iter()).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max)
}

/// For an element-wise plan over one input x: the largest |secure − plaintext|
/// relative to max(1, |x|). A product x·y of fixed-point values is off by
/// |x| units of y's last place, so that is what a composite activation's tails
/// (x times a saturated curve) can promise.
fn secure_vs_plaintext_per_input(plan: &Plan, x: &[f32]) -> f32 {
    let planned = runtime::lower(plan, Default::default()).unwrap().planned();
    let (rounds, bytes): (u64, u64) = planned.iter().fold((0, 0), |(r, b), p| (r + p.rounds, b + p.bytes));
    eprintln!(
        "  {} steps: {rounds} rounds, {:.1} bytes per element per server",
        plan.steps.len(),
        bytes as f64 / x.len() as f64
    );
    let (secure, clear) = secure_and_plaintext(plan, &[array(&[x.len()], x.to_vec())]);
    secure.iter().zip(clear.iter()).zip(x).map(|((a, b), v)| (a - b).abs() / v.abs().max(1.0)).fold(0.0, f32::max)
}

/// `plan`'s output under Pond (traffic checked) and in the clear.
fn secure_and_plaintext(plan: &Plan, inputs: &[ArrayD<f32>]) -> (ArrayD<f32>, ArrayD<f32>) {
    let clear = tfe_run::plaintext::run(plan, &feeds(inputs)).unwrap().to_float();
    let secure = secure(plan, inputs);
    assert_eq!(secure.shape(), clear.shape());
    (secure, clear)
}

/// A plan of steps over client inputs, each step given as (op, input ids): the
/// values are the inputs, then each step's output in order.
fn chain(inputs: &[&[usize]], steps: &[(Op, Vec<usize>)]) -> Plan {
    let mut values: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, shape)| Value {
            name: format!("x{i}"),
            shape: shape.to_vec(),
            vtype: ValueType::Float,
            source: Source::Input { placeholder: format!("x{i}") },
        })
        .collect();
    let mut plan_steps = Vec::new();
    for (k, (op, ins)) in steps.iter().enumerate() {
        let shapes: Vec<&[usize]> = ins.iter().map(|&v| values[v].shape.as_slice()).collect();
        let shape = op.output_shape(&shapes).unwrap();
        values.push(Value { name: format!("s{k}"), shape, vtype: ValueType::Float, source: Source::Step(k) });
        let output = values.len() - 1;
        plan_steps.push(Step {
            node: format!("s{k}"),
            op_type: op.name().into(),
            op: op.clone(),
            inputs: ins.clone(),
            output,
        });
    }
    Plan {
        output: values.len() - 1,
        values,
        steps: plan_steps,
        inputs: (0..inputs.len()).collect(),
        output_node: format!("s{}", steps.len() - 1),
        weight_values: BTreeMap::new(),
    }
}

/// The value the servers compute on: the input rounded to 16 fractional bits.
fn encoded(x: f32) -> f64 {
    (f64::from(x) * 65536.0).round() / 65536.0
}

const ULP: f64 = 1.0 / 65536.0;

/// Points of a log grid: 2^(t/16) for t in `from..=to`.
fn log_grid(from: i32, to: i32) -> Vec<f32> {
    (from..=to).map(|t| 2f64.powf(f64::from(t) / 16.0) as f32).collect()
}

/// The largest relative and absolute errors of `out` against `f` of the encoded
/// inputs (relative where |f| ≥ 1: below, the output's own rounding dominates), and the largest error over the bound `rel·|f| + abs`.
fn errors(x: &[f32], out: &ArrayD<f32>, f: impl Fn(f64) -> f64, rel: f64, abs: f64) -> (f64, f64, f64) {
    let (mut worst_rel, mut worst_abs, mut over) = (0.0f64, 0.0f64, f64::NEG_INFINITY);
    for (&x, &y) in x.iter().zip(out.iter()) {
        let want = f(encoded(x));
        let err = (f64::from(y) - want).abs();
        worst_abs = worst_abs.max(err);
        if want.abs() >= 1.0 {
            worst_rel = worst_rel.max(err / want.abs());
        }
        over = over.max(err - (rel * want.abs() + abs));
    }
    (worst_rel, worst_abs, over)
}

/// The reciprocal on a log grid of [2^-8, 2^16) (385 points), then its tails:
/// below 2^-8 (0 and negative values included) exactly 256, from 2^16 on 0, up
/// to a unit in the last place.
#[test]
fn reciprocal_under_pond_is_within_its_documented_error_and_saturates_outside() {
    let x = log_grid(-8 * 16, 16 * 16 - 1);
    let plan = one_step(tfe_run::ops::Reciprocal.into(), &[&[x.len()]]);
    let out = secure(&plan, &[array(&[x.len()], x.clone())]);
    let (rel, abs, over) = errors(&x, &out, |v| 1.0 / v, 1e-4, 2.0 * ULP);
    eprintln!("reciprocal on [2^-8, 2^16): max relative error {rel:.2e} (where 1/x ≥ 1), max absolute {abs:.2e}");
    assert!(over <= 0.0, "error over 1e-4/x + 2^-15 by {over:.2e}");
    let tails = vec![2f32.powi(-9), 1e-3, 0.0, -1.0, -300.0, 65536.0, 1e5, 1e9];
    let plan = one_step(tfe_run::ops::Reciprocal.into(), &[&[tails.len()]]);
    let out = secure(&plan, &[array(&[tails.len()], tails.clone())]);
    for (&x, &y) in tails.iter().zip(out.iter()) {
        let want = if x < 1.0 { 256.0 } else { 0.0 };
        assert!((f64::from(y) - want).abs() <= 256.0 * 1e-4 + 2.0 * ULP, "1/{x}: {y}, saturation {want}");
    }
}

/// The inverse square root on a log grid of [2^-8, 2^30) (609 points), then its
/// tail below 2^-8: exactly 16.
#[test]
fn rsqrt_under_pond_is_within_its_documented_error_and_saturates_below() {
    let x = log_grid(-8 * 16, 30 * 16 - 1);
    let plan = one_step(Op::Rsqrt, &[&[x.len()]]);
    let out = secure(&plan, &[array(&[x.len()], x.clone())]);
    let (rel, abs, over) = errors(&x, &out, |v| 1.0 / v.sqrt(), 1e-4, 2.0 * ULP);
    eprintln!("rsqrt on [2^-8, 2^30): max relative error {rel:.2e} (where 1/√x ≥ 1), max absolute {abs:.2e}");
    assert!(over <= 0.0, "error over 1e-4/√x + 2^-15 by {over:.2e}");
    let tails = vec![2f32.powi(-9), 1e-3, 0.0, -1.0, -300.0];
    let plan = one_step(Op::Rsqrt, &[&[tails.len()]]);
    let out = secure(&plan, &[array(&[tails.len()], tails.clone())]);
    for (&x, &y) in tails.iter().zip(out.iter()) {
        assert!((f64::from(y) - 16.0).abs() <= 16.0 * 1e-4 + 2.0 * ULP, "rsqrt({x}): {y}, saturation 16");
    }
}

/// Exp on every 1/64 of [-14, 12]: within its error on [-12, 10], exactly 0
/// below and e^10 from 10 on (up to the rounding of the last truncation).
#[test]
fn exp_under_pond_is_within_its_documented_error_and_exact_outside() {
    let x: Vec<f32> = (-14 * 64..=12 * 64).map(|i| i as f32 / 64.0).collect();
    let plan = one_step(tfe_run::ops::Exp.into(), &[&[x.len()]]);
    let out = secure(&plan, &[array(&[x.len()], x.clone())]);
    let inside: Vec<usize> = (0..x.len()).filter(|&i| (-12.0..10.0).contains(&x[i])).collect();
    let xs: Vec<f32> = inside.iter().map(|&i| x[i]).collect();
    let ys = ArrayD::from_shape_vec(IxDyn(&[xs.len()]), inside.iter().map(|&i| out[[i]]).collect()).unwrap();
    let (rel, abs, over) = errors(&xs, &ys, f64::exp, 1e-4, 4.0 * ULP);
    eprintln!("exp on [-12, 10): max relative error {rel:.2e} (where e^x ≥ 1), max absolute {abs:.2e}");
    assert!(over <= 0.0, "error over 1e-4·e^x + 2^-14 by {over:.2e}");
    for (&x, &y) in x.iter().zip(out.iter()) {
        if x < -12.0 {
            assert!(f64::from(y).abs() <= ULP, "exp({x}) = {y}, not 0");
        } else if x >= 10.0 {
            assert!((f64::from(y) - 10f64.exp()).abs() <= 2.0 * ULP + 1e-3, "exp({x}) = {y}, not e^10");
        }
    }
}

/// A Softmax that feeds another op runs under Pond (a last Softmax is still
/// the client's): rows with ties, with spreads past the exponential's range, and
/// of one element.
#[test]
fn softmax_inside_a_graph_under_pond_matches_plaintext() {
    let rows: Vec<f32> = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.5, -2.0, 3.0, 3.0, 0.25, -0.5, 2.0, 1.0, 0.0, -1.0],
        [20.0, -20.0, 0.0, 5.0, 19.0, -3.0, 7.5, 12.0, 8.0, 1.0],
        [-3.3, -2.2, -1.1, 0.0, 1.1, 2.2, 3.3, 4.4, 5.5, 6.6],
    ]
    .concat();
    for (shape, x) in [(vec![4, 10], rows.clone()), (vec![2, 2, 10], rows.clone()), (vec![5, 1], rows[..5].to_vec())] {
        let plan = chain(&[&shape], &[(Op::Softmax, vec![0]), (Op::Neg, vec![1])]);
        let program = runtime::lower(&plan, Default::default()).unwrap();
        assert_eq!(program.client_final, None, "the Softmax is not the last op");
        let worst = secure_vs_plaintext(&plan, &[array(&shape, x)]);
        eprintln!("softmax {shape:?}: worst {worst:.2e}");
        assert!(worst <= 1e-4, "{shape:?}: worst {worst}");
    }
}

/// RealDiv by a private divisor is a product with its secure reciprocal.
#[test]
fn division_by_a_private_value_under_pond_matches_plaintext() {
    let a: Vec<f32> = (0..12).map(|i| (i as f32 - 6.0) / 2.0).collect();
    let b: Vec<f32> = (0..12).map(|i| 0.5 + (i * i) as f32 / 3.0).collect();
    let plan = chain(&[&[3, 4], &[3, 4]], &[(tfe_run::ops::Reciprocal.into(), vec![1]), (Op::Mul, vec![0, 2])]);
    let worst = secure_vs_plaintext(&plan, &[array(&[3, 4], a), array(&[3, 4], b)]);
    assert!(worst <= 1e-3, "worst {worst}");
}

/// Every 1/8 from −10 to 10: 0 and 6 exactly, and values on both sides of each.
fn grid() -> Vec<f32> {
    (-80..=80).map(|i| i as f32 / 8.0).collect()
}

#[test]
fn relu6_under_pond_is_exact_on_both_bends() {
    let x = grid();
    let plan = one_step(tfe_run::ops::Relu6.into(), &[&[x.len()]]);
    // Both comparisons are exact: only the encoding of the input is off (2^-17).
    let worst = secure_vs_plaintext(&plan, &[array(&[x.len()], x)]);
    assert!(worst <= 1e-5, "worst {worst}");
}

#[test]
fn leaky_relu_under_pond_is_within_its_documented_error() {
    for alpha in [0.2f32, 0.3, 0.01, 1.5, -0.5] {
        let x = grid();
        let plan = one_step(tfe_run::ops::LeakyRelu { alpha }.into(), &[&[x.len()]]);
        // (|x| + 2)·2^-(f+1) at f = 16, |x| ≤ 10 (the module's bound), and the
        // product by |alpha| ≤ 1.5 of the input's own encoding error.
        let bound = (10.0 + 2.0) / 131072.0 + 1.5 / 131072.0;
        let worst = secure_vs_plaintext(&plan, &[array(&[x.len()], x)]);
        assert!(worst <= bound, "alpha {alpha}: worst {worst} over {bound}");
    }
}

#[test]
fn a_leaky_relu_slope_outside_its_range_is_refused_by_the_shape_rule() {
    for alpha in [f32::NAN, f32::INFINITY, 1e6] {
        let op: Op = tfe_run::ops::LeakyRelu { alpha }.into();
        let err = op.output_shape(&[&[3]]).unwrap_err();
        assert!(err.contains("alpha") && err.contains("outside"), "{err}");
    }
}

#[test]
fn maximum_and_minimum_of_two_private_tensors_broadcast_and_break_ties_exactly() {
    // a [4, 5] against b [5] (broadcast), with ties, near-ties and opposite signs.
    let a: Vec<f32> = (0..20).map(|i| (i as f32 - 10.0) / 4.0).collect();
    let b = vec![-2.5, 0.0, 0.25, 1.0 / 65536.0, 2.0];
    for op in [Op::from(tfe_run::ops::Maximum), Op::from(tfe_run::ops::Minimum)] {
        let plan = one_step(op.clone(), &[&[4, 5], &[5]]);
        assert_eq!(plan.output_value().shape, vec![4, 5]);
        let worst = secure_vs_plaintext(&plan, &[array(&[4, 5], a.clone()), array(&[5], b.clone())]);
        assert!(worst <= 1e-5, "{}: worst {worst}", op.name());
        // And the other way round: b broadcast on the left.
        let plan = one_step(op.clone(), &[&[5], &[4, 5]]);
        let worst = secure_vs_plaintext(&plan, &[array(&[5], b.clone()), array(&[4, 5], a.clone())]);
        assert!(worst <= 1e-5, "{} (b first): worst {worst}", op.name());
    }
}

#[test]
fn maximum_of_shapes_that_do_not_broadcast_is_refused_by_the_shape_rule() {
    let op: Op = tfe_run::ops::Maximum.into();
    let err = op.output_shape(&[&[2, 3], &[4]]).unwrap_err();
    assert!(err.contains("do not broadcast"), "{err}");
    let err = op.output_shape(&[&[2, 3]]).unwrap_err();
    assert!(err.contains("2 inputs"), "{err}");
}

/// Relu6's two comparisons per element are cut into chunks together: a tensor
/// past one chunk runs in several, each planned and measured alike.
#[test]
fn relu6_over_more_than_one_chunk_is_planned_as_it_runs() {
    let n = tfe_run::ops::MAX_DRELUS_PER_CHUNK / 2 + 3;
    let x: Vec<f32> = (0..n).map(|i| ((i % 160) as f32 - 80.0) / 8.0).collect();
    let plan = one_step(tfe_run::ops::Relu6.into(), &[&[n]]);
    let program = runtime::lower(&plan, Default::default()).unwrap();
    assert_eq!(program.planned()[0].rounds, 16, "two chunks of one ReLU's 8 rounds");
    let worst = secure_vs_plaintext(&plan, &[array(&[n], x)]);
    assert!(worst <= 1e-5, "worst {worst}");
}

/// A depthwise convolution of the client's input by the model owner's filter
/// (masked and opened once, as every product's weight), with a bias Add and a
/// Relu6 after it, as in a MobileNet block.
#[test]
fn depthwise_conv2d_block_under_pond_matches_plaintext() {
    use tfe_run::kernels::{Layout, Padding, Window};
    let (c, m) = (3, 2);
    for (strides, dilations, padding) in
        [([1, 1], [1, 1], Padding::Same), ([2, 2], [1, 1], Padding::Valid), ([1, 1], [2, 2], Padding::Same)]
    {
        let window = Window { kernel: [3, 3], strides, dilations, padding, layout: Layout::Nhwc };
        let depthwise: Op = tfe_run::ops::DepthwiseConv2D { window }.into();
        let x_shape = [2, 9, 8, c];
        let out_shape = depthwise.output_shape(&[&x_shape, &[3, 3, c, m]]).unwrap();
        let value = |name: &str, shape: &[usize], source| Value {
            name: name.into(),
            shape: shape.to_vec(),
            vtype: ValueType::Float,
            source,
        };
        let step = |k: usize, op: Op, inputs: Vec<usize>, output: usize| Step {
            node: format!("s{k}"),
            op_type: op.name().into(),
            op,
            inputs,
            output,
        };
        let plan = Plan {
            values: vec![
                value("x0", &x_shape, Source::Input { placeholder: "x0".into() }),
                value("filter", &[3, 3, c, m], Source::Weight),
                value("bias", &[c * m], Source::Weight),
                value("conv", &out_shape, Source::Step(0)),
                value("add", &out_shape, Source::Step(1)),
                value("relu6", &out_shape, Source::Step(2)),
            ],
            steps: vec![
                step(0, depthwise.clone(), vec![0, 1], 3),
                step(1, Op::Add, vec![3, 2], 4),
                step(2, tfe_run::ops::Relu6.into(), vec![4], 5),
            ],
            inputs: vec![0],
            output: 5,
            output_node: "relu6".into(),
            weight_values: BTreeMap::from([
                (1, array(&[3, 3, c, m], (0..54).map(|i| ((i * 7) % 11) as f32 / 4.0 - 1.2).collect())),
                (2, array(&[c * m], vec![0.5, -0.5, 1.0, 2.0, -1.0, 0.0])),
            ]),
        };
        plan.check_consistent().unwrap();
        let x: Vec<f32> = (0..x_shape.iter().product::<usize>()).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let worst = secure_vs_plaintext(&plan, &[array(&x_shape, x)]);
        assert!(worst <= 1e-3, "{window:?}: worst {worst}");
    }
}

/// NCHW window ops (TensorFlow's `data_format: NCHW`, ONNX's tensors: Conv2D,
/// pools, depthwise and transposed convolutions, bilinear resize) run on shares
/// in their own layout, with no transposes around them: each matches the plaintext NCHW kernel,
/// which in turn matches the NHWC kernel on the transposed input.
#[test]
fn nchw_conv2d_and_pools_run_under_pond_in_their_own_layout() {
    use tfe_run::kernels::{Layout, Padding, Window};
    use tfe_run::ops::{Conv2DTranspose, DepthwiseConv2D, ResizeBilinear, Unit};
    let nhwc_of = |x: &ArrayD<f32>| x.view().permuted_axes(IxDyn(&[0, 2, 3, 1])).as_standard_layout().into_owned();
    let (n, c, h, w) = (2, 3, 7, 6);
    let x: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 16.0).collect();
    let x = array(&[n, c, h, w], x);
    let filter: Vec<f32> = (0..3 * 3 * c * 4).map(|i| ((i * 13 % 29) as f32 - 14.0) / 32.0).collect();
    let filter = array(&[3, 3, c, 4], filter);
    // [kh, kw, c, multiplier] and [kh, kw, out, in] filters.
    let dw = |m: usize| array(&[3, 3, c, m], (0..9 * c * m).map(|i| ((i * 11 % 23) as f32 - 11.0) / 16.0).collect());
    let transposed = array(&[3, 3, 5, c], (0..9 * 5 * c).map(|i| ((i * 7 % 19) as f32 - 9.0) / 16.0).collect());
    let window =
        |kernel, strides, padding| Window { kernel, strides, dilations: [1, 1], padding, layout: Layout::Nchw };
    let cases: Vec<(Op, Vec<ArrayD<f32>>)> = vec![
        (Op::Conv2D(window([3, 3], [2, 2], Padding::Same)), vec![x.clone(), filter.clone()]),
        (Op::Conv2D(window([3, 3], [1, 1], Padding::Explicit([[1, 0], [0, 2]]))), vec![x.clone(), filter]),
        (Op::AvgPool(window([3, 3], [2, 2], Padding::Same)), vec![x.clone()]),
        (Op::AvgPool(window([2, 2], [2, 2], Padding::Valid)), vec![x.clone()]),
        (Op::MaxPool(window([3, 3], [2, 2], Padding::Same)), vec![x.clone()]),
        // Depthwise (multipliers 1 and 2), transposed convolution, bilinear resize:
        // ONNX's NCHW Conv of one group per channel, ConvTranspose and linear Resize.
        (DepthwiseConv2D { window: window([3, 3], [2, 2], Padding::Same) }.into(), vec![x.clone(), dw(1)]),
        (
            DepthwiseConv2D { window: window([3, 3], [1, 1], Padding::Explicit([[1, 1], [0, 2]])) }.into(),
            vec![x.clone(), dw(2)],
        ),
        (
            Conv2DTranspose { window: window([3, 3], [2, 2], Padding::Explicit([[1, 1], [1, 0]])), out_hw: [13, 12] }
                .into(),
            vec![x.clone(), transposed.clone()],
        ),
        (
            Conv2DTranspose { window: window([3, 3], [2, 2], Padding::Valid), out_hw: [15, 13] }.into(),
            vec![x.clone(), transposed],
        ),
        (
            ResizeBilinear { size: [14, 9], align_corners: false, half_pixel_centers: true, layout: Layout::Nchw }
                .into(),
            vec![x.clone()],
        ),
        (
            ResizeBilinear { size: [4, 3], align_corners: true, half_pixel_centers: false, layout: Layout::Nchw }
                .into(),
            vec![x.clone()],
        ),
    ];
    for (op, inputs) in cases {
        let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
        let plan = one_step(op.clone(), &shapes);
        let lowered = runtime::lower(&plan, Default::default()).unwrap();
        assert_eq!(lowered.plan.steps.len(), 1, "{op:?}: planned without transposes");
        let worst = secure_vs_plaintext(&plan, &inputs);
        assert!(worst <= 2e-3, "{op:?}: worst {worst}");
        // The plaintext NCHW meaning is the NHWC one on transposed data.
        let nhwc_op = match &op {
            Op::Conv2D(w) => Op::Conv2D(Window { layout: Layout::Nhwc, ..*w }),
            Op::AvgPool(w) => Op::AvgPool(Window { layout: Layout::Nhwc, ..*w }),
            Op::MaxPool(w) => Op::MaxPool(Window { layout: Layout::Nhwc, ..*w }),
            Op::Unit(Unit::DepthwiseConv2D(d)) => DepthwiseConv2D { window: d.window.nhwc() }.into(),
            Op::Unit(Unit::Conv2DTranspose(t)) => Conv2DTranspose { window: t.window.nhwc(), ..t.clone() }.into(),
            Op::Unit(Unit::ResizeBilinear(r)) => ResizeBilinear { layout: Layout::Nhwc, ..r.clone() }.into(),
            other => unreachable!("{other:?}"),
        };
        let mut nhwc_inputs = inputs.clone();
        nhwc_inputs[0] = nhwc_of(&inputs[0]);
        let nhwc_shapes: Vec<&[usize]> = nhwc_inputs.iter().map(|a| a.shape()).collect();
        let run = |plan: &Plan, ins: &[ArrayD<f32>]| {
            let feeds: BTreeMap<String, ArrayD<f32>> =
                ins.iter().enumerate().map(|(i, a)| (format!("x{i}"), a.clone())).collect();
            tfe_run::plaintext::run(plan, &feeds).unwrap().to_float()
        };
        let nchw_out = run(&plan, &inputs);
        let nhwc_out = run(&one_step(nhwc_op, &nhwc_shapes), &nhwc_inputs);
        let expected = nhwc_out.view().permuted_axes(IxDyn(&[0, 3, 1, 2]));
        let gap = nchw_out.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(gap <= 1e-5, "{op:?}: NCHW and NHWC differ by {gap}");
    }
}

/// The reciprocal's and the softmax's comparisons are cut into chunks (25 per
/// element): past one chunk each runs in several, planned and measured alike.
#[test]
fn reciprocal_and_softmax_over_more_than_one_chunk_are_planned_as_they_run() {
    let n = tfe_run::ops::MAX_DRELUS_PER_CHUNK / 25 + 3;
    let x: Vec<f32> = (0..n).map(|i| 0.5 + (i % 97) as f32 / 8.0).collect();
    let plan = one_step(tfe_run::ops::Reciprocal.into(), &[&[n]]);
    let program = runtime::lower(&plan, Default::default()).unwrap();
    assert_eq!(program.planned()[0].rounds, 36, "two chunks of a reciprocal's 18 rounds");
    let worst = secure_vs_plaintext(&plan, &[array(&[n], x.clone())]);
    assert!(worst <= 1e-3, "reciprocal: worst {worst}");
    let rows = n.div_ceil(10);
    let x: Vec<f32> = (0..rows * 10).map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0).collect();
    let plan = chain(&[&[rows, 10]], &[(Op::Softmax, vec![0]), (Op::Neg, vec![1])]);
    let worst = secure_vs_plaintext(&plan, &[array(&[rows, 10], x)]);
    assert!(worst <= 1e-4, "softmax: worst {worst}");
}

/// Every 1/8 from −40 to 40 (both tails of every curve, its breakpoints on the
/// way), and far out: ±100, ±1000, ±3000.
fn wide_grid() -> Vec<f32> {
    let mut x: Vec<f32> = (-320..=320).map(|i| i as f32 / 8.0).collect();
    x.extend([-3000.0, -1000.0, -100.0, 100.0, 1000.0, 3000.0]);
    x
}

/// A curve's fixed-point slack under Pond besides its fit error: the input's
/// encoding, the truncations of u², u³ and of the sum (a unit each), relative
/// for the exact linear tails.
const CURVE_SLACK: f64 = 1e-4;

#[test]
fn each_curve_activation_under_pond_is_within_its_documented_error_and_exact_beyond() {
    use tfe_run::ops::{Activation, Curve};
    // Every curve but Sigmoid and Tanh (tested through their TF ops) and Exp (its own unit).
    for curve in Curve::ALL.into_iter().filter(|c| ![Curve::Sigmoid, Curve::Tanh, Curve::Exp].contains(c)) {
        let x = wide_grid();
        let plan = one_step(Activation { curve }.into(), &[&[x.len()]]);
        assert_eq!(plan.steps[0].op.name(), curve.name());
        let n = x.len();
        let planned = runtime::lower(&plan, Default::default()).unwrap().planned()[0];
        let worst = secure_vs_plaintext_relative(&plan, &[array(&[n], x)]);
        let bound = (curve.documented_error() + CURVE_SLACK) as f32;
        eprintln!(
            "{curve:?} under Pond: worst {worst:.2e} (bound {bound:.2e}); {} rounds, {:.1} bytes per element per server",
            planned.rounds,
            planned.bytes as f64 / n as f64
        );
        assert!(worst <= bound, "{curve:?}: worst {worst} over {bound}");
    }
}

/// A plan over one input "x0" of `n` elements, built as the importer builds
/// one: `build` applies ops to it through the frontend's builder (constants are
/// folded or become weights, as in a real model).
fn built_plan(
    n: usize,
    build: impl FnOnce(&mut tfe_run::frontend::Builder, tfe_run::frontend::Slot) -> tfe_run::frontend::Slot,
) -> Plan {
    use tfe_run::frontend::{Builder, Feed, Origin};
    let mut b = Builder::new();
    let x = b.input(&Origin::new("x0", "Placeholder"), &Feed { shape: vec![n], source: "test".into() });
    let y = build(&mut b, x);
    b.finish("y", Some(&y)).unwrap()
}

fn constant(v: f32) -> tfe_run::frontend::Slot {
    tfe_run::frontend::Builder::known(
        &tfe_run::frontend::Origin::new(format!("c{v}"), "Const"),
        tfe_run::tensor::Tensor::Float(ndarray::arr0(v).into_dyn()),
    )
}

fn apply(b: &mut tfe_run::frontend::Builder, op: Op, ins: &[tfe_run::frontend::Slot]) -> tfe_run::frontend::Slot {
    b.apply(&tfe_run::frontend::Origin::new(format!("n{}", op.name()), op.name()), op, ins).unwrap()
}

/// A composition the importer fuses into one curve (`frontend/curves.rs`), over
/// the wide grid under Pond: one step of `curve`; within the curve's documented
/// error (plus the fixed point's slack) of the function itself, in absolute
/// terms on its fitted range; and past the range's ends its exact tails, 0 below
/// and the encoded x above, up to the last truncation's units. The composed
/// plan's error far out grew as |x|·2^-15 instead.
fn fused_curve_under_pond(name: &str, curve: tfe_run::ops::Curve, plan: Plan, x: &[f32]) {
    assert_eq!(plan.steps.len(), 1, "{name}: {}", plan.describe());
    assert_eq!(plan.steps[0].op.name(), curve.name(), "{name}");
    let planned = runtime::lower(&plan, Default::default()).unwrap().planned()[0];
    let out = secure(&plan, &[array(&[x.len()], x.to_vec())]);
    let pw = curve.piecewise();
    let (lo, hi) = (pw.breaks[0], pw.breaks[pw.breaks.len() - 1]);
    let (mut inside, mut tails) = (0.0f64, 0.0f64);
    for (&x, &y) in x.iter().zip(out.iter()) {
        let (e, y) = (encoded(x), f64::from(y));
        if e < lo {
            tails = tails.max(y.abs());
        } else if e >= hi {
            tails = tails.max((y - e).abs());
        } else {
            inside = inside.max((y - curve.exact(e)).abs());
        }
    }
    let bound = curve.documented_error() + CURVE_SLACK;
    eprintln!(
        "{name} under Pond: worst {inside:.2e} on [{lo}, {hi}) (bound {bound:.2e}), tails off by {tails:.2e}; {} rounds, \
         {:.1} bytes per element per server",
        planned.rounds,
        planned.bytes as f64 / x.len() as f64
    );
    assert!(inside <= bound, "{name}: worst {inside} over {bound}");
    assert!(tails <= 2.0 * ULP, "{name}: a tail off by {tails}");
}

/// GELU as PyTorch exports it to ONNX before opset 20 (and as the ONNX
/// importer once planned `Gelu`): x·(1 + erf(x/√2))·0.5.
#[test]
fn gelu_erf_form_under_pond_is_one_curve_within_its_documented_error_and_exact_beyond() {
    use tfe_run::ops::{Activation, Curve};
    let x = wide_grid();
    let plan = built_plan(x.len(), |b, x| {
        let scaled = apply(b, Op::Mul, &[x.clone(), constant(std::f32::consts::FRAC_1_SQRT_2)]);
        let erf = apply(b, Activation { curve: Curve::Erf }.into(), &[scaled]);
        let one_plus = apply(b, Op::Add, &[erf, constant(1.0)]);
        let product = apply(b, Op::Mul, &[x, one_plus]);
        apply(b, Op::Mul, &[product, constant(0.5)])
    });
    fused_curve_under_pond("gelu (erf)", Curve::Gelu, plan, &x);
}

/// GELU's tanh form, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), with x³ by two
/// products as the importer plans `Pow(x, 3)`: fused, x³ is never computed, so
/// the whole wide grid runs (the composition needed |x| < 2^10).
#[test]
fn gelu_tanh_form_under_pond_is_one_curve_within_its_documented_error_and_exact_beyond() {
    use tfe_run::ops::Curve;
    let x = wide_grid();
    let plan = built_plan(x.len(), |b, x| {
        let square = apply(b, Op::Mul, &[x.clone(), x.clone()]);
        let cube = apply(b, Op::Mul, &[square, x.clone()]);
        let term = apply(b, Op::Mul, &[cube, constant(0.044715)]);
        let inner = apply(b, Op::Add, &[x.clone(), term]);
        let arg = apply(b, Op::Mul, &[inner, constant(0.797_884_6)]);
        let tanh = apply(b, Op::Tanh, &[arg]);
        let one_plus = apply(b, Op::Add, &[tanh, constant(1.0)]);
        let half = apply(b, Op::Mul, &[x, constant(0.5)]);
        apply(b, Op::Mul, &[half, one_plus])
    });
    fused_curve_under_pond("gelu (tanh)", Curve::GeluTanh, plan, &x);
}

/// Mish as Keras exports it, x·tanh(softplus(x)).
#[test]
fn mish_under_pond_is_one_curve_within_its_documented_error_and_exact_beyond() {
    use tfe_run::ops::{Activation, Curve};
    let x = wide_grid();
    let plan = built_plan(x.len(), |b, x| {
        let softplus = apply(b, Activation { curve: Curve::Softplus }.into(), std::slice::from_ref(&x));
        let tanh = apply(b, Op::Tanh, &[softplus]);
        apply(b, Op::Mul, &[x, tanh])
    });
    fused_curve_under_pond("mish", Curve::Mish, plan, &x);
}

/// GELU as Keras 3 and tf_keras export `approximate=False`: 0.5·x·erfc(−x/√2)
/// (Neg, Mul, Erfc, Mul, Mul).
#[test]
fn gelu_as_keras_exports_it_under_pond_is_one_curve_within_its_documented_error_and_exact_beyond() {
    use tfe_run::ops::{Activation, Curve};
    let x = wide_grid();
    let plan = built_plan(x.len(), |b, x| {
        let neg = apply(b, Op::Neg, std::slice::from_ref(&x));
        let scaled = apply(b, Op::Mul, &[neg, constant(std::f32::consts::FRAC_1_SQRT_2)]);
        let erfc = apply(b, Activation { curve: Curve::Erfc }.into(), &[scaled]);
        let half = apply(b, Op::Mul, &[constant(0.5), x]);
        apply(b, Op::Mul, &[half, erfc])
    });
    fused_curve_under_pond("gelu (erfc, as exported)", Curve::Gelu, plan, &x);
}

/// A GELU-like composition with a constant off the formula stays composed
/// under Pond and computes what the model says: 0.6·x·erfc(−x/√2).
#[test]
fn a_gelu_composition_with_another_constant_stays_composed_under_pond() {
    use tfe_run::ops::{Activation, Curve};
    let x: Vec<f32> = (-64..=64).map(|i| i as f32 / 8.0).collect();
    let plan = built_plan(x.len(), |b, x| {
        let neg = apply(b, Op::Neg, std::slice::from_ref(&x));
        let scaled = apply(b, Op::Mul, &[neg, constant(std::f32::consts::FRAC_1_SQRT_2)]);
        let erfc = apply(b, Activation { curve: Curve::Erfc }.into(), &[scaled]);
        let scale = apply(b, Op::Mul, &[constant(0.6), x]);
        apply(b, Op::Mul, &[scale, erfc])
    });
    assert_eq!(plan.steps.len(), 5, "{}", plan.describe());
    let worst = secure_vs_plaintext_per_input(&plan, &x);
    let bound = (2.0 * 1.2 * Curve::Erfc.documented_error() + CURVE_SLACK) as f32;
    assert!(worst <= bound, "worst {worst} over {bound}");
}

/// Greater, which the importer plans as Less with its operands swapped, is exact
/// on both sides of, and at, the threshold (x > 0 is false at 0), with a weight
/// or a private right-hand side; the fixed point's 1.0 or 0.0.
#[test]
fn greater_under_pond_is_exact_at_and_around_the_threshold() {
    let x = grid();
    let plan = built_plan(x.len(), |b, x| apply(b, tfe_run::ops::Less.into(), &[constant(0.0), x]));
    let worst = secure_vs_plaintext(&plan, &[array(&[x.len()], x.clone())]);
    assert_eq!(worst, 0.0);
    let plan = one_step(tfe_run::ops::Less.into(), &[&[x.len()], &[x.len()]]);
    let y: Vec<f32> = x.iter().rev().copied().collect();
    let n = x.len();
    let worst = secure_vs_plaintext(&plan, &[array(&[n], y), array(&[n], x)]);
    assert_eq!(worst, 0.0);
}

/// Keras 3's ELU(alpha=0.5): SelectV2(Greater(x, 0), Elu(x), 0.5·Elu(x)), which
/// the importer plans as e + c·(t − e): the Elu curve's error (and alpha times
/// it), exact x above 0.
#[test]
fn elu_with_alpha_as_keras_exports_it_under_pond_is_within_its_documented_error() {
    use tfe_run::ops::{Activation, Curve};
    let x = wide_grid();
    let plan = built_plan(x.len(), |b, x| {
        let cond = apply(b, tfe_run::ops::Less.into(), &[constant(0.0), x.clone()]);
        let elu = apply(b, Activation { curve: Curve::Elu }.into(), &[x]);
        let scaled = apply(b, Op::Mul, &[constant(0.5), elu.clone()]);
        let diff = apply(b, Op::Sub, &[elu, scaled.clone()]);
        let taken = apply(b, Op::Mul, &[cond, diff]);
        apply(b, Op::Add, &[scaled, taken])
    });
    let worst = secure_vs_plaintext_per_input(&plan, &x);
    let bound = (Curve::Elu.documented_error() + CURVE_SLACK) as f32;
    eprintln!("elu(alpha = 0.5) under Pond: worst {worst:.2e} (bound {bound:.2e})");
    assert!(worst <= bound, "worst {worst} over {bound}");
}

/// Abs = 2·ReLU(x) − x: exact on both sides of 0, one ReLU's traffic.
#[test]
fn abs_under_pond_is_exact_on_both_sides_of_zero() {
    let x = grid();
    let plan = one_step(tfe_run::ops::Abs.into(), &[&[x.len()]]);
    let worst = secure_vs_plaintext(&plan, &[array(&[x.len()], x)]);
    assert!(worst <= 1e-5, "worst {worst}");
    let program = runtime::lower(&plan, Default::default()).unwrap();
    assert_eq!(program.planned()[0].rounds, 8, "one ReLU's rounds");
}

/// Clips to public bounds on the grid (both sides, each side alone), at and
/// around each bound; both comparisons of a two-sided clip in one ReLU's rounds.
#[test]
fn clip_under_pond_is_exact_at_and_around_its_bounds() {
    let x = grid();
    for (lo, hi) in [(Some(-2.5), Some(6.0)), (Some(-1.0), None), (None, Some(3.0)), (Some(0.5), Some(0.5))] {
        let plan = one_step(tfe_run::ops::Clip { lo, hi }.into(), &[&[x.len()]]);
        let worst = secure_vs_plaintext(&plan, &[array(&[x.len()], x.clone())]);
        assert!(worst <= 1e-5, "{lo:?}..{hi:?}: worst {worst}");
        let program = runtime::lower(&plan, Default::default()).unwrap();
        assert_eq!(program.planned()[0].rounds, 8, "one ReLU's rounds");
    }
    for (lo, hi) in [(Some(2.0), Some(1.0)), (None, None), (Some(f32::NAN), None), (Some(1e6), None)] {
        let op: Op = tfe_run::ops::Clip { lo, hi }.into();
        assert!(op.output_shape(&[&[3]]).is_err(), "{lo:?}..{hi:?}");
    }
}

/// Square is a Beaver product of x with itself: x is opened once.
#[test]
fn square_under_pond_opens_its_input_once() {
    let x = grid();
    let n = x.len();
    let mut plan = one_step(Op::Neg, &[&[n]]);
    plan.steps[0].op = Op::Mul;
    plan.steps[0].op_type = "Square".into();
    plan.steps[0].inputs = vec![0, 0];
    plan.check_consistent().unwrap();
    let worst = secure_vs_plaintext(&plan, &[array(&[n], x)]);
    // x² ≤ 100 from inputs encoded exactly, one truncation.
    assert!(worst <= 1e-4, "worst {worst}");
    let program = runtime::lower(&plan, Default::default()).unwrap();
    // One opening of n words, then the truncation's round.
    let once = tfe_run::protocol::mul::open_cost(n) + tfe_run::protocol::trunc::truncate_cost(n);
    assert_eq!(program.planned()[0].bytes, once.bytes);
}

/// A bilinear resize is local with one truncation: on weights of the 2^-16
/// grid (×2 half-pixel upsampling) only the truncation is off; on others
/// (4x3 → 5x7) within the module's bound 4·max|x|·2^-17 + 2^-16.
#[test]
fn resize_bilinear_under_pond_is_within_its_documented_error() {
    let shape = [2, 4, 3, 2];
    let x: Vec<f32> = (0..48).map(|i| ((i * 37) % 23) as f32 / 4.0 - 2.75).collect();
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (size, half, align, bound) in [
        ([8, 6], true, false, 2.0 / 65536.0),
        ([5, 7], true, false, 4.0 * max / 131072.0 + 2.0 / 65536.0),
        ([7, 9], false, true, 4.0 * max / 131072.0 + 2.0 / 65536.0),
    ] {
        let layout = tfe_run::kernels::Layout::Nhwc;
        let unit = tfe_run::ops::ResizeBilinear { size, align_corners: align, half_pixel_centers: half, layout };
        let plan = one_step(unit.into(), &[&shape]);
        let worst = secure_vs_plaintext(&plan, &[array(&shape, x.clone())]);
        assert!(worst <= bound, "{size:?}: worst {worst} over {bound}");
        assert_eq!(runtime::lower(&plan, Default::default()).unwrap().planned()[0].rounds, 1);
    }
}

/// A transposed convolution of the client's input by the model owner's filter,
/// strides 1 and 2, SAME and VALID, odd and even outputs.
#[test]
fn conv2d_transpose_under_pond_matches_plaintext() {
    use tfe_run::kernels::{Layout, Padding, Window};
    for (strides, padding, out_hw) in [
        ([2, 2], Padding::Same, [8, 6]),
        ([2, 2], Padding::Same, [7, 5]),
        ([2, 2], Padding::Valid, [9, 7]),
        ([1, 1], Padding::Valid, [6, 5]),
        ([1, 1], Padding::Same, [4, 3]),
    ] {
        let window = Window { kernel: [3, 3], strides, dilations: [1, 1], padding, layout: Layout::Nhwc };
        let unit = tfe_run::ops::Conv2DTranspose { window, out_hw };
        let g = window.geometry(out_hw).unwrap();
        let x_shape = [2, g.out[0], g.out[1], 3];
        let f_shape = [3, 3, 4, 3];
        let op: Op = unit.into();
        let out_shape = op.output_shape(&[&x_shape, &f_shape]).unwrap();
        assert_eq!(out_shape, vec![2, out_hw[0], out_hw[1], 4]);
        let value = |name: &str, shape: &[usize], source| Value {
            name: name.into(),
            shape: shape.to_vec(),
            vtype: ValueType::Float,
            source,
        };
        let plan = Plan {
            values: vec![
                value("x0", &x_shape, Source::Input { placeholder: "x0".into() }),
                value("filter", &f_shape, Source::Weight),
                value("y", &out_shape, Source::Step(0)),
            ],
            steps: vec![Step { node: "y".into(), op_type: op.name().into(), op, inputs: vec![0, 1], output: 2 }],
            inputs: vec![0],
            output: 2,
            output_node: "y".into(),
            weight_values: BTreeMap::from([(
                1,
                array(&f_shape, (0..108).map(|i| ((i * 7) % 11) as f32 / 4.0 - 1.2).collect()),
            )]),
        };
        plan.check_consistent().unwrap();
        let n: usize = x_shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
        let worst = secure_vs_plaintext(&plan, &[array(&x_shape, x)]);
        assert!(worst <= 1e-3, "{window:?} onto {out_hw:?}: worst {worst}");
    }
}

/// Attention's Q·Kᵀ: a product of two private tensors over their last two axes,
/// the batch axes broadcast (y's size-1 head axis repeats), each operand
/// transposed as asked; both are opened once, masked, then one truncation.
#[test]
fn batch_matmul_of_two_private_tensors_broadcasts_and_transposes_under_pond() {
    for (adj_x, adj_y, x_shape, y_shape) in [
        (false, true, vec![2, 3, 4, 5], vec![2, 1, 6, 5]),
        (true, false, vec![3, 5, 4], vec![5, 2]),
        (false, false, vec![4, 5], vec![2, 3, 5, 2]),
    ] {
        let op: Op = tfe_run::ops::BatchMatMul { adj_x, adj_y }.into();
        let plan = one_step(op, &[&x_shape, &y_shape]);
        let fill = |shape: &[usize], k: usize| {
            let n = shape.iter().product::<usize>();
            array(shape, (0..n).map(|i| ((i * k) % 23) as f32 / 4.0 - 2.7).collect())
        };
        let worst = secure_vs_plaintext(&plan, &[fill(&x_shape, 7), fill(&y_shape, 11)]);
        // One truncation (±1 ulp) and the two inputs' encodings (2^-17 each,
        // times |other| ≤ 3 over ≤ 5 terms).
        assert!(worst <= 2e-4, "adj {adj_x} {adj_y}: worst {worst}");
    }
}

/// The ids of an embedding lookup: every id from −3 to V + 2 and halves around
/// them. Integer ids in range give their one-hot row exactly, others a zero row;
/// a non-integer id rounds to the nearest (half up), as the plaintext does.
#[test]
fn one_hot_of_private_ids_is_exact_with_a_zero_row_outside_the_table() {
    let depth = 7;
    let ids: Vec<f32> = (-6..=18).map(|i| i as f32 / 2.0).chain([-3.0, 7.0, 1e4, -1e4, 6.49, 6.5]).collect();
    let plan = one_step(tfe_run::ops::OneHot { depth }.into(), &[&[ids.len()]]);
    let clear = tfe_run::plaintext::run(&plan, &[("x0".to_string(), array(&[ids.len()], ids.clone()))].into())
        .unwrap()
        .to_float();
    for (row, &id) in clear.outer_iter().zip(&ids) {
        let hot: Vec<usize> = row.iter().enumerate().filter(|(_, v)| **v == 1.0).map(|(i, _)| i).collect();
        let nearest = (id + 0.5).floor();
        let want = if (0.0..depth as f32).contains(&nearest) { vec![nearest as usize] } else { vec![] };
        assert_eq!(hot, want, "id {id}");
        assert_eq!(row.iter().filter(|v| **v != 0.0).count(), want.len(), "id {id}");
    }
    let worst = secure_vs_plaintext(&plan, &[array(&[ids.len()], ids)]);
    assert_eq!(worst, 0.0);
}

/// Keras 3 wraps negative ids with where(ids < 0, ...): [x < y] exactly, ties
/// included, with broadcasting.
#[test]
fn less_of_private_values_is_exact_on_ties_and_broadcasts() {
    let a: Vec<f32> = (0..20).map(|i| (i as f32 - 10.0) / 4.0).collect();
    let b = vec![-2.5, 0.0, 0.25, 1.0 / 65536.0, 2.0];
    let plan = one_step(tfe_run::ops::Less.into(), &[&[4, 5], &[5]]);
    let worst = secure_vs_plaintext(&plan, &[array(&[4, 5], a), array(&[5], b)]);
    assert_eq!(worst, 0.0);
}

/// An embedding lookup as the importer plans it: OneHot, then a product with the
/// model owner's table (masked and opened once per session).
#[test]
fn an_embedding_lookup_by_private_ids_is_the_tables_rows_under_pond() {
    let (depth, width) = (9, 4);
    let table: Vec<f32> = (0..depth * width).map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0).collect();
    let ids: Vec<f32> = vec![0.0, 8.0, 3.0, 3.0, 9.0, -1.0, 5.0, 2.0];
    let value = |name: &str, shape: &[usize], source| Value {
        name: name.into(),
        shape: shape.to_vec(),
        vtype: ValueType::Float,
        source,
    };
    let step = |k: usize, op: Op, inputs: Vec<usize>, output: usize| Step {
        node: format!("s{k}"),
        op_type: op.name().into(),
        op,
        inputs,
        output,
    };
    let plan = Plan {
        values: vec![
            value("x0", &[2, 4], Source::Input { placeholder: "x0".into() }),
            value("table", &[depth, width], Source::Weight),
            value("hot", &[2, 4, depth], Source::Step(0)),
            value("flat", &[8, depth], Source::Step(1)),
            value("rows", &[8, width], Source::Step(2)),
        ],
        steps: vec![
            step(0, tfe_run::ops::OneHot { depth }.into(), vec![0], 2),
            step(1, Op::Reshape(vec![8, depth]), vec![2], 3),
            step(2, Op::MatMul { transpose_a: false, transpose_b: false }, vec![3, 1], 4),
        ],
        inputs: vec![0],
        output: 4,
        output_node: "rows".into(),
        weight_values: BTreeMap::from([(1, array(&[depth, width], table.clone()))]),
    };
    plan.check_consistent().unwrap();
    let x = array(&[2, 4], ids.clone());
    let clear = tfe_run::plaintext::run(&plan, &[("x0".to_string(), x.clone())].into()).unwrap().to_float();
    for (row, &id) in clear.outer_iter().zip(&ids) {
        let want: Vec<f32> = if (0.0..depth as f32).contains(&id) {
            table[id as usize * width..][..width].to_vec()
        } else {
            vec![0.0; width]
        };
        assert_eq!(row.iter().copied().collect::<Vec<f32>>(), want, "id {id}");
    }
    let worst = secure_vs_plaintext(&plan, &[x]);
    assert!(worst <= 2.0 / 65536.0, "worst {worst}");
}
