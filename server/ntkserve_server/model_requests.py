"""Decoding and validating ModelService requests, before any compute: ids, kinds, settings,
times, shapes against a model. Problems raise `InvalidRequest` naming the field; requests
over a configured limit `OverLimit`.

A model's id is content addressed: a hash of its tenant, architecture, settings and the
bytes of its data, so fitting the same thing twice gives the same model (and another
tenant's identical fit another id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ntkserve import kinds, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve_engine.kernels.compile import batch_shape

from ntkserve_server.requests import InvalidRequest, OverLimit, check_elements, tensor_field
from ntkserve_server.requests import require_id as require_architecture_id

Array = np.ndarray[Any, Any]
MODEL_ID_PREFIX = "model-"
MODEL_ID_DIGITS = 32
MODEL_ID_FORM = f"{MODEL_ID_PREFIX!r} and {MODEL_ID_DIGITS} lowercase hex digits"
POSTERIORS = {ms.POSTERIOR_NNGP: "nngp", ms.POSTERIOR_NTK: "ntk", ms.POSTERIOR_NTKGP: "ntkgp"}
POSTERIOR_CODES = {name: code for code, name in POSTERIORS.items()}
COVARIANCES = {
    ms.COVARIANCE_UNSPECIFIED: None,
    ms.COVARIANCE_MARGINAL: "marginal",
    ms.COVARIANCE_FULL: "full",
}
# The kernels a model of each kind keeps: an NTK model's covariance needs the NNGP too.
KEPT = {"nngp": ("nngp",), "ntk": ("nngp", "ntk")}


def require_model_id(model_id: str, field: str = "model_id") -> str:
    digits = model_id[len(MODEL_ID_PREFIX) :]
    if not model_id:
        raise InvalidRequest(field, "is required")
    well_formed = len(digits) == MODEL_ID_DIGITS and set(digits) <= set("0123456789abcdef")
    if not model_id.startswith(MODEL_ID_PREFIX) or not well_formed:
        raise InvalidRequest(
            field,
            f"must be a model id, {MODEL_ID_FORM} (as Fit returns), got "
            f"{len(model_id):,} characters of another form",
        )
    return model_id


def _diag_reg(value: float, field: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(field, f"must be finite and >= 0, got {value}")
    return float(value)


def _targets_shape(shape: Sequence[int], rows: int, field: str) -> tuple[int, ...]:
    """(N,) or (N, outputs), N the inputs' rows, every size >= 1."""
    checked = tuple(int(s) for s in shape)
    if len(checked) not in (1, 2) or min(checked, default=0) < 1:
        raise InvalidRequest(field, f"must be (N,) or (N, outputs), got {list(checked)}")
    if checked[0] != rows:
        raise InvalidRequest(field, f"has {checked[0]} rows, the training inputs {rows}")
    return checked


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """A checked FitHeader."""

    architecture_id: str
    get: str  # "nngp" or "ntk"
    dtype: np.dtype[Any]
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    diag_reg: float
    absolute: bool
    learning_rate: float
    tile_size: int

    @property
    def kept(self) -> tuple[str, ...]:
        return KEPT[self.get]

    def input_bytes(self) -> int:
        return math.prod(self.x_shape) * self.dtype.itemsize + 8 * math.prod(self.y_shape)

    def model_id(self, tenant: str, x: Array, y: Array) -> str:
        digest = hashlib.sha256()
        settings: tuple[Any, ...] = (tenant, self.architecture_id, self.get, self.dtype.str)
        settings += (self.x_shape, self.y_shape, self.diag_reg, self.absolute, self.learning_rate)
        digest.update(repr(settings).encode() + b"\0")
        digest.update(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y).tobytes())
        return MODEL_ID_PREFIX + digest.hexdigest()[:MODEL_ID_DIGITS]

    def record(self, model_id: str) -> ms.ModelRecord:
        return ms.ModelRecord(
            model_id=model_id,
            architecture_id=self.architecture_id,
            get=kinds.CODES[self.get],
            dtype=tensor.dtype_code(self.dtype),  # type: ignore[arg-type]
            x_train_shape=self.x_shape,
            y_train_shape=self.y_shape,
            diag_reg=self.diag_reg,
            diag_reg_absolute_scale=self.absolute,
            learning_rate=self.learning_rate,
        )


def fit_header(header: ms.FitHeader, max_input_bytes: int) -> FitSettings:
    """The checked settings of a Fit call; OverLimit when its inputs pass `max_input_bytes`."""
    try:
        dtype = tensor.wire_dtype(header.dtype, "header.dtype")
    except tensor.TensorError as e:
        raise InvalidRequest.of(e.violations) from None
    get = "ntk" if header.get == ks.KERNEL_KIND_UNSPECIFIED else kinds.NAME_OF.get(header.get)
    if get is None:
        raise InvalidRequest("header.get", f"must be NNGP or NTK, got {header.get}")
    x_shape = batch_shape(header.x_train_shape, "header.x_train_shape")  # InputError
    rate = header.learning_rate if header.HasField("learning_rate") else 1.0
    if not math.isfinite(rate) or rate <= 0:
        raise InvalidRequest("header.learning_rate", f"must be finite and > 0, got {rate}")
    if header.tile_size < 0:
        raise InvalidRequest("header.tile_size", f"must be >= 0 (0: auto), got {header.tile_size}")
    settings = FitSettings(
        architecture_id=require_architecture_id(header.architecture_id, "header.architecture_id"),
        get=get,
        dtype=dtype,
        x_shape=x_shape,
        y_shape=_targets_shape(header.y_train_shape, x_shape[0], "header.y_train_shape"),
        diag_reg=_diag_reg(header.diag_reg, "header.diag_reg"),
        absolute=header.diag_reg_absolute_scale,
        learning_rate=float(rate),
        tile_size=int(header.tile_size),
    )
    if settings.input_bytes() > max_input_bytes:
        raise OverLimit(
            "",
            f"the training data hold {settings.input_bytes()} bytes, over this server's limit "
            f"of {max_input_bytes} bytes per streamed call (--max-stream-input-mb)",
        )
    return settings


@dataclasses.dataclass(frozen=True)
class PredictQuery:
    """A checked PredictRequest (not yet against its model: `against`)."""

    model_id: str
    x_test: Array | None
    t: tuple[float, ...] | None  # None: infinity
    get: str | None  # None: the model's
    covariance: str | None

    def against(self, record: ms.ModelRecord) -> str:
        """The posterior to answer, checked against the model it asks: InvalidRequest for
        test inputs of another feature shape or dtype, or a posterior it cannot give."""
        model_get = kinds.NAME_OF[record.get]
        get = self.get or model_get
        if get != "nngp" and model_get != "ntk":
            raise InvalidRequest(
                "get", f"{get.upper()} needs a model fitted with get NTK; this one is NNGP"
            )
        if get == "ntkgp" and self.t is not None:
            raise InvalidRequest("t", "NTKGP is a posterior at t = infinity: leave t empty")
        if self.x_test is not None:
            check_test_inputs(self.x_test.shape, self.x_test.dtype, record, "x_test")
        return get


def check_test_inputs(
    shape: Sequence[int], dtype: np.dtype[Any], record: ms.ModelRecord, field: str
) -> None:
    """InvalidRequest for test inputs of another feature shape or dtype than the model's
    (`field` names them: "x_test", or a stream header's)."""
    features = tuple(record.x_train_shape[1:])
    if tuple(shape[1:]) != features:
        raise InvalidRequest(
            f"{field}.shape",
            f"must be (N_test, *{list(features)}) as the model's training inputs, "
            f"got {list(shape)}",
        )
    want = tensor.wire_dtype(record.dtype)
    if dtype != want:
        raise InvalidRequest(f"{field}.dtype", f"must be the model's {want}, got {dtype}")


def _times(values: Sequence[float], field: str = "t") -> tuple[float, ...] | None:
    if not values:
        return None
    for i, t in enumerate(values):
        if math.isnan(t) or t < 0:
            raise InvalidRequest(f"{field}[{i}]", f"must be >= 0 (+inf allowed), got {t}")
    return tuple(float(t) for t in values)


def predict_request(request: ms.PredictRequest, max_elements: int) -> PredictQuery:
    check_elements(request, ("x_test",), max_elements)
    x_test = tensor_field(request, "x_test")
    if x_test is not None and (x_test.ndim < 2 or len(x_test) == 0):
        raise InvalidRequest("x_test.shape", f"must be (N_test, *features), got {x_test.shape}")
    return dataclasses.replace(_query(request, ""), x_test=x_test)


def _query(request: ms.PredictRequest | ms.PredictStreamHeader, prefix: str) -> PredictQuery:
    """What a Predict request or a PredictStream header asks for, but its inputs."""
    if request.get not in (ms.POSTERIOR_UNSPECIFIED, *POSTERIORS):
        raise InvalidRequest(f"{prefix}get", f"is not a Posterior: {request.get}")
    if request.covariance not in COVARIANCES:
        raise InvalidRequest(f"{prefix}covariance", f"is not a Covariance: {request.covariance}")
    return PredictQuery(
        model_id=require_model_id(request.model_id, f"{prefix}model_id"),
        x_test=None,
        t=_times(request.t, f"{prefix}t"),
        get=POSTERIORS.get(request.get),
        covariance=COVARIANCES[request.covariance],
    )


@dataclasses.dataclass(frozen=True)
class StreamedPredict:
    """A checked PredictStream header: the query (its x_test to come), the inputs' shape
    and dtype, and the rows per block asked for (0: the server's choice)."""

    query: PredictQuery
    x_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    block_rows: int

    @property
    def input_bytes(self) -> int:
        return math.prod(self.x_shape) * self.dtype.itemsize


def predict_stream_header(header: ms.PredictStreamHeader, max_input_bytes: int) -> StreamedPredict:
    query = _query(header, "header.")
    if query.covariance == "full":
        raise InvalidRequest(
            "header.covariance",
            "FULL couples every pair of test rows and is not streamed: ask for MARGINAL, or "
            "call Predict with fewer test points",
        )
    try:
        dtype = tensor.wire_dtype(header.dtype, "header.dtype")
    except tensor.TensorError as e:
        raise InvalidRequest.of(e.violations) from None
    if header.block_rows < 0:
        raise InvalidRequest("header.block_rows", f"must be >= 0, got {header.block_rows}")
    checked = StreamedPredict(
        query,
        batch_shape(header.x_test_shape, "header.x_test_shape"),
        dtype,
        int(header.block_rows),
    )
    if checked.input_bytes > max_input_bytes:
        raise OverLimit(
            "",
            f"the test inputs hold {checked.input_bytes} bytes, over this server's limit of "
            f"{max_input_bytes} bytes per streamed call (--max-stream-input-mb)",
        )
    return checked


@dataclasses.dataclass(frozen=True)
class LikelihoodQuery:
    """A checked MarginalLikelihood (or Tune) request's data and GP."""

    architecture_id: str
    x: Array
    y: Array
    get: str  # "nngp" or "ntkgp"
    diag_reg: float
    absolute: bool


def likelihood_data(
    request: ms.MarginalLikelihoodRequest | ms.TuneRequest, max_elements: int
) -> LikelihoodQuery:
    check_elements(request, ("x_train", "y_train"), max_elements)
    x = tensor_field(request, "x_train")
    y = tensor_field(request, "y_train")
    if x is None or y is None:
        raise InvalidRequest("x_train" if x is None else "y_train", "is required")
    if x.ndim < 2 or len(x) == 0:
        raise InvalidRequest("x_train.shape", f"must be (N, *features), got {list(x.shape)}")
    _targets_shape(y.shape, len(x), "y_train.shape")
    get = POSTERIORS.get(request.get, "nngp")
    if get not in ("nngp", "ntkgp"):
        raise InvalidRequest("get", f"must be NNGP or NTKGP (a GP's likelihood), got {get.upper()}")
    return LikelihoodQuery(
        architecture_id=require_architecture_id(request.architecture_id),
        x=x,
        y=np.asarray(y, np.float64),
        get=get,
        diag_reg=_diag_reg(request.diag_reg, "diag_reg"),
        absolute=request.diag_reg_absolute_scale,
    )
