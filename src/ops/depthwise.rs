//! DepthwiseConv2D (TensorFlow's DepthwiseConv2dNative, MobileNet's and
//! EfficientNet's workhorse, and the first half of a SeparableConv2D; ONNX's Conv
//! with one group per channel): each input channel convolved with its own
//! filters, in the window's layout (NHWC, or ONNX's NCHW). Under Pond it is a Beaver product with
//! its own bilinear map (`protocol::mul::Bilinear::DepthwiseConv2D`), masks
//! reused like every product's, then one truncation.

use anyhow::Result;

use super::{OpUnit, Product};
use crate::kernels::{Window, linear};
use crate::protocol::mul::Bilinear;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DepthwiseConv2D {
    /// Strides, dilations and padding; the kernel size is the filter's.
    pub window: Window,
}

impl DepthwiseConv2D {
    fn product(&self) -> Product {
        Product { map: Bilinear::DepthwiseConv2D(self.window), truncates: true }
    }
}

impl OpUnit for DepthwiseConv2D {
    fn name(&self) -> &'static str {
        "DepthwiseConv2D"
    }

    fn arity(&self) -> usize {
        2
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        // The batch axis of its input (not of a filter).
        crate::plan::RowRule::Batch(vec![0])
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [x, f] = ins else { return Err(format!("expects 2 inputs, has {}", ins.len())) };
        let layout = self.window.layout;
        let [n, h, wd, c] =
            layout.split(x).ok_or_else(|| format!("input must be {} (rank 4), has shape {x:?}", layout.name()))?;
        let &[fh, fw, fc, m] = *f else {
            return Err(format!("filter must be [height, width, channels, multiplier], has shape {f:?}"));
        };
        if fc != c {
            return Err(format!("filter expects {fc} input channels, input has {c}"));
        }
        let w = Window { kernel: [fh, fw], ..self.window };
        let g = w.geometry([h, wd]).ok_or_else(|| format!("a {fh}x{fw} filter does not fit a {h}x{wd} input"))?;
        let channels = c.checked_mul(m).ok_or_else(|| format!("{c} channels times {m} is too many"))?;
        Ok(layout.join([n, g.out[0], g.out[1], channels]))
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        match ins {
            [Tensor::Float(x), Tensor::Float(f)] => Ok(Tensor::Float(linear::depthwise_conv2d(x, f, &self.window))),
            _ => Err("DepthwiseConv2D needs two float inputs".into()),
        }
    }
}

super::product_unit!(DepthwiseConv2D);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Layout, Padding};
    use ndarray::{ArrayD, IxDyn};

    fn array(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    /// Depthwise convolution is a grouped convolution: channel k alone through
    /// Conv2D with its own m filters gives output channels k·m … k·m + m − 1.
    #[test]
    fn depthwise_is_conv2d_channel_by_channel() {
        for m in [1, 2] {
            depthwise_is_conv2d_channel_by_channel_with_multiplier(m);
        }
    }

    fn depthwise_is_conv2d_channel_by_channel_with_multiplier(m: usize) {
        let c = 3;
        let x = array(&[2, 7, 6, c], |i| ((i * 37) % 11) as f32 - 5.0);
        let f = array(&[3, 2, c, m], |i| ((i * 13) % 7) as f32 - 3.0);
        for (strides, dilations, padding) in
            [([1, 1], [1, 1], Padding::Same), ([2, 2], [1, 1], Padding::Valid), ([1, 2], [2, 1], Padding::Same)]
        {
            let w = Window { kernel: [3, 2], strides, dilations, padding, layout: Layout::Nhwc };
            let out = linear::depthwise_conv2d(&x, &f, &w);
            for k in 0..c {
                let xk = x.slice(ndarray::s![.., .., .., k..k + 1]).to_owned().into_dyn();
                let fk = f.slice(ndarray::s![.., .., k..k + 1, ..]).to_owned().into_dyn();
                let expected = linear::conv2d(&xk, &fk, &w);
                let got = out.slice(ndarray::s![.., .., .., k * m..(k + 1) * m]).to_owned().into_dyn();
                assert_eq!(got, expected, "channel {k}, {w:?}");
            }
        }
    }

    #[test]
    fn a_filter_of_other_channels_is_refused_naming_both() {
        let w = Window {
            kernel: [1, 1],
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Valid,
            layout: Layout::Nhwc,
        };
        let err = DepthwiseConv2D { window: w }.output_shape(&[&[1, 4, 4, 3], &[3, 3, 8, 1]]).unwrap_err();
        assert_eq!(err, "filter expects 8 input channels, input has 3");
    }
}
