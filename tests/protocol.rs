//! Tests of the Pond protocol (src/protocol) run between real party threads.
//!
//! Every primitive has a server half (run by server0 and server1 on additive shares)
//! and a dealer half (run by the dealer); the harness in `common/mpc.rs` runs the
//! three over the in-process transport, reconstructs the outputs and records what
//! each party received. The tests pin three kinds of property:
//!
//! 1. **Correctness** (proptest): each primitive, run securely, computes what its
//!    plaintext counterpart computes. Products and scaled sums are checked twice:
//!    *exactly* against the integer product of the fixed-point encodings (the
//!    truncation contract: within one unit in the last place of floor(Z / 2^f)),
//!    and against the real-valued result within the error the encoding explains.
//!    Comparisons (DReLU, ReLU, max, argmax) are exact: no tolerance at all.
//! 2. **Truncation at scale**: 10^7 truncations near the documented bound
//!    |z| < 2^62, none off by more than one unit.
//! 3. **Security**: what a server receives from the other server and from the
//!    dealer — and what it learns from an exchange, its own message combined with
//!    the other's — is uniform (chi-square) and distributed the same for very
//!    different inputs (two-sample chi-square); no word repeats (a reused mask);
//!    server 0 never hears from the dealer; and on a real model (testdata/mlp.pb)
//!    no plaintext value — an input pixel, a weight, an output logit — appears as a
//!    word of any server's transcript or openings.
//!
//! Fixed point: f = 16 (`FixedPoint::default()`) unless a test says otherwise.
//! Correctness tests draw fresh OS seeds; the statistical view tests use fixed
//! (pseudorandom) keys and inputs from one seed, printed in their output and
//! overridable with `TFE_TEST_SEED=N`, so their verdict is reproducible and a
//! failure can be replayed.

mod common;
#[path = "common/mpc.rs"]
mod mpc;

use std::collections::{BTreeMap, HashSet};
use std::num::Wrapping;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use mpc::{Keys, Recording, Run, labelled, ring, run, run_shares, run1, signed};
use tfe_run::kernels::{Layout, Padding, Window, linear};
use tfe_run::ops::{pool_groups, reduce_groups};
use tfe_run::plan::{Op, Plan, ValueId};
use tfe_run::protocol::compare::{self, drelu_correction_words, drelu_open_words};
use tfe_run::protocol::mul::{self, Masked};
use tfe_run::protocol::{Dealer, Server, Width, trunc};
use tfe_run::ring::{FixedPoint, RingTensor, Z, from_words, os_seed};
use tfe_run::transport::{Party, Transport, encode_words};

/// Fractional bits used throughout (the default encoding).
const F: u32 = 16;
/// Half a unit in the last place: the rounding error of one encoded input.
const HALF_ULP: f64 = 1.0 / (1u64 << (F + 1)) as f64;
const ULP: f64 = 1.0 / (1u64 << F) as f64;

fn fp() -> FixedPoint {
    FixedPoint::default()
}

/// Proptest settings: a modest number of cases (every case runs three threads and
/// several rounds), and no regression files written next to the tests.
fn cases(n: u32) -> Config {
    Config { cases: n, failure_persistence: None, ..Config::default() }
}

// ---- plaintext helpers -----------------------------------------------------

/// `n` reals uniform in [−scale, scale], from a seed (proptest shrinks the shapes;
/// the seed reproduces the values).
fn reals(seed: &[u8; 32], stream: u64, n: usize, scale: f64) -> Vec<f64> {
    labelled(seed, stream)
        .words(n)
        .into_iter()
        .map(|w| ((w >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale)
        .collect()
}

fn array<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
}

/// Encode reals (round to nearest 2^-16) as raw signed integers.
fn encode_raw(x: &ArrayD<f64>) -> ArrayD<i64> {
    x.mapv(|v| fp().encode_value(v).0 as i64)
}

fn to_ring(x: &ArrayD<i64>) -> RingTensor {
    x.mapv(|v| Wrapping(v as u64))
}

fn to_i128(x: &ArrayD<i64>) -> ArrayD<i128> {
    x.mapv(i128::from)
}

/// `a @ b` (with TensorFlow's transpose flags) by definition, for any numbers.
fn matmul_direct<T: Copy + num_traits::Zero + std::ops::Mul<Output = T>>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    transpose_a: bool,
    transpose_b: bool,
) -> ArrayD<T> {
    let a = a.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
    let b = b.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
    let a = if transpose_a { a.reversed_axes() } else { a };
    let b = if transpose_b { b.reversed_axes() } else { b };
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    ArrayD::from_shape_fn(IxDyn(&[m, n]), |i| (0..k).fold(T::zero(), |acc, j| acc + a[[i[0], j]] * b[[j, i[1]]]))
}

/// Conv2D by its definition (NHWC input, HWIO filter, TensorFlow's padding): a
/// reference independent of the im2col kernel and the GEMM the protocol uses.
fn conv_direct<T: Copy + num_traits::Zero + std::ops::Mul<Output = T>>(
    x: &ArrayD<T>,
    f: &ArrayD<T>,
    win: &Window,
) -> ArrayD<T> {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let oc = f.shape()[3];
    let g = win.geometry([h, w]).expect("geometry");
    ArrayD::from_shape_fn(IxDyn(&[n, g.out[0], g.out[1], oc]), |i| {
        let mut acc = T::zero();
        for ky in 0..win.kernel[0] {
            for kx in 0..win.kernel[1] {
                let iy = (i[1] * win.strides[0] + ky * win.dilations[0]) as isize - g.pad[0] as isize;
                let ix = (i[2] * win.strides[1] + kx * win.dilations[1]) as isize - g.pad[1] as isize;
                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                    continue;
                }
                for ci in 0..c {
                    acc = acc + x[[i[0], iy as usize, ix as usize, ci]] * f[[ky, kx, ci, i[3]]];
                }
            }
        }
        acc
    })
}

/// A product op's bilinear map by definition, on exact integers (i128: the ring
/// semantics without the wrap) or on reals (f64), independently of the ring
/// kernels the protocol uses (`kernels::linear`'s im2col and GEMM).
fn bilinear_direct<T>(op: &Op, x: &ArrayD<T>, y: &ArrayD<T>) -> ArrayD<T>
where
    T: Copy + num_traits::Zero + std::ops::Mul<Output = T>,
    for<'a> &'a ArrayD<T>: std::ops::Mul<&'a ArrayD<T>, Output = ArrayD<T>>,
{
    match op {
        Op::MatMul { transpose_a, transpose_b } => matmul_direct(x, y, *transpose_a, *transpose_b),
        Op::Conv2D(w) => conv_direct(x, y, w),
        Op::Mul => x * y,
        other => unreachable!("{} is not a product", other.name()),
    }
}

/// The input rows/columns an output pixel's pooling window covers (padding
/// excluded), from TensorFlow's geometry: independent of `pool_groups`.
fn pool_window(win: &Window, pad: [usize; 2], hw: [usize; 2], o: [usize; 2]) -> [Vec<usize>; 2] {
    let axis = |a: usize| {
        let start = (o[a] * win.strides[a]) as isize - pad[a] as isize;
        (start..start + win.kernel[a] as isize).filter(|&i| i >= 0 && i < hw[a] as isize).map(|i| i as usize).collect()
    };
    [axis(0), axis(1)]
}

// ---- the secure halves the tests compose -----------------------------------

/// Server half of "x ⊗ y, then truncate by 2^f": each private operand is masked by
/// its mask of prediction 1 (value ids 0, 1, as the runtime masks activations), the
/// masked values are opened in one round, then `mul::product` and
/// `trunc::truncate`. With one input, the product is x ⊗ x (one mask used twice,
/// as the runtime does for `Mul(v, v)`).
fn server_product(s: &mut Server, op: &Op, ins: Vec<RingTensor>, out_shape: &[usize], f: u32) -> Result<RingTensor> {
    let masks: Vec<RingTensor> = ins.iter().enumerate().map(|(id, x)| s.mask(1, id as u32, x.shape())).collect();
    let diffs: Vec<RingTensor> = ins.iter().zip(&masks).map(|(x, a)| x - a).collect();
    let opened = s.open(&diffs.iter().collect::<Vec<_>>())?;
    let m: Vec<Masked> = masks.into_iter().zip(opened).map(|(mask, opened)| Masked { mask, opened }).collect();
    let map = tfe_run::ops::Product::map_of(op).expect("a product op");
    let z = mul::product(s, &map, &m[0], m.get(1).unwrap_or(&m[0]), out_shape)?;
    trunc::truncate(s, &z, f)
}

/// Dealer half of [`server_product`]: the whole masks, the product triple, the
/// truncation pair.
fn deal_product(d: &mut Dealer, op: &Op, shapes: &[Vec<usize>], out_shape: &[usize], f: u32) -> Result<()> {
    let masks: Vec<RingTensor> = shapes.iter().enumerate().map(|(id, sh)| d.mask(1, id as u32, sh)).collect();
    let map = tfe_run::ops::Product::map_of(op).expect("a product op");
    mul::deal_product(d, &map, &masks[0], masks.get(1).unwrap_or(&masks[0]))?;
    trunc::deal_truncate(d, out_shape, f)
}

/// Run a truncated product securely on plaintext ring inputs.
fn secure_product(keys: &Keys, op: &Op, ins: &[RingTensor], out_shape: &[usize]) -> Run {
    let shapes: Vec<Vec<usize>> = ins.iter().map(|x| x.shape().to_vec()).collect();
    run(
        keys,
        ins,
        |s, xs| Ok(vec![server_product(s, op, xs, out_shape, F)?]),
        |d| deal_product(d, op, &shapes, out_shape, F),
    )
}

/// Check a secure truncated result against the exact integer result `exact` (2f
/// fractional bits): secure − floor(exact / 2^f) must be −1, 0 or 1 — and against
/// the real-valued result within `tol`.
fn check_truncated(
    what: &str,
    secure: &RingTensor,
    exact: &ArrayD<i128>,
    real: &ArrayD<f64>,
    tol: f64,
) -> Result<(), TestCaseError> {
    check_truncated_by(what, secure, exact, F, real, tol)
}

/// [`check_truncated`] for a result truncated by 2^shift (f + extra bits).
fn check_truncated_by(
    what: &str,
    secure: &RingTensor,
    exact: &ArrayD<i128>,
    shift: u32,
    real: &ArrayD<f64>,
    tol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(secure.shape(), exact.shape(), "{}: shape", what);
    prop_assert_eq!(secure.shape(), real.shape(), "{}: shape", what);
    for (i, ((s, &e), &r)) in secure.iter().zip(exact).zip(real).enumerate() {
        let s = s.0 as i64;
        prop_assert!(e.abs() < 1i128 << 62, "{}: test bug, exact value {} out of the documented range", what, e);
        let floor = (e >> shift) as i64;
        prop_assert!(
            (s - floor).abs() <= 1,
            "{}: element {}: secure raw {} but floor(Z / 2^{}) = {} (Z = {})",
            what,
            i,
            s,
            shift,
            floor,
            e
        );
        let got = s as f64 * ULP;
        prop_assert!(
            (got - r).abs() <= tol,
            "{}: element {}: secure {} vs real {} (tolerance {})",
            what,
            i,
            got,
            r,
            tol
        );
    }
    Ok(())
}

/// Run a product on random reals of magnitude up to 2^ex and 2^ey (clamped so the
/// accumulated integer products stay below 2^61) and check it both ways.
fn check_product(
    op: &Op,
    shapes: [&[usize]; 2],
    terms: usize,
    ex: i32,
    ey: i32,
    seed: &[u8; 32],
) -> Result<(), TestCaseError> {
    // Keep terms · 2^(ex + ey + 2f) < 2^61.
    let log_terms = (usize::BITS - terms.next_power_of_two().leading_zeros()) as i32;
    let ey = ey.min(61 - 2 * F as i32 - log_terms - ex);
    let (sx, sy) = (2f64.powi(ex), 2f64.powi(ey));
    let xr = array(shapes[0], reals(seed, 1, shapes[0].iter().product(), sx));
    let yr = array(shapes[1], reals(seed, 2, shapes[1].iter().product(), sy));
    let (xe, ye) = (encode_raw(&xr), encode_raw(&yr));
    let out_shape = op.output_shape(&[shapes[0], shapes[1]]).map_err(TestCaseError::fail)?;
    let run = secure_product(&Keys::fresh(), op, &[to_ring(&xe), to_ring(&ye)], &out_shape);
    let exact = bilinear_direct(op, &to_i128(&xe), &to_i128(&ye));
    let real = bilinear_direct(op, &xr, &yr);
    // Each term x·y is off by at most |x|δ + |y|δ + δ² after encoding (δ half an
    // ulp); the truncation adds at most two ulps (floor, then ±1); f64 itself
    // rounds the reference by a relative 2^-52 per term.
    let t = terms as f64;
    let tol = t * (sx + sy) * HALF_ULP + t * HALF_ULP * HALF_ULP + 2.0 * ULP + 1e-12 * t * sx * sy;
    check_truncated(op.name(), run.output(), &exact, &real, tol)
}

// ---- 1. correctness: products ----------------------------------------------

/// Two broadcast-compatible shapes: a base shape, each operand keeping or
/// collapsing each axis to 1, and the second possibly of lower rank.
fn broadcast_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (prop::collection::vec(1usize..=4, 1..=3), any::<u8>(), any::<u8>(), 0usize..=2).prop_map(|(base, mx, my, drop)| {
        let keep = |m: u8| -> Vec<usize> {
            base.iter().enumerate().map(|(i, &d)| if (m >> i) & 1 == 1 { 1 } else { d }).collect()
        };
        let (xs, mut ys) = (keep(mx), keep(my));
        let drop = drop.min(ys.len() - 1);
        ys.drain(..drop);
        (xs, ys)
    })
}

proptest! {
    #![proptest_config(cases(48))]

    /// Element-wise Mul with NumPy broadcasting (either operand, and rank
    /// broadcasting), through masked Beaver products and truncation.
    #[test]
    fn mul_with_broadcasting_matches_plaintext(
        (xs, ys) in broadcast_shapes(),
        ex in -2i32..=14,
        ey in -2i32..=14,
        seed in any::<[u8; 32]>(),
    ) {
        check_product(&Op::Mul, [&xs, &ys], 1, ex, ey, &seed)?;
    }

    /// MatMul with every combination of transpose flags.
    #[test]
    fn matmul_matches_plaintext(
        m in 1usize..=6,
        k in 1usize..=16,
        n in 1usize..=6,
        transpose_a in any::<bool>(),
        transpose_b in any::<bool>(),
        ex in -2i32..=12,
        ey in -2i32..=12,
        seed in any::<[u8; 32]>(),
    ) {
        let a = if transpose_a { vec![k, m] } else { vec![m, k] };
        let b = if transpose_b { vec![n, k] } else { vec![k, n] };
        let op = Op::MatMul { transpose_a, transpose_b };
        check_product(&op, [&a, &b], k, ex, ey, &seed)?;
    }

    /// Conv2D on small random shapes: strides 1–2, dilations 1–2, SAME and VALID.
    #[test]
    fn conv2d_matches_plaintext(
        n in 1usize..=2,
        h in 1usize..=7,
        w in 1usize..=7,
        c in 1usize..=3,
        kernel in [1usize..=3, 1usize..=3],
        oc in 1usize..=3,
        strides in [1usize..=2, 1usize..=2],
        dilations in [1usize..=2, 1usize..=2],
        same in any::<bool>(),
        ex in -2i32..=10,
        ey in -2i32..=10,
        seed in any::<[u8; 32]>(),
    ) {
        let win = Window {
            kernel,
            strides,
            dilations,
            padding: if same { Padding::Same } else { Padding::Valid },
            layout: Layout::Nhwc,
        };
        let g = win.geometry([h, w]);
        prop_assume!(g.is_some_and(|g| g.out[0] > 0 && g.out[1] > 0));
        let x = [n, h, w, c];
        let f = [kernel[0], kernel[1], c, oc];
        check_product(&Op::Conv2D(win), [&x, &f], kernel[0] * kernel[1] * c, ex, ey, &seed)?;
    }
}

proptest! {
    #![proptest_config(cases(40))]

    /// `mul_many`: d·x for several x at once (d broadcast against each x, the
    /// runtime's use is a DReLU bit times the values it selects) is the exact ring
    /// product, for any ring elements — no fixed point, no truncation.
    #[test]
    fn mul_many_is_the_exact_ring_product(
        (d_shape, x_shape) in broadcast_shapes(),
        operands in 1usize..=3,
        seed in any::<[u8; 32]>(),
    ) {
        let mut prg = labelled(&seed, 11);
        let d = prg.tensor(&d_shape);
        let xs: Vec<RingTensor> = (0..operands).map(|_| prg.tensor(&x_shape)).collect();
        let mut inputs = vec![d.clone()];
        inputs.extend(xs.iter().cloned());
        let x_shapes: Vec<&[usize]> = vec![&x_shape; operands];
        let run = run(
            &Keys::fresh(),
            &inputs,
            |s, v| mul::mul_many(s, &v[0], &v[1..].iter().collect::<Vec<_>>()),
            |dl| mul::deal_mul_many(dl, &d_shape, &x_shapes),
        );
        prop_assert_eq!(run.outputs.len(), operands);
        for (x, got) in xs.iter().zip(&run.outputs) {
            prop_assert_eq!(got, &(&d * x));
        }
    }

    /// `mul_pairs`: element-wise products of several same-shape pairs in one
    /// round, exact in the ring.
    #[test]
    fn mul_pairs_is_the_exact_ring_product(
        shapes in prop::collection::vec(prop::collection::vec(1usize..=5, 1..=3), 1..=3),
        seed in any::<[u8; 32]>(),
    ) {
        let mut prg = labelled(&seed, 12);
        let mut inputs = Vec::new();
        for sh in &shapes {
            inputs.push(prg.tensor(sh));
            inputs.push(prg.tensor(sh));
        }
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let run = run(
            &Keys::fresh(),
            &inputs,
            |s, v| {
                let pairs: Vec<(&RingTensor, &RingTensor)> =
                    v.chunks(2).map(|p| (&p[0], &p[1])).collect();
                mul::mul_pairs(s, &pairs)
            },
            |dl| mul::deal_mul_pairs(dl, &refs),
        );
        prop_assert_eq!(run.outputs.len(), shapes.len());
        for (j, got) in run.outputs.iter().enumerate() {
            prop_assert_eq!(got, &(&inputs[2 * j] * &inputs[2 * j + 1]));
        }
    }
}

/// x·x with a single mask used for both operands (the runtime's `Mul(v, v)`): the
/// dealer's triple is a ⊗ a, and the result is still the square.
#[test]
fn square_with_one_mask_matches_plaintext() {
    let seed = os_seed().unwrap();
    let xr = array(&[5, 7], reals(&seed, 1, 35, 1000.0));
    let xe = encode_raw(&xr);
    let run = secure_product(&Keys::fresh(), &Op::Mul, &[to_ring(&xe)], &[5, 7]);
    let exact = to_i128(&xe).mapv(|v| v * v);
    let real = &xr * &xr;
    check_truncated("x·x", run.output(), &exact, &real, 2000.0 * HALF_ULP + 3.0 * ULP).unwrap();
}

// ---- 1. correctness: truncation, ReLU, DReLU -------------------------------

/// Signed 64-bit values at and around every boundary that matters: zero, one ulp,
/// the real bound 2^30 (raw 2^46), the truncation bound 2^62, the ring's ends.
fn special_values() -> Vec<i64> {
    let mut v = vec![0, 1, -1, 2, -2, i64::MAX, i64::MIN, i64::MIN + 1, i64::MAX - 1];
    for e in [16, 31, 32, 46, 47, 62, 63] {
        let p = if e == 63 { i64::MAX } else { 1i64 << e };
        for d in [-1i64, 0, 1] {
            v.push(p.wrapping_add(d));
            v.push(p.wrapping_add(d).wrapping_neg());
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Any signed value, weighted towards small magnitudes and the boundaries.
fn ring_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -(1i64 << 20)..(1i64 << 20),
        -(1i64 << 47)..(1i64 << 47),
        prop::sample::select(special_values()),
    ]
}

/// A value within the truncation bound |z| < 2^62.
fn truncatable() -> impl Strategy<Value = i64> {
    let bound = (1i64 << 62) - 1;
    prop_oneof![
        -bound..=bound,
        -(1i64 << 40)..(1i64 << 40),
        (bound - (1i64 << 20))..=bound,
        -bound..=(-bound + (1i64 << 20)),
        prop::sample::select(special_values().into_iter().filter(|v| v.unsigned_abs() < 1 << 62).collect::<Vec<_>>()),
    ]
}

fn secure_truncate(keys: &Keys, z: &RingTensor, f: u32) -> Run {
    let shape = z.shape().to_vec();
    run1(keys, z, |s, z| trunc::truncate(s, &z, f), |d| trunc::deal_truncate(d, &shape, f))
}

fn secure_relu(keys: &Keys, x: &RingTensor) -> Run {
    secure_relu_of_width(keys, x, Width::RING)
}

fn secure_relu_of_width(keys: &Keys, x: &RingTensor, w: Width) -> Run {
    let shape = x.shape().to_vec();
    run1(keys, x, |s, x| compare::relu(s, &x, w), |d| compare::deal_relu(d, &shape, w))
}

/// Shares of `x` split by `splits` (x0 = split, x1 = x − split), through DReLU
/// of width `w`.
fn secure_drelu_of_width(x: &[i64], splits: &[u64], w: Width) -> Run {
    let n = x.len();
    let x1 = x.iter().zip(splits).map(|(&x, &a)| (x as u64).wrapping_sub(a)).collect();
    run_shares(
        &Keys::fresh(),
        [vec![from_words(&[n], splits.to_vec())], vec![from_words(&[n], x1)]],
        |s, mut xs| Ok(vec![compare::drelu(s, &xs.remove(0), w)?]),
        |d| compare::deal_drelu(d, n, w),
    )
}

/// A width of 2 to 64 bits and values it admits, weighted towards its edges,
/// with share splits that are random or put the edge of the low bits' carry
/// in play (low bits of x0 all ones or zero).
fn narrow_case() -> impl Strategy<Value = (u32, Vec<i64>, Vec<u64>)> {
    (2u32..=64).prop_flat_map(|bits| {
        let top = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
        let value = prop_oneof![
            -top - 1..=top,
            -(1i64 << 10).min(top)..=(1i64 << 10).min(top),
            prop::sample::select(vec![0, 1, -1, top, top - 1, -top, -top - 1]),
        ];
        let split = prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX), Just((1u64 << (bits - 1)) - 1)];
        (Just(bits), prop::collection::vec((value, split), 1..200))
            .prop_map(|(bits, pairs)| (bits, pairs.iter().map(|p| p.0).collect(), pairs.iter().map(|p| p.1).collect()))
    })
}

proptest! {
    #![proptest_config(cases(64))]

    /// Truncation alone, for every supported number of fractional bits: within one
    /// unit of floor(z / 2^f) for every z with |z| < 2^62 (module trunc's contract).
    #[test]
    fn truncation_is_within_one_unit(
        z in prop::collection::vec(truncatable(), 1..200),
        f in FixedPoint::MIN_FRAC_BITS..=FixedPoint::MAX_FRAC_BITS,
    ) {
        let run = secure_truncate(&Keys::fresh(), &ring(&[z.len()], z.iter().copied()), f);
        for (i, (&z, got)) in z.iter().zip(signed(run.output())).enumerate() {
            let want = z >> f;
            prop_assert!(
                (got - want).abs() <= 1,
                "element {}: {} >> {} = {} but the protocol gave {}", i, z, f, want, got
            );
        }
    }

    /// ReLU is exact over the whole ring: max(x, 0) for x read as a signed 64-bit
    /// integer, for every x (DReLU has no range restriction, and d·x is exact).
    #[test]
    fn relu_is_exact(x in prop::collection::vec(ring_value(), 1..300)) {
        let run = secure_relu(&Keys::fresh(), &ring(&[x.len()], x.iter().copied()));
        for (i, (&x, got)) in x.iter().zip(signed(run.output())).enumerate() {
            prop_assert_eq!(got, x.max(0), "element {} (x = {})", i, x);
        }
    }

    /// DReLU for chosen share splits, including the carry boundary of its
    /// millionaires' comparison: low63(x0) + low63(x1) = 2^63 − 1 + δ for small δ
    /// (u and v equal or adjacent), with either top bit.
    #[test]
    fn drelu_is_exact_for_any_split(
        splits in prop::collection::vec(
            (any::<u64>(), -2i64..=2, any::<bool>(), any::<bool>(), any::<u64>()),
            1..150,
        ),
    ) {
        const LOW: u64 = (1 << 63) - 1;
        let (mut x0, mut x1) = (Vec::new(), Vec::new());
        for &(a, delta, boundary, top, b) in &splits {
            x0.push(a);
            x1.push(if boundary {
                ((LOW - (a & LOW)).wrapping_add(delta as u64) & LOW) | (u64::from(top) << 63)
            } else {
                b
            });
        }
        let n = x0.len();
        let shares = [
            vec![from_words(&[n], x0.clone())],
            vec![from_words(&[n], x1.clone())],
        ];
        let run = run_shares(
            &Keys::fresh(),
            shares,
            |s, mut xs| Ok(vec![compare::drelu(s, &xs.remove(0), Width::RING)?]),
            |d| compare::deal_drelu(d, n, Width::RING),
        );
        for (i, got) in signed(run.output()).into_iter().enumerate() {
            let x = x0[i].wrapping_add(x1[i]) as i64;
            prop_assert_eq!(got, i64::from(x >= 0), "x0 = {:#x}, x1 = {:#x}, x = {}", x0[i], x1[i], x);
        }
    }

    /// A comparison of any width 2–64 is exact for every value the width
    /// admits, under any split of the shares: DReLU and ReLU.
    #[test]
    fn drelu_and_relu_of_any_width_are_exact_on_what_it_admits((bits, x, splits) in narrow_case()) {
        let w = Width::new(bits).unwrap();
        let d = secure_drelu_of_width(&x, &splits, w);
        let r = secure_relu_of_width(&Keys::fresh(), &ring(&[x.len()], x.iter().copied()), w);
        for (i, (&x, (dg, rg))) in x.iter().zip(signed(d.output()).into_iter().zip(signed(r.output()))).enumerate() {
            prop_assert!(w.contains(x));
            prop_assert_eq!(dg, i64::from(x >= 0), "{} bits, element {}: DReLU({})", bits, i, x);
            prop_assert_eq!(rg, x.max(0), "{} bits, element {}: ReLU({})", bits, i, x);
        }
    }
}

/// The width values of a computation are compared at (64 − f bits) is exact at
/// its edges, ±(2^(63−f) − 1) and −2^(63−f), under every kind of split; one
/// past them is outside it, and the comparison reads only the low bits, as
/// documented: 2^(63−f) compares as negative.
#[test]
fn an_in_range_comparison_is_exact_to_its_edges_and_reads_only_its_bits() {
    for frac_bits in [FixedPoint::MIN_FRAC_BITS, F, FixedPoint::MAX_FRAC_BITS] {
        let w = Width::in_range(FixedPoint { frac_bits });
        assert_eq!(w.bits(), 64 - frac_bits);
        let edge = 1i64 << (w.bits() - 1);
        let values = [0, 1, -1, edge - 1, -edge, -edge + 1, (FixedPoint { frac_bits }.bound() as i64) << frac_bits];
        let mut x = Vec::new();
        let mut splits = Vec::new();
        for &v in &values {
            for a in [0, 1, u64::MAX, (edge as u64) - 1, edge as u64, 1 << 63, 0x1234_5678_9abc_def0] {
                x.push(v);
                splits.push(a);
            }
        }
        let got = signed(secure_drelu_of_width(&x, &splits, w).output());
        for (i, (&v, g)) in x.iter().zip(&got).enumerate() {
            assert_eq!(*g, i64::from(v >= 0), "{frac_bits} fractional bits, element {i}: DReLU({v})");
        }
        let outside = secure_drelu_of_width(&[edge], &[12345], w);
        assert_eq!(signed(outside.output()), [0], "2^(63−f) is outside: its bit 63 − f reads as a sign");
    }
}

/// DReLU at the edges, each under several share splits (random, one share zero,
/// shares with the top bit set or all ones): 1 exactly for x ≥ 0, 0 for x < 0.
#[test]
fn drelu_edge_cases() {
    let values = special_values();
    let mut x0 = Vec::new();
    let mut x1 = Vec::new();
    let mut xs = Vec::new();
    let mut prg = labelled(&os_seed().unwrap(), 0);
    for &x in &values {
        let x = x as u64;
        let random = prg.words(4);
        for a in [0, x, 1, u64::MAX, 1 << 63, (1 << 63) - 1, x ^ (1 << 63), random[0], random[1], random[2], random[3]]
        {
            xs.push(x as i64);
            x0.push(a);
            x1.push(x.wrapping_sub(a));
        }
    }
    let n = xs.len();
    let run = run_shares(
        &Keys::fresh(),
        [vec![from_words(&[n], x0)], vec![from_words(&[n], x1)]],
        |s, mut v| Ok(vec![compare::drelu(s, &v.remove(0), Width::RING)?]),
        |d| compare::deal_drelu(d, n, Width::RING),
    );
    let got = signed(run.output());
    let wrong: Vec<String> = xs
        .iter()
        .zip(&got)
        .filter(|(x, g)| **g != i64::from(**x >= 0))
        .map(|(x, g)| format!("x = {x} gave {g}"))
        .collect();
    assert!(wrong.is_empty(), "DReLU wrong for: {wrong:?}");
    // And the same values as plain random shares, through ReLU.
    let x = ring(&[values.len()], values.iter().copied());
    let relu = secure_relu(&Keys::fresh(), &x);
    for (&v, got) in values.iter().zip(signed(relu.output())) {
        assert_eq!(got, v.max(0), "ReLU({v})");
    }
}

/// A primitive on an empty tensor (a zero-sized batch) is a no-op, not a crash.
///
/// (The DReLU before commit 7934c49 panicked here on server 1: `words.chunks(0)`.)
#[test]
fn relu_of_empty_tensor_is_empty() {
    let x = ring(&[0, 3], []);
    let run = secure_relu(&Keys::fresh(), &x);
    assert_eq!(run.output().shape(), &[0, 3]);
}

/// Truncation of an empty tensor (the same edge, on the product path).
#[test]
fn truncation_of_empty_tensor_is_empty() {
    let z = ring(&[0], []);
    let run = secure_truncate(&Keys::fresh(), &z, F);
    assert_eq!(run.output().shape(), &[0]);
}

// ---- 1. correctness: max, argmax, pools ------------------------------------

/// Values for tournaments: wide (differences stay inside ±2^63) or from a tiny
/// set, so that ties are common and the tie rule (first maximum) is exercised.
fn tournament_values(seed: &[u8; 32], n: usize, ties: bool) -> Vec<i64> {
    labelled(seed, 7)
        .words(n)
        .into_iter()
        .map(|w| if ties { ((w % 5) as i64 - 2) << F } else { (w as i64) >> 2 })
        .collect()
}

fn secure_tournament(x: &RingTensor, groups: &[Vec<usize>], with_index: bool) -> (RingTensor, Option<RingTensor>) {
    let run = run(
        &Keys::fresh(),
        std::slice::from_ref(x),
        |s, xs| {
            let (max, index) = compare::tournament(s, &xs[0], groups, with_index, Width::RING)?;
            Ok(std::iter::once(max).chain(index).collect())
        },
        |d| compare::deal_tournament(d, groups, with_index, Width::RING),
    );
    let mut out = run.outputs.into_iter();
    (out.next().expect("max"), out.next())
}

proptest! {
    #![proptest_config(cases(40))]

    /// MaxPool (NHWC, SAME and VALID, strides 1–3): groups from
    /// `ops::pool_groups`, the maximum checked exactly against a direct pool.
    #[test]
    fn maxpool_is_exact(
        n in 1usize..=2,
        h in 1usize..=6,
        w in 1usize..=6,
        c in 1usize..=2,
        kernel in [1usize..=3, 1usize..=3],
        strides in [1usize..=3, 1usize..=3],
        same in any::<bool>(),
        ties in any::<bool>(),
        seed in any::<[u8; 32]>(),
    ) {
        let win = Window {
            kernel,
            strides,
            dilations: [1, 1],
            padding: if same { Padding::Same } else { Padding::Valid },
            layout: Layout::Nhwc,
        };
        let g = win.geometry([h, w]);
        prop_assume!(g.is_some_and(|g| g.out[0] > 0 && g.out[1] > 0));
        let g = g.unwrap();
        let shape = [n, h, w, c];
        let xv = array(&shape, tournament_values(&seed, n * h * w * c, ties));
        let groups = pool_groups(&shape, &win);
        let (max, _) = secure_tournament(&to_ring(&xv), &groups, false);
        let got = signed(&max);
        let mut k = 0;
        for b in 0..n {
            for oy in 0..g.out[0] {
                for ox in 0..g.out[1] {
                    let [ys, xs] = pool_window(&win, g.pad, [h, w], [oy, ox]);
                    for ch in 0..c {
                        let want = ys
                            .iter()
                            .flat_map(|&iy| xs.iter().map(move |&ix| (iy, ix)))
                            .map(|(iy, ix)| xv[[b, iy, ix, ch]])
                            .max()
                            .expect("window covers a pixel");
                        prop_assert_eq!(got[k], want, "output ({}, {}, {}, {})", b, oy, ox, ch);
                        k += 1;
                    }
                }
            }
        }
        prop_assert_eq!(k, got.len());
    }

    /// Max over any non-empty set of axes (groups from `ops::reduce_groups`).
    #[test]
    fn max_reduction_is_exact(
        shape in prop::collection::vec(1usize..=5, 1..=3),
        axes_mask in 1u8..8,
        ties in any::<bool>(),
        seed in any::<[u8; 32]>(),
    ) {
        let axes: Vec<usize> = (0..shape.len()).filter(|a| (axes_mask >> a) & 1 == 1).collect();
        prop_assume!(!axes.is_empty());
        let xv = array(&shape, tournament_values(&seed, shape.iter().product(), ties));
        let groups = reduce_groups(&shape, &axes);
        let (max, _) = secure_tournament(&to_ring(&xv), &groups, false);
        let mut want = xv.clone();
        for &a in axes.iter().rev() {
            want = want.fold_axis(Axis(a), i64::MIN, |m, &v| (*m).max(v));
        }
        prop_assert_eq!(signed(&max), want.iter().copied().collect::<Vec<_>>());
    }

    /// ArgMax (tournament with indices): the position of the *first* maximum, as
    /// TensorFlow's ArgMax, and the maximum itself.
    #[test]
    fn argmax_is_exact_and_keeps_the_first_maximum(
        shape in prop::collection::vec(1usize..=6, 1..=3),
        axis_pick in any::<prop::sample::Index>(),
        ties in any::<bool>(),
        seed in any::<[u8; 32]>(),
    ) {
        let axis = axis_pick.index(shape.len());
        let xv = array(&shape, tournament_values(&seed, shape.iter().product(), ties));
        let groups = reduce_groups(&shape, &[axis]);
        let (max, index) = secure_tournament(&to_ring(&xv), &groups, true);
        let lanes: Vec<Vec<i64>> = xv.lanes(Axis(axis)).into_iter().map(|l| l.to_vec()).collect();
        let want_max: Vec<i64> = lanes.iter().map(|l| *l.iter().max().unwrap()).collect();
        let want_index: Vec<i64> = lanes
            .iter()
            .map(|l| {
                let m = l.iter().max().unwrap();
                l.iter().position(|v| v == m).unwrap() as i64
            })
            .collect();
        prop_assert_eq!(signed(&max), want_max);
        prop_assert_eq!(signed(&index.expect("index")), want_index);
    }

    /// AvgPool as the runtime computes it (`party::scaled_sum`, private, mirrored
    /// here): a local window sum on shares times the public 1/count (padding not
    /// counted) encoded with f + e fractional bits, e = ⌈log2(kernel size)⌉, then
    /// truncation by f + e. Exact against the integer computation; close to the
    /// real mean — within the error that encoding promises (1/count off by at most
    /// 2^−(f+e+1), so the mean by at most scale · 2^−(f+1)).
    #[test]
    fn avgpool_matches_plaintext(
        n in 1usize..=2,
        h in 1usize..=6,
        w in 1usize..=6,
        c in 1usize..=2,
        kernel in [1usize..=3, 1usize..=3],
        strides in [1usize..=3, 1usize..=3],
        same in any::<bool>(),
        ex in -2i32..=20,
        seed in any::<[u8; 32]>(),
    ) {
        let win = Window {
            kernel,
            strides,
            dilations: [1, 1],
            padding: if same { Padding::Same } else { Padding::Valid },
            layout: Layout::Nhwc,
        };
        let g = win.geometry([h, w]);
        prop_assume!(g.is_some_and(|g| g.out[0] > 0 && g.out[1] > 0));
        let g = g.unwrap();
        let shape = [n, h, w, c];
        let out_shape = [n, g.out[0], g.out[1], c];
        let scale = 2f64.powi(ex);
        let xr = array(&shape, reals(&seed, 3, n * h * w * c, scale));
        let xe = encode_raw(&xr);
        let extra = (kernel[0] * kernel[1]).next_power_of_two().trailing_zeros();
        let scaled = FixedPoint { frac_bits: F + extra };
        let run = run1(
            &Keys::fresh(),
            &to_ring(&xe),
            |s, x| {
                let (mut sums, counts) = linear::sum_pool(&x, &win);
                for (i, v) in sums.indexed_iter_mut() {
                    *v *= scaled.encode_value(1.0 / counts[[i[1], i[2]]] as f64);
                }
                trunc::truncate(s, &sums, F + extra)
            },
            |d| trunc::deal_truncate(d, &out_shape, F + extra),
        );
        let mut exact = ArrayD::<i128>::zeros(IxDyn(&out_shape));
        let mut real = ArrayD::<f64>::zeros(IxDyn(&out_shape));
        for b in 0..n {
            for oy in 0..g.out[0] {
                for ox in 0..g.out[1] {
                    let [ys, xs] = pool_window(&win, g.pad, [h, w], [oy, ox]);
                    let count = ys.len() * xs.len();
                    let recip = i128::from(scaled.encode_value(1.0 / count as f64).0 as i64);
                    for ch in 0..c {
                        let (mut s, mut r) = (0i128, 0f64);
                        for &iy in &ys {
                            for &ix in &xs {
                                s += i128::from(xe[[b, iy, ix, ch]]);
                                r += xr[[b, iy, ix, ch]];
                            }
                        }
                        exact[[b, oy, ox, ch]] = s * recip;
                        real[[b, oy, ox, ch]] = r / count as f64;
                    }
                }
            }
        }
        // Input rounding (δ on the mean), 1/count rounded to 2^−(f+e+1) times a sum
        // of at most count · scale ≤ 2^e · scale, truncation (two ulps).
        let tol = HALF_ULP + scale * HALF_ULP + HALF_ULP * HALF_ULP + 2.0 * ULP + 1e-12 * scale;
        check_truncated_by("AvgPool", run.output(), &exact, F + extra, &real, tol)?;
    }
}

// ---- 2. truncation at scale ------------------------------------------------

/// `count` values for the statistical truncation test, from `seed`: 40% within
/// 2^40 below +2^62, 40% within 2^40 above −2^62, 20% uniform over the range; the
/// first batch also holds the exact extremes ±(2^62 − 1).
fn near_bound_values(seed: &[u8; 32], batch: u64, count: usize) -> Vec<i64> {
    let bound = (1i64 << 62) - 1;
    let mut v: Vec<i64> = labelled(seed, batch)
        .words(count)
        .into_iter()
        .map(|w| {
            let low = (w & ((1 << 40) - 1)) as i64;
            match (w >> 40) % 10 {
                0..=3 => bound - low,
                4..=7 => -bound + low,
                _ => ((w as i64) >> 1).clamp(-bound, bound),
            }
        })
        .collect();
    if batch == 0 {
        v[0] = bound;
        v[1] = -bound;
        v[2] = 0;
        v[3] = -1;
    }
    v
}

/// Run `batches` × `per_batch` truncations by 2^16 and count the results more than
/// one unit away from floor(z / 2^16). Returns (failures, max |error|, histogram of
/// the error −1/0/+1).
fn truncation_statistics(batches: u64, per_batch: usize) -> (u64, i64, [u64; 3]) {
    let seed = os_seed().unwrap();
    let (mut failures, mut worst, mut hist) = (0u64, 0i64, [0u64; 3]);
    for batch in 0..batches {
        let z = near_bound_values(&seed, batch, per_batch);
        let run = secure_truncate(&Keys::fresh(), &ring(&[per_batch], z.iter().copied()), F);
        for (&z, got) in z.iter().zip(signed(run.output())) {
            let err = got.wrapping_sub(z >> F);
            worst = worst.max(err.saturating_abs());
            if err.abs() > 1 {
                failures += 1;
                if failures <= 10 {
                    eprintln!("truncation failure: z = {z}, got {got}, want {}", z >> F);
                }
            } else {
                hist[(err + 1) as usize] += 1;
            }
        }
    }
    (failures, worst, hist)
}

/// 10^7 truncations near the documented bound |z| < 2^62 (and across the range):
/// no failure at all. Escudero et al.'s truncation has no failure probability
/// inside the bound, unlike SecureML's local truncation (wrong with probability
/// ≈ |z| / 2^64 per element, i.e. ~25% this close to 2^62) — this test tells the
/// two apart.
#[test]
fn truncation_never_fails_near_the_bound_10m() {
    let start = Instant::now();
    let (failures, worst, hist) = truncation_statistics(10, 1_000_000);
    eprintln!(
        "10^7 truncations: {failures} failures, max |error| {worst} ulp, errors -1/0/+1: {hist:?}, {:.1?}",
        start.elapsed()
    );
    assert_eq!(failures, 0, "truncations off by more than one unit");
    assert!(worst <= 1);
}

/// The same property at 10^6, for a quick run (`cargo test truncation_never`).
#[test]
fn truncation_never_fails_near_the_bound_1m() {
    let (failures, worst, hist) = truncation_statistics(1, 1_000_000);
    eprintln!("10^6 truncations: {failures} failures, max |error| {worst}, errors -1/0/+1: {hist:?}");
    assert_eq!(failures, 0);
}

// ---- 3. security: views ----------------------------------------------------

/// A family of statistical checks with a family-wise significance level: each
/// p-value is compared with α / m (Bonferroni), so the family fails with
/// probability at most α when the hypothesis holds.
#[derive(Default)]
struct Family {
    checks: Vec<(String, f64)>,
}

impl Family {
    fn add(&mut self, what: String, p: f64) {
        self.checks.push((what, p));
    }

    fn assert(&self, alpha: f64) {
        let threshold = alpha / self.checks.len() as f64;
        let min = self.checks.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("checks");
        eprintln!("{} checks, smallest p = {:.3e} ({}), threshold {:.1e}", self.checks.len(), min.1, min.0, threshold);
        let failed: Vec<&(String, f64)> = self.checks.iter().filter(|(_, p)| *p <= threshold).collect();
        assert!(failed.is_empty(), "p ≤ {threshold:.1e} (α = {alpha} over {} checks): {failed:?}", self.checks.len());
    }
}

/// The words one server received from one sender, over several runs, and per
/// message (keyed by prediction, step and tag); for server-to-server messages also what the
/// server *learns*: its own message under the same key combined with the one it
/// received — their sum (an arithmetic opening) and their XOR (a boolean one).
/// A server knows what it sent, so a received word that is uniform on its own but
/// correlated with the server's own message (say, an opening x + r with a short
/// mask r) leaks; the combinations catch that.
#[derive(Default)]
struct View {
    all: Vec<u64>,
    per_message: BTreeMap<(u32, u32, u32), Vec<u64>>,
    opened_sum: Vec<u64>,
    opened_xor: Vec<u64>,
}

fn view(runs: &[Run], to: Party, from: Party) -> View {
    let mut v = View::default();
    for run in runs {
        for m in run.messages(to, from) {
            let w = m.words();
            if from != Party::Dealer {
                let mine = run
                    .sent_message(to, from, m.key)
                    .expect("an exchange: each server sends under the key it receives")
                    .words();
                assert_eq!(mine.len(), w.len(), "both halves of an opening");
                v.opened_sum.extend(mine.iter().zip(&w).map(|(a, b)| a.wrapping_add(*b)));
                v.opened_xor.extend(mine.iter().zip(&w).map(|(a, b)| a ^ b));
            }
            v.all.extend_from_slice(&w);
            v.per_message.entry((m.key.seq, m.key.step, m.key.tag)).or_default().extend(w);
        }
    }
    v
}

/// Uniformity of a word stream: bytes (256 cells), top 4 bits (16 cells), and the
/// balance of each of the 64 bit positions.
fn check_uniform(family: &mut Family, what: &str, words: &[u64]) {
    family.add(format!("{what}: bytes"), mpc::chi2_uniform(&mpc::byte_histogram(words)).1);
    family.add(format!("{what}: top 4 bits"), mpc::chi2_uniform(&mpc::top_nibble_histogram(words)).1);
    family.add(format!("{what}: bit balance"), mpc::bit_balance(words).1);
}

/// The core of the view tests. `runs[j]` are repeated runs of one primitive on
/// input j (e.g. zeros vs. large random values). For each server and each sender
/// (the other server; the dealer):
///
/// * the words received are uniform — overall and message by message — and so
///   are, for an exchange between the servers, the sum and the XOR of the
///   server's own message and the one it received (what an opening reveals);
/// * their byte and top-nibble histograms are the same for every input (two-sample
///   chi-square), i.e. the view does not depend on the data;
/// * no word repeats within a run (a reused mask);
///
/// and, if `dealer_silent_to_server0`, server 0 receives nothing at all from the
/// dealer (it expands all its material from its seed). The statistical checks
/// form one family with family-wise significance `alpha`.
fn assert_views_uniform_and_alike(name: &str, runs: &[Vec<Run>], dealer_silent_to_server0: bool, alpha: f64) {
    let mut family = Family::default();
    for (to, from) in
        [(Party::Server0, Party::Server1), (Party::Server1, Party::Server0), (Party::Server1, Party::Dealer)]
    {
        let views: Vec<View> = runs.iter().map(|r| view(r, to, from)).collect();
        let label = format!("{name}: {} from {}", to.name(), from.name());
        for (j, v) in views.iter().enumerate() {
            assert!(!v.all.is_empty(), "{label}: nothing received");
            check_uniform(&mut family, &format!("{label}, input {j}"), &v.all);
            if from != Party::Dealer {
                check_uniform(&mut family, &format!("{label}, input {j}, sent + received"), &v.opened_sum);
                check_uniform(&mut family, &format!("{label}, input {j}, sent ⊕ received"), &v.opened_xor);
            }
            for (key, words) in &v.per_message {
                // Enough words for 256 cells of ≥ 64 expected counts.
                if words.len() * 8 >= 256 * 64 {
                    family.add(
                        format!("{label}, input {j}, message {key:?}: bytes"),
                        mpc::chi2_uniform(&mpc::byte_histogram(words)).1,
                    );
                }
            }
        }
        for j in 1..views.len() {
            assert_eq!(views[0].all.len(), views[j].all.len(), "{label}: the amount received depends on the input");
            family.add(
                format!("{label}: bytes, input 0 vs {j}"),
                mpc::chi2_homogeneity(&mpc::byte_histogram(&views[0].all), &mpc::byte_histogram(&views[j].all)).1,
            );
            family.add(
                format!("{label}: top 4 bits, input 0 vs {j}"),
                mpc::chi2_homogeneity(
                    &mpc::top_nibble_histogram(&views[0].all),
                    &mpc::top_nibble_histogram(&views[j].all),
                )
                .1,
            );
            if from != Party::Dealer {
                for (what, a, b) in [
                    ("sent + received", &views[0].opened_sum, &views[j].opened_sum),
                    ("sent ⊕ received", &views[0].opened_xor, &views[j].opened_xor),
                ] {
                    family.add(
                        format!("{label}: {what}, bytes, input 0 vs {j}"),
                        mpc::chi2_homogeneity(&mpc::byte_histogram(a), &mpc::byte_histogram(b)).1,
                    );
                    family.add(
                        format!("{label}: {what}, top 4 bits, input 0 vs {j}"),
                        mpc::chi2_homogeneity(&mpc::top_nibble_histogram(a), &mpc::top_nibble_histogram(b)).1,
                    );
                }
            }
        }
    }
    // No word repeats within one run's view: 64-bit uniform words collide with
    // probability ~ n² / 2^65 (< 10^-8 here), while a mask used for two openings
    // (each uniform on its own, their difference the data) repeats words whenever
    // the data repeat — as with the all-zero and constant inputs.
    for (j, input_runs) in runs.iter().enumerate() {
        for (r, run) in input_runs.iter().enumerate() {
            for (to, from) in
                [(Party::Server0, Party::Server1), (Party::Server1, Party::Server0), (Party::Server1, Party::Dealer)]
            {
                let v = view(std::slice::from_ref(run), to, from);
                for (what, words) in [("received", &v.all), ("sent + received", &v.opened_sum)] {
                    let repeated = repeated_words(words);
                    assert!(
                        repeated.is_empty(),
                        "{name}, input {j}, run {r}: words {what} by {} from {} repeat: {:x?}",
                        to.name(),
                        from.name(),
                        &repeated[..repeated.len().min(5)]
                    );
                }
            }
        }
    }
    if dealer_silent_to_server0 {
        for r in runs.iter().flatten() {
            assert_eq!(
                r.messages(Party::Server0, Party::Dealer).count(),
                0,
                "{name}: server 0 received a message from the dealer"
            );
        }
    }
    family.assert(alpha);
}

/// The words that occur more than once.
fn repeated_words(words: &[u64]) -> Vec<u64> {
    let mut seen = HashSet::with_capacity(words.len());
    let mut repeated: Vec<u64> = words.iter().copied().filter(|w| !seen.insert(*w)).collect();
    repeated.sort_unstable();
    repeated.dedup();
    repeated
}

/// Large random raw values within ±2^61 (any larger and a product or a tournament
/// difference could leave the documented range).
fn large_random(label: u64, n: usize) -> Vec<i64> {
    labelled(&mpc::test_seed(), (1 << 40) | label).words(n).into_iter().map(|w| (w as i64) >> 2).collect()
}

/// ReLU (DReLU's level-0 AND exchange and six levels of packed AND openings, the
/// B2A bits, the multiplication by the bit): each server's view is uniform and the
/// same for an all-zero input, large random values and all −1. n is a multiple of
/// 64, so the packed B2A bits fill their words (the padding bits of a last partial
/// word are public zeros, which a uniformity test would rightly flag).
#[test]
fn relu_views_are_uniform_and_independent_of_the_input() {
    let n = 4096;
    let inputs = [vec![0i64; n], large_random(1, n), vec![-1i64; n]];
    let runs: Vec<Vec<Run>> = inputs
        .iter()
        .enumerate()
        .map(|(j, x)| {
            let x = ring(&[n], x.iter().copied());
            (0..4)
                .map(|r| {
                    let run = secure_relu(&Keys::fixed(100 + 10 * j as u64 + r), &x);
                    // Sanity: the runs computed ReLU.
                    let want: Vec<i64> = signed(&x).into_iter().map(|v| v.max(0)).collect();
                    assert_eq!(signed(run.output()), want);
                    run
                })
                .collect()
        })
        .collect();
    assert_views_uniform_and_alike("ReLU", &runs, true, 0.001);
}

/// A masked MatMul and its truncation (openings of x − a and y − b, the truncation
/// opening of z + r, the dealer's product and truncation corrections): the views
/// are uniform and the same for zero and large operands.
#[test]
fn product_views_are_uniform_and_independent_of_the_input() {
    let (m, k, n) = (48, 64, 48);
    let op = Op::MatMul { transpose_a: false, transpose_b: false };
    // Large operands, with every accumulated product below 2^61.
    let big = |label: u64, len: usize| -> RingTensor {
        let v: Vec<i64> =
            labelled(&mpc::test_seed(), (2 << 40) | label).words(len).into_iter().map(|w| (w as i64) >> 37).collect();
        ring(&[len], v)
    };
    let inputs = [
        [RingTensor::zeros(IxDyn(&[m, k])), RingTensor::zeros(IxDyn(&[k, n]))],
        [
            big(1, m * k).into_shape_with_order(IxDyn(&[m, k])).unwrap(),
            big(2, k * n).into_shape_with_order(IxDyn(&[k, n])).unwrap(),
        ],
    ];
    let runs: Vec<Vec<Run>> = inputs
        .iter()
        .enumerate()
        .map(|(j, xy)| {
            (0..4).map(|r| secure_product(&Keys::fixed(200 + 10 * j as u64 + r), &op, xy, &[m, n])).collect()
        })
        .collect();
    assert_views_uniform_and_alike("MatMul + truncation", &runs, true, 0.001);
}

/// Element-wise Mul with broadcasting and x·x, plus a max tournament: the same
/// view properties on the remaining code paths (mul_many with two operands and the
/// tournament's DReLU of differences), for zero vs. random inputs.
#[test]
fn tournament_views_are_uniform_and_independent_of_the_input() {
    let (groups_n, size) = (512, 9);
    let shape = [groups_n * size];
    let groups: Vec<Vec<usize>> = (0..groups_n).map(|g| (g * size..(g + 1) * size).collect()).collect();
    let inputs = [vec![0i64; shape[0]], large_random(2, shape[0])];
    let runs: Vec<Vec<Run>> = inputs
        .iter()
        .enumerate()
        .map(|(j, x)| {
            let x = ring(&shape, x.iter().copied());
            (0..4)
                .map(|r| {
                    run(
                        &Keys::fixed(300 + 10 * j as u64 + r),
                        std::slice::from_ref(&x),
                        |s, xs| {
                            let (max, index) = compare::tournament(s, &xs[0], &groups, true, Width::RING)?;
                            Ok(vec![max, index.expect("index")])
                        },
                        |d| compare::deal_tournament(d, &groups, true, Width::RING),
                    )
                })
                .collect()
        })
        .collect();
    assert_views_uniform_and_alike("ArgMax tournament", &runs, true, 0.001);
}

/// The traffic of one ReLU matches the documented costs (the formulas
/// `ops` plans with), for the ring and for narrower widths: each server sends
/// `drelu_open_words(n, w)` words in `drelu_rounds(w)` rounds (the level-0
/// AND, the AND levels, the packed B2A bits), the last with 1 more word per
/// element for d·x; the dealer sends server 1 `drelu_correction_words(n, w)`
/// words, then 1 per element for d·x.
#[test]
fn relu_traffic_matches_the_documented_costs() {
    let widths = [Width::RING, Width::in_range(fp()), Width::new(33).unwrap(), Width::new(5).unwrap()];
    for w in widths {
        for n in [1usize, 2, 3, 63, 64, 65, 127, 1000] {
            let x = ring(&[n], large_random(9, n));
            let run = secure_relu_of_width(&Keys::fresh(), &x, w);
            for (to, from) in [(Party::Server0, Party::Server1), (Party::Server1, Party::Server0)] {
                let words = run.words(to, from).len();
                assert_eq!(
                    words,
                    drelu_open_words(n, w) + n,
                    "n = {n}, {w:?}: words {} received from {} (a DReLU's and the masked x)",
                    to.name(),
                    from.name()
                );
                assert_eq!(run.messages(to, from).count() as u64, compare::drelu_rounds(w), "n = {n}, {w:?}");
            }
            assert_eq!(
                run.words(Party::Server1, Party::Dealer).len(),
                drelu_correction_words(n, w) + n,
                "n = {n}, {w:?}: dealer corrections (a DReLU's, and shares of b·ρ)"
            );
        }
    }
    // At 16 fractional bits a value's comparison sends about a quarter less.
    let (ring, narrow) = (drelu_open_words(6400, Width::RING), drelu_open_words(6400, Width::in_range(fp())));
    assert!(narrow * 4 < ring * 3 + ring / 10, "{narrow} words against {ring}");
    assert_eq!(compare::drelu_rounds(Width::in_range(fp())), 8);
}

/// A bitwise maximum (MaxPool, Max, Softmax's) keeps b + ReLU(a − b) at every
/// level: a ReLU's 8 rounds and words, no product after it (it was a DReLU and
/// a product: 9 rounds and one more word per pair). With the index (ArgMax) a
/// level is still the DReLU and the product of the bit with both differences
/// (the bit and the two differences opened: 3 words per pair).
#[test]
fn a_bitwise_max_tournament_level_is_one_relu() {
    let groups: Vec<Vec<usize>> = (0..50).map(|g| (9 * g..9 * g + 9).collect()).collect();
    let x = ring(&[450], large_random(11, 450).into_iter().map(|v| v >> 20));
    let w = Width::in_range(fp());
    for with_index in [false, true] {
        let run = run(
            &Keys::fresh(),
            std::slice::from_ref(&x),
            |s, xs| {
                let (max, index) = compare::tournament(s, &xs[0], &groups, with_index, w)?;
                Ok(std::iter::once(max).chain(index).collect())
            },
            |d| compare::deal_tournament(d, &groups, with_index, w),
        );
        // 9 → 5 → 3 → 2 → 1 candidates: 4 levels of 200, 100, 50 and 50 pairs.
        let pairs = [200usize, 100, 50, 50];
        let (words, rounds): (usize, usize) = if with_index {
            (pairs.iter().map(|&p| drelu_open_words(p, w) + 3 * p).sum(), 9 * pairs.len())
        } else {
            (pairs.iter().map(|&p| drelu_open_words(p, w) + p).sum(), 8 * pairs.len())
        };
        assert_eq!(run.words(Party::Server1, Party::Server0).len(), words, "with index: {with_index}");
        assert_eq!(run.messages(Party::Server1, Party::Server0).count(), rounds, "with index: {with_index}");
        let planned = compare::tournament_cost(
            tfe_run::protocol::Comparison::Bitwise,
            &[(9usize, 50usize)].into_iter().collect(),
            with_index,
            w,
        );
        assert_eq!((planned.bytes, planned.rounds), (8 * words as u64, rounds as u64));
    }
}

// ---- 3. security: the real runtime on a real model --------------------------

/// Run `plan` under the real runtime (`runtime::predict_many_over`: all five
/// parties, set-up and one prediction) over a recording transport. The client's
/// output, and everything every party sent and received.
fn predict_recorded(plan: &Plan, inputs: &BTreeMap<String, ArrayD<f32>>) -> (ArrayD<f32>, Run) {
    let recording = Arc::new(Recording::new());
    let transport: Arc<dyn Transport> = recording.clone();
    let mut outcome = tfe_run::runtime::predict_many_over(
        transport,
        plan,
        std::slice::from_ref(inputs),
        &tfe_run::runtime::SecureConfig::default(),
    )
    .expect("secure run");
    let output = outcome.outputs.remove(0).to_float();
    let run =
        Run { outputs: vec![], shares: [vec![], vec![]], transcript: recording.transcript(), sent: recording.sent() };
    (output, run)
}

/// testdata's MLP (784 → 128 → 128 → 10, ReLU) planned for its 100 MNIST images.
fn mlp() -> tfe_run::cli::Prepared {
    tfe_run::cli::prepare(
        &common::testdata("mlp.pb"),
        None,
        Some(&common::testdata("mnist_flat100.npy")),
        &BTreeMap::new(),
    )
    .expect("prepare mlp")
}

/// Every aligned 8-byte little-endian word of `payload` that is in `targets`.
fn plaintext_hits(payload: &[u8], targets: &HashSet<u64>) -> Vec<u64> {
    payload
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .filter(|w| targets.contains(w))
        .collect()
}

/// The search itself finds a planted word (so "zero hits" below means something).
#[test]
fn plaintext_search_finds_a_planted_word() {
    let targets: HashSet<u64> = [fp().encode_value(0.5).0].into();
    let mut payload = encode_words(&[1, 2, 3]);
    payload.extend(encode_words(&[fp().encode_value(0.5).0]));
    assert_eq!(plaintext_hits(&payload, &targets), vec![32768]);
}

/// The MLP on 100 MNIST images under the real runtime, every message recorded: no
/// plaintext value — the encoding of a nonzero input pixel, of a weight or bias
/// of the first layer, or of an output logit (and their negatives) — appears as a
/// word in anything server 0 or server 1 received (from each other, the dealer,
/// the model owner or the client), nor in the sum or XOR of a server's own
/// message and the one it received in an exchange (what an opening reveals to
/// it). The secure output matches the plaintext run, so the run is the real one.
#[test]
fn mlp_transcripts_contain_no_plaintext() {
    let prepared = mlp();
    let plan = &prepared.plan;
    let start = Instant::now();
    let (secure, run) = predict_recorded(plan, &prepared.inputs);
    eprintln!("secure MLP, recorded: {:.1?}", start.elapsed());
    let plain = tfe_run::plaintext::run(plan, &prepared.inputs).unwrap().to_float();
    common::assert_matches("secure vs plaintext", &secure, &plain, 1e-2);

    // The plaintext values to look for.
    let fp = fp();
    let mut targets: HashSet<u64> = HashSet::new();
    let mut add = |v: f32| {
        let w: Z = fp.encode_value(f64::from(v));
        if w.0 != 0 {
            targets.insert(w.0);
            targets.insert(w.0.wrapping_neg());
        }
    };
    let input = prepared.inputs.values().next().expect("one input");
    input.iter().copied().for_each(&mut add);
    // The first layer's kernel [784, 128] and bias [128].
    let first_layer: Vec<ValueId> = plan.weights().map(|(id, _)| id).take(2).collect();
    assert_eq!(plan.values[first_layer[0]].shape, [784, 128]);
    for id in &first_layer {
        plan.weight_values[id].iter().copied().for_each(&mut add);
    }
    // The logits: TensorFlow-exact ones, and the secure ones (whose encodings are
    // exactly the words the two output shares sum to).
    plain.iter().copied().for_each(&mut add);
    secure.iter().copied().for_each(&mut add);
    assert!(targets.len() > 1000, "enough distinct plaintext words");

    let mut received = 0usize;
    let mut opened = 0usize;
    for m in &run.transcript {
        if !matches!(m.to, Party::Server0 | Party::Server1) {
            continue;
        }
        received += m.payload.len();
        let hits = plaintext_hits(&m.payload, &targets);
        assert!(
            hits.is_empty(),
            "{} received plaintext words {:x?} from {} (message {:?})",
            m.to.name(),
            &hits[..hits.len().min(5)],
            m.from.name(),
            m.key
        );
        // What the server learns from an exchange with the other server: its own
        // message under the same key combined with the one received (an opening is
        // their sum or their XOR). An unmasked opening hides from the search above
        // — each received word is only the other's share — but not from this.
        if matches!(m.from, Party::Server0 | Party::Server1) {
            let mine =
                run.sent_message(m.to, m.from, m.key).expect("each server sends under the key it receives").words();
            let theirs = m.words();
            opened += theirs.len() * 8;
            for (how, words) in [
                ("sum", mine.iter().zip(&theirs).map(|(a, b)| a.wrapping_add(*b)).collect::<Vec<_>>()),
                ("XOR", mine.iter().zip(&theirs).map(|(a, b)| a ^ b).collect()),
            ] {
                let hits = plaintext_hits(&encode_words(&words), &targets);
                assert!(
                    hits.is_empty(),
                    "{} learns plaintext words {:x?} from the {how} of its exchange with {} (message {:?})",
                    m.to.name(),
                    &hits[..hits.len().min(5)],
                    m.from.name(),
                    m.key
                );
            }
        }
    }
    eprintln!(
        "searched {received} bytes the servers received, and {opened} bytes of openings, for {} plaintext words: no hit",
        targets.len()
    );
    assert!(received > 1_000_000, "the servers received the whole run");
    assert!(opened > 100_000, "the servers exchanged openings");
}

/// The real runtime's views on the MLP (set-up: the weights' shares and their
/// masked openings; the prediction: the input's shares, three masked products,
/// three truncations, two ReLUs): uniform, and the same for the 100 MNIST images
/// and for an all-zero batch. At runtime level server 0 does hear from the dealer,
/// but only its 32-byte seed and the empty "offline phase done" signals.
///
/// The runtime draws its keys from the OS, so this verdict is random: α = 10^-6
/// family-wise (a leak gives p ≈ 0; the mutants this suite was checked against
/// gave p < 10^-20).
#[test]
fn mlp_views_are_uniform_and_independent_of_the_input() {
    let prepared = mlp();
    let plan = &prepared.plan;
    let zeros: BTreeMap<String, ArrayD<f32>> =
        prepared.inputs.iter().map(|(k, v)| (k.clone(), ArrayD::zeros(v.raw_dim()))).collect();
    let runs: Vec<Vec<Run>> =
        [&prepared.inputs, &zeros].into_iter().map(|inputs| vec![predict_recorded(plan, inputs).1]).collect();
    for run in runs.iter().flatten() {
        for m in run.messages(Party::Server0, Party::Dealer) {
            assert!(
                m.payload.is_empty() || m.payload.len() == 32,
                "server 0 received {} bytes from the dealer (message {:?}): more than its seed",
                m.payload.len(),
                m.key
            );
        }
    }
    assert_views_uniform_and_alike("MLP runtime", &runs, false, 1e-6);
}

// ---- 4. hostile input: a party that sends a message of the wrong length -------

/// A transport that cuts the last 8 bytes off the `index`-th message (counting
/// only those of 8 bytes or more) that `from` sends `to`, and counts them.
struct Cutting {
    inner: tfe_run::transport::InProcess,
    from: Party,
    to: Party,
    index: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl Transport for Cutting {
    fn send(&self, from: Party, to: Party, key: tfe_run::transport::MsgKey, mut payload: Vec<u8>) -> Result<()> {
        if (from, to) == (self.from, self.to)
            && payload.len() >= 8
            && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == self.index
        {
            payload.truncate(payload.len() - 8);
        }
        self.inner.send(from, to, key, payload)
    }

    fn recv(
        &self,
        to: Party,
        from: Party,
        key: tfe_run::transport::MsgKey,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>> {
        self.inner.recv(to, from, key, timeout)
    }

    fn abort(&self, reason: String) {
        self.inner.abort(reason)
    }
}

/// Every message a server receives from the other server, the crypto producer,
/// the model owner or the client, cut by one ring element in turn: the session
/// fails at once with an error that names the sender and the length it expected
/// (never a panic, a hang or an output). On testdata's CNN at batch 1, whose
/// steps include every kind of message a prediction of it sends.
#[test]
fn a_message_of_the_wrong_length_is_refused_naming_its_sender() {
    let prepared = tfe_run::cli::prepare(
        &common::testdata("mnist_model.pb"),
        None,
        Some(&common::testdata("mnist_input.npy")),
        &BTreeMap::new(),
    )
    .expect("prepare mnist_model");
    let config = tfe_run::runtime::SecureConfig { timeout: std::time::Duration::from_secs(20), ..Default::default() };
    let run = |from: Party, to: Party, index: usize| {
        let cutting = Arc::new(Cutting { inner: Default::default(), from, to, index, seen: Default::default() });
        let transport: Arc<dyn Transport> = cutting.clone();
        let outcome = tfe_run::runtime::predict_many_over(
            transport,
            &prepared.plan,
            std::slice::from_ref(&prepared.inputs),
            &config,
        );
        (outcome, cutting.seen.load(std::sync::atomic::Ordering::SeqCst))
    };
    let links = [
        (Party::Server0, Party::Server1),
        (Party::Server1, Party::Server0),
        (Party::Dealer, Party::Server1),
        (Party::Dealer, Party::Server0),
        (Party::ModelOwner, Party::Server1),
        (Party::Client, Party::Server1),
    ];
    let mut cut = 0;
    for (from, to) in links {
        let (untouched, count) = run(from, to, usize::MAX);
        assert!(untouched.is_ok(), "{} → {}: the untouched run fails", from.name(), to.name());
        assert!(count > 0, "{} sends {} nothing to cut", from.name(), to.name());
        for index in 0..count {
            let err = match run(from, to, index).0 {
                Ok(_) => panic!("{} → {} message {index} cut, yet the run succeeded", from.name(), to.name()),
                Err(e) => format!("{e:#}"),
            };
            let names_it = err.contains(&format!("{} sent", from.name()));
            let says_why = err.contains("were expected") || err.contains("instead of 32");
            assert!(names_it && says_why, "{} → {} message {index}: {err}", from.name(), to.name());
            cut += 1;
        }
    }
    eprintln!("{cut} cut messages, each refused naming its sender");
}

// ---- stream keys: no field wraps ---------------------------------------------

/// A server and the dealer of one session with fixed seeds, over a transport
/// nobody reads (only their PRGs are used).
fn parties_with_seeds() -> (Server, Dealer) {
    let seeds = [[0x42u8; 32], [0x43u8; 32]];
    let transport: Arc<dyn Transport> = Arc::new(tfe_run::transport::InProcess::new());
    let endpoint =
        |p| tfe_run::transport::Endpoint::new(p, Arc::clone(&transport), 1, std::time::Duration::from_secs(1));
    (Server::new(0, endpoint(Party::Server0), seeds[0]), Dealer::new(endpoint(Party::Dealer), seeds))
}

/// The old stream number kept 20 bits of the prediction number: prediction
/// 2^20 + 1 of a session (a `predict --model` over more than 1,048,575 batches)
/// reused every activation mask and every piece of material of prediction 1.
#[test]
fn prediction_2_pow_20_plus_1_reuses_no_mask_or_material_of_prediction_1() {
    let (mut s, mut d) = parties_with_seeds();
    let late = 1 + (1u32 << 20);
    assert_ne!(s.mask(1, 5, &[8]), s.mask(late, 5, &[8]), "server 0's mask share");
    assert_ne!(d.mask(1, 5, &[8]), d.mask(late, 5, &[8]), "the dealer's whole mask");
    let material = |s: &mut Server, seq| {
        s.begin(seq, 3);
        s.material(1).words(8)
    };
    assert_ne!(material(&mut s, 1), material(&mut s, late), "server 0's material");
    d.begin(1, 3);
    let early = d.material(1, 1).words(8);
    d.begin(late, 3);
    assert_ne!(early, d.material(1, 1).words(8), "server 1's material");
}

/// The old stream number kept 12 bits of the material tag: a Sigmoid or Tanh
/// step over about 24.5M elements (more than 4096 chunks of comparisons) dealt
/// chunk 4097 from the stream of chunk 1; and 24 bits of a value id or step.
#[test]
fn material_tag_4097_and_value_id_2_pow_24_plus_1_reuse_no_stream() {
    let (mut s, _) = parties_with_seeds();
    s.begin(1, 3);
    assert_ne!(s.material(1).words(8), s.material(1 + (1 << 12)).words(8), "material tags 1 and 4097");
    assert_ne!(s.mask(1, 1, &[8]), s.mask(1, 1 + (1 << 24), &[8]), "the masks of values 1 and 2^24 + 1");
    let step = |s: &mut Server, step| {
        s.begin(1, step);
        s.material(1).words(8)
    };
    assert_ne!(step(&mut s, 1), step(&mut s, 1 + (1 << 24)), "steps 1 and 2^24 + 1");
}

/// More predictions than the old 20-bit field held are fine now; one past the
/// u32 that numbers them is refused, naming the limit, instead of wrapping.
#[test]
fn a_session_past_2_pow_20_predictions_is_not_refused_but_one_past_u32_is() {
    use tfe_run::runtime::prediction_count;
    assert_eq!(prediction_count((1 << 20) + 1).unwrap(), (1 << 20) + 1);
    assert_eq!(prediction_count(u32::MAX as usize).unwrap(), u32::MAX);
    let e = format!("{:#}", prediction_count(u32::MAX as usize + 1).unwrap_err());
    assert!(e.contains("at most 4294967295"), "{e}");
}

/// A step's material and opening counters refuse to wrap, in release builds.
#[test]
fn a_step_counter_that_would_wrap_is_refused() {
    let mut at = tfe_run::protocol::Cursor { seq: 1, step: 7, material: u32::MAX - 1, open: u32::MAX };
    assert_eq!(at.next_material().unwrap(), u32::MAX);
    let e = format!("{:#}", at.next_material().unwrap_err());
    assert!(e.contains("step 7") && e.contains("dealer material"), "{e}");
    assert!(format!("{:#}", at.next_open().unwrap_err()).contains("openings"));
}

// ---- private values reach no other party -------------------------------------

/// An out-of-range input value (or weight) failed the client (or the model
/// owner) inside its session, and the abort reason quoted the error to every
/// other party: "client failed: input for `input`: value 3000000000 at flat
/// index 17 is out of range". Now the values are checked before the session: the
/// user gets the whole error, and no party hears anything.
#[test]
fn an_out_of_range_input_or_weight_is_refused_before_the_session_and_quoted_to_no_party() {
    for what in ["input", "weight"] {
        let mut prepared = mlp();
        let values = match what {
            "input" => prepared.inputs.values_mut().next().expect("one input"),
            _ => {
                let first = prepared.plan.weights().map(|(id, _)| id).next().expect("a weight");
                prepared.plan.weight_values.get_mut(&first).expect("its value")
            }
        };
        values.as_slice_mut().expect("contiguous")[17] = 3e9;
        let recording = Arc::new(Recording::new());
        let transport: Arc<dyn Transport> = recording.clone();
        let outcome = tfe_run::runtime::predict_many_over(
            transport,
            &prepared.plan,
            std::slice::from_ref(&prepared.inputs),
            &tfe_run::runtime::SecureConfig::default(),
        );
        let Err(e) = outcome else { panic!("an out-of-range {what} was not refused") };
        let text = format!("{e:#}");
        assert!(text.contains("value 3000000000 at flat index 17 is out of range"), "{what}: {text}");
        assert_eq!(tfe_run::error::category_of(&e), Some(tfe_run::error::Category::BadInput), "{what}: {text}");
        for reason in recording.aborts() {
            assert!(!reason.contains("3000000000") && !reason.contains("index"), "{what}: abort reason `{reason}`");
        }
        let sent = recording.sent();
        assert!(sent.is_empty(), "{what}: {} messages sent before the refusal", sent.len());
    }
}

/// What the client or the model owner tells the others when it fails names the
/// party and the kind of failure, never a digit of the value at fault nor its
/// position; a server's or the crypto producer's error goes as it is (they hold
/// no plaintext).
#[test]
fn abort_reasons_of_the_client_and_the_model_owner_carry_no_private_value() {
    use tfe_run::runtime::abort_reason;
    let x = ArrayD::from_shape_vec(IxDyn(&[20]), (0..20).map(|i| if i == 17 { 3e9 } else { 0.25 }).collect()).unwrap();
    let out_of_range = fp().encode(&x, "input for `input`").unwrap_err().context("prediction 1");
    let other = anyhow::anyhow!("weight 0.123456 of row 42 is odd");
    for party in [Party::Client, Party::ModelOwner] {
        let reason = abort_reason(party, &out_of_range);
        assert!(reason.starts_with(&format!("{} failed: a value is out of range", party.name())), "{reason}");
        for private in ["3000000000", "3e9", "index", "17 "] {
            assert!(!reason.contains(private), "`{private}` in `{reason}`");
        }
        let reason = abort_reason(party, &other);
        assert!(!reason.contains("0.123456") && !reason.contains("42"), "{reason}");
    }
    let protocol = anyhow::anyhow!("server0 sent 8 bytes where 2 ring elements (16 bytes) were expected");
    assert!(abort_reason(Party::Server1, &protocol).contains("server0 sent 8 bytes where 2 ring elements"));
}

// ---- several predictions per session, several sessions ------------------------

/// testdata's MLP planned for `rows` of its MNIST images, starting at row `from`.
fn mlp_rows(from: usize, rows: usize) -> tfe_run::cli::Prepared {
    let all = common::load(&common::testdata("mnist_flat100.npy"));
    let part = all.slice_axis(Axis(0), ndarray::Slice::from(from..from + rows)).to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rows.npy");
    tfe_run::npy::write_f32(&path, &part).expect("write rows");
    tfe_run::cli::prepare(&common::testdata("mlp.pb"), None, Some(&path), &BTreeMap::new()).expect("prepare mlp")
}

/// A session of `batches` under the real runtime over a recording transport: the
/// client's outputs and the recording.
fn session_recorded(plan: &Plan, batches: &[BTreeMap<String, ArrayD<f32>>]) -> (Vec<ArrayD<f32>>, Arc<Recording>) {
    let recording = Arc::new(Recording::new());
    let transport: Arc<dyn Transport> = recording.clone();
    let outcome =
        tfe_run::runtime::predict_many_over(transport, plan, batches, &tfe_run::runtime::SecureConfig::default())
            .expect("secure run");
    (outcome.outputs.iter().map(|t| t.to_float()).collect(), recording)
}

/// The words a server learns from each exchange with the other server (its own
/// message plus the one received: an arithmetic opening; and their XOR: a
/// boolean one), by message key.
fn openings(recording: &Recording, to: Party) -> Vec<(tfe_run::transport::MsgKey, Vec<u64>, Vec<u64>)> {
    let sent = recording.sent();
    let from = if to == Party::Server0 { Party::Server1 } else { Party::Server0 };
    recording
        .transcript()
        .into_iter()
        .filter(|m| m.to == to && m.from == from)
        .map(|m| {
            let mine =
                sent.iter().find(|s| s.from == to && s.to == from && s.key == m.key).expect("an exchange").words();
            let theirs = m.words();
            let sum = mine.iter().zip(&theirs).map(|(a, b)| a.wrapping_add(*b)).collect();
            let xor = mine.iter().zip(&theirs).map(|(a, b)| a ^ b).collect();
            (m.key, sum, xor)
        })
        .collect()
}

/// The MLP's plaintext values a leak would show, as ring words (and their
/// negatives): the input pixels, every weight and bias, the hidden layers before
/// and after their ReLU and the logits (each to ±3 units in the last place: the
/// secure values are that close to the plaintext ones), and the first layer's
/// exact 2f-bit products x·W1 (with and without the bias lifted to 2f bits),
/// which a truncation opens masked.
fn mlp_plaintext_words(plan: &Plan, inputs: &[&BTreeMap<String, ArrayD<f32>>]) -> HashSet<u64> {
    let fp = fp();
    let mut targets = HashSet::new();
    let mut add_exact = |w: u64| {
        if w != 0 {
            targets.insert(w);
            targets.insert(w.wrapping_neg());
        }
    };
    let weights: Vec<&ArrayD<f32>> = plan.weights().map(|(id, _)| &plan.weight_values[&id]).collect();
    assert_eq!(weights.len(), 6, "three kernels and three biases");
    for w in &weights {
        w.iter().for_each(|&v| add_exact(fp.encode_value(f64::from(v)).0));
    }
    let to2 = |a: &ArrayD<f32>| a.view().into_dimensionality::<ndarray::Ix2>().expect("2-D").mapv(f64::from);
    let to1 = |a: &ArrayD<f32>| a.view().into_dimensionality::<ndarray::Ix1>().expect("1-D").mapv(f64::from);
    for batch in inputs {
        let x = to2(batch.values().next().expect("one input"));
        x.iter().for_each(|&v| add_exact(fp.encode_value(v).0));
        // The exact first-layer products, in the ring.
        let ex = x.mapv(|v| fp.encode_value(v));
        let ew = to2(weights[0]).mapv(|v| fp.encode_value(v));
        let eb = to1(weights[1]).mapv(|v| fp.encode_value(v) * Wrapping(1u64 << F));
        for i in 0..ex.nrows() {
            for j in 0..ew.ncols() {
                let z: Z = ex.row(i).iter().zip(ew.column(j)).map(|(a, b)| *a * *b).sum();
                add_exact(z.0);
                add_exact((z + eb[j]).0);
            }
        }
        // The layers, in f64.
        let mut h = x;
        for layer in 0..3 {
            let z = h.dot(&to2(weights[2 * layer])) + &to1(weights[2 * layer + 1]);
            let relu = z.mapv(|v| v.max(0.0));
            for v in z.iter().chain(relu.iter()) {
                let w = fp.encode_value(*v);
                for d in -3i64..=3 {
                    add_exact((w + Wrapping(d as u64)).0);
                }
            }
            h = relu;
        }
    }
    targets
}

/// A session of three predictions (batches A, B, A: the same input twice) and a
/// second session (A again), the MLP under the real runtime:
///
/// * no mask or piece of material is used twice: no word repeats in what the
///   servers open (sums and XORs of their exchanges), in the client's or the
///   model owner's shares to server 1, or in the dealer's corrections, across
///   all predictions of both sessions; in particular input A's openings in
///   predictions 1 and 3 differ word by word, and so do the weights' shares of
///   the two sessions;
/// * no plaintext word (see [`mlp_plaintext_words`]) appears in anything a
///   server, the client or the model owner received, nor in an opening;
/// * the client receives exactly the output shares, the model owner and the
///   crypto producer nothing.
#[test]
fn mlp_sessions_of_several_predictions_reuse_no_mask_and_open_no_plaintext() {
    let (a, b) = (mlp_rows(0, 4), mlp_rows(4, 4));
    let plan = &a.plan;
    let start = Instant::now();
    let batches = [a.inputs.clone(), b.inputs.clone(), a.inputs.clone()];
    let (outputs, first) = session_recorded(plan, &batches);
    let (again, second) = session_recorded(plan, std::slice::from_ref(&a.inputs));
    eprintln!("two MLP sessions of 3 and 1 predictions, recorded: {:.1?}", start.elapsed());
    let plain_a = tfe_run::plaintext::run(plan, &a.inputs).unwrap().to_float();
    let plain_b = tfe_run::plaintext::run(plan, &b.inputs).unwrap().to_float();
    for (what, secure, plain) in [
        ("1", &outputs[0], &plain_a),
        ("2", &outputs[1], &plain_b),
        ("3", &outputs[2], &plain_a),
        ("2:1", &again[0], &plain_a),
    ] {
        common::assert_matches(&format!("prediction {what}"), secure, plain, 1e-2);
    }

    // Same input, different predictions: different openings, word by word.
    let opened = openings(&first, Party::Server1);
    let of = |seq: u32| -> BTreeMap<(u32, u32), &Vec<u64>> {
        opened.iter().filter(|(k, _, _)| k.seq == seq).map(|(k, sum, _)| ((k.step, k.tag), sum)).collect()
    };
    let (p1, p3) = (of(1), of(3));
    assert!(!p1.is_empty() && p1.len() == p3.len(), "predictions 1 and 3 open the same number of messages");
    for (key, w1) in &p1 {
        let w3 = p3[key];
        let equal = w1.iter().zip(w3.iter()).filter(|(x, y)| x == y).count();
        assert_eq!(equal, 0, "step {} opening {}: {equal} words equal in predictions 1 and 3", key.0, key.1);
    }

    // No word repeats anywhere across both sessions.
    let mut streams: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (s, recording) in [&first, &second].into_iter().enumerate() {
        for to in [Party::Server0, Party::Server1] {
            for (_, sum, xor) in openings(recording, to) {
                streams.entry(format!("{} opens (sums)", to.name())).or_default().extend(sum);
                streams.entry(format!("{} opens (XORs)", to.name())).or_default().extend(xor);
            }
        }
        for m in recording.transcript() {
            if m.to == Party::Server1 && matches!(m.from, Party::Client | Party::ModelOwner | Party::Dealer) {
                streams.entry(format!("server1 from {}", m.from.name())).or_default().extend(m.words());
            }
            if m.to == Party::Server0 && m.payload.len() == 32 {
                // A seed, from the dealer or an owner: fresh every time.
                streams.entry("server0's seeds".into()).or_default().extend(m.words());
            }
        }
        let owner = recording.transcript().iter().filter(|m| m.from == Party::ModelOwner).count();
        assert!(owner > 0, "session {s}: the model owner shared its weights");
    }
    for (what, words) in &streams {
        let repeated = repeated_words(words);
        assert!(
            repeated.is_empty(),
            "{what}: words repeat across predictions or sessions: {:x?}",
            &repeated[..repeated.len().min(5)]
        );
    }
    assert!(streams["server1 opens (sums)"].len() > 10_000, "the openings were searched");

    // No plaintext, in what anyone but the dealer holds.
    let targets = mlp_plaintext_words(plan, &[&a.inputs, &b.inputs]);
    eprintln!("{} plaintext words searched for", targets.len());
    let out_words = plan.values[plan.output].len();
    for (s, recording) in [&first, &second].into_iter().enumerate() {
        for m in recording.transcript() {
            let hits = plaintext_hits(&m.payload, &targets);
            assert!(
                hits.is_empty(),
                "session {s}: {} received plaintext {:x?} from {} ({:?})",
                m.to.name(),
                &hits[..hits.len().min(5)],
                m.from.name(),
                m.key
            );
            match m.to {
                Party::Client => assert_eq!(m.words().len(), out_words, "the client receives only output shares"),
                // Flow control: server 1's acknowledgements, empty.
                Party::Dealer
                    if m.from == Party::Server1
                        && m.payload.is_empty()
                        && m.key.step == tfe_run::runtime::message::Outside::Ack.step() => {}
                Party::ModelOwner | Party::Dealer => {
                    panic!("{} received {:?} from {}", m.to.name(), m.key, m.from.name())
                }
                _ => {}
            }
        }
        for to in [Party::Server0, Party::Server1] {
            for (key, sum, xor) in openings(recording, to) {
                let hits: Vec<u64> = sum.iter().chain(&xor).copied().filter(|w| targets.contains(w)).collect();
                assert!(
                    hits.is_empty(),
                    "session {s}: {} opens plaintext {:x?} ({key:?})",
                    to.name(),
                    &hits[..hits.len().min(5)]
                );
            }
        }
        let to_client = recording.transcript().iter().filter(|m| m.to == Party::Client).count();
        assert_eq!(
            to_client,
            2 * if s == 0 { 3 } else { 1 },
            "session {s}: one output share per server and prediction"
        );
    }
}

// ---- flow control: the dealer runs a bounded number of bytes ahead -----------

/// A transport that slows server 1's receives from server 0 (so the online
/// phase lags) and records the most bytes of plan-step material the dealer had
/// sent server 1 and server 1 had not yet read.
#[derive(Default)]
struct Lagging {
    inner: tfe_run::transport::InProcess,
    pending: std::sync::Mutex<Pending>,
}

/// Bytes sent and not yet read, of each message, the most ever pending at once,
/// and all sent.
#[derive(Default)]
struct Pending {
    unread: BTreeMap<tfe_run::transport::MsgKey, u64>,
    bytes: u64,
    most: u64,
    total: u64,
}

impl Lagging {
    /// Plan steps (not the messages outside them, numbered from the top of u32).
    fn plan_step(key: &tfe_run::transport::MsgKey) -> bool {
        key.step < u32::MAX - 64
    }
}

impl Transport for Lagging {
    fn send(&self, from: Party, to: Party, key: tfe_run::transport::MsgKey, payload: Vec<u8>) -> Result<()> {
        if (from, to) == (Party::Dealer, Party::Server1) && Self::plan_step(&key) {
            let mut pending = self.pending.lock().unwrap();
            let n = payload.len() as u64;
            pending.unread.insert(key, n);
            pending.bytes += n;
            pending.total += n;
            pending.most = pending.most.max(pending.bytes);
        }
        self.inner.send(from, to, key, payload)
    }

    fn recv(
        &self,
        to: Party,
        from: Party,
        key: tfe_run::transport::MsgKey,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>> {
        if (from, to) == (Party::Server0, Party::Server1) {
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        let payload = self.inner.recv(to, from, key, timeout)?;
        if (from, to) == (Party::Dealer, Party::Server1) && Self::plan_step(&key) {
            let mut pending = self.pending.lock().unwrap();
            if let Some(n) = pending.unread.remove(&key) {
                pending.bytes -= n;
            }
        }
        Ok(payload)
    }

    fn abort(&self, reason: String) {
        self.inner.abort(reason)
    }
}

/// A prediction session's dealer dealt every prediction's material before
/// server 1 read any (training's dealer waited for server 1; prediction's had
/// no bound). Now both wait: what is sent and unread stays within
/// `flow::MAX_UNREAD` and the last acknowledged steps' material.
#[test]
fn a_prediction_dealer_runs_at_most_its_byte_bound_ahead_of_server_1() {
    use tfe_run::runtime::flow::MAX_UNREAD;
    let prepared = mlp_rows(0, 100);
    let batches = vec![prepared.inputs.clone(); 100];
    let lagging = Arc::new(Lagging::default());
    let transport: Arc<dyn Transport> = lagging.clone();
    let outcome = tfe_run::runtime::predict_many_over(
        transport,
        &prepared.plan,
        &batches,
        &tfe_run::runtime::SecureConfig::default(),
    )
    .expect("the session runs");
    assert_eq!(outcome.outputs.len(), 100);
    let pending = lagging.pending.lock().unwrap();
    eprintln!("{} bytes dealt in the session; at most {} dealt and unread at once", pending.total, pending.most);
    // The bound must have mattered: the session deals more than it allows.
    assert!(pending.total > 2 * MAX_UNREAD, "only {} bytes dealt", pending.total);
    // One prediction of this plan is its 21 steps (more than one acknowledgement's 16).
    let per_prediction = pending.total / 100;
    assert!(pending.most <= MAX_UNREAD + 2 * per_prediction, "the dealer ran {} bytes ahead of server 1", pending.most);
}
