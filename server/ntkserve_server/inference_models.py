"""Fitted models (ModelService) as models of the KServe v2 inference protocol, so a stock
inference client gets predictions of an infinitely wide network.

The mapping (also in the README): a model is named by its model id ("model-...", version
"1"); ModelInfer is a Predict with input X (N_test, *features) in the model's datatype, raw
or typed; outputs MEAN (N_test, *outputs) and VARIANCE (N_test: the marginal variances),
FP64, as raw bytes (no outputs asked for: MEAN alone); parameters "t" (a number >= 0, the
training time; absent: infinity) and "get" (a string, "nngp", "ntk" or "ntkgp"; absent: the
model's). Errors name the protocol's fields.
"""

from __future__ import annotations

import numpy as np
from ntkserve import tensor
from ntkserve.v1 import model_service_pb2 as ms

from ntkserve_server import requests
from ntkserve_server.inference_tensors import (
    IGNORED_PARAMETERS,
    PLATFORM,
    VERSION,
    check_no_parameters,
    input_tensor,
    parameter_number,
)
from ntkserve_server.kserve_v2 import grpc_predict_v2_pb2 as pb
from ntkserve_server.model_requests import MODEL_ID_PREFIX, POSTERIOR_CODES

INPUTS = {"X": "x_test"}
OUTPUTS = ("MEAN", "VARIANCE")
PARAMETERS = ("t", "get")
# PredictRequest field -> the protocol's path, for errors raised by the prediction.
FIELD_PATHS = {
    "x_test": "inputs[X]",
    "model_id": "model_name",
    "t[0]": "parameters[t]",
    "get": "parameters[get]",
}


def is_model(name: str) -> bool:
    """Whether a protocol model name is a fitted model's id (else an architecture's)."""
    return name.startswith(MODEL_ID_PREFIX)


def protocol_path(field: str) -> str:
    head, dot, rest = field.partition(".")
    if head == "x_test" and rest == "dtype":
        rest = "datatype"
    return FIELD_PATHS.get(head, head) + dot + rest


def _outputs(request: pb.ModelInferRequest) -> tuple[str, ...]:
    asked: list[str] = []
    for index, output in enumerate(request.outputs):
        if output.name not in OUTPUTS or output.name in asked:
            why = "asked twice" if output.name in asked else f"is not one of {', '.join(OUTPUTS)}"
            raise requests.InvalidRequest(f"outputs[{index}].name", f"{output.name!r} {why}")
        check_no_parameters(output.parameters, f"outputs[{output.name}]")
        asked.append(output.name)
    return tuple(asked) or ("MEAN",)


def predict_request(request: pb.ModelInferRequest) -> ms.PredictRequest:
    """The PredictRequest a ModelInferRequest on a fitted model asks for."""
    predict = ms.PredictRequest(model_id=request.model_name)
    for index, given in enumerate(request.inputs):
        _, encoded = input_tensor(request, index, given, INPUTS)
        if predict.HasField("x_test"):
            raise requests.InvalidRequest(f"inputs[{index}].name", "X given twice")
        predict.x_test.CopyFrom(encoded)
    if not predict.HasField("x_test"):
        raise requests.InvalidRequest("inputs", "X is required")
    if "VARIANCE" in _outputs(request):
        predict.covariance = ms.COVARIANCE_MARGINAL
    for name, value in request.parameters.items():
        if name == "t":
            predict.t.append(parameter_number(name, value))
        elif name == "get":
            predict.get = _posterior(value)
        elif name not in IGNORED_PARAMETERS:
            raise requests.InvalidRequest(
                f"parameters[{name}]", "is not a parameter of a model; known: t, get"
            )
    return predict


def _posterior(value: pb.InferParameter) -> ms.Posterior:
    text = value.string_param if value.WhichOneof("parameter_choice") == "string_param" else None
    if text not in POSTERIOR_CODES:
        raise requests.InvalidRequest(
            "parameters[get]", f"must be a string_param: one of {', '.join(POSTERIOR_CODES)}"
        )
    return POSTERIOR_CODES[text]


def infer_response(
    request: pb.ModelInferRequest, predicted: ms.PredictResponse
) -> pb.ModelInferResponse:
    """MEAN (and VARIANCE) of a prediction at one time: its time axis dropped."""
    response = pb.ModelInferResponse(
        model_name=request.model_name, model_version=VERSION, id=request.id
    )
    timed = bool(len(request.parameters) and "t" in request.parameters)
    for name in _outputs(request):
        field = "mean" if name == "MEAN" else "covariance"
        values = tensor.decode(getattr(predicted, field), field)
        values = values[0] if timed else values
        response.outputs.add(name=name, datatype="FP64", shape=values.shape)
        response.raw_output_contents.append(np.ascontiguousarray(values).tobytes())
    return response


def metadata(record: ms.ModelRecord) -> pb.ModelMetadataResponse:
    datatype = "FP32" if tensor.wire_dtype(record.dtype).itemsize == 4 else "FP64"
    x = pb.ModelMetadataResponse.TensorMetadata(
        name="X", datatype=datatype, shape=[-1, *record.x_train_shape[1:]]
    )
    outputs = [
        pb.ModelMetadataResponse.TensorMetadata(
            name="MEAN", datatype="FP64", shape=[-1, *record.y_train_shape[1:]]
        ),
        pb.ModelMetadataResponse.TensorMetadata(name="VARIANCE", datatype="FP64", shape=[-1]),
    ]
    return pb.ModelMetadataResponse(
        name=record.model_id, versions=[VERSION], platform=PLATFORM, inputs=[x], outputs=outputs
    )
