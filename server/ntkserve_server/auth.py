"""Bearer-token authentication: the token file, the interceptor, and the caller's tenant.

`ntkserve serve --auth-tokens FILE` reads one `TOKEN TENANT` per line. Every call of every
service except health, reflection and the inference protocol's ServerLive and ServerReady
(`OPEN_PREFIXES`) must then carry `authorization: Bearer TOKEN` metadata,
or it is answered UNAUTHENTICATED before any handler runs (and before its request is parsed).
Tokens are kept only as SHA-256 digests and a presented token is compared with every one of
them in constant time, so neither the comparison's timing nor its early exit tells a caller
how close a guess came or which tenant's token it nearly matched.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("ntkserve.auth")

MIN_TOKEN_CHARS = 16
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
# Methods under these prefixes stay open: load balancers and tools must reach them without
# a token. Everything else (KernelService, and any service added later) needs one.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
    # The inference protocol's liveness and readiness, like health: probes carry no token.
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
)
EXPECTED = (
    "send metadata 'authorization: Bearer <token>' with a token from the server's "
    "--auth-tokens file"
)

_TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ntkserve_tenant", default=None
)


def current_tenant() -> str | None:
    """The tenant whose token authenticated the current call; None without --auth-tokens.

    grpc.aio runs the interceptor and the handler of one call in the same context, so this
    holds for the whole handler (on the event loop; work sent to a thread pool with
    run_in_executor does not carry it: read it before). The servicer reads it in each
    handler and keys every registry lookup, insert and delete by it.
    """
    return _TENANT.get()


class TokenFileError(ValueError):
    """The --auth-tokens file cannot be used; the message names the file and the line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclasses.dataclass(frozen=True)
class TokenTable:
    """Token digests and their tenants; never the tokens themselves."""

    entries: tuple[tuple[bytes, str], ...]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> TokenTable:
        return cls(tuple((_digest(token), tenant) for token, tenant in pairs))

    @property
    def tenants(self) -> list[str]:
        return sorted({tenant for _, tenant in self.entries})

    def tenant_for(self, token: str) -> str | None:
        """The tenant of `token`, or None; compares with every entry, in constant time."""
        digest = _digest(token)
        found = None
        for known, tenant in self.entries:
            if hmac.compare_digest(known, digest):
                found = tenant
        return found


def parse_tokens(text: str, source: str) -> TokenTable:
    """Parses a token file's text; errors name `source` and the line, never the token."""
    pairs: list[tuple[str, str]] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = line.split()
        if len(fields) != 2:
            raise TokenFileError(
                f"{where}: expected 'TOKEN TENANT' (two fields separated by spaces), "
                f"found {len(fields)} field(s)"
            )
        token, tenant = fields
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenFileError(
                f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters; make one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if not TENANT_NAME.fullmatch(tenant):
            raise TokenFileError(
                f"{where}: tenant name {tenant!r} must be letters, digits and . _ @ - "
                "(starting with a letter or digit)"
            )
        digest = _digest(token)
        if digest in seen:
            raise TokenFileError(f"{where}: the same token as line {seen[digest]}")
        seen[digest] = number
        pairs.append((token, tenant))
    if not pairs:
        raise TokenFileError(f"{source}: no tokens; expected lines 'TOKEN TENANT'")
    return TokenTable.from_pairs(pairs)


def load_tokens(path: Path) -> TokenTable:
    """Reads and parses the --auth-tokens file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read --auth-tokens file {path}: {e}") from e
    return parse_tokens(text, str(path))


def _presented_token(metadata: Iterable[Any] | None) -> tuple[str | None, str]:
    """The bearer token in the call's metadata, or None and why not."""
    for key, value in metadata or ():
        if key != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, f"the authorization metadata is not a bearer token: {EXPECTED}"
        return token.strip(), ""
    return None, f"missing credentials: {EXPECTED}"


def _denial(
    method: str, message: str
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]:
    """A behavior that refuses the call; fits every handler kind (it never yields)."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        log.warning("rpc method=%s code=UNAUTHENTICATED peer=%s", method, context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return deny


def _denying_handler(handler: grpc.RpcMethodHandler, deny: Any) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that runs `deny`; requests are left as bytes."""
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Admits a call with a known bearer token and records its tenant; refuses the rest."""

    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata
        token, problem = _presented_token(metadata)
        tenant = None if token is None else self._tokens.tenant_for(token)
        if tenant is None:
            message = problem or f"invalid bearer token: {EXPECTED}"
            return _denying_handler(handler, _denial(method, message))
        _TENANT.set(tenant)  # this call's own context: seen by its handler, by no other call
        return handler
