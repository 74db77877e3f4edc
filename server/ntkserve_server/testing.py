"""A real `ntkserve serve` in a child process, for the tests and the benchmarks alike.

`ListeningProcess` runs any command that announces "... listening on HOST:PORT" on stdout
(the server's one such line, or a benchmark's raw gRPC server), keeps its stderr (the log)
readable while it runs, and stops it with SIGTERM (then SIGKILL) when done. `ServerProcess`
is `python -m ntkserve_server serve --port 0 --data-dir DIR *flags`: a free loopback port,
its own registry. A test that needs no process builds a server in its own with
`ntkserve_server.server.build` instead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

SERVER_LISTENING = re.compile(r"ntkserve listening on (\S+):(\d+)")
START_SECONDS = 180.0  # jax's import and device start, on a busy 2-core machine


class ListeningProcess:
    """A child process; `target` is its host:port once it said it listens."""

    def __init__(
        self,
        command: Sequence[str],
        listening: re.Pattern[str],
        what: str,
        cwd: Path | None = None,
        start_seconds: float = START_SECONDS,
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        """`env`: variables set for the child on top of this process's environment;
        `preexec`: run in the child before it starts (a resource limit, say)."""
        self.proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=preexec,
        )
        self.pid = self.proc.pid
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.target = self._wait_listening(listening, what, start_seconds)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _wait_listening(self, listening: re.Pattern[str], what: str, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            found = listening.search(line)
            if found:
                return f"{found.group(1)}:{found.group(2)}"
        self.kill()
        raise RuntimeError(f"{what} did not start:\n" + "".join(self.stderr_lines[-50:]))

    def log_text(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_log(self, text: str, timeout: float = 60) -> bool:
        """Whether `text` shows up in the log within `timeout` seconds (stderr is read by a
        thread, so a line written just now may not be in `log_text()` yet)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, and its exit status (subprocess.TimeoutExpired if it outlives `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ListeningProcess):
    """`python -m ntkserve_server serve --port 0 --data-dir DATA_DIR *flags`."""

    def __init__(
        self,
        data_dir: Path,
        *flags: str,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.flags = flags
        command = [sys.executable, "-m", "ntkserve_server", "serve", "--port", "0"]
        super().__init__(
            [*command, "--data-dir", str(data_dir), *flags],
            SERVER_LISTENING,
            f"ntkserve serve {' '.join(flags)}".strip(),
            cwd=cwd,
            preexec=preexec,
        )
