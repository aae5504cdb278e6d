//! Data movement: every output element is a copy of one input element, or zero.
//! Generic over the element type, so the same code moves plaintext and shares.

use ndarray::{ArrayD, Axis, Dimension, IxDyn};
use num_traits::Zero;

/// Reshape (the element count must already have been checked).
pub fn reshape<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    let flat: Vec<T> = a.iter().cloned().collect();
    ArrayD::from_shape_vec(IxDyn(shape), flat).expect("reshape: element count checked at plan time")
}

pub fn transpose<T: Clone>(a: &ArrayD<T>, perm: &[usize]) -> ArrayD<T> {
    a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned()
}

/// Zero padding, `pads[axis] = [before, after]`.
pub fn pad<T: Clone + Zero>(a: &ArrayD<T>, pads: &[[usize; 2]]) -> ArrayD<T> {
    let shape: Vec<usize> = a.shape().iter().zip(pads).map(|(&d, p)| d + p[0] + p[1]).collect();
    let mut out = ArrayD::from_elem(IxDyn(&shape), T::zero());
    let mut inner = out.view_mut();
    for (axis, p) in pads.iter().enumerate() {
        inner.slice_axis_inplace(Axis(axis), ndarray::Slice::from(p[0]..p[0] + a.shape()[axis]));
    }
    inner.assign(a);
    out
}

pub fn concat<T: Clone>(parts: &[&ArrayD<T>], axis: usize) -> ArrayD<T> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(axis), &views).expect("concat: shapes checked at plan time")
}

/// One axis of a strided slice: `count` elements from `start` in steps of `step`
/// (negative steps walk backwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AxisSlice {
    pub start: usize,
    pub step: isize,
    pub count: usize,
}

pub fn strided_slice<T: Clone>(a: &ArrayD<T>, axes: &[AxisSlice]) -> ArrayD<T> {
    let shape: Vec<usize> = axes.iter().map(|s| s.count).collect();
    let mut src = vec![0usize; axes.len()];
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        for (k, s) in axes.iter().enumerate() {
            src[k] = (s.start as isize + s.step * idx[k] as isize) as usize;
        }
        a[IxDyn(&src)].clone()
    })
}

/// `tf.gather(params, indices, axis)` with in-range, non-negative indices.
pub fn gather<T: Clone>(params: &ArrayD<T>, indices: &ArrayD<usize>, axis: usize) -> ArrayD<T> {
    let mut shape = params.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&params.shape()[axis + 1..]);
    let irank = indices.ndim();
    let mut src = vec![0usize; params.ndim()];
    let mut iidx = vec![0usize; irank];
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        src[..axis].copy_from_slice(&idx.slice()[..axis]);
        iidx.copy_from_slice(&idx.slice()[axis..axis + irank]);
        src[axis] = indices[IxDyn(&iidx)];
        src[axis + 1..].copy_from_slice(&idx.slice()[axis + irank..]);
        params[IxDyn(&src)].clone()
    })
}

/// `tf.space_to_batch_nd`: zero-pad the `block.len()` spatial axes after the batch,
/// then move each block offset into the batch (offset-major, as TensorFlow does).
pub fn space_to_batch<T: Clone + Zero>(a: &ArrayD<T>, block: &[usize], pads: &[[usize; 2]]) -> ArrayD<T> {
    let m = block.len();
    let batch = a.shape()[0];
    let mut shape = a.shape().to_vec();
    shape[0] = batch * block.iter().product::<usize>();
    for i in 0..m {
        shape[1 + i] = (a.shape()[1 + i] + pads[i][0] + pads[i][1]) / block[i];
    }
    let mut src = vec![0usize; a.ndim()];
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let mut offset = idx[0] / batch;
        src[0] = idx[0] % batch;
        // Block offsets are row-major over the block axes: peel the last one first.
        for i in (0..m).rev() {
            let o = offset % block[i];
            offset /= block[i];
            let padded = idx[1 + i] * block[i] + o;
            if padded < pads[i][0] || padded >= pads[i][0] + a.shape()[1 + i] {
                return T::zero();
            }
            src[1 + i] = padded - pads[i][0];
        }
        src[1 + m..].copy_from_slice(&idx.slice()[1 + m..]);
        a[IxDyn(&src)].clone()
    })
}

/// `tf.batch_to_space_nd`: the inverse of [`space_to_batch`], cropping instead of padding.
pub fn batch_to_space<T: Clone>(a: &ArrayD<T>, block: &[usize], crops: &[[usize; 2]]) -> ArrayD<T> {
    let m = block.len();
    let blocks: usize = block.iter().product();
    let batch = a.shape()[0] / blocks;
    let mut shape = a.shape().to_vec();
    shape[0] = batch;
    for i in 0..m {
        shape[1 + i] = a.shape()[1 + i] * block[i] - crops[i][0] - crops[i][1];
    }
    let mut src = vec![0usize; a.ndim()];
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let mut offset = 0;
        for i in 0..m {
            let padded = idx[1 + i] + crops[i][0];
            offset = offset * block[i] + padded % block[i];
            src[1 + i] = padded / block[i];
        }
        src[0] = offset * batch + idx[0];
        src[1 + m..].copy_from_slice(&idx.slice()[1 + m..]);
        a[IxDyn(&src)].clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn iota(shape: &[usize]) -> ArrayD<i64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n as i64).collect()).unwrap()
    }

    #[test]
    fn space_to_batch_round_trips() {
        let a = iota(&[2, 4, 6, 3]);
        let block = [2, 3];
        let pads = [[1, 1], [0, 3]];
        let s = space_to_batch(&a, &block, &pads);
        assert_eq!(s.shape(), &[12, 3, 3, 3]);
        let back = batch_to_space(&s, &block, &pads);
        assert_eq!(back, a);
    }

    #[test]
    fn space_to_batch_matches_tensorflow_doc_example() {
        // tf.space_to_batch_nd docs: x = [[[[1], [2]], [[3], [4]]]], block [2, 2]
        // gives [[[[1]]], [[[2]]], [[[3]]], [[[4]]]].
        let a = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2, 1]), vec![1, 2, 3, 4]).unwrap();
        let s = space_to_batch(&a, &[2, 2], &[[0, 0], [0, 0]]);
        assert_eq!(s.shape(), &[4, 1, 1, 1]);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn pad_and_slice() {
        let a = iota(&[2, 3]);
        let p = pad(&a, &[[1, 0], [0, 2]]);
        assert_eq!(p.shape(), &[3, 5]);
        assert_eq!(p.index_axis(Axis(0), 0).sum(), 0);
        assert_eq!(p.index_axis(Axis(0), 1).iter().copied().collect::<Vec<_>>(), vec![0, 1, 2, 0, 0]);
        let s = strided_slice(
            &a,
            &[AxisSlice { start: 1, step: -1, count: 2 }, AxisSlice { start: 2, step: -2, count: 2 }],
        );
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![5, 3, 2, 0]);
    }

    #[test]
    fn gather_along_axis() {
        let a = iota(&[2, 3]);
        let idx = ArrayD::from_shape_vec(IxDyn(&[2]), vec![2usize, 0]).unwrap();
        let g = gather(&a, &idx, 1);
        assert_eq!(g.iter().copied().collect::<Vec<_>>(), vec![2, 0, 5, 3]);
    }
}
