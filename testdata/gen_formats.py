"""Model files tfe-run does not read (yet), as the real exporters write them, for
the tests of what tfe-run says about each (tests/cli.rs): a Keras 3 `.keras`
file, a tf_keras `.h5` file, a SavedModel directory (`tf.saved_model.save`),
an unfrozen TF1 graph with its variables, and a text GraphDef (read since
text GraphDefs are: tests/pbtxt.rs runs it against expected.npy).

    /tmp/tfvenv/bin/python testdata/gen_formats.py [--check-commands]

--check-commands also runs target/release/tfe-run on each file, runs the
conversion command it prints (with this Python), and checks that tfe-run then
predicts what TensorFlow does on the converted model: the commands in its
messages work. Pinned versions: testdata/requirements.txt.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras
import tf_keras

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "formats")
ROOT = os.path.dirname(HERE)


def dense(lib):
    lib.utils.set_random_seed(0)
    m = lib.Sequential([lib.Input(shape=(4,)), lib.layers.Dense(3, activation="relu"), lib.layers.Dense(2)])
    return m


def make():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.save(os.path.join(OUT, "input.npy"), x)

    k3 = dense(keras)
    k3.save(os.path.join(OUT, "dense.keras"))
    tk = dense(tf_keras)
    tk.save(os.path.join(OUT, "dense.h5"))
    tf.saved_model.save(tk, os.path.join(OUT, "dense_saved_model"))

    # An unfrozen TF1 graph: VariableV2 nodes, their values in a checkpoint.
    g = tf.Graph()
    with g.as_default():
        inp = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.Variable(tf.ones([4, 2]), name="w", use_resource=False)
        tf.identity(tf.matmul(inp, w), name="y")
        tf.io.write_graph(g.as_graph_def(), OUT, "unfrozen.pb", as_text=False)

    # A text GraphDef: TensorFlow's own text form of the frozen model.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    f = tf.function(lambda v: tk(v)).get_concrete_function(tf.TensorSpec([None, 4], tf.float32))
    tf.io.write_graph(convert_variables_to_constants_v2(f).graph.as_graph_def(), OUT, "dense.pbtxt", as_text=True)
    np.save(os.path.join(OUT, "expected.npy"), tk(x).numpy())
    for f in sorted(os.listdir(OUT)):
        print(f)


def check_commands():
    exe = os.path.join(ROOT, "target", "release", "tfe-run")
    x = os.path.join(OUT, "input.npy")
    expected = np.load(os.path.join(OUT, "expected.npy"))
    # dense.pbtxt is read since text GraphDefs are (tests/pbtxt.rs runs it); the others are converted.
    for model in ["dense.keras", "dense.h5", "dense_saved_model", os.path.join("dense_saved_model", "saved_model.pb")]:
        path = os.path.join(OUT, model)
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([exe, path, x], capture_output=True, text=True, cwd=tmp)
            assert r.returncode != 0, r
            cmd = re.search(r"^  (python -c .*)$", r.stderr, re.M).group(1)
            subprocess.run(cmd.replace("python ", sys.executable + " ", 1), shell=True, check=True, cwd=tmp)
            r = subprocess.run([exe, "--format", "json", "model.pb", x], capture_output=True, text=True, cwd=tmp)
            assert r.returncode == 0, r.stderr
            got = np.array([row["values"] for row in json.loads(r.stdout)["rows"]])
            err = np.abs(got - expected).max()
            assert err < 1e-3, (model, got, expected)
            print(f"{model}: its command works; tfe-run on the converted model is {err:.1e} from TensorFlow")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-commands", action="store_true")
    args = ap.parse_args()
    make()
    if args.check_commands:
        check_commands()
