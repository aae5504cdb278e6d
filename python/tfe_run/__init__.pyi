"""Type hints of the tfe_run package (see __init__.py for the docstrings)."""

import os
from typing import Any, Dict, List, Literal, Mapping, NamedTuple, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

Model = Union[str, os.PathLike[str], bytes]
ArrayLike = npt.ArrayLike
Comparison = Literal["bitwise", "fss"]

class TfeRunError(Exception):
    """A tfe-run failure; ``exit_code`` is the CLI's exit code, the message the CLI's."""

    exit_code: int
    def __init__(self, message: str, exit_code: Optional[int] = ...) -> None: ...

class BadInputError(TfeRunError, ValueError):
    """Exit code 2: a bad argument or input array."""

class InvalidModelError(TfeRunError, ValueError):
    """Exit code 3: the model is not a valid GraphDef."""

class UnsupportedModelError(TfeRunError):
    """Exit code 4: unsupported ops, dtypes or attributes, or shapes that do not check."""

class RemoteError(TfeRunError, ConnectionError):
    """Exit code 5: a party could not be reached, refused, failed or timed out."""

def inspect(
    model: Model,
    *,
    output_node: Optional[str] = ...,
    signature: Optional[str] = ...,
    output: Optional[str] = ...,
) -> Dict[str, Any]:
    """What ``tfe-run inspect --format json MODEL`` prints, as a dict."""

@overload
def predict(
    model: Model,
    x: Optional[ArrayLike] = ...,
    *,
    plaintext: bool = ...,
    frac_bits: int = ...,
    inputs: Optional[Mapping[str, ArrayLike]] = ...,
    output_node: Optional[str] = ...,
    stats: Literal[False] = ...,
    comparison: Comparison = ...,
    signature: Optional[str] = ...,
    output: Optional[str] = ...,
    public: Optional[Mapping[str, float]] = ...,
    max_memory: Union[int, str] = ...,
) -> npt.NDArray[np.float32]:
    """Predict privately (under Pond in this process), as ``tfe-run MODEL INPUT``."""

@overload
def predict(
    model: Model,
    x: Optional[ArrayLike] = ...,
    *,
    plaintext: bool = ...,
    frac_bits: int = ...,
    inputs: Optional[Mapping[str, ArrayLike]] = ...,
    output_node: Optional[str] = ...,
    stats: Literal[True],
    comparison: Comparison = ...,
    signature: Optional[str] = ...,
    output: Optional[str] = ...,
    public: Optional[Mapping[str, float]] = ...,
    max_memory: Union[int, str] = ...,
) -> Tuple[npt.NDArray[np.float32], Dict[str, Any]]:
    """``predict`` with the ``--stats`` measurements as a dict."""

class Cluster:
    """Parties on other hosts (``tfe-run serve``), over mutually authenticated TLS."""

    config: str
    certs: Optional[str]
    insecure: bool
    timeout: Optional[float]
    principal: Optional[str]
    def __init__(
        self,
        config: Union[str, os.PathLike[str]],
        certs: Optional[Union[str, os.PathLike[str]]] = ...,
        *,
        insecure: bool = ...,
        timeout: Optional[float] = ...,
        as_: Optional[str] = ...,
    ) -> None: ...
    def deploy(
        self,
        model: Model,
        name: str,
        *,
        batch_size: Optional[int] = ...,
        frac_bits: int = ...,
        comparison: Comparison = ...,
        replace: bool = ...,
        output_node: Optional[str] = ...,
        signature: Optional[str] = ...,
        output: Optional[str] = ...,
    ) -> str:
        """The model owner: secret-share the weights to the servers under ``name``."""
    @overload
    def predict(
        self,
        name: str,
        x: Optional[ArrayLike] = ...,
        *,
        inputs: Optional[Mapping[str, ArrayLike]] = ...,
        stats: Literal[False] = ...,
        cache: Union[bool, str, os.PathLike[str]] = ...,
    ) -> npt.NDArray[np.float32]:
        """A client without the weights: predict with the model deployed as ``name``."""
    @overload
    def predict(
        self,
        name: str,
        x: Optional[ArrayLike] = ...,
        *,
        inputs: Optional[Mapping[str, ArrayLike]] = ...,
        stats: Literal[True],
        cache: Union[bool, str, os.PathLike[str]] = ...,
    ) -> Tuple[npt.NDArray[np.float32], Dict[str, Any]]: ...
    def status(self) -> Dict[str, Any]:
        """``tfe-run status --format json``, as a dict."""

class Trained(NamedTuple):
    """What ``train`` gives the model owner."""

    model: bytes
    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    losses: List[float]
    accuracy: Optional[float]

def train(
    features: Union[ArrayLike, Sequence[ArrayLike]],
    labels: Union[ArrayLike, Sequence[ArrayLike]],
    *,
    epochs: int = ...,
    batch_size: int = ...,
    learning_rate: float = ...,
    shuffle: bool = ...,
    classes: Optional[int] = ...,
    feature_bound: float = ...,
    frac_bits: int = ...,
    plaintext: bool = ...,
    comparison: Comparison = ...,
    test: Optional[Tuple[ArrayLike, ArrayLike]] = ...,
    cluster: Optional[Cluster] = ...,
) -> Trained:
    """Train logistic regression on secret-shared rows, as ``tfe-run train``."""
