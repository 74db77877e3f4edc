"""The map stays true and the dependency rule holds, read from the source (no imports run).

- Imports point one way: server -> engine -> messages. The engine never imports grpc or the
  server; the client never imports jax, the engine or the server (its `serve` command hands
  over to the server inside a function, the one allowed place).
- docs/ARCHITECTURE.md names only modules that exist, and names every module of the three
  packages (the generated ones apart), so a module added or renamed without the map fails here.
  Layer families are the exception: the map says where they are listed (the engine's
  `kernels/table.py`, the client's `stax.py`), and a module those import is named there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "client": ROOT / "client" / "ntkserve",
    "engine": ROOT / "engine" / "ntkserve_engine",
    "server": ROOT / "server" / "ntkserve_server",
}
GENERATED = ("v1", "kserve_v2")
FORBIDDEN = {
    "client": ("jax", "jaxlib", "ntkserve_engine", "ntkserve_server"),
    "engine": ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "ntkserve_server"),
    "server": (),
}
# (distribution, file, imported top-level package): imports allowed inside a function only.
LAZY_ALLOWED = {("client", "cli.py", "ntkserve_server")}


def _modules(package: Path) -> list[Path]:
    return [
        p
        for p in sorted(package.rglob("*.py"))
        if not set(p.relative_to(package).parts) & set(GENERATED)
    ]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level) for every import in `path`."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found += [(name.split(".")[0], id(node) in top_level) for name in names]
    return found


@pytest.mark.parametrize("distribution", sorted(PACKAGES))
def test_imports_point_one_way(distribution: str) -> None:
    package = PACKAGES[distribution]
    wrong = []
    for path in _modules(package):
        for name, at_module_level in _imports(path):
            if name not in FORBIDDEN[distribution]:
                continue
            lazy_ok = (distribution, path.name, name) in LAZY_ALLOWED and not at_module_level
            if not lazy_ok:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong


def _families() -> set[str]:
    """The layer-family modules: those the layer table and stax import from their package."""
    listings = {
        ROOT / "engine" / "ntkserve_engine" / "kernels" / "table.py": "ntkserve_engine.kernels.",
        ROOT / "client" / "ntkserve" / "stax.py": "ntkserve.builders.",
    }
    found = set()
    for path, prefix in listings.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
                found.add(f"{node.module.removeprefix(prefix)}.py")  # type: ignore[union-attr]
    return found


def _mentioned() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    return set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*\.py)\b", text))


def test_the_map_names_only_modules_that_exist() -> None:
    existing = {p.name for package in PACKAGES.values() for p in _modules(package)}
    existing |= {p.name for p in (ROOT / "tests").rglob("*.py")} | {"dev.py"}
    missing = sorted(_mentioned() - existing)
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


@pytest.mark.parametrize("distribution", sorted(PACKAGES))
def test_the_map_names_every_module(distribution: str) -> None:
    unnamed = sorted(
        str(p.relative_to(ROOT))
        for p in _modules(PACKAGES[distribution])
        if p.name not in {"__init__.py", "__main__.py"} | _mentioned() | _families()
    )
    assert not unnamed, f"docs/ARCHITECTURE.md does not say what these do: {unnamed}"
