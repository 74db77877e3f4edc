"""The overlays rendered once per worker, for the schema and the semantic checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import K8S, OVERLAYS, kustomize_commands, run, tls_overlay


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered by kustomize into a file: name -> path (checked to be the same
    output from every renderer available)."""
    renderers = kustomize_commands()
    out = tmp_path_factory.mktemp("rendered")
    sources = {name: K8S / "overlays" / name for name in OVERLAYS}
    sources["gpu+tls"] = tls_overlay(out)
    paths = {}
    for name, source in sources.items():
        outputs = {}
        for renderer, command in renderers.items():
            result = run(*command, str(source))
            assert result.returncode == 0, f"{renderer} {name}: {result.stderr}"
            outputs[renderer] = result.stdout
        assert len(set(outputs.values())) == 1, f"{name}: {list(outputs)} render differently"
        paths[name] = out / f"{name.replace('+', '-')}.yaml"
        paths[name].write_text(next(iter(outputs.values())))
    return paths
