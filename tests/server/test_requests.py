"""requests, in process (no server, no jax): each bad request is refused with the path of the
field at fault, good ones decode to what they say, and limits raise OverLimit before anything
is decoded or computed."""

from __future__ import annotations

import numpy as np
import pytest
from ntkserve import tensor
from ntkserve.field_errors import FieldError
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve_server import requests
from ntkserve_server.requests import InvalidRequest, OverLimit

ID = "a1" * 16  # the form of an architecture id

NNGP, NTK = ks.KERNEL_KIND_NNGP, ks.KERNEL_KIND_NTK


def _request(x1: np.ndarray | None = None, **fields: object) -> ks.ComputeKernelRequest:
    request = ks.ComputeKernelRequest(architecture_id=ID, **fields)  # type: ignore[arg-type]
    if x1 is not None:
        request.x1.CopyFrom(tensor.encode(x1))
    return request


def _pair(x1: np.ndarray, x2: np.ndarray) -> ks.ComputeKernelRequest:
    return ks.ComputeKernelRequest(architecture_id=ID, x1=tensor.encode(x1), x2=tensor.encode(x2))


def _field(error: pytest.ExceptionInfo[FieldError]) -> list[str]:
    return [field for field, _ in error.value.violations]


def test_a_good_request_decodes_to_its_arrays_and_kinds() -> None:
    x1, x2 = np.ones((3, 4)), np.zeros((2, 4))
    request = _request(x1, get=[NNGP, NTK])
    request.x2.CopyFrom(tensor.encode(x2))
    inputs = requests.kernel_inputs(request)
    assert inputs.architecture_id == ID and inputs.get == ("nngp", "ntk")
    np.testing.assert_array_equal(inputs.x1, x1)
    assert inputs.x2 is not None
    np.testing.assert_array_equal(inputs.x2, x2)
    assert inputs.mask_constant is None and inputs.pattern1 is None


def test_get_defaults_to_the_ntk() -> None:
    assert requests.kernel_inputs(_request(np.ones((1, 2)))).get == ("ntk",)


@pytest.mark.parametrize(
    ("request_", "field", "problem"),
    [
        (ks.ComputeKernelRequest(), "architecture_id", "is required"),
        (ks.ComputeKernelRequest(architecture_id=ID), "x1", "is required"),
        (_request(np.ones((1, 2)), get=[NTK, 7]), "get[1]", "must be KERNEL_KIND_NNGP or"),
        (_request(np.ones((1, 2)), get=[NTK, NTK]), "get[1]", "KERNEL_KIND_NTK is asked for twice"),
        (_request(np.array([[1.0, np.nan]])), "x1", "holds 1 NaN or Inf values"),
        (
            _pair(np.ones((1, 2)), np.array([[np.inf, 1.0]])),
            "x2",
            "holds 1 NaN or Inf values",
        ),
        (
            _pair(np.ones((1, 2)), np.ones((1, 2), "f4")),
            "x2.dtype",
            "float32 differs from x1's float64",
        ),
    ],
)
def test_a_bad_request_names_its_field(
    request_: ks.ComputeKernelRequest, field: str, problem: str
) -> None:
    with pytest.raises(InvalidRequest) as error:
        requests.kernel_inputs(request_)
    assert _field(error) == [field]
    assert error.value.violations[0][1].startswith(problem), error.value
    assert str(error.value).startswith(f"{field}: ")


def test_a_tensor_that_does_not_decode_names_its_subfield() -> None:
    broken = tensor.encode(np.ones((2, 3)))
    broken.data = broken.data[:-1]
    with pytest.raises(InvalidRequest) as error:
        requests.kernel_inputs(ks.ComputeKernelRequest(architecture_id=ID, x1=broken))
    assert _field(error) == ["x1.data"]
    negative = tensor.encode(np.ones((2, 3)))
    negative.shape[:] = [-2, -3]
    with pytest.raises(InvalidRequest) as error:
        requests.kernel_inputs(ks.ComputeKernelRequest(architecture_id=ID, x1=negative))
    assert _field(error) == ["x1.shape"]


def test_the_mask_constant_may_stand_where_inputs_are_not_finite() -> None:
    x1 = np.array([[1.0, np.nan], [np.nan, 2.0]])
    inputs = requests.kernel_inputs(_request(x1, mask_constant=float("nan")))
    assert inputs.mask_constant is not None and np.isnan(inputs.mask_constant)
    with_inf = np.array([[1.0, -1.0], [np.inf, 2.0]])
    with pytest.raises(InvalidRequest, match=r"other than the mask constant"):
        requests.kernel_inputs(_request(with_inf, mask_constant=-1.0))


def test_a_tensor_over_the_element_limit_is_refused_before_decoding() -> None:
    request = _request(np.ones((3, 4)))
    request.x1.data = b""  # never decoded: the declared shape alone is over the limit
    with pytest.raises(OverLimit, match=r"^x1: shape \[3, 4\] holds 12 elements, over .* 11"):
        requests.kernel_inputs(request, max_elements=11)
    assert requests.kernel_inputs(_request(np.ones((3, 4))), max_elements=12).x1.shape == (3, 4)


def test_check_entries_counts_every_kernel_and_refuses_past_the_limit() -> None:
    assert requests.check_entries((4, 5, 3), ("nngp", "ntk"), 120) == 120
    assert requests.check_entries((4, 5), ("ntk",), 0) == 20  # 0: no limit
    with pytest.raises(OverLimit, match=r"would hold 121 entries \(shape \[11, 11\] x 1"):
        requests.check_entries((11, 11), ("ntk",), 120)


def test_check_response_bytes_leaves_room_for_the_message_overhead() -> None:
    limit = 1 << 20
    requests.check_response_bytes(limit - requests.RESPONSE_OVERHEAD_BYTES, limit)
    with pytest.raises(OverLimit, match="over this server's largest message"):
        requests.check_response_bytes(limit - requests.RESPONSE_OVERHEAD_BYTES + 1, limit)
    requests.check_response_bytes(10 * limit, 0)  # 0: no check


def _header(**fields: object) -> ks.StreamKernelHeader:
    defaults: dict[str, object] = {
        "architecture_id": ID,
        "dtype": 2,  # DTYPE_FLOAT64
        "x1_shape": [10, 4],
    }
    return ks.StreamKernelHeader(**{**defaults, **fields})  # type: ignore[arg-type]


def test_a_good_stream_header_parses_with_its_input_sizes() -> None:
    header = requests.stream_header(
        _header(x2_shape=[6, 4], get=[NNGP], tile_size=8, tiles=[ks.TileIndex(row=1, col=0)]),
        max_input_bytes=1 << 20,
    )
    assert header.get == ("nngp",) and header.tile_size == 8 and header.tiles == ((1, 0),)
    assert header.x1_shape == (10, 4) and header.x2_shape == (6, 4)
    assert header.input_bytes("x1") == 10 * 4 * 8 and header.input_bytes("x2") == 6 * 4 * 8
    assert header.input_bytes("pattern1") == 0  # no patterns


def test_patterns_are_a_pair_of_positions_per_row() -> None:
    header = requests.stream_header(
        _header(x1_shape=[3, 5, 2], patterns=True), max_input_bytes=1 << 20
    )
    assert header.slot_shape("pattern1") == (3, 5, 5)
    assert header.slot_shape("x2") is None and header.slot_shape("pattern2") is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"architecture_id": ""}, "architecture_id"),
        ({"dtype": 0}, "header.dtype"),
        ({"x1_shape": [10]}, "header.x1_shape"),
        ({"x1_shape": [10, 0]}, "header.x1_shape"),
        ({"x2_shape": [0, 4]}, "header.x2_shape"),
        ({"tile_size": -1}, "header.tile_size"),
        ({"get": [NNGP, NNGP]}, "header.get[1]"),
    ],
)
def test_a_bad_stream_header_names_its_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(FieldError) as error:
        requests.stream_header(_header(**fields), max_input_bytes=1 << 20)
    assert _field(error) == [field]


def test_stream_inputs_over_the_limit_are_refused_even_when_only_planning() -> None:
    """A plan is held to the input limit too (issue 17 finding 4: planning inputs the server
    would refuse only cost it memory), and sizes are Python ints (2**62 rows of 4 float64
    features wrapped to 0 bytes in int64)."""
    header = _header(x1_shape=[100, 4], x2_shape=[28, 4])  # (100 + 28) * 4 * 8 = 4096 bytes
    assert requests.stream_header(header, max_input_bytes=4096).x2_shape == (28, 4)
    for plan_only in (False, True):
        header.plan_only = plan_only
        with pytest.raises(OverLimit, match=r"the inputs hold 4096 bytes, over .* 4095 bytes"):
            requests.stream_header(header, max_input_bytes=4095)
    huge = _header(x1_shape=[2**62, 4])
    with pytest.raises(OverLimit, match=f"the inputs hold {2**62 * 4 * 8} bytes"):
        requests.stream_header(huge, max_input_bytes=4 << 30)


def test_a_header_names_a_bounded_number_of_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests, "MAX_NAMED_TILES", 2)
    tiles = [ks.TileIndex(row=0, col=c) for c in range(3)]
    with pytest.raises(OverLimit, match="names 3 tiles, over the 2 one call may name") as raised:
        requests.stream_header(_header(tiles=tiles), max_input_bytes=4096)
    assert raised.value.field == "header.tiles"
    assert len(requests.stream_header(_header(tiles=tiles[:2]), 4096).tiles) == 2


def _grad_request(**fields: object) -> ks.ComputeValueAndGradRequest:
    request = ks.ComputeValueAndGradRequest(architecture_id=ID, **fields)  # type: ignore[arg-type]
    request.x1.CopyFrom(tensor.encode(np.ones((2, 3))))
    return request


def test_cotangents_default_to_ones_of_the_kernels_shape() -> None:
    request = _grad_request(get=[NNGP, NTK])
    (nngp, ntk) = requests.cotangents(request, requests.kernel_inputs(request), (2, 2))
    np.testing.assert_array_equal(nngp, np.ones((2, 2)))
    np.testing.assert_array_equal(ntk, np.ones((2, 2)))


@pytest.mark.parametrize(
    ("get", "cotangent", "value", "field"),
    [
        ([NTK], "ntk_cotangent", np.ones((2, 3)), "ntk_cotangent.shape"),
        ([NTK], "ntk_cotangent", np.ones((2, 2), "f4"), "ntk_cotangent.dtype"),
        ([NTK], "nngp_cotangent", np.ones((2, 2)), "nngp_cotangent"),
        ([NNGP], "nngp_cotangent", np.array([[1.0, np.nan], [0, 0]]), "nngp_cotangent"),
    ],
)
def test_a_bad_cotangent_names_its_field(
    get: list[int], cotangent: str, value: np.ndarray, field: str
) -> None:
    request = _grad_request(get=get)
    getattr(request, cotangent).CopyFrom(tensor.encode(value))
    with pytest.raises(InvalidRequest) as error:
        requests.cotangents(request, requests.kernel_inputs(request), (2, 2))
    assert _field(error) == [field]


def test_hyper_parameters_are_checked_against_the_architectures() -> None:
    known = ("layers[0].dense.W_std", "layers[0].dense.b_std")
    ask = ks.ComputeValueAndGradRequest
    assert requests.hyper_parameters(ask(hyper_parameters=["*"]), known) == known
    assert requests.hyper_parameters(ask(hyper_parameters=[known[1]]), known) == known[1:]
    with pytest.raises(InvalidRequest) as error:
        requests.hyper_parameters(ask(hyper_parameters=[known[0], "W_std"]), known)
    assert _field(error) == ["hyper_parameters[1]"]
    assert "it has: layers[0].dense.W_std, layers[0].dense.b_std" in str(error.value)
    with pytest.raises(InvalidRequest) as error:
        requests.hyper_parameters(ask(hyper_parameters=[known[0], known[0]]), known)
    assert _field(error) == ["hyper_parameters"]


def test_violations_move_under_a_prefix_together() -> None:
    error = InvalidRequest.of([("x1", "is required"), ("get[0]", "bad")]).within("requests[3]")
    assert error.violations == (("requests[3].x1", "is required"), ("requests[3].get[0]", "bad"))
    assert str(error) == "requests[3].x1: is required; requests[3].get[0]: bad"


@pytest.mark.parametrize("sent", ["nope", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "x" * (1 << 20)])
def test_an_id_of_another_form_is_refused_without_being_quoted(sent: str) -> None:
    with pytest.raises(requests.InvalidRequest) as raised:
        requests.require_id(sent)
    assert raised.value.field == "architecture_id"
    assert "32 lowercase hex digits" in raised.value.problem
    assert f"got {len(sent):,} characters" in raised.value.problem
    assert sent not in raised.value.problem
    assert requests.require_id("0123456789abcdef" * 2) == "0123456789abcdef" * 2
