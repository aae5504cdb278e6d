"""Test data for the layout and linear layers and the public-subgraph folds
(imported by generate.py, which calls build_linear_ops() next to build_ops()).

Op-level entries, random weights and N(0,1) inputs, each checked to contain the
ops it targets:
  * Keras 3 and tf_keras layers: Conv2DTranspose (strides 1 and 2, SAME and
    VALID), UpSampling2D (nearest, bilinear), Permute, RepeatVector, Dense on a
    3-D input, Normalization and Rescaling, Cropping1D/2D, ZeroPadding1D/2D,
    Flatten of a rank-5 input, Conv1D;
  * raw ops: Conv2DBackpropInput of odd output sizes, ResizeBilinear and
    ResizeNearestNeighbor with align_corners, BatchMatMulV2 by a matrix, private
    Tile and Unpack, and a graph of public subgraphs that must fold at import
    (Prod, Fill, Range, Unpack, Tile, Sqrt, Maximum/Minimum, Floor, Equal/Less/
    Greater/GreaterEqual/LessEqual, SelectV2, Cast).
"""

import numpy as np
import tensorflow as tf
import keras
import tf_keras

import generate as g
from generate import op_graph, rnd, rows_with_margin, selected, spec, assert_argmax_margin

L = keras.layers
TL = tf_keras.layers


def entry(name, fn, shape, rng, rows, description, seed, expect, candidates=48, scale=1.0):
    """op_graph on `rows` N(0, scale) inputs without a near-tie for the argmax; the
    frozen graph must hold every op of `expect` (op -> minimum count)."""
    if not selected(f"ops_{name}"):
        return None
    specs = [spec([None, *shape])]
    x = rows_with_margin(fn, rnd(rng, candidates, *shape, scale=scale), rows)
    gd = op_graph(name, fn, specs, {"input": x}, description + f"; {rows} rows, no near-tie for the argmax",
                  seed)
    assert_argmax_margin(f"ops_{name}", f"ops/{name}.pb", {"input": x})
    hist = g.op_histogram(gd)
    for op, count in expect.items():
        assert hist.get(op, 0) >= count, (name, op, hist)
    return gd


def keras_entry(name, layers, shape, seed, rows, description, expect, module=keras, scale=1.0):
    if not selected(f"ops_{name}"):
        return None
    g.seed_all(seed)
    rng = np.random.default_rng(seed)
    model = module.Sequential([module.Input(shape), *layers])
    return entry(name, g.keras_fn(model), shape, rng, rows, description, seed, expect, scale=scale)


def build_linear_ops():
    # ---- Conv2DTranspose ---------------------------------------------------
    keras_entry("conv_transpose_keras", [
        L.Conv2DTranspose(4, 3, strides=2, padding="same"), L.ReLU(),
        L.Conv2DTranspose(3, 2, strides=1, padding="valid"), L.Flatten(), L.Dense(4)],
        (5, 6, 3), 301, 8,
        "Keras 3 Conv2DTranspose(4, 3, strides 2, SAME) -> ReLU -> Conv2DTranspose(3, 2, strides 1, "
        "VALID) -> Flatten -> Dense(4) on 5x6x3 (10x12x4, then 11x13x3)", {"Conv2DBackpropInput": 2})
    keras_entry("conv_transpose_tfkeras", [
        TL.Conv2DTranspose(3, 3, strides=2, padding="valid"), TL.ReLU(),
        TL.Conv2DTranspose(2, 3, strides=1, padding="same"), TL.Flatten(), TL.Dense(4)],
        (4, 5, 2), 302, 8,
        "tf_keras Conv2DTranspose(3, 3, strides 2, VALID) -> ReLU -> Conv2DTranspose(2, 3, strides 1, "
        "SAME) -> Flatten -> Dense(4) on 4x5x2 (9x11x3)", {"Conv2DBackpropInput": 2}, module=tf_keras)

    seed = 303
    rng = np.random.default_rng(seed)
    F1 = rnd(rng, 3, 3, 4, 2, scale=0.5)
    F2 = rnd(rng, 2, 3, 3, 4, scale=0.5)
    H = rnd(rng, 7 * 7 * 3, 4, scale=0.2)

    def transpose_odd(x):                                   # [N,4,4,2]
        h = tf.nn.conv2d_transpose(x, F1, tf.stack([tf.shape(x)[0], 7, 7, 4]), strides=2,
                                   padding="SAME")
        h = tf.nn.conv2d_transpose(h, F2, [tf.shape(x)[0], 7, 7, 3], strides=1, padding="SAME")
        return tf.matmul(tf.reshape(h, [-1, 7 * 7 * 3]), H)
    entry("conv2d_backprop_input_odd", transpose_odd, (4, 4, 2), rng, 8,
          "tf.nn.conv2d_transpose 3x3 stride 2 SAME onto an odd 7x7 output (4x4x2 -> 7x7x4), then 2x3 "
          "stride 1 SAME (-> 7x7x3), Reshape, MatMul -> [N,4]; output shapes from tf.shape", seed,
          {"Conv2DBackpropInput": 2})

    # ---- UpSampling2D and resizes --------------------------------------------
    keras_entry("upsampling_keras", [
        L.UpSampling2D(2), L.Conv2D(3, 3, padding="same"),
        L.UpSampling2D((2, 3), interpolation="bilinear"), L.Flatten(), L.Dense(4)],
        (3, 3, 2), 304, 8,
        "Keras 3 UpSampling2D(2, nearest) -> Conv2D(3, 3, SAME) -> UpSampling2D((2, 3), bilinear) -> "
        "Flatten -> Dense(4) on 3x3x2", {"ResizeBilinear": 1})
    keras_entry("upsampling_tfkeras", [
        TL.UpSampling2D(2), TL.Conv2D(3, 3, padding="same"),
        TL.UpSampling2D(2, interpolation="bilinear"), TL.Flatten(), TL.Dense(4)],
        (3, 4, 2), 305, 8,
        "tf_keras UpSampling2D(2, nearest) -> Conv2D(3, 3, SAME) -> UpSampling2D(2, bilinear) -> Flatten "
        "-> Dense(4) on 3x4x2", {"ResizeNearestNeighbor": 1, "ResizeBilinear": 1}, module=tf_keras)

    seed = 306
    rng = np.random.default_rng(seed)
    H = rnd(rng, 7 * 9 * 2 + 5 * 4 * 2, 4, scale=0.2)

    def resizes(x):                                          # [N,4,3,2]
        a = tf.compat.v1.image.resize_bilinear(x, [7, 9], align_corners=True)
        b = tf.compat.v1.image.resize_nearest_neighbor(x, [5, 4], align_corners=True)
        return tf.matmul(tf.concat([tf.reshape(a, [-1, 126]), tf.reshape(b, [-1, 40])], 1), H)
    entry("resize_align_corners", resizes, (4, 3, 2), rng, 8,
          "ResizeBilinear 4x3 -> 7x9 and ResizeNearestNeighbor 4x3 -> 5x4, both align_corners (not "
          "half-pixel), concatenated, MatMul -> [N,4]", seed,
          {"ResizeBilinear": 1, "ResizeNearestNeighbor": 1})

    seed = 307
    rng = np.random.default_rng(seed)
    H = rnd(rng, 5 * 7 * 2, 4, scale=0.3)

    def resize_odd(x):                                       # [N,4,3,2]
        return tf.matmul(tf.reshape(tf.image.resize(x, [5, 7], method="bilinear"), [-1, 70]), H)
    entry("resize_bilinear_odd", resize_odd, (4, 3, 2), rng, 8,
          "tf.image.resize bilinear (half-pixel centres) 4x3 -> 5x7, weights off the 2^-16 grid, "
          "Reshape, MatMul -> [N,4]", seed, {"ResizeBilinear": 1})

    # ---- Permute, RepeatVector, Dense on 3-D ---------------------------------
    keras_entry("permute_repeat_keras", [
        L.Dense(4), L.RepeatVector(3), L.Permute((2, 1)), L.Flatten(), L.Dense(4)],
        (6,), 308, 8,
        "Keras 3 Dense(4) -> RepeatVector(3) -> Permute((2, 1)) -> Flatten -> Dense(4) on [N,6]",
        {"Transpose": 1})
    keras_entry("permute_repeat_tfkeras", [
        TL.Dense(4), TL.RepeatVector(3), TL.Permute((2, 1)), TL.Flatten(), TL.Dense(4)],
        (6,), 309, 8,
        "tf_keras Dense(4) -> RepeatVector(3) -> Permute((2, 1)) -> Flatten -> Dense(4) on [N,6]",
        {"Transpose": 1}, module=tf_keras)
    keras_entry("dense3d_keras", [L.Dense(5), L.ReLU(), L.Dense(3), L.Flatten(), L.Dense(4)],
                (4, 6), 310, 8,
                "Keras 3 Dense(5) -> ReLU -> Dense(3) on a 3-D input [N,4,6] (a BatchMatMulV2 by the "
                "kernel), Flatten, Dense(4)", {})
    keras_entry("dense3d_tfkeras", [TL.Dense(5), TL.ReLU(), TL.Dense(3), TL.Flatten(), TL.Dense(4)],
                (4, 6), 311, 8,
                "tf_keras Dense(5) -> ReLU -> Dense(3) on a 3-D input [N,4,6] (Tensordot: Reshape, "
                "MatMul, Reshape), Flatten, Dense(4)", {}, module=tf_keras)

    # ---- preprocessing ---------------------------------------------------------
    rng = np.random.default_rng(312)
    mean, var = rnd(rng, 6), np.abs(rnd(rng, 6)) + 0.5
    keras_entry("preprocessing_keras", [
        L.Rescaling(0.25, offset=-0.5), L.Normalization(mean=mean, variance=var), L.Dense(4)],
        (6,), 312, 8,
        "Keras 3 Rescaling(0.25, offset -0.5) -> Normalization(mean, variance given) -> Dense(4) on "
        "[N,6]", {}, scale=3.0)
    keras_entry("preprocessing_tfkeras", [
        TL.Rescaling(0.25, offset=-0.5), TL.Normalization(mean=mean, variance=var), TL.Dense(4)],
        (6,), 313, 8,
        "tf_keras Rescaling(0.25, offset -0.5) -> Normalization(mean, variance given) -> Dense(4) on "
        "[N,6]", {}, module=tf_keras, scale=3.0)

    # ---- cropping, padding, Flatten, Conv1D -------------------------------------
    keras_entry("crop_pad_1d_keras", [
        L.ZeroPadding1D(2), L.Conv1D(4, 3), L.Cropping1D((1, 2)), L.Flatten(), L.Dense(4)],
        (10, 3), 314, 8,
        "Keras 3 ZeroPadding1D(2) -> Conv1D(4, 3) -> Cropping1D((1, 2)) -> Flatten -> Dense(4) on "
        "[N,10,3]", {})
    keras_entry("crop_pad_2d_keras", [
        L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(3, 3), L.Cropping2D(((1, 1), (0, 2))),
        L.Flatten(), L.Dense(4)],
        (6, 6, 2), 315, 8,
        "Keras 3 ZeroPadding2D(((1, 0), (2, 1))) -> Conv2D(3, 3) -> Cropping2D(((1, 1), (0, 2))) -> "
        "Flatten -> Dense(4) on 6x6x2", {})
    keras_entry("crop_pad_tfkeras", [
        TL.ZeroPadding1D((1, 2)), TL.Conv1D(3, 2, padding="same"), TL.Cropping1D(1),
        TL.Reshape((7, 3, 1)), TL.ZeroPadding2D(1), TL.Cropping2D(((0, 1), (1, 0))),
        TL.Flatten(), TL.Dense(4)],
        (6, 3), 316, 8,
        "tf_keras ZeroPadding1D((1, 2)) -> Conv1D(3, 2, SAME) -> Cropping1D(1) -> Reshape -> "
        "ZeroPadding2D(1) -> Cropping2D(((0, 1), (1, 0))) -> Flatten -> Dense(4) on [N,6,3]", {},
        module=tf_keras)
    keras_entry("flatten_rank5_keras", [L.Flatten(), L.Dense(4)], (2, 3, 2, 2), 317, 8,
                "Keras 3 Flatten of a rank-5 input [N,2,3,2,2] -> Dense(4)", {})
    keras_entry("flatten_rank5_tfkeras", [TL.Flatten(), TL.Dense(4)], (2, 3, 2, 2), 318, 8,
                "tf_keras Flatten of a rank-5 input [N,2,3,2,2] -> Dense(4)", {}, module=tf_keras)

    # ---- raw BatchMatMulV2, Tile, Unpack ---------------------------------------
    seed = 319
    rng = np.random.default_rng(seed)
    W = rnd(rng, 4, 6, scale=0.5)
    H = rnd(rng, 3 * 2 * 4 * 4, 4, scale=0.3)

    def tile_unpack(x):                                      # [N,3,6]
        p = tf.matmul(x, W, transpose_b=True)               # BatchMatMulV2 adj_y: [N,3,4]
        t = tf.tile(p, [1, 2, 1])                            # [N,6,4]
        rows = tf.unstack(t, axis=1)                         # 6 x [N,4]
        s = tf.stack([rows[0] + rows[5], rows[1] - rows[4], rows[2], rows[3]], axis=1)  # [N,4,4]
        r = tf.tile(tf.expand_dims(s, 1), [1, 3, 2, 1])      # [N,3,8,4]
        return tf.matmul(tf.reshape(r, [-1, 96]), H)
    entry("tile_unpack", tile_unpack, (3, 6), rng, 8,
          "tf.matmul([N,3,6], W^T) (BatchMatMulV2, adj_y) -> Tile [1,2,1] -> Unpack axis 1 -> sums -> "
          "Pack -> ExpandDims -> Tile [1,3,2,1] -> Reshape -> MatMul -> [N,4]", seed,
          {"BatchMatMulV2": 1, "Tile": 2, "Unpack": 1})

    # ---- public subgraphs that fold at import ------------------------------------
    seed = 320
    rng = np.random.default_rng(seed)
    W = rnd(rng, 12, 4, scale=0.5)
    table = rnd(rng, 2, 12)
    var = np.abs(rnd(rng, 12)) + 0.1

    def folds(x):                                            # [N,4,3]
        s = tf.shape(x)
        n = tf.reduce_prod(s[1:])                            # Prod
        flat = tf.reshape(x, tf.stack([s[0], n]))
        r = tf.cast(tf.range(n), tf.float32)                 # Range, Cast
        lo, hi = tf.unstack(tf.constant(table))              # Unpack
        pick = tf.where(tf.greater_equal(r, 6.0), lo, hi)    # GreaterEqual, SelectV2
        pick = tf.where(tf.less(r, 2.0), tf.fill([12], 0.5), pick)   # Less, Fill
        pick = tf.where(tf.equal(r, 7.0), tf.floor(pick * 3.0), pick)  # Equal, Floor
        gt = tf.cast(tf.greater(r, 9.0), tf.float32) - tf.cast(tf.less_equal(r, 0.0), tf.float32)
        scale = tf.sqrt(tf.maximum(tf.constant(var), 0.2)) + tf.minimum(tf.constant(var), 0.5)
        tiled = tf.tile(tf.constant([1.0, -1.0, 0.5]), tf.reshape(n // 3, [1]))   # Tile of a constant
        return tf.matmul(flat * (pick + gt) * scale + tiled, W)
    entry("public_folds", folds, (4, 3), rng, 8,
          "public subgraphs folded at import: Prod of a shape, Range, Cast, Unpack, GreaterEqual/Less/"
          "Equal/Greater/LessEqual, SelectV2, Fill, Floor, Sqrt, Maximum/Minimum of constants, Tile of a "
          "constant; then x * (that) + (that) -> MatMul -> [N,4]", seed,
          {"Prod": 1, "Range": 1, "Unpack": 1, "SelectV2": 3, "Fill": 1, "Floor": 1, "Sqrt": 1,
           "GreaterEqual": 1, "Less": 1, "Equal": 1, "Greater": 1, "LessEqual": 1, "Tile": 1,
           "Maximum": 1, "Minimum": 1})
