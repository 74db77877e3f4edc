"""The KServe v2 protocol's pieces shared by its two kinds of models (architectures, whose
ModelInfer is a ComputeKernel, and fitted models, whose ModelInfer is a Predict): its
datatypes, inputs decoded into ntkserve Tensors, number parameters, the one version."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ntkserve.v1 import tensor_pb2

from ntkserve_server import requests
from ntkserve_server.kserve_v2 import grpc_predict_v2_pb2 as pb

VERSION = "1"
PLATFORM = "ntkserve"
# Protocol datatype, ntkserve dtype, numpy dtype, the typed-contents field.
DATATYPES: dict[str, tuple[tensor_pb2.Dtype, np.dtype[Any], str]] = {
    "FP32": (tensor_pb2.DTYPE_FLOAT32, np.dtype("<f4"), "fp32_contents"),
    "FP64": (tensor_pb2.DTYPE_FLOAT64, np.dtype("<f8"), "fp64_contents"),
}
DATATYPE_OF = {dtype: name for name, (dtype, _, _) in DATATYPES.items()}
# Sent by stock clients (tritonclient's infer(priority=, timeout=)); accepted and ignored:
# ntkserve has one queue, and the call's gRPC deadline bounds its time.
IGNORED_PARAMETERS = ("priority", "timeout")


def check_version(version: str, field: str) -> None:
    if version not in ("", VERSION):
        raise requests.InvalidRequest(field, f"{version!r}: ntkserve models have version 1 only")


def parameter_number(name: str, value: pb.InferParameter) -> float:
    kind = value.WhichOneof("parameter_choice")
    if kind not in ("double_param", "int64_param", "uint64_param"):
        raise requests.InvalidRequest(
            f"parameters[{name}]",
            f"must be a number (double_param or int64_param), not {kind or 'unset'}",
        )
    return float(getattr(value, kind))


def check_no_parameters(parameters: Any, path: str) -> None:
    """Shared memory, classification and the like are Triton's extensions, not served here."""
    for name in parameters:
        raise requests.InvalidRequest(
            f"{path}.parameters[{name}]",
            "is not supported by ntkserve (no shared memory or classification; "
            "send the data in the request)",
        )


def input_tensor(
    request: pb.ModelInferRequest, index: int, tensor: Any, inputs: dict[str, str]
) -> tuple[str, tensor_pb2.Tensor]:
    """One input as the request field it feeds (`inputs`: protocol name -> field) and its
    ntkserve Tensor."""
    path = f"inputs[{tensor.name}]"
    field = inputs.get(tensor.name)
    if field is None:
        raise requests.InvalidRequest(
            f"inputs[{index}].name", f"{tensor.name!r} is not one of {', '.join(inputs)}"
        )
    check_no_parameters(tensor.parameters, path)
    if tensor.datatype not in DATATYPES:
        raise requests.InvalidRequest(
            f"{path}.datatype", f"{tensor.datatype!r} is not one of {', '.join(DATATYPES)}"
        )
    dtype, np_dtype, contents_field = DATATYPES[tensor.datatype]
    shape = [int(s) for s in tensor.shape]
    if any(s < 0 for s in shape):
        raise requests.InvalidRequest(f"{path}.shape", f"{shape} has a negative size")
    elements = math.prod(shape)
    if request.raw_input_contents and tensor.HasField("contents"):
        raise requests.InvalidRequest(
            f"{path}.contents", "given with raw_input_contents: send the data one way only"
        )
    if request.raw_input_contents:
        if len(request.raw_input_contents) != len(request.inputs):
            raise requests.InvalidRequest(
                "raw_input_contents",
                f"has {len(request.raw_input_contents)} entries for {len(request.inputs)} "
                "inputs: send one per input, or none and typed contents",
            )
        data = request.raw_input_contents[index]
    else:
        values = getattr(tensor.contents, contents_field)
        if len(values) != elements:
            raise requests.InvalidRequest(
                f"{path}.contents.{contents_field}",
                f"holds {len(values)} values; shape {shape} needs {elements}",
            )
        data = np.asarray(values, np_dtype).tobytes()
    if len(data) != elements * np_dtype.itemsize:
        raise requests.InvalidRequest(
            f"{path}", f"{len(data)} bytes do not hold a {tensor.datatype} tensor of shape {shape}"
        )
    return field, tensor_pb2.Tensor(dtype=dtype, shape=shape, data=data)
