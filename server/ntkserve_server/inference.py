"""The KServe v2 / Open Inference Protocol (`inference.GRPCInferenceService`) on ntkserve's
port, so stock inference clients (tritonclient[grpc], KServe tooling) can ask for kernels.

The mapping (also in proto/inference/grpc_predict_v2.proto and the README):
- every architecture the caller's tenant registered is a model, named by its architecture
  id, with the one version "1" (an empty version means it too);
- ModelInfer is a ComputeKernel: inputs X1 (required), X2 (optional; absent: x2 = x1),
  PATTERN1/PATTERN2 (Aggregate layers), FP32 or FP64, batch first, as raw little-endian
  bytes (`raw_input_contents`) or typed `contents`; outputs NNGP and NTK, (N1, N2,
  *positions left), in the inputs' datatype, always as raw bytes; no outputs requested means
  all of them;
- request parameter "mask_constant" (double or integer) is ComputeKernelRequest's.

It is KernelService's work behind another front: the same call boundary (request ids,
status codes, log line, metrics), admission slots, tenants and limits. Field paths in errors
are the protocol's (`inputs[X1].shape`, `parameters[mask_constant]`, `model_name`).
"""

from __future__ import annotations

from typing import Any

import grpc
from ntkserve import kinds
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import tensor_pb2
from ntkserve_engine.kernels import EngineError

from ntkserve_server import inference_models, model_requests, requests, wire
from ntkserve_server.admission import Admission
from ntkserve_server.calls import Boundary, CallObserver, rpc
from ntkserve_server.inference_tensors import (
    DATATYPE_OF,
    IGNORED_PARAMETERS,
    PLATFORM,
    VERSION,
    check_no_parameters,
    check_version,
    input_tensor,
    parameter_number,
)
from ntkserve_server.kserve_v2 import grpc_predict_v2_pb2 as pb
from ntkserve_server.model_service import ModelService
from ntkserve_server.registry import UnknownArchitecture
from ntkserve_server.service import KernelService

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# Protocol input name -> ComputeKernelRequest field.
INPUTS = {"X1": "x1", "X2": "x2", "PATTERN1": "pattern1", "PATTERN2": "pattern2"}
# Protocol output name -> KernelKind: "NNGP", "NTK", from the one table of kinds.
OUTPUTS = {kinds.output_name(name): code for name, code in kinds.CODES.items()}
PARAMETERS = ("mask_constant",)
# ComputeKernelRequest field -> the protocol's path, for errors raised by the kernel work.
FIELD_PATHS = {
    **{field: f"inputs[{name}]" for name, field in INPUTS.items()},
    "architecture_id": "model_name",
    "mask_constant": "parameters[mask_constant]",
}


def _protocol_path(field: str) -> str:
    """A ComputeKernelRequest field path in the protocol's terms ("" stays: the request)."""
    head, dot, rest = field.partition(".")
    if head in INPUTS.values() and rest == "dtype":
        rest = "datatype"
    return FIELD_PATHS.get(head, head) + dot + rest


def kernel_request(request: pb.ModelInferRequest) -> ks.ComputeKernelRequest:
    """The ComputeKernelRequest a ModelInferRequest asks for (InvalidRequest if none)."""
    fields: dict[str, Any] = {}
    for index, tensor in enumerate(request.inputs):
        field, encoded = input_tensor(request, index, tensor, INPUTS)
        if field in fields:
            raise requests.InvalidRequest(f"inputs[{index}].name", f"{tensor.name} given twice")
        fields[field] = encoded
    if "x1" not in fields:
        raise requests.InvalidRequest("inputs", "X1 is required")
    asked = []
    for index, output in enumerate(request.outputs):
        if output.name not in OUTPUTS:
            raise requests.InvalidRequest(
                f"outputs[{index}].name", f"{output.name!r} is not one of {', '.join(OUTPUTS)}"
            )
        if OUTPUTS[output.name] in asked:
            raise requests.InvalidRequest(f"outputs[{index}].name", f"{output.name} asked twice")
        check_no_parameters(output.parameters, f"outputs[{output.name}]")
        asked.append(OUTPUTS[output.name])
    for name, value in request.parameters.items():
        if name in IGNORED_PARAMETERS:
            continue
        if name not in PARAMETERS:
            raise requests.InvalidRequest(
                f"parameters[{name}]",
                f"is not a parameter of ntkserve; known: {', '.join(PARAMETERS)}",
            )
        fields[name] = parameter_number(name, value)
    return ks.ComputeKernelRequest(
        architecture_id=request.model_name,
        get=asked or list(OUTPUTS.values()),
        **fields,
    )


def tensor_metadata(name: str, shape: list[int]) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=name, datatype="FP32", shape=shape)


class InferenceService:
    """The inference protocol's six methods over a KernelService (architectures as models)
    and a ModelService (fitted models as models: `inference_models`)."""

    def __init__(
        self,
        kernels: KernelService,
        models: ModelService,
        *,
        admission: Admission,
        server_version: str,
        observer: CallObserver | None = None,
    ) -> None:
        self._kernels = kernels
        self._models = models
        self._server_version = server_version
        # ModelInfer's slots come from KernelService's pool: the same `admission`.
        self.boundary = Boundary(admission, observer)

    @rpc()
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc()
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready whenever it answers: the service is added once the device is up, and a
        draining server refuses new calls (UNAVAILABLE) instead of answering not ready."""
        return pb.ServerReadyResponse(ready=True)

    @rpc()
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=PLATFORM, version=self._server_version)

    @rpc()
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Ready: registered (fitted) by this tenant (an unknown model is not ready, not an
        error)."""
        check_version(request.version, "version")
        if inference_models.is_model(request.name):
            ready = await self._models.holds(request.name)
        else:
            ready = bool(request.name) and await self._kernels.holds(request.name)
        return pb.ModelReadyResponse(ready=ready)

    @rpc()
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """X1 and X2 are (N, *features), the outputs (N1, N2, *positions left): their ranks
        depend on the network, so only the first axis is declared; FP64 is accepted as well
        as the FP32 declared."""
        check_version(request.version, "version")
        if inference_models.is_model(request.name):
            name = model_requests.require_model_id(request.name, "name")
            return inference_models.metadata(await self._models.record(name))
        name = requests.require_id(request.name, "name")
        if not await self._kernels.holds(name):
            raise UnknownArchitecture(name, "; register it with KernelService first")
        return pb.ModelMetadataResponse(
            name=name,
            versions=[VERSION],
            platform=PLATFORM,
            inputs=[tensor_metadata("X1", [-1]), tensor_metadata("X2", [-1])],
            outputs=[tensor_metadata(n, [-1]) for n in OUTPUTS],
        )

    @rpc(admitted=True)
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        check_version(request.model_version, "model_version")
        if inference_models.is_model(request.model_name):
            return await self._model_infer(request)
        try:
            computed = await self._kernels.compute_kernel(kernel_request(request))
        except (EngineError, requests.InvalidRequest, requests.OverLimit) as e:
            raise e.renamed(_protocol_path) from e  # x1.shape -> inputs[X1].shape
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=VERSION, id=request.id
        )
        for name, kind in OUTPUTS.items():
            field = kinds.NAME_OF[kind]
            if not computed.HasField(field):
                continue
            value: tensor_pb2.Tensor = getattr(computed, field)
            response.outputs.add(name=name, datatype=DATATYPE_OF[value.dtype], shape=value.shape)
            response.raw_output_contents.append(value.data)
        return response

    async def _model_infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """ModelInfer on a fitted model: a Predict (errors in the protocol's field paths)."""
        try:
            predicted = await self._models.predict(inference_models.predict_request(request))
        except (EngineError, requests.InvalidRequest, requests.OverLimit) as e:
            raise e.renamed(inference_models.protocol_path) from e
        return inference_models.infer_response(request, predicted)


def add_to_server(servicer: InferenceService, server: grpc.aio.Server) -> None:
    """Binds the six methods, with decoding that turns bad bytes into INVALID_ARGUMENT."""
    wire.bind(SERVICE, pb, servicer, server)
