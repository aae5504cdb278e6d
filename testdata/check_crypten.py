"""Which of testdata/onnx's models CrypTen 0.4.1 imports, and how its outputs
compare with onnxruntime's (the committed expected outputs).

  /tmp/venv-crypten/bin/python testdata/check_crypten.py

Set up the venv as testdata/onnx/requirements-crypten.txt says (torch 2.1.2:
CrypTen 0.4.1 needs torch.onnx._internal.registration, gone in the torch that
gen_onnx.py pins). For each model of testdata/onnx/manifest.json it runs
`crypten.nn.from_onnx`, then the imported model's forward in plaintext (torch
tensors) and encrypted (CrypTen's own MPC, its parties simulated in this process),
and prints the largest difference from onnxruntime and whether the argmax of every
row agrees. docs/FORMATS.md records the result. Nothing is written.
"""

import json
import os
import sys

import numpy as np
import torch

import crypten
import crypten.nn

HERE = os.path.dirname(os.path.abspath(__file__))


def compare(out, expected):
    err = float(np.abs(out - expected).max())
    rel = float((np.abs(out - expected) / np.maximum(1.0, np.abs(expected))).max())
    same = bool((out.argmax(-1) == expected.argmax(-1)).all())
    return f"max |y - ort| {err:.1e} (relative {rel:.1e}), argmax {'equal on every row' if same else 'DIFFERS'}"


def main():
    crypten.init()
    torch.manual_seed(0)
    manifest = json.load(open(os.path.join(HERE, "onnx", "manifest.json")))
    print(f"crypten {crypten.__version__ if hasattr(crypten, '__version__') else '0.4.1'}, torch {torch.__version__}")
    imported = 0
    for e in manifest["models"]:
        name = e["name"]
        try:
            with open(os.path.join(HERE, e["model"]), "rb") as f:
                model = crypten.nn.from_onnx(f)
        except Exception as ex:  # noqa: BLE001 - the reason is the result
            print(f"{name}: not imported: {type(ex).__name__}: {ex}")
            continue
        imported += 1
        x = torch.from_numpy(np.load(os.path.join(HERE, e["input"])).astype(np.float32))
        expected = np.load(os.path.join(HERE, e["expected"]))
        model.eval()
        try:
            with torch.no_grad():
                plain = f"plaintext {compare(model(x).numpy(), expected)}"
        except Exception as ex:  # noqa: BLE001
            plain = f"plaintext forward fails: {type(ex).__name__}: {ex}"
        model.encrypt()
        with torch.no_grad():
            secure = model(crypten.cryptensor(x)).get_plain_text().numpy()
        print(f"{name}: imported; {plain}; encrypted {compare(secure, expected)}")
    print(f"{imported} of {len(manifest['models'])} models imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
