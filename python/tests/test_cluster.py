"""A cluster of three `tfe-run serve` processes on loopback, with the
certificates `tfe-run certs` makes, driven from Python: the model owner
deploys, a client that never holds the weights predicts, status reports."""

import json
import re
import socket
import subprocess
import threading

import numpy as np
import pytest

import tfe_run
from conftest import TESTDATA, load

PARTIES = ["server0", "server1", "server2"]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster(cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    config = root / "cluster.json"
    config.write_text(json.dumps(dict(zip(PARTIES, addresses))))
    cli("certs", "--config", config, "--out", root / "certs")
    children, logs = [], []
    try:
        for party, address in zip(PARTIES, addresses):
            child = subprocess.Popen(
                [str(cli.binary), "serve", "--party", party, "--config", str(config), "--certs",
                 str(root / "certs"), "--listen", address, "--timeout", "10"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            children.append(child)
            seen = []
            for line in child.stderr:
                seen.append(line)
                if "listening on" in line:
                    break
            assert "listening on" in "".join(seen), f"{party}: {''.join(seen)}"
            # Keep draining the log so a party never blocks on a full pipe.
            threading.Thread(target=lambda f=child.stderr: [None for _ in f], daemon=True).start()
            logs.append(seen)
        yield config, root / "certs"
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def test_deploy_predict_and_status_from_python(cluster, cli, tmp_path):
    config, certs = cluster
    c = tfe_run.Cluster(config, certs=certs)
    said = c.deploy(TESTDATA / "mnist_model.pb", "mnist", batch_size=1)
    assert "deployed" in said and "as `mnist`" in said
    x = load("mnist_batch100.npy")[:3]
    got = c.predict("mnist", x)
    expected = load("mnist_model.expected.npy")[:3]
    assert got.shape == (3, 10)
    assert np.max(np.abs(got - expected) / np.maximum(1, np.abs(expected))) <= 1e-2
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    # The CLI's client on the same deployment and input.
    np.save(tmp_path / "x.npy", x)
    cli("predict", "-q", "--config", config, "--certs", certs, "--model", "mnist", tmp_path / "x.npy",
        "-o", tmp_path / "out.npy")
    assert np.max(np.abs(got - np.load(tmp_path / "out.npy"))) <= 2e-2
    # A model given as bytes deploys the same way, under its own name.
    c.deploy((TESTDATA / "mlp.pb").read_bytes(), "mlp")
    y, stats = c.predict("mlp", load("mnist_flat100.npy")[:1], stats=True)
    assert np.max(np.abs(y - load("mlp.expected.npy")[:1])) <= 1e-2
    assert stats["predictions"] == 1
    status = c.status()
    assert status["down"] == []
    assert len(status["parties"]) == 3
    _, out, _ = cli("status", "--config", config, "--certs", certs, "-f", "json")
    assert json.loads(out)["down"] == [] and "mnist" in out and "mnist" in json.dumps(status)


def test_predict_keeps_the_deployments_description_where_asked_or_nowhere(cluster, tmp_path, description_cache):
    config, certs = cluster
    c = tfe_run.Cluster(config, certs=certs)
    c.deploy(TESTDATA / "mlp.pb", "mlp-cached", batch_size=1)
    x, expected = load("mnist_flat100.npy")[:1], load("mlp.expected.npy")[:1]
    folder = tmp_path / "descriptions"
    for _ in range(2):
        # The first asks server1 and keeps the description, the second uses it.
        assert np.max(np.abs(c.predict("mlp-cached", x, cache=folder) - expected)) <= 1e-2
        assert len(list(folder.glob("*.json"))) == 1
    # A redeployment makes the kept description stale: asked again, still right.
    c.deploy(TESTDATA / "mlp.pb", "mlp-cached", batch_size=1, replace=True)
    assert np.max(np.abs(c.predict("mlp-cached", x, cache=folder) - expected)) <= 1e-2
    # cache=False keeps nothing, not even in $TFE_RUN_CACHE_DIR.
    kept = set(description_cache.glob("*.json"))
    assert np.max(np.abs(c.predict("mlp-cached", x, cache=False) - expected)) <= 1e-2
    assert set(description_cache.glob("*.json")) == kept
    # The default is $TFE_RUN_CACHE_DIR (this run's folder), as for the CLI.
    c.predict("mlp-cached", x)
    assert len(set(description_cache.glob("*.json")) - kept) == 1


def test_remote_failures_raise_remote_error_naming_the_party(cluster, cli, tmp_path):
    config, certs = cluster
    c = tfe_run.Cluster(config, certs=certs)
    with pytest.raises(tfe_run.RemoteError) as raised:
        c.predict("no-such-model", load("mnist_input.npy"))
    assert raised.value.exit_code == 5
    np.save(tmp_path / "x.npy", load("mnist_input.npy"))
    code, _, err = cli("predict", "--config", config, "--certs", certs, "--model", "no-such-model",
                       tmp_path / "x.npy", check=False)
    # The same message, but for the session's random id.
    session = lambda text: re.sub(r"session [0-9a-f]{16}", "session <id>", text)
    assert code == 5 and session(str(raised.value)) == session(err.strip().removeprefix("error: "))
    # Nobody listens: each party is named.
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps(dict(zip(PARTIES, [f"127.0.0.1:{p}" for p in free_ports(3)]))))
    with pytest.raises(tfe_run.RemoteError, match="server"):
        tfe_run.Cluster(dead, certs=certs, timeout=2).predict("mnist", load("mnist_input.npy"))
    assert tfe_run.Cluster(dead, certs=certs, timeout=2).status()["down"] != []
    # A bad input is the user's to fix, before any party is asked.
    with pytest.raises(tfe_run.BadInputError):
        c.predict("mnist", np.full((1, 28, 28, 1), np.nan, np.float32))
    with pytest.raises(tfe_run.BadInputError, match="certs|--config|ca.pem|read"):
        tfe_run.Cluster(config, certs=tmp_path / "no-certs").predict("mnist", load("mnist_input.npy"))
