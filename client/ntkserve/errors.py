"""Typed exceptions for gRPC status codes: the one place the client translates errors.

Every exception keeps the status code, the server's message and the original
`grpc.RpcError` as `__cause__`.
"""

from __future__ import annotations

import grpc


class NtkServeError(Exception):
    """Base of every error the server or the transport reports."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

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


def from_rpc_error(error: grpc.RpcError) -> NtkServeError:
    """The typed exception for a failed call; raise it `from error` to keep the cause."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    cls = _BY_CODE.get(code, NtkServeError)
    return cls(details, code)
