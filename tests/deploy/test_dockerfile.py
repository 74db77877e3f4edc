"""The image: hadolint with every rule, what the Dockerfile must say (non-root user, /data
volume, entrypoint, health check), and a build context holding what it copies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, PORT, ROOT, UID, run, venv_tool


def _dockerfiles() -> list[Path]:
    return sorted(
        p for p in DEPLOY.rglob("Dockerfile*") if p.is_file() and not p.name.endswith("ignore")
    )


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending.strip():
        logical.append(pending)
    out = []
    for line in logical:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[str]:
    """What keeps a Dockerfile from making the server image the manifests expect."""
    steps = _instructions(text)
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    if not froms:
        return ["no FROM"]
    final = steps[froms[-1] :]
    problems = []
    users = [rest for word, rest in final if word == "USER"]
    if not users:
        problems.append("the final stage has no USER: the server would run as root")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"the final stage runs as USER {users[-1]} (root)")
    elif users[-1].split(":")[0] != str(UID):
        problems.append(f"USER {users[-1]}: the manifests run as UID {UID}")
    entrypoints = [rest for word, rest in final if word == "ENTRYPOINT"]
    if not entrypoints or json.loads(entrypoints[-1])[:2] != ["ntkserve", "serve"]:
        problems.append('ENTRYPOINT must be the exec form ["ntkserve", "serve"] (flags append)')
    if not any(word == "HEALTHCHECK" and "ntkserve-healthcheck" in rest for word, rest in final):
        problems.append("no HEALTHCHECK running ntkserve-healthcheck")
    if not any(word == "EXPOSE" and str(PORT) in rest.split() for word, rest in final):
        problems.append(f"no EXPOSE {PORT}")
    if not any(word == "VOLUME" and "/data" in rest for word, rest in final):
        problems.append("no VOLUME for /data")
    return problems


def unjustified_ignores(text: str) -> list[str]:
    """`# hadolint ignore=...` pragmas without a comment line above saying why."""
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line):
            above = lines[i - 1].strip() if i else ""
            if not above.startswith("#") or "hadolint" in above:
                bad.append(f"line {i + 1}: {line.strip()}")
    return bad


@pytest.fixture(scope="module")
def hadolint_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our own config: warnings, infos and style notes all fail, and no config lying in a
    home directory can ignore rules behind the test's back."""
    path = tmp_path_factory.mktemp("hadolint") / "hadolint.yaml"
    path.write_text("failure-threshold: style\n")
    return path


def test_deploy_has_dockerfiles() -> None:
    assert _dockerfiles(), "no Dockerfile under deploy/"


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path, hadolint_config: Path) -> None:
    result = run(venv_tool("hadolint"), "--config", str(hadolint_config), str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path, hadolint_config: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install uv\n")  # no tag, unpinned, pip's cache kept
    result = run(venv_tool("hadolint"), "--config", str(hadolint_config), str(bad))
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_makes_the_expected_image(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert dockerfile_problems(text) == []
    assert unjustified_ignores(text) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "(root)"),
        (lambda t: t.replace("USER 10001:10001", "USER 0:0"), "(root)"),
        (lambda t: t.replace('ENTRYPOINT ["ntkserve", "serve"]', "CMD ntkserve serve"), "ENTRY"),
        (lambda t: t.replace("EXPOSE 50051", "EXPOSE 8080"), "EXPOSE"),
    ],
)
def test_dockerfile_check_catches(change: Callable[[str], str], expected: str) -> None:
    original = (DEPLOY / "Dockerfile").read_text()
    broken = change(original)
    assert broken != original, "the mutation no longer applies: update the test"
    assert any(expected in p for p in dockerfile_problems(broken)), dockerfile_problems(broken)


def test_an_ignore_needs_a_reason() -> None:
    assert unjustified_ignores("FROM a:1\n# hadolint ignore=DL3008\nRUN x\n")
    assert not unjustified_ignores(
        "FROM a:1\n# Debian's pins change with every point release.\n"
        "# hadolint ignore=DL3008\nRUN x\n"
    )


GLOB_REGEX = {"**": ".*", "*": "[^/]*", "?": "[^/]"}


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out, as BuildKit reads a .dockerignore: the
    last pattern that matches the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        tokens = re.split(r"(\*\*|\*|\?)", glob)
        regex = "".join(GLOB_REGEX.get(tok, re.escape(tok)) for tok in tokens if tok)
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_build_context_holds_what_the_image_copies(dockerfile: Path) -> None:
    """Without a Docker engine the build cannot run here: check at least that every COPY
    from the context survives <Dockerfile>.dockerignore, and that secrets do not."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.exists(), f"{ignore.name} is missing: the whole checkout would be sent"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    copies = [
        rest.split() for word, rest in _instructions(dockerfile.read_text()) if word == "COPY"
    ]
    sources = [
        src
        for args in copies
        if not any(a.startswith("--from") for a in args)
        for src in [a for a in args if not a.startswith("--")][:-1]
    ]
    assert sources
    for source in sources:
        assert not _dockerignored(source, patterns), f"COPY {source}: left out of the context"
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    for private in (
        ".venv/bin/python",
        "deploy/secrets/tokens",
        ".git/config",
        "server/x/__pycache__/a.pyc",
    ):
        assert _dockerignored(private, patterns), f"{private} would be sent to the builder"


def test_image_uses_the_uv_dev_py_pins() -> None:
    """The image installs uv.lock with the same uv as development, or the lock may read
    differently there."""
    dev = re.search(r'^UV_VERSION = "([^"]+)"', (ROOT / "dev.py").read_text(), re.M)
    image = re.search(r"^ARG UV_VERSION=(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert dev and image, "UV_VERSION not found in dev.py or ARG UV_VERSION in the Dockerfile"
    assert image.group(1) == dev.group(1)
