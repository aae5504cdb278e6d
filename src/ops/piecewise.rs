//! Sigmoid, Tanh and the curve activations (ELU, SELU, softplus, softsign, erf,
//! and GELU and mish, whose exported compositions are fused into one curve at
//! import: `frontend/curves.rs`) by piecewise cubics (`protocol::compare::Piecewise`) with exact tails, chunk
//! by chunk: the DReLU of every breakpoint, then three rounds of products.
//!
//! Each curve is fitted once per process from its name ([`Curve`]), which is all
//! the program carries. Its documented range, segments, tails and the maximum
//! error measured on a grid are in the table of [`Curve`]'s variants (and the
//! tests below assert them).

use std::sync::OnceLock;

use anyhow::Result;

use super::{CostCx, DealerMasks, How, SecureOp, ServerMasks, StepCx, by_chunks, chunked_cost, chunks};
use crate::protocol::compare::{self, deal_piecewise, piecewise, piecewise_many_cost, uniform_breaks};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;

/// SELU's constants (Klambauer et al., as TensorFlow's Selu kernel has them).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// GELU's tanh form: √(2/π) and the cubic's coefficient (Hendrycks and Gimpel;
/// what TensorFlow, Keras and ONNX write).
pub const GELU_TANH_SCALE: f64 = 0.797_884_560_802_865_4;
pub const GELU_TANH_CUBIC: f64 = 0.044_715;

/// The approximated functions, by name: the program carries the name, and every
/// party fits the same curve from it.
///
/// | curve    | fitted on     | segments              | below  | above       | max error |
/// |----------|---------------|-----------------------|--------|-------------|-----------|
/// | Sigmoid  | [−10, 10]     | 24 equal              | 0      | 1           | 4.6e-5    |
/// | Tanh     | [−5.5, 5.5]   | 24 equal              | −1     | 1           | 8.5e-5    |
/// | Elu      | [−16, 0]      | 13, widening from 0   | −1     | x (exact)   | 3.0e-5    |
/// | Selu     | [−16, 0]      | 13, widening from 0   | −λα    | λx (exact)  | 5.1e-5    |
/// | Softplus | [−10, 10]     | 24 equal (sigmoid's)  | 0      | x           | 4.6e-5    |
/// | Softsign | [−1024, 1024] | 38, widening ×1.5     | −1     | 1           | 9.8e-4    |
/// | Erf      | [−4, 4]       | 20 equal              | −1     | 1           | 6.5e-5    |
/// | Erfc     | [−4, 4]       | 20 equal              | 2      | 0           | 6.5e-5    |
/// | Exp      | [−12, 10]     | 44 equal              | 0      | e^10        | 4.6e-5 relative |
/// | Gelu     | [−5, 5]       | 14, narrower near 0   | 0      | x           | 5.2e-5    |
/// | GeluTanh | [−5, 5]       | 14 (GELU's)           | 0      | x           | 5.1e-5    |
/// | Mish     | [−16, 8]      | 18, narrower near 0   | 0      | x           | 4.8e-5    |
///
/// The errors hold on the whole real line (the tests measure [−40, 40], softsign
/// [−4096, 4096], beyond the fitted ranges): a tail is the function itself (ELU
/// and SELU above 0) or a line each function approaches monotonically, so it is
/// off by at most what it is off at its breakpoint (softsign's slow saturation,
/// 1/(1 + 1024) = 9.8e-4, is the largest error of any curve anywhere). GELU's
/// tails are off by |x|·Φ(−|x|) ≤ 1.5e-6 from |x| = 5 on, mish's by |x|·e^−|x|
/// ≤ 1.8e-6 below −16 and 2x·e^−2x ≤ 1.8e-6 above 8: a composition of the
/// curves above (0.5·x·erfc(−x/√2), x·tanh(softplus(x))) would instead be off
/// by |x| times its inner curve's last unit, growing without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Curve {
    Sigmoid,
    Tanh,
    Elu,
    Selu,
    Softplus,
    Softsign,
    Erf,
    Erfc,
    /// Defined with its unit in `ops/exp.rs`.
    Exp,
    /// 0.5·x·(1 + erf(x/√2)), GELU's exact form (Keras `approximate=False`, ONNX `Gelu`).
    Gelu,
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GELU's tanh form.
    GeluTanh,
    /// x·tanh(softplus(x)).
    Mish,
}

impl Curve {
    /// Every curve, in declaration order (so `curve as usize` indexes it).
    pub const ALL: [Curve; 12] = [
        Curve::Sigmoid,
        Curve::Tanh,
        Curve::Elu,
        Curve::Selu,
        Curve::Softplus,
        Curve::Softsign,
        Curve::Erf,
        Curve::Erfc,
        Curve::Exp,
        Curve::Gelu,
        Curve::GeluTanh,
        Curve::Mish,
    ];
}

// A curve added to the enum but not to `ALL` would index past the fitted table.
const _: () = assert!(Curve::Mish as usize + 1 == Curve::ALL.len());
const CURVES: usize = Curve::ALL.len();

impl Curve {
    pub fn piecewise(self) -> &'static compare::Piecewise {
        static FITTED: [OnceLock<compare::Piecewise>; CURVES] = [const { OnceLock::new() }; CURVES];
        FITTED[self as usize].get_or_init(|| self.fit())
    }

    /// The TensorFlow op it stands for.
    pub fn name(self) -> &'static str {
        match self {
            Curve::Sigmoid => "Sigmoid",
            Curve::Tanh => "Tanh",
            Curve::Elu => "Elu",
            Curve::Selu => "Selu",
            Curve::Softplus => "Softplus",
            Curve::Softsign => "Softsign",
            Curve::Erf => "Erf",
            Curve::Erfc => "Erfc",
            Curve::Exp => "Exp",
            Curve::Gelu => "Gelu",
            Curve::GeluTanh => "GeluTanh",
            Curve::Mish => "Mish",
        }
    }

    /// The largest |curve − function| over the whole real line, as the tests
    /// below measure it (on the fitted range's grid, and beyond it the tail's
    /// own bound), before the fixed point's rounding.
    pub fn documented_error(self) -> f64 {
        match self {
            Curve::Sigmoid => 6e-5,
            Curve::Tanh => 1e-4,
            Curve::Elu => 5e-5,
            Curve::Selu => 1e-4,
            Curve::Softplus => 6e-5,
            Curve::Softsign => 1e-3,
            Curve::Erf | Curve::Erfc => 1e-4,
            // Relative (e^x spans e^−12 to e^10): see `ops/exp.rs`.
            Curve::Exp => 1e-4,
            Curve::Gelu | Curve::GeluTanh | Curve::Mish => 6e-5,
        }
    }

    /// The function itself, in the clear: the plaintext meaning and the reference
    /// the fit is measured against.
    pub fn exact(self, x: f64) -> f64 {
        use crate::kernels::float;
        match self {
            Curve::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Curve::Tanh => x.tanh(),
            Curve::Elu => elu(x),
            Curve::Selu => SELU_SCALE * if x > 0.0 { x } else { SELU_ALPHA * x.exp_m1() },
            Curve::Softplus => float::softplus(x),
            Curve::Softsign => x / (1.0 + x.abs()),
            Curve::Erf => float::erf(x),
            Curve::Erfc => 1.0 - float::erf(x),
            Curve::Exp => x.exp(),
            Curve::Gelu => 0.5 * x * (1.0 + float::erf(x * std::f64::consts::FRAC_1_SQRT_2)),
            Curve::GeluTanh => 0.5 * x * (1.0 + (GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x)).tanh()),
            Curve::Mish => x * float::softplus(x).tanh(),
        }
    }

    fn fit(self) -> compare::Piecewise {
        let f = move |x| self.exact(x);
        match self {
            Curve::Sigmoid => compare::Piecewise::sigmoid(),
            Curve::Tanh => compare::Piecewise::tanh(),
            Curve::Softplus => compare::Piecewise::softplus(),
            // Exactly x from 0 on: only the negative side is fitted.
            Curve::Elu => compare::Piecewise::fit_exact(f, &negative_exp_breaks(), (-1.0, 0.0), (0.0, 1.0)),
            Curve::Selu => compare::Piecewise::fit_exact(
                f,
                &negative_exp_breaks(),
                (-SELU_SCALE * SELU_ALPHA, 0.0),
                (0.0, SELU_SCALE),
            ),
            Curve::Softsign => {
                compare::Piecewise::fit_exact(f, &symmetric(&softsign_breaks()), (-1.0, 0.0), (1.0, 0.0))
            }
            Curve::Erf => compare::Piecewise::fit_exact(f, &uniform_breaks(-4.0, 4.0, 20), (-1.0, 0.0), (1.0, 0.0)),
            // GELU's exact form exports 0.5·x·erfc(−x/√2).
            Curve::Erfc => compare::Piecewise::fit_exact(f, &uniform_breaks(-4.0, 4.0, 20), (2.0, 0.0), (0.0, 0.0)),
            Curve::Exp => super::exp::curve(),
            // 0 below and x above: GELU(x) → 0 and x as Φ(x) → 0 and 1.
            Curve::Gelu | Curve::GeluTanh => {
                compare::Piecewise::fit_exact(f, &symmetric(&gelu_breaks()), (0.0, 0.0), (0.0, 1.0))
            }
            Curve::Mish => compare::Piecewise::fit_exact(f, &mish_breaks(), (0.0, 0.0), (0.0, 1.0)),
        }
    }

    /// Its fitted range, its error there (measured on the grid of
    /// [`compare::Piecewise::max_error`]; relative for Exp, whose values span
    /// e^−12 to e^10) and its exact tails.
    pub fn how(self) -> How {
        let pw = self.piecewise();
        let (lo, hi) = (pw.breaks.first().copied().unwrap_or(0.0), pw.breaks.last().copied().unwrap_or(0.0));
        let error = match self {
            Curve::Exp => {
                let worst = (0..=100_000)
                    .map(|i| lo + (hi - lo) * i as f64 / 100_000.0)
                    .map(|x| ((pw.eval(x) - x.exp()) / x.exp()).abs())
                    .fold(0.0, f64::max);
                format!("max relative error {worst:.1e}")
            }
            _ => format!("max error {:.1e}", pw.max_error(|x| self.exact(x), lo, hi)),
        };
        let line = |c: f64, slope: f64| if slope == 0.0 { format!("{c}") } else { format!("{c} + {slope}·x") };
        How::Approximation {
            function: self.name(),
            range: [lo, hi],
            error,
            outside: format!(
                "exactly {} below, {} above",
                line(pw.below, pw.below_slope),
                line(pw.above, pw.above_slope)
            ),
        }
    }
}

fn elu(x: f64) -> f64 {
    if x > 0.0 { x } else { x.exp_m1() }
}

/// ELU's and SELU's negative side, e^x − 1 on [−16, 0]: segments that widen
/// away from 0 as the exponential's derivatives shrink.
fn negative_exp_breaks() -> Vec<f64> {
    vec![-16.0, -12.0, -9.0, -7.0, -5.5, -4.5, -3.75, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0]
}

/// GELU's positive side, [0, 5]: its bend is within |x| < 2, where the segments
/// are half as wide as beyond (a cubic per segment of 0.5 is off by at most
/// 5.2e-5 at the bend, 4.3e-5 on [3.5, 5]).
fn gelu_breaks() -> Vec<f64> {
    vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.75, 3.5, 5.0]
}

/// Mish on [−16, 8]: half-unit segments across its bend (−2.5, 2.5), widening
/// away from it on both sides as x·e^x and 2x·e^−2x decay.
fn mish_breaks() -> Vec<f64> {
    vec![
        -16.0, -11.0, -8.0, -6.0, -4.5, -3.5, -2.5, -1.75, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0,
        8.0,
    ]
}

/// Softsign's positive side, [0, 1024]: softsign(x) = 1 − 1/(1 + x) is smooth
/// but for the kink at 0, so the segments widen with 1 + x.
fn softsign_breaks() -> Vec<f64> {
    let mut t: Vec<f64> = vec![0.0];
    let mut width: f64 = 0.25;
    while *t.last().unwrap_or(&0.0) < 1024.0 {
        let next = (t.last().copied().unwrap_or(0.0) + width).min(1024.0);
        t.push(next);
        width *= 1.5;
    }
    t
}

/// An odd function's breakpoints from those of its positive side (starting at 0).
fn symmetric(positive: &[f64]) -> Vec<f64> {
    positive.iter().rev().filter(|&&t| t > 0.0).map(|t| -t).chain(positive.iter().copied()).collect()
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Piecewise {
    pub curve: Curve,
}

impl Piecewise {
    fn breaks(&self) -> usize {
        self.curve.piecewise().breaks.len()
    }
}

impl SecureOp for Piecewise {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let pw = self.curve.piecewise();
        by_chunks(ins[0], self.breaks(), |x| piecewise(s, x, pw, cx.fp))
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        let pw = self.curve.piecewise();
        for c in chunks(cx.in_shape(0).iter().product(), self.breaks()) {
            deal_piecewise(d, &[c.len()], pw, cx.fp)?;
        }
        Ok(())
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        let (breaks, w) = (self.breaks(), self.curve.piecewise().width(cx.fp));
        chunked_cost(cx.out_len(), breaks, |n| piecewise_many_cost(cx.comparison, n, breaks, 1, w))
    }

    fn pieces(&self, cx: &CostCx) -> usize {
        chunks(cx.out_len(), self.breaks()).len()
    }

    fn how(&self) -> How {
        self.curve.how()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where each curve's error is measured: its fitted range and past it on
    /// both sides (softsign's far tail, |x| > 4096, is bounded analytically:
    /// 1/(1 + |x|) < 2.5e-4).
    fn measured_range(curve: Curve) -> (f64, f64) {
        match curve {
            Curve::Softsign => (-4096.0, 4096.0),
            _ => (-40.0, 40.0),
        }
    }

    #[test]
    fn every_curve_is_within_its_documented_error_on_a_grid_and_beyond() {
        // Exp has its own unit and error test (`ops/exp.rs`).
        for curve in Curve::ALL.into_iter().filter(|c| *c != Curve::Exp) {
            let pw = curve.piecewise();
            let (lo, hi) = measured_range(curve);
            let err = pw.max_error(|x| curve.exact(x), lo, hi);
            // And segment by segment, each on a grid of its own.
            let (t0, tk) = (pw.breaks[0], pw.breaks[pw.breaks.len() - 1]);
            let fine =
                pw.breaks.windows(2).map(|w| pw.max_error(|x| curve.exact(x), w[0], w[1] - 1e-9)).fold(0.0, f64::max);
            eprintln!("{curve:?}: {} segments on [{t0}, {tk}], max error {:.2e}", pw.coeffs.len(), err.max(fine));
            assert!(err.max(fine) <= curve.documented_error(), "{curve:?}: {err} / {fine}");
        }
    }

    #[test]
    fn every_curve_has_its_exact_tails() {
        let exact = |curve: Curve, x: f64, want: f64| {
            let got = curve.piecewise().eval(x);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{curve:?}({x}) = {got}, not {want}");
        };
        for x in [-1e4, -100.0, -16.5] {
            exact(Curve::Elu, x, -1.0);
            exact(Curve::Selu, x, -SELU_SCALE * SELU_ALPHA);
        }
        for x in [0.0, 1e-3, 0.5, 7.0, 1e4] {
            exact(Curve::Elu, x, x);
            exact(Curve::Selu, x, SELU_SCALE * x);
        }
        for x in [1025.0, 1e6] {
            exact(Curve::Softsign, x, 1.0);
            exact(Curve::Softsign, -x, -1.0);
        }
        for x in [4.0, 10.0, 1e6] {
            exact(Curve::Erf, x, 1.0);
            exact(Curve::Erf, -x - 1e-3, -1.0);
            exact(Curve::Erfc, x, 0.0);
            exact(Curve::Erfc, -x - 1e-3, 2.0);
        }
        exact(Curve::Softplus, -11.0, 0.0);
        exact(Curve::Softplus, 1e3, 1e3);
        for curve in [Curve::Gelu, Curve::GeluTanh] {
            for x in [5.0, 5.5, 40.0, 1e6] {
                exact(curve, x, x);
                exact(curve, -x - 1e-3, 0.0);
            }
        }
        for x in [8.0, 9.0, 1e6] {
            exact(Curve::Mish, x, x);
        }
        for x in [-16.001, -100.0, -1e6] {
            exact(Curve::Mish, x, 0.0);
        }
    }

    /// The fused curves against the compositions they replace, in the clear:
    /// the same function (the exported constants are f32 roundings, 1e-7
    /// relative), so a fused model answers as its export.
    #[test]
    fn fused_curves_are_the_functions_their_exports_compose() {
        use crate::kernels::float::{erf, softplus};
        for i in -4000..=4000 {
            let x = f64::from(i) / 100.0;
            let composed = [
                (Curve::Gelu, 0.5 * x * (1.0 - erf(-x * std::f64::consts::FRAC_1_SQRT_2))),
                (Curve::GeluTanh, 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x.powi(3))).tanh())),
                (Curve::Mish, x * softplus(x).tanh()),
            ];
            for (curve, want) in composed {
                assert!((curve.exact(x) - want).abs() <= 1e-6 * x.abs().max(1.0), "{curve:?}({x})");
            }
        }
    }

    /// The fitted curves' breakpoints, centres and coefficients c_1..c_3 are on
    /// the 2^-16 grid: 16 fractional bits encode them exactly.
    #[test]
    fn fitted_curves_are_on_the_fixed_point_grid() {
        let on = |v: f64| (v * 65536.0).fract() == 0.0;
        for curve in [
            Curve::Elu,
            Curve::Selu,
            Curve::Softsign,
            Curve::Erf,
            Curve::Erfc,
            Curve::Gelu,
            Curve::GeluTanh,
            Curve::Mish,
        ] {
            let pw = curve.piecewise();
            assert!(pw.breaks.iter().chain(&pw.centres).all(|&v| on(v)), "{curve:?}: {:?} {:?}", pw.breaks, pw.centres);
            assert!(pw.coeffs.iter().all(|c| on(c[1]) && on(c[2]) && on(c[3])), "{curve:?}: {:?}", pw.coeffs);
        }
    }

    /// Exploration aid: every curve's segments and worst error per segment.
    #[test]
    #[ignore]
    fn print_curve_errors() {
        for curve in [
            Curve::Elu,
            Curve::Selu,
            Curve::Softsign,
            Curve::Erf,
            Curve::Erfc,
            Curve::Softplus,
            Curve::Gelu,
            Curve::GeluTanh,
            Curve::Mish,
        ] {
            let pw = curve.piecewise();
            let f = |x| curve.exact(x);
            eprintln!("{curve:?}: {} segments", pw.coeffs.len());
            for w in pw.breaks.windows(2) {
                eprintln!("  [{:9.4}, {:9.4}) {:.2e}", w[0], w[1], pw.max_error(f, w[0], w[1] - 1e-9));
            }
        }
    }
}
