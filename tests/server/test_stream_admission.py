"""Issue 17, finding 6: slowloris on stream slots, and fair admission by default.

An open stream holds no compute slot until its header and inputs are in, counts against
its tenant's open streams (--max-streams-per-tenant), and ends with DEADLINE_EXCEEDED
after --stream-idle-seconds without a message. One tenant opening more idle streams than
the server has slots leaves the other tenant's calls and streams served (today: 96 idle
streams locked every tenant out for as long as they stayed open)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from ntkserve import Client
from ntkserve.v1 import kernel_service_pb2_grpc
from ntkserve_server.admission import Admission, Busy
from ntkserve_server.auth import TokenTable
from ntkserve_server.config import ServerConfig
from ntkserve_server.transport import Security

from tests.conftest import WAIT_SECONDS, ServerProcess, jobs_running, timeout_for, wait_until
from tests.server.hostile import ATTACKER, NEIGHBOUR, PROBE_BOUND_SECONDS, Probe, lab_server
from tests.server.streaming_support import MLP

SLOTS = 8  # --max-concurrent-jobs: the default streams per tenant is a quarter, 2
IDLE_SECONDS = 4.0
ATTACK_STREAMS = SLOTS + 4  # more than the server has slots


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = lab_server(
        Path(tmp_path_factory.mktemp("stream-admission")),
        f"--max-concurrent-jobs={SLOTS}",
        f"--stream-idle-seconds={IDLE_SECONDS:g}",
        "--metrics-port=0",  # ntkserve_jobs_running: idle streams hold no compute slot
    )
    yield proc
    proc.kill()


class IdleStream:
    """A StreamKernel call of the attacker that sends nothing until released."""

    def __init__(self, target: str) -> None:
        self._release = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = kernel_service_pb2_grpc.KernelServiceStub(self._channel)
        bearer = (("authorization", f"Bearer {ATTACKER}"),)
        self.call = stub.StreamKernel(self._nothing(), timeout=WAIT_SECONDS, metadata=bearer)

    def _nothing(self) -> Iterator[Any]:
        self._release.wait(WAIT_SECONDS)
        return
        yield

    def close(self) -> None:
        self._release.set()
        self.call.cancel()
        self._channel.close()


@timeout_for(30)
def test_idle_streams_of_one_tenant_leave_the_other_served_and_time_out(
    lab: ServerProcess,
) -> None:
    with Client(lab.target, token=NEIGHBOUR, timeout=WAIT_SECONDS) as neighbour:
        architecture_id = neighbour.register(MLP)
        x = np.random.default_rng(6).standard_normal((12, 5))
        expected = neighbour.kernel(architecture_id, x, get="nngp")
        with Probe(lab.target) as probe:
            opened = time.monotonic()
            streams = [IdleStream(lab.target) for _ in range(ATTACK_STREAMS)]
            try:
                wait_until(
                    lambda: sum(s.call.done() for s in streams) >= ATTACK_STREAMS - 2,
                    "all streams past the tenant's two are refused",
                )
                refused = [s.call for s in streams if s.call.done()]
                for call in refused:
                    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert "--max-streams-per-tenant 2" in call.details()
                # The neighbour streams and computes while the attacker's streams are open.
                streamed = neighbour.kernel(architecture_id, x, get="nngp", tile=4)
                np.testing.assert_allclose(streamed, expected, rtol=1e-12)
                idle = [s.call for s in streams if s.call not in refused]
                assert len(idle) == 2 and not any(call.done() for call in idle)
                # Open, waiting for a header, they hold no slot (the probe's one call may).
                assert jobs_running(lab) <= 1
                wait_until(lambda: all(call.done() for call in idle), "idle streams end")
                lasted = time.monotonic() - opened
            finally:
                for stream in streams:
                    stream.close()
        for call in idle:
            assert call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert f"--stream-idle-seconds {IDLE_SECONDS:g}" in call.details()
            assert "the header" in call.details()
        assert lasted >= IDLE_SECONDS
        assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
        assert not probe.failures, probe.failures
        # The tenant's stream count went back: it may stream again.
        with Client(lab.target, token=ATTACKER, timeout=WAIT_SECONDS) as attacker:
            assert attacker.register(MLP) == architecture_id
            np.testing.assert_allclose(
                attacker.kernel(architecture_id, x, get="nngp", tile=4), expected, rtol=1e-12
            )


def test_open_streams_are_counted_per_tenant_and_given_back() -> None:
    async def main() -> None:
        admission = Admission(max_running=1, max_queue=0, max_streams_per_tenant=2)
        async with admission.open_stream("a"), admission.open_stream("a"):
            with pytest.raises(Busy, match="--max-streams-per-tenant 2"):
                async with admission.open_stream("a"):
                    pass
            async with admission.open_stream("b"):  # another tenant is not counted
                assert admission.open_streams("b") == 1
            async with admission.slot("a"):  # open streams hold no compute slot
                assert admission.running == 1
        assert admission.open_streams("a") == 0

    asyncio.run(main())


def test_per_tenant_caps_are_on_by_default() -> None:
    """Streams: a quarter of the running slots (at least 2). Compute calls: half of them (at
    least 2) when tokens make several tenants; none without tokens, where the one tenant
    is the whole server (a cap would only shrink it)."""
    single = ServerConfig(workers=4)
    assert single.running_slots() == 32
    assert single.streams_per_tenant() == 8
    assert single.jobs_per_tenant() == 0
    lab_config = ServerConfig(workers=4, security=Security(tokens=_tokens()))
    assert lab_config.jobs_per_tenant() == 16
    small = ServerConfig(max_concurrent_jobs=1, security=Security(tokens=_tokens()))
    assert (small.jobs_per_tenant(), small.streams_per_tenant()) == (2, 2)
    chosen = ServerConfig(max_jobs_per_tenant=0, max_streams_per_tenant=0)
    assert (chosen.jobs_per_tenant(), chosen.streams_per_tenant()) == (0, 0)


def _tokens() -> TokenTable:
    return TokenTable.from_pairs([(ATTACKER, "attacker"), (NEIGHBOUR, "neighbour")])


def test_the_stream_limits_are_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ntkserve_server import cli

    args = cli._parser().parse_args(["serve"])
    assert (args.max_streams_per_tenant, args.max_jobs_per_tenant) == (None, None)
    assert args.stream_idle_seconds == 60.0
    args = cli._parser().parse_args(
        ["serve", "--max-streams-per-tenant=3", "--stream-idle-seconds=2.5"]
    )
    assert (args.max_streams_per_tenant, args.stream_idle_seconds) == (3, 2.5)
    monkeypatch.setenv("NTKSERVE_STREAM_IDLE_SECONDS", "7")
    assert cli._parser().parse_args(["serve"]).stream_idle_seconds == 7.0
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            cli._parser().parse_args(["serve", f"--stream-idle-seconds={bad}"])
