"""compute.check and the field errors, in process: field errors carry their field as data (OverLimit
included) and move under a prefix with `within`; one rank rule for tensors and StreamKernel
headers; inputs are checked and shaped once, into what the engine and the batcher take."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import stax, tensor
from ntkserve.field_errors import FieldError
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import tensor_pb2
from ntkserve_engine.kernels import EngineError, InputError, KernelFn
from ntkserve_server import requests
from ntkserve_server.compute import ComputeEngine, check

FC = stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1))
CNN = stax.serial(stax.Conv(4, (3, 3)), stax.Relu(), stax.Flatten(), stax.Dense(1))


def _request(x1: np.ndarray, **fields: object) -> ks.ComputeKernelRequest:
    return ks.ComputeKernelRequest(architecture_id="a" * 32, x1=tensor.encode(x1), **fields)


def test_every_request_error_is_a_field_error() -> None:
    for error_type in (requests.InvalidRequest, requests.OverLimit, EngineError, InputError):
        assert issubclass(error_type, FieldError)


def test_a_tensor_over_the_limit_names_its_field_as_data() -> None:
    with pytest.raises(requests.OverLimit) as info:
        requests.kernel_inputs(_request(np.ones((50, 4), np.float32)), max_elements=100)
    assert info.value.field == "x1"
    assert info.value.problem.startswith("shape [50, 4] holds 200 elements")
    assert str(info.value) == f"x1: {info.value.problem}"
    inside = info.value.within("requests[3]")
    assert isinstance(inside, requests.OverLimit)
    assert str(inside) == f"requests[3].x1: {info.value.problem}"
    # (The inference protocol's own paths are test_kserve's: its module cannot be imported
    # here, beside tritonclient's messages of the same proto names; see server_scenarios.py.)
    protocol = info.value.renamed(lambda path: path.replace("x1", "inputs[X1]"))
    assert isinstance(protocol, requests.OverLimit)
    assert str(protocol).startswith("inputs[X1]: shape [50, 4]")


def test_a_whole_request_over_the_limit_has_no_field() -> None:
    with pytest.raises(requests.OverLimit) as info:
        requests.check_entries((10, 10), ("nngp", "ntk"), max_entries=100)
    assert info.value.field == "" and str(info.value).startswith("the kernel would hold 200")
    assert info.value.within("requests[1]").violations[0][0] == "requests[1]"


def test_invalid_requests_keep_their_paths_within_a_batch() -> None:
    x1 = np.ones((2, 3), np.float32)
    with pytest.raises(requests.InvalidRequest) as info:
        requests.kernel_inputs(_request(x1, x2=tensor.encode(x1.astype(np.float64))))
    assert info.value.violations == (("x2.dtype", "float64 differs from x1's float32"),)
    assert info.value.within("requests[2]").field == "requests[2].x2.dtype"
    broken = _request(x1)
    broken.x1.data = b"123"
    with pytest.raises(requests.InvalidRequest) as info:
        requests.kernel_inputs(broken)
    assert info.value.field == "x1.data"


@pytest.mark.parametrize("shape", [[5], [0, 3], [2, 0, 3]])
def test_one_rank_rule_for_tensors_and_stream_headers(shape: list[int]) -> None:
    header = ks.StreamKernelHeader(
        architecture_id="a" * 32, dtype=tensor_pb2.DTYPE_FLOAT32, x1_shape=shape
    )
    with pytest.raises(InputError) as streamed:
        requests.stream_header(header, max_input_bytes=1 << 20)
    with pytest.raises(InputError) as called:
        KernelFn(FC).check_inputs(shape, None, np.float32)
    assert streamed.value.field == "header.x1_shape" and called.value.field == "x1.shape"
    assert streamed.value.problem == called.value.problem
    assert streamed.value.problem.startswith("expected (batch, *spatial, channels)")


def test_inputs_are_checked_and_shaped_once() -> None:
    engine = ComputeEngine()
    compiled = engine.compiled(KernelFn(CNN))
    x1 = np.random.RandomState(0).randn(3, 5, 5, 2).astype(np.float32)
    x2 = np.random.RandomState(1).randn(4, 5, 5, 2).astype(np.float32)
    checked = check(compiled, x1, x2, ("nngp", "ntk"))
    assert checked.kernel_shape == compiled.kfn.kernel_shape(x1.shape, x2.shape) == (3, 4)
    assert checked.shapes.x1 == (3, 5, 5, 2) and checked.shapes.x2 == (4, 5, 5, 2)
    assert checked.shapes.dtype == np.float32
    values = engine.kernel(checked)
    assert [v.shape for v in values] == [(3, 4), (3, 4)]
    # Compiled against the in-process call: float32 roundings apart, no more.
    np.testing.assert_allclose(values[1], compiled.kfn(x1, x2, get="ntk"), rtol=1e-5)


@pytest.mark.parametrize(
    ("x1", "x2", "field"),
    [
        (np.ones((), np.float32), None, "x1.shape"),
        (np.ones((2, 3), np.float32), np.ones((2, 4), np.float32), "x2.shape"),
        (np.ones((2, 3), np.int32), None, "x1.dtype"),
    ],
)
def test_inputs_that_do_not_fit_are_refused_at_the_check(
    x1: np.ndarray, x2: np.ndarray | None, field: str
) -> None:
    compiled = ComputeEngine().compiled(KernelFn(FC))
    with pytest.raises(InputError) as info:
        check(compiled, x1, x2, ("ntk",))
    assert info.value.field == field
