"""tfe_run.predict and tfe_run.inspect against the CLI on the same input, and
against TensorFlow's outputs committed in testdata/ (testdata/generate.py)."""

import json
import threading
import time

import numpy as np
import pytest

import tfe_run
from conftest import TESTDATA, load, manifest_models

# The secure run's fixed point (16 fractional bits) and its truncations: the
# tolerance tests/secure_models.rs uses for these models.
SECURE_TOLERANCE = 1e-2
# The plaintext reference against TensorFlow (tests/tf_models.rs).
PLAINTEXT_TOLERANCE = 1e-4

SMALL = ["mnist_model", "mnist_model_single", "mlp", "maxpool_cnn", "functional", "tf1_mlp", "ops_conv_dilated"]


def entry(name):
    return next(e for e in manifest_models() if e["name"] == name)


def close(got, expected, tol):
    scale = np.maximum(1.0, np.abs(expected))
    return np.max(np.abs(got - expected) / scale) <= tol


@pytest.mark.parametrize("name", SMALL)
def test_plaintext_is_the_clis_bit_for_bit_and_tensorflows(name, cli, tmp_path):
    e = entry(name)
    (placeholder, file), = e["inputs"].items()
    out = tmp_path / "out.npy"
    cli("--plaintext", "-q", "-o", out, "--output-node", e["output_node"], TESTDATA / e["model"], TESTDATA / file)
    got = tfe_run.predict(TESTDATA / e["model"], load(file), plaintext=True, output_node=e["output_node"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.load(out))
    expected = load(e["expected"])
    assert got.shape == expected.shape
    assert close(got, expected, PLAINTEXT_TOLERANCE)


@pytest.mark.parametrize("name", ["mnist_model", "mnist_model_single", "mlp", "maxpool_cnn"])
def test_secure_agrees_with_the_cli_and_tensorflow(name, cli, tmp_path):
    e = entry(name)
    (_, file), = e["inputs"].items()
    out = tmp_path / "out.npy"
    cli("-q", "-o", out, TESTDATA / e["model"], TESTDATA / file)
    got = tfe_run.predict(str(TESTDATA / e["model"]), load(file))
    expected = load(e["expected"])
    cli_secure = np.load(out)
    assert got.shape == expected.shape == cli_secure.shape
    assert close(got, expected, SECURE_TOLERANCE)
    assert close(got, cli_secure, 2 * SECURE_TOLERANCE)
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


def test_the_readme_digit_is_a_seven():
    y = tfe_run.predict(TESTDATA / "mnist_model.pb", load("mnist_input.npy"))
    assert y.shape == (1, 10) and int(y.argmax()) == 7


def test_a_model_as_bytes_is_the_model_as_a_path():
    x = load("mnist_flat100.npy")
    by_path = tfe_run.predict(TESTDATA / "mlp.pb", x, plaintext=True)
    by_bytes = tfe_run.predict((TESTDATA / "mlp.pb").read_bytes(), x, plaintext=True)
    np.testing.assert_array_equal(by_path, by_bytes)


def test_any_memory_layout_and_numeric_dtype_gives_the_same_answer():
    x = load("mnist_batch100.npy")[:8]
    want = tfe_run.predict(TESTDATA / "mnist_model.pb", x, plaintext=True)
    fortran = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=0)[::2]
    assert not strided.flags["C_CONTIGUOUS"] or not fortran.flags["C_CONTIGUOUS"]
    big_endian = x.astype(">f4")
    for variant in [fortran, strided, x.astype(np.float64), big_endian, x.tolist()]:
        np.testing.assert_array_equal(tfe_run.predict(TESTDATA / "mnist_model.pb", variant, plaintext=True), want)


def test_named_inputs_feed_placeholders_by_name():
    a, b = load("ops/two_inputs.a.npy"), load("ops/two_inputs.b.npy")
    got = tfe_run.predict(TESTDATA / "ops/two_inputs.pb", inputs={"a": a, "b": b}, plaintext=True)
    assert close(got, load("ops/two_inputs.expected.npy"), PLAINTEXT_TOLERANCE)
    positional = tfe_run.predict(TESTDATA / "ops/two_inputs.pb", b, inputs={"a": a}, plaintext=True)
    np.testing.assert_array_equal(got, positional)


def test_stats_are_what_the_cli_measures():
    y, stats = tfe_run.predict(TESTDATA / "mnist_model.pb", load("mnist_input.npy"), stats=True)
    assert y.shape == (1, 10)
    assert stats["predictions"] == 1
    assert set(stats["parties"]) >= {"server0", "server1", "crypto-producer"}
    assert stats["parties"]["server0"]["bytes_sent"] > 0
    # Measured equals planned, per layer (docs/PROTOCOL.md; tests/protocol.rs checks the same).
    for layer in stats["layers"]:
        assert layer["bytes_sent"] == layer["planned_bytes"], layer
        assert layer["rounds"] == layer["planned_rounds"], layer


def test_frac_bits_and_comparison_are_the_clis_options():
    x = load("mnist_input.npy")
    fss = tfe_run.predict(TESTDATA / "mnist_model.pb", x, comparison="fss", frac_bits=20)
    assert close(fss, load("mnist_model.single.expected.npy"), SECURE_TOLERANCE)


def test_inspect_is_the_clis_json(cli):
    for model in ["mnist_model.pb", "tf1_mlp.pb", "ops/two_inputs.pb"]:
        _, out, _ = cli("inspect", "--format", "json", TESTDATA / model)
        want = json.loads(out)
        got = tfe_run.inspect(str(TESTDATA / model))
        assert got == want
        from_bytes = tfe_run.inspect((TESTDATA / model).read_bytes())
        assert from_bytes["model"] == "<bytes>"
        assert {**from_bytes, "model": want["model"]} == want


def test_the_gil_is_released_during_a_run():
    x = load("mnist_batch100.npy")
    done = threading.Event()
    ticks = 0

    def run():
        tfe_run.predict(TESTDATA / "mnist_model.pb", x)
        done.set()

    worker = threading.Thread(target=run)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    took = time.perf_counter() - start
    # A run that held the GIL would leave this thread one or two ticks.
    assert took < 0.1 or ticks >= 10, (ticks, took)
