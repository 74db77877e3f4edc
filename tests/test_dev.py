"""`python3 dev.py serve`, backgrounded and sent SIGTERM as a process manager would, stops the
server with it: no process of its tree is left, and nothing listens on its port any more.
(It used to kill only dev.py, leaving uv and the server orphaned on the port.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ntkserve_server.testing import SERVER_LISTENING, ListeningProcess

ROOT = Path(__file__).resolve().parents[1]
# The interpreter the environment was made from: what `python3 dev.py` runs on (dev.py
# itself needs no package of the environment).
PYTHON3 = getattr(sys, "_base_executable", sys.executable)


def _uv_installed() -> bool:
    tools = ROOT / ".tools"
    return any((tools / name / "bin" / "uv").exists() for name in ("uv", "uv-target"))


def _descendants(root: int) -> set[int]:
    """The pids of every process below `root` now, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting for its parent is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listens(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    with socket.socket() as s:
        try:
            s.connect((host, int(port)))
        except ConnectionRefusedError:
            return False
        return True


def test_sigterm_to_a_backgrounded_dev_py_serve_stops_the_server(tmp_path: Path) -> None:
    if not _uv_installed():
        if os.environ.get("CI"):
            pytest.fail("no .tools/uv in CI: python3 dev.py test installs it")
        pytest.skip("uv not installed in .tools (python3 dev.py installs it)")
    dev = ListeningProcess(
        [PYTHON3, "dev.py", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        SERVER_LISTENING,
        "python3 dev.py serve",
        cwd=ROOT,
    )
    tree = {dev.pid, *_descendants(dev.pid)}
    try:
        assert _listens(dev.target)
        os.kill(dev.pid, signal.SIGTERM)
        try:
            code = dev.proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("dev.py did not end within 120 s of SIGTERM")
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(pid for pid in tree if _alive(pid))
        assert not left, f"processes of dev.py serve left running: {left}"
        assert code == 0, f"exit status {code}:\n{dev.log_text()[-2000:]}"
        assert not _listens(dev.target), f"something still listens on {dev.target}"
        assert "stopped" in dev.log_text()  # the server drained and said so
    finally:
        for pid in tree:  # ours, if the test failed: leave no orphan behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
