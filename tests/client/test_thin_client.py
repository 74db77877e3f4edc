"""The client stays thin: no jax, and it imports under protobuf 6.3x and 7.x runtimes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.venvs import throwaway_venv

ROOT = Path(__file__).resolve().parents[2]

IMPORT_EVERYTHING = """
import sys
import ntkserve, ntkserve.client, ntkserve.stax, ntkserve.tensor, ntkserve.errors, ntkserve.cli
import ntkserve.kinds, ntkserve.request_ids
from ntkserve.v1 import architecture_pb2, kernel_service_pb2, kernel_service_pb2_grpc, tensor_pb2
HEAVY = ('jax', 'jaxlib', 'ntkserve_engine', 'ntkserve_server')
heavy = sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)
assert not heavy, heavy
import numpy, google.protobuf
spec = ntkserve.stax.serial(ntkserve.stax.Dense(8, b_std=0.0), ntkserve.stax.Relu())
assert ntkserve.Architecture.from_json(spec.to_json()) == spec
t = ntkserve.tensor.encode(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))
assert ntkserve.tensor.decode(tensor_pb2.Tensor.FromString(t.SerializeToString())).sum() == 15
print(google.protobuf.__version__)
"""


def test_importing_the_client_loads_no_jax() -> None:
    out = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_client_distribution_does_not_depend_on_jax() -> None:
    deps = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    assert not [d for d in deps if d.lower().startswith(("jax", "ntkserve-server"))]


@pytest.mark.slow
@pytest.mark.parametrize("protobuf", ["6.30.0", "6.33.6", "7.36.2"])
def test_client_imports_under_protobuf_runtime(tmp_path: Path, protobuf: str) -> None:
    """Users pin protobuf < 7 (tensorflow, tritonclient) or run 7.x: both must work."""
    python = throwaway_venv(tmp_path, f"protobuf=={protobuf}", str(ROOT / "client"))
    out = subprocess.run(
        [str(python), "-W", "error::UserWarning", "-c", IMPORT_EVERYTHING],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == protobuf
