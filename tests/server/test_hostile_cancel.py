"""Issue 17, finding 7: a unary call that leaves (cancelled, or past its deadline).

A started XLA computation cannot be interrupted, so: work whose caller left before a worker
took it up never runs (counted by the server's metrics, not timed), and a caller that leaves
once its work runs keeps its admission slot until the work ends, so the slot count tells the
truth and a tenant cannot cancel its way past the limits. One worker, so calls queue behind
one long call (a repeated layer over 2,000 inputs, the time budget off: ~4 s of device
work alone on a 2-core CPU, seen with a 300-fold repeat at under 1 s, when a call queued
behind it could start before its 1 s deadline and the test failed one run in three).
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from ntkserve import Client, kinds, stax, tensor
from ntkserve.errors import DeadlineExceededError, ResourceExhaustedError
from ntkserve.v1 import kernel_service_pb2 as ks
from ntkserve.v1 import kernel_service_pb2_grpc
from ntkserve_server.testing import ServerProcess

from tests.conftest import timeout_for, wait_until
from tests.server.hostile import ATTACKER, NEIGHBOUR, PROBE_X, lab_server

LONG = stax.serial(
    stax.Dense(64), stax.repeat(stax.serial(stax.Dense(64), stax.Relu()), 1500), stax.Dense(1)
)
SMALL = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))


def _x(seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((2000, 8)).astype(np.float32)


def _server(directory: Path, *flags: str) -> ServerProcess:
    return lab_server(
        directory, "--workers", "1", "--max-call-seconds", "0", "--metrics-port", "0", *flags
    )


def _work(server: ServerProcess, outcome: str) -> float:
    """The server's count of unary device work that `outcome` ("started" or "dropped")."""
    assert server.wait_for_log("metrics on http://")
    url = re.search(r"metrics on (http://\S+/metrics)", server.log_text())
    assert url is not None
    text = urllib.request.urlopen(url.group(1), timeout=30).read().decode()
    found = re.search(
        rf'^ntkserve_unary_device_work_total{{outcome="{outcome}"}} (\S+)$', text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


class _Long:
    """The attacker's long call, sent on a raw stub so that the test can cancel it."""

    def __init__(self, target: str) -> None:
        with Client(target, token=ATTACKER, timeout=60) as client:
            self.architecture_id = client.register(LONG)
        self.channel = grpc.insecure_channel(  # its 16 MB answer
            target, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        request = ks.ComputeKernelRequest(
            architecture_id=self.architecture_id,
            x1=tensor.encode(_x(0), "x1"),
            get=kinds.to_codes(("nngp",)),
        )
        stub = kernel_service_pb2_grpc.KernelServiceStub(self.channel)
        self.future = stub.ComputeKernel.future(
            request, metadata=(("authorization", f"Bearer {ATTACKER}"),), timeout=600
        )


@pytest.fixture()
def one_slot(tmp_path: Path) -> Iterator[ServerProcess]:
    with _server(tmp_path, "--max-concurrent-jobs", "1", "--max-queue", "0") as proc:
        yield proc


@timeout_for(30)
def test_a_caller_that_leaves_keeps_its_slot_until_its_work_ends(one_slot: ServerProcess) -> None:
    """One slot: the attacker's long call passes its deadline while it runs; the neighbour,
    asking just after, is told the server is busy (it used to be let in, to wait behind the
    work whose caller had gone); once the work ends the neighbour is served."""
    neighbour = Client(one_slot.target, token=NEIGHBOUR, timeout=60)
    small = neighbour.register(SMALL)
    neighbour.kernel(small, PROBE_X, get="nngp")  # compiled before
    long = _Long(one_slot.target)
    wait_until(lambda: _work(one_slot, "started") >= 2, "the long call's work to start")
    long.future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        long.future.result()
    time.sleep(0.5)  # the server sees the cancellation
    with pytest.raises(ResourceExhaustedError, match="busy"):
        neighbour.kernel(small, PROBE_X, get="nngp")

    def served() -> bool:
        try:
            neighbour.kernel(small, PROBE_X, get="nngp")
        except ResourceExhaustedError:
            return False
        return True

    wait_until(served, "the slot to be free once the long work ended")
    assert _work(one_slot, "dropped") == 0
    neighbour.close()
    long.channel.close()


@pytest.fixture()
def queued(tmp_path: Path) -> Iterator[ServerProcess]:
    with _server(tmp_path) as proc:
        yield proc


@timeout_for(30)
def test_calls_that_leave_while_queued_never_run(queued: ServerProcess) -> None:
    """Three calls queued behind the long one pass their deadlines: none of them runs."""
    long = _Long(queued.target)
    wait_until(lambda: _work(queued, "started") >= 1, "the long call's work to start")
    # All three at once, so all queue within their 1 s deadlines while the long work (~4 s
    # alone) runs, however slow the machine: one after another, a slow send could leave the
    # last one to find the worker free.
    with Client(queued.target, token=ATTACKER, timeout=1.0) as impatient:

        def leaves(seed: int) -> None:
            with pytest.raises(DeadlineExceededError):
                impatient.kernel(long.architecture_id, _x(seed), get="nngp")

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(leaves, (1, 2, 3)))
    assert long.future.result().HasField("nngp")
    assert _work(queued, "started") == 1
    assert _work(queued, "dropped") == 3
    long.channel.close()
