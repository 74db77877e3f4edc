"""Binds a service's methods to the server with request decoding that cannot fail.

The generated `add_KernelServiceServicer_to_server` decodes requests inside gRPC, where
bytes that are not a valid message become UNKNOWN or INTERNAL before any handler runs. Here
each method's deserializer turns such bytes into an `Undecodable`, which the call boundary
answers INVALID_ARGUMENT (field "request", or "request[k]" for the k-th message of a
stream) with the parser's reason: a client sending garbage learns it sent garbage, and the
call is logged and counted like any other. The bindings are read from the service's
descriptor, so a method added to the proto is bound without touching this file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message as protobuf_message
from ntkserve.v1 import kernel_service_pb2 as ks

from ntkserve_server import requests

SERVICE = ks.DESCRIPTOR.services_by_name["KernelService"]
_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


@dataclasses.dataclass(frozen=True)
class Undecodable:
    """Request bytes that are not a valid message of `type_name`."""

    type_name: str
    size: int
    reason: str

    def ByteSize(self) -> int:
        return self.size

    def error(self, field: str = "request") -> requests.InvalidRequest:
        return requests.InvalidRequest(
            field, f"is not a valid {self.type_name} message ({self.size} bytes): {self.reason}"
        )


def _tolerant(message_type: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except protobuf_message.DecodeError as e:
            return Undecodable(message_type.DESCRIPTOR.full_name, len(data), str(e))

    return deserialize


def check_decoded(request: Any) -> None:
    """Raises InvalidRequest for a unary request that did not decode."""
    if isinstance(request, Undecodable):
        raise request.error()


async def decoded(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The messages of a request stream, raising InvalidRequest at the first that did not
    decode (its field path says which)."""
    index = 0
    async for message in messages:
        if isinstance(message, Undecodable):
            raise message.error(f"request[{index}]")
        index += 1
        yield message


def bind(service: Any, messages: Any, servicer: Any, server: grpc.aio.Server) -> None:
    """What a generated add_XServicer_to_server does, with tolerant decoding: every method
    of `service` (a ServiceDescriptor) goes to the servicer's method of the same name, its
    request and response types looked up in the generated module `messages`."""
    handlers = {}
    for method in service.methods:
        request_type = getattr(messages, method.input_type.name)
        response_type = getattr(messages, method.output_type.name)
        make = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    """KernelService's methods, bound with tolerant decoding."""
    bind(SERVICE, ks, servicer, server)
