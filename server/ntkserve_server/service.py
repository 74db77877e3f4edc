"""The KernelService servicer: each RPC decodes and validates its request and runs jax work
on the worker pool (never on the event loop).

Request ids, status codes, admission slots, log lines and call metrics are the call
boundary's (`calls.Boundary`), for every method.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from ntkserve import tensor
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc
from ntkserve_engine.kernels import EngineError, KernelFn

from ntkserve_server import requests, streaming
from ntkserve_server.admission import Admission
from ntkserve_server.batching import DynamicBatcher
from ntkserve_server.calls import Boundary, CallLog, CallObserver, caller_tenant, rpc, stream_rpc
from ntkserve_server.compute import CheckedInputs, Compiled, ComputeEngine, check, value_and_grad
from ntkserve_server.registry import Record, Registry, UnknownArchitecture
from ntkserve_server.tile_programs import TilePrograms

# Requests and responses this small are decoded and encoded on the event loop: for them a
# hop to a worker thread costs more than the work (measured: ~0.4 ms of a ~1 ms small call).
INLINE_BYTES = 1 << 16
_T = TypeVar("_T")


def _checked(compiled: Compiled, inputs: requests.KernelInputs) -> CheckedInputs:
    """The request's inputs checked against the network once (InputError if they do not fit:
    a rank-0 x1, say, is INVALID_ARGUMENT, not an IndexError), for everything after."""
    patterns = (inputs.pattern1, inputs.pattern2)
    return check(compiled, inputs.x1, inputs.x2, inputs.get, inputs.mask_constant, patterns)


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
        stream_idle_seconds: float = 60.0,
        max_tensor_elements: int = 0,
        max_unary_kernel_entries: int = 0,
        max_response_bytes: int = 0,
        observer: CallObserver | None = None,
    ) -> None:
        # Every registry call is keyed by the caller's tenant (`caller_tenant()`), and every id is
        # checked against the tenant's registrations before the engine's compiled cache,
        # which is shared by id across tenants (same id, same network) unless the engine
        # isolates tenants (--isolate-tenant-caches; compiled_state.py says the trade), is used.
        self._registry = registry
        self._engine = engine
        self._executor = executor
        self._tile_programs = programs
        self._batcher = batcher
        self.streams = streaming.StreamServer(
            programs, executor, tuple(devices), max_stream_input_bytes, stream_idle_seconds
        )
        # Unary programs: compiled ahead of time, admitted by cost (compile size, memory,
        # estimated time), run so that a caller who leaves holds its slot until the device is free.
        self.unary = batcher.programs
        self.work = batcher.work
        self.max_elements = max_tensor_elements
        self.max_entries = max_unary_kernel_entries
        # The largest message the server may send (its --max-message-mb): a kernel that
        # would not fit is refused before it is computed, with a way out (0: no check).
        self.max_response_bytes = max_response_bytes
        self.boundary = Boundary(admission, observer)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` on the worker pool (jax work and blocking I/O never on the loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def compiled(self, tenant: str, architecture_id: str) -> Compiled:
        """The tenant's architecture, compiled (blocking: a worker thread)."""
        if not self._registry.holds(tenant, architecture_id):
            raise UnknownArchitecture(architecture_id, "; register it first")
        found = self._engine.lookup(architecture_id, tenant)
        if found is not None:
            return found
        record = self._registry.get(tenant, architecture_id)
        if record is None:  # deleted since `holds`
            raise UnknownArchitecture(architecture_id, "; register it first")
        return self._engine.compiled(KernelFn(record.architecture), tenant)

    async def _resolve(self, tenant: str, architecture_id: str) -> Compiled:
        """`_compiled`, without a thread hop when the tenant is known to hold the id and it
        is compiled already (the common case of small calls)."""
        if self._registry.known(tenant, architecture_id):
            found = self._engine.lookup(architecture_id, tenant)
            if found is not None:
                return found
        return await self.run(self.compiled, tenant, architecture_id)

    async def holds(self, architecture_id: str) -> bool:
        """Whether the caller's tenant has registered `architecture_id`."""
        tenant = caller_tenant()
        if self._registry.known(tenant, architecture_id):
            return True
        return await self.run(self._registry.holds, tenant, architecture_id)

    def _delete(self, tenant: str, architecture_id: str) -> bool:
        """Deletes the tenant's registration; the compiled architecture is dropped only when
        no other tenant holds it (blocking)."""
        if not self._registry.delete(tenant, architecture_id):
            return False
        if not self._registry.anyone_holds(architecture_id):
            self._engine.forget(architecture_id)
        return True

    @rpc()
    async def RegisterArchitecture(
        self, request: ks.RegisterArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.RegisterArchitectureResponse:
        if not request.HasField("architecture"):
            raise requests.InvalidRequest("architecture", "is required")
        kfn = await self.run(KernelFn, request.architecture)
        created = await self.register(caller_tenant(), kfn)
        return ks.RegisterArchitectureResponse(architecture_id=kfn.id, created=created)

    async def register(self, tenant: str, kfn: KernelFn) -> bool:
        """Stores the tenant's architecture (durable when it returns) and compiles it;
        whether it was new. Refused first if its programs could never be built."""
        self.unary.check_layers(kfn)  # refused now, not acknowledged and then never compiled
        created, _ = await self.run(self._registry.put, tenant, kfn.id, kfn.architecture)
        await self.run(self._engine.compiled, kfn, tenant)  # bounded: compiled_state.py
        return created

    @rpc()
    async def GetArchitecture(
        self, request: ks.GetArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.GetArchitectureResponse:
        architecture_id = requests.require_id(request.architecture_id)
        record = await self.run(self._registry.get, caller_tenant(), architecture_id)
        if record is None:
            raise UnknownArchitecture(architecture_id)
        return ks.GetArchitectureResponse(record=_record_message(record))

    @rpc()
    async def ListArchitectures(
        self, request: ks.ListArchitecturesRequest, context: grpc.aio.ServicerContext
    ) -> ks.ListArchitecturesResponse:
        records = await self.run(self._registry.list, caller_tenant())
        return ks.ListArchitecturesResponse(records=[_record_message(r) for r in records])

    @rpc()
    async def DeleteArchitecture(
        self, request: ks.DeleteArchitectureRequest, context: grpc.aio.ServicerContext
    ) -> ks.DeleteArchitectureResponse:
        architecture_id = requests.require_id(request.architecture_id)
        if not await self.run(self._delete, caller_tenant(), architecture_id):
            raise UnknownArchitecture(architecture_id)
        return ks.DeleteArchitectureResponse()

    @rpc(admitted=True)
    async def ComputeKernel(
        self, request: ks.ComputeKernelRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeKernelResponse:
        return await self.compute_kernel(request)

    async def compute_kernel(self, request: ks.ComputeKernelRequest) -> ks.ComputeKernelResponse:
        """ComputeKernel's work, for the caller's tenant, inside a call boundary and an
        admission slot that the caller holds (ComputeKernel's, or the inference protocol's
        ModelInfer's)."""
        tenant = caller_tenant()
        if len(request.x1.data) + len(request.x2.data) <= INLINE_BYTES:
            inputs = requests.kernel_inputs(request, self.max_elements)
        else:  # NaN scans are O(bytes)
            inputs = await self.run(requests.kernel_inputs, request, self.max_elements)
        checked = _checked(await self._resolve(tenant, inputs.architecture_id), inputs)
        self._entries(checked)
        return await self._kernel(checked, tenant)

    @rpc(admitted=True)
    async def ComputeValueAndGrad(
        self, request: ks.ComputeValueAndGradRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeValueAndGradResponse:
        tenant = caller_tenant()
        inputs = await self.run(requests.kernel_inputs, request, self.max_elements)
        compiled = await self._resolve(tenant, inputs.architecture_id)
        checked = _checked(compiled, inputs)
        shape = checked.kernel_shape
        entries = requests.check_entries(shape, inputs.get, self.max_entries)
        grads = inputs.x1.nbytes + (0 if inputs.x2 is None else inputs.x2.nbytes)
        requests.check_response_bytes(
            entries * inputs.x1.dtype.itemsize + grads, self.max_response_bytes, "the response"
        )
        cotangents = await self.run(requests.cotangents, request, inputs, shape, self.max_elements)
        hyper = requests.hyper_parameters(request, compiled.kfn.hyper_parameter_paths)
        forward = await self.unary.forward(checked, tenant)
        gradient = await self.unary.grads(checked, tenant, bool(hyper))

        def compute() -> ks.ComputeValueAndGradResponse:
            values, g1, g2, g_hyper = value_and_grad(
                checked, cotangents, hyper, (forward.executable, gradient.executable)
            )
            response = ks.ComputeValueAndGradResponse(
                grad_x1=tensor.encode(g1, "grad_x1"),
                hyper_parameter_grads=g_hyper,
                **_encoded(inputs.get, values),
            )
            if g2 is not None:
                response.grad_x2.CopyFrom(tensor.encode(g2, "grad_x2"))
            return response

        return await self.work.run(compute)

    @rpc(admitted=True)
    async def ComputeKernelBatch(
        self, request: ks.ComputeKernelBatchRequest, context: grpc.aio.ServicerContext
    ) -> ks.ComputeKernelBatchResponse:
        tenant = caller_tenant()
        items, entries, payload = [], 0, 0
        for i, item in enumerate(request.requests):
            try:
                inputs = await self.run(requests.kernel_inputs, item, self.max_elements)
                checked = _checked(await self._resolve(tenant, inputs.architecture_id), inputs)
                item_entries = self._entries(checked)
                await self.unary.forward(checked, tenant)  # every item admitted before any runs
            except (requests.InvalidRequest, requests.OverLimit, EngineError) as e:
                raise e.within(f"requests[{i}]") from e
            entries += item_entries
            payload += item_entries * inputs.x1.dtype.itemsize
            items.append(checked)
        requests.check_entries((entries,), ("all",), self.max_entries, "the batch's kernels")
        requests.check_response_bytes(payload, self.max_response_bytes, "the batch's response")
        responses = await asyncio.gather(*(self._kernel(checked, tenant) for checked in items))
        return ks.ComputeKernelBatchResponse(responses=responses)

    def _entries(self, inputs: CheckedInputs) -> int:
        """The entries of a unary kernel of these inputs, within the entry and message limits."""
        entries = requests.check_entries(inputs.kernel_shape, inputs.get, self.max_entries)
        requests.check_response_bytes(
            entries * inputs.x1.dtype.itemsize, self.max_response_bytes, "the kernel"
        )
        return entries

    async def _kernel(self, inputs: CheckedInputs, tenant: str) -> ks.ComputeKernelResponse:
        """Through the dynamic batcher: concurrent small calls share one device call."""
        values = await self._batcher.kernel(inputs, tenant)

        def encode() -> ks.ComputeKernelResponse:
            return ks.ComputeKernelResponse(**_encoded(inputs.get, values))

        if sum(v.nbytes for v in values) <= INLINE_BYTES:
            return encode()
        return await self.run(encode)

    @stream_rpc(admitted=True)
    async def StreamKernel(
        self,
        messages: AsyncIterator[ks.StreamKernelRequest],
        context: grpc.aio.ServicerContext,
        call: CallLog,
    ) -> AsyncGenerator[ks.StreamKernelResponse, None]:
        caller = caller_tenant()  # here, on the event loop: the stream's workers are threads
        stats = streaming.StreamStats()

        def expired() -> bool:
            remaining = context.time_remaining()
            return remaining is not None and remaining <= 0

        try:
            async for message in streaming.stream_kernel(
                messages,
                functools.partial(self.compiled, caller),
                self.streams,
                functools.partial(self.boundary.compute_slot, caller),
                expired,
                stats,
            ):
                yield message
        finally:
            call.bytes_in, call.bytes_out = stats.bytes_in, stats.bytes_out
            computed = ",".join(f"{d}:{n}" for d, n in sorted(stats.computed.items()))
            call.extra = {
                "tiles": f"{stats.tiles_done}/{stats.tiles_planned}",
                "computed": computed,
                "tile_programs_compiled": self._tile_programs.compilations,
            }
