"""Test data for folding per-channel constants into the linear op before them
(src/frontend/fold.rs), imported by generate.py like gen_linear.py.

Op-level entries, random weights and N(0,1) inputs:
  * fold_keras_bn: Keras 3 Conv2D with a bias -> BatchNormalization, Dense with a
    bias -> BatchNormalization, DepthwiseConv2D(depth multiplier 2) ->
    BatchNormalization, with random statistics and gammas of both signs: every
    BatchNormalization's Mul folds into the op before it;
  * fold_cases: raw ops whose Mul folds: by a scalar, with the constant first, two
    Muls in a row, MatMul with transpose_b, and Add -> Add of constants;
  * fold_refused: raw ops whose Mul must not fold: a conv output read twice, a
    scale that varies along a spatial axis, one that broadcasts to a larger rank,
    a bias Add read twice.
"""

import numpy as np
import tensorflow as tf
import keras

import generate as g
from generate import rnd, selected, spec
from gen_linear import entry

L = keras.layers


def randomise_batch_norms(model, rng):
    """Statistics and gammas a trained model could have (the defaults make every
    scale 1/sqrt(1 + eps), the same for every channel)."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)
            beta = rng.normal(0, 0.5, c)
            mean = rng.normal(0, 0.5, c)
            var = rng.uniform(0.2, 3.0, c)
            layer.set_weights([a.astype(np.float32) for a in (gamma, beta, mean, var)])


def build_fold_ops():
    seed = 1201
    if selected("ops_fold_keras_bn"):
        g.seed_all(seed)
        rng = np.random.default_rng(seed)
        model = keras.Sequential([
            keras.Input((6, 6, 2)),
            L.Conv2D(4, 3, padding="same", use_bias=True), L.BatchNormalization(), L.ReLU(),
            L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False), L.BatchNormalization(), L.ReLU(),
            L.Flatten(), L.Dense(6, use_bias=True), L.BatchNormalization(), L.ReLU(), L.Dense(4)])
        randomise_batch_norms(model, rng)
        entry("fold_keras_bn", g.keras_fn(model), (6, 6, 2), rng, 8,
              "Keras 3 Conv2D(4, 3, SAME, bias) -> BatchNormalization -> ReLU -> DepthwiseConv2D(3, "
              "multiplier 2) -> BatchNormalization -> ReLU -> Flatten -> Dense(6, bias) -> "
              "BatchNormalization -> ReLU -> Dense(4) on 6x6x2, random statistics and gammas of both "
              "signs: each BatchNormalization's Mul folds into the op before it", seed,
              {"Conv2D": 1, "DepthwiseConv2dNative": 1, "MatMul": 2, "Mul": 3})

    seed = 1202
    rng = np.random.default_rng(seed)
    W1 = rnd(rng, 3, 3, 2, 4, scale=0.5)
    s1 = rnd(rng, 4)
    s2 = rnd(rng, 1, 1, 1, 4)
    b1 = rnd(rng, 4)
    b2 = rnd(rng, 4)
    W2 = rnd(rng, 5, 4 * 4 * 4, scale=0.2)
    s3 = rnd(rng, 5)

    def cases(x):                                            # [N, 4, 4, 2]
        h = tf.nn.conv2d(x, W1, strides=1, padding="SAME")
        h = s1 * h                                           # constant first
        h = h * s2                                           # a second Mul, rank-4 scale
        h = (h + b1) + b2                                    # two Adds of constants
        h = tf.nn.relu(h) * 0.5                              # not after a linear op: stays
        f = tf.reshape(h, [-1, 4 * 4 * 4])
        y = tf.matmul(f, W2, transpose_b=True) * 1.5         # transpose_b, by a scalar
        return y * s3
    entry("fold_cases", cases, (4, 4, 2), rng, 6,
          "Conv2D -> s1 * . -> . * s2 [1,1,1,4] -> + b1 -> + b2 -> Relu -> * 0.5 -> Reshape -> "
          "MatMul(transpose_b) -> * 1.5 -> * s3 on [N,4,4,2]: every Mul after a linear op folds, "
          "the Adds merge", seed, {"Conv2D": 1, "MatMul": 1, "Mul": 5, "AddV2": 2})

    seed = 1203
    rng = np.random.default_rng(seed)
    W1 = rnd(rng, 3, 3, 2, 3, scale=0.5)
    s1 = rnd(rng, 3)
    W2 = rnd(rng, 1, 1, 2, 3, scale=0.5)
    s_spatial = rnd(rng, 4, 4, 3)
    W3 = rnd(rng, 1, 1, 2, 3, scale=0.5)
    s_rank5 = rnd(rng, 2, 1, 1, 1, 3)
    W4 = rnd(rng, 1, 1, 2, 3, scale=0.5)
    b4 = rnd(rng, 3)
    s4 = rnd(rng, 3)

    def refused(x):                                          # [N, 4, 4, 2]
        h = tf.nn.conv2d(x, W1, strides=1, padding="SAME")
        a = h * s1 + h                                       # h read twice
        b = tf.nn.conv2d(x, W2, strides=1, padding="SAME") * s_spatial
        c = tf.reduce_sum(tf.nn.conv2d(x, W3, strides=1, padding="SAME") * s_rank5, axis=0)
        d = tf.nn.conv2d(x, W4, strides=1, padding="SAME") + b4
        d = d * s4 - d                                       # the bias Add read twice
        return tf.reduce_mean(tf.concat([a, b, c, d], axis=-1), axis=[1, 2])
    entry("fold_refused", refused, (4, 4, 2), rng, 6,
          "Muls after Conv2D that must not fold: the conv output read twice, a [4,4,3] scale, a "
          "[2,1,1,1,3] scale (rank 5, summed back over axis 0), a bias Add read twice; Concat -> "
          "Mean on [N,4,4,2] -> [N,12]", seed, {"Conv2D": 4, "Mul": 4})
