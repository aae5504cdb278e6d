"""The overhead of a Python call against the CLI on the same model and input.

    python python/benches/overhead.py [--repeat N] [--bin target/release/tfe-run]

Times, in one run, alternating: `tfe-run MODEL INPUT.npy` as a whole process
(start, read, run under Pond, print; stdout to /dev/null) and
`tfe_run.predict(MODEL, x)` in this interpreter (the array already in memory,
the module already imported), for a batch of 1 and of 100, secure and
plaintext. Prints the median of each and the ratio Python / CLI.
"""

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

import tfe_run

ROOT = Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--bin", default=str(ROOT / "target/release/tfe-run"))
    args = parser.parse_args()
    model = ROOT / "testdata/mnist_model.pb"
    cases = [("batch 1", ROOT / "testdata/mnist_input.npy"), ("batch 100", ROOT / "testdata/mnist_batch100.npy")]
    print(f"{'case':<22} {'CLI process ms':>15} {'Python call ms':>15} {'Python / CLI':>13}")
    for mode, flags in [("secure", []), ("plaintext", ["--plaintext"])]:
        for name, path in cases:
            x = np.load(path)
            cli, py = [], []
            tfe_run.predict(model, x, plaintext=bool(flags))  # warm the page cache and allocator
            for _ in range(args.repeat):
                start = time.perf_counter()
                subprocess.run([args.bin, "-q", *flags, str(model), str(path)], check=True, stdout=subprocess.DEVNULL)
                cli.append(time.perf_counter() - start)
                start = time.perf_counter()
                tfe_run.predict(model, x, plaintext=bool(flags))
                py.append(time.perf_counter() - start)
            c, p = statistics.median(cli) * 1e3, statistics.median(py) * 1e3
            print(f"{mode + ', ' + name:<22} {c:>15.1f} {p:>15.1f} {p / c:>13.2f}")


if __name__ == "__main__":
    main()
