"""Test data for Exp, the secure reciprocal and inverse square root, Softmax inside
a graph and LayerNormalization (called from generate.py, next to build_ops()).

Op-level graphs (ops/NAME.*, N(0,1)-based inputs, seeded):
  ops_exp, ops_reciprocal, ops_realdiv_private, ops_rsqrt, ops_softmax_inner,
  ops_exp_keras (a Keras 3 Dense with activation="exponential"), ops_softmax_axis1.
Models (MNIST rows, mnist_flat100.npy; trained one epoch on the 12k subset):
  keras3_layernorm (Keras 3: Mean/SquaredDifference/Rsqrt),
  tfkeras_layernorm (tf_keras: FusedBatchNormV3 in training mode, NCHW).

    /tmp/tfvenv/bin/python testdata/generate.py --only ops_exp,...,tfkeras_layernorm
"""

import numpy as np
import tensorflow as tf
import keras
import tf_keras

from generate import (op_graph, spec, rnd, selected, seed_all, keras_model_entry, load_mnist,
                      op_histogram, train, BATCH)

OPS = ["ops_exp", "ops_reciprocal", "ops_realdiv_private", "ops_rsqrt", "ops_softmax_inner",
       "ops_exp_keras", "ops_softmax_axis1"]
MODELS = ["keras3_layernorm", "tfkeras_layernorm"]


def check(gd, *ops):
    if gd is not None:
        hist = op_histogram(gd)
        for op in ops:
            assert op in hist, (op, hist)


def build_recip_ops():
    seed = 301
    rng = np.random.default_rng(seed)
    check(op_graph("exp", lambda x: tf.exp(x), [spec([None, 6])], {"input": rnd(rng, 4, 6, scale=2.0)},
                   "Exp of a [N,6] input, N(0, 2^2) values; dynamic batch", seed), "Exp")

    seed = 302
    rng = np.random.default_rng(seed)
    check(op_graph("reciprocal", lambda x: tf.math.reciprocal(tf.square(x) + 0.1),
                   [spec([None, 6])], {"input": rnd(rng, 4, 6)},
                   "Reciprocal(Square(x) + 0.1) of a [N,6] input: Square, AddV2, Reciprocal; "
                   "dynamic batch", seed), "Reciprocal", "Square")

    seed = 303
    rng = np.random.default_rng(seed)
    check(op_graph("realdiv_private",
                   lambda x: x / (tf.reduce_sum(tf.square(x), axis=-1, keepdims=True) + 1.0),
                   [spec([None, 6])], {"input": rnd(rng, 4, 6)},
                   "x / (Sum(x^2, -1, keepdims) + 1): RealDiv of [N,6] by a private [N,1] "
                   "(broadcast); dynamic batch", seed), "RealDiv", "Square", "Sum")

    seed = 304
    rng = np.random.default_rng(seed)
    check(op_graph("rsqrt", lambda x: tf.math.rsqrt(tf.square(x) + 0.01),
                   [spec([None, 6])], {"input": rnd(rng, 4, 6)},
                   "Rsqrt(Square(x) + 0.01) of a [N,6] input; dynamic batch", seed), "Rsqrt")

    seed = 305
    rng = np.random.default_rng(seed)
    W1 = rnd(rng, 8, 6)
    W2 = rnd(rng, 6, 3)
    check(op_graph("softmax_inner", lambda x: tf.matmul(tf.nn.softmax(tf.matmul(x, W1)), W2),
                   [spec([None, 8])], {"input": rnd(rng, 4, 8)},
                   "MatMul(Softmax(MatMul(x [N,8], W1 [8,6]), axis -1), W2 [6,3]): a Softmax "
                   "that feeds another op; dynamic batch", seed), "Softmax", "MatMul")


def build_recip_ops_more():
    seed = 306
    rng = np.random.default_rng(seed)
    seed_all(0)
    dense = keras.layers.Dense(4, activation="exponential")
    dense.build((None, 6))
    dense.set_weights([rnd(rng, 6, 4, scale=0.5), rnd(rng, 4, scale=0.5)])
    check(op_graph("exp_keras", lambda x: dense(x), [spec([None, 6])], {"input": rnd(rng, 4, 6)},
                   "Keras 3 Dense(4, activation='exponential') on a [N,6] input: MatMul, BiasAdd, "
                   "Exp; dynamic batch", seed), "Exp", "MatMul")

    seed = 307
    rng = np.random.default_rng(seed)
    check(op_graph("softmax_axis1", lambda x: tf.nn.softmax(x * 3.0, axis=1) * 2.0 + 1.0,
                   [spec([None, 4, 3])], {"input": rnd(rng, 3, 4, 3)},
                   "Softmax over axis 1 of a [N,4,3] input (TF writes Transpose, Softmax, "
                   "Transpose), then Mul and AddV2; dynamic batch", seed), "Softmax")


def build_recip_models(mnist_dir):
    if not any(selected(name) for name in MODELS):
        return
    xtr, ytr, xte, yte = load_mnist(mnist_dir)
    flat_tr, flat_te = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    if selected("keras3_layernorm"):
        seed_all(0)
        L = keras.layers
        m = keras.Sequential([keras.Input((784,)), L.Dense(32, activation="relu"),
                              L.LayerNormalization(), L.Dense(10)])
        train(m, flat_tr, ytr, epochs=1)
        gd = keras_model_entry("keras3_layernorm", m, (784,), flat_te, "mnist_flat100.npy",
                               "Keras 3 MLP: Dense(32,relu) -> LayerNormalization (trained 1 epoch) "
                               "-> Dense(10) logits; LayerNorm as Mean/SquaredDifference/Mean/"
                               "AddV2/Rsqrt/Mul", yte)
        check(gd, "Rsqrt", "SquaredDifference", "Mean")
    if selected("tfkeras_layernorm"):
        seed_all(0)
        K2 = tf_keras.layers
        m = tf_keras.Sequential([K2.InputLayer(input_shape=(784,)), K2.Dense(32, activation="relu"),
                                 K2.LayerNormalization(), K2.Dense(10)])
        m.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(flat_tr, ytr, epochs=1, batch_size=BATCH, shuffle=True, verbose=0)
        gd = keras_model_entry("tfkeras_layernorm", m, (784,), flat_te, "mnist_flat100.npy",
                               "legacy tf_keras MLP: Dense(32,relu) -> LayerNormalization (trained "
                               "1 epoch; fused: FusedBatchNormV3 in training mode on [1,N,32,1] "
                               "NCHW) -> Dense(10) logits", yte)
        check(gd, "FusedBatchNormV3", "Prod", "Fill")


def build(mnist_dir):
    build_recip_ops()
    build_recip_ops_more()
    build_recip_models(mnist_dir)
