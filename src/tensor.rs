//! Plaintext tensors: what constant folding produces and what the plaintext
//! executor computes with.
//!
//! TensorFlow has many dtypes; an inference graph uses floats for data and
//! integers for shapes, axes and indices. Floats are held as f32 (TensorFlow's own
//! precision for these models; float64 constants are narrowed), integers as i64.

use ndarray::ArrayD;

#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    Float(ArrayD<f32>),
    Int(ArrayD<i64>),
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::Float(a) => a.shape(),
            Tensor::Int(a) => a.shape(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Tensor::Float(_) => "float",
            Tensor::Int(_) => "integer",
        }
    }

    pub fn as_float(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::Float(a) => Some(a),
            Tensor::Int(_) => None,
        }
    }

    pub fn as_int(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::Int(a) => Some(a),
            Tensor::Float(_) => None,
        }
    }

    /// The tensor as f32 values (integers converted), e.g. for `--out`.
    pub fn to_float(&self) -> ArrayD<f32> {
        match self {
            Tensor::Float(a) => a.clone(),
            Tensor::Int(a) => a.mapv(|v| v as f32),
        }
    }

    pub fn scalar_float(v: f32) -> Tensor {
        Tensor::Float(ArrayD::from_elem(ndarray::IxDyn(&[]), v))
    }
}

/// A human-readable shape, `[1, 28, 28, 1]`.
/// The number of elements of a shape, or `None` if it overflows `usize`
/// (shapes come from files and peers: their product is never trusted).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}
