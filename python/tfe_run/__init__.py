"""tfe-run from Python: private inference and training on NumPy arrays.

The same crate as the ``tfe-run`` command line, built with PyO3: the same model
loading, planning, secure runtime (Pond: two servers holding additive shares in
Z_2^64, a crypto producer dealing correlated randomness) and the same messages.

* :func:`inspect` -- what ``tfe-run inspect --format json MODEL`` prints, as a dict;
* :func:`predict` -- ``tfe-run MODEL INPUT``: a NumPy array in, a NumPy array out;
* :class:`Cluster` -- parties on other hosts: ``deploy`` (the model owner),
  ``predict`` (a client that never holds the weights), ``status``;
* :func:`train` -- ``tfe-run train``: logistic regression on secret-shared rows.

A failure raises a :class:`TfeRunError` whose class follows the CLI's exit
codes (docs/CLI.md, "Exit codes") and whose message is the CLI's.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

__all__ = [
    "TfeRunError",
    "BadInputError",
    "InvalidModelError",
    "UnsupportedModelError",
    "RemoteError",
    "inspect",
    "predict",
    "Cluster",
    "train",
    "Trained",
    "__version__",
]

__version__ = "0.1.0"


class TfeRunError(Exception):
    """A tfe-run failure. ``exit_code`` is the code the CLI would exit with
    (1: an unexpected failure of this process); the message is the CLI's."""

    exit_code = 1

    def __init__(self, message: str, exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInputError(TfeRunError, ValueError):
    """Exit code 2: a bad argument or input array (wrong shape or dtype, NaN,
    out of the fixed-point range, unfed placeholder, unknown node)."""

    exit_code = 2


class InvalidModelError(TfeRunError, ValueError):
    """Exit code 3: the model is not a valid GraphDef (or ONNX model)."""

    exit_code = 3


class UnsupportedModelError(TfeRunError):
    """Exit code 4: the model uses ops, dtypes or attributes tfe-run does not
    support, or its shapes do not check; every unsupported node is listed."""

    exit_code = 4


class RemoteError(TfeRunError, ConnectionError):
    """Exit code 5: a party could not be reached, refused the session, failed,
    disconnected or missed its deadline; the message names the party."""

    exit_code = 5


_BY_CODE = {2: BadInputError, 3: InvalidModelError, 4: UnsupportedModelError, 5: RemoteError}


def _raise(err: "_native.NativeError") -> "TfeRunError":
    code, message = err.args
    return _BY_CODE.get(code, TfeRunError)(message, code)


def _call(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except _native.NativeError as err:
        raise _raise(err) from None


Model = Union[str, "os.PathLike[str]", bytes]
ArrayLike = Any


def _npy(x: ArrayLike, what: str) -> bytes:
    """The array as the bytes of a ``.npy`` file, read by the CLI's own reader.

    Non-contiguous arrays and views are copied into C order; lists become
    arrays. Object, structured, complex and string arrays are refused here (the
    reader would refuse them too) rather than pickled.
    """
    if isinstance(x, (bytes, bytearray, memoryview, str)):
        raise BadInputError(f"{what}: expected a NumPy array (or a nested list of numbers), not {type(x).__name__}")
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise BadInputError(f"{what}: cannot be made a NumPy array ({e})") from None
    if array.dtype.kind not in "biuf" or array.dtype.fields is not None:
        raise BadInputError(
            f"{what}: dtype {array.dtype} is not supported (use float16, float32, float64 or an integer type)"
        )
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _inputs(x: Optional[ArrayLike], inputs: Optional[Mapping[str, ArrayLike]]) -> Tuple[Dict[str, bytes], Optional[bytes]]:
    named = {str(name): _npy(value, f"inputs[{name!r}]") for name, value in (inputs or {}).items()}
    positional = None if x is None else _npy(x, "x")
    if positional is None and not named:
        raise BadInputError("no input given: pass x (or inputs={NAME: array})")
    return named, positional


def _array(shape: Sequence[int], data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(tuple(shape)).copy()


def _model(model: Model) -> Union[str, bytes]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    raise BadInputError(
        f"model: expected a path (str or os.PathLike) or the bytes of a model file, not {type(model).__name__}"
    )


def _comparison(comparison: str) -> str:
    if comparison not in ("bitwise", "fss"):
        raise BadInputError(f"comparison {comparison!r}: expected 'bitwise' or 'fss'")
    return comparison


def inspect(
    model: Model,
    *,
    output_node: Optional[str] = None,
    signature: Optional[str] = None,
    output: Optional[str] = None,
) -> Dict[str, Any]:
    """What ``tfe-run inspect --format json MODEL`` prints, as a dict.

    ``model`` is a path (a ``.pb``, ``.pbtxt``, ``.onnx`` file or a SavedModel
    directory) or the bytes of a model file. The dict has ``model``, ``nodes``,
    ``nodes_used``, ``inputs`` (name, dtype, shape with -1 for unknown),
    ``output``, ``ops``, ``unsupported``, ``parameters`` and ``plan`` (for a
    batch of one; ``plan["ok"]`` is False, with ``plan["error"]``, when it
    cannot run). A model with unsupported ops is reported, not raised: the
    report lists them, as the CLI prints it before exiting with code 4. A file
    that cannot be read or decoded raises.
    """
    text, _verdict, _why = _call(_native.inspect, _model(model), output_node, signature, output)
    return json.loads(text)


def _parse_size(size: Union[int, str]) -> int:
    if isinstance(size, int):
        return size
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = str(size).strip().upper().rstrip("B").rstrip("I")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise BadInputError(f"max_memory {size!r}: expected bytes or a size like 512M, 8G") from None


def predict(
    model: Model,
    x: Optional[ArrayLike] = None,
    *,
    plaintext: bool = False,
    frac_bits: int = 16,
    inputs: Optional[Mapping[str, ArrayLike]] = None,
    output_node: Optional[str] = None,
    stats: bool = False,
    comparison: str = "bitwise",
    signature: Optional[str] = None,
    output: Optional[str] = None,
    public: Optional[Mapping[str, float]] = None,
    max_memory: Union[int, str] = "8G",
) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, Any]]]:
    """Predict privately, as ``tfe-run MODEL INPUT`` does: under Pond with the
    five parties as threads of this process (``plaintext=True``: in the clear,
    the reference).

    ``model``: a path (any format the CLI reads) or the bytes of a model file.
    ``x``: the input of the one placeholder not named in ``inputs``; its first
    axis is the batch. ``inputs``: arrays by placeholder name (``--input``).
    Arrays may be float16/32/64 or integers, of any memory layout; NaN,
    infinities and values beyond float32 raise :class:`BadInputError`.

    Returns the output as a float32 array; with ``stats=True`` (secure runs),
    ``(output, stats)`` where ``stats`` holds what ``--stats`` prints: times in
    ms, per party bytes and rounds, per layer measured beside planned.

    The GIL is released while the prediction runs. The last digit of a secure
    result can differ from run to run and from ``plaintext=True`` by a few 1e-4.
    """
    named, positional = _inputs(x, inputs)
    shape, data, measured = _call(
        _native.predict,
        _model(model),
        named,
        positional,
        bool(plaintext),
        int(frac_bits),
        _comparison(comparison),
        output_node,
        signature,
        output,
        bool(stats),
        _parse_size(max_memory),
        {str(k): float(v) for k, v in (public or {}).items()},
    )
    result = _array(shape, data)
    if stats:
        return result, (json.loads(measured) if measured is not None else {"mode": "plaintext"})
    return result


class Cluster:
    """Parties on other hosts (``tfe-run serve`` on each), reached over mutually
    authenticated TLS.

    ``config``: the cluster file (tf-encrypted's ``config.json`` or TOML);
    ``certs``: the folder ``tfe-run certs`` made (``ca.pem`` and this role's key
    pair); ``insecure=True`` runs without TLS (experiments only); ``timeout``:
    the deadline in seconds for any one message; ``as_``: the principal whose
    key pair to use (``--as``).
    """

    def __init__(
        self,
        config: Union[str, "os.PathLike[str]"],
        certs: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        insecure: bool = False,
        timeout: Optional[float] = None,
        as_: Optional[str] = None,
    ) -> None:
        self.config = os.fspath(config)
        self.certs = None if certs is None else os.fspath(certs)
        self.insecure = bool(insecure)
        self.timeout = None if timeout is None else float(timeout)
        self.principal = as_

    def _net(self) -> Tuple[str, Optional[str], bool, Optional[float], Optional[str]]:
        return (self.config, self.certs, self.insecure, self.timeout, self.principal)

    def __repr__(self) -> str:
        return f"Cluster({self.config!r}, certs={self.certs!r}, insecure={self.insecure})"

    def deploy(
        self,
        model: Model,
        name: str,
        *,
        batch_size: Optional[int] = None,
        frac_bits: int = 16,
        comparison: str = "bitwise",
        replace: bool = False,
        output_node: Optional[str] = None,
        signature: Optional[str] = None,
        output: Optional[str] = None,
    ) -> str:
        """The model owner's ``tfe-run deploy``: secret-share the weights of
        ``model`` (a path or bytes) to server0 and server1 under ``name``.
        Returns the line the CLI prints (``deployed ... as NAME: ...``)."""
        return _call(
            _native.deploy,
            self._net(),
            _model(model),
            str(name),
            batch_size,
            int(frac_bits),
            _comparison(comparison),
            bool(replace),
            output_node,
            signature,
            output,
        )

    def predict(
        self,
        name: str,
        x: Optional[ArrayLike] = None,
        *,
        inputs: Optional[Mapping[str, ArrayLike]] = None,
        stats: bool = False,
        cache: Union[bool, str, "os.PathLike[str]"] = True,
    ) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, Any]]]:
        """A prediction client's ``tfe-run predict --model NAME``: the input is
        secret-shared to the servers, which run the deployed model; this process
        never holds the weights. Returns the output (and the stats with
        ``stats=True``), as :func:`predict`.

        ``cache``: where the deployment's public description is kept, so that
        the next prediction names it at once instead of asking server1, as the
        CLI does: ``True`` (the CLI's folder: ``$TFE_RUN_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/tfe-run/deployments``, else
        ``~/.cache/tfe-run/deployments``), a folder, or ``False`` to ask every
        time and keep nothing (``--no-cache``). The servers check a cached
        description before anything runs, so a stale one only costs asking
        again."""
        named, positional = _inputs(x, inputs)
        use_cache = cache is not False
        cache_dir = None if isinstance(cache, bool) else os.fspath(cache)
        shape, data, measured = _call(
            _native.predict_deployed, self._net(), str(name), named, positional, bool(stats), use_cache, cache_dir
        )
        result = _array(shape, data)
        return (result, json.loads(measured)) if stats else result

    def status(self) -> Dict[str, Any]:
        """``tfe-run status --format json``: ``parties`` (each party's state,
        release, limits and models, or ``state: "down"`` with ``error``) and
        ``down`` (their names). A party that is down is reported, not raised."""
        text, _code = _call(_native.status, self._net())
        return json.loads(text)


class Trained(NamedTuple):
    """What ``train`` gives the model owner."""

    model: bytes
    """The frozen GraphDef (what ``--out MODEL.pb`` holds): input ``x``, output ``y``."""
    weights: np.ndarray
    """[features, outputs], float32 (``MODEL.weights.npy``)."""
    bias: np.ndarray
    """[outputs], float32 (``MODEL.bias.npy``)."""
    losses: list
    """The loss after each epoch."""
    accuracy: Optional[float]
    """On ``test=(features, labels)``, when given."""


def train(
    features: Union[ArrayLike, Sequence[ArrayLike]],
    labels: Union[ArrayLike, Sequence[ArrayLike]],
    *,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 0.1,
    shuffle: bool = False,
    classes: Optional[int] = None,
    feature_bound: float = 32.0,
    frac_bits: int = 16,
    plaintext: bool = False,
    comparison: str = "bitwise",
    test: Optional[Tuple[ArrayLike, ArrayLike]] = None,
    cluster: Optional[Cluster] = None,
) -> Trained:
    """Train logistic regression by mini-batch SGD on secret-shared rows, as
    ``tfe-run train`` does (docs/TRAINING.md).

    ``features``/``labels``: one data owner's arrays ([rows, features]; labels
    0/1, class ids or one-hot), or lists of them, one pair per owner. With
    ``cluster``, the servers and crypto producer of that cluster train.
    Returns :class:`Trained`: the model's GraphDef bytes (which
    :func:`predict` and TensorFlow load), its weights and bias, the losses.
    """
    many = isinstance(features, (list, tuple)) and not isinstance(features, np.ndarray)
    xs = list(features) if many else [features]
    ys = list(labels) if isinstance(labels, (list, tuple)) and many else [labels]
    if len(xs) != len(ys):
        raise BadInputError(f"{len(xs)} feature arrays but {len(ys)} label arrays: give one labels array per owner")
    xb = [_npy(x, "features" if len(xs) == 1 else f"features[{j}]") for j, x in enumerate(xs)]
    yb = [_npy(y, "labels" if len(ys) == 1 else f"labels[{j}]") for j, y in enumerate(ys)]
    held_out = None if test is None else (_npy(test[0], "test_features"), _npy(test[1], "test_labels"))
    model, (ws, wd), (bs, bd), losses, accuracy = _call(
        _native.train,
        xb,
        yb,
        held_out,
        int(epochs),
        int(batch_size),
        float(learning_rate),
        bool(shuffle),
        classes,
        float(feature_bound),
        int(frac_bits),
        bool(plaintext),
        _comparison(comparison),
        None if cluster is None else cluster._net(),
    )
    return Trained(model, _array(ws, wd), _array(bs, bd), list(losses), accuracy)
