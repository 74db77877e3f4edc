"""`Client`'s methods for served models and likelihoods (ModelService, on its first
target): `fit`, `model`, `models`, `delete_model`, `gp_inference`, `marginal_likelihood`,
`tune`. `Client` inherits them; what they return is `models.py`'s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ntkserve import kinds
from ntkserve.endpoints import ArchLike, Endpoint
from ntkserve.models import (
    POSTERIORS,
    Likelihood,
    Model,
    ModelInfo,
    Tuned,
    choice,
    data_fields,
    fit,
    likelihood,
    model_info,
    tuned,
)
from ntkserve.v1 import model_service_pb2 as ms


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
            "get": choice(get, kinds.CODES, "get"),
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
        kernel = "nngp" if choice(get, POSTERIORS, "get") == ms.POSTERIOR_NNGP else "ntk"
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
                get=choice(get, POSTERIORS, "get"),
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
                get=choice(get, POSTERIORS, "get"),
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
