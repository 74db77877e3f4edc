"""Throwaway virtual environments for the tests that install a distribution alone (uv, from
this environment: the same resolver and cache as the locked install)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = (sys.executable, "-m", "uv")


def throwaway_venv(where: Path, *requirements: str) -> Path:
    """A fresh venv under `where` with `requirements` (paths or pins) installed; its python."""
    venv = where / "venv"
    subprocess.run([*UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*UV, "pip", "install", "-q", "--python", str(python), *requirements], check=True
    )
    return python


def installed(python: Path) -> str:
    """`uv pip list` of that environment."""
    return subprocess.run(
        [*UV, "pip", "list", "--python", str(python)], capture_output=True, text=True, check=True
    ).stdout
