"""Fuzzed requests against a real server: raw bytes and valid requests with fields mutated.

Whatever arrives, the answer is a status a client can act on, never INTERNAL or UNKNOWN,
and the server keeps computing (the targets are in `tests/fuzz_requests.py`). Examples are
derandomized so CI is reproducible; `python -m tests.fuzz_requests` fuzzes at random for
as long as you like.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.fuzz_requests import INFERENCE_METHODS, INFERENCE_SERVICE, METHODS, RequestFuzzer

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RequestFuzzer]:
    # Small cost budgets too, so mutated requests also meet the cost admission's refusals.
    proc = ServerProcess(
        tmp_path_factory.mktemp("fuzz-data"),
        "--max-tensor-elements=100000",
        "--max-program-ops=20000",
        "--max-call-memory-mb=64",
        "--max-call-seconds=0.002",
    )
    fuzzer = RequestFuzzer(proc.target)
    yield fuzzer
    fuzzer.check_alive()
    fuzzer.close()
    assert proc.terminate() == 0, proc.log_text()[-3000:]


@settings(FUZZ, max_examples=1000)
@given(data=st.binary(max_size=300))
def test_raw_request_bytes(fuzzer: RequestFuzzer, data: bytes) -> None:
    fuzzer.raw(data)


def test_undecodable_bytes_are_invalid_argument(fuzzer: RequestFuzzer) -> None:
    for method in METHODS:
        code = fuzzer.send_raw(method, [b"\x0a\xff\xff\xff\x0f"])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, method


def _codes(
    fuzzer: RequestFuzzer, target: Callable[[st.DrawFn], grpc.StatusCode], examples: int
) -> dict[grpc.StatusCode, int]:
    """Runs `target` on `examples` derandomized draws; how often each status came back.
    The server must still compute afterwards."""
    codes: dict[grpc.StatusCode, int] = {}

    @settings(FUZZ, max_examples=examples)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        code = target(data.draw)
        codes[code] = codes.get(code, 0) + 1

    run()
    fuzzer.check_alive()
    print({c.name: n for c, n in codes.items()})
    return codes


@pytest.mark.parametrize("method", METHODS)
def test_mutated_requests(fuzzer: RequestFuzzer, method: str) -> None:
    codes = _codes(fuzzer, lambda draw: fuzzer.mutated(method, draw), 150)
    if method not in ("ListArchitectures", "ListModels"):  # no field that can be wrong
        assert grpc.StatusCode.INVALID_ARGUMENT in codes or grpc.StatusCode.NOT_FOUND in codes


def test_undecodable_inference_requests_are_invalid_argument(fuzzer: RequestFuzzer) -> None:
    for method in INFERENCE_METHODS:
        code = fuzzer.send_raw(method, [b"\x0a\xff\xff\xff\x0f"], INFERENCE_SERVICE)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, method


@pytest.mark.parametrize("method", ["ModelInfer", "ModelReady", "ModelMetadata"])
def test_mutated_inference_requests(fuzzer: RequestFuzzer, method: str) -> None:
    examples = 150 if method == "ModelInfer" else 40
    codes = _codes(fuzzer, lambda draw: fuzzer.inference(method, draw), examples)
    if method != "ModelReady":  # an unknown model is not ready: never an error
        assert grpc.StatusCode.INVALID_ARGUMENT in codes or grpc.StatusCode.NOT_FOUND in codes
    if method == "ModelInfer":
        assert grpc.StatusCode.OK in codes  # some mutations keep a valid request


def test_mutated_architectures_computed(fuzzer: RequestFuzzer) -> None:
    codes = _codes(fuzzer, fuzzer.architecture, 100)
    assert codes.get(grpc.StatusCode.OK, 0) >= 5  # enough of them reached the device
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # and some met the cost admission
