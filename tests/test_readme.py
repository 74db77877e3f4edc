"""The README's examples, as written, against a real server: the client example prints a 4 x 4
NTK; the command-line lines run in bash from the repository root, each exiting 0, with only
their placeholders (A.npy, B.npy, K.npy, ID) filled in."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def _block(marker: str, language: str) -> str:
    """The first ```language block after `<!-- marker -->` in README.md."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def _example() -> str:
    return _block("readme-example", "python")


def test_readme_client_example_prints_an_ntk(server: ServerProcess) -> None:
    code = _example().replace("localhost:50051", server.target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(rows) == 4
    assert out.stdout.count("[") == 5  # [[...] [...] [...] [...]]


def _bash(setup: list[str], line: str) -> subprocess.CompletedProcess[str]:
    """`line` after `setup` in bash from the repository root, in a fresh shell's PATH: one
    where no `ntkserve` is found until the setup puts it there."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    bare = os.pathsep.join(d for d in path if not (Path(d) / "ntkserve").exists())
    script = "\n".join(["set -eu", *setup, line])
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": bare},
    )


def test_readme_command_lines_run_as_written(server: ServerProcess, tmp_path: Path) -> None:
    lines = [ln for ln in _block("readme-cli", "sh").splitlines() if ln.strip()]
    setup = [ln for ln in lines if ln.split()[0] in ("source", "export")]
    assert setup and setup[0].startswith("source "), "the lines say how ntkserve gets on PATH"
    setup = [ln.replace("localhost:50051", server.target) for ln in setup]
    rng = np.random.default_rng(0)
    shapes = {"A": (5, 3), "B": (4, 3), "X": (6, 3), "Y": (6, 2), "T": (4, 3)}
    for name, shape in shapes.items():
        np.save(tmp_path / f"{name}.npy", rng.standard_normal(shape))
    arch_id, model_id, said = "", "", {}
    for line in lines[len(setup) :]:
        assert line.startswith("ntkserve "), line
        filled = re.sub(r"\b([ABKXYTP])\.npy\b", lambda m: str(tmp_path / m.group(0)), line)
        filled = re.sub(r"\bID\b", arch_id, filled) if arch_id else filled
        filled = re.sub(r"\bMODEL\b", model_id, filled) if model_id else filled
        assert "ID" not in filled.split("#")[0].split(), f"no id registered before: {line}"
        out = _bash(setup, filled)
        assert out.returncode == 0, f"{filled}\n{out.stderr}"
        said[line.split()[1]] = out.stdout
        if line.startswith("ntkserve register"):
            arch_id = out.stdout.strip()
        if line.startswith("ntkserve fit"):
            model_id = out.stdout.strip()
    assert arch_id, "the lines register an architecture"
    assert arch_id in said["ls"]
    assert json.loads(said["show"])["layers"]
    assert np.load(tmp_path / "K.npy").shape == (5, 4)
    for kind in ("nngp", "ntk"):
        kernel = np.load(tmp_path / f"K.{kind}.npy")
        assert kernel.shape == (5, 5)
        np.testing.assert_array_equal(kernel, kernel.T)
    assert model_id in said["models"]
    assert np.load(tmp_path / "P.mean.npy").shape == (2, 4, 2)  # times x test points x outputs
    assert np.load(tmp_path / "P.covariance.npy").shape == (2, 4)
    assert "diag_reg" in json.loads(said["tune"])["values"]


def test_readme_served_inference_example_classifies_digits(server: ServerProcess) -> None:
    """The served example, as written: the NTK model classifies the 597 held-out digits at
    >= 98 % through a real server."""
    code = _block("readme-fit", "python").replace("localhost:50051", server.target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("accuracy")]
    assert float(line.split()[1]) >= 0.98, line
    assert "Solve(method=" in out.stdout


def test_readme_inference_example_classifies_digits() -> None:
    """The Inference section's example, as written: the NTK ensemble trained to convergence
    classifies the 597 held-out digits at >= 98 % (test_predict.py checks the same split)."""
    code = _block("readme-predict", "python")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("accuracy")]
    assert float(line.split()[1]) >= 0.98, line
