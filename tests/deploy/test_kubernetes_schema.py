"""The YAML lints clean (yamllint --strict) and every rendered overlay validates against the
Kubernetes API schemas kubernetes-validate bundles (--strict: unknown fields fail)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import (
    DEPLOY,
    K8S,
    KUBERNETES_VERSIONS,
    deployment_of,
    load_docs,
    run,
    venv_tool,
)


def test_yamllint_strict() -> None:
    yamllint = venv_tool("yamllint")
    result = run(yamllint, "--strict", "-c", str(DEPLOY / ".yamllint"), str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_config_rejects_sloppy_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nenabled: yes\nlong: " + "x" * 120 + "\n")
    result = run(venv_tool("yamllint"), "--strict", "-c", str(DEPLOY / ".yamllint"), str(bad))
    assert result.returncode != 0
    for rule in ("key-duplicates", "truthy", "line-length"):
        assert rule in result.stdout


# --- Kubernetes: render, validate ----------------------------------------------------------


def _validate(*paths: Path, version: str) -> subprocess.CompletedProcess[str]:
    tool = venv_tool("kubernetes-validate")
    return run(tool, "--strict", "--quiet", "--kubernetes-version", version, *map(str, paths))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_strictly(rendered: dict[str, Path], version: str) -> None:
    example = K8S / "base" / "secret.example.yaml"
    result = _validate(*rendered.values(), example, version=version)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    docs = load_docs(rendered["cpu"])
    container = deployment_of(docs)["spec"]["template"]["spec"]["containers"][0]
    container["readinessProb"] = container.pop("readinessProbe")  # a typo a schema must catch
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    result = _validate(broken, version=KUBERNETES_VERSIONS[0])
    assert result.returncode != 0
    assert "readinessProb" in result.stdout + result.stderr


def test_kubernetes_validate_rejects_a_wrong_type(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    docs = load_docs(rendered["gpu"])
    deployment_of(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    assert _validate(broken, version=KUBERNETES_VERSIONS[0]).returncode != 0
