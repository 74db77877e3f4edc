"""Every malformed request gets INVALID_ARGUMENT (or NOT_FOUND) naming the field, with a
google.rpc.BadRequest; none of them hurts the server or the registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ntkserve import stax, tensor
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc, tensor_pb2

from tests.conftest import ServerProcess

GOOD = stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(1))


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[kernel_service_pb2_grpc.KernelServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield kernel_service_pb2_grpc.KernelServiceStub(channel)


@pytest.fixture(scope="module")
def arch_id(stub: kernel_service_pb2_grpc.KernelServiceStub) -> str:
    return stub.RegisterArchitecture(
        ks.RegisterArchitectureRequest(architecture=GOOD.to_proto())
    ).architecture_id


def _x(shape: tuple[int, ...] = (3, 4), dtype: Any = np.float32) -> tensor_pb2.Tensor:
    return tensor.encode(np.ones(shape, dtype))


def _expect(call: Any, request: Any, code: grpc.StatusCode, field: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    error = info.value
    assert error.code() == code, error.details()
    assert field in error.details()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        assert field in [v.field for v in bad.field_violations]


def _register_cases() -> list[Any]:
    def arch(*layers: pb.Layer) -> ks.RegisterArchitectureRequest:
        return ks.RegisterArchitectureRequest(architecture=pb.Architecture(layers=layers))

    return [
        pytest.param(ks.RegisterArchitectureRequest(), "architecture", id="missing-architecture"),
        pytest.param(arch(), "architecture.layers", id="empty-network"),
        pytest.param(arch(pb.Layer()), "architecture.layers[0]", id="empty-layer"),
        pytest.param(
            arch(pb.Layer(dense=pb.Dense())),
            "architecture.layers[0].dense.out_dim",
            id="dense-without-out_dim",
        ),
        pytest.param(
            arch(pb.Layer(dense=pb.Dense(out_dim=2)), pb.Layer(ab_relu=pb.ABRelu())),
            "architecture.layers[1].ab_relu.a",
            id="ab_relu-without-parameters",
        ),
        pytest.param(
            arch(pb.Layer(dense=pb.Dense(out_dim=2, w_std=-1))),
            "architecture.layers[0].dense.w_std",
            id="negative-w_std",
        ),
        pytest.param(
            arch(pb.Layer(relu=pb.Relu())), "architecture.layers[0].relu", id="nonlinearity-first"
        ),
    ]


@pytest.mark.parametrize(("request_", "field"), _register_cases())
def test_bad_registrations(stub: Any, request_: Any, field: str) -> None:
    _expect(stub.RegisterArchitecture, request_, grpc.StatusCode.INVALID_ARGUMENT, field)


def _kernel_cases() -> list[Any]:
    nan = np.ones((3, 4), np.float32)
    nan[1, 2] = np.nan
    inf = np.ones((3, 4))
    inf[0, 0] = np.inf
    return [
        pytest.param({"x1": None}, "x1", id="missing-x1"),
        pytest.param(
            {"x1": tensor_pb2.Tensor(dtype=1, shape=[3, 4], data=b"\0" * 47)},
            "x1.data",
            id="bytes-disagree-with-shape",
        ),
        pytest.param(
            {"x1": tensor_pb2.Tensor(dtype=7, shape=[1, 1], data=b"\0" * 4)},
            "x1.dtype",
            id="unknown-dtype",
        ),
        pytest.param(
            {"x1": tensor_pb2.Tensor(dtype=1, shape=[-3, 4], data=b"")},
            "x1.shape",
            id="negative-dimension",
        ),
        pytest.param({"x1": tensor.encode(nan)}, "x1", id="nan"),
        pytest.param({"x2": tensor.encode(inf)}, "x2", id="inf"),
        pytest.param({"x2": _x((2, 5))}, "x2.shape", id="feature-shapes-differ"),
        pytest.param({"x2": _x((2, 4), np.float64)}, "x2.dtype", id="dtypes-differ"),
        pytest.param({"x1": _x((3,))}, "x1.shape", id="rank-1"),
        pytest.param(  # once an IndexError (INTERNAL) before the shape was checked
            {"x1": tensor_pb2.Tensor(dtype=1, shape=[], data=b"\0" * 4)}, "x1.shape", id="rank-0"
        ),
        pytest.param({"x1": _x((0, 4))}, "x1.shape", id="empty-batch"),
        pytest.param({"get": [ks.KERNEL_KIND_UNSPECIFIED]}, "get[0]", id="unspecified-kind"),
        pytest.param({"get": [ks.KERNEL_KIND_NTK, ks.KERNEL_KIND_NTK]}, "get[1]", id="kind-twice"),
        pytest.param({"architecture_id": ""}, "architecture_id", id="missing-id"),
    ]


@pytest.mark.parametrize(("fields", "field"), _kernel_cases())
@pytest.mark.parametrize("method", ["ComputeKernel", "ComputeValueAndGrad"])
def test_bad_kernel_requests(
    stub: Any, arch_id: str, method: str, fields: dict, field: str
) -> None:
    values: dict[str, Any] = {"architecture_id": arch_id, "x1": _x(), **fields}
    values = {k: v for k, v in values.items() if v is not None}
    request_type = (
        ks.ComputeKernelRequest if method == "ComputeKernel" else ks.ComputeValueAndGradRequest
    )
    _expect(getattr(stub, method), request_type(**values), grpc.StatusCode.INVALID_ARGUMENT, field)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"ntk_cotangent": _x((3, 2))}, "ntk_cotangent.shape", id="cotangent-shape"),
        pytest.param(
            {"ntk_cotangent": _x((3, 3), np.float64)}, "ntk_cotangent.dtype", id="cotangent-dtype"
        ),
        pytest.param({"nngp_cotangent": _x((3, 3))}, "nngp_cotangent", id="cotangent-not-asked"),
        pytest.param(
            {"hyper_parameters": ["architecture.layers[0].dense.gamma"]},
            "hyper_parameters[0]",
            id="unknown-hyper-parameter",
        ),
        pytest.param(
            {"hyper_parameters": ["architecture.layers[0].dense.w_std"] * 2},
            "hyper_parameters",
            id="hyper-parameter-twice",
        ),
    ],
)
def test_bad_cotangents(stub: Any, arch_id: str, fields: dict, field: str) -> None:
    request = ks.ComputeValueAndGradRequest(architecture_id=arch_id, x1=_x(), **fields)
    _expect(stub.ComputeValueAndGrad, request, grpc.StatusCode.INVALID_ARGUMENT, field)


def test_unknown_ids_are_not_found(stub: Any) -> None:
    for call, request in [
        (stub.ComputeKernel, ks.ComputeKernelRequest(architecture_id="0" * 32, x1=_x())),
        (stub.GetArchitecture, ks.GetArchitectureRequest(architecture_id="0" * 32)),
        (stub.DeleteArchitecture, ks.DeleteArchitectureRequest(architecture_id="0" * 32)),
    ]:
        _expect(call, request, grpc.StatusCode.NOT_FOUND, "0" * 32)


def test_a_bad_batch_item_is_named_by_its_index(stub: Any, arch_id: str) -> None:
    good = ks.ComputeKernelRequest(architecture_id=arch_id, x1=_x())
    bad = ks.ComputeKernelRequest(architecture_id=arch_id, x1=_x((3,)))
    request = ks.ComputeKernelBatchRequest(requests=[good, good, bad])
    _expect(
        stub.ComputeKernelBatch, request, grpc.StatusCode.INVALID_ARGUMENT, "requests[2].x1.shape"
    )
    unknown = ks.ComputeKernelBatchRequest(
        requests=[good, ks.ComputeKernelRequest(architecture_id="f" * 32, x1=_x())]
    )
    _expect(stub.ComputeKernelBatch, unknown, grpc.StatusCode.NOT_FOUND, "")


def test_server_and_registry_survive_bad_requests(stub: Any, arch_id: str) -> None:
    # Runs after the cases above (file order): the server answers and still has the network.
    ids = [r.architecture_id for r in stub.ListArchitectures(ks.ListArchitecturesRequest()).records]
    assert arch_id in ids
    response = stub.ComputeKernel(ks.ComputeKernelRequest(architecture_id=arch_id, x1=_x()))
    assert np.all(np.isfinite(tensor.decode(response.ntk)))
