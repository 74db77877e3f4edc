"""The call boundary of every RPC (KernelService and the inference protocol): request ids,
status codes, the log line, call metrics.

Every RPC gets a request id: the client's `x-request-id` metadata when it sends one, else
one made here. The id is in the call's log line, in the message of every error, and in the
call's trailing metadata (`x-request-id`), so a user holding an error and an operator
reading the log can find the same call.

Engine and request errors become gRPC statuses here and nowhere else (`status_for`), for
unary and streaming calls alike: every method of a servicer runs inside the servicer's
`Boundary` (`rpc` for unary methods, `stream_rpc` for streaming ones), which also takes the
admission slot of the compute calls, from the `Admission` it was given: a unary call's for
the whole call, a stream's (`Boundary.compute_slot`) only while it computes, so that a
stream waiting on its client holds none (it counts against its tenant's open streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from ntkserve import request_ids
from ntkserve_engine.kernels import EngineError
from ntkserve_engine.predict.factorization import FactorizationError

from ntkserve_server import auth, requests, statuses, wire
from ntkserve_server.admission import Admission, Busy
from ntkserve_server.model_store import UnknownModel
from ntkserve_server.registry import DEFAULT_TENANT, UnknownArchitecture
from ntkserve_server.stream_inputs import StreamIdle
from ntkserve_server.tile_programs import TileTooLarge

log = logging.getLogger("ntkserve.rpc")

Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[
    [Any, AsyncIterator[Any], grpc.aio.ServicerContext, "CallLog"], AsyncGenerator[Any, None]
]
StreamGrpcHandler = Callable[
    [Any, AsyncIterator[Any], grpc.aio.ServicerContext], AsyncIterator[Any]
]


class CallObserver(Protocol):
    """What watches calls end (the Prometheus metrics)."""

    def observe_call(self, method: str, code: str, seconds: float) -> None: ...


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's x-request-id, or a fresh one. A malformed id is INVALID_ARGUMENT (the
    call runs under a fresh id, so that its error and log line still have one)."""
    sent = [v for k, v in context.invocation_metadata() or () if k == request_ids.KEY]
    if not sent:
        return request_ids.new()
    value = sent[-1]
    if request_ids.is_valid(value):
        return value
    raise requests.InvalidRequest(f"metadata {request_ids.KEY}", f"must be {request_ids.RULE}")


def caller_tenant() -> str:
    """The caller's tenant. Read it on the event loop, in the handler: run_in_executor does
    not carry context variables into the worker thread, so pass it down from there."""
    return auth.current_tenant() or DEFAULT_TENANT


def _is_out_of_memory(error: Exception) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM" in text


def status_for(error: Exception, name: str, request_id: str = "") -> statuses.Status:
    """The status for an exception: the one place engine and request errors become codes.
    The message ends with the request id, when there is one; whatever the error quotes is
    bounded (`statuses`: every status fits in a client's trailers)."""
    suffix = f" (request id {request_id})" if request_id else ""
    if isinstance(error, FactorizationError):
        return statuses.plain(grpc.StatusCode.FAILED_PRECONDITION, str(error), suffix)
    if isinstance(error, (EngineError, requests.InvalidRequest)):
        return statuses.bad_request(error.violations, str(error), suffix)
    if isinstance(error, Busy):
        return statuses.retry(str(error), error.retry_seconds, suffix)
    if isinstance(error, (UnknownArchitecture, UnknownModel)):
        return statuses.plain(grpc.StatusCode.NOT_FOUND, str(error), suffix)
    if isinstance(error, StreamIdle):
        return statuses.plain(grpc.StatusCode.DEADLINE_EXCEEDED, str(error), suffix)
    if isinstance(error, (requests.OverLimit, TileTooLarge)):
        return statuses.plain(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), suffix)
    if _is_out_of_memory(error):
        return statuses.plain(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the device ran out of memory: {statuses.cut(str(error), statuses.QUOTE_BYTES)}; "
            "send fewer rows or stream in smaller tiles",
            suffix,
        )
    log.error("%s failed (request id %s)", name, request_id, exc_info=error)
    return statuses.plain(
        grpc.StatusCode.INTERNAL,
        f"internal error in {name}: {type(error).__name__}: {error}",
        suffix,
    )


def _forget_frames_soon(error: BaseException) -> None:
    """Drops what `error` holds (its traceback, hence the frames it passed through and their
    locals; the exceptions it chains) once its call has ended, on the loop's next turn.
    grpc keeps the AbortError of `context.abort` in the call's state, which that error's
    own frames reach: a reference cycle through which a failed call's request and decoded
    inputs would live on until a GC pass. (Frames are not cleared: one may belong to a
    coroutine still running, which clearing would close.)"""

    def forget() -> None:
        error.__traceback__ = error.__context__ = error.__cause__ = None

    asyncio.get_running_loop().call_soon(forget)


@dataclasses.dataclass
class CallLog:
    """One call: its request id, and at its end the log line (method, status code, duration,
    bytes in and out) and the observer's record."""

    method: str
    context: grpc.aio.ServicerContext
    observer: CallObserver | None = None
    start: float = dataclasses.field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    bytes_in: int = 0
    bytes_out: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    request_id: str = ""

    def begin(self) -> None:
        """Reads the request id (raising InvalidRequest for a malformed one) and echoes it in
        the trailing metadata of whatever ends the call."""
        try:
            self.request_id = request_id(self.context)
        finally:
            if not self.request_id:
                self.request_id = request_ids.new()
            self.context.set_trailing_metadata(((request_ids.KEY, self.request_id),))
        log.debug("rpc start method=%s request_id=%s", self.method, self.request_id)

    async def fail(self, error: BaseException) -> None:
        """Aborts the call with the status for `error` (raising AbortError); returns only for
        a call that has already ended (cancelled, aborted), which the caller re-raises."""
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):  # the caller left
            self.code = grpc.StatusCode.CANCELLED
        elif isinstance(error, grpc.aio.AbortError) or not isinstance(error, Exception):
            code = self.context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        else:
            status = status_for(error, self.method, self.request_id)
            self.code = status.code
            await self.context.abort(
                status.code,
                status.details,
                (*status.trailing_metadata, (request_ids.KEY, self.request_id)),
            )

    def write(self) -> None:
        seconds = time.perf_counter() - self.start
        fields = {
            "method": self.method,
            "code": self.code.name,
            "request_id": self.request_id,
            "ms": round(seconds * 1e3, 1),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            **self.extra,
        }
        log.info(
            "rpc %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra={"fields": fields}
        )
        if self.observer is not None:
            self.observer.observe_call(self.method, self.code.name, seconds)


class Servicer(Protocol):
    """A servicer whose methods `rpc` and `stream_rpc` wrap: its calls pass its `boundary`."""

    boundary: Boundary


@dataclasses.dataclass(frozen=True)
class Boundary:
    """The call boundary of one servicer's RPCs, every call shape: request id, decoding
    check, admission slot, error translation, log line, metrics.

    `admission` gives the slots that compute calls (`admitted=True`) run in (Busy if none is
    free); `observer`, when set, is told of every call's end."""

    admission: Admission
    observer: CallObserver | None = None

    @contextlib.asynccontextmanager
    async def call(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        *,
        admitted: bool,
        request: Any = None,
        stream: bool = False,
    ) -> AsyncIterator[CallLog]:
        """One call of `method`, its body run inside (the CallLog records what it sends).
        `request`: a unary call's request, checked decoded before a slot is taken; `stream`:
        an admitted stream counts as one of its tenant's open streams, and takes its
        compute slots itself (`compute_slot`)."""
        bytes_in = 0 if request is None else request.ByteSize()
        call = CallLog(method, context, self.observer, bytes_in=bytes_in)
        try:
            call.begin()
            if request is not None:
                wire.check_decoded(request)
            async with self._slot(admitted, stream):
                yield call
        except BaseException as e:
            try:
                await call.fail(e)
            except BaseException as aborted:
                _forget_frames_soon(aborted)
                raise
            finally:
                _forget_frames_soon(e)
            raise
        finally:
            call.write()

    def _slot(self, admitted: bool, stream: bool) -> contextlib.AbstractAsyncContextManager[None]:
        """An admission slot for a compute call (an open-stream count for a stream), on the
        event loop (where the caller's tenant is known), or nothing."""
        if not admitted:
            return contextlib.nullcontext()
        tenant = caller_tenant()
        return self.admission.open_stream(tenant) if stream else self.admission.slot(tenant)

    def compute_slot(self, tenant: str) -> contextlib.AbstractAsyncContextManager[None]:
        """An admission slot for a stream's compute, taken when it starts (Busy if none)."""
        return self.admission.slot(tenant)


def rpc(*, admitted: bool = False) -> Callable[[Handler], Handler]:
    """A unary method of a `Servicer`, run inside its boundary; `admitted`: in an admission
    slot (the compute calls)."""

    def wrap(method: Handler) -> Handler:
        @functools.wraps(method)
        async def unary(self: Servicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
            name = method.__name__
            async with self.boundary.call(
                name, context, admitted=admitted, request=request
            ) as call:
                response = await method(self, request, context)
                call.bytes_out = response.ByteSize()
                return response

        return unary

    return wrap


def stream_rpc(*, admitted: bool = False) -> Callable[[StreamHandler], StreamGrpcHandler]:
    """A streaming method of a `Servicer`, run inside its boundary. The method gets the
    request messages checked decoded (`wire.decoded`), and the call's CallLog, to record
    the bytes it moved and what its log line should add (`bytes_in`, `bytes_out`, `extra`).
    `admitted`: the call counts as an open stream of its tenant, and the method takes
    `self.boundary.compute_slot(tenant)` around its compute (not while it waits on its
    client)."""

    def wrap(method: StreamHandler) -> StreamGrpcHandler:
        @functools.wraps(method)
        async def streaming(
            self: Servicer, messages: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async with self.boundary.call(
                method.__name__, context, admitted=admitted, stream=True
            ) as call:
                responses = method(self, wire.decoded(messages), context, call)
                async with contextlib.aclosing(responses):  # ended before the log line
                    async for response in responses:
                        yield response

        return streaming

    return wrap
