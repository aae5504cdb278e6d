//! The plan's operations: their static shape rules and their plaintext meaning.
//!
//! `output_shape` is what the importer checks a graph with; `eval` is both the
//! constant folder (public subgraphs) and the plaintext executor, so the two can
//! never disagree about what an op means.

// Shape rules run on what graphs and network peers say: nothing here may panic.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use ndarray::ArrayD;

use crate::kernels::layout::{self, AxisSlice};
use crate::kernels::{Padding, Window, float, linear};
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    // Linear in each private input (a product when both are private).
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// NHWC input, HWIO filter.
    Conv2D(Window),
    /// Element-wise with NumPy broadcasting.
    Add,
    Sub,
    Mul,
    Neg,
    /// Average over a window; padding does not count (TensorFlow's AvgPool).
    AvgPool(Window),
    Sum {
        axes: Vec<usize>,
        keep_dims: bool,
    },
    Mean {
        axes: Vec<usize>,
        keep_dims: bool,
    },

    // Non-linear.
    Relu,
    Sigmoid,
    Tanh,
    /// Over the last axis.
    Softmax,
    Rsqrt,
    MaxPool(Window),
    Max {
        axes: Vec<usize>,
        keep_dims: bool,
    },
    ArgMax {
        axis: usize,
    },

    // Data movement.
    Reshape(Vec<usize>),
    Transpose(Vec<usize>),
    Pad(Vec<[usize; 2]>),
    Concat {
        axis: usize,
    },
    /// Per-axis strided selection, then a reshape that drops shrunk axes and adds new ones.
    StridedSlice {
        axes: Vec<AxisSlice>,
        shape: Vec<usize>,
    },
    Gather {
        axis: usize,
        indices: ArrayD<usize>,
    },
    SpaceToBatch {
        block: Vec<usize>,
        pads: Vec<[usize; 2]>,
    },
    BatchToSpace {
        block: Vec<usize>,
        crops: Vec<[usize; 2]>,
    },

    /// Integer to float (or float to float); only ever evaluated in the clear.
    CastToFloat,
    /// Float to integer, truncating toward zero; only ever evaluated in the clear.
    CastToInt,

    /// An op defined whole in its own module under `crate::ops` (Relu6,
    /// LeakyRelu, Maximum, …): its shape rule, meaning and secure halves are there.
    Unit(crate::ops::Unit),
}

type ShapeResult = Result<Vec<usize>, String>;

impl Op {
    /// A short name for listings and statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MatMul { .. } => "MatMul",
            Op::Conv2D(_) => "Conv2D",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Neg => "Neg",
            Op::AvgPool(_) => "AvgPool",
            Op::Sum { .. } => "Sum",
            Op::Mean { .. } => "Mean",
            Op::Relu => "Relu",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::Softmax => "Softmax",
            Op::Rsqrt => "Rsqrt",
            Op::MaxPool(_) => "MaxPool",
            Op::Max { .. } => "Max",
            Op::ArgMax { .. } => "ArgMax",
            Op::Reshape(_) => "Reshape",
            Op::Transpose(_) => "Transpose",
            Op::Pad(_) => "Pad",
            Op::Concat { .. } => "Concat",
            Op::StridedSlice { .. } => "StridedSlice",
            Op::Gather { .. } => "Gather",
            Op::SpaceToBatch { .. } => "SpaceToBatch",
            Op::BatchToSpace { .. } => "BatchToSpace",
            Op::CastToFloat => "CastToFloat",
            Op::CastToInt => "CastToInt",
            Op::Unit(u) => u.def().name(),
        }
    }

    /// How many inputs the op takes (`None`: any number, for Concat).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::MatMul { .. } | Op::Conv2D(_) | Op::Add | Op::Sub | Op::Mul => Some(2),
            Op::Concat { .. } => None,
            Op::Unit(u) => Some(u.def().arity()),
            _ => Some(1),
        }
    }

    /// The output shape for inputs of these shapes, or why they do not fit.
    pub fn output_shape(&self, ins: &[&[usize]]) -> ShapeResult {
        if let Some(n) = self.arity()
            && ins.len() != n
        {
            return Err(format!("expects {n} inputs, has {}", ins.len()));
        }
        // The arity is checked: these are the inputs, not defaults.
        let x: &[usize] = ins.first().copied().unwrap_or_default();
        let y: &[usize] = ins.get(1).copied().unwrap_or_default();
        match self {
            Op::Unit(u) => u.def().output_shape(ins),
            Op::MatMul { transpose_a, transpose_b } => matmul_shape(x, y, *transpose_a, *transpose_b),
            Op::Conv2D(w) => conv2d_shape(x, y, w),
            Op::Add | Op::Sub | Op::Mul => broadcast_shape(x, y),
            Op::AvgPool(w) | Op::MaxPool(w) => pool_shape(x, w),
            Op::Sum { axes, keep_dims } | Op::Mean { axes, keep_dims } | Op::Max { axes, keep_dims } => {
                reduce_shape(x, axes, *keep_dims)
            }
            Op::ArgMax { axis } => {
                check_axis(*axis, x.len())?;
                if x.get(*axis) == Some(&0) {
                    return Err("ArgMax over an empty axis".into());
                }
                Ok(remove_axis(x, *axis))
            }
            Op::Softmax => {
                if x.is_empty() {
                    return Err("Softmax needs at least one axis".into());
                }
                Ok(x.to_vec())
            }
            Op::Neg | Op::Relu | Op::Sigmoid | Op::Tanh | Op::Rsqrt | Op::CastToFloat | Op::CastToInt => Ok(x.to_vec()),
            Op::Reshape(shape) => {
                let count = |s: &[usize]| {
                    crate::tensor::element_count(s).ok_or_else(|| format!("Reshape to {shape:?}: too many values"))
                };
                let (from, to) = (count(x)?, count(shape)?);
                if from != to {
                    return Err(format!("cannot reshape {:?} ({from} values) to {shape:?} ({to} values)", x));
                }
                Ok(shape.clone())
            }
            Op::Transpose(perm) => {
                let mut seen = vec![false; x.len()];
                if perm.len() != x.len()
                    || perm.iter().any(|&p| seen.get_mut(p).is_none_or(|s| std::mem::replace(s, true)))
                {
                    return Err(format!("{perm:?} is not a permutation of the {} axes of {:?}", x.len(), x));
                }
                Ok(perm.iter().filter_map(|&p| x.get(p).copied()).collect())
            }
            Op::Pad(pads) => {
                if pads.len() != x.len() {
                    return Err(format!("paddings for {} axes, input {:?} has {}", pads.len(), x, x.len()));
                }
                x.iter()
                    .zip(pads)
                    .map(|(&d, [before, after])| {
                        d.checked_add(*before)
                            .and_then(|v| v.checked_add(*after))
                            .ok_or_else(|| format!("paddings {pads:?} are too large"))
                    })
                    .collect()
            }
            Op::Concat { axis } => concat_shape(ins, *axis),
            Op::StridedSlice { axes, shape } => {
                if axes.len() != x.len() {
                    return Err(format!("slice of {} axes, input {:?} has {}", axes.len(), x, x.len()));
                }
                for (s, &d) in axes.iter().zip(x) {
                    if s.count > 0 && last_index(s).is_none_or(|last| s.start >= d || last >= d) {
                        return Err(format!("slice {s:?} is outside an axis of {d}"));
                    }
                }
                let too_many = || format!("slice {axes:?} or shape {shape:?} has too many values");
                let n = crate::tensor::element_count(&axes.iter().map(|s| s.count).collect::<Vec<_>>())
                    .ok_or_else(too_many)?;
                if n != crate::tensor::element_count(shape).ok_or_else(too_many)? {
                    return Err(format!("slice of {n} values cannot have shape {shape:?}"));
                }
                Ok(shape.clone())
            }
            Op::Gather { axis, indices } => {
                check_axis(*axis, x.len())?;
                let size = x.get(*axis).copied().unwrap_or(0);
                if let Some(&bad) = indices.iter().find(|&&i| i >= size) {
                    return Err(format!("index {bad} is out of range for axis {axis} of {:?}", x));
                }
                let (before, after) = x.split_at(*axis);
                let mut shape = before.to_vec();
                shape.extend_from_slice(indices.shape());
                shape.extend_from_slice(after.get(1..).unwrap_or_default());
                Ok(shape)
            }
            Op::SpaceToBatch { block, pads } => {
                let Some((&batch, spatial)) = x.split_first() else {
                    return Err(format!("block {block:?} and paddings {pads:?} do not fit input {x:?}"));
                };
                if spatial.len() < block.len() || pads.len() != block.len() || block.contains(&0) {
                    return Err(format!("block {block:?} and paddings {pads:?} do not fit input {x:?}"));
                }
                let too_large = || format!("block {block:?} and paddings {pads:?} are too large for {x:?}");
                let blocks = block.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or_else(too_large)?;
                let mut shape = vec![batch.checked_mul(blocks).ok_or_else(too_large)?];
                // `axis` counts the batch axis: it names the input's axis.
                for (axis, (&d, rest)) in
                    (1usize..).zip(spatial.iter().zip(block.iter().zip(pads).map(Some).chain(std::iter::repeat(None))))
                {
                    let Some((&b, [before, after])) = rest else {
                        shape.push(d);
                        continue;
                    };
                    let padded = d.checked_add(*before).and_then(|v| v.checked_add(*after)).ok_or_else(too_large)?;
                    // `b` is not 0 (checked above).
                    let (blocks_along, rest) = (padded.checked_div(b), padded.checked_rem(b));
                    let (Some(along), Some(0)) = (blocks_along, rest) else {
                        return Err(format!("padded axis {axis} of size {padded} is not a multiple of block {b}"));
                    };
                    shape.push(along);
                }
                Ok(shape)
            }
            Op::BatchToSpace { block, crops } => {
                let blocks = block.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap_or(0);
                let Some((&batch, spatial)) = x.split_first() else {
                    return Err(format!("block {block:?} and crops {crops:?} do not fit input {x:?}"));
                };
                // None for no blocks (a 0 in `block`, or too many to count).
                let per_block = batch.checked_div(blocks).filter(|_| batch.is_multiple_of(blocks));
                let Some(per_block) = per_block.filter(|_| spatial.len() >= block.len() && crops.len() == block.len())
                else {
                    return Err(format!("block {block:?} and crops {crops:?} do not fit input {x:?}"));
                };
                let mut shape = vec![per_block];
                // `axis` counts the batch axis: it names the input's axis.
                for (axis, (&d, rest)) in
                    (1usize..).zip(spatial.iter().zip(block.iter().zip(crops).map(Some).chain(std::iter::repeat(None))))
                {
                    let Some((&b, [before, after])) = rest else {
                        shape.push(d);
                        continue;
                    };
                    let full = d.checked_mul(b).ok_or_else(|| format!("block {block:?} is too large for {x:?}"))?;
                    match full.checked_sub(*before).and_then(|v| v.checked_sub(*after)) {
                        Some(cropped) => shape.push(cropped),
                        None => return Err(format!("crops [{before}, {after}] exceed axis {axis} of size {full}")),
                    }
                }
                Ok(shape)
            }
        }
    }

    /// Evaluate in the clear. Shapes have been checked by `output_shape`.
    pub fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String> {
        use Tensor::{Float, Int};
        let input = |i: usize| -> Result<&Tensor, String> {
            ins.get(i).copied().ok_or_else(|| format!("{} is missing input {i}", self.name()))
        };
        let float = |i: usize| -> Result<&ArrayD<f32>, String> {
            let t = input(i)?;
            t.as_float().ok_or_else(|| format!("{} needs float inputs, input {i} is {}", self.name(), t.kind()))
        };
        Ok(match self {
            Op::Unit(u) => return u.def().eval(ins),
            Op::MatMul { transpose_a, transpose_b } => {
                Float(linear::matmul(float(0)?, float(1)?, *transpose_a, *transpose_b))
            }
            Op::Conv2D(w) => Float(linear::conv2d(float(0)?, float(1)?, w)),
            Op::Add | Op::Sub | Op::Mul => match (input(0)?, input(1)?) {
                (Float(a), Float(b)) => Float(binary(self, a, b)),
                (Int(a), Int(b)) => Int(binary(self, a, b)),
                _ => return Err(format!("{} of a float and an integer tensor", self.name())),
            },
            Op::Neg => match input(0)? {
                Float(a) => Float(a.mapv(|v| -v)),
                Int(a) => Int(a.mapv(|v| v.wrapping_neg())),
            },
            Op::AvgPool(w) => {
                let (mut sums, counts) = linear::sum_pool(float(0)?, w);
                let mut view = sums.view_mut().into_dimensionality::<ndarray::Ix4>().map_err(|e| e.to_string())?;
                for ((a, b, c, d), v) in view.indexed_iter_mut() {
                    // The counts are per output pixel, wherever the layout keeps rows and columns.
                    let [_, oy, ox, _] = w.layout.split(&[a, b, c, d]).unwrap_or_default();
                    *v /= counts.get([oy, ox]).copied().unwrap_or(1) as f32;
                }
                Float(sums)
            }
            Op::Sum { axes, keep_dims } => match input(0)? {
                Float(a) => Float(linear::reduce_sum(a, axes, *keep_dims)),
                Int(a) => Int(linear::reduce_sum(a, axes, *keep_dims)),
            },
            Op::Mean { axes, keep_dims } => {
                let a = float(0)?;
                let count: usize = axes.iter().filter_map(|&ax| a.shape().get(ax)).product();
                Float(linear::reduce_sum(a, axes, *keep_dims).mapv_into(|v| v / count as f32))
            }
            Op::Relu => Float(float::relu(float(0)?)),
            Op::Sigmoid => Float(float::sigmoid(float(0)?)),
            Op::Tanh => Float(float::tanh(float(0)?)),
            Op::Softmax => Float(float::softmax(float(0)?)),
            Op::Rsqrt => Float(float::rsqrt(float(0)?)),
            Op::MaxPool(w) => Float(float::max_pool(float(0)?, w)),
            Op::Max { axes, keep_dims } => match input(0)? {
                Float(a) => Float(float::reduce_max(a, axes, *keep_dims)),
                Int(a) => Int(reduce_max_int(a, axes, *keep_dims)),
            },
            Op::ArgMax { axis } => Int(float::argmax(float(0)?, *axis)),
            Op::CastToFloat => Float(input(0)?.to_float()),
            Op::CastToInt => match input(0)? {
                Float(a) => Int(a.mapv(|v| v as i64)),
                Int(a) => Int(a.clone()),
            },
            Op::Concat { axis } => match input(0)? {
                Float(_) => Float(layout::concat(&all(ins, Tensor::as_float, self)?, *axis)),
                Int(_) => Int(layout::concat(&all(ins, Tensor::as_int, self)?, *axis)),
            },
            // One-input data movement: the same generic kernel on either element type.
            _ => match input(0)? {
                Float(a) => Float(self.move_data(a)),
                Int(a) => Int(self.move_data(a)),
            },
        })
    }

    /// Apply a one-input data-movement op to any element type (plaintext or shares).
    pub fn move_data<T: Clone + num_traits::Zero>(&self, a: &ArrayD<T>) -> ArrayD<T> {
        match self {
            Op::Reshape(shape) => layout::reshape(a, shape),
            Op::Transpose(perm) => layout::transpose(a, perm),
            Op::Pad(pads) => layout::pad(a, pads),
            Op::StridedSlice { axes, shape } => layout::reshape(&layout::strided_slice(a, axes), shape),
            Op::Gather { axis, indices } => layout::gather(a, indices, *axis),
            Op::SpaceToBatch { block, pads } => layout::space_to_batch(a, block, pads),
            Op::BatchToSpace { block, crops } => layout::batch_to_space(a, block, crops),
            other => unreachable!("{} is not a data-movement op", other.name()),
        }
    }

    /// Does this op only move data (so it runs locally on shares)?
    pub fn is_data_movement(&self) -> bool {
        matches!(
            self,
            Op::Reshape(_)
                | Op::Transpose(_)
                | Op::Pad(_)
                | Op::Concat { .. }
                | Op::StridedSlice { .. }
                | Op::Gather { .. }
                | Op::SpaceToBatch { .. }
                | Op::BatchToSpace { .. }
        )
    }
}

fn all<'a, T>(
    ins: &[&'a Tensor],
    get: fn(&'a Tensor) -> Option<&'a ArrayD<T>>,
    op: &Op,
) -> Result<Vec<&'a ArrayD<T>>, String> {
    ins.iter().map(|t| get(t).ok_or_else(|| format!("{} of tensors of different kinds", op.name()))).collect()
}

// The values' own arithmetic, in the clear (the plaintext reference and the
// importer's folding): never on what a network peer sends.
#[allow(clippy::arithmetic_side_effects)]
fn binary<T>(op: &Op, a: &ArrayD<T>, b: &ArrayD<T>) -> ArrayD<T>
where
    T: Clone + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::Mul<Output = T>,
{
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        _ => unreachable!(),
    }
}

fn reduce_max_int(a: &ArrayD<i64>, axes: &[usize], keep_dims: bool) -> ArrayD<i64> {
    let mut out = a.clone();
    for &axis in axes.iter().rev() {
        out = out.fold_axis(ndarray::Axis(axis), i64::MIN, |&x, &y| x.max(y));
        if keep_dims {
            out.insert_axis_inplace(ndarray::Axis(axis));
        }
    }
    out
}

fn check_axis(axis: usize, rank: usize) -> Result<(), String> {
    if axis >= rank {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(())
}

fn remove_axis(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    if axis < s.len() {
        s.remove(axis);
    }
    s
}

/// The index of the last element a slice selects (of one with `count` > 0), if
/// it is one: a slice from the network may name any start, step and count.
fn last_index(s: &AxisSlice) -> Option<usize> {
    let steps = isize::try_from(s.count.checked_sub(1)?).ok()?.checked_mul(s.step)?;
    s.start.checked_add_signed(steps)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> ShapeResult {
    let rank = a.len().max(b.len());
    // Axis i counts from the left of the longer shape; a shorter one lacks the first axes.
    let dim = |s: &[usize], i: usize| {
        i.checked_sub(rank.saturating_sub(s.len())).and_then(|j| s.get(j)).copied().unwrap_or(1)
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

fn matmul_shape(a: &[usize], b: &[usize], ta: bool, tb: bool) -> ShapeResult {
    let (&[a0, a1], &[b0, b1]) = (a, b) else {
        return Err(format!("MatMul needs two matrices, has {a:?} and {b:?}"));
    };
    let (m, k1) = if ta { (a1, a0) } else { (a0, a1) };
    let (k2, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k1 != k2 {
        return Err(format!(
            "inner dimensions differ: {a:?}{} times {b:?}{} ({k1} vs {k2})",
            if ta { "ᵀ" } else { "" },
            if tb { "ᵀ" } else { "" }
        ));
    }
    Ok(vec![m, n])
}

fn conv2d_shape(x: &[usize], f: &[usize], w: &Window) -> ShapeResult {
    let layout = w.layout;
    let [n, h, wd, c] =
        layout.split(x).ok_or_else(|| format!("input must be {} (rank 4), has shape {x:?}", layout.name()))?;
    let &[fh, fw, fc, out] = f else {
        return Err(format!("filter must be [height, width, in, out], has shape {f:?}"));
    };
    if fc != c {
        return Err(format!("filter expects {fc} input channels, input has {c}"));
    }
    let w = Window { kernel: [fh, fw], ..*w };
    let g = w.geometry([h, wd]).ok_or_else(|| format!("a {fh}x{fw} filter does not fit a {h}x{wd} input"))?;
    Ok(layout.join([n, g.out[0], g.out[1], out]))
}

fn pool_shape(x: &[usize], w: &Window) -> ShapeResult {
    let layout = w.layout;
    let [n, h, wd, c] =
        layout.split(x).ok_or_else(|| format!("input must be {} (rank 4), has shape {x:?}", layout.name()))?;
    let [kh, kw] = w.kernel;
    // The pool kernels take no dilations; a geometry padded for them would put
    // windows wholly before the input.
    if w.dilations != [1, 1] {
        return Err(format!("a pool has no dilations, this one has {:?}", w.dilations));
    }
    if let Padding::Explicit(pads) = w.padding
        && pads.iter().zip(w.kernel).any(|(p, k)| p.iter().any(|&p| p >= k))
    {
        // A window wholly in the padding would pool nothing.
        return Err(format!("paddings {pads:?} are not all smaller than the {kh}x{kw} window"));
    }
    let g = w.geometry([h, wd]).ok_or_else(|| format!("a {kh}x{kw} window does not fit a {h}x{wd} input"))?;
    if w.padding == Padding::Same && g.out.contains(&0) {
        return Err("empty output".into());
    }
    Ok(layout.join([n, g.out[0], g.out[1], c]))
}

fn reduce_shape(x: &[usize], axes: &[usize], keep_dims: bool) -> ShapeResult {
    for &a in axes {
        check_axis(a, x.len())?;
    }
    Ok(x.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect())
}

fn concat_shape(ins: &[&[usize]], axis: usize) -> ShapeResult {
    let first = ins.first().ok_or("Concat of nothing")?;
    check_axis(axis, first.len())?;
    let mut out = first.to_vec();
    for s in ins.iter().skip(1) {
        if s.len() != first.len() || s.iter().zip(first.iter()).enumerate().any(|(i, (a, b))| i != axis && a != b) {
            return Err(format!("cannot concatenate {first:?} and {s:?} along axis {axis}"));
        }
        if let (Some(total), Some(&more)) = (out.get_mut(axis), s.get(axis)) {
            *total = total.checked_add(more).ok_or("the concatenation is too large")?;
        }
    }
    Ok(out)
}

/// A tensor of shape `shape` filled by `f`, for tests.
#[cfg(test)]
pub fn from_fn(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(ndarray::IxDyn(shape), (0..n).map(f).collect()).expect("shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Layout;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[4]), Ok(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 1], &[1, 5]), Ok(vec![2, 5]));
        assert!(broadcast_shape(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn conv_shape_error_names_channels() {
        let w = Window {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            padding: Padding::Valid,
            layout: Layout::Nhwc,
        };
        let err = conv2d_shape(&[1, 8, 8, 8], &[3, 3, 16, 4], &w).unwrap_err();
        assert_eq!(err, "filter expects 16 input channels, input has 8");
    }

    #[test]
    fn avg_pool_divides_by_valid_count() {
        let w =
            Window { kernel: [2, 2], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        let x = Tensor::Float(from_fn(&[1, 3, 3, 1], |i| i as f32));
        let out = Op::AvgPool(w).eval(&[&x]).unwrap();
        let out = out.as_float().unwrap();
        // windows: {0,1,3,4} {2,5} {6,7} {8}
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![2.0, 3.5, 6.5, 8.0]);
    }

    /// The plaintext NCHW AvgPool divided each output by the count of the pixel at
    /// (channel, row) instead of (row, column): wrong wherever SAME padding makes
    /// counts differ (the secure unit was right; `--plaintext` and folding were not).
    #[test]
    fn an_nchw_same_avg_pool_divides_each_pixel_by_its_own_count() {
        let w =
            Window { kernel: [2, 2], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nchw };
        // Two channels of the 3×3 image above: channel c holds i + 9c.
        let x = Tensor::Float(from_fn(&[1, 2, 3, 3], |i| i as f32));
        let out = Op::AvgPool(w).eval(&[&x]).unwrap();
        let out = out.as_float().unwrap();
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![2.0, 3.5, 6.5, 8.0, 11.0, 12.5, 15.5, 17.0]);
    }

    #[test]
    fn window_shapes_follow_the_layout_and_explicit_pads() {
        let nhwc = Window {
            kernel: [3, 3],
            strides: [2, 1],
            dilations: [1, 1],
            padding: Padding::Valid,
            layout: Layout::Nhwc,
        };
        let nchw = Window { layout: Layout::Nchw, ..nhwc };
        assert_eq!(conv2d_shape(&[2, 9, 8, 3], &[3, 3, 3, 5], &nhwc), Ok(vec![2, 4, 6, 5]));
        assert_eq!(conv2d_shape(&[2, 3, 9, 8], &[3, 3, 3, 5], &nchw), Ok(vec![2, 5, 4, 6]));
        assert_eq!(pool_shape(&[2, 9, 8, 3], &nhwc), Ok(vec![2, 4, 6, 3]));
        assert_eq!(pool_shape(&[2, 3, 9, 8], &nchw), Ok(vec![2, 3, 4, 6]));
        // NCHW channels are axis 1: this NHWC-shaped input has 9 of them, not 3.
        assert_eq!(
            conv2d_shape(&[2, 9, 8, 3], &[3, 3, 3, 5], &nchw),
            Err("filter expects 3 input channels, input has 9".into())
        );
        // Explicit pads: the padded input, then VALID.
        let explicit = Window { padding: Padding::Explicit([[1, 2], [0, 1]]), ..nhwc };
        assert_eq!(pool_shape(&[2, 9, 8, 3], &explicit), pool_shape(&[2, 12, 9, 3], &nhwc));
        assert_eq!(conv2d_shape(&[2, 9, 8, 3], &[3, 3, 3, 5], &explicit), Ok(vec![2, 5, 7, 5]));
        // A pool window wholly in the padding would pool nothing.
        let beyond = Window { padding: Padding::Explicit([[3, 0], [0, 0]]), ..nhwc };
        assert!(pool_shape(&[2, 9, 8, 3], &beyond).unwrap_err().contains("not all smaller"));
    }
}
