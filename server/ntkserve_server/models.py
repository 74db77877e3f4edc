"""Served models' work: fitting (training kernels assembled from tiles into the model's
staging directory, factorized in float64, stored) and predicting (test kernels assembled
from tiles, answered by the engine's predict math on the stored kernels and factorization).

The math is the engine's (`ntkserve_engine.predict`: `MSEEnsemble.predict_kernels`, the
`GPInference` it uses, `factorization`), on kernels computed here: a served prediction is
what `gradient_descent_mse_ensemble` answers in process for the same data and settings.
Loaded models (`Predictors`) stay in memory, least recently used dropped past a byte budget
(their kernels are memory-mapped from the store: the budget counts what the solves add).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ntkserve import kinds
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.predict.ensemble import MSEEnsemble, needed_kernels
from ntkserve_engine.predict.factorization import Factorization, factorize, regularized
from ntkserve_engine.predict.likelihood import log_likelihood
from ntkserve_engine.predict.outputs import Targets

from ntkserve_server.model_requests import FitSettings, PredictQuery
from ntkserve_server.model_store import StoredModel
from ntkserve_server.requests import InvalidRequest, check_entries, check_response_bytes

Array = np.ndarray[Any, Any]
_FACTOR_PARTS = ("cholesky", "eigenvalues", "eigenvectors")


def check_servable(kfn: KernelFn, field: str) -> None:
    """InvalidRequest for a network a model cannot be served of: one with Aggregate layers
    (its per-example graphs would have to be stored with the model and paired with every
    test input's)."""
    if kfn.uses_patterns:
        raise InvalidRequest(
            field,
            "names a network with Aggregate layers; models of networks that read per-example "
            "graphs are not served: compute its kernels (ComputeKernel, StreamKernel) and "
            "use ntkserve_engine.predict in process",
        )


def stored_bytes(settings: FitSettings) -> int:
    """What a model will take on disk: its data, kernels and one factor."""
    n = settings.x_shape[0]
    kernels = 8 * n * n * (len(settings.kept) + 1)
    return settings.input_bytes() + kernels


class Limits(Protocol):
    max_entries: int
    max_response_bytes: int


def check_prediction_size(
    query: PredictQuery, record: ms.ModelRecord, get: str, limits: Limits
) -> None:
    """OverLimit, before anything is computed, for a prediction whose test-train kernels or
    full covariance pass the unary entry limit, or whose response the largest message."""
    n_train = record.x_train_shape[0]
    n_test = n_train if query.x_test is None else len(query.x_test)
    times = 1 if query.t is None else len(query.t)
    names, _ = kernels_needed(get, query.covariance)
    if query.x_test is not None:
        check_entries((n_test, n_train), names, limits.max_entries, "the test-train kernels")
    cov = {None: 0, "marginal": n_test, "full": n_test * n_test}[query.covariance] * times
    check_entries((cov,), ("nngp",), limits.max_entries, "the covariance")
    outputs = int(np.prod(record.y_train_shape[1:]))
    payload = 8 * (times * n_test * outputs + cov)
    check_response_bytes(payload, limits.max_response_bytes, "the prediction")


BLOCK_KERNEL_BYTES = 256 << 20  # a streamed prediction's test x train kernels per block
BLOCK_MESSAGE_BYTES = 1 << 20  # and its answer's tensors, well under gRPC's 4 MiB default


def block_rows(record: ms.ModelRecord, query: PredictQuery, get: str, asked: int) -> int:
    """Test rows per block of a streamed prediction: as asked, else as many as keep the
    block's test x train kernels within BLOCK_KERNEL_BYTES and its answer within
    BLOCK_MESSAGE_BYTES (at least one row)."""
    if asked:
        return asked
    names, _ = kernels_needed(get, query.covariance)
    per_row_kernels = 8 * record.x_train_shape[0] * len(names)
    times = 1 if query.t is None else len(query.t)
    outputs = int(np.prod(record.y_train_shape[1:]))
    per_row_answer = 8 * times * (outputs + 1)
    return max(1, min(BLOCK_KERNEL_BYTES // per_row_kernels, BLOCK_MESSAGE_BYTES // per_row_answer))


def solve_message(f: Factorization) -> ms.Solve:
    return ms.Solve(method=f.method, jitter=f.jitter, condition=f.condition)


def factorize_into(
    staged: Path, settings: FitSettings, y: Array
) -> tuple[dict[str, ms.Solve], float]:
    """Factorizes the model's regularized kernel (read from its staged file, mapped: its
    pages are the page cache's, and the factor overwrites the one regularized copy), writes
    the factor beside it, and returns how it was solved and log p(y_train) under the model's
    GP (blocking)."""
    k = np.load(staged / f"{settings.get}.npy", mmap_mode="r")

    def remake() -> Array:
        return regularized(k, settings.diag_reg, settings.absolute)

    factorization = factorize(remake(), remake)
    for part in _FACTOR_PARTS:
        value = getattr(factorization, part)
        if value is not None:
            np.save(staged / f"{settings.get}_{part}.npy", value)
    value, _ = log_likelihood(factorization, Targets(y).matrix)
    return {settings.get: solve_message(factorization)}, value


@dataclasses.dataclass
class Loaded:
    predictor: MSEEnsemble
    x_train: Array
    nbytes: int


def _load(stored: StoredModel) -> Loaded:
    """The engine's predictor over a stored model (its kernels and factorization as stored,
    memory-mapped), its training inputs, and what it is counted as in memory."""
    record, arrays = stored.record, stored.arrays()
    get = kinds.NAME_OF[record.get]
    solve = record.solves[get]
    parts = {p: arrays.get(f"{get}_{p}") for p in _FACTOR_PARTS}
    factorization = Factorization(solve.method, solve.jitter, solve.condition, **parts)
    kept = {name: arrays[name] for name in kinds.NAMES if name in arrays}
    predictor = MSEEnsemble(
        None,
        None,
        arrays["y_train"],
        record.learning_rate,
        record.diag_reg,
        record.diag_reg_absolute_scale,
        (-1,),
        {},
        train=kept,
        factorizations={get: factorization},
    )
    n = record.x_train_shape[0]
    return Loaded(predictor, arrays["x_train"], 2 * 8 * n * n)


class Predictors:
    """Loaded models by id, least recently used dropped past `budget_bytes` (what a model
    holds in memory: its factorization, and its training kernel once regularized for a
    finite-time eigenbasis, counted as twice its kernel's bytes)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._loaded: collections.OrderedDict[str, Loaded] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, stored: StoredModel) -> Loaded:
        model_id = stored.record.model_id
        with self._lock:
            found = self._loaded.get(model_id)
            if found is not None:
                self._loaded.move_to_end(model_id)
                return found
        loaded = _load(stored)
        with self._lock:
            self._loaded[model_id] = loaded
            while len(self._loaded) > 1 and self._used() > self.budget_bytes:
                self._loaded.popitem(last=False)
        return loaded

    def _used(self) -> int:
        return sum(loaded.nbytes for loaded in self._loaded.values())

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._loaded.pop(model_id, None)


def kernels_needed(get: str, covariance: str | None) -> tuple[tuple[str, ...], str]:
    """(the test-train kernels, the test prior) a posterior needs: the NTK-GP's prior is the
    NTK, every other's the NNGP; "ntk" with a covariance needs both kernels."""
    if get == "ntkgp":
        return ("ntk",), "ntk"
    return needed_kernels((get,), covariance), "nngp"


def answer(
    loaded: Loaded,
    query: PredictQuery,
    get: str,
    k_td: dict[str, Array] | None,
    k_tt: dict[str, Array] | None,
) -> tuple[Any, ms.Solve]:
    """The prediction (a mean, or `Gaussian(mean, covariance)`) and how the training kernel
    used was solved (blocking)."""
    predictor = loaded.predictor
    if get == "ntkgp":
        inference = predictor.at_infinity(kinds.NAMES)
        prior = None if k_tt is None else k_tt["ntk"]
        out = inference.predict("ntkgp", k_td, prior, query.covariance)
        return out, solve_message(inference.factorization("ntk"))
    out = predictor.predict_kernels(query.t, get, k_td, k_tt, query.covariance)
    if query.t is None:
        kept = needed_kernels((get,), query.covariance)
        return out, solve_message(predictor.at_infinity(kept).factorization(get))
    values = predictor.eigenbasis(get).values
    smallest = float(values[0])
    condition = float(values[-1]) / smallest if smallest > 0 else float("inf")
    return out, ms.Solve(method="eigh", jitter=0.0, condition=condition)
