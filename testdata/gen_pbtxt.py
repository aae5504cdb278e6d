"""Text GraphDefs (`.pbtxt`) of frozen testdata models, as TensorFlow writes them
(`tf.io.write_graph(graph_def, dir, name, as_text=True)`), each with what
TensorFlow computes when it imports that text file and runs it (tests/pbtxt.rs).

    /tmp/tfvenv/bin/python testdata/gen_pbtxt.py

The graphs are the committed binary models (their generators trained them on
MNIST); the expected outputs are computed here from the text files, by
TensorFlow's own text parser and runtime. Pinned versions: testdata/requirements.txt.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
from google.protobuf import text_format

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pbtxt")

# name: (binary model, input, output node). mnist-sized CNN; BatchNormalization
# (tf_keras, and Keras 3 after a convolution); a Keras DepthwiseConv2D; the
# transformer block (MultiHeadAttention, LayerNormalization, GELU).
MODELS = {
    "mnist_model": ("mnist_model.pb", "mnist_batch100.npy", "Identity"),
    "tfkeras_bn": ("tfkeras_bn.pb", "mnist_batch100.npy", "Identity"),
    "relu6_keras_conv_bn": ("ops/relu6_keras_conv_bn.pb", "ops/relu6_keras_conv_bn.input.npy", "Identity"),
    "depthwise_keras": ("ops/depthwise_keras.pb", "ops/depthwise_keras.input.npy", "Identity"),
    "seq_transformer_block": ("seq/seq_transformer_block.pb", "seq/transformer20.npy", "Identity"),
}


def run(graph_def, x, output):
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    inputs = [n.name for n in graph_def.node if n.op == "Placeholder"]
    assert len(inputs) == 1, inputs
    with tf.compat.v1.Session(graph=g) as s:
        return s.run(output + ":0", {inputs[0] + ":0": x})


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (model, inp, output) in MODELS.items():
        g = tf.compat.v1.GraphDef()
        with open(os.path.join(HERE, model), "rb") as f:
            g.ParseFromString(f.read())
        tf.io.write_graph(g, OUT, name + ".pbtxt", as_text=True)
        with open(os.path.join(OUT, name + ".pbtxt")) as f:
            text = text_format.Parse(f.read(), tf.compat.v1.GraphDef())
        assert text == g
        x = np.load(os.path.join(HERE, inp))
        y = run(text, x, output)
        np.save(os.path.join(OUT, name + ".expected.npy"), y)
        size = os.path.getsize(os.path.join(OUT, name + ".pbtxt"))
        print(f"{name}.pbtxt: {size} bytes, {len(g.node)} nodes, output {y.shape}")


if __name__ == "__main__":
    main()
