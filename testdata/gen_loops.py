"""Function calls and loops, as TensorFlow 2.21 writes them (testdata/loops/).

    /tmp/tfvenv/bin/python testdata/gen_loops.py [--mnist-dir DIR] [--only NAME,...]

Pinned versions: testdata/requirements.txt. The entries are merged into
testdata/manifest.json (replaced where they are, appended otherwise), so that
tests/tf_models.rs and tests/secure_models.rs check them in plaintext and under Pond.

* `calls_*`: a concrete function's `graph.as_graph_def()` (not frozen by grappler,
  so it keeps PartitionedCall nodes and the function library; its weights are
  captured numpy constants, Const nodes inside the functions). Nested calls, a
  callee with two outputs consumed as `call:1` and `call:0`, a Split's list output
  named `split:output:1` in the function.
* `loop_*` (below): Keras RNNs with unroll=False, frozen with
  `convert_variables_to_constants_v2(lower_control_flow=False)` (a TF2 While whose
  cond/body sit in the library) and `True` (TF1 Enter/Merge/Switch/Exit frames).

Weights are trained briefly on real MNIST (testdata/mnist_idx.py), inputs are the
first 100 MNIST test images, expected outputs are what TensorFlow's runtime computes
on the written file.
"""

import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf
import keras
import tf_keras
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mnist_idx import load_mnist_raw  # noqa: E402
from generate import run_pb, write_pb  # noqa: E402  (the same files, the same TF run)

OUT = HERE
N_TRAIN = 12000
MANIFEST = []
ONLY = None


def selected(name):
    return ONLY is None or name in ONLY


def seed_all(seed=0):
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def sink_node(gd):
    consumed = {i.lstrip("^").split(":")[0] for n in gd.node for i in n.input}
    sinks = [n.name for n in gd.node
             if n.name not in consumed and n.op not in ("NoOp", "Const", "Placeholder")]
    assert len(sinks) == 1, sinks
    return sinks[0]


def op_histogram(gd):
    """Ops of the graph and of its library's functions (a loop's body is in there)."""
    hist = {}
    for n in list(gd.node) + [n for f in gd.library.function for n in f.node_def]:
        hist[n.op] = hist.get(n.op, 0) + 1
    return dict(sorted(hist.items()))


def register(name, gd, inputs, feeds, description, reference, labels, atol=1e-4):
    rel = f"loops/{name}.pb"
    write_pb(gd, rel)
    out = sink_node(gd)
    y = np.asarray(run_pb(rel, feeds, out), dtype=np.float32)
    err = float(np.max(np.abs(np.asarray(reference, np.float32) - y)))
    assert err <= atol, f"{name}: the written graph disagrees with eager ({err})"
    expected = f"loops/{name}.expected.npy"
    np.save(os.path.join(OUT, expected), y)
    acc = float(np.mean(np.argmax(y, axis=1) == labels))
    MANIFEST.append({"name": name, "model": rel, "inputs": inputs, "expected": expected,
                     "output_node": out, "description": description, "ops": op_histogram(gd)})
    print(f"== {name}: {os.path.getsize(os.path.join(OUT, rel))} bytes, output {out!r}, "
          f"functions {[f.signature.name for f in gd.library.function]}, accuracy {acc:.0%}, "
          f"eager vs file {err:.1e}")
    print(f"   ops {op_histogram(gd)}")


def mnist(mnist_dir):
    xtr, ytr, xte, yte = load_mnist_raw(mnist_dir, see="testdata/gen_loops.py docstring")
    xtr = xtr[:N_TRAIN].astype(np.float32) / 255.0
    xte = xte[:100].astype(np.float32) / 255.0
    return xtr, ytr[:N_TRAIN].astype(np.int64), xte, yte[:100].astype(np.int64)


# --------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------
def build_calls(data):
    name = "calls_nested_mlp"
    if not selected(name):
        return
    xtr, ytr, xte, yte = data
    seed_all(0)
    L = keras.layers
    m = keras.Sequential([keras.Input((784,)), L.Dense(32, activation="relu"), L.Dense(10)])
    m.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(xtr.reshape(-1, 784), ytr, epochs=2, batch_size=128, verbose=0)
    W1, b1 = (np.asarray(v) for v in m.layers[0].weights)
    W2, b2 = (np.asarray(v) for v in m.layers[1].weights)
    # The head concatenates the halves swapped: its weight rows are swapped to match.
    W2s = np.concatenate([W2[16:], W2[:16]], axis=0)

    @tf.function
    def hidden(x):
        h = tf.matmul(x, W1) + b1
        a, b = tf.split(h, 2, axis=1)
        return tf.nn.relu(a), tf.nn.relu(b)

    @tf.function
    def head(x):
        a, b = hidden(x)
        return tf.matmul(tf.concat([b, a], axis=1), W2s) + b2

    @tf.function
    def model(x):
        return head(x)

    x = xte.reshape(-1, 784)
    cf = model.get_concrete_function(tf.TensorSpec([None, 784], tf.float32, name="input"))
    gd = cf.graph.as_graph_def()
    assert any(n.op in ("PartitionedCall", "StatefulPartitionedCall") for n in gd.node)
    register(name, gd, {"input": "mnist_flat100.npy"}, {"input": x},
             "Dense(32, relu) + Dense(10) trained 2 epochs on MNIST (Keras 3), its weights in "
             "three nested tf.functions (model -> head -> hidden; hidden splits its 32 units "
             "and returns both halves, head concatenates them swapped): cf.graph.as_graph_def(), "
             "PartitionedCall nodes and the function library, inlined at import",
             model(x), yte)


def main():
    global ONLY
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist-dir")
    ap.add_argument("--only")
    args = ap.parse_args()
    if args.only:
        ONLY = set(args.only.split(","))
    data = mnist(args.mnist_dir)
    os.makedirs(os.path.join(OUT, "loops"), exist_ok=True)
    build_calls(data)
    path = os.path.join(OUT, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    want = {"tensorflow": tf.__version__, "keras": keras.__version__,
            "tf_keras": tf_keras.__version__, "numpy": np.__version__}
    assert manifest["versions"] == want, (manifest["versions"], want)
    where = {e["name"]: i for i, e in enumerate(manifest["models"])}
    for e in MANIFEST:
        if e["name"] in where:
            manifest["models"][where[e["name"]]] = e
        else:
            manifest["models"].append(e)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"manifest.json: {len(MANIFEST)} entries written")


if __name__ == "__main__":
    main()
