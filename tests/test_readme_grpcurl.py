"""The README's grpcurl examples, run against a real server through reflection.

Each command of the block after `<!-- grpcurl-examples -->` runs as written (the address
swapped for the test server's). The comment lines after a command are its expected answer:
service names for `list`, else a JSON object that the answer must contain. Tensors in the
answer are compared as numbers, to float32 rounding (the README's were computed on another
machine), and exactly with what the Python client gets from the same server.

grpcurl itself is used when it is on the PATH. It is not in the package registries CI can
reach, so otherwise each command is translated to `buf curl` (installed by dev.py with npm),
which asks the same reflection service and sends the same JSON.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ntkserve import Client, tensor
from ntkserve.v1 import tensor_pb2

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
README_ADDRESS = "127.0.0.1:50051"
# Relative error of a float32 kernel recomputed on another machine: a few roundings per
# layer of a 3-layer network, far below 1e-5 (2^-23 is 1.2e-7).
FLOAT32_RTOL = 1e-5


@dataclass
class Example:
    argv: list[str]
    expected: list[str] = field(default_factory=list)


def readme_examples() -> list[Example]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- grpcurl-examples -->", 1)[1].split("```sh\n", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    examples: list[Example] = []
    for line in block.splitlines():
        if line.startswith("#"):
            examples[-1].expected.append(line.lstrip("# ").rstrip())
        elif line.strip():
            examples.append(Example(shlex.split(line)))
    return examples


def _buf() -> str | None:
    local = ROOT / ".tools" / "buf" / "node_modules" / ".bin" / "buf"
    return str(local) if local.exists() else shutil.which("buf")


def _as_buf_curl(buf: str, argv: list[str], target: str) -> list[str]:
    """grpcurl -plaintext [-d JSON] ADDRESS (list | SERVICE/METHOD) as buf curl."""
    assert argv[:2] == ["grpcurl", "-plaintext"], argv
    rest = argv[2:]
    data: list[str] = []
    if rest[0] == "-d":
        data, rest = ["-d", rest[1]], rest[2:]
    address, what = rest
    assert address == target
    command = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    if what == "list":
        return [*command, "--list-services", f"http://{address}"]
    return [*command, *data, f"http://{address}/{what}"]


def _run(argv: list[str], target: str) -> str:
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        buf = _buf()
        if buf is None:
            if os.environ.get("CI") == "true":
                pytest.fail("neither grpcurl nor buf is installed in CI (dev.py installs buf)")
            pytest.skip("neither grpcurl nor buf is installed (python3 dev.py test installs buf)")
        argv = _as_buf_curl(buf, argv, target)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{argv}: {out.stderr}"
    return out.stdout


def _tensor(value: dict[str, Any]) -> np.ndarray:
    message = tensor_pb2.Tensor(
        dtype=value["dtype"],
        shape=[int(s) for s in value["shape"]],
        data=base64.b64decode(value["data"]),
    )
    return tensor.decode(message, "README tensor")


def _contains(answer: Any, expected: Any, path: str = "") -> None:
    """`answer` holds everything in `expected`; tensors compared as float32 numbers."""
    if isinstance(expected, dict) and "data" in expected and "dtype" in expected:
        np.testing.assert_allclose(
            _tensor(answer), _tensor(expected), rtol=FLOAT32_RTOL, err_msg=path
        )
    elif isinstance(expected, dict):
        for key, value in expected.items():
            assert key in answer, f"{path}.{key} missing from {answer}"
            _contains(answer[key], value, f"{path}.{key}")
    else:
        assert answer == expected, f"{path}: {answer!r} != {expected!r}"


def test_the_readme_shows_commands_with_answers() -> None:
    examples = readme_examples()
    assert len(examples) >= 4
    assert all(e.argv[0] == "grpcurl" and e.expected for e in examples)


def test_readme_grpcurl_examples_answer_as_shown(server: ServerProcess) -> None:
    answers: dict[str, Any] = {}
    for example in readme_examples():
        argv = [server.target if a == README_ADDRESS else a for a in example.argv]
        out = _run(argv, server.target)
        if argv[-1] == "list":
            assert set(example.expected) <= set(out.split()), out
            continue
        answer = json.loads(out)
        _contains(answer, json.loads(" ".join(example.expected)))
        answers[argv[-1].rsplit("/", 1)[1]] = (json.loads(argv[argv.index("-d") + 1]), answer)

    # The kernel grpcurl got is, bit for bit, the one the Python client gets.
    request, answer = answers["ComputeKernel"]
    x1 = _tensor(request["x1"])
    with Client(server.target) as client:
        expected = client.kernel(request["architectureId"], x1, get="ntk")
    np.testing.assert_array_equal(_tensor(answer["ntk"]), expected)
