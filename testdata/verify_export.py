#!/usr/bin/env python3
"""Run a frozen GraphDef exported by `tfe-run` in real TensorFlow.

    python testdata/verify_export.py MODEL.pb FEATURES.npy OUT.npy [--output NAME]

Loads MODEL.pb into a fresh tf.Graph (tf.compat.v1, as generate.py does for its
expected outputs), takes the graph's single Placeholder as the input, feeds it
FEATURES.npy (cast to the placeholder's dtype), fetches the tensor NAME
(default `probabilities`; `NAME` means `NAME:0`) in a tf.compat.v1.Session and
saves the result to OUT.npy as float32.  It prints the op types in the graph.

Needs TensorFlow (testdata/requirements.txt).  Importing this module has no
side effects; TensorFlow is imported only when a function is called.
"""

import argparse
import os
import sys
from collections import Counter

import numpy as np


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import tensorflow as tf
    return tf


def load_graph_def(path):
    tf = _tf()
    with open(path, "rb") as f:
        return tf.compat.v1.GraphDef.FromString(f.read())


def op_histogram(graph_def):
    return dict(sorted(Counter(n.op for n in graph_def.node).items()))


def single_placeholder(graph_def):
    phs = [n for n in graph_def.node if n.op == "Placeholder"]
    if len(phs) != 1:
        raise ValueError(f"expected exactly one Placeholder, found {[n.name for n in phs]}")
    return phs[0]


def run_graph_def(graph_def, features, output="probabilities"):
    """Import graph_def into a fresh graph, feed `features` to its Placeholder, fetch `output`."""
    tf = _tf()
    ph = single_placeholder(graph_def)
    dtype = tf.dtypes.as_dtype(ph.attr["dtype"].type)
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    fetch = output if ":" in output else output + ":0"
    feed = np.asarray(features).astype(dtype.as_numpy_dtype)
    with tf.compat.v1.Session(graph=g) as sess:
        y = sess.run(fetch, {ph.name + ":0": feed})
    return np.asarray(y, dtype=np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run a frozen GraphDef on a features .npy.")
    ap.add_argument("model", help="frozen GraphDef (.pb)")
    ap.add_argument("features", help="input features (.npy)")
    ap.add_argument("out", help="where to write the output (.npy, float32)")
    ap.add_argument("--output", default="probabilities",
                    help="output tensor name (default: probabilities)")
    args = ap.parse_args(argv)

    gd = load_graph_def(args.model)
    print("ops:", ", ".join(f"{op}={n}" for op, n in op_histogram(gd).items()))
    ph = single_placeholder(gd)
    x = np.load(args.features, allow_pickle=False)
    print(f"input: {ph.name} <- {args.features} {x.dtype}{list(x.shape)}")
    y = run_graph_def(gd, x, args.output)
    np.save(args.out, y, allow_pickle=False)
    print(f"output: {args.output} -> {args.out} float32{list(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
