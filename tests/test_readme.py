"""The README's client example runs against a real server and prints a 4 x 4 NTK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- readme-example -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_client_example_prints_an_ntk(server: ServerProcess) -> None:
    code = _example().replace("localhost:50051", server.target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(rows) == 4
    assert out.stdout.count("[") == 5  # [[...] [...] [...] [...]]
