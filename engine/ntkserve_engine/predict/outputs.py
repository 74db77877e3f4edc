"""What the predict functions take and give: targets with their outputs axis, kernels named
"nngp"/"ntk" in whatever container the caller has, and neural-tangents' return shapes
(`Gaussian(mean, covariance)`; one value for a string `get`, a namedtuple for a tuple)."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ntkserve_engine.kernels.errors import InputError

GETS = ("nngp", "ntk")
COVARIANCES = ("marginal", "full")  # the covariance a prediction gives (None: none)
Matrix = np.ndarray[Any, Any]


class Gaussian(NamedTuple):
    """A prediction's mean and covariance (over inputs; the same for every output)."""

    mean: Any
    covariance: Any


def part(kernels: Any, name: str) -> Any:
    """The `name` kernel of `kernels`: an attribute (neural-tangents' Kernel, a namedtuple),
    a mapping's entry, or `kernels` itself when it is one array (used for every name)."""
    if hasattr(kernels, name):
        return getattr(kernels, name)
    if isinstance(kernels, Mapping):
        if name not in kernels:
            raise InputError(name, f"is needed and missing from the kernels ({sorted(kernels)})")
        return kernels[name]
    return kernels


def gets(get: str | Sequence[str] | None, allowed: Sequence[str]) -> tuple[str, ...]:
    """`get` as a tuple (None: "nngp" and "ntk"), each name checked."""
    names = GETS if get is None else (get,) if isinstance(get, str) else tuple(get)
    for name in names:
        if name not in allowed:
            raise InputError("get", f"must name kernels among {list(allowed)}, got {name!r}")
    return names


def named(get: str | Sequence[str] | None, values: dict[str, Any]) -> Any:
    """One value for a string `get`; else a namedtuple of the values in `get`'s order."""
    if isinstance(get, str):
        return values[get]
    fields = tuple(values)
    return collections.namedtuple("Gaussians", fields)(*values.values())


class Targets:
    """y_train in float64 as (N, outputs): the analytic kernels are the same for every output
    (K ⊗ I over y's last axis), which is neural-tangents' default `trace_axes=(-1,)` and the
    only one they need. A 1-D y_train is one output."""

    def __init__(self, y_train: Any, trace_axes: Sequence[int] = (-1,)) -> None:
        y = np.asarray(y_train, np.float64)
        if y.ndim not in (1, 2) or len(y) == 0:
            raise InputError("y_train", f"must be (N,) or (N, outputs) with N > 0, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise InputError("y_train", "has non-finite entries")
        axes = tuple(int(a) % y.ndim for a in trace_axes)
        if y.ndim == 2 and axes != (1,):
            raise InputError(
                "trace_axes",
                f"must be (-1,) (outputs independent, K ⊗ I over y's last axis), got "
                f"{tuple(trace_axes)}: infinite-width kernels carry no outputs axes",
            )
        self.shape = y.shape
        self.matrix = y.reshape(len(y), -1)
        self.size = y.size  # neural-tangents' normalization of time: the loss is a mean

    def check_rows(self, k: Matrix, field: str) -> None:
        if k.shape[-1] != len(self.matrix):
            raise InputError(
                field, f"has {k.shape[-1]} training columns, y_train {len(self.matrix)} rows"
            )

    def like(self, values: Matrix, leading: tuple[int, ...] = ()) -> Matrix:
        """(…, rows, outputs) values in y_train's layout (1-D y: no outputs axis)."""
        if len(self.shape) == 1:
            return values.reshape(*leading, -1)
        return values.reshape(*leading, -1, self.shape[1])


def as_matrix(k: Any, field: str) -> Matrix:
    """`k` as a float64 matrix, checked 2-D and finite."""
    matrix: Matrix = np.asarray(k, np.float64)
    if matrix.ndim != 2:
        raise InputError(field, f"must be a 2-D kernel matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        bad = int(np.sum(~np.isfinite(matrix)))
        raise InputError(field, f"has {bad} non-finite entries")
    return matrix


def pairs(a: Matrix, b: Matrix, covariance: str) -> Matrix:
    """a b^T over the last two axes ("full": every pair of rows), or only its diagonal
    ("marginal": row i of a with row i of b, never the full square: a marginal variance of
    N test points costs O(N), not O(N^2) memory)."""
    if covariance == "full":
        out: Matrix = a @ np.swapaxes(b, -1, -2)
        return out
    return np.asarray(np.sum(a * b, axis=-1))


def covariance_of(k_test_test: Any) -> str | None:
    """The covariance `k_test_test` asks for: None (no prior given), "marginal" for a vector
    (the prior's diagonal, k(x, x) per test point), "full" for a matrix."""
    if k_test_test is None:
        return None
    return "marginal" if np.ndim(k_test_test) == 1 else "full"
