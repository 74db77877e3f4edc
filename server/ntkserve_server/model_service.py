"""The ModelService servicer: fitted models (Fit, Predict, Get/List/DeleteModel) and the
marginal likelihood (MarginalLikelihood, Tune), on the KernelService's architectures,
compiled programs and tiles.

Each RPC decodes and validates its request (`model_requests`), resolves the caller's
architecture or model (NOT_FOUND for another tenant's), and runs its work on the worker
pool: kernels through `kernel_matrices` (tiles in engine processes), math through
`models` and `likelihoods` (the engine's). Status codes, request ids, admission slots and
log lines are the call boundary's (`calls.Boundary`), shared with KernelService.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from ntkserve import tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve.v1 import model_service_pb2_grpc

from ntkserve_server import (
    kernel_matrices,
    likelihoods,
    model_requests,
    models,
    requests,
    streaming,
)
from ntkserve_server.calls import Boundary, CallLog, caller_tenant, rpc, stream_rpc
from ntkserve_server.compute import Compiled
from ntkserve_server.kernel_matrices import KernelRequest
from ntkserve_server.model_requests import FitSettings, PredictQuery
from ntkserve_server.model_store import ModelStore
from ntkserve_server.models import Loaded, Predictors
from ntkserve_server.service import KernelService
from ntkserve_server.stream_inputs import header_of, receive_bytes

Array = np.ndarray[Any, Any]
PROGRESS_SECONDS = 0.5  # at most two progress messages a second while a kernel is computed


def _expired(context: grpc.aio.ServicerContext) -> Callable[[], bool]:
    def expired() -> bool:
        remaining = context.time_remaining()
        return remaining is not None and remaining <= 0

    return expired


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, kernels: KernelService, store: ModelStore, predictors: Predictors) -> None:
        self._kernels = kernels
        self._store = store
        self._predictors = predictors
        self.boundary: Boundary = kernels.boundary

    async def _assembled(
        self,
        compiled: Compiled,
        request: KernelRequest,
        inputs: tuple[Array, Array | None],
        expired: Callable[[], bool],
    ) -> dict[str, Array]:
        """Kernels of the network `compiled` computed in tiles into float64 arrays in memory."""
        streams = self._kernels.streams
        job = await self._kernels.run(kernel_matrices.plan, streams, compiled, request)
        out = kernel_matrices.in_memory(job, request.diagonal_only)
        async for _ in kernel_matrices.assemble(streams, job, inputs, out, expired):
            pass
        return {name: sink.array for name, sink in out.items()}

    @stream_rpc(admitted=True)
    async def Fit(
        self,
        messages: AsyncIterator[ms.FitRequest],
        context: grpc.aio.ServicerContext,
        call: CallLog,
    ) -> AsyncGenerator[ms.FitResponse, None]:
        tenant = caller_tenant()
        streams = self._kernels.streams
        first = await header_of(messages, streams.idle_seconds, "FitHeader")
        settings = model_requests.fit_header(first.header, streams.max_input_bytes)
        request = KernelRequest(
            settings.architecture_id,
            settings.x_shape,
            None,
            settings.dtype,
            settings.kept,
            settings.tile_size,
        )
        async with self.boundary.compute_slot(tenant):
            compiled = await self._kernels.run(
                self._kernels.compiled, tenant, request.architecture_id
            )
            models.check_servable(compiled.kfn, "header.architecture_id")
            job = await self._kernels.run(
                kernel_matrices.plan, streams, compiled, request, "header.architecture_id"
            )
        n = settings.x_shape[0]
        await self._kernels.run(self._store.check_room, models.stored_bytes(settings))
        x, y = await self._receive(settings, messages, call)
        model_id = settings.model_id(tenant, x, y)
        found = await self._kernels.run(self._store.find, tenant, model_id)
        if found is not None:
            yield ms.FitResponse(model=found.record)
            return
        with self._store.staging() as staged:
            np.save(staged / "x_train.npy", x)
            np.save(staged / "y_train.npy", y)
            async with self.boundary.compute_slot(tenant):
                async for progress in self._training_kernels(job, x, staged, context):
                    yield progress
                call.extra = {"tiles": job.count, "n": n}
                yield _progress("factorize", job.count, job.count)
                solves, logp = await self._kernels.run(models.factorize_into, staged, settings, y)
            record = settings.record(model_id)
            for name, solve in solves.items():
                record.solves[name].CopyFrom(solve)
            record.log_marginal_likelihood = logp
            yield _progress("store", job.count, job.count)
            record = await self._kernels.run(self._store.commit, tenant, model_id, record, staged)
        yield ms.FitResponse(model=record)

    async def _training_kernels(
        self, job: streaming.Job, x: Array, staged: Path, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ms.FitResponse]:
        """The training kernels written into the staging directory's files, with progress
        (at most every PROGRESS_SECONDS, and at the last tile)."""
        files = kernel_matrices.in_files(job, staged)
        last = 0.0
        try:
            async for done, count in kernel_matrices.assemble(
                self._kernels.streams, job, (x, None), files, _expired(context)
            ):
                if done == count or time.monotonic() - last > PROGRESS_SECONDS:
                    last = time.monotonic()
                    yield _progress("kernel", done, count)
        finally:
            kernel_matrices.close(files)

    async def _receive(
        self, settings: FitSettings, messages: AsyncIterator[Any], call: CallLog
    ) -> tuple[Array, Array]:
        """x_train and y_train from the chunks after the header, checked finite."""
        x_bytes = int(np.prod(settings.x_shape)) * settings.dtype.itemsize
        expected = {
            ks.INPUT_SLOT_X1: ("x_train", x_bytes),
            ks.INPUT_SLOT_Y_TRAIN: ("y_train", 8 * int(np.prod(settings.y_shape))),
        }
        received = await receive_bytes(expected, messages, call, self._kernels.streams.idle_seconds)
        x = np.frombuffer(received["x_train"], settings.dtype).reshape(settings.x_shape)
        y = np.frombuffer(received["y_train"], np.float64).reshape(settings.y_shape)
        for name, array in (("x_train", x), ("y_train", y)):
            await self._kernels.run(requests.check_finite, array, name)
        return x, y

    async def holds(self, model_id: str) -> bool:
        """Whether the caller's tenant has a model of this id."""
        found = await self._kernels.run(self._store.find, caller_tenant(), model_id)
        return found is not None

    async def record(self, model_id: str) -> ms.ModelRecord:
        """The caller's model's record (UnknownModel if it has none of that id)."""
        stored = await self._kernels.run(self._store.get, caller_tenant(), model_id)
        return stored.record

    @rpc(admitted=True)
    async def Predict(
        self, request: ms.PredictRequest, context: grpc.aio.ServicerContext
    ) -> ms.PredictResponse:
        return await self.predict(request, _expired(context))

    async def predict(
        self, request: ms.PredictRequest, expired: Callable[[], bool] = lambda: False
    ) -> ms.PredictResponse:
        """Predict's work, for the caller's tenant, inside a call boundary and an admission
        slot the caller holds (Predict's, or the inference protocol's ModelInfer's)."""
        tenant = caller_tenant()
        limits = self._kernels
        query = await limits.run(model_requests.predict_request, request, limits.max_elements)
        stored = await limits.run(self._store.get, tenant, query.model_id)
        get = query.against(stored.record)
        compiled = await limits.run(limits.compiled, tenant, stored.record.architecture_id)
        loaded = await limits.run(self._predictors.get, stored)
        models.check_prediction_size(query, stored.record, get, limits)
        k_td, k_tt = await self._test_kernels(compiled, loaded, query, get, expired)
        out, solve = await limits.run(models.answer, loaded, query, get, k_td, k_tt)
        return ms.PredictResponse(solve=solve, **_encoded(out, query.covariance))

    @stream_rpc(admitted=True)
    async def PredictStream(
        self,
        messages: AsyncIterator[ms.PredictStreamRequest],
        context: grpc.aio.ServicerContext,
        call: CallLog,
    ) -> AsyncGenerator[ms.PredictStreamResponse, None]:
        tenant, kernels = caller_tenant(), self._kernels
        first = await header_of(messages, kernels.streams.idle_seconds, "PredictStreamHeader")
        header = model_requests.predict_stream_header(first.header, kernels.streams.max_input_bytes)
        stored = await kernels.run(self._store.get, tenant, header.query.model_id)
        get = header.query.against(stored.record)
        model_requests.check_test_inputs(
            header.x_shape, header.dtype, stored.record, "header.x_test"
        )
        compiled = await kernels.run(kernels.compiled, tenant, stored.record.architecture_id)
        loaded = await kernels.run(self._predictors.get, stored)
        expected = {ks.INPUT_SLOT_X1: ("x_test", header.input_bytes)}
        received = await receive_bytes(expected, messages, call, kernels.streams.idle_seconds)
        x = np.frombuffer(received["x_test"], header.dtype).reshape(header.x_shape)
        await kernels.run(requests.check_finite, x, "x_test")
        rows = models.block_rows(stored.record, header.query, get, header.block_rows)
        call.extra = {"rows": len(x), "block_rows": rows}
        for start in range(0, len(x), rows):
            query = dataclasses.replace(header.query, x_test=x[start : start + rows])
            async with self.boundary.compute_slot(tenant):
                k_td, k_tt = await self._test_kernels(
                    compiled, loaded, query, get, _expired(context)
                )
                out, solve = await kernels.run(models.answer, loaded, query, get, k_td, k_tt)
            yield ms.PredictStreamResponse(
                row_start=start, solve=solve, **_encoded(out, query.covariance)
            )

    async def _test_kernels(
        self,
        compiled: Compiled,
        loaded: Loaded,
        query: PredictQuery,
        get: str,
        expired: Callable[[], bool],
    ) -> tuple[dict[str, Array] | None, dict[str, Array] | None]:
        """The test-train kernels and the test prior (its diagonal for marginal variances)
        a prediction needs; (None, None) on the training set."""
        x_test = query.x_test
        if x_test is None:
            return None, None
        td_names, prior = models.kernels_needed(get, query.covariance)
        arch = compiled.kfn.id
        train = loaded.x_train
        test_train = KernelRequest(arch, x_test.shape, train.shape, x_test.dtype, td_names)
        k_td = await self._assembled(compiled, test_train, (x_test, train), expired)
        if query.covariance is None:
            return k_td, None
        marginal = query.covariance == "marginal"
        test = KernelRequest(arch, x_test.shape, None, x_test.dtype, (prior,), 0, marginal)
        return k_td, await self._assembled(compiled, test, (x_test, None), expired)

    @rpc()
    async def GetModel(
        self, request: ms.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> ms.GetModelResponse:
        model_id = model_requests.require_model_id(request.model_id)
        stored = await self._kernels.run(self._store.get, caller_tenant(), model_id)
        return ms.GetModelResponse(record=stored.record)

    @rpc()
    async def ListModels(
        self, request: ms.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> ms.ListModelsResponse:
        records = await self._kernels.run(self._store.list, caller_tenant())
        return ms.ListModelsResponse(records=records)

    @rpc()
    async def DeleteModel(
        self, request: ms.DeleteModelRequest, context: grpc.aio.ServicerContext
    ) -> ms.DeleteModelResponse:
        model_id = model_requests.require_model_id(request.model_id)
        await self._kernels.run(self._store.delete, caller_tenant(), model_id)
        self._predictors.forget(model_id)
        return ms.DeleteModelResponse()

    @rpc(admitted=True)
    async def MarginalLikelihood(
        self, request: ms.MarginalLikelihoodRequest, context: grpc.aio.ServicerContext
    ) -> ms.MarginalLikelihoodResponse:
        return await likelihoods.marginal_likelihood(self._kernels, caller_tenant(), request)

    @rpc(admitted=True)
    async def Tune(
        self, request: ms.TuneRequest, context: grpc.aio.ServicerContext
    ) -> ms.TuneResponse:
        return await likelihoods.tune(self._kernels, caller_tenant(), request)


def _encoded(out: Any, covariance: str | None) -> dict[str, Any]:
    """A prediction (a mean, or a Gaussian) as the mean and covariance Tensor fields."""
    if covariance is None:
        return {"mean": tensor.encode(np.asarray(out), "mean")}
    return {
        "mean": tensor.encode(np.asarray(out.mean), "mean"),
        "covariance": tensor.encode(np.asarray(out.covariance), "covariance"),
    }


def _progress(phase: str, done: int, count: int) -> ms.FitResponse:
    return ms.FitResponse(progress=ms.FitProgress(phase=phase, tiles_done=done, tiles=count))
