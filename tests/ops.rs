//! The ops defined whole in their own module (`src/ops/`: Relu6, LeakyRelu,
//! Maximum, Minimum), on hand-made one-step plans whose inputs sit on and around
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

/// Run `plan` under Pond and in the clear; the largest difference, after
/// checking that every server sent the bytes and rounds the unit plans.
fn secure_vs_plaintext(plan: &Plan, inputs: &[ArrayD<f32>]) -> f32 {
    let feeds: BTreeMap<String, ArrayD<f32>> =
        inputs.iter().enumerate().map(|(i, x)| (format!("x{i}"), x.clone())).collect();
    let outcome = runtime::predict(plan, &feeds, &SecureConfig::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let planned = runtime::lower(plan, Default::default()).unwrap().planned();
    for server in [Party::Server0, Party::Server1] {
        for (k, p) in planned.iter().enumerate() {
            let m = outcome.stats.parties[&server].per_layer.get(&k).cloned().unwrap_or_default();
            assert_eq!((m.bytes_sent, m.rounds), (p.bytes, p.rounds), "{} step {k}", server.name());
        }
    }
    let clear = tfe_run::plaintext::run(plan, &feeds).unwrap().to_float();
    let secure = outcome.outputs[0].to_float();
    assert_eq!(secure.shape(), clear.shape());
    secure.iter().zip(clear.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
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
