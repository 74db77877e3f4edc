"""The committed generated code is exactly what the one command makes, and lints clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_has_not_drifted() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.genproto", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _buf() -> str | None:
    local = ROOT / ".tools" / "buf" / "node_modules" / ".bin" / "buf"
    return str(local) if local.exists() else shutil.which("buf")


def test_buf_lint_standard_rules() -> None:
    buf = _buf()
    if buf is None:
        if os.environ.get("CI"):
            pytest.fail("buf is missing in CI: dev.py installs it with npm (@bufbuild/buf)")
        pytest.skip("buf not installed (python3 dev.py test installs it)")
    result = subprocess.run([buf, "lint"], cwd=ROOT / "proto", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
