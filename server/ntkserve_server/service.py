"""The KernelService servicer: the one place engine errors become gRPC status codes.

Each RPC decodes and validates its request, runs jax work on the worker pool (never on the
event loop), and logs one line: method, status code, duration, bytes in and out.
INVALID_ARGUMENT carries a google.rpc.BadRequest with one field violation per problem.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from ntkserve import tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc

from ntkserve_server import auth, requests, statuses, streaming
from ntkserve_server.admission import Admission, Busy
from ntkserve_server.batching import DynamicBatcher
from ntkserve_server.compute import Compiled, ComputeEngine
from ntkserve_server.kernels import EngineError, KernelFn
from ntkserve_server.registry import DEFAULT_TENANT, Record, Registry
from ntkserve_server.tile_programs import TilePrograms, TileTooLarge

log = logging.getLogger("ntkserve.rpc")
# Requests and responses this small are decoded and encoded on the event loop: for them a
# hop to a worker thread costs more than the work (measured: ~0.4 ms of a ~1 ms small call).
INLINE_BYTES = 1 << 16
_T = TypeVar("_T")


class UnknownArchitecture(LookupError):
    """No such id *for the caller*: also what another tenant's id gets. NOT_FOUND, never
    PERMISSION_DENIED, so that a tenant cannot probe which ids other tenants registered
    (an id is a hash of the network: a denial would tell that someone uses that network)."""

    def __init__(self, architecture_id: str, hint: str = "") -> None:
        super().__init__(f"no architecture with id {architecture_id!r}{hint}")


def _kernel_shape(compiled: Compiled, inputs: requests.KernelInputs) -> tuple[int, ...]:
    return compiled.kfn.kernel_shape(
        inputs.x1.shape, None if inputs.x2 is None else inputs.x2.shape
    )


def _tenant() -> str:
    """The caller's tenant. Read it on the event loop, in the handler: run_in_executor does
    not carry context variables into the worker thread, so pass it down from here."""
    return auth.current_tenant() or DEFAULT_TENANT


def _is_out_of_memory(error: Exception) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM" in text


def _status_for(error: Exception, name: str) -> statuses.Status:
    """The status for an exception: the one place engine and request errors become codes."""
    if isinstance(error, (EngineError, requests.InvalidRequest)):
        return statuses.bad_request(error.violations, str(error))
    if isinstance(error, Busy):
        return statuses.retry(str(error), error.retry_seconds)
    if isinstance(error, UnknownArchitecture):
        return statuses.Status(grpc.StatusCode.NOT_FOUND, str(error))
    if isinstance(error, (requests.OverLimit, TileTooLarge)):
        return statuses.Status(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    if _is_out_of_memory(error):
        return statuses.Status(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the device ran out of memory: {error}; send fewer rows or stream in smaller tiles",
        )
    log.error("%s failed", name, exc_info=error)
    return statuses.Status(
        grpc.StatusCode.INTERNAL, f"internal error in {name}: {type(error).__name__}: {error}"
    )


@dataclasses.dataclass
class _CallLog:
    """The per-call log line: method, status code, duration, bytes in and out."""

    method: str
    start: float = dataclasses.field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    bytes_in: int = 0
    bytes_out: int = 0
    extra: str = ""

    def __post_init__(self) -> None:
        log.debug("rpc start method=%s", self.method)

    async def fail(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        """Aborts the call with the status for `error` (raising AbortError); returns only for
        a call that has already ended (cancelled, aborted), which the caller re-raises."""
        if isinstance(error, (asyncio.CancelledError, GeneratorExit)):  # the caller left
            self.code = grpc.StatusCode.CANCELLED
        elif isinstance(error, grpc.aio.AbortError) or not isinstance(error, Exception):
            code = context.code()
            self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        else:
            status = _status_for(error, self.method)
            self.code = status.code
            await context.abort(status.code, status.details, status.trailing_metadata)

    def write(self) -> None:
        log.info(
            "rpc method=%s code=%s ms=%.1f bytes_in=%d bytes_out=%d%s",
            self.method,
            self.code.name,
            (time.perf_counter() - self.start) * 1e3,
            self.bytes_in,
            self.bytes_out,
            self.extra,
        )


def rpc(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Error translation and the per-call log line for one unary RPC."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _CallLog(name, bytes_in=request.ByteSize())
        try:
            response = await method(self, request, context)
            call.bytes_out = response.ByteSize()
            return response
        except BaseException as e:
            await call.fail(e, context)
            raise
        finally:
            call.write()

    return wrapper


def admitted(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Runs a unary compute RPC in one of the admission control's slots (Busy if none)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with self._admission.slot(_tenant()):
            return await method(self, request, context)

    return wrapper


def _record_message(record: Record) -> ks.ArchitectureRecord:
    return ks.ArchitectureRecord(
        architecture_id=record.id,
        architecture=record.architecture,
        create_time=record.create_time,
    )


def _encoded(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    return {n: tensor.encode(v, n) for n, v in zip(names, values, strict=True)}


class KernelService(kernel_service_pb2_grpc.KernelServiceServicer):
    def __init__(
        self,
        registry: Registry,
        engine: ComputeEngine,
        executor: Executor,
        programs: TilePrograms,
        batcher: DynamicBatcher,
        *,
        devices: Sequence[Any],
        max_stream_input_bytes: int,
        admission: Admission,
        max_tensor_elements: int = 0,
        max_unary_kernel_entries: int = 0,
    ) -> None:
        # Every registry call is keyed by the caller's tenant (`_tenant()`), and every id is
        # checked against the tenant's registrations before the engine's compiled cache,
        # which is shared by id across tenants (same id, same network), is used.
        self._registry = registry
        self._engine = engine
        self._executor = executor
        self._programs = programs
        self._batcher = batcher
        self._devices = tuple(devices)
        self._max_stream_input_bytes = max_stream_input_bytes
        self._admission = admission
        self._max_elements = max_tensor_elements
        self._max_entries = max_unary_kernel_entries

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _compiled(self, tenant: str, architecture_id: str) -> Compiled:
        """The tenant's architecture, compiled (blocking: a worker thread)."""
        if not self._registry.holds(tenant, architecture_id):
            raise UnknownArchitecture(architecture_id, "; register it first")
        found = self._engine.lookup(architecture_id)
        if found is not None:
            return found
        record = self._registry.get(tenant, architecture_id)
        if record is None:  # deleted since `holds`
            raise UnknownArchitecture(architecture_id, "; register it first")
        return self._engine.compiled(KernelFn(record.architecture))

    async def _resolve(self, tenant: str, architecture_id: str) -> Compiled:
        """`_compiled`, without a thread hop when the tenant is known to hold the id and it
        is compiled already (the common case of small calls)."""
        if self._registry.known(tenant, architecture_id):
            found = self._engine.lookup(architecture_id)
            if found is not None:
                return found
        return await self._run(self._compiled, tenant, architecture_id)

    def _delete(self, tenant: str, architecture_id: str) -> bool:
        """Deletes the tenant's registration; the compiled architecture is dropped only when
        no other tenant holds it (blocking)."""
        if not self._registry.delete(tenant, architecture_id):
            return False
        if not self._registry.anyone_holds(architecture_id):
            self._engine.forget(architecture_id)
        return True

    @rpc
    async def RegisterArchitecture(
        self, request: ks.RegisterArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.RegisterArchitectureResponse:
        if not request.HasField("architecture"):
            raise requests.InvalidRequest("architecture", "is required")
        tenant = _tenant()
        kfn = await self._run(KernelFn, request.architecture)
        created, _ = await self._run(self._registry.put, tenant, kfn.id, kfn.architecture)
        self._engine.compiled(kfn)
        return ks.RegisterArchitectureResponse(architecture_id=kfn.id, created=created)

    @rpc
    async def GetArchitecture(
        self, request: ks.GetArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.GetArchitectureResponse:
        architecture_id = requests.require_id(request.architecture_id)
        record = await self._run(self._registry.get, _tenant(), architecture_id)
        if record is None:
            raise UnknownArchitecture(architecture_id)
        return ks.GetArchitectureResponse(record=_record_message(record))

    @rpc
    async def ListArchitectures(
        self, request: ks.ListArchitecturesRequest, context: grpc.aio.ServicerContext
    ) -> ks.ListArchitecturesResponse:
        records = await self._run(self._registry.list, _tenant())
        return ks.ListArchitecturesResponse(records=[_record_message(r) for r in records])

    @rpc
    async def DeleteArchitecture(
        self, request: ks.DeleteArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.DeleteArchitectureResponse:
        architecture_id = requests.require_id(request.architecture_id)
        if not await self._run(self._delete, _tenant(), architecture_id):
            raise UnknownArchitecture(architecture_id)
        return ks.DeleteArchitectureResponse()

    @rpc
    @admitted
    async def ComputeKernel(
        self, request: ks.ComputeKernelRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeKernelResponse:
        tenant = _tenant()
        if len(request.x1.data) + len(request.x2.data) <= INLINE_BYTES:
            inputs = requests.kernel_inputs(request, self._max_elements)
        else:  # NaN scans are O(bytes)
            inputs = await self._run(requests.kernel_inputs, request, self._max_elements)
        compiled = await self._resolve(tenant, inputs.architecture_id)
        self._entries(compiled, inputs)
        return await self._kernel(compiled, inputs)

    @rpc
    @admitted
    async def ComputeValueAndGrad(
        self, request: ks.ComputeValueAndGradRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeValueAndGradResponse:
        tenant = _tenant()
        inputs = await self._run(requests.kernel_inputs, request, self._max_elements)
        compiled = await self._resolve(tenant, inputs.architecture_id)
        shape = _kernel_shape(compiled, inputs)
        requests.check_entries(shape, inputs.get, self._max_entries)
        cotangents = await self._run(
            requests.cotangents, request, inputs, shape, self._max_elements
        )
        hyper = requests.hyper_parameters(request, compiled.kfn.hyper_parameter_paths)

        def compute() -> ks.ComputeValueAndGradResponse:
            values, g1, g2, g_hyper = self._engine.value_and_grad(
                compiled, inputs.x1, inputs.x2, inputs.get, cotangents, hyper
            )
            response = ks.ComputeValueAndGradResponse(
                grad_x1=tensor.encode(g1, "grad_x1"),
                hyper_parameter_grads=g_hyper,
                **_encoded(inputs.get, values),
            )
            if g2 is not None:
                response.grad_x2.CopyFrom(tensor.encode(g2, "grad_x2"))
            return response

        return await self._run(compute)

    @rpc
    @admitted
    async def ComputeKernelBatch(
        self, request: ks.ComputeKernelBatchRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeKernelBatchResponse:
        tenant = _tenant()
        items, entries = [], 0
        for i, item in enumerate(request.requests):
            try:
                requests.check_elements(item, ("x1", "x2"), self._max_elements)
                inputs = await self._run(requests.kernel_inputs, item)
                compiled = await self._resolve(tenant, inputs.architecture_id)
                compiled.kfn.check_inputs(
                    inputs.x1.shape, None if inputs.x2 is None else inputs.x2.shape, inputs.x1.dtype
                )
            except (requests.InvalidRequest, EngineError) as e:
                raise requests.InvalidRequest.within(f"requests[{i}]", e.violations) from e
            except requests.OverLimit as e:
                raise requests.OverLimit(f"requests[{i}].{e}") from e
            entries += self._entries(compiled, inputs, f"requests[{i}]'s kernel")
            items.append((inputs, compiled))
        requests.check_entries((entries,), ("all",), self._max_entries, "the batch's kernels")
        responses = await asyncio.gather(*(self._kernel(c, x) for x, c in items))
        return ks.ComputeKernelBatchResponse(responses=responses)

    def _entries(
        self, compiled: Compiled, inputs: requests.KernelInputs, what: str = "the kernel"
    ) -> int:
        return requests.check_entries(
            _kernel_shape(compiled, inputs), inputs.get, self._max_entries, what
        )

    async def _kernel(
        self, compiled: Compiled, inputs: requests.KernelInputs
    ) -> ks.ComputeKernelResponse:
        """Through the dynamic batcher: concurrent small calls share one device call."""
        values = await self._batcher.kernel(compiled, inputs.x1, inputs.x2, inputs.get)

        def encode() -> ks.ComputeKernelResponse:
            return ks.ComputeKernelResponse(**_encoded(inputs.get, values))

        if sum(v.nbytes for v in values) <= INLINE_BYTES:
            return encode()
        return await self._run(encode)

    async def StreamKernel(
        self,
        request_iterator: AsyncIterator[ks.StreamKernelRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ks.StreamKernelResponse]:
        call = _CallLog("StreamKernel")
        tenant = _tenant()  # here, on the event loop: the stream's workers are threads
        stats = streaming.StreamStats()

        def expired() -> bool:
            remaining = context.time_remaining()
            return remaining is not None and remaining <= 0

        try:
            async with self._admission.slot(tenant):
                async for message in streaming.stream_kernel(
                    request_iterator,
                    functools.partial(self._compiled, tenant),
                    self._programs,
                    self._executor,
                    self._devices,
                    self._max_stream_input_bytes,
                    expired,
                    stats,
                ):
                    yield message
        except BaseException as e:
            await call.fail(e, context)
            raise
        finally:
            call.bytes_in, call.bytes_out = stats.bytes_in, stats.bytes_out
            computed = ",".join(f"{d}:{n}" for d, n in sorted(stats.computed.items()))
            call.extra = (
                f" tiles={stats.tiles_done}/{stats.tiles_planned} computed={computed}"
                f" tile_programs_compiled={self._programs.compilations}"
            )
            call.write()
