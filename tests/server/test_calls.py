"""calls, in process: a grpc.aio server on 127.0.0.1 port 0 inside the test, whose methods
are wrapped by `calls.rpc` (`admitted=True`: in an admission slot) and raise what the test
asks for. Each error
becomes its status code with the field path in a BadRequest, the request id is echoed (or
made, or refused when malformed), and the observer hears every call's end."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ntkserve import request_ids
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve_engine.kernels.errors import ArchitectureError
from ntkserve_server import calls, requests
from ntkserve_server.admission import Admission, Busy
from ntkserve_server.registry import UnknownArchitecture
from ntkserve_server.tile_programs import TileTooLarge

SERVICE = "test.Probe"
METHOD = f"/{SERVICE}/Call"
ERRORS: dict[str, Exception] = {
    "invalid": requests.InvalidRequest("x1.shape", "expected (batch, *features)"),
    "engine": ArchitectureError([("architecture.layers[1].dense.out_dim", "must be >= 1")]),
    "over": requests.OverLimit("x1", "shape [9, 9] holds 81 elements, over this server's limit"),
    "tile": TileTooLarge("a 64 x 64 tile needs 9 MiB"),
    "unknown": UnknownArchitecture("abc"),
    "busy": Busy("the server is busy", 2.5),
    "oom": RuntimeError("RESOURCE_EXHAUSTED: Out of memory while allocating 9 GiB"),
    "bug": KeyError("boom"),
}


class Recorder:
    """A CallObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        self.calls.append((method, code, seconds))


class Probe:
    """A servicer of one unary method: raises ERRORS[architecture_id], or answers."""

    def __init__(self, admission: Admission | None = None) -> None:
        self.observer = Recorder()
        self.boundary = calls.Boundary(admission or Admission(1, 0), self.observer)
        self.release = asyncio.Event()

    @calls.rpc()
    async def Call(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.architecture_id in ERRORS:
            raise ERRORS[request.architecture_id]
        return ks.GetArchitectureResponse()

    @calls.rpc(admitted=True)
    async def Held(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Holds its admission slot until `release` is set."""
        await self.release.wait()
        return ks.GetArchitectureResponse()


Check = Callable[[grpc.aio.Channel, Probe], Awaitable[None]]


def _serve(check: Check, probe: Probe | None = None) -> Probe:
    """Runs `check` against an in-process server of `probe` on a free loopback port."""
    probe = probe or Probe()

    async def main() -> None:
        server = grpc.aio.server()
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(probe, name),
                request_deserializer=ks.GetArchitectureRequest.FromString,
                response_serializer=ks.GetArchitectureResponse.SerializeToString,
            )
            for name in ("Call", "Held")
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await check(channel, probe)
        finally:
            await server.stop(None)

    asyncio.run(main())
    return probe


async def _call(
    channel: grpc.aio.Channel,
    architecture_id: str,
    metadata: tuple[tuple[str, str], ...] = (),
    method: str = METHOD,
) -> grpc.aio.AioRpcError | tuple[tuple[str, str], ...]:
    """The call's error, or (when it succeeds) its trailing metadata."""
    call = channel.unary_unary(
        method,
        request_serializer=ks.GetArchitectureRequest.SerializeToString,
        response_deserializer=ks.GetArchitectureResponse.FromString,
    )(ks.GetArchitectureRequest(architecture_id=architecture_id), metadata=metadata, timeout=30)
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e
    return tuple((k, v) for k, v in await call.trailing_metadata() or ())


def _error(outcome: Any) -> grpc.aio.AioRpcError:
    assert isinstance(outcome, grpc.aio.AioRpcError), f"the call succeeded: {outcome}"
    return outcome


def _field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The BadRequest's (field, description) pairs; none without a google.rpc.Status."""
    status = rpc_status.from_call(error)
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def _trailing_id(error: grpc.aio.AioRpcError) -> str:
    (value,) = [v for k, v in error.trailing_metadata() or () if k == request_ids.KEY]
    return str(value)


@pytest.mark.parametrize(
    ("case", "code", "fields"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, ["x1.shape"]),
        ("engine", grpc.StatusCode.INVALID_ARGUMENT, ["architecture.layers[1].dense.out_dim"]),
        ("over", grpc.StatusCode.RESOURCE_EXHAUSTED, []),
        ("tile", grpc.StatusCode.RESOURCE_EXHAUSTED, []),
        ("unknown", grpc.StatusCode.NOT_FOUND, []),
        ("busy", grpc.StatusCode.RESOURCE_EXHAUSTED, []),
        ("oom", grpc.StatusCode.RESOURCE_EXHAUSTED, []),
        ("bug", grpc.StatusCode.INTERNAL, []),
    ],
)
def test_each_error_becomes_its_status_with_its_field_path_and_the_request_id(
    case: str, code: grpc.StatusCode, fields: list[str]
) -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        error = _error(await _call(channel, case, ((request_ids.KEY, f"id-{case}"),)))
        assert error.code() == code, error.details()
        assert [field for field, _ in _field_violations(error)] == fields
        assert error.details().endswith(f"(request id id-{case})"), error.details()
        assert str(ERRORS[case]).strip("'") in error.details()
        assert _trailing_id(error) == f"id-{case}"

    probe = _serve(check)
    assert [(m, c) for m, c, _ in probe.observer.calls] == [("Call", code.name)]


def test_an_internal_error_names_the_method_and_the_exception_type() -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        error = _error(await _call(channel, "bug"))
        assert error.details().startswith("internal error in Call: KeyError: 'boom'")

    _serve(check)


def test_out_of_memory_says_to_send_less() -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        error = _error(await _call(channel, "oom"))
        assert error.details().startswith("the device ran out of memory: ")
        assert "send fewer rows or stream in smaller tiles" in error.details()

    _serve(check)


def test_busy_carries_its_retry_delay() -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        status = rpc_status.from_call(_error(await _call(channel, "busy")))
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details)
        assert retry.retry_delay.ToNanoseconds() == 2_500_000_000

    _serve(check)


def test_a_call_that_succeeds_echoes_the_callers_request_id() -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        trailers = await _call(channel, "fine", ((request_ids.KEY, "run-7/step:3"),))
        assert trailers == ((request_ids.KEY, "run-7/step:3"),)

    probe = _serve(check)
    ((method, code, seconds),) = probe.observer.calls
    assert (method, code) == ("Call", "OK") and seconds >= 0


def test_a_call_without_a_request_id_gets_a_fresh_one() -> None:
    seen: list[str] = []

    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        for _ in range(2):
            trailers = await _call(channel, "fine")
            assert isinstance(trailers, tuple)
            (value,) = [v for k, v in trailers if k == request_ids.KEY]
            seen.append(value)

    _serve(check)
    assert all(re.fullmatch(r"[0-9a-f]{16}", value) for value in seen), seen
    assert seen[0] != seen[1]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quote"d', "line\\nbreak"])
def test_a_malformed_request_id_is_invalid_argument_under_a_fresh_id(bad: str) -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        error = _error(await _call(channel, "fine", ((request_ids.KEY, bad),)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in _field_violations(error)] == [f"metadata {request_ids.KEY}"]
        fresh = _trailing_id(error)
        assert re.fullmatch(r"[0-9a-f]{16}", fresh)
        assert error.details().endswith(f"(request id {fresh})")

    probe = _serve(check)
    assert [c for _, c, _ in probe.observer.calls] == ["INVALID_ARGUMENT"]


def test_admitted_calls_past_the_limit_are_refused_with_a_retry_delay() -> None:
    async def check(channel: grpc.aio.Channel, probe: Probe) -> None:
        held = asyncio.ensure_future(_call(channel, "fine", method=f"/{SERVICE}/Held"))
        admission = probe.boundary.admission
        for _ in range(1000):  # until the first call holds the one slot
            if admission.running:
                break
            await asyncio.sleep(0.01)
        assert admission.running == 1
        refused = _error(await _call(channel, "fine", method=f"/{SERVICE}/Held"))
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the server is busy" in refused.details()
        probe.release.set()
        assert isinstance(await held, tuple)
        assert admission.running == 0

    probe = _serve(check, Probe(Admission(max_running=1, max_queue=0)))
    assert sorted(c for _, c, _ in probe.observer.calls) == ["OK", "RESOURCE_EXHAUSTED"]


def test_status_for_is_the_one_mapping_of_errors_to_codes() -> None:
    assert calls.status_for(ERRORS["invalid"], "M").code == grpc.StatusCode.INVALID_ARGUMENT
    assert calls.status_for(ERRORS["unknown"], "M", "r1").details.endswith("(request id r1)")
    assert calls.status_for(ERRORS["bug"], "M").code == grpc.StatusCode.INTERNAL
