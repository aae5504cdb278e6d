"""The full DenseNet121 (blocks 6, 12, 24, 16) at 64x64 with weights=None, for
BENCHMARKS.md's whole-process timing only: 28 MB, so not committed (testdata's
zoo has the half-depth one, trained). Its logits are not decisive (untrained);
the secure output is checked against TensorFlow's written beside it.

    /tmp/tfvenv/bin/pip install --no-deps -r testdata/requirements.txt
    /tmp/tfvenv/bin/python benches/make_densenet121_full.py OUT_DIR
    tfe-run OUT_DIR/densenet121_full.pb OUT_DIR/x.npy -o OUT_DIR/out.npy
"""
import sys

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from keras.src.applications import densenet

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
keras.utils.set_random_seed(0)
m = densenet.DenseNet([6, 12, 24, 16], weights=None, input_shape=(64, 64, 3), classes=10, name="densenet121")
spec = tf.TensorSpec([None, 64, 64, 3], tf.float32, name="input")
cf = tf.function(lambda x: m(x, training=False)).get_concrete_function(spec)
gd = convert_variables_to_constants_v2(cf).graph.as_graph_def()
open(f"{OUT}/densenet121_full.pb", "wb").write(gd.SerializeToString(deterministic=True))
x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
x = keras.applications.densenet.preprocess_input(x * 255.0)
np.save(f"{OUT}/x.npy", x)
np.save(f"{OUT}/expected.npy", m(x, training=False).numpy())
print(f"{m.count_params()} parameters written to {OUT}")
