"""The Node.js examples against a real server: kernel.js gets the Python client's kernels bit
for bit, predict.js fits the same model (same id) and gets the same predictions bit for bit,
and both print a server error with its status code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, stax

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
# The network kernel.js builds; its id proves Node sent the same architecture.
ARCH = stax.serial(
    stax.Dense(512, W_std=1.5, b_std=0.05),
    stax.Relu(),
    stax.Dense(1, W_std=1.5, b_std=0.05),
)


def _node() -> str:
    """node on PATH with the example's packages installed; skipped locally, failed in CI."""
    node = shutil.which("node")
    if node is None:
        problem = "node is not on PATH"
    elif not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        problem = "examples/node/node_modules is missing (python3 dev.py test runs npm ci)"
    else:
        return node
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem}: CI must run the Node example")
    pytest.skip(problem)


def _run_example(
    target: str, *args: str, script: str = "kernel.js"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NTKSERVE_TOKEN"}
    return subprocess.run(
        [_node(), script, target, *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _float32(printed: dict[str, Any]) -> np.ndarray[Any, Any]:
    """A kernel from the example's JSON, checked to be float32 values (a float32 widened to a
    double is exact, and JSON numbers round-trip doubles, so nothing was rounded on the way)."""
    assert printed["dtype"] == "DTYPE_FLOAT32"
    wide = np.array(printed["values"], np.float64)
    narrow = wide.astype(np.float32)
    np.testing.assert_array_equal(narrow.astype(np.float64), wide)
    return narrow.reshape(printed["shape"])


def _assert_same_kernels(target: str, printed: dict[str, Any], x: np.ndarray[Any, Any]) -> None:
    with Client(target, timeout=120) as client:
        assert printed["architecture_id"] == client.register(ARCH)
        nngp, ntk = client.kernel(ARCH, x, get=("nngp", "ntk"))
    # Identical bits, not a tolerance: both clients send the same architecture id, the same
    # x1 bytes and the same `get`, and a lone small ComputeKernel call runs the same compiled
    # program (the batcher runs a batch of one unbatched), which is deterministic for the
    # same inputs. A difference here means the two requests or decodings differ.
    for name, expected in (("nngp", nngp), ("ntk", ntk)):
        got = _float32(printed[name])
        assert got.shape == expected.shape == (x.shape[0], x.shape[0])
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_node_kernels_equal_the_python_clients(server: ServerProcess, tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((4, 8)).astype(np.float32)
    path = tmp_path / "x1.f32"
    x.astype("<f4").tofile(path)  # the example's input format: raw little-endian, C order
    result = _run_example(server.target, "--x1", str(path), "--shape", "4,8")
    assert result.returncode == 0, result.stderr
    _assert_same_kernels(server.target, json.loads(result.stdout), x)


def test_node_default_input_is_the_documented_one(server: ServerProcess) -> None:
    result = _run_example(server.target)
    assert result.returncode == 0, result.stderr
    # kernel.js's fixed input, rebuilt here: ((k % 7) - 3) / 4 for k = 0 .. 31, as 4 x 8.
    x = ((np.arange(32) % 7 - 3) / 4).astype(np.float32).reshape(4, 8)
    _assert_same_kernels(server.target, json.loads(result.stdout), x)


def test_node_prints_invalid_argument_naming_the_field(
    server: ServerProcess, tmp_path: Path
) -> None:
    path = tmp_path / "short.f32"
    np.zeros(4 * 8 - 1, "<f4").tofile(path)  # one float short of the shape it claims
    result = _run_example(server.target, "--x1", str(path), "--shape", "4,8")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("INVALID_ARGUMENT: x1.data: holds 124 bytes"), result.stderr
    assert "needs 128 bytes" in result.stderr


# predict.js's fixed data, rebuilt as its comments describe (float64, exact in any language).
X_TRAIN = ((np.arange(48) % 7 - 3) / 4).reshape(6, 8)
Y_TRAIN = (np.arange(6) % 3 - 1).astype(np.float64)
X_TEST = ((np.arange(16) % 5 - 2) / 8).reshape(2, 8)


def _float64(printed: dict[str, Any]) -> np.ndarray[Any, Any]:
    """A prediction from predict.js's JSON: JSON numbers round-trip doubles exactly."""
    assert printed["dtype"] == "DTYPE_FLOAT64"
    return np.array(printed["values"], np.float64).reshape(printed["shape"])


def test_node_predictions_equal_the_python_clients(server: ServerProcess) -> None:
    result = _run_example(server.target, script="predict.js")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    with Client(server.target, timeout=120) as client:
        model = client.fit(ARCH, X_TRAIN, Y_TRAIN, "ntk", diag_reg=1e-3, progress=False)
        mean, variance = model.predict(X_TEST, t=[1.0], covariance="marginal")
    # Model ids are content addressed (tenant, architecture, data bytes and settings): the
    # same id proves Node sent the same header and the same chunked bytes, and this fit
    # found Node's model rather than making another.
    assert printed["model_id"] == model.id
    assert printed["solve"]["method"] in ("cholesky", "cholesky+jitter", "eigh-clipped", "eigh")
    # Identical bits: the same model, the same x_test bytes, t and covariance, and a
    # deterministic Predict; float64 survives the DataView decoding and JSON unchanged.
    for name, expected in (("mean", mean), ("variance", variance)):
        got = _float64(printed[name])
        assert got.shape == expected.shape == (1, 2), name
        np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))


def test_node_predict_prints_not_found_for_an_unknown_model(server: ServerProcess) -> None:
    unknown = "model-" + "0" * 32  # well formed, never fitted
    result = _run_example(server.target, "--model", unknown, script="predict.js")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"NOT_FOUND: no model with id '{unknown}'"), result.stderr
