"""The KServe v2 / Open Inference Protocol on ntkserve's port, through a stock client.

tritonclient[grpc] talks to a real server process: server and model health, metadata, and
ModelInfer, whose kernels must be the ones KernelService returns for the same request.
Typed `contents` (which tritonclient never sends) go through tritonclient's own generated
messages and stub. This process never imports the server's copy of the protocol: both
define the `inference.*` messages, and one protobuf descriptor pool cannot hold both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from ntkserve import Client, stax
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerProcess

ARCH = stax.serial(
    stax.Dense(256, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1, W_std=1.5, b_std=0.05)
)
CONV = stax.serial(stax.Conv(8, (3,), padding="SAME"), stax.Relu(), stax.GlobalAvgPool())


@pytest.fixture(scope="module")
def arch_id(server: ServerProcess) -> str:
    with Client(server.target) as client:
        return client.register(ARCH)


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.target)
    yield client
    client.close()


def _input(name: str, x: np.ndarray) -> triton.InferInput:
    datatype = {np.float32: "FP32", np.float64: "FP64"}[x.dtype.type]
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def _rng_inputs(seed: int, *shapes: tuple[int, ...], dtype: type = np.float32) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def test_server_and_model_health_and_metadata(
    triton_client: triton.InferenceServerClient, arch_id: str
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(arch_id)
    assert triton_client.is_model_ready(arch_id, "1")
    assert not triton_client.is_model_ready("0" * 32)
    meta = triton_client.get_server_metadata()
    assert meta.name == "ntkserve" and meta.version
    model = triton_client.get_model_metadata(arch_id)
    assert model.name == arch_id and list(model.versions) == ["1"]
    assert [t.name for t in model.inputs] == ["X1", "X2"]
    assert [t.name for t in model.outputs] == ["NNGP", "NTK"]
    with pytest.raises(InferenceServerException, match="NOT_FOUND"):
        triton_client.get_model_metadata("0" * 32)
    with pytest.raises(InferenceServerException, match="version 1 only"):
        triton_client.get_model_metadata(arch_id, "2")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infer_returns_what_kernel_service_returns(
    server: ServerProcess,
    triton_client: triton.InferenceServerClient,
    arch_id: str,
    dtype: type,
) -> None:
    x1, x2 = _rng_inputs(0, (5, 12), (3, 12), dtype=dtype)
    with Client(server.target) as client:
        nngp, ntk = client.kernel(arch_id, x1, x2, get=("nngp", "ntk"))
        ntk_sym = client.kernel(arch_id, x1, get="ntk")
    result = triton_client.infer(arch_id, [_input("X1", x1), _input("X2", x2)], request_id="r7")
    assert result.get_response().id == "r7"
    for name, expected in (("NNGP", nngp), ("NTK", ntk)):
        got = result.as_numpy(name)
        assert got.dtype == dtype and got.shape == (5, 3)
        np.testing.assert_array_equal(got, expected)
    only_ntk = triton_client.infer(
        arch_id, [_input("X1", x1)], outputs=[triton.InferRequestedOutput("NTK")]
    )
    assert only_ntk.as_numpy("NNGP") is None
    np.testing.assert_array_equal(only_ntk.as_numpy("NTK"), ntk_sym)


def test_mask_constant_is_a_request_parameter(
    server: ServerProcess, triton_client: triton.InferenceServerClient
) -> None:
    (x,) = _rng_inputs(1, (3, 6, 2))
    x[0, 4:] = -1.0  # the first sequence is 4 long, padded with -1
    with Client(server.target) as client:
        expected = client.kernel(CONV, x, get="ntk", mask_constant=-1.0)
        conv_id = client.register(CONV)
        unmasked = client.kernel(conv_id, x, get="ntk")
    result = triton_client.infer(conv_id, [_input("X1", x)], parameters={"mask_constant": -1.0})
    np.testing.assert_array_equal(result.as_numpy("NTK"), expected)
    assert not np.array_equal(expected, unmasked)  # the parameter did something


def test_typed_contents_give_the_same_kernel(
    server: ServerProcess, triton_client: triton.InferenceServerClient, arch_id: str
) -> None:
    (x,) = _rng_inputs(2, (4, 12))
    with Client(server.target) as client:
        expected = client.kernel(arch_id, x, get="nngp")
    request = service_pb2.ModelInferRequest(model_name=arch_id)
    request.inputs.add(name="X1", datatype="FP32", shape=list(x.shape))
    request.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    request.outputs.add(name="NNGP")
    with grpc.insecure_channel(server.target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    (output,) = response.outputs
    assert output.name == "NNGP" and list(output.shape) == [4, 4]
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(4, 4)
    np.testing.assert_array_equal(got, expected)


def test_data_sent_both_raw_and_typed_is_refused(server: ServerProcess, arch_id: str) -> None:
    (x,) = _rng_inputs(5, (2, 12))
    request = service_pb2.ModelInferRequest(model_name=arch_id)
    request.inputs.add(name="X1", datatype="FP32", shape=list(x.shape))
    request.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[X1].contents" in info.value.details()


def test_limits_are_refused_before_computing_in_the_protocols_terms(
    start_server: type[ServerProcess], tmp_path: Path
) -> None:
    srv = start_server(tmp_path / "data", "--max-tensor-elements=5000", "--max-message-mb=1")
    with Client(srv.target) as client:
        arch_id = client.register(ARCH)
    triton_client = triton.InferenceServerClient(srv.target)
    try:
        (big,) = _rng_inputs(6, (500, 12))  # 6000 elements
        message = _refused(triton_client, arch_id, [_input("X1", big)])
        assert "RESOURCE_EXHAUSTED" in message and "inputs[X1]: shape [500, 12]" in message
        # 600 x 600 float32 NTK: 1.4 MB, over the 1 MiB a message may carry.
        (wide,) = _rng_inputs(7, (600, 1))
        message = _refused(triton_client, arch_id, [_input("X1", wide)], outputs=[])
        assert "RESOURCE_EXHAUSTED" in message and "--max-message-mb" in message
        assert srv.wait_for_log("code=RESOURCE_EXHAUSTED")
    finally:
        triton_client.close()


def _refused(
    triton_client: triton.InferenceServerClient, model: str, inputs: list, **kwargs: object
) -> str:
    with pytest.raises(InferenceServerException) as info:
        triton_client.infer(model, inputs, **kwargs)
    return str(info.value)


def test_bad_requests_name_the_field(
    triton_client: triton.InferenceServerClient, arch_id: str
) -> None:
    x1, x2 = _rng_inputs(3, (4, 12), (2, 12))
    good = _input("X1", x1)
    assert "inputs: X1 is required" in _refused(triton_client, arch_id, [_input("X2", x2)])
    message = _refused(triton_client, arch_id, [good, _input("Y", x2)])
    assert "INVALID_ARGUMENT" in message and "inputs[1].name" in message
    ints = triton.InferInput("X1", [4, 12], "INT32")
    ints.set_data_from_numpy(np.zeros((4, 12), np.int32))
    assert "inputs[X1].datatype" in _refused(triton_client, arch_id, [ints])
    short = triton.InferInput("X1", [4, 13], "FP32")
    short._raw_content = x1.tobytes()  # 48 floats for a declared 52: a client bug
    assert "do not hold a FP32 tensor of shape [4, 13]" in _refused(triton_client, arch_id, [short])
    mixed = _input("X2", x2.astype(np.float64))
    assert "inputs[X2].datatype" in _refused(triton_client, arch_id, [good, mixed])
    wrong_width = _input("X2", np.zeros((2, 5), np.float32))
    assert "inputs[X2].shape" in _refused(triton_client, arch_id, [good, wrong_width])
    assert "parameters[sigma]" in _refused(
        triton_client, arch_id, [good], parameters={"sigma": 1.0}
    )
    assert "parameters[mask_constant]: must be a number" in _refused(
        triton_client, arch_id, [good], parameters={"mask_constant": "zero"}
    )
    classify = [triton.InferRequestedOutput("NTK", class_count=3)]
    assert "outputs[NTK].parameters[classification]" in _refused(
        triton_client, arch_id, [good], outputs=classify
    )
    unknown_output = [triton.InferRequestedOutput("LOGITS")]
    assert "outputs[0].name" in _refused(triton_client, arch_id, [good], outputs=unknown_output)
    twice = [triton.InferRequestedOutput("NTK"), triton.InferRequestedOutput("NTK")]
    assert "outputs[1].name" in _refused(triton_client, arch_id, [good], outputs=twice)
    scalar = triton.InferInput("X1", [], "FP32")
    scalar._raw_content = np.float32(1).tobytes()
    assert "inputs[X1].shape" in _refused(triton_client, arch_id, [scalar])
    assert "NOT_FOUND" in _refused(triton_client, "0" * 32, [good])
    assert "model_version" in _refused(triton_client, arch_id, [good], model_version="3")
    with pytest.raises(InferenceServerException, match="name: is required"):
        triton_client.get_model_metadata("")
    # What tritonclient sends on its own is accepted (and ignored: one queue, gRPC deadlines).
    kept = triton_client.infer(arch_id, [good], priority=3, timeout=10_000_000)
    # After all of that the server still answers.
    assert kept.as_numpy("NTK").shape == (4, 4)


def test_tokens_and_tenants_hold_for_the_inference_protocol(
    start_server: type[ServerProcess], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("token-of-the-first-lab-0001 lab1\ntoken-of-the-second-lab-002 lab2\n")
    srv = start_server(tmp_path / "data", "--auth-tokens", str(tokens))
    lab1 = {"authorization": "Bearer token-of-the-first-lab-0001"}
    lab2 = {"authorization": "Bearer token-of-the-second-lab-002"}
    with Client(srv.target, token="token-of-the-first-lab-0001") as client:
        arch_id = client.register(ARCH)
    triton_client = triton.InferenceServerClient(srv.target)
    try:
        assert triton_client.is_server_live()  # probes carry no token
        assert triton_client.is_server_ready()
        (x,) = _rng_inputs(4, (3, 12))
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            triton_client.infer(arch_id, [_input("X1", x)])
        result = triton_client.infer(arch_id, [_input("X1", x)], headers=lab1)
        assert result.as_numpy("NTK").shape == (3, 3)
        assert triton_client.is_model_ready(arch_id, headers=lab1)
        assert not triton_client.is_model_ready(arch_id, headers=lab2)  # lab2's registry
        with pytest.raises(InferenceServerException, match="NOT_FOUND"):
            triton_client.infer(arch_id, [_input("X1", x)], headers=lab2)
    finally:
        triton_client.close()


def test_no_test_module_imports_the_servers_inference_messages() -> None:
    """Every pytest worker imports every test module when collecting; one that imported the
    server's KServe v2 messages (`ntkserve_server.inference`, `.server`, `.kserve_v2`) would
    break this file's tritonclient import (the same proto names, refused by protobuf) on
    whichever worker collects both. Server builds run in fresh interpreters instead
    (server_scenarios.py)."""
    import ast
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    banned = {"ntkserve_server.inference", "ntkserve_server.server", "ntkserve_server.kserve_v2"}
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        if path.name == "server_scenarios.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            wrong += [f"{path.name}: {n}" for n in names if n.startswith(tuple(banned))]
    assert not wrong, wrong


def test_a_fitted_model_is_a_model_of_the_protocol(
    triton_client: triton.InferenceServerClient, server: ServerProcess
) -> None:
    """Input X, outputs MEAN and VARIANCE: what Model.predict answers for the same test
    points (covariance "marginal"), bit for bit; parameters t and get; metadata."""
    x, y, x_test = _rng_inputs(5, (20, 4), (20, 2), (6, 4), dtype=np.float64)
    with Client(server.target) as client:
        model = client.fit(ARCH, x, y, "ntk", diag_reg=1e-3)
        want = model.predict(x_test, covariance="marginal")
        at_t = model.predict(x_test, 2.0, "nngp", covariance="marginal")
    assert triton_client.is_model_ready(model.id)
    assert not triton_client.is_model_ready("model-" + "0" * 32)
    metadata = triton_client.get_model_metadata(model.id)
    assert [i.name for i in metadata.inputs] == ["X"] and list(metadata.inputs[0].shape) == [-1, 4]
    assert [o.name for o in metadata.outputs] == ["MEAN", "VARIANCE"]
    outputs = [triton.InferRequestedOutput("MEAN"), triton.InferRequestedOutput("VARIANCE")]
    result = triton_client.infer(model.id, [_input("X", x_test)], outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("MEAN"), want.mean)
    np.testing.assert_array_equal(result.as_numpy("VARIANCE"), want.covariance)
    timed = triton_client.infer(
        model.id, [_input("X", x_test)], outputs=outputs, parameters={"t": 2.0, "get": "nngp"}
    )
    np.testing.assert_array_equal(timed.as_numpy("MEAN"), at_t.mean)
    np.testing.assert_array_equal(timed.as_numpy("VARIANCE"), at_t.covariance)
    mean_only = triton_client.infer(model.id, [_input("X", x_test)])
    assert mean_only.as_numpy("VARIANCE") is None
    with pytest.raises(InferenceServerException, match=r"inputs\[X\].shape"):
        triton_client.infer(model.id, [_input("X", x_test[:, :3])])
    with pytest.raises(InferenceServerException, match=r"parameters\[get\]"):
        triton_client.infer(model.id, [_input("X", x_test)], parameters={"get": "ntkk"})
