//! ResizeBilinear (Keras's `UpSampling2D(interpolation="bilinear")`, TensorFlow's
//! `tf.image.resize`, ONNX's linear Resize), in NHWC or NCHW: a public linear map. Each output pixel is the sum of at
//! most four input pixels times public weights (products of the two axes'
//! interpolation weights), computed locally at 2f fractional bits, then one
//! truncation: one round, no product.
//!
//! Error: each weight is encoded with f fractional bits (at most 2^−(f+1) off,
//! nothing for weights on that grid, such as the 1/16 multiples of a ×2 or ×4
//! half-pixel upsampling), and the truncation is off by one unit in the last
//! place: |error| ≤ 4·max|x|·2^−(f+1) + 2^−f.

use anyhow::Result;

use super::{CostCx, DealerMasks, How, OpUnit, SecureOp, ServerMasks, StepCx};
use crate::kernels::Layout;
use crate::kernels::linear::{self, Tap};
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::RingTensor;
use crate::tensor::Tensor;

/// Outputs larger than this along an axis are refused: the taps are per index.
pub const MAX_SIZE: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResizeBilinear {
    /// Output height and width.
    pub size: [usize; 2],
    pub align_corners: bool,
    pub half_pixel_centers: bool,
    /// The input's and output's layout (absent in plans from before layouts:
    /// those are NHWC).
    #[serde(default)]
    pub layout: Layout,
}

impl ResizeBilinear {
    /// The taps along height and width for an input of `shape` (in the unit's layout).
    fn taps(&self, shape: &[usize]) -> (Vec<Tap>, Vec<Tap>) {
        let [_, h, w, _] = self.layout.split(shape).unwrap_or([1; 4]);
        (
            linear::bilinear_taps(h, self.size[0], self.align_corners, self.half_pixel_centers),
            linear::bilinear_taps(w, self.size[1], self.align_corners, self.half_pixel_centers),
        )
    }
}

impl OpUnit for ResizeBilinear {
    fn name(&self) -> &'static str {
        "ResizeBilinear"
    }

    fn arity(&self) -> usize {
        1
    }

    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        // The batch axis of its input (not of a filter).
        crate::plan::RowRule::Batch(vec![0])
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let layout = self.layout;
        let Some([n, h, w, c]) = ins.first().and_then(|x| layout.split(x)) else {
            return Err(format!("input must be {} (rank 4), has shape {:?}", layout.name(), ins.first()));
        };
        let [oh, ow] = self.size;
        if h == 0 || w == 0 || oh == 0 || ow == 0 || oh > MAX_SIZE || ow > MAX_SIZE {
            return Err(format!("cannot resize {h}x{w} to {oh}x{ow} (sizes 1 to {MAX_SIZE})"));
        }
        if self.align_corners && self.half_pixel_centers {
            return Err("align_corners and half_pixel_centers cannot both be set".into());
        }
        Ok(layout.join([n, oh, ow, c]))
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        match ins.first() {
            Some(Tensor::Float(x)) => {
                let (ys, xs) = self.taps(x.shape());
                Ok(Tensor::Float(linear::resize_bilinear(x, &ys, &xs, self.layout, |w| w as f32)))
            }
            _ => Err("ResizeBilinear needs a float input".into()),
        }
    }
}

impl SecureOp for ResizeBilinear {
    fn run(&self, s: &mut Server, cx: &StepCx, _: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor> {
        let (ys, xs) = self.taps(ins[0].shape());
        let z = linear::resize_bilinear(ins[0], &ys, &xs, self.layout, |w| cx.fp.encode_value(w));
        truncate(s, &z, cx.fp.frac_bits)
    }

    fn deal(&self, d: &mut Dealer, cx: &StepCx, _: &mut DealerMasks) -> Result<()> {
        deal_truncate(d, cx.out_shape(), cx.fp.frac_bits)
    }

    fn cost(&self, cx: &mut CostCx) -> Cost {
        truncate_cost(cx.out_len())
    }

    fn how(&self) -> How {
        How::Scaled
    }
}
