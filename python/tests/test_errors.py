"""Failures raise the class of the CLI's exit code, with the CLI's message
(docs/CLI.md, "Exit codes"); bad arrays never crash the interpreter."""

import numpy as np
import pytest

import tfe_run
from conftest import TESTDATA, load

MNIST = TESTDATA / "mnist_model.pb"

# A graph with an op tfe-run does not import, in text form.
UNSUPPORTED = b"""
node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } }
       attr { key: "shape" value { shape { dim { size: -1 } dim { size: 4 } } } } }
node { name: "y" op: "Cumprod" input: "x" input: "axis" attr { key: "T" value { type: DT_FLOAT } } }
node { name: "axis" op: "Const" attr { key: "dtype" value { type: DT_INT32 } }
       attr { key: "value" value { tensor { dtype: DT_INT32 tensor_shape { } int_val: 1 } } } }
"""


def cli_message(cli, tmp_path, array, model=MNIST):
    """The CLI's message (and exit code) on the same array saved as a file."""
    path = tmp_path / "in.npy"
    np.save(path, array, allow_pickle=True)
    code, _, err = cli(model, path, check=False)
    return code, err.strip().removeprefix("error: ").replace(f"`{path}`", "`x`")


def test_the_classes_follow_the_exit_codes():
    assert issubclass(tfe_run.BadInputError, ValueError)
    assert issubclass(tfe_run.RemoteError, ConnectionError)
    codes = {c: c.exit_code for c in [tfe_run.BadInputError, tfe_run.InvalidModelError,
                                      tfe_run.UnsupportedModelError, tfe_run.RemoteError]}
    assert list(codes.values()) == [2, 3, 4, 5]
    for cls in codes:
        assert issubclass(cls, tfe_run.TfeRunError)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: np.full_like(x, np.nan),
        lambda x: np.full_like(x, np.inf),
        lambda x: x.astype(np.float64) * 1e300,
        lambda x: x[0],  # no batch axis: the numpy fix is in the message
        lambda x: x.reshape(1, -1),  # flattened
        lambda x: np.transpose(x, (0, 3, 1, 2)),  # channels first
        lambda x: np.full(x.shape, 1e10, np.float32),  # out of the fixed-point range
    ],
    ids=["nan", "inf", "beyond-float32", "no-batch-axis", "flattened", "channels-first", "out-of-range"],
)
def test_a_bad_array_raises_bad_input_with_the_clis_message(make, cli, tmp_path):
    bad = make(load("mnist_input.npy"))
    code, message = cli_message(cli, tmp_path, bad)
    assert code == 2, message
    with pytest.raises(tfe_run.BadInputError) as raised:
        tfe_run.predict(MNIST, bad)
    assert raised.value.exit_code == 2
    assert str(raised.value) == message.replace("input `x`", "input `x`")


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 28, 28, 1), np.complex64), np.array([[object()]]), np.zeros(1, dtype=[("a", "f4")]), "a string", b"bytes"],
    ids=["complex", "object", "structured", "str", "bytes"],
)
def test_arrays_that_are_no_numbers_are_refused_before_the_model_runs(bad):
    with pytest.raises(tfe_run.BadInputError, match="not supported|expected a NumPy array"):
        tfe_run.predict(MNIST, bad)


def test_no_input_is_bad_input():
    with pytest.raises(tfe_run.BadInputError, match="no input given"):
        tfe_run.predict(MNIST)


def test_an_unknown_placeholder_and_output_node_are_bad_input(cli, tmp_path):
    x = load("mnist_input.npy")
    with pytest.raises(tfe_run.BadInputError, match="no placeholder `nope`"):
        tfe_run.predict(MNIST, inputs={"nope": x})
    np.save(tmp_path / "x.npy", x)
    code, _, err = cli("--output-node", "nope", MNIST, tmp_path / "x.npy", check=False)
    with pytest.raises(tfe_run.TfeRunError) as raised:
        tfe_run.predict(MNIST, x, output_node="nope")
    assert raised.value.exit_code == code
    assert str(raised.value) == err.strip().removeprefix("error: ")


def test_a_file_that_is_no_model_is_an_invalid_model(cli, tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xff\xff not a protobuf")
    np.save(tmp_path / "x.npy", load("mnist_input.npy"))
    code, _, err = cli(garbage, tmp_path / "x.npy", check=False)
    assert code == 3
    with pytest.raises(tfe_run.InvalidModelError) as raised:
        tfe_run.predict(garbage, load("mnist_input.npy"))
    assert str(raised.value) == err.strip().removeprefix("error: ")
    with pytest.raises(tfe_run.InvalidModelError, match="model `<bytes>`"):
        tfe_run.predict(garbage.read_bytes(), load("mnist_input.npy"))


def test_an_unsupported_op_is_unsupported_and_listed(cli, tmp_path):
    model = tmp_path / "cumprod.pbtxt"
    model.write_bytes(UNSUPPORTED)
    x = np.ones((2, 4), np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = cli(model, tmp_path / "x.npy", check=False)
    assert code == 4, err
    with pytest.raises(tfe_run.UnsupportedModelError) as raised:
        tfe_run.predict(model, x)
    assert str(raised.value) == err.strip().removeprefix("error: ")
    assert "Cumprod `y`" in str(raised.value)
    # inspect reports it instead of raising, as the CLI prints its report.
    report = tfe_run.inspect(UNSUPPORTED)
    assert report["unsupported"] == ["Cumprod `y`"] and report["plan"]["ok"] is False


def test_a_missing_model_file_is_bad_input():
    with pytest.raises(tfe_run.BadInputError, match="cannot read model"):
        tfe_run.predict(TESTDATA / "no-such-model.pb", load("mnist_input.npy"))
    with pytest.raises(tfe_run.BadInputError, match="expected a path"):
        tfe_run.predict(12, load("mnist_input.npy"))


def test_bad_options_are_bad_input():
    x = load("mnist_input.npy")
    with pytest.raises(tfe_run.BadInputError):
        tfe_run.predict(MNIST, x, frac_bits=40)
    with pytest.raises(tfe_run.BadInputError, match="comparison"):
        tfe_run.predict(MNIST, x, comparison="nope")
    with pytest.raises(tfe_run.BadInputError, match="memory"):
        tfe_run.predict(MNIST, load("mnist_batch100.npy"), max_memory="1K")
