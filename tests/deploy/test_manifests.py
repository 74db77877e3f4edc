"""What a schema cannot check in the rendered manifests: probes on the health service, a grace
period longer than the drain, selectors that match, no root, a GPU only where meant, tokens
required; each check also run on a deliberately broken copy, to show that it can fail."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import (
    DEFAULT_GRACE,
    EXIT_MARGIN,
    K8S,
    OVERLAYS,
    PORT,
    SERVICE,
    TRUE,
    UID,
    Doc,
    deployment_of,
    load_docs,
    of_kind,
)


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
    deployment = deployment_of(docs)
    (service,) = of_kind(docs, "Service")
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
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
    docs = load_docs(rendered[name])
    assert manifest_problems(docs, gpu=name.startswith("gpu")) == []
    # The component really turned TLS on (its exec probes are checked only then).
    assert bool(_setting(_server(docs), "--tls-cert")) == ("tls" in name)


def _server(docs: list[Doc]) -> Doc:
    container: Doc = deployment_of(docs)["spec"]["template"]["spec"]["containers"][0]
    return container


def _pod(docs: list[Doc]) -> Doc:
    pod: Doc = deployment_of(docs)["spec"]["template"]["spec"]
    return pod


def _set_env(docs: list[Doc], name: str, value: str | None) -> None:
    env = [e for e in _server(docs)["env"] if e["name"] != name]
    _server(docs)["env"] = env + ([{"name": name, "value": value}] if value is not None else [])


def _service(docs: list[Doc]) -> Doc:
    return of_kind(docs, "Service")[0]


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
        lambda d: of_kind(d, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].update(
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
    docs = copy.deepcopy(load_docs(rendered[overlay]))
    mutate(docs)
    problems = manifest_problems(docs, gpu=overlay == "gpu")
    assert any(expected in p for p in problems), problems


def test_secret_example_is_a_placeholder_the_server_refuses() -> None:
    """The example must never be a usable token: the server refuses tokens under 16 chars."""
    from ntkserve_server.auth import TokenFileError, parse_tokens

    (secret,) = load_docs(K8S / "base" / "secret.example.yaml")
    with pytest.raises(TokenFileError, match="shorter than"):
        parse_tokens(secret["stringData"]["tokens"], "secret.example.yaml")
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert "secret.example.yaml" not in listed, "apply -k would overwrite the real Secret"
