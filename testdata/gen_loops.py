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
  LSTM and GRU, Keras 3 and tf_keras, one trained model frozen both ways.
* `loop_tf1_while_lstm`: an LSTM written with `tf.compat.v1.while_loop` under
  control flow v1 in a TF1 graph, trained with a v1 optimizer, frozen with
  `graph_util.convert_variables_to_constants`.

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


# --------------------------------------------------------------------------
# Loops
# --------------------------------------------------------------------------
LOOP_KINDS = [(lib, cell, form) for lib in ("keras3", "tfkeras") for cell in ("lstm", "gru")
              for form in ("while", "frames")]


def freeze(fn, spec, lower):
    cf = tf.function(fn).get_concrete_function(spec)
    return convert_variables_to_constants_v2(cf, lower_control_flow=lower).graph.as_graph_def()


def build_rnn_loops(data):
    """Keras RNNs with unroll=False: one trained model per (library, cell), frozen twice."""
    xtr, ytr, xte, yte = data
    x = xte.reshape(-1, 28, 28, 1)
    spec = tf.TensorSpec([None, 28, 28, 1], tf.float32, name="input")
    for lib_name in ("keras3", "tfkeras"):
        for cell_name in ("lstm", "gru"):
            names = {form: f"loop_{cell_name}_{lib_name}_{form}" for form in ("while", "frames")}
            if not any(selected(n) for n in names.values()):
                continue
            seed_all(0)
            lib = keras if lib_name == "keras3" else tf_keras
            L = lib.layers
            cell = L.LSTM if cell_name == "lstm" else L.GRU
            m = lib.Sequential([lib.Input((28, 28, 1)), L.Reshape((28, 28)), cell(16, unroll=False),
                                L.Dense(10)])
            m.compile(optimizer=lib.optimizers.Adam(1e-2),
                      loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True))
            m.fit(xtr.reshape(-1, 28, 28, 1), ytr, epochs=2, batch_size=128, verbose=0)
            ref = np.asarray(m(x, training=False))
            for form, name in names.items():
                if not selected(name):
                    continue
                gd = freeze(lambda t: m(t, training=False), spec, lower=form == "frames")
                how = ("convert_variables_to_constants_v2(lower_control_flow=False): a TF2 While, "
                       "cond and body in the library, TensorList ops" if form == "while" else
                       "convert_variables_to_constants_v2(lower_control_flow=True): TF1 "
                       "Enter/Merge/Switch/LoopCond/NextIteration/Exit frames, TensorList ops")
                register(name, gd, {"input": "mnist_batch100.npy"}, {"input": x},
                         f"{'Keras 3' if lib is keras else 'tf_keras'} {cell.__name__}(16, "
                         f"unroll=False) on MNIST rows (28 steps of 28) + Dense(10), 2 epochs; "
                         + how, ref, yte)


def build_tf1_loop(data):
    """An LSTM written with tf.compat.v1.while_loop under control flow v1 (graph mode)."""
    name = "loop_tf1_while_lstm"
    if not selected(name):
        return
    xtr, ytr, xte, yte = data
    v1 = tf.compat.v1
    rng = np.random.default_rng(7)
    H, F, T = 24, 28, 28
    g = tf.Graph()
    with g.as_default():
        v1.disable_control_flow_v2()
        v1.set_random_seed(0)
        xin = v1.placeholder(tf.float32, [None, T, F, 1], name="input")
        xseq = tf.reshape(xin, [-1, T, F])
        labels = v1.placeholder(tf.int64, [None], name="labels")
        W = v1.Variable((rng.standard_normal((F, 4 * H)) / np.sqrt(F)).astype(np.float32), name="W")
        U = v1.Variable((rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(np.float32), name="U")
        b = v1.Variable(np.concatenate([np.zeros(H), np.ones(H), np.zeros(2 * H)]).astype(np.float32),
                        name="b")
        Wo = v1.Variable((rng.standard_normal((H, 10)) / np.sqrt(H)).astype(np.float32), name="Wo")
        bo = v1.Variable(np.zeros(10, np.float32), name="bo")
        batch = tf.shape(xin)[0]
        h0 = tf.zeros(tf.stack([batch, H]))

        def body(t, h, c):
            xt = tf.gather(xseq, t, axis=1)
            z = tf.matmul(xt, W) + tf.matmul(h, U) + b
            i, f, cc, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(cc)
            h = tf.sigmoid(o) * tf.tanh(c)
            return t + 1, h, c

        _, h, _ = v1.while_loop(lambda t, h, c: tf.less(t, T), body, [tf.constant(0), h0, h0])
        logits = tf.add(tf.matmul(h, Wo), bo, name="logits")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        step = v1.train.AdamOptimizer(1e-2).minimize(loss)
        xs = xtr.reshape(-1, T, F, 1)
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            order = rng.permutation(len(xs))
            for k in range(300):
                at = order[(k * 100) % len(xs):][:100]
                sess.run(step, {xin: xs[at], labels: ytr[at]})
            x = xte.reshape(-1, T, F, 1)
            ref = sess.run(logits, {xin: x})
            gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["logits"])
        v1.enable_control_flow_v2()
    register(name, gd, {"input": "mnist_batch100.npy"}, {"input": x},
             f"TF1 graph: an LSTM({H}) written with tf.compat.v1.while_loop under control flow v1 "
             "(Enter/Merge/Switch/LoopCond/NextIteration/Exit; x_t by GatherV2 on the loop counter), "
             "MNIST rows as 28 steps of 28, 300 Adam steps; frozen with "
             "graph_util.convert_variables_to_constants", ref, yte)


def train_v1(sess, step, feeds_of, n_steps, n, rng):
    order = rng.permutation(n)
    for k in range(n_steps):
        at = order[(k * 100) % n:][:100]
        sess.run(step, feeds_of(at))


def build_tf1_tensorarray(data):
    """A GRU written with TF1 TensorArrays (TensorArrayV3 and its Scatter/Read/Write/Gather/Size)
    inside a tf.compat.v1.while_loop under control flow v1: what tf.compat.v1.nn.dynamic_rnn
    writes (its cells need the removed tf.compat.v1.nn.rnn_cell, so the loop is written out)."""
    name = "loop_tf1_tensorarray_gru"
    if not selected(name):
        return
    xtr, ytr, xte, yte = data
    v1 = tf.compat.v1
    rng = np.random.default_rng(11)
    H, F, T = 20, 28, 28
    g = tf.Graph()
    with g.as_default():
        v1.disable_control_flow_v2()
        v1.set_random_seed(0)
        xin = v1.placeholder(tf.float32, [None, T * F], name="input")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        x_tm = tf.transpose(tf.reshape(xin, [-1, T, F]), [1, 0, 2])      # time major
        init = lambda *s: (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32)
        Wz, Uz = v1.Variable(init(F, 2 * H), name="Wz"), v1.Variable(init(H, 2 * H), name="Uz")
        Wh, Uh = v1.Variable(init(F, H), name="Wh"), v1.Variable(init(H, H), name="Uh")
        bz = v1.Variable(np.ones(2 * H, np.float32), name="bz")
        bh = v1.Variable(np.zeros(H, np.float32), name="bh")
        Wo = v1.Variable(init(H, 10), name="Wo")
        bo = v1.Variable(np.zeros(10, np.float32), name="bo")
        steps_in = v1.TensorArray(tf.float32, size=T, name="steps_in").unstack(x_tm)
        steps_out = v1.TensorArray(tf.float32, size=T, name="steps_out")
        h0 = tf.zeros(tf.stack([tf.shape(xin)[0], H]))

        def body(t, h, out):
            xt = steps_in.read(t)
            zr = tf.sigmoid(tf.matmul(xt, Wz) + tf.matmul(h, Uz) + bz)
            z, r = tf.split(zr, 2, axis=1)
            cand = tf.tanh(tf.matmul(xt, Wh) + tf.matmul(r * h, Uh) + bh)
            h = z * h + (1.0 - z) * cand
            return t + 1, h, out.write(t, h)

        _, _, steps_out = v1.while_loop(lambda t, h, out: tf.less(t, T), body,
                                        [tf.constant(0), h0, steps_out])
        mean_h = tf.reduce_mean(steps_out.stack(), axis=0)           # Gather over Range(Size)
        logits = tf.add(tf.matmul(mean_h, Wo), bo, name="logits")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        step = v1.train.AdamOptimizer(1e-2).minimize(loss)
        xs = xtr.reshape(-1, T * F)
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            train_v1(sess, step, lambda at: {xin: xs[at], labels: ytr[at]}, 300, len(xs), rng)
            x = xte.reshape(-1, T * F)
            ref = sess.run(logits, {xin: x})
            gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["logits"])
        v1.enable_control_flow_v2()
    assert any(n.op == "TensorArrayV3" for n in gd.node)
    register(name, gd, {"input": "mnist_flat100.npy"}, {"input": x},
             f"TF1 graph: a GRU({H}) over MNIST rows (28 steps of 28) written with "
             "tf.compat.v1.TensorArray (unstack, read, write, stack: TensorArrayV3, "
             "TensorArrayScatterV3, TensorArrayReadV3, TensorArrayWriteV3, TensorArraySizeV3, "
             "TensorArrayGatherV3) inside tf.compat.v1.while_loop under control flow v1, the mean "
             "of its 28 outputs + a dense layer, 300 Adam steps; frozen with "
             "graph_util.convert_variables_to_constants", ref, yte)


def build_tf1_conds(data):
    """tf.cond outside any loop, on an is_training placeholder_with_default(False): under control
    flow v1 (Switch/Merge) and v2 (If/StatelessIf, the branches in the library)."""
    xtr, ytr, xte, yte = data
    v1 = tf.compat.v1
    for flow in ("v1", "v2"):
        name = f"cond_tf1_{flow}"
        if not selected(name):
            continue
        rng = np.random.default_rng(5)
        g = tf.Graph()
        with g.as_default():
            if flow == "v1":
                v1.disable_control_flow_v2()
            v1.set_random_seed(0)
            xin = v1.placeholder(tf.float32, [None, 784], name="input")
            labels = v1.placeholder(tf.int64, [None], name="labels")
            training = v1.placeholder_with_default(False, [], name="is_training")
            W1 = v1.Variable((rng.standard_normal((784, 64)) / 28).astype(np.float32), name="W1")
            b1 = v1.Variable(np.zeros(64, np.float32), name="b1")
            W2 = v1.Variable((rng.standard_normal((64, 10)) / 8).astype(np.float32), name="W2")
            b2 = v1.Variable(np.zeros(10, np.float32), name="b2")
            h = tf.nn.relu(tf.matmul(xin, W1) + b1)
            # Dropout only while training, as tf.compat.v1.layers.dropout(training=...) writes it.
            h = tf.cond(training, lambda: tf.nn.dropout(h, rate=0.3), lambda: tf.identity(h),
                        name="dropout")
            # Branches of constants only: their deadness comes through control edges.
            scale = tf.cond(training, lambda: tf.constant(0.5), lambda: tf.constant(1.25),
                            name="scale")
            logits = tf.multiply(tf.matmul(h, W2) + b2, scale, name="logits")
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                                 logits=logits))
            step = v1.train.AdamOptimizer(1e-3).minimize(loss)
            xs = xtr.reshape(-1, 784)
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                train_v1(sess, step, lambda at: {xin: xs[at], labels: ytr[at], training: True},
                         300, len(xs), rng)
                x = xte.reshape(-1, 784)
                ref = sess.run(logits, {xin: x})
                gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["logits"])
            if flow == "v1":
                v1.enable_control_flow_v2()
        ops = op_histogram(gd)
        assert ("Switch" in ops) if flow == "v1" else ("If" in ops or "StatelessIf" in ops), ops
        how = ("control flow v1: Switch/Merge, the branches' constants dead through control edges "
               "from the pivots" if flow == "v1" else
               "control flow v2: If/StatelessIf nodes, the branches as functions in the library")
        register(name, gd, {"input": "mnist_flat100.npy"}, {"input": x},
                 "TF1 graph: Dense(64) + relu, tf.cond(is_training, dropout(0.3), identity), Dense(10) "
                 "times tf.cond(is_training, 0.5, 1.25); is_training = "
                 "placeholder_with_default(False), True in 300 Adam steps, left to its default "
                 f"for the export; {how}; frozen with graph_util.convert_variables_to_constants",
                 ref, yte)


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
    build_rnn_loops(data)
    build_tf1_loop(data)
    build_tf1_tensorarray(data)
    build_tf1_conds(data)
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
