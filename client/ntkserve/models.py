"""Served models from the client (ModelService): fit a model once, predict many times; the
log marginal likelihood and hyper-parameter tuning. The training kernel and its
factorization stay on the server; only inputs and predictions travel.

`Client.fit` returns a `Model`; `Model.predict` answers what neural-tangents'
`predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, ...)(t, x_test, get,
compute_cov)` answers, in float64: the mean, or `Gaussian(mean, covariance)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import grpc
import numpy as np

from ntkserve import errors, kinds, progress, tensor
from ntkserve.endpoints import Endpoint
from ntkserve.streaming import input_chunks
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import model_service_pb2 as ms

Array = np.ndarray[Any, Any]
POSTERIORS = {"nngp": ms.POSTERIOR_NNGP, "ntk": ms.POSTERIOR_NTK, "ntkgp": ms.POSTERIOR_NTKGP}
COVARIANCES = {
    None: ms.COVARIANCE_UNSPECIFIED,
    "marginal": ms.COVARIANCE_MARGINAL,
    "full": ms.COVARIANCE_FULL,
}
# Model.predict streams when N_test x N_train passes this (the server's default unary limit
# is 2**26 entries for every kernel a prediction needs): 128 MiB of float64 per kernel.
STREAM_ENTRIES = 1 << 24


class Gaussian(NamedTuple):
    """A prediction's mean and covariance (neural-tangents' `predict.Gaussian`)."""

    mean: Any
    covariance: Any


@dataclasses.dataclass(frozen=True)
class Solve:
    """How a training kernel was solved: "cholesky", "cholesky+jitter", "eigh-clipped" (or
    "eigh" at a finite time), the jitter added beyond diag_reg, the condition estimate."""

    method: str
    jitter: float
    condition: float


def _solve(message: ms.Solve) -> Solve:
    return Solve(message.method, message.jitter, message.condition)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model_id: str
    architecture_id: str
    get: str
    dtype: str
    x_train_shape: tuple[int, ...]
    y_train_shape: tuple[int, ...]
    diag_reg: float
    diag_reg_absolute_scale: bool
    learning_rate: float
    solves: dict[str, Solve]
    log_marginal_likelihood: float
    create_time: float
    stored_bytes: int


def model_info(record: ms.ModelRecord) -> ModelInfo:
    return ModelInfo(
        model_id=record.model_id,
        architecture_id=record.architecture_id,
        get=kinds.NAME_OF[record.get],
        dtype=tensor.wire_dtype(record.dtype).name,
        x_train_shape=tuple(record.x_train_shape),
        y_train_shape=tuple(record.y_train_shape),
        diag_reg=record.diag_reg,
        diag_reg_absolute_scale=record.diag_reg_absolute_scale,
        learning_rate=record.learning_rate,
        solves={name: _solve(s) for name, s in record.solves.items()},
        log_marginal_likelihood=record.log_marginal_likelihood,
        create_time=record.create_time,
        stored_bytes=record.stored_bytes,
    )


def choice(value: Any, allowed: Mapping[Any, Any], parameter: str) -> Any:
    if value not in allowed:
        raise ValueError(f"{parameter}: must be one of {list(allowed)}, got {value!r}")
    return allowed[value]


class Model:
    """A model fitted on the server (`Client.fit`): `predict` as often as needed; each call
    reuses the server's factorization of the training kernel."""

    def __init__(self, endpoint: Endpoint, info: ModelInfo) -> None:
        self._endpoint = endpoint
        self.info = info

    @property
    def id(self) -> str:
        return self.info.model_id

    def __repr__(self) -> str:
        return f"Model({self.id!r}, get={self.info.get!r}, n_train={self.info.x_train_shape[0]})"

    def predict(
        self,
        x_test: Any = None,
        t: float | Sequence[float] | None = None,
        get: str | None = None,
        covariance: str | None = None,
        stream: bool | None = None,
        block_rows: int | None = None,
    ) -> Any:
        """The mean prediction on x_test (None: the training set) at time t (None: t = inf;
        a sequence adds a leading time axis) for get "nngp", "ntk" or "ntkgp" (None: the
        model's); with covariance "marginal" (each test point's variance) or "full" (every
        pair's), `Gaussian(mean, covariance)`. `stream`: send x_test and receive the answer
        in row blocks (PredictStream: any number of test points, not with "full"); None
        streams when the test x train kernels would pass STREAM_ENTRIES; `block_rows`: test
        rows per streamed block (None: the server's choice)."""
        fields = {
            "model_id": self.id,
            "t": _times(t),
            "get": ms.POSTERIOR_UNSPECIFIED if get is None else choice(get, POSTERIORS, "get"),
            "covariance": choice(covariance, COVARIANCES, "covariance"),
        }
        if stream is None:
            entries = 0 if x_test is None else len(x_test) * self.info.x_train_shape[0]
            stream = covariance != "full" and entries > STREAM_ENTRIES
        if stream:
            if x_test is None:
                raise ValueError("x_test: a streamed prediction needs test inputs")
            mean, cov = self._streamed(np.ascontiguousarray(x_test), fields, block_rows or 0)
        else:
            request = ms.PredictRequest(**fields)
            if x_test is not None:
                request.x_test.CopyFrom(tensor.encode(x_test, "x_test"))
            response = self._endpoint.call(self._endpoint.models.Predict, request)
            mean = tensor.decode(response.mean, "mean")
            cov = None if covariance is None else tensor.decode(response.covariance, "cov")
        if cov is None:
            return _scalar_time(mean, t)
        return Gaussian(_scalar_time(mean, t), _scalar_time(cov, t))

    def _streamed(
        self, x: Array, fields: dict[str, Any], block_rows: int
    ) -> tuple[Array, Array | None]:
        """PredictStream: the header and x's chunks out, the row blocks in, joined on the
        rows axis (after the time axis, when there is one)."""
        tensor.encode(x[:1], "x_test")  # the dtype check, on one row
        header = ms.PredictStreamHeader(
            dtype=tensor.dtype_code(x.dtype),  # type: ignore[arg-type]
            x_test_shape=x.shape,
            block_rows=block_rows,
            **fields,
        )

        def messages() -> Iterator[ms.PredictStreamRequest]:
            yield ms.PredictStreamRequest(header=header)
            for chunk in input_chunks(ks.INPUT_SLOT_X1, x):
                yield ms.PredictStreamRequest(chunk=chunk)

        endpoint = self._endpoint
        answers = endpoint.models.PredictStream(
            messages(), timeout=endpoint.timeout, metadata=endpoint.metadata
        )
        axis = 1 if fields["t"] else 0
        means, covs = [], []
        try:
            for block in answers:
                means.append(tensor.decode(block.mean, "mean"))
                if block.HasField("covariance"):
                    covs.append(tensor.decode(block.covariance, "covariance"))
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e
        mean = np.concatenate(means, axis)
        return mean, np.concatenate(covs, axis) if covs else None

    def delete(self) -> None:
        request = ms.DeleteModelRequest(model_id=self.id)
        self._endpoint.call(self._endpoint.models.DeleteModel, request)


def _times(t: float | Sequence[float] | None) -> list[float]:
    if t is None:
        return []
    values = np.atleast_1d(np.asarray(t, np.float64))
    if values.ndim != 1:
        raise ValueError(f"t: must be a time or a sequence of times, got shape {values.shape}")
    if np.any(np.isnan(values)) or np.any(values < 0):
        raise ValueError(f"t: times must be >= 0 (None for infinity), got {values}")
    return [float(v) for v in values]


def _scalar_time(values: Array, t: Any) -> Array:
    """A scalar t gives no leading time axis (neural-tangents' shapes)."""
    if t is not None and np.ndim(t) == 0:
        return np.asarray(values[0])
    return values


def _fit_messages(header: ms.FitHeader, x: Array, y: Array) -> Iterator[ms.FitRequest]:
    yield ms.FitRequest(header=header)
    for chunk in input_chunks(ks.INPUT_SLOT_X1, x):
        yield ms.FitRequest(chunk=chunk)
    for chunk in input_chunks(ks.INPUT_SLOT_Y_TRAIN, y):
        yield ms.FitRequest(chunk=chunk)


def fit(
    endpoint: Endpoint,
    architecture_id: str,
    x_train: Any,
    y_train: Any,
    settings: dict[str, Any],
    show: bool | None,
) -> Model:
    """One Fit call: header, then x_train's and y_train's chunks; progress until the record."""
    x = np.ascontiguousarray(x_train)
    tensor.encode(x[:1], "x_train")  # the dtype check, on one row
    y = np.ascontiguousarray(np.asarray(y_train, np.float64))
    header = ms.FitHeader(
        architecture_id=architecture_id,
        dtype=tensor.dtype_code(x.dtype),  # type: ignore[arg-type]
        x_train_shape=x.shape,
        y_train_shape=y.shape,
        **settings,
    )
    answers = endpoint.models.Fit(
        _fit_messages(header, x, y), timeout=endpoint.timeout, metadata=endpoint.metadata
    )
    bar: progress.TileProgress | None = None
    shown = 0
    try:
        for answer in answers:
            if answer.WhichOneof("payload") == "model":
                return Model(endpoint, model_info(answer.model))
            step = answer.progress
            if bar is None and step.tiles:
                bar = progress.TileProgress(step.tiles, show, "training kernel tiles")
            if bar is not None and step.tiles_done > shown:
                bar.done(step.tiles_done - shown)
                shown = step.tiles_done
    except grpc.RpcError as e:
        raise errors.from_rpc_error(e) from e
    finally:
        answers.cancel()  # a no-op once the call has ended
        if bar is not None:
            bar.close()
    raise errors.InternalError("Fit ended without its model")


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """log p(y_train), how the kernel was solved, and the gradients asked for."""

    value: float
    solve: Solve
    hyper_parameter_grads: dict[str, float]
    diag_reg_grad: float | None


def likelihood(response: ms.MarginalLikelihoodResponse) -> Likelihood:
    grad = response.diag_reg_grad if response.HasField("diag_reg_grad") else None
    return Likelihood(
        response.log_marginal_likelihood,
        _solve(response.solve),
        dict(response.hyper_parameter_grads),
        grad,
    )


@dataclasses.dataclass(frozen=True)
class Tuned:
    """The tuned values by path ("diag_reg" too, when tuned), log p there, the registered
    tuned architecture's id, and log p at each step."""

    values: dict[str, float]
    log_marginal_likelihood: float
    architecture_id: str
    trace: tuple[float, ...]
    solve: Solve


def tuned(response: ms.TuneResponse) -> Tuned:
    return Tuned(
        dict(response.values),
        response.log_marginal_likelihood,
        response.architecture_id,
        tuple(response.trace),
        _solve(response.solve),
    )


def data_fields(x_train: Any, y_train: Any) -> dict[str, Any]:
    return {
        "x_train": tensor.encode(x_train, "x_train"),
        "y_train": tensor.encode(np.asarray(y_train, np.float64), "y_train"),
    }
