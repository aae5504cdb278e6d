//! Linear maps: matrix products, convolution, window sums, reductions by sum.
//! Generic over the element type (f32 in the clear, ring elements on shares).

use std::num::Wrapping;

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn, LinalgScalar};

use super::{Geometry, Layout, Window};

/// Matrix products. Floats use ndarray's optimised kernels; ring elements use
/// [`ring_gemm`], because ndarray's generic fallback is a naive strided loop.
pub trait Gemm: LinalgScalar {
    fn gemm(a: ArrayView2<'_, Self>, b: ArrayView2<'_, Self>) -> Array2<Self> {
        a.dot(&b)
    }

    /// `a @ b` written over `out` (row-major, `a.nrows() × b.ncols()`).
    fn gemm_into(a: ArrayView2<'_, Self>, b: ArrayView2<'_, Self>, out: &mut [Self]) {
        let mut out = ndarray::ArrayViewMut2::from_shape((a.nrows(), b.ncols()), out).expect("gemm_into: output size");
        ndarray::linalg::general_mat_mul(Self::one(), &a, &b, Self::zero(), &mut out);
    }
}

impl Gemm for f32 {}
impl Gemm for f64 {}
impl Gemm for i64 {}

impl Gemm for Wrapping<u64> {
    fn gemm(a: ArrayView2<'_, Self>, b: ArrayView2<'_, Self>) -> Array2<Self> {
        ring_gemm(a, b)
    }

    fn gemm_into(a: ArrayView2<'_, Self>, b: ArrayView2<'_, Self>, out: &mut [Self]) {
        let ((m, k), n) = (a.dim(), b.ncols());
        assert_eq!(out.len(), m * n, "gemm_into: output size");
        let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
        gemm_panels(a.as_slice().expect("standard layout"), b.as_slice().expect("standard layout"), (m, k, n), out);
    }
}

/// Columns of `b` per panel and rows of `a` per step of [`ring_gemm`]'s kernel:
/// 4 × 16 accumulators stay in registers (16 AVX2 registers of 4 lanes), and a
/// panel of `b` (k × 16 words: 51 KB for a 5×5×16 filter) stays in L2.
const PANEL: usize = 16;
const ROWS: usize = 4;

/// `a @ b` modulo 2^64. `b` is copied into panels of 16 columns, contiguous row by
/// row; each step multiplies 4 rows of `a` by one panel into accumulators held in
/// registers. x86-64 has no vector 64-bit multiply before AVX-512DQ's `vpmullq`;
/// with AVX2 the compiler builds one from 32-bit halves, which still pays off
/// with its 4 lanes (about 4x a loop that streams the output through memory,
/// measured on the benchmark machine for tf-encrypted's MNIST convolutions).
/// The AVX-512 version (8 lanes, one multiply) is 1.6-1.7x the AVX2 one on the
/// kernel benchmark's GEMMs with k >= 400 (`cargo bench --bench kernels --
/// ring_gemm`); the best version the processor has is chosen at run time.
pub fn ring_gemm(a: ArrayView2<'_, Wrapping<u64>>, b: ArrayView2<'_, Wrapping<u64>>) -> Array2<Wrapping<u64>> {
    let (m, k) = a.dim();
    let n = b.ncols();
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let mut out = vec![Wrapping(0u64); m * n];
    gemm_panels(a.as_slice().expect("standard layout"), b.as_slice().expect("standard layout"), (m, k, n), &mut out);
    Array2::from_shape_vec((m, n), out).expect("shape")
}

/// [`ring_gemm`] on row-major slices, compiled for AVX-512 and AVX2 as well as
/// for the baseline.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512dq", "x86_64+avx2"))]
fn gemm_panels(a: &[Wrapping<u64>], b: &[Wrapping<u64>], dims: (usize, usize, usize), out: &mut [Wrapping<u64>]) {
    gemm_panels_body(a, b, dims, out)
}

#[inline(always)]
fn gemm_panels_body(
    a: &[Wrapping<u64>],
    b: &[Wrapping<u64>],
    (m, k, n): (usize, usize, usize),
    out: &mut [Wrapping<u64>],
) {
    let mut panel = vec![Wrapping(0u64); k * PANEL];
    for j0 in (0..n).step_by(PANEL) {
        let width = PANEL.min(n - j0);
        for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
            row.fill(Wrapping(0));
            row[..width].copy_from_slice(&b[kk * n + j0..kk * n + j0 + width]);
        }
        let mut i = 0;
        while i < m {
            let rows = ROWS.min(m - i);
            let acc = if rows == ROWS {
                panel_product::<ROWS>(&a[i * k..(i + ROWS) * k], k, &panel)
            } else {
                let mut acc = [[Wrapping(0); PANEL]; ROWS];
                for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
                    *acc_row = panel_product::<1>(&a[(i + r) * k..(i + r + 1) * k], k, &panel)[0];
                }
                acc
            };
            for (r, acc_row) in acc.iter().enumerate().take(rows) {
                out[(i + r) * n + j0..(i + r) * n + j0 + width].copy_from_slice(&acc_row[..width]);
            }
            i += rows;
        }
    }
}

/// `R` rows of `a` (row-major, `k` columns) times one panel of `b`.
#[inline(always)]
fn panel_product<const R: usize>(
    a: &[Wrapping<u64>],
    k: usize,
    panel: &[Wrapping<u64>],
) -> [[Wrapping<u64>; PANEL]; R] {
    let mut acc = [[Wrapping(0u64); PANEL]; R];
    for (kk, p) in panel.chunks_exact(PANEL).enumerate() {
        let p: &[Wrapping<u64>; PANEL] = p.try_into().expect("a panel row");
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let x = a[r * k + kk];
            // Indexed, not zipped: with iterators the compiler kept the
            // accumulators in memory and the kernel ran at half the speed.
            #[allow(clippy::needless_range_loop)]
            for j in 0..PANEL {
                acc_row[j] += x * p[j];
            }
        }
    }
    acc
}

/// `a @ b` for rank-2 tensors, with TensorFlow's transpose flags.
pub fn matmul<T: Gemm>(a: &ArrayD<T>, b: &ArrayD<T>, transpose_a: bool, transpose_b: bool) -> ArrayD<T> {
    let a = a.view().into_dimensionality::<Ix2>().expect("matmul: rank checked at plan time");
    let b = b.view().into_dimensionality::<Ix2>().expect("matmul: rank checked at plan time");
    let a = if transpose_a { a.reversed_axes() } else { a };
    let b = if transpose_b { b.reversed_axes() } else { b };
    T::gemm(a, b).into_dyn()
}

/// TensorFlow's BatchMatMulV2: `x @ y` over the last two axes (each transposed
/// first if `adj_x`/`adj_y`), the axes before them broadcast as NumPy does (a
/// missing or size-1 batch axis repeats). Shapes are checked at plan time
/// ([`batch_matmul_shape`]).
pub fn batch_matmul<T: Gemm>(x: &ArrayD<T>, y: &ArrayD<T>, adj_x: bool, adj_y: bool) -> ArrayD<T> {
    let (xs, ys) = (x.shape(), y.shape());
    let out_shape = batch_matmul_shape(xs, ys, adj_x, adj_y).expect("batch matmul: shapes checked at plan time");
    let rank = out_shape.len();
    let batch = &out_shape[..rank - 2];
    let (m, n) = (out_shape[rank - 2], out_shape[rank - 1]);
    let mut out = Vec::with_capacity(out_shape.iter().product());
    let batches: usize = batch.iter().product();
    let mut at = vec![0usize; batch.len()];
    for _ in 0..batches {
        let a = batch_matrix(x, &at);
        let b = batch_matrix(y, &at);
        let a = if adj_x { a.reversed_axes() } else { a };
        let b = if adj_y { b.reversed_axes() } else { b };
        out.extend(T::gemm(a, b).iter().cloned());
        // The next batch index, last axis fastest.
        for axis in (0..batch.len()).rev() {
            at[axis] += 1;
            if at[axis] < batch[axis] {
                break;
            }
            at[axis] = 0;
        }
    }
    debug_assert_eq!(out.len(), batches * m * n);
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("batch matmul: output shape")
}

/// The matrix of `a` that batch index `at` of a broadcast output reads: a's batch
/// axes align with the output's last ones, a size-1 axis repeating.
fn batch_matrix<'a, T>(a: &'a ArrayD<T>, at: &[usize]) -> ArrayView2<'a, T> {
    let r = a.ndim();
    let offset = at.len() - (r - 2);
    let mut view = a.view();
    for axis in 0..r - 2 {
        let i = if a.shape()[axis] == 1 { 0 } else { at[axis + offset] };
        view = view.index_axis_move(Axis(0), i);
    }
    view.into_dimensionality::<Ix2>().expect("a matrix")
}

/// The output shape of [`batch_matmul`], or why the shapes do not fit.
pub fn batch_matmul_shape(x: &[usize], y: &[usize], adj_x: bool, adj_y: bool) -> Result<Vec<usize>, String> {
    let (Some((xb, [x0, x1])), Some((yb, [y0, y1]))) = (x.split_last_chunk::<2>(), y.split_last_chunk::<2>()) else {
        return Err(format!("BatchMatMul needs inputs of rank 2 or more, has {x:?} and {y:?}"));
    };
    let (m, k1) = if adj_x { (*x1, *x0) } else { (*x0, *x1) };
    let (k2, n) = if adj_y { (*y1, *y0) } else { (*y0, *y1) };
    if k1 != k2 {
        return Err(format!("inner dimensions differ: {x:?} times {y:?} ({k1} vs {k2})"));
    }
    let mut out = crate::plan::broadcast_shape(xb, yb)
        .map_err(|_| format!("the batch axes of {x:?} and {y:?} do not broadcast"))?;
    out.extend([m, n]);
    Ok(out)
}

/// Words of [`conv2d`]'s patch matrix built at a time: a block of output
/// pixels' patches (256 KB) stays in L2 while the product reads it, instead of
/// the whole matrix (kh·kw times the input: 11.5 MB for tf-encrypted's first
/// MNIST convolution at batch 100) being allocated, zeroed by the kernel or the
/// allocator, written and read back from memory on every product.
const PATCH_BLOCK_WORDS: usize = 1 << 15;

/// Rows `first..first + rows` of the patch matrix of an NHWC input under
/// `window` (one row per output pixel, `kh * kw * c` columns, the output pixels
/// in NHWC order) written over `dst`. Entries where the window hangs over the
/// padding are left as they are: `dst` must hold zeros there (see
/// [`window_overhangs`]).
fn patch_rows<T: Copy>(xs: &[T], [h, w, c]: [usize; 3], window: &Window, g: &Geometry, first: usize, dst: &mut [T]) {
    let [kh, kw] = window.kernel;
    let [oh, ow] = g.out;
    let k = kh * kw * c;
    for (i, dst) in dst.chunks_exact_mut(k).enumerate() {
        let row = first + i;
        let (b, oy, ox) = (row / (oh * ow), (row / ow) % oh, row % ow);
        let ix0 = (ox * window.strides[1]) as isize - g.pad[1] as isize;
        let row_inside = window.dilations[1] == 1 && ix0 >= 0 && ix0 + kw as isize <= w as isize;
        for ky in 0..kh {
            let iy = (oy * window.strides[0] + ky * window.dilations[0]) as isize - g.pad[0] as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            if row_inside {
                // The window's row is contiguous in the input: one copy.
                let src = ((b * h + iy as usize) * w + ix0 as usize) * c;
                dst[ky * kw * c..(ky + 1) * kw * c].copy_from_slice(&xs[src..src + kw * c]);
                continue;
            }
            for kx in 0..kw {
                let ix = (ox * window.strides[1] + kx * window.dilations[1]) as isize - g.pad[1] as isize;
                if ix < 0 || ix >= w as isize {
                    continue;
                }
                let src = ((b * h + iy as usize) * w + ix as usize) * c;
                let d = (ky * kw + kx) * c;
                dst[d..d + c].copy_from_slice(&xs[src..src + c]);
            }
        }
    }
}

/// Whether some window of `window` over an `h × w` input reaches outside it
/// (into the padding), so that [`patch_rows`] skips entries that must be zero.
fn window_overhangs(window: &Window, g: &Geometry, [h, w]: [usize; 2]) -> bool {
    (0..2).any(|axis| {
        let reach = (g.out[axis].saturating_sub(1)) * window.strides[axis]
            + (window.kernel[axis].saturating_sub(1)) * window.dilations[axis];
        g.pad[axis] > 0 || reach >= [h, w][axis]
    })
}

/// Conv2D of an input in the window's layout with an HWIO filter, as an im2col
/// matrix product. NCHW is computed by transposing to NHWC and back: a copy of
/// input and output, small beside the im2col matrix.
pub fn conv2d<T: Gemm>(x: &ArrayD<T>, filter: &ArrayD<T>, window: &Window) -> ArrayD<T> {
    match window.layout {
        Layout::Nhwc => conv2d_nhwc(x, filter, window),
        Layout::Nchw => to_nchw(&conv2d_nhwc(&to_nhwc(x), filter, &window.nhwc())),
    }
}

fn conv2d_nhwc<T: Gemm>(x: &ArrayD<T>, filter: &ArrayD<T>, window: &Window) -> ArrayD<T> {
    let k = filter.len() / filter.shape()[3].max(1);
    conv2d_nhwc_blocked(x, filter, window, (PATCH_BLOCK_WORDS / k.max(1)).max(ROWS))
}

/// [`conv2d_nhwc`] as products of `block` output pixels' patches at a time by
/// the filter, each written straight into its rows of the output.
fn conv2d_nhwc_blocked<T: Gemm>(x: &ArrayD<T>, filter: &ArrayD<T>, window: &Window, block: usize) -> ArrayD<T> {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let g = window.geometry([h, w]).expect("conv2d: geometry checked at plan time");
    let oc = filter.shape()[3];
    let k = filter.len() / oc.max(1);
    let f = filter
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((k, oc))
        .expect("conv2d: filter shape checked at plan time");
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let rows = n * g.out[0] * g.out[1];
    let mut out = vec![T::zero(); rows * oc];
    if rows > 0 && k > 0 && oc > 0 {
        let block = block.clamp(1, rows);
        let overhangs = window_overhangs(window, &g, [h, w]);
        let mut patches = vec![T::zero(); block * k];
        for (first, out) in (0..rows).step_by(block).zip(out.chunks_mut(block * oc)) {
            let count = out.len() / oc;
            let patches = &mut patches[..count * k];
            if overhangs {
                patches.fill(T::zero());
            }
            patch_rows(xs, [h, w, c], window, &g, first, patches);
            let patches = ArrayView2::from_shape((count, k), &*patches).expect("a block of patches");
            T::gemm_into(patches, f.view(), out);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, g.out[0], g.out[1], oc]), out).expect("conv2d: output shape")
}

/// Depthwise convolution of an input in the window's layout by an [kh, kw, c, m]
/// filter: each input channel k is convolved with its own m filters into output
/// channels k·m … k·m + m − 1 (TensorFlow's DepthwiseConv2dNative; ONNX's Conv
/// with one group per channel). NCHW is computed by transposing to NHWC and
/// back, as [`conv2d`] does: the NHWC loop reads each pixel's channels
/// contiguously.
pub fn depthwise_conv2d<T: LinalgScalar>(x: &ArrayD<T>, filter: &ArrayD<T>, window: &Window) -> ArrayD<T> {
    match window.layout {
        Layout::Nhwc => depthwise_conv2d_nhwc(x, filter, window),
        Layout::Nchw => to_nchw(&depthwise_conv2d_nhwc(&to_nhwc(x), filter, &window.nhwc())),
    }
}

/// [`depthwise_conv2d`] in NHWC. A direct loop: each output pixel reads kh·kw
/// contiguous channel rows of the input and of the filter, c·m products each,
/// with no im2col (whose columns would be kh·kw times the input for c·m outputs).
fn depthwise_conv2d_nhwc<T: LinalgScalar>(x: &ArrayD<T>, filter: &ArrayD<T>, window: &Window) -> ArrayD<T> {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (kh, kw, m) = (filter.shape()[0], filter.shape()[1], filter.shape()[3]);
    let window = Window { kernel: [kh, kw], ..*window };
    let g = window.geometry([h, w]).expect("depthwise conv: geometry checked at plan time");
    let [oh, ow] = g.out;
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let filter = filter.as_standard_layout();
    let fs = filter.as_slice().expect("standard layout");
    let cm = c * m;
    let mut out = vec![T::zero(); n * oh * ow * cm];
    let tap = |o: usize, k: usize, axis: usize, size: usize| {
        let at = (o * window.strides[axis] + k * window.dilations[axis]) as isize - g.pad[axis] as isize;
        (0..size as isize).contains(&at).then_some(at as usize)
    };
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let base = ((b * oh + oy) * ow + ox) * cm;
                let acc = &mut out[base..base + cm];
                for ky in 0..kh {
                    let Some(iy) = tap(oy, ky, 0, h) else { continue };
                    for kx in 0..kw {
                        let Some(ix) = tap(ox, kx, 1, w) else { continue };
                        let row = &xs[((b * h + iy) * w + ix) * c..][..c];
                        let taps = &fs[(ky * kw + kx) * cm..][..cm];
                        if m == 1 {
                            // MobileNet's and EfficientNet's case: one flat loop
                            // over the channels, which vectorises (the general
                            // loop below, of one-element chunks, did not).
                            for ((a, &f), &v) in acc.iter_mut().zip(taps).zip(row) {
                                *a = *a + v * f;
                            }
                            continue;
                        }
                        for ((a, f), &v) in acc.chunks_exact_mut(m).zip(taps.chunks_exact(m)).zip(row) {
                            for (a, &f) in a.iter_mut().zip(f) {
                                *a = *a + v * f;
                            }
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, oh, ow, cm]), out).expect("depthwise conv: output shape")
}

/// An NCHW tensor in NHWC, in standard layout.
pub fn to_nhwc<T: Clone>(x: &ArrayD<T>) -> ArrayD<T> {
    x.view().permuted_axes(IxDyn(&[0, 2, 3, 1])).as_standard_layout().into_owned()
}

/// An NHWC tensor in NCHW, in standard layout.
pub fn to_nchw<T: Clone>(x: &ArrayD<T>) -> ArrayD<T> {
    x.view().permuted_axes(IxDyn(&[0, 3, 1, 2])).as_standard_layout().into_owned()
}

/// Window sums of a tensor in the window's layout (no dilation), and for each
/// output pixel the number of input pixels its window covers. TensorFlow's
/// AvgPool divides by that count: the padded positions do not count. NCHW is
/// summed in NHWC between two transposes.
pub fn sum_pool<T: LinalgScalar>(x: &ArrayD<T>, window: &Window) -> (ArrayD<T>, Array2<usize>) {
    match window.layout {
        Layout::Nhwc => sum_pool_nhwc(x, window),
        Layout::Nchw => {
            let (sums, counts) = sum_pool_nhwc(&to_nhwc(x), &window.nhwc());
            (to_nchw(&sums), counts)
        }
    }
}

fn sum_pool_nhwc<T: LinalgScalar>(x: &ArrayD<T>, window: &Window) -> (ArrayD<T>, Array2<usize>) {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let g = window.geometry([h, w]).expect("pool: geometry checked at plan time");
    let [oh, ow] = g.out;
    let mut out = ArrayD::<T>::zeros(IxDyn(&[n, oh, ow, c]));
    let mut counts = Array2::<usize>::zeros((oh, ow));
    for oy in 0..oh {
        for ox in 0..ow {
            let (ys, xs) = window_ranges(window, &g, [h, w], [oy, ox]);
            counts[[oy, ox]] = ys.len() * xs.len();
            for b in 0..n {
                for ch in 0..c {
                    let mut acc = T::zero();
                    for iy in ys.clone() {
                        for ix in xs.clone() {
                            acc = acc + x[[b, iy, ix, ch]];
                        }
                    }
                    out[[b, oy, ox, ch]] = acc;
                }
            }
        }
    }
    (out, counts)
}

/// The input rows and columns that the window of output pixel `o` covers, padding
/// excluded (empty for a window wholly in the padding).
pub fn window_ranges(
    window: &Window,
    g: &Geometry,
    hw: [usize; 2],
    o: [usize; 2],
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let range = |axis: usize| {
        let start = (o[axis] * window.strides[axis]) as isize - g.pad[axis] as isize;
        let end = start + window.kernel[axis] as isize;
        let start = start.clamp(0, hw[axis] as isize) as usize;
        start..(end.clamp(0, hw[axis] as isize) as usize).max(start)
    };
    (range(0), range(1))
}

/// For each output element of a pool over an input of `shape` (in the window's
/// layout), in the output's row-major order, the flat input indices its window
/// covers, padding excluded, row by row of the window. `None` if the window does
/// not fit the shape (which a checked plan rules out).
pub fn pool_windows(shape: &[usize], window: &Window) -> Option<Vec<Vec<usize>>> {
    let [n, h, w, c] = window.layout.split(shape)?;
    let g = window.geometry([h, w])?;
    let [oh, ow] = g.out;
    let flat = |b: usize, iy: usize, ix: usize, ch: usize| match window.layout {
        Layout::Nhwc => ((b * h + iy) * w + ix) * c + ch,
        Layout::Nchw => ((b * c + ch) * h + iy) * w + ix,
    };
    let members = |b: usize, oy: usize, ox: usize, ch: usize| {
        let (ys, xs) = window_ranges(window, &g, [h, w], [oy, ox]);
        ys.flat_map(|iy| xs.clone().map(move |ix| (iy, ix))).map(|(iy, ix)| flat(b, iy, ix, ch)).collect()
    };
    let mut groups = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        match window.layout {
            Layout::Nhwc => {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ch in 0..c {
                            groups.push(members(b, oy, ox, ch));
                        }
                    }
                }
            }
            Layout::Nchw => {
                for ch in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            groups.push(members(b, oy, ox, ch));
                        }
                    }
                }
            }
        }
    }
    Some(groups)
}

/// The transpose (adjoint) of [`conv2d`] in the window's layout (TensorFlow's
/// Conv2DBackpropInput, Keras's Conv2DTranspose, ONNX's ConvTranspose): `y`
/// spread back over an output of `out_hw` through a `[kh, kw, out_channels,
/// y_channels]` filter, so that Σ conv2d(x, f)·y = Σ x·conv2d_transpose(y, f) for
/// every x of the output's shape (the forward convolution maps that output's
/// space onto y's). NCHW is computed in NHWC between two transposes.
pub fn conv2d_transpose<T: Gemm>(y: &ArrayD<T>, filter: &ArrayD<T>, window: &Window, out_hw: [usize; 2]) -> ArrayD<T> {
    match window.layout {
        Layout::Nhwc => conv2d_transpose_nhwc(y, filter, window, out_hw),
        Layout::Nchw => to_nchw(&conv2d_transpose_nhwc(&to_nhwc(y), filter, &window.nhwc(), out_hw)),
    }
}

/// [`conv2d_transpose`] in NHWC: one matrix product of y by all the filter's
/// taps, then each tap added at its place.
fn conv2d_transpose_nhwc<T: Gemm>(y: &ArrayD<T>, filter: &ArrayD<T>, window: &Window, out_hw: [usize; 2]) -> ArrayD<T> {
    let (n, h, w, yc) = (y.shape()[0], y.shape()[1], y.shape()[2], y.shape()[3]);
    let (kh, kw, oc) = (filter.shape()[0], filter.shape()[1], filter.shape()[2]);
    let window = Window { kernel: [kh, kw], ..*window };
    let g = window.geometry(out_hw).expect("conv2d transpose: geometry checked at plan time");
    let [oh, ow] = out_hw;
    let ym = y.as_standard_layout().into_owned().into_shape_with_order((n * h * w, yc)).expect("conv2d transpose: y");
    let f = filter
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((kh * kw * oc, yc))
        .expect("conv2d transpose: filter shape checked at plan time");
    // [n·h·w, kh·kw·oc]: every tap of every input pixel.
    let cols = T::gemm(ym.view(), f.view().reversed_axes());
    let cols = cols.as_standard_layout();
    let cols = cols.as_slice().expect("standard layout");
    let mut out = vec![T::zero(); n * oh * ow * oc];
    let tap = |i: usize, k: usize, axis: usize, size: usize| {
        let at = (i * window.strides[axis] + k * window.dilations[axis]) as isize - g.pad[axis] as isize;
        (0..size as isize).contains(&at).then_some(at as usize)
    };
    for (row, taps) in cols.chunks_exact(kh * kw * oc).enumerate() {
        let (b, iy, ix) = (row / (h * w), (row / w) % h, row % w);
        for ky in 0..kh {
            let Some(oy) = tap(iy, ky, 0, oh) else { continue };
            for kx in 0..kw {
                let Some(ox) = tap(ix, kx, 1, ow) else { continue };
                let dst = &mut out[((b * oh + oy) * ow + ox) * oc..][..oc];
                for (d, &v) in dst.iter_mut().zip(&taps[(ky * kw + kx) * oc..][..oc]) {
                    *d = *d + v;
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, oh, ow, oc]), out).expect("conv2d transpose: output shape")
}

/// TensorFlow's resize scale along one axis (`CalculateResizeScale`), in f32 as
/// TensorFlow computes it.
fn resize_scale(input: usize, output: usize, align_corners: bool) -> f32 {
    if align_corners && output > 1 {
        (input as f32 - 1.0) / (output as f32 - 1.0)
    } else {
        input as f32 / output as f32
    }
}

/// For each output index along one axis, the input index TensorFlow's
/// ResizeNearestNeighbor reads (its f32 arithmetic, clamped to the axis).
pub fn nearest_indices(input: usize, output: usize, align_corners: bool, half_pixel_centers: bool) -> Vec<usize> {
    let scale = resize_scale(input, output, align_corners);
    (0..output)
        .map(|o| {
            let at = if half_pixel_centers { (o as f32 + 0.5) * scale } else { o as f32 * scale };
            let i = if align_corners { at.round() } else { at.floor() };
            // A float-to-usize cast saturates: a negative index is 0.
            (i as usize).min(input.saturating_sub(1))
        })
        .collect()
}

/// One output index of a bilinear resize along one axis: the two input indices
/// it reads and the weight of the upper one (the lower's is 1 − lerp).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    pub lower: usize,
    pub upper: usize,
    pub lerp: f32,
}

/// The taps of TensorFlow's ResizeBilinear along one axis
/// (`compute_interpolation_weights`, in its f32 arithmetic).
pub fn bilinear_taps(input: usize, output: usize, align_corners: bool, half_pixel_centers: bool) -> Vec<Tap> {
    let scale = resize_scale(input, output, align_corners);
    let last = input.saturating_sub(1);
    (0..output)
        .map(|o| {
            let at = if half_pixel_centers { (o as f32 + 0.5) * scale - 0.5 } else { o as f32 * scale };
            let floor = at.floor();
            Tap { lower: (floor as usize).min(last), upper: (at.ceil() as usize).min(last), lerp: at - floor }
        })
        .collect()
}

/// A bilinear resize of a tensor in `layout`: each output pixel the sum of its
/// four taps, each weighted by `weight` of the product of its two axes' weights
/// (in the clear the weight itself; on shares its fixed-point encoding, so that
/// the sum needs one truncation). NCHW is resized in NHWC between two transposes.
pub fn resize_bilinear<T: LinalgScalar>(
    x: &ArrayD<T>,
    ys: &[Tap],
    xs: &[Tap],
    layout: Layout,
    weight: impl Fn(f64) -> T,
) -> ArrayD<T> {
    match layout {
        Layout::Nhwc => resize_bilinear_nhwc(x, ys, xs, weight),
        Layout::Nchw => to_nchw(&resize_bilinear_nhwc(&to_nhwc(x), ys, xs, weight)),
    }
}

fn resize_bilinear_nhwc<T: LinalgScalar>(
    x: &ArrayD<T>,
    ys: &[Tap],
    xs: &[Tap],
    weight: impl Fn(f64) -> T,
) -> ArrayD<T> {
    let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = (ys.len(), xs.len());
    let x = x.as_standard_layout();
    let xs_flat = x.as_slice().expect("standard layout");
    let mut out = vec![T::zero(); n * oh * ow * c];
    for b in 0..n {
        for (oy, ty) in ys.iter().enumerate() {
            let wy = [(ty.lower, 1.0 - f64::from(ty.lerp)), (ty.upper, f64::from(ty.lerp))];
            for (ox, tx) in xs.iter().enumerate() {
                let wx = [(tx.lower, 1.0 - f64::from(tx.lerp)), (tx.upper, f64::from(tx.lerp))];
                let dst = &mut out[((b * oh + oy) * ow + ox) * c..][..c];
                for &(iy, fy) in &wy {
                    for &(ix, fx) in &wx {
                        if fy * fx == 0.0 || iy >= h || ix >= w {
                            continue;
                        }
                        let k = weight(fy * fx);
                        let src = &xs_flat[((b * h + iy) * w + ix) * c..][..c];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = *d + v * k;
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, oh, ow, c]), out).expect("resize: output shape")
}

/// Sum over `axes` (sorted, distinct), keeping them as size-1 axes if `keep_dims`.
pub fn reduce_sum<T: LinalgScalar>(x: &ArrayD<T>, axes: &[usize], keep_dims: bool) -> ArrayD<T> {
    let mut out = x.clone();
    for &axis in axes.iter().rev() {
        out = out.sum_axis(Axis(axis));
        if keep_dims {
            out.insert_axis_inplace(Axis(axis));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Padding;
    use super::*;

    /// Direct convolution, the definition, to check im2col against.
    fn conv_direct(x: &ArrayD<i64>, f: &ArrayD<i64>, win: &Window) -> ArrayD<i64> {
        let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let oc = f.shape()[3];
        let g = win.geometry([h, w]).unwrap();
        ArrayD::from_shape_fn(IxDyn(&[n, g.out[0], g.out[1], oc]), |i| {
            let mut acc = 0;
            for ky in 0..win.kernel[0] {
                for kx in 0..win.kernel[1] {
                    let iy = (i[1] * win.strides[0] + ky * win.dilations[0]) as isize - g.pad[0] as isize;
                    let ix = (i[2] * win.strides[1] + kx * win.dilations[1]) as isize - g.pad[1] as isize;
                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                        continue;
                    }
                    for ci in 0..c {
                        acc += x[[i[0], iy as usize, ix as usize, ci]] * f[[ky, kx, ci, i[3]]];
                    }
                }
            }
            acc
        })
    }

    #[test]
    fn im2col_conv_equals_direct_conv() {
        let x =
            ArrayD::from_shape_fn(IxDyn(&[2, 7, 9, 3]), |i| (i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3]) as i64 % 11 - 5);
        let f = ArrayD::from_shape_fn(IxDyn(&[3, 2, 3, 4]), |i| (i[0] * 3 + i[1] * 2 + i[2] + i[3] * 7) as i64 % 5 - 2);
        for padding in [Padding::Same, Padding::Valid] {
            for strides in [[1, 1], [2, 3]] {
                for dilations in [[1, 1], [2, 1]] {
                    let win = Window { kernel: [3, 2], strides, dilations, padding, layout: Layout::Nhwc };
                    let direct = conv_direct(&x, &f, &win);
                    assert_eq!(conv2d(&x, &f, &win), direct, "{win:?}");
                    // Blocks of patches that do and do not divide the output pixels.
                    for block in [1, 3, 4, 5, 7, 64, 1000] {
                        assert_eq!(conv2d_nhwc_blocked(&x, &f, &win, block), direct, "{win:?}, blocks of {block}");
                    }
                }
            }
        }
    }

    #[test]
    fn conv2d_transpose_is_the_adjoint_of_conv2d() {
        let f = ArrayD::from_shape_fn(IxDyn(&[3, 2, 3, 4]), |i| (i[0] * 3 + i[1] * 2 + i[2] + i[3] * 7) as i64 % 5 - 2);
        for (out_hw, strides, dilations, padding) in [
            ([7, 9], [1, 1], [1, 1], Padding::Same),
            ([8, 8], [2, 2], [1, 1], Padding::Same),
            ([7, 9], [2, 2], [1, 1], Padding::Same),
            ([9, 8], [2, 3], [1, 1], Padding::Valid),
            ([9, 9], [1, 1], [2, 1], Padding::Valid),
        ] {
            let win = Window { kernel: [3, 2], strides, dilations, padding, layout: Layout::Nhwc };
            let x = ArrayD::from_shape_fn(IxDyn(&[2, out_hw[0], out_hw[1], 3]), |i| {
                (i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3]) as i64 % 11 - 5
            });
            let forward = conv2d(&x, &f, &win);
            let y = ArrayD::from_shape_fn(forward.raw_dim(), |i| {
                (i[0] * 3 + i[1] * 7 + i[2] * 2 + i[3] * 5) as i64 % 9 - 4
            });
            let back = conv2d_transpose(&y, &f, &win, out_hw);
            assert_eq!(back.shape(), x.shape(), "{win:?}");
            let lhs: i64 = (&forward * &y).sum();
            let rhs: i64 = (&x * &back).sum();
            assert_eq!(lhs, rhs, "{win:?} over {out_hw:?}");
        }
    }

    #[test]
    fn resize_taps_follow_tensorflow() {
        // Half-pixel centres, 3 -> 6: inputs at (o + 0.5)/2 - 0.5.
        let taps = bilinear_taps(3, 6, false, true);
        assert_eq!(taps[0], Tap { lower: 0, upper: 0, lerp: 0.75 });
        assert_eq!(taps[1], Tap { lower: 0, upper: 1, lerp: 0.25 });
        assert_eq!(taps[5], Tap { lower: 2, upper: 2, lerp: 0.25 });
        assert_eq!(nearest_indices(3, 6, false, true), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(nearest_indices(3, 6, false, false), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(nearest_indices(3, 5, true, false), vec![0, 1, 1, 2, 2]);
    }

    #[test]
    fn ring_gemm_matches_the_definition() {
        use ndarray::Array2;
        for (m, k, n) in [(3, 4, 5), (200, 7, 3), (1, 1, 1), (64, 9, 40), (7, 33, 17), (0, 3, 2), (5, 0, 4)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| {
                Wrapping(((i * 7919 + j * 104729) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            });
            let b = Array2::from_shape_fn((k, n), |(i, j)| {
                Wrapping(((i * 31 + j * 17 + 1) as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9))
            });
            let want = Array2::from_shape_fn((m, n), |(i, j)| {
                (0..k).map(|t| a[[i, t]] * b[[t, j]]).fold(Wrapping(0u64), |s, v| s + v)
            });
            assert_eq!(ring_gemm(a.view(), b.view()), want, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn same_avg_pool_counts_exclude_padding() {
        let x = ArrayD::from_elem(IxDyn(&[1, 7, 7, 1]), 1i64);
        let win =
            Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        let (sums, counts) = sum_pool(&x, &win);
        assert_eq!(sums.shape(), &[1, 4, 4, 1]);
        // 7 with k=3, s=2 SAME pads 1 before and 1 after: corners see 2x2 pixels.
        assert_eq!(counts[[0, 0]], 4);
        assert_eq!(counts[[1, 1]], 9);
        assert_eq!(counts[[3, 3]], 4);
        assert_eq!(sums[[0, 0, 0, 0]], 4);
    }

    fn nhwc_input() -> ArrayD<i64> {
        ArrayD::from_shape_fn(IxDyn(&[2, 7, 6, 3]), |i| (i[0] * 13 + i[1] * 5 + i[2] * 3 + i[3] * 7) as i64 % 11 - 5)
    }

    fn paddings() -> [Padding; 4] {
        [Padding::Valid, Padding::Same, Padding::Explicit([[1, 2], [0, 1]]), Padding::Explicit([[2, 0], [1, 1]])]
    }

    #[test]
    fn nchw_conv_is_the_transpose_of_the_nhwc_conv() {
        let x = nhwc_input();
        let f = ArrayD::from_shape_fn(IxDyn(&[3, 2, 3, 4]), |i| (i[0] * 3 + i[1] * 2 + i[2] + i[3] * 7) as i64 % 5 - 2);
        for padding in paddings() {
            for (strides, dilations) in [([1, 1], [1, 1]), ([2, 3], [1, 1]), ([1, 2], [2, 1])] {
                let nhwc = Window { kernel: [3, 2], strides, dilations, padding, layout: Layout::Nhwc };
                let nchw = Window { layout: Layout::Nchw, ..nhwc };
                let want = conv2d(&x, &f, &nhwc);
                assert_eq!(conv2d(&to_nchw(&x), &f, &nchw), to_nchw(&want), "{nchw:?}");
                assert_eq!(to_nhwc(&to_nchw(&want)), want);
            }
        }
    }

    #[test]
    fn explicit_conv_pads_are_pad_then_valid() {
        let x = nhwc_input();
        let f = ArrayD::from_shape_fn(IxDyn(&[2, 3, 3, 2]), |i| (i[0] * 5 + i[1] * 3 + i[2] + i[3] * 2) as i64 % 7 - 3);
        for layout in [Layout::Nhwc, Layout::Nchw] {
            let pads = [[1, 2], [3, 0]];
            let explicit =
                Window { kernel: [2, 3], strides: [2, 1], dilations: [1, 2], padding: Padding::Explicit(pads), layout };
            let valid = Window { padding: Padding::Valid, ..explicit };
            let (x, padded) = match layout {
                Layout::Nhwc => (x.clone(), super::super::layout::pad(&x, &[[0, 0], pads[0], pads[1], [0, 0]])),
                Layout::Nchw => {
                    let x = to_nchw(&x);
                    let padded = super::super::layout::pad(&x, &[[0, 0], [0, 0], pads[0], pads[1]]);
                    (x, padded)
                }
            };
            assert_eq!(conv2d(&x, &f, &explicit), conv2d(&padded, &f, &valid), "{layout:?}");
            // A pool's sums too: the zeros of the padding add nothing.
            let pool = Window { dilations: [1, 1], ..explicit };
            assert_eq!(sum_pool(&x, &pool).0, sum_pool(&padded, &Window { padding: Padding::Valid, ..pool }).0);
        }
    }

    #[test]
    fn nchw_pools_are_the_transpose_of_the_nhwc_pools() {
        let x = nhwc_input();
        let xf = x.mapv(|v| v as f32);
        for padding in paddings() {
            let nhwc = Window { kernel: [3, 3], strides: [2, 1], dilations: [1, 1], padding, layout: Layout::Nhwc };
            let nchw = Window { layout: Layout::Nchw, ..nhwc };
            let (sums, counts) = sum_pool(&x, &nhwc);
            let (nchw_sums, nchw_counts) = sum_pool(&to_nchw(&x), &nchw);
            assert_eq!(nchw_sums, to_nchw(&sums), "{padding:?}");
            assert_eq!(nchw_counts, counts);
            let max = super::super::float::max_pool(&xf, &nhwc);
            assert_eq!(super::super::float::max_pool(&to_nchw(&xf), &nchw), to_nchw(&max), "{padding:?}");
        }
    }

    #[test]
    fn pool_windows_list_each_outputs_inputs_in_either_layout() {
        let x = nhwc_input();
        let xf = x.mapv(|v| v as f32);
        for padding in paddings() {
            for layout in [Layout::Nhwc, Layout::Nchw] {
                let w = Window { kernel: [3, 2], strides: [2, 2], dilations: [1, 1], padding, layout };
                let input = match layout {
                    Layout::Nhwc => xf.clone(),
                    Layout::Nchw => to_nchw(&xf),
                };
                let groups = pool_windows(input.shape(), &w).unwrap();
                let flat = input.as_standard_layout();
                let flat = flat.as_slice().unwrap();
                let want = super::super::float::max_pool(&input, &w);
                assert_eq!(groups.len(), want.len());
                let got: Vec<f32> =
                    groups.iter().map(|g| g.iter().map(|&i| flat[i]).fold(f32::NEG_INFINITY, f32::max)).collect();
                assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{w:?}");
                let (sums, _) = sum_pool(&input, &w);
                let got: Vec<f32> = groups.iter().map(|g| g.iter().map(|&i| flat[i]).sum()).collect();
                assert_eq!(got, sums.iter().copied().collect::<Vec<_>>(), "{w:?}");
            }
        }
        // NHWC: what the secure runtime enumerates today.
        let w =
            Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        assert_eq!(pool_windows(x.shape(), &w).unwrap(), crate::ops::pool_groups(x.shape(), &w));
        assert_eq!(pool_windows(&[1, 2, 2], &w), None);
    }
}
