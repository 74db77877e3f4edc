"""gRPC statuses with google.rpc details (BadRequest, RetryInfo) packed in their trailers.

Only builds them: which error gets which status is decided in `calls.status_for`.

Every status built here fits in a client's trailers, whatever an error quotes (a 4 MB id, a
1 MB hyper-parameter name): gRPC clients refuse large trailers (by default, past a soft limit
of 8 KiB at random, and always past 16 KiB: "received metadata size exceeds hard limit
(value length 4194379 vs. 16384)" instead of the status), and the message travels twice,
percent-encoded in grpc-message (up to 3 bytes per byte) and inside the base64 of
grpc-status-details-bin (4/3) with the details. So the message is cut to MESSAGE_BYTES, each
field path and problem of a BadRequest to QUOTE_BYTES, and the violations to DETAIL_BYTES in
all: at most 3 * 1,100 + 4/3 * (1,100 + 2,048 + 100) = 7.6 KB of UTF-8 at worst (all of it
non-ASCII), 5.4 KB for ASCII text; what is cut says how much.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

MESSAGE_BYTES = 1024  # a status message, before the request id's " (request id ...)"
QUOTE_BYTES = 512  # one field path or one problem of a BadRequest
DETAIL_BYTES = 2048  # a BadRequest's violations in all


def cut(text: str, limit: int) -> str:
    """`text` when its UTF-8 is at most `limit` bytes; else its start, within `limit`
    bytes with the note of how much was left out."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    note = f"... [{len(encoded):,} bytes, cut]"
    return encoded[: max(limit - len(note), 0)].decode(errors="ignore") + note


@dataclasses.dataclass(frozen=True)
class Status:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def plain(code: grpc.StatusCode, message: str, suffix: str = "") -> Status:
    """A status without details: `message` cut to MESSAGE_BYTES, then `suffix` (the request
    id, short and never cut)."""
    return Status(code, cut(message, MESSAGE_BYTES) + suffix)


def with_detail(code: int, message: str, detail: Any, suffix: str = "") -> Status:
    packed = any_pb2.Any()
    packed.Pack(detail)
    text = cut(message, MESSAGE_BYTES) + suffix
    status = rpc_status.to_status(status_pb2.Status(code=code, message=text, details=[packed]))
    return Status(status.code, status.details, tuple(status.trailing_metadata))


def _within_detail(violations: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each violation's path and problem cut to QUOTE_BYTES, as many as fit in DETAIL_BYTES,
    then one saying how many more there were."""
    kept: list[tuple[str, str]] = []
    used = 0
    for field, problem in violations:
        pair = (cut(field, QUOTE_BYTES), cut(problem, QUOTE_BYTES))
        size = len(pair[0].encode()) + len(pair[1].encode())
        if used + size > DETAIL_BYTES - QUOTE_BYTES:  # room left for the note
            kept.append(("", f"{len(violations) - len(kept)} more violations not shown"))
            break
        kept.append(pair)
        used += size
    return kept


def bad_request(violations: Sequence[tuple[str, str]], message: str, suffix: str = "") -> Status:
    """INVALID_ARGUMENT with a google.rpc.BadRequest: one field violation per problem (bounded:
    see the module's note)."""
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in _within_detail(violations)
        ]
    )
    return with_detail(code_pb2.INVALID_ARGUMENT, message, detail, suffix)


def retry(message: str, seconds: float, suffix: str = "") -> Status:
    """RESOURCE_EXHAUSTED with a google.rpc.RetryInfo: waiting `seconds` may help."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    detail = error_details_pb2.RetryInfo(retry_delay=delay)
    return with_detail(code_pb2.RESOURCE_EXHAUSTED, message, detail, suffix)
