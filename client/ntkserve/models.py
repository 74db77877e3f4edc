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
from ntkserve.endpoints import ArchLike, Endpoint
from ntkserve.streaming import input_chunks
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import model_service_pb2 as ms

Array = np.ndarray[Any, Any]
POSTERIORS = {"nngp": ms.POSTERIOR_NNGP, "ntk": ms.POSTERIOR_NTK, "ntkgp": ms.POSTERIOR_NTKGP}
COVARIANCES = {None: ms.COVARIANCE_UNSPECIFIED, "marginal": ms.COVARIANCE_MARGINAL}
COVARIANCES["full"] = ms.COVARIANCE_FULL


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


def _choice(value: Any, allowed: Mapping[Any, Any], parameter: str) -> Any:
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
    ) -> Any:
        """The mean prediction on x_test (None: the training set) at time t (None: t = inf;
        a sequence adds a leading time axis) for get "nngp", "ntk" or "ntkgp" (None: the
        model's); with covariance "marginal" (each test point's variance) or "full" (every
        pair's), `Gaussian(mean, covariance)`."""
        times = _times(t)
        request = ms.PredictRequest(
            model_id=self.id,
            t=times,
            get=ms.POSTERIOR_UNSPECIFIED if get is None else _choice(get, POSTERIORS, "get"),
            covariance=_choice(covariance, COVARIANCES, "covariance"),
        )
        if x_test is not None:
            request.x_test.CopyFrom(tensor.encode(x_test, "x_test"))
        response = self._endpoint.call(self._endpoint.models.Predict, request)
        mean = _scalar_time(tensor.decode(response.mean, "mean"), t)
        if covariance is None:
            return mean
        return Gaussian(mean, _scalar_time(tensor.decode(response.covariance, "covariance"), t))

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


class ModelMethods:
    """`Client`'s methods for served models and likelihoods (on its first target)."""

    _first: Endpoint

    def fit(
        self,
        arch: ArchLike,
        x_train: Any,
        y_train: Any,
        get: str = "ntk",
        diag_reg: float = 0.0,
        diag_reg_absolute_scale: bool = False,
        learning_rate: float = 1.0,
        tile: int | None = None,
        progress: bool | None = None,
    ) -> Model:
        """Fits a model on the server: its training kernel (get "nngp", or "ntk", which keeps
        the NNGP too for covariances), computed in tiles, regularized by diag_reg (relative to
        its mean diagonal unless diag_reg_absolute_scale) and factorized in float64, stored
        durably. y_train is (N,) or (N, outputs). Fitting the same data and settings again
        returns the same model at once. `progress`: a bar of the kernel's tiles (None: on a
        terminal)."""
        settings = {
            "get": _choice(get, kinds.CODES, "get"),
            "diag_reg": float(diag_reg),
            "diag_reg_absolute_scale": bool(diag_reg_absolute_scale),
            "learning_rate": float(learning_rate),
            "tile_size": int(tile or 0),
        }
        endpoint = self._first
        return endpoint.with_id(
            arch, lambda aid: fit(endpoint, aid, x_train, y_train, settings, progress)
        )

    def model(self, model_id: str) -> Model:
        """A model fitted before (by id), to predict with."""
        request = ms.GetModelRequest(model_id=model_id)
        record = self._first.call(self._first.models.GetModel, request).record
        return Model(self._first, model_info(record))

    def models(self) -> list[ModelInfo]:
        """Your models, oldest first."""
        response = self._first.call(self._first.models.ListModels, ms.ListModelsRequest())
        return [model_info(r) for r in response.records]

    def delete_model(self, model_id: str) -> None:
        self._first.call(self._first.models.DeleteModel, ms.DeleteModelRequest(model_id=model_id))

    def gp_inference(
        self,
        arch: ArchLike,
        x_train: Any,
        y_train: Any,
        x_test: Any = None,
        get: str = "nngp",
        diag_reg: float = 0.0,
        diag_reg_absolute_scale: bool = False,
        covariance: str | None = None,
    ) -> Any:
        """neural-tangents' `gp_inference` served: the posterior "nngp", "ntk" or "ntkgp" at
        t = inf on x_test, from a model fitted (or found) for these data."""
        kernel = "nngp" if _choice(get, POSTERIORS, "get") == ms.POSTERIOR_NNGP else "ntk"
        model = self.fit(arch, x_train, y_train, kernel, diag_reg, diag_reg_absolute_scale)
        return model.predict(x_test, None, get, covariance)

    def marginal_likelihood(
        self,
        arch: ArchLike,
        x_train: Any,
        y_train: Any,
        get: str = "nngp",
        diag_reg: float = 0.0,
        diag_reg_absolute_scale: bool = False,
        hyper_parameters: Sequence[str] = (),
        diag_reg_grad: bool = False,
    ) -> Likelihood:
        """log p(y_train) under the GP of `arch` on x_train (get "nngp" or "ntkgp"), with
        its gradient with respect to the `hyper_parameters` named (paths, or "*") and, with
        `diag_reg_grad`, to diag_reg."""
        fields = data_fields(x_train, y_train)
        endpoint = self._first

        def call(architecture_id: str) -> ms.MarginalLikelihoodResponse:
            request = ms.MarginalLikelihoodRequest(
                architecture_id=architecture_id,
                get=_choice(get, POSTERIORS, "get"),
                diag_reg=diag_reg,
                diag_reg_absolute_scale=diag_reg_absolute_scale,
                hyper_parameters=list(hyper_parameters),
                diag_reg_grad=diag_reg_grad,
                **fields,
            )
            response: ms.MarginalLikelihoodResponse = endpoint.call(
                endpoint.models.MarginalLikelihood, request
            )
            return response

        return likelihood(endpoint.with_id(arch, call))

    def tune(
        self,
        arch: ArchLike,
        x_train: Any,
        y_train: Any,
        parameters: Mapping[str, tuple[float, float]],
        get: str = "nngp",
        diag_reg: float = 0.0,
        diag_reg_absolute_scale: bool = False,
        steps: int = 100,
        step_size: float = 0.05,
    ) -> Tuned:
        """Maximizes the log marginal likelihood over `parameters` ({path or "diag_reg":
        (lower, upper)}, tuned in log space within the bounds) from the network's values
        (Adam, `steps` steps of `step_size`); the tuned network is registered (its id in
        the result)."""
        fields = data_fields(x_train, y_train)
        tuned_parameters = [
            ms.TunedParameter(path=path, lower=low, upper=high)
            for path, (low, high) in parameters.items()
        ]
        endpoint = self._first

        def call(architecture_id: str) -> ms.TuneResponse:
            request = ms.TuneRequest(
                architecture_id=architecture_id,
                get=_choice(get, POSTERIORS, "get"),
                diag_reg=diag_reg,
                diag_reg_absolute_scale=diag_reg_absolute_scale,
                parameters=tuned_parameters,
                steps=steps,
                step_size=step_size,
                **fields,
            )
            response: ms.TuneResponse = endpoint.call(endpoint.models.Tune, request)
            return response

        return tuned(endpoint.with_id(arch, call))
