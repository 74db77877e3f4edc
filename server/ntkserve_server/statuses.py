"""gRPC statuses with google.rpc details (BadRequest, RetryInfo) packed in their trailers.

Only builds them: which error gets which status is decided in `calls.status_for`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclasses.dataclass(frozen=True)
class Status:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def with_detail(code: int, message: str, detail: Any) -> Status:
    packed = any_pb2.Any()
    packed.Pack(detail)
    status = rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[packed]))
    return Status(status.code, status.details, tuple(status.trailing_metadata))


def bad_request(violations: Sequence[tuple[str, str]], message: str) -> Status:
    """INVALID_ARGUMENT with a google.rpc.BadRequest: one field violation per problem."""
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )
    return with_detail(code_pb2.INVALID_ARGUMENT, message, detail)


def retry(message: str, seconds: float) -> Status:
    """RESOURCE_EXHAUSTED with a google.rpc.RetryInfo: waiting `seconds` may help."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return with_detail(
        code_pb2.RESOURCE_EXHAUSTED, message, error_details_pb2.RetryInfo(retry_delay=delay)
    )
