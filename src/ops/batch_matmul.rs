//! BatchMatMul (TensorFlow's BatchMatMulV2/V3, Keras' `Dot` merge layer, and what
//! `Einsum` lowers to): matrix products over the last two axes, the batch axes
//! broadcast. Under Pond it is a Beaver product with its own bilinear map
//! (`protocol::mul::Bilinear::BatchMatMul`), of two private tensors (attention's
//! Q·Kᵀ and scores·V) or of a private tensor and a weight, masks reused like every
//! product's, then one truncation.

use anyhow::Result;

use super::{OpUnit, Product};
use crate::kernels::linear;
use crate::protocol::mul::Bilinear;
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BatchMatMul {
    /// Transpose the last two axes of x (of y) first.
    pub adj_x: bool,
    pub adj_y: bool,
}

impl BatchMatMul {
    fn product(&self) -> Product {
        Product { map: Bilinear::BatchMatMul { adj_x: self.adj_x, adj_y: self.adj_y }, truncates: true }
    }
}

impl OpUnit for BatchMatMul {
    fn name(&self) -> &'static str {
        "BatchMatMul"
    }

    fn arity(&self) -> usize {
        2
    }

    /// Of rank 3 or more, the first axis is a batch axis of an operand of the
    /// output's rank (a lower-rank operand is broadcast, its first axis is a
    /// matrix axis); of rank 2, x's rows are the output's unless x is transposed.
    fn rows(&self, ins: &[&[usize]]) -> crate::plan::RowRule {
        let out_rank = ins.iter().map(|s| s.len()).max().unwrap_or(0);
        let batched = (0..ins.len())
            .filter(|&k| {
                let rank = ins.get(k).map_or(0, |s| s.len());
                if out_rank >= 3 { rank == out_rank } else { k == 0 && !self.adj_x }
            })
            .collect();
        crate::plan::RowRule::Batch(batched)
    }

    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String> {
        let [x, y] = ins else { return Err(format!("expects 2 inputs, has {}", ins.len())) };
        let out = linear::batch_matmul_shape(x, y, self.adj_x, self.adj_y)?;
        crate::tensor::element_count(&out).ok_or_else(|| format!("an output of shape {out:?} is too large"))?;
        Ok(out)
    }

    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        match ins {
            [Tensor::Float(x), Tensor::Float(y)] => {
                Ok(Tensor::Float(linear::batch_matmul(x, y, self.adj_x, self.adj_y)))
            }
            _ => Err("BatchMatMul needs two float inputs".into()),
        }
    }
}

super::product_unit!(BatchMatMul);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn array(shape: &[usize], f: impl Fn(usize) -> i64) -> ArrayD<i64> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    /// Each output matrix is the product of the matrices its batch index reads,
    /// a size-1 or missing batch axis repeating, each transposed if asked.
    #[test]
    fn batch_matmul_is_matmul_per_broadcast_batch_index() {
        let x = array(&[3, 2, 5, 4], |i| ((i * 37) % 11) as i64 - 5);
        let y = array(&[1, 5, 3], |i| ((i * 13) % 7) as i64 - 3);
        let out = linear::batch_matmul(&x, &y, true, false);
        assert_eq!(out.shape(), &[3, 2, 4, 3]);
        for a in 0..3 {
            for b in 0..2 {
                let xm = x.slice(ndarray::s![a, b, .., ..]).to_owned().into_dyn();
                let ym = y.slice(ndarray::s![0, .., ..]).to_owned().into_dyn();
                let want = linear::matmul(&xm, &ym, true, false);
                assert_eq!(out.slice(ndarray::s![a, b, .., ..]).to_owned().into_dyn(), want, "batch {a},{b}");
            }
        }
        let yt = array(&[3, 1, 3, 5], |i| ((i * 13) % 7) as i64 - 3);
        let out = linear::batch_matmul(&x, &yt, true, true);
        assert_eq!(out.shape(), &[3, 2, 4, 3]);
        let xm = x.slice(ndarray::s![2, 1, .., ..]).to_owned().into_dyn();
        let ym = yt.slice(ndarray::s![2, 0, .., ..]).to_owned().into_dyn();
        assert_eq!(out.slice(ndarray::s![2, 1, .., ..]).to_owned().into_dyn(), linear::matmul(&xm, &ym, true, true));
    }

    #[test]
    fn batch_axes_that_do_not_broadcast_are_refused_naming_both_shapes() {
        let op = BatchMatMul { adj_x: false, adj_y: false };
        assert_eq!(
            op.output_shape(&[&[2, 3, 4], &[3, 4, 5]]).unwrap_err(),
            "the batch axes of [2, 3, 4] and [3, 4, 5] do not broadcast"
        );
        assert!(op.output_shape(&[&[2, 3, 4], &[2, 5, 4]]).unwrap_err().contains("inner dimensions differ"));
        assert!(op.output_shape(&[&[4], &[4, 5]]).unwrap_err().contains("rank 2 or more"));
    }
}
