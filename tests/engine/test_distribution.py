"""The engine is its own distribution: it installs alone and computes with grpc unimportable.

"The engine knows nothing of gRPC" is a structure, not a convention: a throwaway venv gets
`ntkserve-engine` (and what it declares: the client's messages, jax, numpy), and a kernel is
computed there with a meta-path finder that refuses every grpc module.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.venvs import installed, throwaway_venv

ROOT = Path(__file__).resolve().parents[2]

COMPUTE_WITHOUT_GRPC = """
import importlib.abc, sys

class RefuseGrpc(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('grpc', 'grpc_status', 'grpc_health', 'grpc_reflection'):
            raise ImportError(f'the engine imported {name}')
        return None

sys.meta_path.insert(0, RefuseGrpc())
import numpy as np
import ntkserve_engine
from ntkserve import stax
arch = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
x = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)
ntk = np.asarray(ntkserve_engine.kernel_fn(arch)(x, None, 'ntk'))
assert ntk.shape == (4, 4) and np.isfinite(ntk).all() and (ntk == ntk.T).all(), ntk
assert not [m for m in sys.modules if m.split('.')[0] == 'ntkserve_server']
print(repr(float(ntk[0, 1])))
"""


def test_the_engine_computes_with_grpc_unimportable() -> None:
    out = subprocess.run(
        [sys.executable, "-c", COMPUTE_WITHOUT_GRPC], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_the_engine_declares_no_grpc_and_no_server() -> None:
    deps = tomllib.loads((ROOT / "engine" / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    assert not [d for d in deps if d.lower().startswith(("grpc", "ntkserve-server"))], deps
    assert [d for d in deps if d.lower().startswith("jax")]


@pytest.mark.slow
def test_the_engine_installs_alone_and_computes_without_grpc(tmp_path: Path) -> None:
    """A fresh venv with the engine's distribution (and the client's, for the messages) and
    nothing of the server, computing the same NTK as this environment's engine."""
    python = throwaway_venv(tmp_path, str(ROOT / "client"), str(ROOT / "engine"))
    listed = installed(python)
    assert "ntkserve-engine" in listed and "ntkserve-server" not in listed, listed
    there = subprocess.run(
        [str(python), "-c", COMPUTE_WITHOUT_GRPC], capture_output=True, text=True
    )
    assert there.returncode == 0, there.stderr
    here = subprocess.run(
        [sys.executable, "-c", COMPUTE_WITHOUT_GRPC], capture_output=True, text=True, check=True
    )
    assert there.stdout == here.stdout
