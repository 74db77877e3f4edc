"""Shared fixtures: a real `ntkserve serve` process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LISTENING = re.compile(r"ntkserve listening on (\S+):(\d+)")


class ServerProcess:
    """A server subprocess; `target` is host:port once it said it listens."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ntkserve_server",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stderr_lines: list[str] = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self.target = self._wait_listening(timeout=120)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _wait_listening(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = LISTENING.search(line)
            if m:
                return f"{m.group(1)}:{m.group(2)}"
        self.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.stderr_lines))

    def log_text(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_log(self, text: str, timeout: float = 30) -> bool:
        """Whether `text` shows up in the log within `timeout` seconds (stderr is read by a
        thread, so a line written just now may not be in `log_text()` yet)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class HeldStream:
    """A StreamKernel call that sends nothing until cancelled: it holds one of the server's
    running slots (and its tenant's) for as long as a test needs."""

    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        import grpc
        from ntkserve.v1 import kernel_service_pb2_grpc

        self._release = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = kernel_service_pb2_grpc.KernelServiceStub(self._channel)
        self.call = stub.StreamKernel(self._nothing(), timeout=30, metadata=metadata)

    def _nothing(self) -> Iterator[Any]:
        self._release.wait(30)
        return
        yield

    def cancel(self) -> None:
        self.call.cancel()
        self._release.set()
        self._channel.close()

    def __enter__(self) -> HeldStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests that only need a server, not a fresh one."""
    proc = ServerProcess(tmp_path_factory.mktemp("server-data"))
    yield proc
    proc.terminate()


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    """Starts servers the test owns (restarts, signals); all are stopped afterwards."""
    started: list[ServerProcess] = []

    class Owned(ServerProcess):
        def __init__(self, data_dir: Path | None = None, *extra: str) -> None:
            super().__init__(data_dir or tmp_path / "data", *extra)
            started.append(self)

    yield Owned
    for proc in started:
        proc.kill()
