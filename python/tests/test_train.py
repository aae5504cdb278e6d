"""tfe_run.train against `tfe-run train` on the same rows (testdata/training,
made by testdata/generate_training.py)."""

import numpy as np
import pytest

import tfe_run
from conftest import TESTDATA

TRAINING = TESTDATA / "training"


def owners(prefix):
    return [(np.load(TRAINING / f"{prefix}_{o}_features.npy"), np.load(TRAINING / f"{prefix}_{o}_labels.npy"))
            for o in ("a", "b")]


def cli_train(cli, tmp_path, prefix, *extra):
    args = []
    for o in ("a", "b"):
        args += ["--features", TRAINING / f"{prefix}_{o}_features.npy", "--labels", TRAINING / f"{prefix}_{o}_labels.npy"]
    out = tmp_path / "lr.pb"
    cli("train", *args, "--epochs", 3, "--batch-size", 32, "--learning-rate", 0.5, "--out", out, *extra)
    return out


def test_plaintext_training_is_the_clis_bit_for_bit(cli, tmp_path):
    out = cli_train(cli, tmp_path, "bc", "--plaintext")
    data = owners("bc")
    trained = tfe_run.train([x for x, _ in data], [y for _, y in data], epochs=3, batch_size=32,
                            learning_rate=0.5, plaintext=True)
    np.testing.assert_array_equal(trained.weights, np.load(tmp_path / "lr.weights.npy"))
    np.testing.assert_array_equal(trained.bias, np.load(tmp_path / "lr.bias.npy"))
    assert trained.model == out.read_bytes()
    assert len(trained.losses) == 3


def test_secure_training_is_close_to_plaintext_and_its_model_predicts(tmp_path):
    data = owners("bc")
    xs, ys = [x for x, _ in data], [y for _, y in data]
    secure = tfe_run.train(xs, ys, epochs=2, learning_rate=0.5, test=(xs[0], ys[0]))
    plain = tfe_run.train(xs, ys, epochs=2, learning_rate=0.5, plaintext=True, test=(xs[0], ys[0]))
    assert np.max(np.abs(secure.weights - plain.weights)) < 0.05
    assert secure.accuracy is not None and abs(secure.accuracy - plain.accuracy) <= 0.05
    # The trained GraphDef is a model tfe-run serves.
    y = tfe_run.predict(secure.model, xs[0][:4].astype(np.float32), plaintext=True)
    logits = xs[0][:4] @ secure.weights + secure.bias
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_bad_training_rows_raise_the_clis_errors():
    x, y = owners("bc")[0]
    with pytest.raises(tfe_run.BadInputError, match="feature-bound"):
        tfe_run.train(x * 1000, y, epochs=1, plaintext=True)
    with pytest.raises(tfe_run.BadInputError, match="labels"):
        tfe_run.train(x, y[:-1], epochs=1, plaintext=True)
    with pytest.raises(tfe_run.BadInputError):
        tfe_run.train([x, x], [y], epochs=1, plaintext=True)
