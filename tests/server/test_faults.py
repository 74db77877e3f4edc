"""Faults: the device running out of memory, and SIGKILL in the middle of everything.

An out-of-memory is a RESOURCE_EXHAUSTED answer and the server goes on. A server killed
while registrations are being acknowledged and a streamed kernel is being computed comes
back with every acknowledged registration and a registry that passes SQLite's integrity
check.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, errors, stax

from tests.conftest import WAIT_SECONDS, ServerProcess


def test_device_out_of_memory_is_resource_exhausted(server: ServerProcess) -> None:
    """Full spatial covariance of a 2000 x 2000 image is (2 * 2000**2)**2 entries, petabytes:
    more than any address space. The unary memory budget (XLA's memory analysis of the
    compiled program) refuses it before anything is allocated."""
    gap = stax.serial(
        stax.Conv(1, (3, 3), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
    )
    x = np.ones((2, 2000, 2000, 1), np.float32)
    with Client(server.target, timeout=120) as client:
        with pytest.raises(errors.ResourceExhaustedError) as raised:
            client.kernel(gap, x, get="nngp")
        assert "--max-call-memory-mb" in raised.value.message
        small = client.kernel(gap, x[:, :4, :4], get="nngp")  # the server goes on
    assert small.shape == (2, 2) and np.all(np.isfinite(small))


def _net(i: int) -> Any:
    return stax.serial(stax.Dense(4, W_std=1.0 + i / 1000), stax.Relu(), stax.Dense(1))


def test_sigkill_during_registrations_and_a_stream(start_server: Any) -> None:
    first = start_server()
    acknowledged: list[str] = []
    stop = threading.Event()
    tiles_done = threading.Event()

    def register() -> None:
        with Client(first.target, timeout=30) as client:
            i = 0
            while not stop.is_set():
                try:
                    acknowledged.append(client.register(_net(i)))
                except errors.NtkServeError:
                    return  # the server is gone
                i += 1

    stream_error: list[BaseException] = []

    def stream() -> None:
        x = np.random.default_rng(0).standard_normal((1500, 8)).astype(np.float32)
        with Client(first.target, timeout=120) as client:
            client._on_tile_done = lambda *_: tiles_done.set()
            try:
                client.kernel(_net(-1), x, tile=32, progress=False)
            except BaseException as e:
                stream_error.append(e)

    threads = [threading.Thread(target=register) for _ in range(2)]
    threads.append(threading.Thread(target=stream))
    for thread in threads:
        thread.start()
    assert tiles_done.wait(60), "the stream never delivered a tile"
    deadline = time.monotonic() + WAIT_SECONDS
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.proc.kill()  # SIGKILL: no drain, no flush, no close
    first.proc.wait()
    stop.set()
    for thread in threads:
        thread.join(60)
    assert len(acknowledged) >= 20
    assert stream_error and isinstance(stream_error[0], errors.NtkServeError)

    database = first.data_dir / "registry.sqlite3"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    second = start_server(first.data_dir)
    with Client(second.target, timeout=60) as client:
        listed = {info.id for info in client.list_architectures()}
        assert set(acknowledged) <= listed
        x = np.ones((3, 8), np.float32)
        assert client.kernel(acknowledged[-1], x).shape == (3, 3)
