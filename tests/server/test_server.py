"""server.build/start/stop: the assembled server binds a free port, serves every service once
started (health SERVING, KernelService answering), stops cleanly and frees its port; a port in
use is CannotListen. (`serve`, with its signals, is test_lifecycle's.) Each scenario builds the
server in process, in a fresh interpreter: see server_scenarios.py for why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# server_scenarios.SCENARIOS, named here: importing that module would load the server.
SCENARIOS = ("port-in-use", "serves")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_build_start_stop(scenario: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.server.server_scenarios", scenario, str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
