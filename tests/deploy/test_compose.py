"""The compose files: port on loopback, a persistent volume, tokens, a health check and a stop
period longer than the drain; a GPU only in compose.gpu.yaml; each check shown to fail."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest
import yaml

from tests.deploy.support import DEFAULT_GRACE, DEPLOY, EXIT_MARGIN, TRUE, UID, Doc


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
