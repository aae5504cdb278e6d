//! Fusing the compositions GELU and mish are exported as into one curve each,
//! at import.
//!
//! Keras 3 and tf_keras export GELU's exact form as 0.5·x·erfc(−x/√2) (Mul,
//! Neg, Mul, Erfc, Mul), its tanh form as 0.5·x·(1 + tanh(√(2/π)·(x +
//! 0.044715·x³))) (Pow, Mul, AddV2, Mul, Tanh, AddV2, Mul), and mish as
//! x·tanh(softplus(x)); PyTorch's ONNX export of GELU before opset 20 is
//! x·(1 + erf(x/√2))·0.5 (Div, Erf, Add, Mul, Mul). Run as composed, each is
//! several approximations and private products (their rounds and bytes), and far
//! from 0 the product of x with an approximated factor is off by |x| times that
//! factor's last unit, without bound. Each composition is one function of x, so
//! it runs as that function's curve (`ops/piecewise.rs`: one batch of
//! comparisons, three rounds of products, exact tails).
//!
//! The structure picks the candidates: a tree of element-wise steps (Mul, Neg,
//! Add, the curve) over one private x, every value inside it read only inside
//! it, with the output of x's shape. The one-element constants in the tree are
//! the formula's numbers — public, like a Clip's bounds or a Pow's exponent, not
//! learnt weights — and must be the formula's to within f32 rounding; if one is
//! not, the composition stays as it is and computes exactly what the model says.

use crate::ops::{Activation, Curve, Unit};
use crate::plan::{Op, Plan, Source, ValueId};

use super::fold::{compact, readers, sole_producer};

/// Replace every recognised GELU or mish composition by one step of its curve.
pub fn fuse_curves(plan: &mut Plan) {
    let readers = readers(plan);
    let mut removed = vec![false; plan.steps.len()];
    for k in 0..plan.steps.len() {
        let Some(fused) = (Matcher { plan, readers: &readers, removed: &removed }).curve_at(k) else { continue };
        for &j in &fused.steps {
            if let Some(r) = removed.get_mut(j) {
                *r = true;
            }
        }
        if let Some(step) = plan.steps.get_mut(k) {
            step.op = Activation { curve: fused.curve }.into();
            step.op_type = fused.curve.name().to_string();
            step.inputs = vec![fused.x];
        }
    }
    if removed.contains(&true) {
        compact(plan, &removed);
    }
}

/// A composition found: its curve, its input, and the steps it replaces (but
/// the root, which becomes the curve's step).
struct Fused {
    curve: Curve,
    x: ValueId,
    steps: Vec<usize>,
}

/// A product of steps, flattened: the constant factor, the private factors, the
/// steps it spans.
struct Product {
    scale: f64,
    factors: Vec<ValueId>,
    steps: Vec<usize>,
}

/// 1/√2, GELU's scale of x inside erf.
const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// A constant of the export equal to the formula's: f32's rounding of it, and of
/// a quotient or product of two (1.4142135 → 1/1.4142135), is within 3e-7.
fn is(value: f64, formula: f64) -> bool {
    (value - formula).abs() <= 1e-6 * formula.abs()
}

struct Matcher<'a> {
    plan: &'a Plan,
    readers: &'a [usize],
    removed: &'a [bool],
}

impl Matcher<'_> {
    /// The step computing `v` if nothing but the step reading it does (and it
    /// is not the output), and that step's op.
    fn inner(&self, v: ValueId) -> Option<(usize, &Op, &[ValueId])> {
        let j = sole_producer(self.plan, self.readers, v)?;
        if self.removed.get(j).copied().unwrap_or(true) {
            return None;
        }
        let step = self.plan.steps.get(j)?;
        Some((j, &step.op, &step.inputs))
    }

    /// A one-element weight's value (what a formula's scalar becomes).
    fn scalar(&self, v: ValueId) -> Option<f64> {
        let value = self.plan.values.get(v)?;
        if !matches!(value.source, Source::Weight) {
            return None;
        }
        let w = self.plan.weight_values.get(&v)?;
        (w.len() == 1).then(|| w.iter().next().map(|&c| f64::from(c))).flatten()
    }

    /// `v` as a product: through the Muls and Negs computing it that nothing
    /// else reads (`v`'s own step whoever reads it: the root).
    fn product(&self, v: ValueId, root: Option<usize>) -> Product {
        let step = match root {
            Some(k) => self.plan.steps.get(k).map(|s| (k, &s.op, s.inputs.as_slice())),
            None => self.inner(v),
        };
        match step {
            Some((j, Op::Mul, [a, b])) => {
                let (a, b) = (self.product(*a, None), self.product(*b, None));
                let mut steps = a.steps;
                steps.extend(b.steps);
                steps.push(j);
                let mut factors = a.factors;
                factors.extend(b.factors);
                Product { scale: a.scale * b.scale, factors, steps }
            }
            Some((j, Op::Neg, [a])) => {
                let mut p = self.product(*a, None);
                p.scale = -p.scale;
                p.steps.push(j);
                p
            }
            _ => match self.scalar(v) {
                Some(c) => Product { scale: c, factors: vec![], steps: vec![] },
                None => Product { scale: 1.0, factors: vec![v], steps: vec![] },
            },
        }
    }

    /// `v` as q·x: (q, x, the steps).
    fn linear(&self, v: ValueId) -> Option<(f64, ValueId, Vec<usize>)> {
        match self.product(v, None) {
            Product { scale, factors, steps } if factors.len() == 1 => Some((scale, *factors.first()?, steps)),
            _ => None,
        }
    }

    /// The curve whose composition ends at step `k`.
    fn curve_at(&self, k: usize) -> Option<Fused> {
        let step = self.plan.steps.get(k)?;
        if step.op != Op::Mul || self.removed.get(k).copied().unwrap_or(true) {
            return None;
        }
        let root = self.product(step.output, Some(k));
        let [a, b] = root.factors.as_slice() else { return None };
        // No constant may broadcast x to a larger shape.
        let out_shape = &self.plan.values.get(step.output)?.shape;
        let same_shape = |x: ValueId| self.plan.values.get(x).is_some_and(|v| &v.shape == out_shape);
        for (x, gate) in [(*a, *b), (*b, *a)] {
            let Some((curve, scale, steps)) = self.gate(gate, x) else { continue };
            if is(root.scale, scale) && same_shape(x) {
                let mut all = root.steps;
                all.extend(steps);
                all.retain(|&j| j != k);
                return Some(Fused { curve, x, steps: all });
            }
        }
        None
    }

    /// The factor beside x of a GELU or mish composition: (its curve, the
    /// constant the product must have besides x and this factor, its steps).
    ///
    /// - erfc(−x/√2) (Keras), with 0.5;
    /// - 1 + erf(x/√2) (ONNX), with 0.5;
    /// - 1 + tanh(√(2/π)·(x + 0.044715·x³)), with 0.5;
    /// - tanh(softplus(x)), with 1.
    fn gate(&self, g: ValueId, x: ValueId) -> Option<(Curve, f64, Vec<usize>)> {
        let (j, op, ins) = self.inner(g)?;
        match (op, ins) {
            (Op::Unit(Unit::Activation(Activation { curve: Curve::Erfc })), [z]) => {
                let (q, y, mut steps) = self.linear(*z)?;
                steps.push(j);
                (y == x && is(q, -INV_SQRT_2)).then_some((Curve::Gelu, 0.5, steps))
            }
            (Op::Tanh, [z]) => match self.inner(*z)? {
                (i, Op::Unit(Unit::Activation(Activation { curve: Curve::Softplus })), [y]) if *y == x => {
                    Some((Curve::Mish, 1.0, vec![i, j]))
                }
                _ => None,
            },
            (Op::Add, [a, b]) => {
                let (c, h) = match (self.scalar(*a), self.scalar(*b)) {
                    (Some(c), None) => (c, *b),
                    (None, Some(c)) => (c, *a),
                    _ => return None,
                };
                let (curve, mut steps) = self.one_plus(h, x)?;
                steps.push(j);
                is(c, 1.0).then_some((curve, 0.5, steps))
            }
            _ => None,
        }
    }

    /// erf(x/√2) or tanh(√(2/π)·(x + 0.044715·x³)), the term after GELU's 1 +.
    fn one_plus(&self, h: ValueId, x: ValueId) -> Option<(Curve, Vec<usize>)> {
        let (j, op, ins) = self.inner(h)?;
        match (op, ins) {
            (Op::Unit(Unit::Activation(Activation { curve: Curve::Erf })), [z]) => {
                let (q, y, mut steps) = self.linear(*z)?;
                steps.push(j);
                (y == x && is(q, INV_SQRT_2)).then_some((Curve::Gelu, steps))
            }
            (Op::Tanh, [z]) => {
                let (r, s, mut steps) = self.linear(*z)?;
                let (i, Op::Add, [a, b]) = self.inner(s)? else { return None };
                let cube = if *a == x {
                    *b
                } else if *b == x {
                    *a
                } else {
                    return None;
                };
                let Product { scale, factors, steps: cube_steps } = self.product(cube, None);
                let is_cube = factors.len() == 3 && factors.iter().all(|&f| f == x);
                steps.extend(cube_steps);
                steps.extend([i, j]);
                let formula = is(r, crate::ops::GELU_TANH_SCALE) && is(scale, crate::ops::GELU_TANH_CUBIC);
                (is_cube && formula).then_some((Curve::GeluTanh, steps))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{Builder, Feed, Origin, Slot};
    use crate::tensor::Tensor;

    /// A plan over one input x of shape [8], built as the importer builds one.
    fn built(build: impl FnOnce(&mut Builder, Slot) -> Slot) -> Plan {
        let mut b = Builder::new();
        let x = b.input(&Origin::new("x", "Placeholder"), &Feed { shape: vec![8], source: "test".into() });
        let y = build(&mut b, x);
        b.finish("y", Some(&y)).unwrap()
    }

    fn constant(v: f32, shape: &[usize]) -> Slot {
        let t = ndarray::ArrayD::from_elem(shape, v);
        Builder::known(&Origin::new(format!("c{v}"), "Const"), Tensor::Float(t))
    }

    fn c(v: f32) -> Slot {
        constant(v, &[])
    }

    fn apply(b: &mut Builder, op: Op, ins: &[Slot]) -> Slot {
        b.apply(&Origin::new(format!("n{}", op.name()), op.name()), op, ins).unwrap()
    }

    fn act(curve: Curve) -> Op {
        Activation { curve }.into()
    }

    /// Keras 3 and tf_keras: 0.5·x·erfc(−x·(1/√2)), with the scale `half`.
    fn keras_gelu(half: f32) -> Plan {
        built(|b, x| {
            let h = apply(b, Op::Mul, &[c(half), x.clone()]);
            let n = apply(b, Op::Neg, std::slice::from_ref(&x));
            let s = apply(b, Op::Mul, &[n, c(std::f32::consts::FRAC_1_SQRT_2)]);
            let e = apply(b, act(Curve::Erfc), &[s]);
            apply(b, Op::Mul, &[h, e])
        })
    }

    /// PyTorch's ONNX export before opset 20: x·(1 + erf(x / √2))·0.5, √2 in f32 (1.4142135).
    fn torch_gelu(b: &mut Builder, x: Slot) -> Slot {
        let s = apply(b, Op::Mul, &[x.clone(), c(1.0 / std::f32::consts::SQRT_2)]);
        let e = apply(b, act(Curve::Erf), &[s]);
        let e = apply(b, Op::Add, &[e, c(1.0)]);
        let y = apply(b, Op::Mul, &[x, e]);
        apply(b, Op::Mul, &[y, c(0.5)])
    }

    /// The tanh form as Keras exports it, with the cube's coefficient `k`.
    fn tanh_gelu(k: f32) -> Plan {
        built(|b, x| {
            let h = apply(b, Op::Mul, &[c(0.5), x.clone()]);
            let sq = apply(b, Op::Mul, &[x.clone(), x.clone()]);
            let cube = apply(b, Op::Mul, &[sq, x.clone()]);
            let t = apply(b, Op::Mul, &[c(k), cube]);
            let inner = apply(b, Op::Add, &[x.clone(), t]);
            let z = apply(b, Op::Mul, &[c(0.797_884_6), inner]);
            let th = apply(b, Op::Tanh, &[z]);
            let g = apply(b, Op::Add, &[c(1.0), th]);
            apply(b, Op::Mul, &[h, g])
        })
    }

    fn mish(b: &mut Builder, x: Slot) -> Slot {
        let s = apply(b, act(Curve::Softplus), std::slice::from_ref(&x));
        let t = apply(b, Op::Tanh, &[s]);
        apply(b, Op::Mul, &[x, t])
    }

    /// One step of `curve` on the input, no weight left.
    fn assert_fused(plan: &Plan, curve: Curve) {
        assert_eq!(plan.steps.len(), 1, "{}", plan.describe());
        assert_eq!(plan.steps[0].op, act(curve));
        assert_eq!(plan.steps[0].inputs, plan.inputs);
        assert_eq!(plan.steps[0].output, plan.output);
        assert_eq!(plan.weights().count(), 0, "{}", plan.describe());
        plan.check_consistent().unwrap();
    }

    #[test]
    fn every_exported_gelu_and_mish_composition_is_one_curve() {
        assert_fused(&keras_gelu(0.5), Curve::Gelu);
        assert_fused(&built(torch_gelu), Curve::Gelu);
        assert_fused(&tanh_gelu(0.044715), Curve::GeluTanh);
        assert_fused(&built(mish), Curve::Mish);
    }

    /// Two activations in a row, and a step before and after: each fused alone.
    #[test]
    fn compositions_among_other_steps_fuse_each_on_its_own() {
        let plan = built(|b, x| {
            let x = apply(b, Op::Add, &[x, c(0.25)]);
            let g = torch_gelu(b, x);
            let m = mish(b, g);
            apply(b, Op::Mul, &[m, c(3.0)])
        });
        let ops: Vec<&str> = plan.steps.iter().map(|s| s.op.name()).collect();
        assert_eq!(ops, ["Add", "Gelu", "Mish", "Mul"], "{}", plan.describe());
        plan.check_consistent().unwrap();
    }

    /// A constant off the formula is the model's own function: it stays
    /// composed, and computes what it says.
    #[test]
    fn a_composition_with_other_constants_stays_as_it_is() {
        for plan in [keras_gelu(0.6), tanh_gelu(0.05)] {
            assert!(plan.steps.len() > 1 && !plan.steps.iter().any(|s| s.op_type == "Gelu"), "{}", plan.describe());
        }
        // A scaled mish: x·tanh(softplus(x))·2 is not mish.
        let plan = built(|b, x| {
            let s = apply(b, act(Curve::Softplus), std::slice::from_ref(&x));
            let t = apply(b, Op::Tanh, &[s]);
            let t = apply(b, Op::Mul, &[t, c(2.0)]);
            apply(b, Op::Mul, &[x, t])
        });
        assert_eq!(plan.steps.len(), 4, "{}", plan.describe());
    }

    /// A value inside the composition that something else reads, or a constant
    /// that broadcasts x to a larger shape, keeps it composed.
    #[test]
    fn a_composition_read_inside_or_broadcast_stays_as_it_is() {
        let plan = built(|b, x| {
            let s = apply(b, act(Curve::Softplus), std::slice::from_ref(&x));
            let t = apply(b, Op::Tanh, &[s]);
            let m = apply(b, Op::Mul, &[x, t.clone()]);
            apply(b, Op::Add, &[m, t])
        });
        assert_eq!(plan.steps.len(), 4, "{}", plan.describe());
        let plan = built(|b, x| {
            let h = apply(b, Op::Mul, &[constant(0.5, &[2, 1]), x.clone()]);
            let n = apply(b, Op::Neg, std::slice::from_ref(&x));
            let s = apply(b, Op::Mul, &[n, c(std::f32::consts::FRAC_1_SQRT_2)]);
            let e = apply(b, act(Curve::Erfc), &[s]);
            apply(b, Op::Mul, &[h, e])
        });
        assert_eq!(plan.steps.len(), 5, "{}", plan.describe());
        assert_eq!(plan.output_value().shape, [2, 8]);
    }

    /// The fused plan computes, in the clear, what the composition computes.
    #[test]
    fn a_fused_plan_answers_as_its_composition() {
        let x = ndarray::ArrayD::from_shape_vec(vec![8], vec![-30.0, -6.0, -2.5, -0.3, 0.0, 0.7, 3.0, 40.0]).unwrap();
        let feeds = std::collections::BTreeMap::from([("x".to_string(), x.clone())]);
        let run = |plan: &Plan| crate::plaintext::run(plan, &feeds).unwrap().to_float();
        for (plan, f) in [
            (keras_gelu(0.5), Curve::Gelu),
            (built(torch_gelu), Curve::Gelu),
            (tanh_gelu(0.044715), Curve::GeluTanh),
            (built(mish), Curve::Mish),
        ] {
            let got = run(&plan);
            for (&x, &y) in x.iter().zip(got.iter()) {
                let want = f.exact(f64::from(x));
                assert!((f64::from(y) - want).abs() <= 1e-6 * want.abs().max(1.0), "{f:?}({x}) = {y}, not {want}");
            }
        }
    }
}
