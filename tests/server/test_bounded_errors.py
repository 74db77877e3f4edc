"""Errors too large to deliver (issue 17, finding 11): a 4 MB architecture id or a 1 MB
hyper-parameter name was echoed in the error, and the client got "received metadata size
exceeds hard limit" instead of the status. Ids are checked for their form without being
echoed, and every status the call boundary builds is bounded (`statuses`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ntkserve import Client, errors, stax
from ntkserve_server import calls, requests, statuses
from ntkserve_server.testing import ServerProcess

from tests.conftest import timeout_for
from tests.server.hostile import ATTACKER, PROBE_BOUND_SECONDS, Probe, lab_server

pytestmark = timeout_for(20)

X = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
NETWORK = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
# What a client's trailers may hold by default (grpc's max_metadata_size): every status
# must fit, with room for the request id and grpc's own entries.
CLIENT_METADATA_BYTES = 8 * 1024
SHORT = 2 * statuses.MESSAGE_BYTES


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with lab_server(Path(tmp_path_factory.mktemp("bounded-errors"))) as proc:
        yield proc


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        return answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_4_mb_architecture_id_is_invalid_with_a_short_message(server: ServerProcess) -> None:
    huge = "a" * (4 << 20)
    with Probe(server.target) as probe, Client(server.target, token=ATTACKER) as attacker:
        for call in (
            lambda: attacker.kernel(huge, X),
            lambda: attacker.get_architecture(huge),
            lambda: attacker.delete_architecture(huge),
        ):
            with pytest.raises(errors.InvalidArgumentError) as raised:
                call()
            assert len(raised.value.message) < SHORT, raised.value.message[:300]
            assert "32 lowercase hex digits" in raised.value.message
            assert f"{len(huge):,} characters" in raised.value.message
            assert raised.value.field_violations[0][0] == "architecture_id"
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
    assert _serving(server.target)


def test_a_1_mb_hyper_parameter_name_is_invalid_with_a_short_message(
    server: ServerProcess,
) -> None:
    with Client(server.target, token=ATTACKER) as attacker:
        architecture_id = attacker.register(NETWORK)
        with pytest.raises(errors.InvalidArgumentError) as raised:
            attacker.value_and_grad(architecture_id, X, hyper_parameters=["w" * (1 << 20)])
        error = raised.value
        assert len(error.message) < SHORT and "bytes, cut" in error.message
        (field, problem), *_ = error.field_violations
        assert field == "hyper_parameters[0]" and len(problem) <= statuses.QUOTE_BYTES
        # still serving, and still computing for the same tenant
        assert attacker.kernel(architecture_id, X).shape == (3, 3)
    assert _serving(server.target)


def _metadata_bytes(status: statuses.Status) -> int:
    """What the status takes in a client's trailers: grpc-message percent-encoded, and the
    trailing metadata (grpc-status-details-bin sent base64: 4/3 of its bytes)."""
    size = len(quote(status.details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"))
    for key, value in status.trailing_metadata:
        raw = len(value) if isinstance(value, bytes) else len(value.encode())
        size += len(key) + (raw * 4 + 2) // 3
    return size


@pytest.mark.parametrize("text", ["x" * (1 << 20), "é" * (1 << 20)])
def test_every_status_fits_in_a_clients_trailers(text: str) -> None:
    many = requests.InvalidRequest.of([(f"{text}[{i}]", text) for i in range(50)])
    cases = [
        many,
        requests.InvalidRequest("architecture_id", text),
        requests.OverLimit("", text),
        RuntimeError(text),
        MemoryError(f"RESOURCE_EXHAUSTED: {text}"),
    ]
    for error in cases:
        status = calls.status_for(error, "ComputeKernel", "job-1")
        assert status.details.endswith(" (request id job-1)")
        assert _metadata_bytes(status) < CLIENT_METADATA_BYTES - 512, type(error)
