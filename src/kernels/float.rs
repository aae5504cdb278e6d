//! Non-linear functions in the clear (f32): the reference the secure protocol's
//! comparisons and approximations are measured against.

use ndarray::{ArrayD, Axis, IxDyn};

use super::linear::{to_nchw, to_nhwc, window_ranges};
use super::{Layout, Window};

pub fn relu(x: &ArrayD<f32>) -> ArrayD<f32> {
    x.mapv(|v| v.max(0.0))
}

pub fn sigmoid(x: &ArrayD<f32>) -> ArrayD<f32> {
    x.mapv(|v| 1.0 / (1.0 + (-v).exp()))
}

/// ln(1 + e^x) without overflow: the logistic loss's building block.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The error function, to about 1e-15: its Taylor series below |x| = 4 (at most
/// 2/√π·Σ 16^n/n! ≈ 1e7 in the partial sums, so about 1e-9 relative lost to
/// cancellation, far below f32's 6e-8), ±1 from there on, where 1 − erf(4) =
/// 1.5e-8 is under half an f32 unit below 1.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() >= 4.0 {
        return x.signum();
    }
    // erf(x) = 2/√π · Σ (−1)^n x^(2n+1) / (n! (2n+1)).
    let (x2, mut power, mut sum) = (x * x, x, x);
    for n in 1..200 {
        power *= -x2 / n as f64;
        let term = power / (2 * n + 1) as f64;
        sum += term;
        if term.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

pub fn tanh(x: &ArrayD<f32>) -> ArrayD<f32> {
    x.mapv(f32::tanh)
}

pub fn rsqrt(x: &ArrayD<f32>) -> ArrayD<f32> {
    x.mapv(|v| 1.0 / v.sqrt())
}

/// Softmax over the last axis, shifted by the maximum so large logits do not overflow.
pub fn softmax(x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut out = x.clone();
    let last = Axis(x.ndim() - 1);
    for mut lane in out.lanes_mut(last) {
        let max = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        lane.mapv_inplace(|v| (v - max).exp());
        let sum = lane.sum();
        lane.mapv_inplace(|v| v / sum);
    }
    out
}

/// Max over each window, padding excluded (TensorFlow's MaxPool). NCHW is
/// pooled in NHWC between two transposes.
pub fn max_pool(x: &ArrayD<f32>, window: &Window) -> ArrayD<f32> {
    match window.layout {
        Layout::Nhwc => max_pool_nhwc(x, window),
        Layout::Nchw => to_nchw(&max_pool_nhwc(&to_nhwc(x), &window.nhwc())),
    }
}

fn max_pool_nhwc(x: &ArrayD<f32>, window: &Window) -> ArrayD<f32> {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let g = window.geometry([h, w]).expect("pool: geometry checked at plan time");
    ArrayD::from_shape_fn(IxDyn(&[n, g.out[0], g.out[1], c]), |i| {
        let (ys, xs) = window_ranges(window, &g, [h, w], [i[1], i[2]]);
        let mut m = f32::NEG_INFINITY;
        for iy in ys {
            for ix in xs.clone() {
                m = m.max(x[[i[0], iy, ix, i[3]]]);
            }
        }
        m
    })
}

/// Max over `axes` (sorted, distinct).
pub fn reduce_max(x: &ArrayD<f32>, axes: &[usize], keep_dims: bool) -> ArrayD<f32> {
    let mut out = x.clone();
    for &axis in axes.iter().rev() {
        out = out.fold_axis(Axis(axis), f32::NEG_INFINITY, |&a, &b| a.max(b));
        if keep_dims {
            out.insert_axis_inplace(Axis(axis));
        }
    }
    out
}

/// Index of the maximum along `axis` (the first one on ties, as TensorFlow).
pub fn argmax(x: &ArrayD<f32>, axis: usize) -> ArrayD<i64> {
    x.map_axis(Axis(axis), |lane| {
        let mut best = 0;
        for (i, &v) in lane.iter().enumerate() {
            if v > lane[best] {
                best = i;
            }
        }
        best as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1000.0, 1001.0, 1002.0, -1.0, 0.0, 1.0]).unwrap();
        let s = softmax(&x);
        for row in s.outer_iter() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
        assert!((s[[0, 2]] - s[[1, 2]]).abs() < 1e-6);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 3.0, 3.0, 0.0, -1.0, -2.0]).unwrap();
        assert_eq!(argmax(&x, 1).iter().copied().collect::<Vec<_>>(), vec![1, 0]);
    }
}
