"""TF1 graphs written with tf.nn / tf.compat.v1 ops, in graph mode, frozen with
graph_util.convert_variables_to_constants (imported by generate.py, which calls
build_tf1() next to build_ops()):

  * tf1_cnn_dropout: conv2d, bias by `+`, tf.compat.v1.layers.batch_normalization
    (FusedBatchNormV3), relu, max_pool, tf.nn.batch_normalization, avg_pool,
    reshape, tf.compat.v1.nn.dropout with keep_prob =
    placeholder_with_default(1.0, []) (RandomUniform >= rate, SelectV2), matmul,
    softmax as the last op; trained 300 Adam steps on MNIST with keep_prob 0.75;
  * tf1_mlp_ops: matmul, clip_by_value, tanh, the old dropout form
    x * floor(keep_prob + U) / keep_prob, sigmoid, square, abs, minimum/maximum
    with constants; trained 400 Adam steps on MNIST;
  * ops_tf1_nn: random weights: transpose, pad, concat, split, strided_slice,
    squeeze, expand_dims, reduce_mean/sum/max, square, abs, clip_by_value,
    minimum/maximum with constants, sqrt/rsqrt of constants, matmul.
"""

import numpy as np
import tensorflow as tf

import generate as g
from generate import selected
# tf.compat.v1.layers.batch_normalization itself: TF 2.21 binds that name to this
# function only with TF_USE_LEGACY_KERAS=1 (under Keras 3 it raises).
from tf_keras.src.legacy_tf_layers.normalization import batch_normalization as v1_batch_normalization

v1 = tf.compat.v1


def freeze(sess, graph, out):
    return v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), [out.op.name])


def variable(rng, shape, scale, name):
    return v1.Variable((rng.standard_normal(shape) * scale).astype(np.float32), name=name)


def train_steps(sess, step, loss, feeds_of, steps, rng, n):
    order = rng.permutation(n)
    bs = 100
    for i in range(steps):
        at = (i * bs) % (n - bs)
        _, value = sess.run([step, loss], feeds_of(order[at:at + bs]))
    return value


def tf1_cnn_dropout(xtr, ytr, xte, yte):
    rng = np.random.default_rng(401)
    flat_tr, flat_te = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 784], name="x")
        y = v1.placeholder(tf.int64, [None], name="y")
        keep_prob = v1.placeholder_with_default(1.0, [], name="keep_prob")
        W1 = variable(rng, (5, 5, 1, 8), 0.2, "W1")
        b1 = v1.Variable(np.zeros(8, np.float32), name="b1")
        W2 = variable(rng, (3, 3, 8, 16), 0.1, "W2")
        b2 = v1.Variable(np.zeros(16, np.float32), name="b2")
        mean2 = v1.Variable(np.zeros(16, np.float32), name="bn2_mean", trainable=False)
        var2 = v1.Variable(np.ones(16, np.float32), name="bn2_var", trainable=False)
        beta2 = v1.Variable(np.zeros(16, np.float32), name="bn2_beta")
        gamma2 = v1.Variable(np.ones(16, np.float32), name="bn2_gamma")
        W3 = variable(rng, (7 * 7 * 16, 10), 0.05, "W3")
        b3 = v1.Variable(np.zeros(10, np.float32), name="b3")

        h = tf.reshape(x, [-1, 28, 28, 1])
        h = tf.nn.conv2d(h, W1, strides=[1, 1, 1, 1], padding="SAME") + b1
        bn1_in = h
        h = v1_batch_normalization(h, training=False, name="bn1")
        h = tf.nn.relu(h)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.nn.conv2d(h, W2, strides=[1, 1, 1, 1], padding="SAME") + b2
        bn2_in = h
        h = tf.nn.batch_normalization(h, mean2, var2, beta2, gamma2, 1e-3)
        h = tf.nn.relu(h)
        h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
        h = tf.reshape(h, [-1, 7 * 7 * 16])
        h = v1.nn.dropout(h, keep_prob=keep_prob)
        logits = tf.matmul(h, W3) + b3
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        step = v1.train.AdamOptimizer(2e-3).minimize(loss)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            value = train_steps(sess, step, loss,
                                lambda idx: {x: flat_tr[idx], y: ytr[idx], keep_prob: 0.75},
                                300, rng, len(flat_tr))
            # Inference statistics: the batch-norm inputs' moments over 1000 training images.
            sample = {x: flat_tr[:1000]}
            with v1.variable_scope("bn1", reuse=True):
                mm, mv = v1.get_variable("moving_mean"), v1.get_variable("moving_variance")
            m1, s1 = tf.nn.moments(bn1_in, [0, 1, 2])
            m2, s2 = tf.nn.moments(bn2_in, [0, 1, 2])
            a, b, c, d = sess.run([m1, s1, m2, s2], sample)
            for var, value_ in ((mm, a), (mv, b), (mean2, c), (var2, d)):
                var.load(value_, sess)
            print(f"\ntf1_cnn_dropout: final minibatch loss {value:.3f}")
            ref = sess.run(probs, {x: flat_te})
            gd = freeze(sess, graph, probs)
    hist = g.op_histogram(gd)
    for op in ("Conv2D", "AddV2", "FusedBatchNormV3", "Relu", "MaxPool", "Rsqrt", "AvgPool",
               "RandomUniform", "GreaterEqual", "SelectV2", "PlaceholderWithDefault", "MatMul",
               "Softmax"):
        assert op in hist, (op, hist)
    g.write_pb(gd, "tf1_cnn_dropout.pb")
    _, acc = g.register(
        "tf1_cnn_dropout", "tf1_cnn_dropout.pb", gd, {"x": "mnist_flat100.npy"},
        "tf1_cnn_dropout.expected.npy",
        "TF1 graph (tf.compat.v1, trained 300 Adam steps with keep_prob 0.75): reshape -> conv2d 5x5 "
        "+ b -> layers.batch_normalization (FusedBatchNormV3) -> relu -> max_pool -> conv2d 3x3 + b -> "
        "tf.nn.batch_normalization -> relu -> avg_pool -> reshape -> compat.v1.nn.dropout(keep_prob = "
        "placeholder_with_default(1.0)) -> matmul + b -> softmax; frozen with "
        "graph_util.convert_variables_to_constants", {"x": flat_te}, reference=ref, labels=yte)
    g.ACCURACIES["tf1_cnn_dropout"] = acc


def tf1_mlp_ops(xtr, ytr, xte, yte):
    rng = np.random.default_rng(402)
    flat_tr, flat_te = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 784], name="x")
        y = v1.placeholder(tf.int64, [None], name="y")
        keep_prob = v1.placeholder_with_default(1.0, [], name="keep_prob")
        W1 = variable(rng, (784, 48), 0.05, "W1")
        b1 = v1.Variable(np.zeros(48, np.float32), name="b1")
        W2 = variable(rng, (48, 24), 0.2, "W2")
        b2 = v1.Variable(np.zeros(24, np.float32), name="b2")
        W3 = variable(rng, (24, 10), 0.2, "W3")
        b3 = v1.Variable(np.zeros(10, np.float32), name="b3")
        h = tf.matmul(x, W1) + b1
        h = tf.tanh(tf.clip_by_value(h, -2.5, 2.5))
        # TF1's own dropout form: a mask of floor(keep_prob + U), U uniform in [0, 1).
        mask = tf.floor(keep_prob + v1.random_uniform(tf.shape(h)))
        h = h * mask / keep_prob
        z = tf.matmul(h, W2) + b2
        z = tf.sigmoid(z) + 0.05 * tf.square(z) - 0.1 * tf.abs(z)
        z = tf.minimum(tf.maximum(z, -1.0), 3.0)
        logits = tf.add(tf.matmul(z, W3), b3, name="logits")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        step = v1.train.AdamOptimizer(2e-3).minimize(loss)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            value = train_steps(sess, step, loss,
                                lambda idx: {x: flat_tr[idx], y: ytr[idx], keep_prob: 0.8},
                                400, rng, len(flat_tr))
            print(f"\ntf1_mlp_ops: final minibatch loss {value:.3f}")
            ref = sess.run(logits, {x: flat_te})
            gd = freeze(sess, graph, logits)
    hist = g.op_histogram(gd)
    for op in ("Minimum", "Maximum", "Tanh", "RandomUniform", "Floor", "Sigmoid", "Square", "Abs",
               "RealDiv", "PlaceholderWithDefault"):
        assert op in hist, (op, hist)
    g.write_pb(gd, "tf1_mlp_ops.pb")
    _, acc = g.register(
        "tf1_mlp_ops", "tf1_mlp_ops.pb", gd, {"x": "mnist_flat100.npy"}, "tf1_mlp_ops.expected.npy",
        "TF1 graph (tf.compat.v1, trained 400 Adam steps with keep_prob 0.8): matmul + b -> "
        "clip_by_value(-2.5, 2.5) -> tanh -> h * floor(keep_prob + random_uniform) / keep_prob "
        "(keep_prob = placeholder_with_default(1.0)) -> matmul + b -> sigmoid(z) + 0.05 square(z) - "
        "0.1 abs(z) -> maximum(., -1) -> minimum(., 3) -> matmul + b logits", {"x": flat_te},
        reference=ref, labels=yte)
    g.ACCURACIES["tf1_mlp_ops"] = acc


def tf1_nn_ops():
    if not selected("ops_tf1_nn"):
        return
    rng = np.random.default_rng(403)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4, 6], name="x")
        W = tf.constant(g.rnd(rng, 26, 4, scale=0.4))
        t = tf.transpose(x, [0, 2, 1])                                  # [N,6,4]
        p = tf.pad(t, [[0, 0], [1, 0], [0, 2]])                         # [N,7,6]
        a, b = tf.split(p, [3, 4], axis=1)                              # [N,3,6] [N,4,6]
        c = tf.concat([a, b[:, 1:, :]], axis=2)                         # [N,3,12]
        s = tf.squeeze(c[:, 1:2, ::2], axis=1)                          # [N,6]
        e = tf.expand_dims(tf.reduce_mean(c, axis=1), 1)                # [N,1,12]
        red = tf.concat([tf.reduce_sum(c, axis=[1]), tf.reduce_max(c, axis=1)], 1)  # [N,24]
        k = tf.sqrt(tf.constant(2.0)) * tf.math.rsqrt(tf.constant(4.0))
        sq = tf.square(s) * k - tf.abs(s)                                # [N,6]
        cl = tf.clip_by_value(tf.squeeze(e, 1), -0.3, 0.4)               # [N,12]
        mm = tf.minimum(tf.maximum(red, -1.5), 2.0)                      # [N,24]
        feats = tf.concat([sq, cl, mm[:, :8]], 1)                        # [N,26]
        out = tf.matmul(feats, W, name="out")
        with v1.Session(graph=graph) as sess:
            candidates = g.rnd(rng, 48, 4, 6)
            ys = sess.run(out, {x: candidates})
            top2 = np.sort(ys, axis=-1)[..., -2:]
            ok = (top2[:, 1] - top2[:, 0]) >= 0.05 * np.maximum(1.0, np.abs(top2[:, 1]))
            feed = candidates[np.flatnonzero(ok)[:8]]
            assert len(feed) == 8
            ref = sess.run(out, {x: feed})
            gd = freeze(sess, graph, out)
    hist = g.op_histogram(gd)
    for op in ("Transpose", "Pad", "SplitV", "ConcatV2", "StridedSlice", "Squeeze", "ExpandDims",
               "Mean", "Sum", "Max", "Sqrt", "Rsqrt", "Square", "Abs", "Minimum", "Maximum", "MatMul"):
        assert op in hist, (op, hist)
    g.write_pb(gd, "ops/tf1_nn.pb")
    g.save_npy("ops/tf1_nn.input.npy", feed)
    g.register("ops_tf1_nn", "ops/tf1_nn.pb", gd, {"x": "ops/tf1_nn.input.npy"}, "ops/tf1_nn.expected.npy",
               "TF1 graph-mode tf.nn ops on [N,4,6], random constants: transpose, pad, split, concat, "
               "strided_slice, squeeze, expand_dims, reduce_mean/sum/max, sqrt/rsqrt of constants, square, "
               "abs, clip_by_value(-0.3, 0.4), maximum/minimum with constants, matmul -> [N,4] (seed 403; "
               "8 rows, no near-tie for the argmax)", {"x": feed}, reference=ref)


def build_tf1(mnist):
    """`mnist`: a function giving (xtr, ytr, xte, yte), called only if a trained
    model is selected."""
    tf1_nn_ops()
    wanted = [name for name in ("tf1_cnn_dropout", "tf1_mlp_ops") if selected(name)]
    if wanted:
        data = mnist()
        if "tf1_cnn_dropout" in wanted:
            tf1_cnn_dropout(*data)
        if "tf1_mlp_ops" in wanted:
            tf1_mlp_ops(*data)
