"""Models that do and do not keep the rows of their batch apart (testdata/rows/).

    /tmp/tfvenv/bin/python testdata/gen_rows.py [--mnist-dir DIR]

Pinned versions: testdata/requirements.txt. Used by the tests of running a file
of rows in batches of a plan's batch (src/batches.rs):

* `rows_fixed8_mlp`: a Keras 3 MLP whose Input fixes the batch at 8 rows
  (placeholder [8, 784]); its rows are independent, so 10 rows run as two
  batches, the second filled up. Expected: TensorFlow on the first 10 MNIST test
  rows, run as batches of 8 filled with copies of the last row, real rows kept.
* `rows_centred_mlp`: the same layers applied to `x - mean(x, axis=0)`, the
  batch centred (a dynamic batch): every output row depends on every input row,
  so no batch may be filled up or cut. Expected: TensorFlow on the first 10 rows
  as one batch, and on the first 8.

Weights are trained briefly on real MNIST (testdata/mnist_idx.py).
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mnist_idx import load_mnist_raw  # noqa: E402
from generate import freeze_tf2, run_pb, sink_node, write_pb  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist-dir")
    args = ap.parse_args()
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    xtr, ytr, xte, _ = load_mnist_raw(args.mnist_dir, see="testdata/gen_rows.py docstring")
    xtr = xtr[:12000].reshape(-1, 784).astype(np.float32) / 255.0
    ytr = ytr[:12000].astype(np.int64)
    x10 = xte[:10].reshape(-1, 784).astype(np.float32) / 255.0

    layers = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    layers.compile(optimizer=keras.optimizers.Adam(1e-3),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layers.fit(xtr - xtr.mean(axis=0), ytr, epochs=2, batch_size=64, verbose=0)
    os.makedirs(os.path.join(HERE, "rows"), exist_ok=True)
    np.save(os.path.join(HERE, "rows/mnist10.npy"), x10)

    fixed = freeze_tf2(lambda x: layers(x, training=False), [tf.TensorSpec([8, 784], tf.float32, name="input")])
    write_pb(fixed, "rows/rows_fixed8_mlp.pb")
    out = sink_node(fixed)
    filled = np.concatenate([x10, np.repeat(x10[-1:], 6, axis=0)])
    y = np.concatenate([run_pb("rows/rows_fixed8_mlp.pb", {"input": filled[k:k + 8]}, out) for k in (0, 8)])[:10]
    eager = layers(x10, training=False).numpy()
    assert np.max(np.abs(y - eager)) < 1e-4, "the fixed-batch file disagrees with eager"
    np.save(os.path.join(HERE, "rows/rows_fixed8_mlp.expected.npy"), y.astype(np.float32))
    print(f"rows_fixed8_mlp: output {out!r}, argmax {np.argmax(y, axis=1)}")

    centred = freeze_tf2(lambda x: layers(x - tf.reduce_mean(x, axis=0, keepdims=True), training=False),
                         [tf.TensorSpec([None, 784], tf.float32, name="input")])
    write_pb(centred, "rows/rows_centred_mlp.pb")
    out = sink_node(centred)
    for n in (10, 8):
        y = run_pb("rows/rows_centred_mlp.pb", {"input": x10[:n]}, out)
        np.save(os.path.join(HERE, f"rows/rows_centred_mlp.rows{n}.expected.npy"), y.astype(np.float32))
    # The point of the model: its first 8 rows differ when two more rows are beside them.
    y8 = run_pb("rows/rows_centred_mlp.pb", {"input": x10[:8]}, out)
    y10 = run_pb("rows/rows_centred_mlp.pb", {"input": x10}, out)
    print(f"rows_centred_mlp: output {out!r}, rows 0-7 move by {np.max(np.abs(y10[:8] - y8)):.3f} "
          f"with rows 8-9 beside them")
    assert np.max(np.abs(y10[:8] - y8)) > 0.05


if __name__ == "__main__":
    main()
