"""Regenerates the Python code for proto/: the one command.

    uv run python -m tools.genproto          # write the generated packages
    uv run python -m tools.genproto --check  # exit 1 if the committed code drifted

proto/ntkserve/v1 becomes client/ntkserve/v1 (messages and stubs). proto/inference (the
KServe v2 / Open Inference Protocol) becomes server/ntkserve_server/kserve_v2, messages only:
its package is the protocol's bare `inference`, whose stubs would import a top-level
`inference` module, so the server binds that service itself (`ntkserve_server.inference`).

Messages come from protoc's own Python and .pyi generators (bundled in the pinned
grpcio-tools); the gRPC stubs from grpc_tools' plugin, typed by mypy-protobuf's
protoc-gen-mypy_grpc. Nothing here is ever edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("ntkserve") / "v1"
OUT_ROOT = ROOT / "client"
INIT_TEXT = '"""Generated protobuf and gRPC code for ntkserve.v1 (tools/genproto.py)."""\n'
INFERENCE_PROTO = Path("inference") / "grpc_predict_v2.proto"
INFERENCE_DIR = ROOT / "server" / "ntkserve_server" / "kserve_v2"
INFERENCE_INIT = (
    '"""Generated protobuf messages of the KServe v2 inference protocol (tools/genproto.py)."""\n'
)


def _plugin(name: str) -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    candidate = scripts / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: run `uv sync` first")
    return found


def generate(out_root: Path) -> Path:
    """Writes the generated package under out_root/ntkserve/v1 and returns that folder."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto")
    )
    target = out_root / PACKAGE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    (target / "__init__.py").write_text(INIT_TEXT)
    (target / "py.typed").write_text("")
    return target


def generate_inference(target: Path) -> Path:
    """Writes the inference protocol's messages (and .pyi) into `target` and returns it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            str(INFERENCE_PROTO),
        ]
        subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for made in (Path(tmp) / INFERENCE_PROTO.parent).iterdir():
            shutil.copy(made, target / made.name)
    (target / "__init__.py").write_text(INFERENCE_INIT)
    (target / "py.typed").write_text("")
    return target


def _drift(expected: Path, actual: Path) -> list[str]:
    cmp = filecmp.dircmp(expected, actual)
    problems = [f"missing: {n}" for n in cmp.left_only] + [f"extra: {n}" for n in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(expected, actual, cmp.common_files, shallow=False)
    return problems + [f"differs: {n}" for n in mismatch + errors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code drifted")
    args = parser.parse_args(argv)
    if not args.check:
        print(f"generated {generate(OUT_ROOT).relative_to(ROOT)}")
        print(f"generated {generate_inference(INFERENCE_DIR).relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        client = [
            f"client/{PACKAGE_DIR}: {p}"
            for p in _drift(generate(Path(tmp)), OUT_ROOT / PACKAGE_DIR)
        ]
        inference = Path(tmp) / "kserve_v2"
        server = [
            f"{INFERENCE_DIR.relative_to(ROOT)}: {p}"
            for p in _drift(generate_inference(inference), INFERENCE_DIR)
        ]
    problems = client + server
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print("generated code drifted: run `uv run python -m tools.genproto`", file=sys.stderr)
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
