"""A transformer encoder block (Keras 3 MultiHeadAttention with 2 heads, residual +
LayerNormalization, a GELU feed-forward, GlobalAveragePooling1D + Dense(10)). Writes
testdata/seq/seq_transformer_block.pb, its input and TensorFlow's output, and prints
the op histogram. Its manifest entry (`seq_transformer_block`) was added from these
files with generate.py's own `sink_node` and `op_histogram`; a rerun keeps it valid
as long as the files are rewritten.

    /tmp/tfvenv/bin/python testdata/gen_transformer.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.argv = [sys.argv[0]]
import generate  # noqa: E402  (its helpers; its main() does not run on import)
import numpy as np  # noqa: E402
import keras  # noqa: E402


def main():
    generate.seed_all(0)
    L = keras.layers
    x_in = keras.Input((8, 16))
    att = L.MultiHeadAttention(num_heads=2, key_dim=8)(x_in, x_in)
    h = L.LayerNormalization()(x_in + att)
    ff = L.Dense(16)(L.Dense(32, activation="gelu")(h))
    h = L.LayerNormalization()(h + ff)
    y = L.Dense(10)(L.GlobalAveragePooling1D()(h))
    m = keras.Model(x_in, y)
    rng = np.random.default_rng(321)
    x = generate.rnd(rng, 20, 8, 16, scale=0.7)
    gd = generate.freeze_tf2(lambda t: m(t, training=False), [generate.spec([None, 8, 16])])
    rel = "seq/seq_transformer_block.pb"
    generate.write_pb(gd, rel)
    generate.save_npy("seq/transformer20.npy", x)
    ref = np.asarray(m(x, training=False))
    y = generate.run_pb(rel, {"input": x}, generate.sink_node(gd))
    assert np.max(np.abs(ref - y)) <= 1e-4, "frozen graph disagrees with eager"
    generate.save_npy("seq/seq_transformer_block.expected.npy", y)
    print(f"{rel}: {os.path.getsize(os.path.join(HERE, rel))} bytes, output {list(y.shape)}")
    print("ops", generate.op_histogram(gd))


if __name__ == "__main__":
    main()
