"""Typed exceptions for gRPC status codes: the one place the client translates errors.

Every exception keeps the status code, the server's message and the original
`grpc.RpcError` as `__cause__`, and what the server attached: the call's request id, the
field violations of an INVALID_ARGUMENT (google.rpc.BadRequest) and the retry delay of a
RESOURCE_EXHAUSTED from a busy server (google.rpc.RetryInfo).
"""

from __future__ import annotations

import grpc
from google.protobuf import message as protobuf_message
from google.rpc import error_details_pb2, status_pb2

from ntkserve import request_ids

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class NtkServeError(Exception):
    """Base of every error the server or the transport reports.

    Attributes:
      request_id: the server's id of the call (the `x-request-id` it logged it under).
      field_violations: (field path, problem) pairs of an invalid request.
      retry_delay: seconds after which retrying may succeed (a busy server says so).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        *,
        request_id: str | None = None,
        field_violations: tuple[tuple[str, str], ...] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.request_id = request_id
        self.field_violations = field_violations
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(NtkServeError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(NtkServeError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(NtkServeError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(NtkServeError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(NtkServeError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(NtkServeError, PermissionError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(NtkServeError, PermissionError):
    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceededError(NtkServeError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(NtkServeError):
    code = grpc.StatusCode.CANCELLED


class UnavailableError(NtkServeError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class UnimplementedError(NtkServeError, NotImplementedError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(NtkServeError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[NtkServeError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnauthenticatedError,
        PermissionDeniedError,
        DeadlineExceededError,
        CancelledError,
        UnavailableError,
        UnimplementedError,
        InternalError,
    )
}


def _trailers(error: grpc.RpcError) -> dict[str, str | bytes]:
    trailing = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    return {key: value for key, value in trailing or ()}


def _details(
    trailers: dict[str, str | bytes],
) -> tuple[tuple[tuple[str, str], ...], float | None]:
    """Field violations and retry delay from the google.rpc.Status in the trailers."""
    packed = trailers.get(STATUS_DETAILS_KEY)
    if not isinstance(packed, bytes):
        return (), None
    status = status_pb2.Status()
    try:
        status.ParseFromString(packed)
    except protobuf_message.DecodeError:
        return (), None
    violations: list[tuple[str, str]] = []
    delay = None
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        retry_info = error_details_pb2.RetryInfo()
        if detail.Unpack(bad_request):
            violations += [(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Unpack(retry_info):
            delay = retry_info.retry_delay.ToNanoseconds() * 1e-9
    return tuple(violations), delay


def from_rpc_error(error: grpc.RpcError) -> NtkServeError:
    """The typed exception for a failed call; raise it `from error` to keep the cause."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    trailers = _trailers(error)
    violations, delay = _details(trailers)
    request_id = trailers.get(request_ids.KEY)
    cls = _BY_CODE.get(code, NtkServeError)
    return cls(
        details,
        code,
        request_id=request_id if isinstance(request_id, str) else None,
        field_violations=violations,
        retry_delay=delay,
    )
