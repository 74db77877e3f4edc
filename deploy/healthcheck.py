#!/usr/bin/env python3
"""Asks the local ntkserve server's grpc.health.v1 service whether it is SERVING: exit 0 if so.

The image installs this as `ntkserve-healthcheck`; Docker's HEALTHCHECK and compose run it,
and Kubernetes runs it as an exec probe where the server speaks TLS (the kubelet's native
gRPC probe cannot do TLS). It reads the server's own NTKSERVE_* environment, so it follows
the port and TLS settings given that way (a port given as a flag after the entrypoint is not
seen: set NTKSERVE_PORT instead):

    NTKSERVE_HOST, NTKSERVE_PORT      where to ask; a wildcard host (0.0.0.0, ::) means loopback
    NTKSERVE_TLS_CERT                 when set, speak TLS
    NTKSERVE_HEALTHCHECK_CA           CA that signed the server's certificate (default: that
                                      certificate itself, which works for a self-signed one)
    NTKSERVE_HEALTHCHECK_SERVER_NAME  a DNS name in that certificate (default: localhost)
    NTKSERVE_HEALTHCHECK_CLIENT_CERT, NTKSERVE_HEALTHCHECK_CLIENT_KEY
                                      a client certificate, for a server with --tls-client-ca
    NTKSERVE_HEALTHCHECK_TIMEOUT      seconds (default 3)

Health needs no bearer token (the server leaves it open), so --auth-tokens changes nothing.
Usage: ntkserve-healthcheck [SERVICE]   (default "": the server as a whole)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A wildcard address means every interface; 127.0.0.1 reaches it from inside the container
# (an IPv6 wildcard accepts IPv4 too, and lo has 127.0.0.1 even in an IPv6-only pod).
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def target(env: Mapping[str, str]) -> str:
    host = env.get("NTKSERVE_HOST", "127.0.0.1").strip()
    if host in WILDCARDS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{env.get('NTKSERVE_PORT', '50051').strip()}"


def channel(env: Mapping[str, str]) -> grpc.Channel:
    """A plaintext channel, or a TLS one when the server was given a certificate."""
    address = target(env)
    cert = env.get("NTKSERVE_TLS_CERT")
    if not cert:
        return grpc.insecure_channel(address)
    root = Path(env.get("NTKSERVE_HEALTHCHECK_CA") or cert).read_bytes()
    client_cert = env.get("NTKSERVE_HEALTHCHECK_CLIENT_CERT")
    client_key = env.get("NTKSERVE_HEALTHCHECK_CLIENT_KEY")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None,
    )
    # We dial an IP; the name to verify is the one the certificate was issued for.
    name = env.get("NTKSERVE_HEALTHCHECK_SERVER_NAME") or "localhost"
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", name)]
    )


def check(service: str, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether `service` is SERVING, and what was seen (for the probe's output)."""
    timeout = float(env.get("NTKSERVE_HEALTHCHECK_TIMEOUT") or 3)
    try:
        with channel(env) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as e:
        return False, f"{target(env)}: {e.code().name}: {e.details()}"
    except OSError as e:  # an unreadable certificate file
        return False, f"{target(env)}: {e}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target(env)}: {status}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(__doc__, file=sys.stderr)
        return 2
    ok, seen = check(args[0] if args else "", os.environ if env is None else env)
    print(seen, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
