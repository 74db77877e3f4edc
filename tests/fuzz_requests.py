"""Fuzz target over KernelService and ModelService requests: raw bytes, and valid requests
with fields mutated; and over the KServe v2 inference protocol's requests (built with
tritonclient's messages, which are the protocol's on the wire).

The property, for every input: the server answers with a status a client can act on (OK,
INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, FAILED_PRECONDITION for a fuzzed model whose
kernel cannot be factorized), never INTERNAL or UNKNOWN, and it stays up.
`tests/server/test_fuzz.py` drives these targets with hypothesis in CI; to fuzz for longer,
against a server of your own:

    python -m tests.fuzz_requests HOST:PORT [--seconds 600]

which feeds `RequestFuzzer.raw` with hypothesis' `fuzz_one_input` (atheris or any byte
fuzzer can call the same function).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from ntkserve import stax, tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc, model_service_pb2_grpc
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve_engine.kernels.canonical import every_layer
from tritonclient.grpc import service_pb2 as inference_pb2

SERVICE = ks.DESCRIPTOR.services_by_name["KernelService"]
MODEL_SERVICE = ms.DESCRIPTOR.services_by_name["ModelService"]
SERVICE_OF = {m.name: s for s in (SERVICE, MODEL_SERVICE) for m in s.methods}
METHODS = tuple(SERVICE_OF)
INFERENCE_SERVICE = "inference.GRPCInferenceService"
INFERENCE_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata")
INFERENCE_METHODS += ("ModelMetadata", "ModelInfer")
ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
NET = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN = stax.serial(
    stax.Conv(4, (2, 2), padding="SAME"),
    stax.Relu(),
    stax.AvgPool((2, 2), strides=(1, 1)),
    stax.FanOut(2),
    stax.parallel(stax.Conv(4, (3, 3), padding="SAME"), stax.Identity()),
    stax.FanInConcat(),
    stax.Flatten(),
    stax.Dense(1),
)
FD = descriptor.FieldDescriptor
_INTS = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_SINT32, FD.TYPE_SINT64, FD.TYPE_SFIXED32}
_INTS |= {FD.TYPE_SFIXED64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64}
_INT32S = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_UINT32, FD.TYPE_FIXED32}


class ServerFailed(AssertionError):
    """The server answered a status no input may produce, or stopped answering."""


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of a scalar field's type, biased to edges: NaN, negatives, huge, empty."""
    kind = field.type
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        width = 64 if kind == FD.TYPE_DOUBLE else 32
        plausible = st.floats(-0.5, 3.0, width=width)
        return st.one_of(plausible, st.floats(allow_nan=True, allow_infinity=True, width=width))
    if kind in _INTS:
        unsigned = kind in {FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64}
        bits = 32 if kind in _INT32S else 64
        low = 0 if unsigned else -(1 << (bits - 1))
        high = (1 << (bits if unsigned else bits - 1)) - 1
        tiny = st.integers(max(low, -1), min(high, 5))
        small = st.integers(max(low, -3), min(high, 70))
        return st.one_of(tiny, small, st.integers(low, high))
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_STRING:
        return st.text(max_size=24)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=96)
    if kind == FD.TYPE_ENUM:
        return st.integers(-2, 12)  # proto3 enums are open: unknown numbers arrive too
    raise NotImplementedError(f"field {field.full_name} of type {kind}")


def mutate(draw: st.DrawFn, message: Any, depth: int = 0) -> None:
    """Sets one to three randomly chosen fields of `message` (recursively) to random values."""
    fields = list(message.DESCRIPTOR.fields)
    if not fields:  # Relu {}: nothing to set (its presence is its content)
        return
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(fields))
        repeated = field.is_repeated
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue
            if depth >= 4:
                continue
            if repeated:
                items = getattr(message, field.name)
                if len(items) and draw(st.booleans()):
                    mutate(draw, items[draw(st.integers(0, len(items) - 1))], depth + 1)
                else:
                    mutate(draw, items.add(), depth + 1)
            else:
                mutate(draw, getattr(message, field.name), depth + 1)
        elif repeated:
            values = getattr(message, field.name)
            del values[:]
            values.extend(draw(st.lists(_scalar(field), max_size=5)))
        else:
            setattr(message, field.name, draw(_scalar(field)))


class RequestFuzzer:
    """Sends fuzzed requests to one server and checks each answer."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = kernel_service_pb2_grpc.KernelServiceStub(self.channel)
        request = ks.RegisterArchitectureRequest(architecture=NET.to_proto())
        self.architecture_id = self.stub.RegisterArchitecture(request, timeout=60).architecture_id
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.seeds = {**self._seeds(), **self._model_seeds()}

    def close(self) -> None:
        self.channel.close()

    def _seeds(self) -> dict[str, list[Any]]:
        """A valid request per method (a valid message sequence for the stream)."""
        x = np.random.default_rng(0).standard_normal((3, 4))
        x1, x2 = tensor.encode(x, "x1"), tensor.encode(x[:2], "x2")
        kernel = ks.ComputeKernelRequest(architecture_id=self.architecture_id, x1=x1, x2=x2)
        header = ks.StreamKernelHeader(
            architecture_id=self.architecture_id,
            dtype=x1.dtype,
            x1_shape=x.shape,
            tile_size=2,
        )
        victim = self.stub.RegisterArchitecture(
            ks.RegisterArchitectureRequest(architecture=stax.serial(stax.Dense(2)).to_proto()),
            timeout=60,
        ).architecture_id
        chunk = ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=0, data=x.tobytes())
        return {
            "RegisterArchitecture": [ks.RegisterArchitectureRequest(architecture=NET.to_proto())],
            "GetArchitecture": [ks.GetArchitectureRequest(architecture_id=self.architecture_id)],
            "ListArchitectures": [ks.ListArchitecturesRequest()],
            # Another network's id: a fuzzed delete must not take the one the others use.
            "DeleteArchitecture": [ks.DeleteArchitectureRequest(architecture_id=victim)],
            "ComputeKernel": [kernel],
            "ComputeValueAndGrad": [
                ks.ComputeValueAndGradRequest(
                    architecture_id=self.architecture_id,
                    x1=x1,
                    ntk_cotangent=tensor.encode(np.ones((3, 3)), "ntk_cotangent"),
                )
            ],
            "ComputeKernelBatch": [ks.ComputeKernelBatchRequest(requests=[kernel, kernel])],
            "StreamKernel": [
                ks.StreamKernelRequest(header=header),
                ks.StreamKernelRequest(chunk=chunk),
            ],
        }

    def _fit(self, y: Any) -> list[ms.FitRequest]:
        x = np.random.default_rng(0).standard_normal((3, 4))
        header = ms.FitHeader(
            architecture_id=self.architecture_id,
            dtype=tensor.encode(x, "x").dtype,
            x_train_shape=x.shape,
            y_train_shape=y.shape,
            diag_reg=1e-3,
        )
        x_chunk = ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=0, data=x.tobytes())
        y_chunk = ks.InputChunk(slot=ks.INPUT_SLOT_Y_TRAIN, offset=0, data=y.tobytes())
        return [
            ms.FitRequest(header=header),
            ms.FitRequest(chunk=x_chunk),
            ms.FitRequest(chunk=y_chunk),
        ]

    def _model_id(self, fit: list[ms.FitRequest]) -> str:
        answers = list(self.models.Fit(iter(fit), timeout=60))
        return answers[-1].model.model_id  # type: ignore[no-any-return]

    def _model_seeds(self) -> dict[str, list[Any]]:
        """A valid request per ModelService method, on a fitted model (the delete's victim
        another one)."""
        fit = self._fit(np.arange(3.0))
        model_id = self._model_id(fit)
        victim = self._model_id(self._fit(np.ones(3)))
        x = np.random.default_rng(0).standard_normal((3, 4))
        data = {"x_train": tensor.encode(x, "x"), "y_train": tensor.encode(np.arange(3.0), "y")}
        return {
            "Fit": fit,
            "Predict": [
                ms.PredictRequest(
                    model_id=model_id,
                    x_test=tensor.encode(x[:2], "x_test"),
                    t=[1.0],
                    covariance=ms.COVARIANCE_MARGINAL,
                )
            ],
            "PredictStream": [
                ms.PredictStreamRequest(
                    header=ms.PredictStreamHeader(
                        model_id=model_id,
                        dtype=data["x_train"].dtype,
                        x_test_shape=x.shape,
                        covariance=ms.COVARIANCE_MARGINAL,
                        block_rows=2,
                    )
                ),
                ms.PredictStreamRequest(
                    chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=0, data=x.tobytes())
                ),
            ],
            "GetModel": [ms.GetModelRequest(model_id=model_id)],
            "ListModels": [ms.ListModelsRequest()],
            "DeleteModel": [ms.DeleteModelRequest(model_id=victim)],
            "MarginalLikelihood": [
                ms.MarginalLikelihoodRequest(
                    architecture_id=self.architecture_id,
                    hyper_parameters=["*"],
                    diag_reg=0.1,
                    **data,
                )
            ],
            "Tune": [
                ms.TuneRequest(
                    architecture_id=self.architecture_id,
                    parameters=[ms.TunedParameter(path="diag_reg", lower=0.01, upper=1.0)],
                    diag_reg=0.1,
                    steps=2,
                    **data,
                )
            ],
        }

    def _inference_seeds(self) -> dict[str, Any]:
        x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        infer = inference_pb2.ModelInferRequest(model_name=self.architecture_id, id="seed")
        infer.inputs.add(name="X1", datatype="FP32", shape=x.shape)
        infer.inputs.add(name="X2", datatype="FP32", shape=x[:2].shape)
        infer.inputs[1].contents.fp32_contents.extend(x[:2].ravel().tolist())
        infer.raw_input_contents.extend([x.tobytes()])  # X1 raw, X2 typed: also a mismatch
        infer.outputs.add(name="NTK")
        infer.parameters["mask_constant"].double_param = 0.5
        valid = inference_pb2.ModelInferRequest(model_name=self.architecture_id)
        valid.inputs.add(name="X1", datatype="FP32", shape=x.shape)
        valid.raw_input_contents.append(x.tobytes())
        return {
            "ModelInfer": [infer, valid],
            "ModelReady": [inference_pb2.ModelReadyRequest(name=self.architecture_id)],
            "ModelMetadata": [
                inference_pb2.ModelMetadataRequest(name=self.architecture_id, version="1")
            ],
        }

    def send_raw(
        self, method: str, messages: Sequence[bytes], service: str | None = None
    ) -> grpc.StatusCode:
        """Sends request bytes as they are; the status code the server answered."""
        ours = SERVICE_OF.get(method) if service is None else None
        path = f"/{service or ours.full_name}/{method}"  # type: ignore[union-attr]
        try:
            if ours is not None and ours.methods_by_name[method].client_streaming:
                call = self.channel.stream_stream(path)(iter(messages), timeout=60)
                for _ in call:
                    pass
            else:
                self.channel.unary_unary(path)(messages[0] if messages else b"", timeout=60)
        except grpc.RpcError as e:
            code = e.code()  # type: ignore[attr-defined]
            if code not in ACCEPTABLE:
                raise ServerFailed(f"{method}: {code}: {e.details()}") from e  # type: ignore[attr-defined]
            return code  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def raw(self, data: bytes) -> None:
        """The byte-level target: the first byte picks the method, the rest is the request
        (split at 0xff 0xfe into the messages of a stream)."""
        if not data:
            return
        method = METHODS[data[0] % len(METHODS)]
        self.send_raw(method, data[1:].split(b"\xff\xfe"))

    def mutated(self, method: str, draw: st.DrawFn) -> grpc.StatusCode:
        """The structured target: the method's valid request with random fields mutated (for
        the stream, one message mutated, or one dropped or repeated)."""
        messages = [type(m).FromString(m.SerializeToString()) for m in self.seeds[method]]
        index = draw(st.integers(0, len(messages) - 1))
        action = draw(
            st.sampled_from(["mutate", "drop", "repeat"])
            if len(messages) > 1
            else st.just("mutate")
        )
        if action == "mutate":
            mutate(draw, messages[index])
        elif action == "drop":
            del messages[index]
        else:
            messages.insert(index, messages[index])
        return self.send_raw(method, [m.SerializeToString() for m in messages])

    def inference(self, method: str, draw: st.DrawFn) -> grpc.StatusCode:
        """The inference protocol's target: one of the method's seeds with fields mutated."""
        seeds = self._inference_seeds()[method]
        message = seeds[draw(st.integers(0, len(seeds) - 1))]
        mutate(draw, message)
        return self.send_raw(method, [message.SerializeToString()], INFERENCE_SERVICE)

    def architecture(self, draw: st.DrawFn) -> grpc.StatusCode:
        """The compute target: a small CNN with random fields mutated, registered, then asked
        for both kernels of an image batch, tiny or over the cost budgets (what only
        computing can trip: windows, strides and branches against real shapes, XLA's own
        shape checks, the cost estimates)."""
        architecture = CNN.to_proto()
        layers = list(every_layer(architecture.layers))
        layer = layers[draw(st.integers(0, len(layers) - 1))]
        mutate(draw, getattr(layer, str(layer.WhichOneof("layer"))))
        code = self.send_raw(
            "RegisterArchitecture",
            [ks.RegisterArchitectureRequest(architecture=architecture).SerializeToString()],
        )
        if code != grpc.StatusCode.OK:
            return code
        request = ks.RegisterArchitectureRequest(architecture=architecture)
        architecture_id = self.stub.RegisterArchitecture(request, timeout=60).architecture_id
        # Mostly a tiny batch; now and then one within the input limits whose kernel is over
        # the server's cost budgets (pairs of positions of a CNN grow as side**4), which
        # the cost admission must refuse before the work (RESOURCE_EXHAUSTED).
        n, side = draw(st.sampled_from([(2, 4)] * 7 + [(64, 16)]))
        x = np.random.default_rng(1).standard_normal((n, side, side, 3)).astype(np.float32)
        kernel = ks.ComputeKernelRequest(
            architecture_id=architecture_id,
            x1=tensor.encode(x, "x1"),
            get=[ks.KERNEL_KIND_NNGP, ks.KERNEL_KIND_NTK],
        )
        return self.send_raw("ComputeKernel", [kernel.SerializeToString()])

    def check_alive(self) -> None:
        """The server still computes a valid kernel."""
        response = self.stub.ComputeKernel(self.seeds["ComputeKernel"][0], timeout=60)
        if not response.HasField("ntk"):
            raise ServerFailed("a valid ComputeKernel came back without its kernel")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="HOST:PORT of a running ntkserve server")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    fuzzer = RequestFuzzer(args.target)

    @settings(database=None, deadline=None)
    @given(st.binary(max_size=512))
    def target(data: bytes) -> None:
        fuzzer.raw(data)

    fuzz_one_input: Any = target.hypothesis.fuzz_one_input  # type: ignore[attr-defined]
    rng = np.random.default_rng()
    end, runs = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        fuzz_one_input(rng.bytes(int(rng.integers(1, 600))))
        runs += 1
    fuzzer.check_alive()
    print(f"{runs} inputs, no unacceptable status; the server still computes")


if __name__ == "__main__":
    main()
