"""The README's Python example runs as written (from a clone, in a temporary
directory), and does what it says. Needs TensorFlow."""

import re

import numpy as np
import pytest

from conftest import ROOT

try:
    import tensorflow  # noqa: F401
except ImportError:
    tensorflow = None


@pytest.mark.skipif(tensorflow is None, reason="SKIPPED: TensorFlow is not installed (pip install tensorflow-cpu)")
def test_the_readmes_python_example_runs(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"testdata/', f'"{ROOT}/testdata/')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    difference, agreement, steps = float(printed[0]), float(printed[1]), int(printed[2])
    assert difference < 1e-2 and agreement == 1.0 and steps > 0
    assert (tmp_path / "mnist.pb").exists()
