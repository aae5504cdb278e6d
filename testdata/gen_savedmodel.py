#!/usr/bin/env python3
"""SavedModel directories as the three writers make them, for tests/savedmodel.rs.

    /tmp/tfvenv/bin/python testdata/gen_savedmodel.py [--mnist-dir DIR]

Pinned versions: testdata/requirements.txt (TensorFlow 2.21, Keras 3.15.1). Writes
testdata/savedmodel/ afresh:

  * keras_cnn/: a Keras 3 CNN (two Conv2D+MaxPool, Dense 10) trained 1 epoch on
    6000 MNIST images, written by Keras 3 `model.export` (ResourceVariables in
    a `tf.Module` whose signature is a StatefulPartitionedCall);
  * module_mlp/: a `tf.Module` MLP (784-64-10) trained 200 SGD steps with
    GradientTape, written by `tf.saved_model.save`, with two outputs
    (`logits`, `probabilities`) in `serving_default` and a second signature
    `hidden` (the ReLU layer);
  * tf1_mlp/: a TF1 graph (VariableV2 through tf.compat.v1.Variable(use_resource=
    False)) trained 200 steps in a Session, written by
    tf.compat.v1.saved_model.Builder with signatures `serving_default`
    (`scores`) and `probabilities` (Softmax);
  * mobilenet_v2/: Keras 3 MobileNetV2 (alpha 0.35, 96x96x3, 10 classes; BN
    momentum 0.9) trained 3 epochs on 4000 MNIST images resized and tiled to 3
    channels, by `model.export`.

Each model's inputs are the first MNIST test images (`NAME.input.npy`); its
expected outputs (`NAME.KEY.expected.npy`, one per output key of the signature)
are what TensorFlow computes with the directory loaded back by
`tf.saved_model.load(DIR).signatures[SIG]`. manifest.json lists them, with the
signatures and their keys, dtypes and shapes as TensorFlow reads them.
"""
import argparse
import json
import os
import random
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mnist_idx import load_mnist_raw  # noqa: E402

OUT = os.path.join(HERE, "savedmodel")
ROWS = 20
MANIFEST = []


def seed_all(seed=0):
    keras.backend.clear_session()
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def shape_of(spec_shape):
    return None if spec_shape.rank is None else [d for d in spec_shape.as_list()]


def signatures_of(path):
    """Every signature of the loaded SavedModel: input and output keys, dtypes, shapes."""
    loaded = tf.saved_model.load(path)
    out = {}
    for name, fn in sorted(loaded.signatures.items()):
        _, kwargs = fn.structured_input_signature
        out[name] = {
            "inputs": {k: {"dtype": v.dtype.name, "shape": shape_of(v.shape)} for k, v in sorted(kwargs.items())},
            "outputs": {k: {"dtype": v.dtype.name, "shape": shape_of(v.shape)}
                        for k, v in sorted(fn.structured_outputs.items())},
        }
    return loaded, out


def register(name, writer, description, feeds, accuracy_labels):
    """Load DIR back with TensorFlow, run every signature on `feeds` (signature ->
    {input key: array}), save inputs and outputs, and add the manifest entry."""
    path = os.path.join(OUT, name)
    loaded, sigs = signatures_of(path)
    runs = []
    for sig, inputs in feeds.items():
        inputs_rel = {}
        for key, arr in inputs.items():
            rel = f"{name}.{key}.input.npy"
            np.save(os.path.join(OUT, rel), arr)
            inputs_rel[key] = rel
        got = loaded.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})
        outputs_rel = {}
        for key, value in sorted(got.items()):
            rel = f"{name}.{sig}.{key}.expected.npy"
            np.save(os.path.join(OUT, rel), value.numpy().astype(np.float32))
            outputs_rel[key] = rel
            if value.shape[-1] == 10:
                acc = float(np.mean(np.argmax(value.numpy(), axis=-1) == accuracy_labels))
                top2 = np.sort(value.numpy(), axis=-1)[:, -2:]
                gap = float(np.min(top2[:, 1] - top2[:, 0]))
                print(f"  {name} {sig}/{key}: accuracy on the {len(accuracy_labels)} rows {acc:.0%}, "
                      f"smallest top-two gap {gap:.3f}")
        runs.append({"signature": sig, "inputs": inputs_rel, "outputs": outputs_rel})
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    print(f"{name}: {writer}, {size} bytes")
    MANIFEST.append({"name": name, "dir": name, "writer": writer, "description": description,
                     "signatures": sigs, "runs": runs})


def keras_cnn(xtr, ytr, x, y):
    seed_all(0)
    L = keras.layers
    m = keras.Sequential([
        keras.Input(shape=(28, 28, 1), name="image"),
        L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(10),
    ])
    m.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(xtr[:6000], ytr[:6000], epochs=1, batch_size=64, verbose=0)
    m.export(os.path.join(OUT, "keras_cnn"), format="tf_saved_model", verbose=False)
    _, sigs = signatures_of(os.path.join(OUT, "keras_cnn"))
    key = next(iter(sigs["serving_default"]["inputs"]))
    register("keras_cnn", "keras.Model.export (Keras 3.15.1)",
             "Keras 3 Sequential Conv2D(8,3,relu)-MaxPool-Conv2D(16,3,relu)-MaxPool-Flatten-Dense(10), "
             "1 epoch Adam on 6000 MNIST images", {"serving_default": {key: x}}, y)


class Mlp(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w1 = tf.Variable(rng.normal(0, 0.05, (784, 64)).astype(np.float32), name="w1")
        self.b1 = tf.Variable(np.zeros(64, np.float32), name="b1")
        self.w2 = tf.Variable(rng.normal(0, 0.05, (64, 10)).astype(np.float32), name="w2")
        self.b2 = tf.Variable(np.zeros(10, np.float32), name="b2")

    def hidden_layer(self, x):
        return tf.nn.relu(tf.matmul(x, self.w1) + self.b1)

    def logits(self, x):
        return tf.matmul(self.hidden_layer(x), self.w2) + self.b2

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
    def serve(self, pixels):
        z = self.logits(pixels)
        return {"logits": z, "probabilities": tf.nn.softmax(z)}

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="pixels")])
    def hidden(self, pixels):
        return {"relu": self.hidden_layer(pixels)}


def module_mlp(xtr, ytr, x, y):
    seed_all(0)
    m = Mlp()
    flat = xtr[:6000].reshape(-1, 784)
    labels = ytr[:6000]
    opt = tf.keras.optimizers.SGD(0.1)
    for step in range(200):
        lo = (step * 100) % 6000
        with tf.GradientTape() as tape:
            z = m.logits(flat[lo:lo + 100])
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels[lo:lo + 100], z))
        grads = tape.gradient(loss, m.trainable_variables)
        opt.apply_gradients(zip(grads, m.trainable_variables))
    tf.saved_model.save(m, os.path.join(OUT, "module_mlp"),
                        signatures={"serving_default": m.serve, "hidden": m.hidden})
    xf = x.reshape(-1, 784)
    register("module_mlp", "tf.saved_model.save (TensorFlow 2.21)",
             "tf.Module MLP 784-64(relu)-10 with tf.Variable weights, 200 SGD steps (lr 0.1, batch 100)",
             {"serving_default": {"pixels": xf}, "hidden": {"pixels": xf}}, y)


def tf1_mlp(xtr, ytr, x, y):
    path = os.path.join(OUT, "tf1_mlp")
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        images = tf.compat.v1.placeholder(tf.float32, [None, 784], name="images")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        V = tf.compat.v1.Variable
        init = tf.compat.v1.truncated_normal_initializer(stddev=0.05, seed=1)
        with tf.compat.v1.variable_scope("fc1"):
            w1 = V(init([784, 32]), name="weights", use_resource=False)
            b1 = V(tf.zeros([32]), name="biases", use_resource=False)
        with tf.compat.v1.variable_scope("fc2"):
            w2 = V(init([32, 10]), name="weights", use_resource=False)
            b2 = V(tf.zeros([10]), name="biases", use_resource=False)
        h = tf.nn.relu(tf.matmul(images, w1) + b1)
        scores = tf.add(tf.matmul(h, w2), b2, name="scores")
        probs = tf.nn.softmax(scores, name="probabilities")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores))
        train = tf.compat.v1.train.GradientDescentOptimizer(0.2).minimize(loss)
        flat = xtr[:6000].reshape(-1, 784)
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in range(200):
                lo = (step * 100) % 6000
                sess.run(train, {images: flat[lo:lo + 100], labels: ytr[lo:lo + 100]})
            sig = tf.compat.v1.saved_model.predict_signature_def
            b = tf.compat.v1.saved_model.Builder(path)
            b.add_meta_graph_and_variables(sess, [tf.compat.v1.saved_model.tag_constants.SERVING], signature_def_map={
                "serving_default": sig(inputs={"images": images}, outputs={"scores": scores}),
                "probabilities": sig(inputs={"images": images}, outputs={"probabilities": probs}),
            })
            b.save()
    xf = x.reshape(-1, 784)
    register("tf1_mlp", "tf.compat.v1.saved_model.Builder (TensorFlow 2.21)",
             "TF1 graph MLP 784-32(relu)-10, VariableV2 weights, 200 GradientDescent steps (lr 0.2, batch 100)",
             {"serving_default": {"images": xf}, "probabilities": {"images": xf}}, y)


def mobilenet_v2(xtr, ytr, x, y):
    seed_all(0)
    m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9

    def prep(a):
        r = tf.image.resize(tf.constant(a), (96, 96), method="bilinear")
        return keras.applications.mobilenet_v2.preprocess_input(tf.tile(r, [1, 1, 1, 3]).numpy() * 255.0)

    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy())
    m.fit(prep(xtr[:4000]), ytr[:4000], epochs=3, batch_size=64, verbose=0)
    m.export(os.path.join(OUT, "mobilenet_v2"), format="tf_saved_model", verbose=False)
    _, sigs = signatures_of(os.path.join(OUT, "mobilenet_v2"))
    key = next(iter(sigs["serving_default"]["inputs"]))
    register("mobilenet_v2", "keras.Model.export (Keras 3.15.1)",
             "Keras 3 keras.applications.MobileNetV2(alpha=0.35, 96x96x3, weights=None, classes=10), BN momentum "
             "0.9, 3 epochs Adam on 4000 MNIST images resized to 96x96 and tiled to 3 channels (preprocess_input)",
             {"serving_default": {key: prep(x[:4]).astype(np.float32)}}, y[:4])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist-dir")
    ap.add_argument("--only", help="comma-separated model names (others are dropped from the manifest)")
    args = ap.parse_args()
    tf.config.experimental.enable_op_determinism()
    xtr, ytr, xte, yte = load_mnist_raw(args.mnist_dir, see="testdata/gen_savedmodel.py docstring")
    xtr = (xtr[:6000].astype(np.float32) / 255.0)[..., None]
    ytr = ytr[:6000].astype(np.int64)
    x = (xte[:ROWS].astype(np.float32) / 255.0)[..., None]
    y = yte[:ROWS].astype(np.int64)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    builders = {"keras_cnn": keras_cnn, "module_mlp": module_mlp, "tf1_mlp": tf1_mlp, "mobilenet_v2": mobilenet_v2}
    only = set(args.only.split(",")) if args.only else set(builders)
    for name, build in builders.items():
        if name in only:
            build(xtr, ytr, x, y)
    doc = {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
           "models": MANIFEST}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"testdata/savedmodel: {total} bytes")
    assert total < 8 << 20, total


if __name__ == "__main__":
    main()
