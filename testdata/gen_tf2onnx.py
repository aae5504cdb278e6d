"""tf2onnx copies of testdata's frozen TensorFlow models, expected outputs from onnxruntime.

  python3.11 -m venv /tmp/venv-tf2onnx
  /tmp/venv-tf2onnx/bin/pip install -r testdata/onnx/requirements-tf2onnx.txt
  /tmp/venv-tf2onnx/bin/python testdata/gen_tf2onnx.py

tf2onnx converts each GraphDef (NHWC, as TensorFlow wrote it: tf2onnx adds the
Transposes around each window op) at opset 17; onnxruntime runs the copy on the
TensorFlow model's own test input, and the copy must agree with TensorFlow's
committed output within 1e-4. Appends the entries to testdata/onnx/manifest.json
(run testdata/gen_onnx.py first).
"""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "onnx")
MODELS = [
    ("tf2onnx_mnist_model", "mnist_model.pb", "mnist_batch100.npy", "mnist_model.expected.npy", "Keras 3 MNIST CNN"),
    ("tf2onnx_maxpool_cnn", "maxpool_cnn.pb", "mnist_batch100.npy", "maxpool_cnn.expected.npy", "Keras 3 MaxPool CNN"),
    ("tf2onnx_mlp", "mlp.pb", "mnist_flat100.npy", "mlp.expected.npy", "Keras 3 MLP"),
]


def main():
    path = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(path))
    manifest["models"] = [e for e in manifest["models"] if not e["name"].startswith("tf2onnx_")]
    for name, pb, x, expected, what in MODELS:
        out = os.path.join(OUT, f"{name}.onnx")
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", os.path.join(HERE, pb),
                        "--inputs", "input:0", "--outputs", "Identity:0", "--opset", "17", "--output", out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m = onnx.load(out)
        onnx.checker.check_model(m, full_check=True)
        xs = np.load(os.path.join(HERE, x))
        y = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"input:0": xs})[0]
        tf = np.load(os.path.join(HERE, expected))
        assert np.abs(y - tf).max() < 1e-4, (name, np.abs(y - tf).max())
        np.save(os.path.join(OUT, f"{name}.expected.npy"), y)
        ops = {}
        for n in m.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        print(f"{name}: {os.path.getsize(out)} bytes, ops {ops}, max |ort - tf| {np.abs(y - tf).max():.1e}")
        manifest["models"].append({"name": name, "model": f"onnx/{name}.onnx", "input": x, "input_name": "input:0",
                                   "expected": f"onnx/{name}.expected.npy", "output": "Identity:0",
                                   "description": f"tf2onnx {__import__('tf2onnx').__version__} of testdata/{pb} "
                                                  f"({what}); its TensorFlow test input",
                                   "opset": m.opset_import[0].version, "ops": dict(sorted(ops.items()))})
    manifest["versions"]["tf2onnx"] = __import__("tf2onnx").__version__
    manifest["versions"]["tensorflow"] = __import__("tensorflow").__version__
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
