"""How the server may listen: who must authenticate (the binding rule) and TLS.

The rule: a server without --auth-tokens binds only to loopback addresses, where only users
of this machine can reach it. Any other address needs tokens, or --insecure to say that an
open port is intended. --tls-cert/--tls-key encrypt the connection (and with it the tokens);
--tls-client-ca also requires a client certificate signed by that CA (mutual TLS).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path

import grpc

from ntkserve_server.auth import BearerTokenInterceptor, TokenFileError, TokenTable, load_tokens

log = logging.getLogger("ntkserve")
LOOPBACK_NAMES = ("localhost",)


class SecurityError(ValueError):
    """The security flags do not make a server that may start; the message says what to pass."""


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback IP literals ("127.0.0.1", "::1", "[::1]")."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SecurityError(f"cannot read {flag} {path}: {e}") from e
    if b"-----BEGIN " not in data:
        raise SecurityError(f"{flag} {path} is not a PEM file (no '-----BEGIN' line)")
    return data


@dataclasses.dataclass(frozen=True)
class Security:
    """Who may call, and over what: tokens, TLS material, and whether an open port is meant."""

    tokens: TokenTable | None = None
    insecure: bool = False
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None

    @classmethod
    def load(
        cls,
        *,
        auth_tokens: Path | None = None,
        insecure: bool = False,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        tls_client_ca: Path | None = None,
    ) -> Security:
        """Reads the token file and PEM files named on the command line; SecurityError if
        any is unusable or the TLS flags do not go together."""
        if (tls_cert is None) != (tls_key is None):
            raise SecurityError("--tls-cert and --tls-key go together: pass both or neither")
        if tls_client_ca is not None and tls_cert is None:
            raise SecurityError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS)")
        try:
            tokens = None if auth_tokens is None else load_tokens(auth_tokens)
        except TokenFileError as e:
            raise SecurityError(str(e)) from e
        return cls(
            tokens=tokens,
            insecure=insecure,
            tls_cert=None if tls_cert is None else _read_pem(tls_cert, "--tls-cert"),
            tls_key=None if tls_key is None else _read_pem(tls_key, "--tls-key"),
            tls_client_ca=(
                None if tls_client_ca is None else _read_pem(tls_client_ca, "--tls-client-ca")
            ),
        )

    def check_host(self, host: str) -> None:
        """SecurityError unless `host` may be bound: loopback, or tokens, or --insecure."""
        if self.tokens is None and not self.insecure and not is_loopback(host):
            raise SecurityError(
                f"refusing to listen on {host} without authentication: pass --auth-tokens FILE "
                "(and --tls-cert/--tls-key), or --insecure to serve anyone who can reach the "
                "port; without either, bind a loopback address (127.0.0.1, ::1, localhost)"
            )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        return [] if self.tokens is None else [BearerTokenInterceptor(self.tokens)]

    def bind(self, server: grpc.aio.Server, host: str, port: int) -> int:
        """Adds the listening port (TLS when configured) and returns its number."""
        self.check_host(host)
        address = f"{host}:{port}"
        if self.tls_cert is None or self.tls_key is None:
            return int(server.add_insecure_port(address))
        credentials = grpc.ssl_server_credentials(
            [(self.tls_key, self.tls_cert)],
            root_certificates=self.tls_client_ca,
            require_client_auth=self.tls_client_ca is not None,
        )
        return int(server.add_secure_port(address, credentials))

    def log_summary(self, host: str) -> None:
        """The start-up lines that say who can call and whether the wire is encrypted."""
        tls = self.tls_cert is not None
        if self.tokens is not None:
            tenants = self.tokens.tenants
            log.info("auth: bearer tokens of %d tenant(s): %s", len(tenants), ", ".join(tenants))
        elif is_loopback(host):
            log.info("auth: none; no --auth-tokens: loopback only (%s)", host)
        else:
            log.warning(
                "auth: none (--insecure): anyone who can reach %s may call every method", host
            )
        if tls:
            mutual = self.tls_client_ca is not None
            log.info("TLS on%s", "; client certificates required (mutual TLS)" if mutual else "")
        elif self.tokens is not None and not is_loopback(host):
            log.warning("TLS off: bearer tokens cross the network in clear text (--tls-cert)")
