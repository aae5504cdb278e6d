//! Conv2DTranspose (TensorFlow's Conv2DBackpropInput with a public output shape,
//! Keras's Conv2DTranspose, ONNX's ConvTranspose of one group), in the window's
//! layout (NHWC, or ONNX's NCHW): the adjoint of Conv2D, linear in the input and in
//! the filter. Under Pond it is a Beaver product with its own bilinear map
//! (`protocol::mul::Bilinear::Conv2DTranspose`), masks reused like every
//! product's, then one truncation: one round for the opening (none if the input
//! was opened already in this prediction) and the truncation's.

use anyhow::Result;

use super::{OpUnit, Product};
use crate::kernels::{Window, linear};
use crate::protocol::mul::Bilinear;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv2DTranspose {
    /// Strides, dilations and padding of the forward convolution (from the
    /// output onto the input); the kernel size is the filter's.
    pub window: Window,
    /// The output's height and width (TensorFlow's `input_sizes`).
    pub out_hw: [usize; 2],
}

impl Conv2DTranspose {
    fn product(&self) -> Product {
        Product { map: Bilinear::Conv2DTranspose { window: self.window, out_hw: self.out_hw }, truncates: true }
    }
}

impl OpUnit for Conv2DTranspose {
    fn name(&self) -> &'static str {
        "Conv2DTranspose"
    }

    fn arity(&self) -> usize {
        2
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        // The batch axis of its input (not of a filter).
        crate::plan::RowRule::Batch(vec![0])
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [y, f] = ins else { return Err(format!("expects 2 inputs, has {}", ins.len())) };
        let layout = self.window.layout;
        let [n, h, w, c] =
            layout.split(y).ok_or_else(|| format!("input must be {} (rank 4), has shape {y:?}", layout.name()))?;
        let &[fh, fw, out, fc] = *f else {
            return Err(format!("filter must be [height, width, out, in], has shape {f:?}"));
        };
        if fc != c {
            return Err(format!("filter expects {fc} input channels, input has {c}"));
        }
        let [oh, ow] = self.out_hw;
        let window = Window { kernel: [fh, fw], ..self.window };
        let g = window
            .geometry(self.out_hw)
            .ok_or_else(|| format!("a {fh}x{fw} filter does not fit a {oh}x{ow} output"))?;
        if g.out != [h, w] {
            return Err(format!(
                "a {oh}x{ow} output convolved by this window is {}x{}, not the input's {h}x{w}",
                g.out[0], g.out[1]
            ));
        }
        Ok(layout.join([n, oh, ow, out]))
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        match ins {
            [Tensor::Float(y), Tensor::Float(f)] => {
                Ok(Tensor::Float(linear::conv2d_transpose(y, f, &self.window, self.out_hw)))
            }
            _ => Err("Conv2DTranspose needs two float inputs".into()),
        }
    }
}

super::product_unit!(Conv2DTranspose);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Layout, Padding};

    #[test]
    fn an_output_that_does_not_convolve_onto_the_input_is_refused_naming_both() {
        let window =
            Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        let unit = Conv2DTranspose { window, out_hw: [8, 8] };
        assert_eq!(unit.output_shape(&[&[1, 4, 4, 2], &[3, 3, 5, 2]]), Ok(vec![1, 8, 8, 5]));
        let err = unit.output_shape(&[&[1, 5, 4, 2], &[3, 3, 5, 2]]).unwrap_err();
        assert_eq!(err, "a 8x8 output convolved by this window is 4x4, not the input's 5x4");
        let err = unit.output_shape(&[&[1, 4, 4, 3], &[3, 3, 5, 2]]).unwrap_err();
        assert_eq!(err, "filter expects 2 input channels, input has 3");
    }
}
